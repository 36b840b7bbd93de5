//! The RepVGG merge: the deploy conv's output equals the three-branch training forward
//! (3×3 conv → BN) + (1×1 conv → BN) + BN(x), with randomised BN statistics, computed with the
//! tensor-core `conv2d` and `batch_norm_eval`.
//!
//! Tolerance 1e-5 relative: f32 on both sides, sums of ≤ 8·9 products plus three branches.

mod common;

use allmlp_reparam::{BnParams, ConvBn, Tensor, identity_kernel, repvgg_merge};
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

fn branch(o: usize, cg: usize, k: usize, seed: u64) -> ConvBn {
    ConvBn {
        kernel: randn(&[o, cg, k, k], 0.5, seed),
        bn: rand_bn(o, seed + 1),
    }
}

#[test]
fn merged_conv_equals_three_branch_forward() {
    let mut worst = 0f64;
    // (C, O, groups, stride, with identity): identity only when C == O and stride 1.
    for (case, &(c, o, g, stride, ident)) in [
        (8, 8, 1, 1, true),
        (8, 8, 2, 1, true),
        (8, 8, 4, 1, true),
        (6, 6, 3, 1, false),
        (4, 8, 2, 2, false),
        (8, 8, 1, 2, false),
    ]
    .iter()
    .enumerate()
    {
        let seed = 1000 * case as u64;
        let x = randn(&[2, c, 7, 6], 1.0, seed);
        let dense = branch(o, c / g, 3, seed + 10);
        let one = branch(o, c / g, 1, seed + 20);
        let id = ident.then(|| rand_bn(c, seed + 30));
        let p3 = Conv2dParams::square(stride, 1, g);
        let p1 = Conv2dParams::square(stride, 0, g);
        let mut want = add(
            &bn_eval(&conv2d(&x, &dense.kernel, None, p3).unwrap(), &dense.bn),
            &bn_eval(&conv2d(&x, &one.kernel, None, p1).unwrap(), &one.bn),
        );
        if let Some(id) = &id {
            want = add(&want, &bn_eval(&x, id));
        }
        let (k, b) = repvgg_merge(&dense, Some(&one), id.as_ref(), g).unwrap();
        assert_eq!(k.shape(), &[o, c / g, 3, 3]);
        let got = conv2d(&x, &k, Some(&b), p3).unwrap();
        worst = worst.max(assert_close(&format!("case {case}"), &got, &want, 1e-5));
    }
    // Dense branch alone is plain BN fusion.
    let dense = branch(4, 4, 3, 77);
    let (k, b) = repvgg_merge(&dense, None, None, 1).unwrap();
    let (k2, b2) = dense.fuse().unwrap();
    assert_eq!((k.to_vec(), b.to_vec()), (k2.to_vec(), b2.to_vec()));
    eprintln!("repvgg merge: worst relative error {worst:.3e}");
}

#[test]
fn identity_kernel_is_the_identity_conv() {
    for (c, g, k) in [(6, 1, 3), (6, 2, 3), (6, 6, 5), (4, 2, 1)] {
        let x = randn(&[2, c, 4, 5], 1.0, 3);
        let id = identity_kernel(c, g, k).unwrap();
        let y = conv2d(&x, &id, None, Conv2dParams::square(1, k / 2, g)).unwrap();
        assert_eq!(y.to_vec(), x.to_vec(), "c={c} g={g} k={k}");
    }
}

#[test]
fn errors_name_the_function() {
    let e = err_of(identity_kernel(6, 4, 3), "identity_kernel");
    assert!(e.contains("groups = 4"), "{e}");
    err_of(identity_kernel(6, 2, 2), "identity_kernel");
    let dense = branch(8, 2, 3, 1);
    // C = 2·2 = 4 ≠ O = 8: no identity.
    let e = err_of(
        repvgg_merge(&dense, None, Some(&rand_bn(4, 2)), 2),
        "repvgg_merge",
    );
    assert!(e.contains("C = 4, O = 8"), "{e}");
    let e = err_of(
        repvgg_merge(&dense, Some(&branch(8, 3, 1, 3)), None, 2),
        "repvgg_merge",
    );
    assert!(
        e.contains("[8, 2, 1, 1]") && e.contains("[8, 3, 1, 1]"),
        "{e}"
    );
    err_of(repvgg_merge(&dense, None, None, 3), "repvgg_merge");
    let mut bad = branch(8, 2, 3, 4);
    bad.bn = rand_bn(7, 5);
    err_of(repvgg_merge(&bad, None, None, 2), "fuse_bn");
    let even = branch(8, 2, 2, 6);
    err_of(repvgg_merge(&even, None, None, 2), "repvgg_merge");
}
