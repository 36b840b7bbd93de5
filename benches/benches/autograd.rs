//! Autograd overhead: Mixer-tiny's channel-MLP block (LayerNorm → fc1 → GELU →
//! fc2 → residual) on a batch of 128 images of 49 tokens × 128 channels, computed
//! three ways: tensor-core kernels called directly, the autograd ops under
//! `no_grad` (inference), and the autograd ops recording a tape (training
//! forward). The first two should cost the same.

use allmlp_autograd::ops::{layer_norm, linear};
use allmlp_autograd::{Var, no_grad};
use allmlp_benches::AUTOGRAD_CASES;
use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::gemm::{MatMut, MatRef, gemm};
use allmlp_tensor_core::norm::layer_norm as ln_kernel;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TOKENS: usize = 49;
const DIM: usize = 128;
const HIDDEN: usize = 512;

struct Params {
    ln_w: Tensor,
    ln_b: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

fn params() -> Params {
    Params {
        ln_w: Tensor::randn(&[DIM], 1.0, 0.1, 1).unwrap(),
        ln_b: Tensor::randn(&[DIM], 0.0, 0.1, 2).unwrap(),
        w1: Tensor::randn(&[HIDDEN, DIM], 0.0, 0.05, 3).unwrap(),
        b1: Tensor::randn(&[HIDDEN], 0.0, 0.05, 4).unwrap(),
        w2: Tensor::randn(&[DIM, HIDDEN], 0.0, 0.05, 5).unwrap(),
        b2: Tensor::randn(&[DIM], 0.0, 0.05, 6).unwrap(),
    }
}

/// `y = x·Wᵀ + b` on rows, straight to the GEMM.
fn fc(x: &[f32], rows: usize, w: &Tensor, b: &Tensor) -> Vec<f32> {
    let (out, inp) = (w.shape()[0], w.shape()[1]);
    let mut y = b.as_slice().unwrap().repeat(rows);
    gemm(
        1.0,
        MatRef::row_major(x, rows, inp).unwrap(),
        MatRef::row_major(w.as_slice().unwrap(), out, inp)
            .unwrap()
            .t(),
        1.0,
        MatMut::row_major(&mut y, rows, out).unwrap(),
    )
    .unwrap();
    y
}

fn direct(x: &Tensor, p: &Params) -> Tensor {
    let rows = x.numel() / DIM;
    let n = ln_kernel(x, Some(&p.ln_w), Some(&p.ln_b), 1e-6).unwrap().y;
    let h = Tensor::from_vec(
        fc(n.as_slice().unwrap(), rows, &p.w1, &p.b1),
        &[rows, HIDDEN],
    )
    .unwrap()
    .gelu();
    let y = fc(h.as_slice().unwrap(), rows, &p.w2, &p.b2);
    Tensor::from_vec(y, x.shape()).unwrap().add(x).unwrap()
}

fn through_autograd(x: &Var, v: &[Var]) -> Var {
    let n = layer_norm(x, Some(&v[0]), Some(&v[1]), 1e-6).unwrap();
    let h = linear(&n, &v[2], Some(&v[3])).unwrap().gelu();
    linear(&h, &v[4], Some(&v[5])).unwrap().add(x).unwrap()
}

fn bench(c: &mut Criterion) {
    let (name, batch) = AUTOGRAD_CASES[0];
    let p = params();
    let x = Tensor::randn(&[batch, TOKENS, DIM], 0.0, 1.0, 7).unwrap();
    let vars: Vec<Var> = [&p.ln_w, &p.ln_b, &p.w1, &p.b1, &p.w2, &p.b2]
        .iter()
        .map(|t| Var::parameter((*t).clone()))
        .collect();
    let xv = Var::constant(x.clone());
    let mut g = c.benchmark_group("autograd");
    g.sample_size(20)
        .throughput(Throughput::Elements(batch as u64));
    g.bench_function(format!("tensor-core/{name}"), |b| b.iter(|| direct(&x, &p)));
    g.bench_function(format!("no-grad/{name}"), |b| {
        b.iter(|| no_grad(|| through_autograd(&xv, &vars)))
    });
    g.bench_function(format!("recording/{name}"), |b| {
        b.iter(|| through_autograd(&xv, &vars))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
