//! GEMM throughput: tensor-core's kernel (`Backend::Auto`, AVX-512 where the
//! CPU has it) against matrixmultiply (`Backend::Portable`, split over the same
//! pool), on the shapes of `allmlp_benches::GEMM_SHAPES`.
//!
//! Row-major A (`m × k`), B (`k × n`), C (`m × n`), `C = A·B` (β = 0). The
//! thread count comes from `ALLMLP_NUM_THREADS`, set by the caller.
use std::time::Duration;

use allmlp_benches::GEMM_SHAPES;
use allmlp_tensor_core::Rng;
use allmlp_tensor_core::gemm::{Backend, MatMut, MatRef, gemm_with};
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

criterion_group!(benches, bench);
criterion_main!(benches);
