//! PyTorch parity of Linear, the activations, Dropout/DropPath (evaluation),
//! the pools, timm's Mlp, Sequential and a composite's parameter names.
//!
//! Fixtures come from `tools/fixtures/layers_misc.py` (its header says how to run
//! it): each holds a module's randomised parameters, an input, the output, a
//! random `r` and the gradients of `sum(output · r)` for the input and every
//! parameter. Each check runs twice, on the input as stored and on a
//! non-contiguous view of the same values, and compares every element
//! (metric: max|diff| / max|ref|).
//!
//! Tolerances: 1e-5 for elementwise layers and for products/sums of at most
//! 16 terms (Linear, Mlp, pools, Sequential): f32 rounding of such short sums
//! stays near 1e-6 relative; dropout/drop-path in evaluation are exact.

mod common;

use std::collections::BTreeMap;

use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{
    Activation, AdaptiveAvgPool2d, AvgPool2d, Ctx, DropPath, Dropout, Gelu, Identity, Linear,
    MaxPool2d, Mlp, Module, Relu, Sequential, Sigmoid, Visitor, join, named_parameters, visit_list,
};
use common::{load_fixture, rel_err};

type Tensors = BTreeMap<String, Tensor>;

/// The same values as `t` in a non-contiguous (transposed-storage) layout.
fn strided(t: &Tensor) -> Tensor {
    let last = t.ndim() - 1;
    let s = t
        .transpose(0, last)
        .unwrap()
        .contiguous()
        .transpose(0, last)
        .unwrap();
    assert!(!s.is_contiguous() && s == *t);
    s
}

fn linear(t: &Tensors, prefix: &str) -> Linear {
    let bias = t.get(&join(prefix, "bias")).cloned();
    Linear::from_tensors(t[&join(prefix, "weight")].clone(), bias).unwrap()
}

fn mlp(t: &Tensors, prefix: &str, act: Activation, drop: f32) -> Mlp {
    let (fc1, fc2) = (
        linear(t, &join(prefix, "fc1")),
        linear(t, &join(prefix, "fc2")),
    );
    Mlp::from_linears(fc1, fc2, act, drop).unwrap()
}

/// Runs the fixture `name` through the module `build` makes from its tensors, in
/// the mode `ctx` gives, and returns the largest relative error of the output, the
/// input gradient and every parameter gradient (asserting each ≤ `tol`). The
/// module's parameter names must be exactly the fixture's state_dict keys.
fn check<M: Module>(name: &str, tol: f64, ctx: fn() -> Ctx, build: impl Fn(&Tensors) -> M) -> f64 {
    let t = load_fixture(name);
    let (mut worst, mut worst_what) = (0f64, String::new());
    for x in [t["input"].clone(), strided(&t["input"])] {
        let m = build(&t);
        let params = named_parameters(&m);
        let mut names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let want: Vec<&str> = t
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with("grad.") && !["input", "output", "r"].contains(k))
            .collect();
        assert_eq!(names, want, "{name}: parameter names");
        let xv = Var::parameter(x);
        let y = m.forward(&xv, &ctx()).unwrap();
        y.backward_with(t["r"].clone()).unwrap();
        let mut pairs = vec![
            ("output".to_string(), y.value(), t["output"].clone()),
            (
                "grad.input".to_string(),
                xv.grad().unwrap(),
                t["grad.input"].clone(),
            ),
        ];
        for (n, p) in &params {
            let g = format!("grad.{n}");
            pairs.push((g.clone(), p.grad().unwrap(), t[&g].clone()));
        }
        for (what, got, want) in &pairs {
            let e = rel_err(got, want, 1e-12);
            assert!(
                e <= tol,
                "{name} {what}: relative error {e:.3e} > {tol:.0e}"
            );
            if e >= worst {
                (worst, worst_what) = (e, what.clone());
            }
        }
    }
    eprintln!("{name}: max relative error {worst:.2e} ({worst_what})");
    worst
}

