//! Eval-mode inference of full-size registered models, the cases of
//! `allmlp_benches::MODEL_CASES`: MLP-Mixer S/16 and B/16, ResMLP-12 and -24 (beside timm in
//! `cargo xtask bench models`), RepMLP-Res50 (Light) and RepMLPNet-T224 in the training and
//! the deploy form (beside the reference modules of `tools/fixtures/`).
//!
//! Ids `models/tensor-core/<case>` (e.g. `models/tensor-core/mixer_b16_224_b8`): one
//! `allmlp_layers::infer` call (no tape, eval mode) on a random batch. Batch-8 cases are read
//! as images/s, batch-1 cases as latency. A model is built only when its case is selected
//! (criterion's filter), so running one case does not build the others.

use std::time::Duration;

use allmlp_benches::{MODEL_CASES, ModelCase, per_call_median};
use allmlp_layers::{Module, infer};
use allmlp_models::{Model, ModelOptions, create_deploy_model, create_model};
use allmlp_tensor_core::Tensor;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// The case's model (training or deploy form, default initialisation) and a random input.
fn setup(case: &ModelCase) -> (Box<dyn Model>, Tensor) {
    let opts = ModelOptions::default();
    let model = if case.deploy {
        create_deploy_model(case.model, &opts)
    } else {
        create_model(case.model, &opts)
    }
    .unwrap_or_else(|e| panic!("{}: {e}", case.name()));
    let [c, h, w] = model.input_shape();
    let x = Tensor::randn(&[case.batch, c, h, w], 0.0, 1.0, 7).unwrap();
    let y = infer(model.as_ref() as &dyn Module, &x).unwrap();
    assert_eq!(
        y.shape(),
        [case.batch, model.num_classes()],
        "{}",
        case.name()
    );
    assert!(y.to_vec().iter().all(|v| v.is_finite()), "{}", case.name());
    (model, x)
}

fn bench(c: &mut Criterion) {
    // As the `allmlp` binary does: freed activation buffers stay in the heap.
    allmlp_tensor_core::allocator::keep_freed_memory();
    let mut g = c.benchmark_group("models");
    // Calls take 0.02–2 s: every sample is a fixed number of calls (at least one).
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for case in &MODEL_CASES {
        let mut built: Option<(Box<dyn Model>, Tensor)> = None;
        g.throughput(Throughput::Elements(case.batch as u64));
        g.bench_function(BenchmarkId::new("tensor-core", case.name()), |b| {
            let (model, x) = built.get_or_insert_with(|| setup(case));
            let m: &dyn Module = model.as_ref();
            // The per-call median, as the PyTorch side reports (see `per_call_median`).
            b.iter_custom(|iters| per_call_median(iters, || infer(m, x).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
