//! GEMM throughput: tensor-core's kernel (`Backend::Auto`, AVX-512 where the
//! CPU has it) against matrixmultiply (`Backend::Portable`, split over the same
//! pool), on the shapes of `allmlp_benches::GEMM_SHAPES`.
//!
//! Row-major A (`m × k`), B (`k × n`), C (`m × n`), `C = A·B` (β = 0). The
//! thread count comes from `ALLMLP_NUM_THREADS`, set by the caller.
//!
//! Group `gemm_epilogue`: a Linear layer + GELU, `y = gelu(x·Wᵀ + b)`, on
//! `allmlp_benches::EPILOGUE_SHAPES`, as separate passes (bias broadcast into
//! C, GEMM with β = 1, `Tensor::gelu`: what the layers did before the fused
//! epilogue) against `gemm_fused` with the bias and GELU in the epilogue, with
//! (`fused-deriv`, training: the autograd op keeps GELU's derivative for the
//! backward) and without (`fused`, inference) the derivative store. Outputs are allocated per
//! call, as in the layers, with `allocator::keep_freed_memory` in effect.
use std::time::Duration;

use allmlp_benches::{EPILOGUE_SHAPES, GEMM_SHAPES};
use allmlp_tensor_core::gemm::{
    Activation, Backend, Bias, Epilogue, MatMut, MatRef, gemm, gemm_fused, gemm_with,
};
use allmlp_tensor_core::{Rng, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut rng = Rng::new(0);
    for (m, k, n) in GEMM_SHAPES {
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let shape = format!("{m}x{k}x{n}");
        for (name, backend) in [
            ("tensor-core", Backend::Auto),
            ("matrixmultiply", Backend::Portable),
        ] {
            group.bench_function(BenchmarkId::new(name, &shape), |bench| {
                bench.iter(|| {
                    let a = MatRef::row_major(&a, m, k).expect("A fits");
                    let b = MatRef::row_major(&b, k, n).expect("B fits");
                    let c = MatMut::row_major(&mut out, m, n).expect("C fits");
                    gemm_with(backend, 1.0, a, b, 0.0, c).expect("valid product");
                })
            });
        }
    }
    group.finish();
}

fn epilogue(c: &mut Criterion) {
    // Every variant allocates its outputs, as the layers do: reuse freed
    // buffers as the CLI and the training binaries do.
    allmlp_tensor_core::allocator::keep_freed_memory();
    let mut group = c.benchmark_group("gemm_epilogue");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut rng = Rng::new(1);
    for (m, k, n) in EPILOGUE_SHAPES {
        let x: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32 * 0.05).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let a = || MatRef::row_major(&x, m, k).expect("x fits");
        let b = || MatRef::row_major(&w, n, k).expect("W fits").t();
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let shape = format!("{m}x{k}x{n}");
        group.bench_function(BenchmarkId::new("separate", &shape), |bench| {
            bench.iter(|| {
                let mut y = bias.repeat(m);
                let c = MatMut::row_major(&mut y, m, n).expect("C fits");
                gemm(1.0, a(), b(), 1.0, c).expect("valid product");
                Tensor::from_vec(y, &[m, n]).expect("shape").gelu()
            })
        });
        for (name, deriv) in [("fused", false), ("fused-deriv", true)] {
            group.bench_function(BenchmarkId::new(name, &shape), |bench| {
                bench.iter(|| {
                    let mut y = vec![0.0f32; m * n];
                    let mut d = if deriv {
                        vec![0.0f32; m * n]
                    } else {
                        Vec::new()
                    };
                    let epi = Epilogue {
                        bias: Bias::PerColumn(&bias),
                        act: Activation::Gelu,
                        derivative: deriv.then_some(&mut d[..]),
                        ..Epilogue::default()
                    };
                    let c = MatMut::row_major(&mut y, m, n).expect("C fits");
                    gemm_fused(1.0, a(), b(), 0.0, c, epi).expect("valid product");
                    (y, d)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, epilogue);
criterion_main!(benches);
