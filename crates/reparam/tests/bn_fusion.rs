//! `fuse_bn` / `fuse_bn_repeat_interleave`: the fused layer's output equals layer → BN (eval,
//! randomised statistics), element by element.
//!
//! Tolerance 1e-5 relative (max|diff|/max|ref|): both sides are f32 sums of ≤ 72 products
//! plus one per-channel affine map; the fused weights differ from the unfused path by one
//! f32 rounding of `W·t`.

mod common;

use allmlp_reparam::{BnParams, Tensor, fold_bn_into_fc1, fuse_bn, fuse_bn_repeat_interleave};
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

#[test]
fn conv_bn_fuses_with_and_without_bias_and_groups() {
    for (case, &(c, o, g, k, with_bias)) in [
        (4, 6, 2, 3, false),
        (4, 6, 2, 3, true),
        (3, 5, 1, 1, true),
        (8, 8, 8, 5, false),
    ]
    .iter()
    .enumerate()
    {
        let seed = 100 * case as u64;
        let x = randn(&[2, c, 5, 4], 1.0, seed);
        let w = randn(&[o, c / g, k, k], 0.5, seed + 1);
        let b = with_bias.then(|| randn(&[o], 1.0, seed + 2));
        let bn = rand_bn(o, seed + 3);
        let p = Conv2dParams::square(1, k / 2, g);
        let want = bn_eval(&conv2d(&x, &w, b.as_ref(), p).unwrap(), &bn);
        let (w2, b2) = fuse_bn(&w, b.as_ref(), &bn).unwrap();
        assert_eq!(w2.shape(), w.shape());
        let got = conv2d(&x, &w2, Some(&b2), p).unwrap();
        assert_close(&format!("conv case {case}"), &got, &want, 1e-5);
    }
}

#[test]
fn fc_bn_fuses_and_accepts_a_non_contiguous_weight() {
    let (n, i, o) = (3, 7, 5);
    let x = randn(&[n, i], 1.0, 1);
    // weight [O, I] as a transposed view of an [I, O] tensor.
    let w = randn(&[i, o], 0.5, 2).transpose(0, 1).unwrap();
    assert!(!w.is_contiguous());
    let b = randn(&[o], 1.0, 3);
    let bn = rand_bn(o, 4);
    let z = x.matmul(&w.transpose(0, 1).unwrap()).unwrap();
    let z = add(
        &z,
        &b.reshape(&[1, o])
            .unwrap()
            .broadcast_to(&[n, o])
            .unwrap()
            .contiguous(),
    );
    let want = bn_eval(&z, &bn);
    let (w2, b2) = fuse_bn(&w, Some(&b), &bn).unwrap();
    let got = naive_grouped_fc(&x, &w2, Some(&b2), 1);
    let e = rel_err(&want.to_vec(), &got);
    assert!(e <= 1e-5, "fc: {e:.3e}");
}

#[test]
fn repmlpnet_fc3_bn_over_sharesets_fuses_with_repeat_interleave() {
    // fc3: Conv2d(S·h·w, S·h·w, 1, groups=S) on [M, S·h·w, 1, 1], then BatchNorm2d(S) on the
    // output reshaped to [M, S, h, w] (authors' `partition_affine`).
    let (m, s, h, w) = (3, 4, 3, 5);
    let hw = h * w;
    let x = randn(&[m, s * hw, 1, 1], 1.0, 10);
    let fc3 = randn(&[s * hw, hw, 1, 1], 0.3, 11);
    let bn = rand_bn(s, 12);
    for bias in [None, Some(randn(&[s * hw], 1.0, 13))] {
        let p = Conv2dParams::square(1, 0, s);
        let z = conv2d(&x, &fc3, bias.as_ref(), p).unwrap();
        let want = bn_eval(&z.reshape(&[m, s, h, w]).unwrap(), &bn);
        let (w2, b2) = fuse_bn_repeat_interleave(&fc3, bias.as_ref(), &bn, hw).unwrap();
        let got = conv2d(&x, &w2, Some(&b2), p).unwrap();
        assert_close(
            "repmlpnet fc3",
            &got.reshape(&[m, s, h, w]).unwrap(),
            &want,
            1e-5,
        );
    }
    // repeat = 1 is plain fuse_bn, bit for bit.
    let bn = rand_bn(s * hw, 14);
    let a = fuse_bn(&fc3, None, &bn).unwrap();
    let b = fuse_bn_repeat_interleave(&fc3, None, &bn, 1).unwrap();
    assert_eq!((a.0.to_vec(), a.1.to_vec()), (b.0.to_vec(), b.1.to_vec()));
}

