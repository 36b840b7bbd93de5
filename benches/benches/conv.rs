//! Convolution forward throughput on RepMLP-Res50's shapes (`CONV_CASES`).
//!
//! Ids: `conv/tensor-core/{case}` runs [`conv2d`]; for the grouped FC3 cases
//! (1×1 kernel on a 1×1 input, groups > 1) `conv/tensor-core-batched-gemm/{case}`
//! runs the same maths as one [`gemm_batched`] over the groups, writing
//! `[groups, N, O/groups]` (the layout a batched-GEMM FC3 would keep). The
//! difference between the two is what conv2d's grouped-FC path costs on top of
//! the GEMM (interleaving the groups back into `[N, O]`).
//!
//! The thread count comes from `ALLMLP_NUM_THREADS` (set by `cargo xtask bench`).
use std::hint::black_box;
use std::time::Duration;

use allmlp_benches::{CONV_CASES, ConvCase};
use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::conv::{Conv2dParams, conv2d};
use allmlp_tensor_core::gemm::{MatMut, MatRef, gemm_batched};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn inputs(case: &ConvCase) -> (Tensor, Tensor) {
    let x = Tensor::randn(&[case.n, case.c, case.h, case.w], 0.0, 1.0, 1).expect("x");
    let w = Tensor::randn(
        &[case.o, case.c / case.groups, case.k, case.k],
        0.0,
        0.05,
        2,
    )
    .expect("w");
    (x, w)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for case in CONV_CASES {
        let (x, w) = inputs(&case);
        let p = Conv2dParams::square(case.stride, case.pad, case.groups);
        group.throughput(Throughput::Elements(case.flops() as u64));
        group.bench_function(format!("tensor-core/{}", case.name), |b| {
            b.iter(|| conv2d(black_box(&x), black_box(&w), None, p).expect("conv2d"))
        });
        if case.h == 1 && case.w == 1 && case.k == 1 && case.groups > 1 {
            let (n, g) = (case.n, case.groups);
            let (cg, og) = (case.c / g, case.o / g);
            let xs = x.as_slice().expect("contiguous");
            let ws = w.as_slice().expect("contiguous");
            let mut out = vec![0.0f32; n * case.o];
            group.bench_function(format!("tensor-core-batched-gemm/{}", case.name), |b| {
                b.iter(|| {
                    // Y_g [N, og] = X_g [N, Cg] · W_gᵀ [Cg, og], for every group g.
                    let a = MatRef::new(black_box(xs), n, cg, case.c, 1).expect("A");
                    let bm = MatRef::row_major(black_box(ws), og, cg).expect("B").t();
                    let cm = MatMut::row_major(&mut out, n, og).expect("C");
                    gemm_batched(g, 1.0, a, cg, bm, og * cg, 0.0, cm, n * og).expect("gemm");
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
