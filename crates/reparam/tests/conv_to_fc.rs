//! Conv → FC: Algorithm 1 and the direct index construction give the same matrix, and that FC
//! applied to flattened partitions equals the conv on the partitions (zero padding at the
//! borders), element by element.
//!
//! Tolerances: the two constructions copy kernel taps (Algorithm 1 through a GEMM whose other
//! operand is 0/1, so each entry is one tap times 1 plus zeros): ≤ 1e-6 relative (observed
//! 0). The FC-vs-conv check runs both in f64 on the same f32 taps: ≤ 1e-5 (observed 5e-8, the
//! rounding of the f64 FC result to f32); against the f32 tensor-core conv2d: ≤ 1e-5 (f32 sums
//! of ≤ 8·49 products; observed 2e-7).

mod common;

use std::time::Instant;

use allmlp_reparam::{
    Tensor, conv_bias_to_fc, conv_to_fc, conv_to_fc_algorithm1, merge_branches, pad_kernel,
};
use allmlp_tensor_core::conv::{Conv2dParams, conv2d};
use common::*;

/// Kernels 1, 3, 5, 7 × groups 1, 2, 4, 8, with C ≠ O and h ≠ w (k = 7 > h = 3 leaves taps
/// that never land inside the partition).
#[test]
fn algorithm1_equals_direct_construction() {
    let mut worst = 0f64;
    for k in [1, 3, 5, 7] {
        for g in [1, 2, 4, 8] {
            for (c, o, h, w) in [(8, 16, 3, 5), (16, 8, 4, 2)] {
                let seed = (k * 100 + g * 10 + c) as u64;
                let kern = randn(&[o, c / g, k, k], 1.0, seed);
                let direct = conv_to_fc(&kern, g, h, w).unwrap();
                let alg1 = conv_to_fc_algorithm1(&kern, g, h, w).unwrap();
                assert_eq!(direct.shape(), &[o * h * w, c * h * w / g, 1, 1]);
                let what = format!("k={k} g={g} C={c} O={o} {h}×{w}");
                worst = worst.max(assert_close(&what, &direct, &alg1, 1e-6));
            }
        }
    }
    eprintln!("algorithm 1 vs direct: worst relative error {worst:.3e}");
}

/// The FC on flattened partitions equals the conv on the partitions, for random partitions
/// `[N, C, h, w]`, kernels 1..7, groups 1..8, C ≠ O, h ≠ w, with a bias.
#[test]
fn fc_on_flattened_partitions_equals_conv_on_partitions() {
    let (mut worst_f64, mut worst_f32) = (0f64, 0f64);
    for k in [1, 3, 5, 7] {
        for g in [1, 2, 4, 8] {
            let (n, c, o, h, w) = (3, 8, 16, 4, 3);
            let seed = (1000 + k * 10 + g) as u64;
            let kern = randn(&[o, c / g, k, k], 1.0, seed);
            let bias = randn(&[o], 1.0, seed + 1);
            let x = randn(&[n, c, h, w], 1.0, seed + 2);
            let fc = conv_to_fc(&kern, g, h, w).unwrap();
            let fb = conv_bias_to_fc(&bias, h, w).unwrap();
            let via_fc = naive_grouped_fc(&x.reshape(&[n, c * h * w]).unwrap(), &fc, Some(&fb), g);
            let via_conv = naive_conv(&x, &kern, Some(&bias), g);
            let f32s: Vec<f32> = via_fc.iter().map(|&v| v as f32).collect();
            let e = rel_err(&f32s, &via_conv);
            assert!(e <= 1e-5, "k={k} g={g}: fc vs naive conv {e:.3e}");
            worst_f64 = worst_f64.max(e);
            let tc = conv2d(&x, &kern, Some(&bias), Conv2dParams::square(1, k / 2, g)).unwrap();
            let e = rel_err(&tc.to_vec(), &via_fc);
            assert!(e <= 1e-5, "k={k} g={g}: fc vs conv2d {e:.3e}");
            worst_f32 = worst_f32.max(e);
        }
    }
    eprintln!("fc vs naive f64 conv: {worst_f64:.3e}; fc vs f32 conv2d: {worst_f32:.3e}");
}

