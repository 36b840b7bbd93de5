//! Activation throughput: tensor-core's GELU (vectorized A&S erf, dispatched to
//! AVX-512/AVX2 loops) against a plain loop over libm's `erff` — the figure
//! that justifies the `target_feature` dispatch in `elementwise.rs`. One
//! Mixer-tiny channel-MLP hidden activation: 128·49 tokens × 512.

use allmlp_tensor_core::Tensor;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let x = Tensor::randn(&[128 * 49, 512], 0.0, 1.5, 1).unwrap();
    let xs = x.to_vec();
    let mut g = c.benchmark_group("elementwise");
    g.sample_size(20)
        .throughput(Throughput::Elements(xs.len() as u64));
    g.bench_function("tensor-core/gelu_3M", |b| b.iter(|| x.gelu()));
    g.bench_function("scalar-libm/gelu_3M", |b| {
        b.iter(|| {
            xs.iter()
                .map(|&v| v * 0.5 * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2)))
                .collect::<Vec<f32>>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
