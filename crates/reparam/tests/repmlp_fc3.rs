//! `equivalent_fc3`: the deploy FC3 reproduces the training-time Partition + Local Perceptron
//! (FC3 → BN, plus Σ conv-BN branches) on random partitions, for the v1 block (BatchNorm1d over
//! O·h·w, groups g, C ≠ O allowed) and the RepMLPNet block (BatchNorm2d(S), depth-wise local
//! convs). References: tensor-core `conv2d` and `batch_norm_eval`, randomised BN statistics.
//!
//! Tolerance 1e-5 relative: f32 sums of ≤ C·h·w/g = 48 products on both sides.

mod common;

use allmlp_reparam::{BnParams, ConvBn, Fc3Bn, Tensor, equivalent_fc3};
use allmlp_tensor_core::conv::{Conv2dParams, conv2d};
use allmlp_tensor_core::norm::batch_norm_eval;
use common::*;

fn bn_eval(x: &Tensor, bn: &BnParams) -> Tensor {
    batch_norm_eval(
        x,
        Some(&bn.weight),
        Some(&bn.bias),
        &bn.running_mean,
        &bn.running_var,
        bn.eps,
    )
    .unwrap()
}

/// Training-time output `[M, O·h·w]` and deploy output of one configuration.
#[allow(clippy::too_many_arguments)]
fn check(
    c: usize,
    o: usize,
    g: usize,
    h: usize,
    w: usize,
    ks: &[usize],
    per_channel: bool,
    seed: u64,
) -> f64 {
    let (m, hw) = (5, h * w);
    let x = randn(&[m, c, h, w], 1.0, seed);
    let fc3 = randn(&[o * hw, c * hw / g, 1, 1], 0.2, seed + 1);
    let fc3_bn = rand_bn(if per_channel { o } else { o * hw }, seed + 2);
    let local: Vec<ConvBn> = ks
        .iter()
        .map(|&k| ConvBn {
            kernel: randn(&[o, c / g, k, k], 0.5, seed + 10 * k as u64),
            bn: rand_bn(o, seed + 10 * k as u64 + 1),
        })
        .collect();
    let flat_in = x.reshape(&[m, c * hw, 1, 1]).unwrap();
    let z = conv2d(&flat_in, &fc3, None, Conv2dParams::square(1, 0, g)).unwrap();
    let mut want = if per_channel {
        bn_eval(&z.reshape(&[m, o, h, w]).unwrap(), &fc3_bn)
    } else {
        bn_eval(&z.reshape(&[m, o * hw]).unwrap(), &fc3_bn)
    }
    .reshape(&[m, o * hw])
    .unwrap();
    for b in &local {
        let k = b.kernel.shape()[2];
        let y = conv2d(&x, &b.kernel, None, Conv2dParams::square(1, k / 2, g)).unwrap();
        want = add(&want, &bn_eval(&y, &b.bn).reshape(&[m, o * hw]).unwrap());
    }
    let bn = if per_channel {
        Fc3Bn::PerChannel(&fc3_bn)
    } else {
        Fc3Bn::PerOutput(&fc3_bn)
    };
    let (wt, bias) = equivalent_fc3(&fc3, bn, &local, g, h, w).unwrap();
    assert_eq!(wt.shape(), fc3.shape());
    let got = conv2d(&flat_in, &wt, Some(&bias), Conv2dParams::square(1, 0, g)).unwrap();
    let what = format!("C={c} O={o} g={g} {h}×{w} k={ks:?} per_channel={per_channel}");
    assert_close(&what, &got.reshape(&[m, o * hw]).unwrap(), &want, 1e-5)
}

#[test]
fn v1_deploy_fc3_equals_partition_plus_local_perceptron() {
    let mut worst = 0f64;
    worst = worst.max(check(4, 4, 2, 3, 4, &[1, 3, 5], false, 1));
    worst = worst.max(check(4, 6, 2, 4, 3, &[1, 3], false, 2));
    worst = worst.max(check(8, 4, 4, 3, 3, &[3, 1, 5], false, 3));
    worst = worst.max(check(2, 2, 1, 2, 5, &[], false, 4));
    eprintln!("v1 fc3: worst relative error {worst:.3e}");
}

#[test]
fn repmlpnet_deploy_fc3_equals_partition_plus_local_perceptron() {
    let mut worst = 0f64;
    worst = worst.max(check(4, 4, 4, 3, 5, &[1, 3], true, 5));
    worst = worst.max(check(1, 1, 1, 4, 4, &[1, 3], true, 6));
    eprintln!("repmlpnet fc3: worst relative error {worst:.3e}");
}

#[test]
fn errors_name_the_step() {
    let bn = rand_bn(2 * 9, 0);
    let local = [ConvBn {
        kernel: randn(&[2, 1, 3, 3], 1.0, 1),
        bn: rand_bn(2, 2),
    }];
    // fc3 built for 4 input channels, local conv for 2 (groups 2): shapes disagree.
    let fc3 = randn(&[18, 18, 1, 1], 1.0, 3);
    let e = err_of(
        equivalent_fc3(&fc3, Fc3Bn::PerOutput(&bn), &local, 2, 3, 3),
        "equivalent_fc3",
    );
    assert!(e.contains("[18, 9]") && e.contains("[18, 18, 1, 1]"), "{e}");
    err_of(
        equivalent_fc3(&randn(&[18, 9, 3], 1.0, 0), Fc3Bn::None, &local, 2, 3, 3),
        "equivalent_fc3",
    );
    err_of(
        equivalent_fc3(&fc3, Fc3Bn::PerChannel(&bn), &local, 2, 3, 3),
        "fuse_bn_repeat_interleave",
    );
    err_of(
        equivalent_fc3(&fc3, Fc3Bn::None, &local, 2, 0, 3),
        "equivalent_fc3",
    );
}