#[test]
fn bias_is_repeat_interleaved_over_pixels() {
    let b = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
    let fb = conv_bias_to_fc(&b, 1, 3).unwrap();
    assert_eq!(fb.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
}

/// conv_to_fc(K1 + K2) == conv_to_fc(K1) + conv_to_fc(K2) on random shapes, both constructions.
#[test]
fn conversion_is_linear() {
    let mut r = rng(7);
    for case in 0..24 {
        let g = [1, 2, 3][r.below(3) as usize];
        let (c, o) = (g * (1 + r.below(3) as usize), g * (1 + r.below(3) as usize));
        let k = 2 * r.below(4) as usize + 1;
        let (h, w) = (1 + r.below(5) as usize, 1 + r.below(5) as usize);
        let (k1, k2) = (
            randn(&[o, c / g, k, k], 1.0, case),
            randn(&[o, c / g, k, k], 1.0, case + 100),
        );
        for f in [conv_to_fc, conv_to_fc_algorithm1] {
            let lhs = f(&add(&k1, &k2), g, h, w).unwrap();
            let rhs = add(&f(&k1, g, h, w).unwrap(), &f(&k2, g, h, w).unwrap());
            assert_close(&format!("case {case}"), &lhs, &rhs, 1e-6);
        }
    }
}

/// Padding the smaller kernels and merging, then converting, equals converting each branch at
/// its own size and adding the FCs.
#[test]
fn padding_and_merging_commute_with_conversion() {
    let (c, o, g, h, w) = (4, 6, 2, 5, 3);
    let branches: Vec<(Tensor, Tensor)> = [1, 3, 5]
        .iter()
        .map(|&k| {
            (
                randn(&[o, c / g, k, k], 1.0, k as u64),
                randn(&[o], 1.0, 10 + k as u64),
            )
        })
        .collect();
    let (mk, mb) = merge_branches(&branches).unwrap();
    assert_eq!(mk.shape(), &[o, c / g, 5, 5]);
    let merged = conv_to_fc(&mk, g, h, w).unwrap();
    let mut sum = Tensor::zeros(merged.shape()).unwrap();
    let mut bsum = Tensor::zeros(&[o * h * w]).unwrap();
    for (k, b) in &branches {
        sum = add(&sum, &conv_to_fc(k, g, h, w).unwrap());
        bsum = add(&bsum, &conv_bias_to_fc(b, h, w).unwrap());
        // Padding alone does not change the FC.
        let padded = conv_to_fc(&pad_kernel(k, 7).unwrap(), g, h, w).unwrap();
        assert_close("pad to 7", &padded, &conv_to_fc(k, g, h, w).unwrap(), 0.0);
    }
    assert_close("merged weight", &merged, &sum, 1e-6);
    assert_close(
        "merged bias",
        &conv_bias_to_fc(&mb, h, w).unwrap(),
        &bsum,
        1e-6,
    );
}

/// The largest RepMLPNet fc3 by rows: S·h·w = 128·7·7 = 6272 (stage 4, depth-wise 3×3 local
/// kernel), weight [6272, 49]. Measured on the 2-core dev machine (test profile, opt-level 2):
/// direct ≈ 0.4 ms, Algorithm 1 ≈ 13 ms. See `largest_stage1_fc3_timing` for the largest by
/// size (S = 1, 64×64: [4096, 4096]).
#[test]
fn largest_repmlpnet_fc3_rows() {
    let (s, h, w) = (128, 7, 7);
    let kern = randn(&[s, 1, 3, 3], 1.0, 5);
    let t = Instant::now();
    let direct = conv_to_fc(&kern, s, h, w).unwrap();
    let t_direct = t.elapsed();
    let t = Instant::now();
    let alg1 = conv_to_fc_algorithm1(&kern, s, h, w).unwrap();
    let t_alg1 = t.elapsed();
    assert_eq!(direct.shape(), &[6272, 49, 1, 1]);
    assert_close("6272 rows", &direct, &alg1, 1e-6);
    eprintln!("fc3 [6272, 49]: direct {t_direct:?}, algorithm 1 {t_alg1:?}");
}

/// Stage-1 fc3 of RepMLPNet-*256 (S = 1, h = w = 64: weight [4096, 4096], 16.8M entries) and
/// *224 (56×56: [3136, 3136]). Measured as above: 56×56 direct ≈ 5 ms, Algorithm 1 ≈ 0.5 s;
/// 64×64 direct ≈ 11 ms, Algorithm 1 ≈ 0.7 s. Moves a few hundred MB, so not run by default:
/// `cargo test -p allmlp-reparam --test conv_to_fc -- --ignored --nocapture`.
#[test]
#[ignore]
fn largest_stage1_fc3_timing() {
    for hw in [56, 64] {
        let kern = randn(&[1, 1, 3, 3], 1.0, 6);
        let t = Instant::now();
        let direct = conv_to_fc(&kern, 1, hw, hw).unwrap();
        let t_direct = t.elapsed();
        let t = Instant::now();
        let alg1 = conv_to_fc_algorithm1(&kern, 1, hw, hw).unwrap();
        let t_alg1 = t.elapsed();
        assert_close("stage 1", &direct, &alg1, 1e-6);
        eprintln!(
            "fc3 {:?}: direct {t_direct:?}, algorithm 1 {t_alg1:?}",
            direct.shape()
        );
    }
}

#[test]
fn errors_name_the_function_expected_and_got() {
    for (f, op) in [
        (
            conv_to_fc as fn(&Tensor, usize, usize, usize) -> _,
            "conv_to_fc",
        ),
        (conv_to_fc_algorithm1, "conv_to_fc_algorithm1"),
    ] {
        let e = err_of(f(&randn(&[4, 2, 2, 2], 1.0, 0), 2, 3, 3), op);
        assert!(e.contains("k odd") && e.contains("k = 2"), "{e}");
        let e = err_of(f(&randn(&[6, 2, 3, 3], 1.0, 0), 4, 3, 3), op);
        assert!(
            e.contains("divisible by groups = 4") && e.contains("O = 6"),
            "{e}"
        );
        err_of(f(&randn(&[4, 2, 3, 3], 1.0, 0), 0, 3, 3), op);
        err_of(f(&randn(&[4, 2, 3, 3], 1.0, 0), 2, 0, 3), op);
        err_of(f(&randn(&[4, 2, 3], 1.0, 0), 2, 3, 3), op);
        err_of(f(&randn(&[4, 2, 3, 5], 1.0, 0), 2, 3, 3), op);
    }
    err_of(
        conv_bias_to_fc(&randn(&[2, 2], 1.0, 0), 3, 3),
        "conv_bias_to_fc",
    );
    err_of(
        conv_bias_to_fc(&randn(&[2], 1.0, 0), 0, 3),
        "conv_bias_to_fc",
    );
    let e = err_of(pad_kernel(&randn(&[1, 1, 3, 3], 1.0, 0), 2), "pad_kernel");
    assert!(e.contains("K = 2"), "{e}");
    err_of(pad_kernel(&randn(&[1, 1, 5, 5], 1.0, 0), 3), "pad_kernel");
    err_of(merge_branches(&[]), "merge_branches");
    let b = randn(&[4], 1.0, 0);
    let e = err_of(
        merge_branches(&[
            (randn(&[4, 2, 3, 3], 1.0, 0), b.clone()),
            (randn(&[4, 1, 1, 1], 1.0, 0), b.clone()),
        ]),
        "merge_branches",
    );
    assert!(e.contains("C/g = 2"), "{e}");
    err_of(
        merge_branches(&[(randn(&[4, 2, 3, 3], 1.0, 0), randn(&[3], 1.0, 0))]),
        "merge_branches",
    );
}