const TOL: f64 = 1e-5;

#[test]
fn linear_matches_torch() {
    check("linear", TOL, Ctx::eval, |t| linear(t, ""));
    check("linear_no_bias", TOL, Ctx::eval, |t| linear(t, ""));
}

#[test]
fn activations_match_torch() {
    check("gelu_exact", TOL, Ctx::eval, |_| Gelu::new());
    check("gelu_tanh", TOL, Ctx::eval, |_| Gelu::tanh());
    check("relu", TOL, Ctx::eval, |_| Relu);
    check("sigmoid", TOL, Ctx::eval, |_| Sigmoid);
    // nn.Identity has no fixture of its own: torch's Dropout in eval is the identity.
    check("dropout_eval", 0.0, Ctx::eval, |_| Identity);
}

#[test]
fn dropout_and_drop_path_are_the_identity_in_evaluation() {
    assert_eq!(
        check("dropout_eval", 0.0, Ctx::eval, |_| Dropout::new(0.3)
            .unwrap()),
        0.0
    );
    assert_eq!(
        check("drop_path_eval", 0.0, Ctx::eval, |_| DropPath::new(0.3)
            .unwrap()),
        0.0
    );
    // p = 0 is the identity in training too (torch's F.dropout(x, 0, True) is exactly x).
    check(
        "dropout_eval",
        0.0,
        || Ctx::train(1),
        |_| Dropout::new(0.0).unwrap(),
    );
    check(
        "drop_path_eval",
        0.0,
        || Ctx::train(1),
        |_| DropPath::new(0.0).unwrap(),
    );
}

/// Masks cannot match torch's generator, but the expectation can: inverted
/// dropout and drop-path (divided by keep-prob) are unbiased, E[y] = x.
#[test]
fn dropout_and_drop_path_are_unbiased_in_training() {
    let x = Tensor::randn(&[40, 25], 0.0, 1.0, 1).unwrap();
    let xv = Var::constant(x.clone());
    let runs = 400;
    let layers: [(&str, Box<dyn Module>); 2] = [
        ("Dropout", Box::new(Dropout::new(0.4).unwrap())),
        ("DropPath", Box::new(DropPath::new(0.4).unwrap())),
    ];
    for (name, layer) in layers {
        let mut mean = vec![0f64; x.numel()];
        for seed in 0..runs {
            let y = layer
                .forward(&xv, &Ctx::train(seed))
                .unwrap()
                .value()
                .to_vec();
            mean.iter_mut()
                .zip(y)
                .for_each(|(m, v)| *m += v as f64 / runs as f64);
        }
        // Each y is x·m with Var(m) = p/(1−p) = 2/3: the mean of 400 runs has standard
        // deviation |x|·√(2/3/400) ≈ 0.041·|x|; 0.25·|x| + 1e-6 is > 6σ for every element.
        for (i, (m, xi)) in mean.iter().zip(x.to_vec()).enumerate() {
            let bound = 0.25 * (xi as f64).abs() + 1e-6;
            assert!(
                (m - xi as f64).abs() < bound,
                "{name} element {i}: mean {m} vs {xi}"
            );
        }
    }
}

#[test]
fn pools_match_torch() {
    check("max_pool2d", TOL, Ctx::eval, |_| {
        MaxPool2d::new(3, 2, 1).unwrap()
    });
    check("avg_pool2d_include_pad", TOL, Ctx::eval, |_| {
        AvgPool2d::new(3, 2, 1).unwrap()
    });
    check("avg_pool2d_exclude_pad", TOL, Ctx::eval, |_| {
        AvgPool2d::new(3, 2, 1)
            .unwrap()
            .with_count_include_pad(false)
    });
    check("adaptive_avg_pool2d_3x4", TOL, Ctx::eval, |_| {
        AdaptiveAvgPool2d::new((3, 4)).unwrap()
    });
    check("adaptive_avg_pool2d_1x1", TOL, Ctx::eval, |_| {
        AdaptiveAvgPool2d::new((1, 1)).unwrap()
    });
}

