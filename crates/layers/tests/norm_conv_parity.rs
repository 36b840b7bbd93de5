//! PyTorch parity of LayerNorm, Affine, LayerScale, Conv2d, BatchNorm1d/2d and PatchEmbed.
//!
//! Fixtures: `tools/fixtures/layers_norm_conv.py` (torch + timm), one file per case. Each test
//! builds the layer with its own constructor, then loads the fixture's state by the names the
//! layer's visitor reports — which must be exactly the PyTorch state_dict names, no more and no
//! fewer — runs the forward pass, and differentiates `Σ output ⊙ R`. Output, input gradient,
//! every parameter gradient and (BatchNorm training) the updated buffers must match.
//!
//! Tolerances (metric max|diff| / max|ref|): 1e-5 where every value is a short f32 expression of
//! its inputs (Affine, LayerScale forward and input gradients); 1e-4 wherever a reduction enters
//! (normalisation statistics, convolution sums, parameter gradients summed over the batch), since
//! PyTorch and our kernels sum in different orders.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use allmlp_layers::autograd::ops::Conv2dParams;
use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{
    Affine, BatchNorm1d, BatchNorm2d, Buffer, Conv2d, Ctx, LayerNorm, LayerScale, Module,
    PatchEmbed, Visitor, named_buffers, named_parameters,
};
use common::{load_fixture, rel_err};

type Fixture = BTreeMap<String, Tensor>;

/// Copies the fixture's tensors into the layer by name, collecting the names seen.
struct Load<'a> {
    fixture: &'a Fixture,
    seen: BTreeSet<String>,
}

impl Visitor for Load<'_> {
    fn param(&mut self, name: &str, p: &Var) {
        let t = self
            .fixture
            .get(name)
            .unwrap_or_else(|| panic!("fixture lacks {name}"));
        p.set_value(t.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        self.seen.insert(name.to_string());
    }
    fn buffer(&mut self, name: &str, b: &Buffer) {
        let t = self
            .fixture
            .get(name)
            .unwrap_or_else(|| panic!("fixture lacks {name}"));
        assert_eq!(b.get().shape(), t.shape(), "{name}: shape");
        b.set(t.clone());
        self.seen.insert(name.to_string());
    }
}

/// Loads `name`'s state into `layer`, runs the checks, and returns the largest relative error.
fn check(name: &str, layer: &dyn Module, train: bool, tol_out: f64) -> f64 {
    let f = load_fixture(name);
    let mut load = Load {
        fixture: &f,
        seen: BTreeSet::new(),
    };
    layer.visit("", &mut load);
    let state: BTreeSet<String> = f
        .keys()
        .filter(|k| !k.starts_with("grad.") && !k.starts_with("after."))
        .filter(|k| !["input", "r", "output"].contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(load.seen, state, "{name}: state_dict names");

    let ctx = if train { Ctx::train(0) } else { Ctx::eval() };
    let x = Var::parameter(f["input"].clone());
    let y = layer.forward(&x, &ctx).unwrap();
    let mut worst = 0f64;
    let mut cmp = |what: String, got: &Tensor, tol: f64| {
        let e = rel_err(got, &f[&what], 1e-12);
        assert!(
            e <= tol,
            "{name}: {what}: relative error {e:.3e} > {tol:.0e}"
        );
        worst = worst.max(e);
    };
    cmp("output".into(), &y.value(), tol_out);
    y.backward_with(f["r"].clone()).unwrap();
    cmp("grad.input".into(), &x.grad().unwrap(), tol_out);
    for (n, p) in named_parameters(layer) {
        cmp(format!("grad.{n}"), &p.grad().unwrap(), 1e-4);
    }
    let grads = f.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(
        grads,
        1 + named_parameters(layer).len(),
        "{name}: gradients checked"
    );
    if train {
        for (n, b) in named_buffers(layer) {
            cmp(format!("after.{n}"), &b, 1e-4);
        }
    }
    println!("{name}: max relative error {worst:.2e}");
    worst
}

#[test]
fn layer_norm_matches_pytorch() -> Result<()> {
    check("layer_norm", &LayerNorm::new(7, 1e-6, true)?, false, 1e-4);
    let plain = LayerNorm::new(7, 1e-5, false)?;
    check("layer_norm_noaffine", &plain, false, 1e-4);
    Ok(())
}

#[test]
fn affine_and_layer_scale_match_timm() -> Result<()> {
    check("affine", &Affine::new(6)?, false, 1e-5);
    check("layer_scale", &LayerScale::new(6, 1e-5)?, false, 1e-5);
    Ok(())
}

#[test]
fn conv2d_matches_pytorch_plain_and_grouped() -> Result<()> {
    let plain = Conv2d::new(3, 5, (3, 3), Conv2dParams::square(1, 1, 1), true, 0)?;
    check("conv2d", &plain, false, 1e-4);
    let grouped = Conv2d::new(4, 6, (3, 2), Conv2dParams::square(2, 1, 2), true, 0)?;
    check("conv2d_grouped", &grouped, false, 1e-4);
    Ok(())
}

#[test]
fn batch_norm_matches_pytorch_in_train_and_eval() -> Result<()> {
    for mode in ["train", "eval"] {
        let train = mode == "train";
        let nc = BatchNorm1d::new(5)?;
        check(&format!("batch_norm1d_nc_{mode}"), &nc, train, 1e-4);
        let ncl = BatchNorm1d::new(4)?;
        check(&format!("batch_norm1d_ncl_{mode}"), &ncl, train, 1e-4);
        check(
            &format!("batch_norm2d_{mode}"),
            &BatchNorm2d::new(3)?,
            train,
            1e-4,
        );
    }
    let cumulative = BatchNorm2d::with_options(3, 1e-5, None, true)?;
    check("batch_norm2d_cumulative_train", &cumulative, true, 1e-4);
    Ok(())
}

#[test]
fn patch_embed_matches_timm() -> Result<()> {
    check(
        "patch_embed",
        &PatchEmbed::new((8, 12), 4, 3, 8, 0)?,
        false,
        1e-4,
    );
    Ok(())
}
