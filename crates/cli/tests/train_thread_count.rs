//! `allmlp train` resumed on another thread count. Alone in its own test binary: the thread
//! count is process-wide, and the tests of `train.rs` set it concurrently.

mod common;

use std::path::Path;

use allmlp::train::{TrainArgs, run};
use common::{assert_same_weights, small};

/// The kernels split work at boundaries that do not depend on the thread count, so a run
/// interrupted on one thread and resumed on three ends with the weights of an uninterrupted
/// one-thread run, bit for bit: for the Mixer (GEMMs, LayerNorm, GELU) and for the RepMLP net
/// (grouped convolutions, BatchNorm statistics, pooling), with every random draw on.
#[test]
fn a_run_resumed_on_another_thread_count_ends_with_the_same_weights() {
    for model in ["mixer_tiny", "repmlp_tiny"] {
        let dir = tempfile::tempdir().unwrap();
        let (full, split) = (dir.path().join("full"), dir.path().join("split"));
        let randomized = |out: &Path| TrainArgs {
            model: Some(model.into()),
            mixup: Some(0.2),
            // RepMLP nets have no stochastic depth.
            drop_path: (model == "mixer_tiny").then_some(0.1),
            crop_padding: Some(2),
            random_erasing: Some(0.25),
            ..small(out, 2, 96)
        };
        run(&randomized(&full)).unwrap();
        run(&TrainArgs {
            stop_after: Some(1),
            ..randomized(&split)
        })
        .unwrap();
        run(&TrainArgs {
            resume: Some(split.clone()),
            threads: Some(3),
            ..TrainArgs::default()
        })
        .unwrap();
        // Alone in its test binary, so no other test changed the pool meanwhile.
        assert_eq!(allmlp::tensor_core::threads::num_threads(), 3);
        assert_same_weights(&full, &split, &format!("{model}, resumed on 3 threads"));
    }
}
