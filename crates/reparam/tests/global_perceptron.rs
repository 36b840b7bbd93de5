//! Folding the BN after RepMLP v1's Global Perceptron average pool into fc1: the Global
//! Perceptron `avg-pool → BN → flatten → fc1 → ReLU → fc2` equals `avg-pool → flatten →
//! fc1' → ReLU → fc2` (randomised BN statistics).
//!
//! Tolerance 1e-5 relative: f64 references on both sides of f32 weights; the only error is
//! the f32 rounding of the folded weight and bias.

mod common;

use allmlp_reparam::{Tensor, fold_bn_into_fc1};
use allmlp_tensor_core::norm::batch_norm_eval;
use common::*;

/// `x: [N, C, H, W]` average-pooled over `h×w` windows → `[N, C, H/h, W/w]`.
fn avg_pool(x: &Tensor, h: usize, w: usize) -> Tensor {
    let [n, c, hh, ww] = *x.shape() else { panic!() };
    let (hp, wp) = (hh / h, ww / w);
    let xs = x.to_vec();
    let mut y = vec![0.0f32; n * c * hp * wp];
    for p in 0..n * c {
        for i in 0..hp {
            for j in 0..wp {
                let mut s = 0.0;
                for a in 0..h {
                    for b in 0..w {
                        s += xs[(p * hh + i * h + a) * ww + j * w + b];
                    }
                }
                y[(p * hp + i) * wp + j] = s / (h * w) as f32;
            }
        }
    }
    Tensor::from_vec(y, &[n, c, hp, wp]).unwrap()
}

fn relu(v: Vec<f64>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(v.into_iter().map(|x| x.max(0.0) as f32).collect(), &[n]).unwrap()
}

#[test]
fn folded_global_perceptron_equals_training_form() {
    // C = 3 channels, H×W = 6×8, partitions 3×4 ⇒ Hp×Wp = 2×2, fc1: 12 → 6 (reduction 2).
    let (n, c, hh, ww, h, w) = (4, 3, 6, 8, 3, 4);
    let (hp, wp) = (hh / h, ww / w);
    let inp = c * hp * wp;
    let hidden = inp / 2;
    let x = randn(&[n, c, hh, ww], 1.0, 1);
    let bn = rand_bn(c, 2);
    let fc1_w = randn(&[hidden, inp], 0.5, 3);
    let fc1_b = randn(&[hidden], 1.0, 4);
    let fc2_w = randn(&[inp, hidden], 0.5, 5);
    let fc2_b = randn(&[inp], 1.0, 6);
    let pooled = avg_pool(&x, h, w);
    let normed = batch_norm_eval(
        &pooled,
        Some(&bn.weight),
        Some(&bn.bias),
        &bn.running_mean,
        &bn.running_var,
        bn.eps,
    )
    .unwrap();
    let flat = |t: &Tensor| t.reshape(&[n, inp]).unwrap();
    let forward = |v: &Tensor, w1: &Tensor, b1: &Tensor| {
        let z = relu(naive_grouped_fc(v, w1, Some(b1), 1))
            .reshape(&[n, hidden])
            .unwrap();
        naive_grouped_fc(&z, &fc2_w, Some(&fc2_b), 1)
    };
    let want = forward(&flat(&normed), &fc1_w, &fc1_b);
    let (w1, b1) = fold_bn_into_fc1(&bn, &fc1_w, Some(&fc1_b)).unwrap();
    let got = forward(&flat(&pooled), &w1, &b1);
    let got32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
    let e = rel_err(&got32, &want);
    assert!(e <= 1e-5, "global perceptron: {e:.3e}");
    // fc1's output before the ReLU, too (the ReLU could hide sign errors on clipped units).
    let pre_want = naive_grouped_fc(&flat(&normed), &fc1_w, Some(&fc1_b), 1);
    let pre_got: Vec<f32> = naive_grouped_fc(&flat(&pooled), &w1, Some(&b1), 1)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let e2 = rel_err(&pre_got, &pre_want);
    assert!(e2 <= 1e-5, "fc1 output: {e2:.3e}");
    eprintln!("global perceptron fold: output {e:.3e}, fc1 output {e2:.3e}");
    // No fc1 bias: b' = W·s_rep alone.
    let (_, b0) = fold_bn_into_fc1(&bn, &fc1_w, None).unwrap();
    let diff: Vec<f32> = b1
        .to_vec()
        .iter()
        .zip(b0.to_vec())
        .map(|(a, b)| a - b)
        .collect();
    let e3 = rel_err(&diff, &f64s(&fc1_b));
    assert!(e3 <= 1e-5, "bias-free fold: {e3:.3e}");
}

#[test]
fn errors_name_the_function() {
    let bn = rand_bn(3, 0);
    let e = err_of(
        fold_bn_into_fc1(&bn, &randn(&[4, 10], 1.0, 0), None),
        "fold_bn_into_fc1",
    );
    assert!(e.contains("C = 3") && e.contains("[4, 10]"), "{e}");
    err_of(
        fold_bn_into_fc1(&bn, &randn(&[4, 12, 1], 1.0, 0), None),
        "fold_bn_into_fc1",
    );
    let e = err_of(
        fold_bn_into_fc1(&bn, &randn(&[4, 12], 1.0, 0), Some(&randn(&[5], 1.0, 0))),
        "fold_bn_into_fc1",
    );
    assert!(e.contains("[4]") && e.contains("[5]"), "{e}");
}
