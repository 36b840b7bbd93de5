//! `allmlp train --optimizer muon`: Muon for the blocks' weight matrices and AdamW for the rest,
//! saved and resumed exactly like the single optimizers.

mod common;

use allmlp::layers::state_dict::StateDict;
use allmlp::metrics::parse_csv;
use allmlp::train::recipe::OptimizerKind;
use allmlp::train::{TrainArgs, run};
use common::{assert_same_weights, small};

#[test]
fn a_muon_run_learns_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (full, split) = (dir.path().join("full"), dir.path().join("split"));
    let muon = |out: &std::path::Path| TrainArgs {
        optimizer: Some(OptimizerKind::Muon),
        ..small(out, 3, 96)
    };
    run(&muon(&full)).unwrap();
    run(&TrainArgs {
        stop_after: Some(1),
        ..muon(&split)
    })
    .unwrap();
    // The resume state holds both parts: the momentum of every block matrix, the moments of
    // the rest (the classifier among them).
    let state = StateDict::load(split.join("optimizer.safetensors")).unwrap();
    let keys: Vec<&str> = state.keys().collect();
    let has = |k: &str| keys.iter().any(|x| x.ends_with(k));
    assert!(
        has("muon/blocks.0.mlp_tokens.fc1.weight.momentum_buffer"),
        "{keys:?}"
    );
    assert!(has("muon/blocks.7.mlp_channels.fc2.weight.momentum_buffer"));
    assert!(has("adamw/head.weight.exp_avg") && has("adamw/stem.proj.weight.exp_avg"));
    assert!(!has("muon/head.weight.momentum_buffer"));
    assert!(!has("adamw/blocks.0.mlp_tokens.fc1.weight.exp_avg"));
    run(&TrainArgs {
        resume: Some(split.clone()),
        ..TrainArgs::default()
    })
    .unwrap();
    assert_same_weights(&full, &split, "after a Muon resume");

    let text = std::fs::read_to_string(full.join("metrics.csv")).unwrap();
    let m = parse_csv(&text, "metrics.csv").unwrap();
    assert_eq!(m.len(), 3);
    assert!(
        m[2].train_loss < m[0].train_loss,
        "loss {} → {}",
        m[0].train_loss,
        m[2].train_loss
    );
    // The saved recipe names the optimizer, so a resume rebuilds the same one.
    let (_, _, progress) = allmlp::train::state::load(&full).unwrap();
    assert_eq!(progress.recipe.optimizer, OptimizerKind::Muon);
    assert!(
        progress
            .optimizer_scalars
            .iter()
            .any(|(k, _)| k == "muon/lr")
    );
}