#[test]
fn bn_params_from_layers_match_their_eval_forward() {
    use allmlp_layers::autograd::Var;
    use allmlp_layers::{BatchNorm2d, Ctx, Module};
    let bn = rand_bn(3, 20);
    let layer = BatchNorm2d::from_tensors(
        Some(bn.weight.clone()),
        Some(bn.bias.clone()),
        bn.running_mean.clone(),
        bn.running_var.clone(),
        bn.eps,
        Some(0.1),
    )
    .unwrap();
    let p = BnParams::from_batch_norm2d(&layer).unwrap();
    let x = randn(&[2, 3, 2, 2], 1.0, 21);
    let want = layer
        .forward(&Var::constant(x.clone()), &Ctx::eval())
        .unwrap()
        .value();
    let (w, b) = fuse_bn(&Tensor::ones(&[3, 1, 1, 1]).unwrap(), None, &p).unwrap();
    let got = conv2d(&x, &w, Some(&b), Conv2dParams::square(1, 0, 3)).unwrap();
    assert_close("from_batch_norm2d", &got, &want, 1e-5);
}

#[test]
fn errors_name_the_function_and_the_shapes() {
    let bn = rand_bn(4, 30);
    let e = err_of(fuse_bn(&randn(&[5, 2, 3, 3], 1.0, 0), None, &bn), "fuse_bn");
    assert!(e.contains("O = 5") && e.contains("length 4"), "{e}");
    let e = err_of(
        fuse_bn(&randn(&[4, 3], 1.0, 0), Some(&randn(&[3], 1.0, 0)), &bn),
        "fuse_bn",
    );
    assert!(e.contains("bias [O] = [4]") && e.contains("[3]"), "{e}");
    err_of(fuse_bn(&Tensor::scalar(1.0), None, &bn), "fuse_bn");
    let e = err_of(
        fuse_bn_repeat_interleave(&randn(&[10, 3], 1.0, 0), None, &bn, 2),
        "fuse_bn_repeat_interleave",
    );
    assert!(e.contains("repeat = 2") && e.contains("O = 10"), "{e}");
    err_of(
        fuse_bn_repeat_interleave(&randn(&[8, 3], 1.0, 0), None, &bn, 0),
        "fuse_bn_repeat_interleave",
    );
    let t = |n| Tensor::ones(&[n]).unwrap();
    let e = err_of(BnParams::new(t(3), t(3), t(2), t(3), 1e-5), "BnParams::new");
    assert!(e.contains("running_mean"), "{e}");
    err_of(BnParams::new(t(3), t(3), t(3), t(3), 0.0), "BnParams::new");
    let neg = Tensor::full(&[3], -1.0).unwrap();
    err_of(BnParams::new(t(3), t(3), t(3), neg, 1e-5), "BnParams::new");
    // Parameters built field by field are checked by every fold, not indexed past
    // their end.
    let short_bias = BnParams {
        bias: t(2),
        ..rand_bn(4, 31)
    };
    let e = err_of(
        fuse_bn(&randn(&[4, 3], 1.0, 0), None, &short_bias),
        "fuse_bn",
    );
    assert!(
        e.contains("bias [C] = [4]") && e.contains("bias [2]"),
        "{e}"
    );
    let short_var = BnParams {
        running_var: t(1),
        ..rand_bn(4, 32)
    };
    let e = err_of(
        fold_bn_into_fc1(&short_var, &randn(&[2, 8], 1.0, 0), None),
        "fold_bn_into_fc1",
    );
    assert!(e.contains("running_var"), "{e}");
}
