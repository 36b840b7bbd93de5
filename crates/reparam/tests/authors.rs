//! Our converted WEIGHTS against the authors' conversion code (transcribed into
//! tools/fixtures/reparam.py from DingXiaoH/RepMLP `repmlp.py`, `repmlpnet.py` and
//! DingXiaoH/RepVGG `repvgg.py`), randomised weights and BN statistics.
//!
//! Tolerance 1e-6 relative (max|diff|/max|ref|): the authors compute in f32 (t = γ/σ then W·t,
//! sums in their branch order), we in f64 rounded once; the difference is a few f32 ulps.

mod common;

use allmlp_reparam::{
    ConvBn, Fc3Bn, conv_bias_to_fc, conv_to_fc, conv_to_fc_algorithm1, equivalent_fc3,
    fold_bn_into_fc1, fuse_bn, fuse_bn_repeat_interleave, repvgg_merge,
};
use common::*;

const TOL: f64 = 1e-6;

#[test]
fn fused_bn_weights_match_the_authors() {
    let f = load_fixture("reparam");
    let mut worst = 0f64;
    for case in ["fuse_conv", "fuse_fc"] {
        let bn = fixture_bn(&f, &format!("{case}.bn"));
        let (w, b) = fuse_bn(&f[&format!("{case}.weight")], None, &bn).unwrap();
        worst = worst.max(assert_close(
            case,
            &w,
            &f[&format!("{case}.out.weight")],
            TOL,
        ));
        worst = worst.max(assert_close(case, &b, &f[&format!("{case}.out.bias")], TOL));
    }
    let bn = fixture_bn(&f, "fuse_net.bn");
    let (w, b) = fuse_bn_repeat_interleave(&f["fuse_net.weight"], None, &bn, 6).unwrap();
    worst = worst.max(assert_close("fuse_net", &w, &f["fuse_net.out.weight"], TOL));
    worst = worst.max(assert_close("fuse_net", &b, &f["fuse_net.out.bias"], TOL));
    eprintln!("fuse_bn vs authors: {worst:.3e}");
}

#[test]
fn conv_to_fc_matches_the_authors() {
    let f = load_fixture("reparam");
    let mut worst = 0f64;
    // v1 `_convert_conv_to_fc`, C = O = 4, g = 2, 3×5 partitions.
    for k in [3, 5] {
        let kern = &f[&format!("fc_k{k}.kernel")];
        let want = &f[&format!("fc_k{k}.out.weight")];
        for got in [
            conv_to_fc(kern, 2, 3, 5).unwrap(),
            conv_to_fc_algorithm1(kern, 2, 3, 5).unwrap(),
        ] {
            worst = worst.max(assert_close(&format!("fc_k{k}"), &got, want, TOL));
        }
        let b = conv_bias_to_fc(&f[&format!("fc_k{k}.bias")], 3, 5).unwrap();
        worst = worst.max(assert_close(
            "bias",
            &b,
            &f[&format!("fc_k{k}.out.bias")],
            TOL,
        ));
    }
    // C = 4 ≠ O = 6: the corrected reshape (the script asserts the authors' one fails here).
    let got = conv_to_fc(&f["fc_co.kernel"], 2, 3, 4).unwrap();
    worst = worst.max(assert_close("fc_co", &got, &f["fc_co.out.weight"], TOL));
    // RepMLPNet `_convert_conv_to_fc`, S = 3, 3×4 partitions.
    let got = conv_to_fc(&f["fc_net.kernel"], 3, 3, 4).unwrap();
    worst = worst.max(assert_close("fc_net", &got, &f["fc_net.out.weight"], TOL));
    let b = conv_bias_to_fc(&f["fc_net.bias"], 3, 4).unwrap();
    worst = worst.max(assert_close("fc_net bias", &b, &f["fc_net.out.bias"], TOL));
    eprintln!("conv_to_fc vs authors: {worst:.3e}");
}

#[test]
fn repvgg_kernel_bias_match_the_authors() {
    let f = load_fixture("reparam");
    let mut worst = 0f64;
    for g in [1, 2] {
        let p = format!("repvgg_g{g}");
        let br = |name: &str| ConvBn {
            kernel: f[&format!("{p}.{name}.kernel")].clone(),
            bn: fixture_bn(&f, &format!("{p}.{name}.bn")),
        };
        let id = fixture_bn(&f, &format!("{p}.identity"));
        let (k, b) = repvgg_merge(&br("dense"), Some(&br("one")), Some(&id), g).unwrap();
        worst = worst.max(assert_close(&p, &k, &f[&format!("{p}.out.weight")], TOL));
        worst = worst.max(assert_close(&p, &b, &f[&format!("{p}.out.bias")], TOL));
    }
    eprintln!("repvgg vs authors: {worst:.3e}");
}

#[test]
fn repmlp_v1_fc1_fc3_match_the_authors() {
    let f = load_fixture("reparam");
    let local: Vec<ConvBn> = [1, 3, 5]
        .iter()
        .map(|k| ConvBn {
            kernel: f[&format!("v1.repconv{k}.conv.weight")].clone(),
            bn: fixture_bn(&f, &format!("v1.repconv{k}.bn")),
        })
        .collect();
    let fc3_bn = fixture_bn(&f, "v1.fc3_bn");
    let (w, b) = equivalent_fc3(
        &f["v1.fc3.weight"],
        Fc3Bn::PerOutput(&fc3_bn),
        &local,
        2,
        3,
        4,
    )
    .unwrap();
    let mut worst = assert_close("v1 fc3.weight", &w, &f["v1.out.fc3.weight"], TOL);
    worst = worst.max(assert_close("v1 fc3.bias", &b, &f["v1.out.fc3.bias"], TOL));
    let avg_bn = fixture_bn(&f, "v1.avg.bn");
    let (w1, b1) = fold_bn_into_fc1(
        &avg_bn,
        &f["v1.fc1_fc2.fc1.weight"],
        Some(&f["v1.fc1_fc2.fc1.bias"]),
    )
    .unwrap();
    worst = worst.max(assert_close(
        "v1 fc1.weight",
        &w1,
        &f["v1.out.fc1.weight"],
        TOL,
    ));
    worst = worst.max(assert_close("v1 fc1.bias", &b1, &f["v1.out.fc1.bias"], TOL));
    eprintln!("repmlp v1 vs authors: {worst:.3e}");
}

#[test]
fn repmlpnet_fc3_matches_the_authors() {
    let f = load_fixture("reparam");
    let local: Vec<ConvBn> = [1, 3]
        .iter()
        .map(|k| ConvBn {
            kernel: f[&format!("net.repconv{k}.conv.weight")].clone(),
            bn: fixture_bn(&f, &format!("net.repconv{k}.bn")),
        })
        .collect();
    let fc3_bn = fixture_bn(&f, "net.fc3_bn");
    let (w, b) = equivalent_fc3(
        &f["net.fc3.weight"],
        Fc3Bn::PerChannel(&fc3_bn),
        &local,
        4,
        3,
        5,
    )
    .unwrap();
    let mut worst = assert_close("net fc3.weight", &w, &f["net.out.fc3.weight"], TOL);
    worst = worst.max(assert_close(
        "net fc3.bias",
        &b,
        &f["net.out.fc3.bias"],
        TOL,
    ));
    eprintln!("repmlpnet vs authors: {worst:.3e}");
}