#[test]
fn timm_mlp_matches_torch() {
    // Training mode without dropout: nothing random, same as evaluation.
    check(
        "mlp_gelu",
        TOL,
        || Ctx::train(0),
        |t| mlp(t, "", Activation::Gelu, 0.0),
    );
    check("mlp_gelu_tanh", TOL, Ctx::eval, |t| {
        mlp(t, "", Activation::GeluTanh, 0.0)
    });
    check("mlp_relu", TOL, Ctx::eval, |t| {
        mlp(t, "", Activation::Relu, 0.0)
    });
    check("mlp_dropout_eval", TOL, Ctx::eval, |t| {
        mlp(t, "", Activation::Gelu, 0.3)
    });
}

/// The fixture's `state_dict()` key order (metadata entry `keys`).
fn torch_keys(name: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let keys = &meta.metadata().as_ref().unwrap()["keys"];
    keys.lines().map(str::to_string).collect()
}

fn names_in_order(m: &dyn Module) -> Vec<String> {
    named_parameters(m).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn sequential_matches_torch() {
    let build = |t: &Tensors| -> Sequential {
        let mut s = Sequential::new();
        s.push(linear(t, "0")).unwrap();
        s.push(Gelu::new()).unwrap();
        s.push(linear(t, "2")).unwrap();
        s
    };
    check("sequential", TOL, Ctx::eval, build);
    let t = load_fixture("sequential");
    assert_eq!(names_in_order(&build(&t)), torch_keys("sequential"));
}

/// The Rust twin of the fixture script's `Composite`: a Linear, a numbered
/// Sequential, a ModuleList of timm Mlps (residual) and a custom-named Sequential.
struct Composite {
    stem: Linear,
    body: Sequential,
    blocks: Vec<Mlp>,
    head: Sequential,
}

impl Composite {
    fn from_fixture(t: &Tensors) -> Composite {
        let mut body = Sequential::new();
        body.push(linear(t, "body.0")).unwrap();
        body.push(Gelu::new()).unwrap();
        body.push(linear(t, "body.2")).unwrap();
        let mut head = Sequential::new();
        head.push_named("fc", linear(t, "head.fc")).unwrap();
        head.push_named("act", Sigmoid).unwrap();
        Composite {
            stem: linear(t, "stem"),
            body,
            blocks: vec![
                mlp(t, "blocks.0", Activation::Gelu, 0.0),
                mlp(t, "blocks.1", Activation::Relu, 0.0),
            ],
            head,
        }
    }
}

impl Module for Composite {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let mut h = self.body.forward(&self.stem.forward(x, ctx)?, ctx)?;
        for b in &self.blocks {
            h = h.add(&b.forward(&h, ctx)?)?;
        }
        self.head.forward(&h, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.stem.visit(&join(prefix, "stem"), v);
        self.body.visit(&join(prefix, "body"), v);
        visit_list(prefix, "blocks", &self.blocks, v);
        self.head.visit(&join(prefix, "head"), v);
    }
}

#[test]
fn composite_names_order_and_gradients_match_torch() {
    check(
        "sequential_composite",
        TOL,
        Ctx::eval,
        Composite::from_fixture,
    );
    let t = load_fixture("sequential_composite");
    let keys = torch_keys("sequential_composite");
    assert_eq!(keys.len(), 16);
    assert_eq!(names_in_order(&Composite::from_fixture(&t)), keys);
    // Nested under a named parent, every name gains the parent's prefix.
    let mut outer = Sequential::new();
    outer
        .push_named("model", Composite::from_fixture(&t))
        .unwrap();
    let prefixed: Vec<String> = keys.iter().map(|k| format!("model.{k}")).collect();
    assert_eq!(names_in_order(&outer), prefixed);
}
