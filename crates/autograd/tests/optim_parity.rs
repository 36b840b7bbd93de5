//! Optimizers, clipping and schedules against torch/timm fixtures (tools/fixtures/optim.py), and
//! exact resume from a saved state.
//!
//! Tolerances: every optimizer follows torch's/timm's operation order with f32 rounding, and
//! computes the scalars (bias corrections, step sizes) in f64 as Python does, so the remaining
//! differences are single-rounding ones (torch's vectorised kernels use FMA where we round twice,
//! its norms reduce in another order). Over 6 steps these stay below ~1e-7 relative, and the
//! parameters are bounded away from zero (|p| ≥ 0.4), so the bound of 1e-6 relative per
//! element is asserted on every parameter after every step. Optimizer state (moments, which can be
//! near zero elementwise) is compared relative to the tensor's largest element, also at 1e-6.
//! Schedules are f64 on both sides: 1e-12 relative.

use std::collections::HashMap;
use std::path::PathBuf;

use allmlp_autograd::Var;
use allmlp_autograd::optim::{
    Adam, AdamConfig, Combined, Lamb, LambConfig, Muon, MuonConfig, MuonLrAdjust, Optimizer,
    OptimizerState, ParamGroup, Schedule, Sgd, SgdConfig, clip_grad_norm,
    param_groups_weight_decay,
};
use allmlp_autograd::tensor_core::Tensor;
use safetensors::{Dtype, SafeTensors};

/// The fixture's parameters, in the order the script creates them.
const NAMES: [&str; 5] = [
    "fc.weight",
    "fc.bias",
    "blocks.0.ls1",
    "blocks.0.norm1.alpha",
    "head.weight",
];
/// The Muon fixtures' 2-D parameters (wide, tall, square).
const MUON_NAMES: [&str; 3] = [
    "blocks.0.fc1.weight",
    "blocks.0.fc2.weight",
    "blocks.0.tokens.weight",
];
const STEPS: usize = 6;

struct Fixture {
    meta: HashMap<String, String>,
    f32s: HashMap<String, Tensor>,
    f64s: HashMap<String, Vec<f64>>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/optim")
            .join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        // The script writes one metadata entry, `config`: `key=value;key=value;…`.
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .map(|c| {
                c.split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (mut f32s, mut f64s) = (HashMap::new(), HashMap::new());
        for (key, view) in st.tensors() {
            match view.dtype() {
                Dtype::F32 => {
                    let v = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    f32s.insert(key, Tensor::from_vec(v, view.shape()).unwrap());
                }
                Dtype::F64 => {
                    let v = view
                        .data()
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    f64s.insert(key, v);
                }
                d => panic!("{name}: unexpected dtype {d:?} for {key}"),
            }
        }
        Fixture { meta, f32s, f64s }
    }

    fn t(&self, key: &str) -> &Tensor {
        self.f32s
            .get(key)
            .unwrap_or_else(|| panic!("fixture has no tensor {key}"))
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.meta.get(key).map(|v| v.parse().unwrap())
    }

    fn flag(&self, key: &str) -> bool {
        self.meta.get(key).is_some_and(|v| v == "True")
    }
}

/// max_i |a_i − b_i| / |b_i|.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(&x, y)| (x as f64 - y as f64).abs() / (y as f64).abs())
        .fold(0.0, f64::max)
}

/// max_i |a_i − b_i| / max_i |b_i|.
fn max_rel_to_largest(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b
        .to_vec()
        .iter()
        .fold(0.0f64, |m, &y| m.max(y.abs() as f64));
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(&x, y)| (x as f64 - y as f64).abs() / scale)
        .fold(0.0, f64::max)
}

fn build(fx: &Fixture, named: Vec<(String, Var)>) -> Box<dyn Optimizer> {
    let lr = fx.num("lr").unwrap();
    let wd = fx.num("weight_decay").unwrap_or(0.0);
    let groups = if fx.flag("groups") {
        let patterns: Vec<&str> = fx.meta["no_weight_decay"].split(',').collect();
        let mut groups = param_groups_weight_decay(named, wd, &patterns);
        if let Some(scale) = fx.num("no_decay_lr_scale") {
            for g in groups.iter_mut().filter(|g| g.weight_decay == Some(0.0)) {
                g.lr_scale = scale;
            }
        }
        groups
    } else {
        vec![ParamGroup::new(named)]
    };
    let betas = || (fx.num("beta1").unwrap(), fx.num("beta2").unwrap());
    match fx.meta["optimizer"].as_str() {
        "sgd" => Box::new(
            Sgd::new(
                groups,
                SgdConfig {
                    lr,
                    momentum: fx.num("momentum").unwrap_or(0.0),
                    dampening: fx.num("dampening").unwrap_or(0.0),
                    nesterov: fx.flag("nesterov"),
                    weight_decay: wd,
                },
            )
            .unwrap(),
        ),
        kind @ ("adam" | "adamw") => Box::new(
            Adam::new(
                groups,
                AdamConfig {
                    lr,
                    betas: betas(),
                    eps: fx.num("eps").unwrap(),
                    weight_decay: wd,
                    decoupled_weight_decay: kind == "adamw",
                },
            )
            .unwrap(),
        ),
        "lamb" => Box::new(
            Lamb::new(
                groups,
                LambConfig {
                    lr,
                    weight_decay: wd,
                    bias_correction: fx.meta.get("bias_correction").is_none_or(|v| v == "True"),
                    grad_averaging: fx.meta.get("grad_averaging").is_none_or(|v| v == "True"),
                    max_grad_norm: match fx.meta.get("max_grad_norm").map(String::as_str) {
                        None => Some(1.0),
                        Some("None") => None,
                        Some(v) => Some(v.parse().unwrap()),
                    },
                    trust_clip: fx.flag("trust_clip"),
                    always_adapt: fx.flag("always_adapt"),
                    ..LambConfig::default()
                },
            )
            .unwrap(),
        ),
        "muon" => Box::new(
            Muon::new(
                groups,
                MuonConfig {
                    lr,
                    weight_decay: wd,
                    momentum: fx.num("momentum").unwrap_or(0.95),
                    nesterov: fx.meta.get("nesterov").is_none_or(|v| v == "True"),
                    ns_steps: fx.num("ns_steps").map_or(5, |n| n as usize),
                    adjust_lr: match fx.meta.get("adjust_lr_fn").map(String::as_str) {
                        None => MuonLrAdjust::Original,
                        Some("match_rms_adamw") => MuonLrAdjust::MatchRmsAdamw,
                        Some(f) => panic!("adjust_lr_fn {f}"),
                    },
                    ..MuonConfig::default()
                },
            )
            .unwrap(),
        ),
        k => panic!("unknown optimizer {k}"),
    }
}

/// Runs one fixture configuration; returns (max rel. error of parameters, of state).
fn run_config(config: &str) -> (f64, f64) {
    run_config_over(config, &NAMES)
}

/// [`run_config`] for a fixture over the parameters `names`.
fn run_config_over(config: &str, names: &[&str]) -> (f64, f64) {
    let fx = Fixture::load(config);
    let vars: Vec<Var> = names
        .iter()
        .map(|n| Var::parameter(fx.t(&format!("init.{n}")).clone()))
        .collect();
    let named = names
        .iter()
        .zip(&vars)
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let mut opt = build(&fx, named);
    let mut worst_param = 0.0f64;
    let mut worst_delta = 0.0f64;
    let mut skipped = 0;
    for t in 0..STEPS {
        for (n, v) in names.iter().zip(&vars) {
            let g = fx.f32s.get(&format!("grad.{t}.{n}")).cloned();
            skipped += usize::from(g.is_none());
            v.set_grad(g);
        }
        let before: Vec<Tensor> = vars.iter().map(Var::value).collect();
        opt.step().unwrap();
        for ((n, v), b) in names.iter().zip(&vars).zip(&before) {
            let want = fx.t(&format!("param.{t}.{n}"));
            let err = max_rel(&v.value(), want);
            assert!(
                err <= 1e-6,
                "{config}: step {t} {n}: max rel. error {err:e}"
            );
            worst_param = worst_param.max(err);
            // Informative: our step Δp against torch's, relative to its largest element (limited
            // by the f32 resolution of p, ~1e-7·|p| / |Δp|).
            let prev = match t {
                0 => fx.t(&format!("init.{n}")),
                _ => fx.t(&format!("param.{}.{n}", t - 1)),
            };
            let (d, dw) = (v.value().sub(b).unwrap(), want.sub(prev).unwrap());
            if dw.to_vec().iter().any(|&x| x != 0.0) {
                worst_delta = worst_delta.max(max_rel_to_largest(&d, &dw));
            }
        }
    }
    assert_eq!(skipped, 1, "the fixture leaves one gradient out");
    let state = opt.state();
    let mut worst_state = 0.0f64;
    let mut compared = 0;
    for (key, want) in fx
        .f32s
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix("state.")?, t)))
    {
        if key.ends_with(".step") {
            let got = state
                .scalar(key)
                .unwrap_or_else(|| panic!("{config}: no {key}"));
            assert_eq!(got, want.item().unwrap() as f64, "{config}: {key}");
        } else {
            let got = state
                .tensor(key)
                .unwrap_or_else(|| panic!("{config}: no {key}"));
            let err = max_rel_to_largest(got, want);
            assert!(err <= 1e-6, "{config}: state {key}: error {err:e}");
            worst_state = worst_state.max(err);
        }
        compared += 1;
    }
    let expect_state = !matches!(config, "sgd_plain");
    assert_eq!(
        compared > 0,
        expect_state,
        "{config}: state entries compared"
    );
    eprintln!(
        "{config}: max rel. error params {worst_param:.2e}, steps {worst_delta:.2e}, state \
         {worst_state:.2e}"
    );
    (worst_param, worst_state)
}

#[test]
fn sgd_plain_matches_torch() {
    run_config("sgd_plain");
}

#[test]
fn sgd_nesterov_weight_decay_groups_match_torch() {
    run_config("sgd_nesterov_wd");
}

#[test]
fn sgd_momentum_dampening_matches_torch() {
    run_config("sgd_momentum_dampening");
}

#[test]
fn adam_l2_groups_matches_torch() {
    run_config("adam");
}

#[test]
fn adamw_groups_lr_scale_matches_torch() {
    run_config("adamw");
}

#[test]
fn lamb_timm_defaults_match_timm() {
    run_config("lamb_default");
}

#[test]
fn lamb_resmlp_recipe_groups_match_timm() {
    run_config("lamb_resmlp");
}

#[test]
fn lamb_resmlp_recipe_at_large_lr_matches_timm() {
    run_config("lamb_resmlp_large_lr");
}

#[test]
fn lamb_non_default_options_match_timm() {
    run_config("lamb_options");
}

#[test]
fn muon_defaults_match_torch() {
    run_config_over("muon_default", &MUON_NAMES);
}

#[test]
fn muon_options_match_torch() {
    // No Nesterov, momentum 0.9, three iterations, AdamW-matched learning rate.
    run_config_over("muon_options", &MUON_NAMES);
}

#[test]
fn clip_grad_norm_matches_torch() {
    let fx = Fixture::load("clip");
    for case in ["active", "inactive"] {
        let vars: Vec<Var> = (0..NAMES.len())
            .map(|i| {
                let g = fx.t(&format!("{case}.grad.{i}")).clone();
                let v = Var::parameter(Tensor::zeros(g.shape()).unwrap());
                v.set_grad(Some(g));
                v
            })
            .collect();
        let no_grad = Var::parameter(Tensor::ones(&[2]).unwrap());
        let max_norm = fx.t(&format!("{case}.max_norm")).to_vec()[0] as f64;
        let total = clip_grad_norm(vars.iter().chain([&no_grad]), max_norm).unwrap();
        let want = fx.t(&format!("{case}.total_norm")).to_vec()[0];
        let err = ((total - want) / want).abs();
        assert!(err <= 1e-6, "{case}: total norm {total} vs torch {want}");
        for (i, v) in vars.iter().enumerate() {
            let err = max_rel(&v.grad().unwrap(), fx.t(&format!("{case}.clipped.{i}")));
            assert!(err <= 1e-6, "{case}: grad {i}: {err:e}");
        }
        assert!(no_grad.grad().is_none());
        if case == "active" {
            assert!(total > 1.0);
        } else {
            assert!((total as f64) < max_norm);
        }
    }
    // Nothing to clip: total norm 0, like torch.
    let v = Var::parameter(Tensor::ones(&[3]).unwrap());
    assert_eq!(clip_grad_norm([&v], 1.0).unwrap(), 0.0);
    for bad in [-1.0, f64::NAN] {
        let e = clip_grad_norm([&v], bad).unwrap_err().to_string();
        assert!(
            e.contains("clip_grad_norm") && e.contains("max_norm"),
            "{e}"
        );
    }
}

/// torch's edge cases: `max_norm = ∞` measures without changing anything, and a NaN in one
/// gradient makes the norm and every gradient NaN (torch's `clamp(max=1)` keeps the NaN).
#[test]
fn clip_grad_norm_edge_cases_follow_torch() {
    let param = |g: &[f32]| {
        let v = Var::parameter(Tensor::zeros(&[g.len()]).unwrap());
        v.set_grad(Some(Tensor::from_vec(g.to_vec(), &[g.len()]).unwrap()));
        v
    };
    let (w, b) = (param(&[1.0, 2.0, 3.0, 4.0]), param(&[1.0, 1.0]));
    let total = clip_grad_norm([&w, &b], f64::INFINITY).unwrap();
    assert!((total - 32f32.sqrt()).abs() <= 1e-6 * total);
    assert_eq!(w.grad().unwrap().to_vec(), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(b.grad().unwrap().to_vec(), [1.0, 1.0]);

    let (w, b) = (param(&[f32::NAN, 1.0, 2.0, 3.0]), param(&[1.0, 1.0]));
    assert!(clip_grad_norm([&w, &b], 1.0).unwrap().is_nan());
    for v in [&w, &b] {
        assert!(v.grad().unwrap().to_vec().iter().all(|g| g.is_nan()));
    }
}

/// timm's Lamb clamps the clip divisor with `clamp_(min=1)`, which keeps a NaN: one NaN
/// gradient makes every parameter NaN after the step, not only the element that held it.
#[test]
fn lamb_spreads_a_nan_gradient_like_timm() {
    let params = random_params(11);
    let mut lamb = Lamb::new(groups(params.clone()), LambConfig::default()).unwrap();
    set_grads(&params, 0);
    let g = params[0].1.grad().unwrap();
    let mut nan = g.to_vec();
    nan[0] = f32::NAN;
    params[0]
        .1
        .set_grad(Some(Tensor::from_vec(nan, g.shape()).unwrap()));
    lamb.step().unwrap();
    for (name, v) in &params {
        assert!(
            v.value().to_vec().iter().all(|x| x.is_nan()),
            "{name} should be NaN"
        );
    }
}

#[test]
fn clip_grad_norm_against_naive_reference() {
    // Independent f64 reference: ‖g‖ = √Σ g², coefficient max_norm / (‖g‖ + 1e-6), capped at 1.
    let mut rng = allmlp_autograd::tensor_core::Rng::new(7);
    for (shapes, max_norm) in [
        (vec![vec![1usize], vec![7, 3], vec![2, 1, 5]], 0.5),
        (vec![vec![1000]], 100.0),
        (vec![vec![33, 31], vec![1, 1]], 3.0),
    ] {
        let vars: Vec<Var> = shapes
            .iter()
            .map(|s| {
                let n: usize = s.iter().product();
                let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                let v = Var::parameter(Tensor::zeros(s).unwrap());
                v.set_grad(Some(Tensor::from_vec(g, s).unwrap()));
                v
            })
            .collect();
        let before: Vec<Vec<f32>> = vars.iter().map(|v| v.grad().unwrap().to_vec()).collect();
        let total_ref = before
            .iter()
            .flatten()
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt();
        let coef = (max_norm / (total_ref + 1e-6)).min(1.0);
        let total = clip_grad_norm(&vars, max_norm).unwrap();
        // f32 norm-of-norms against one f64 sum: a few roundings, 1e-6 relative.
        assert!(((total as f64 - total_ref) / total_ref).abs() < 1e-6);
        for (v, g0) in vars.iter().zip(&before) {
            for (&g, &g0) in v.grad().unwrap().to_vec().iter().zip(g0) {
                let want = g0 as f64 * coef;
                assert!((g as f64 - want).abs() <= 1e-6 * want.abs() + 1e-12);
            }
        }
        let after: f64 = vars
            .iter()
            .flat_map(|v| v.grad().unwrap().to_vec())
            .map(|g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt();
        assert!(after <= max_norm * (1.0 + 1e-6) || (total_ref < max_norm));
    }
}

#[test]
fn schedules_match_timm_and_torch() {
    let fx = Fixture::load("schedules");
    let base = fx.num("base_lr").unwrap();
    let warm = fx.num("warmup_steps").unwrap() as u64;
    let total = fx.num("total_steps").unwrap() as u64;
    let min = fx.num("min_lr").unwrap();
    let init = fx.num("warmup_lr_init").unwrap();
    let decay_t = fx.num("timm_step_decay_t").unwrap() as u64;
    let rate = fx.num("timm_step_decay_rate").unwrap();
    let cases = [
        (
            "timm_cosine",
            Schedule::warmup_cosine(base, warm, total, min).unwrap(),
        ),
        (
            "timm_linear",
            Schedule::warmup_linear(base, warm, total, min).unwrap(),
        ),
        (
            "timm_step",
            Schedule::new(
                base,
                warm,
                allmlp_autograd::optim::Decay::Step {
                    step_size: decay_t,
                    gamma: rate,
                },
            )
            .unwrap(),
        ),
    ];
    for (key, s) in cases {
        let s = s.with_warmup_start(init).unwrap();
        let want = &fx.f64s[key];
        assert!(want.len() as u64 > total, "{key}: runs past the end");
        for (step, &w) in want.iter().enumerate() {
            let got = s.lr_at(step as u64);
            assert!(
                ((got - w) / w).abs() <= 1e-12,
                "{key} step {step}: {got} vs {w}"
            );
        }
    }
    let s = Schedule::step_decay(
        base,
        fx.num("torch_step_size").unwrap() as u64,
        fx.num("torch_step_gamma").unwrap(),
    )
    .unwrap();
    for (step, &w) in fx.f64s["torch_step"].iter().enumerate() {
        let got = s.lr_at(step as u64);
        assert!(
            ((got - w) / w).abs() <= 1e-12,
            "torch_step {step}: {got} vs {w}"
        );
    }
}

#[test]
fn schedules_hand_computed() {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b.abs().max(1.0);
    let c = Schedule::warmup_cosine(1.0, 4, 12, 0.1).unwrap();
    for (step, want) in [
        (0, 0.0),
        (1, 0.25),
        (2, 0.5),
        (4, 1.0),
        (6, 0.1 + 0.45 * (1.0 + std::f64::consts::FRAC_1_SQRT_2)),
        (8, 0.55),
        (10, 0.1 + 0.45 * (1.0 - std::f64::consts::FRAC_1_SQRT_2)),
        (12, 0.1),
        (1000, 0.1),
    ] {
        assert!(
            close(c.lr_at(step), want),
            "cosine {step}: {}",
            c.lr_at(step)
        );
    }
    let l = Schedule::warmup_linear(1.0, 4, 12, 0.1)
        .unwrap()
        .with_warmup_start(0.2)
        .unwrap();
    for (step, want) in [
        (0, 0.2),
        (2, 0.6),
        (4, 1.0),
        (6, 0.775),
        (8, 0.55),
        (12, 0.1),
        (13, 0.1),
    ] {
        assert!(
            close(l.lr_at(step), want),
            "linear {step}: {}",
            l.lr_at(step)
        );
    }
    let s = Schedule::step_decay(1.0, 3, 0.5).unwrap();
    let got: Vec<f64> = (0..8).map(|t| s.lr_at(t)).collect();
    assert_eq!(got, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]);
    let k = Schedule::constant(0.3).unwrap();
    assert_eq!((k.lr_at(0), k.lr_at(1 << 40)), (0.3, 0.3));
    // No warm-up: step 0 is the base rate.
    assert_eq!(
        Schedule::warmup_cosine(2.0, 0, 10, 0.0).unwrap().lr_at(0),
        2.0
    );
}

#[test]
fn schedule_errors_name_the_problem() {
    let cases = [
        Schedule::warmup_cosine(1.0, 10, 10, 0.0).unwrap_err(),
        Schedule::warmup_linear(1.0, 0, 10, 2.0).unwrap_err(),
        Schedule::warmup_cosine(-1.0, 0, 10, 0.0).unwrap_err(),
        Schedule::warmup_cosine(f64::NAN, 0, 10, 0.0).unwrap_err(),
        Schedule::step_decay(1.0, 0, 0.5).unwrap_err(),
        Schedule::step_decay(1.0, 2, 0.0).unwrap_err(),
        Schedule::constant(1.0)
            .unwrap()
            .with_warmup_start(-1.0)
            .unwrap_err(),
    ];
    let wants = [
        "total_steps (10) must be greater than warmup_steps (10)",
        "min_lr 2 is above base_lr 1",
        "base_lr must be >= 0",
        "base_lr must be >= 0",
        "step_size must be > 0",
        "gamma must be > 0",
        "warmup_start_lr must be >= 0",
    ];
    for (e, want) in cases.iter().zip(wants) {
        let e = e.to_string();
        assert!(e.contains("Schedule") && e.contains(want), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Save / load: exact resume.

/// Parameters with random values, some shapes odd, one size-1.
fn random_params(seed: u64) -> Vec<(String, Var)> {
    let shapes: [(&str, &[usize]); 5] = [
        ("l0.weight", &[7, 5]),
        ("l0.bias", &[7]),
        ("norm.alpha", &[1, 1, 5]),
        ("ls", &[1]),
        ("l1.weight", &[3, 7]),
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, (n, s))| {
            let t = Tensor::randn(s, 0.0, 1.0, seed + i as u64).unwrap();
            (n.to_string(), Var::parameter(t))
        })
        .collect()
}

/// Sets step `t`'s gradients: random, with `l1.weight` left out at step 2.
fn set_grads(params: &[(String, Var)], t: usize) {
    for (i, (n, v)) in params.iter().enumerate() {
        let g = (!(t == 2 && n == "l1.weight"))
            .then(|| Tensor::randn(&v.shape(), 0.0, 1.5, 1000 + 10 * t as u64 + i as u64).unwrap());
        v.set_grad(g);
    }
}

type MakeOpt = fn(Vec<(String, Var)>) -> Box<dyn Optimizer>;

fn groups(params: Vec<(String, Var)>) -> Vec<ParamGroup> {
    let mut g = param_groups_weight_decay(params, 0.1, &["*.alpha"]);
    g[0].lr_scale = 0.7;
    g
}

/// Muon for the 2-D weights, AdamW for the rest, as one optimizer.
fn muon_adamw(params: Vec<(String, Var)>) -> Box<dyn Optimizer> {
    let (matrices, rest): (Vec<_>, Vec<_>) =
        params.into_iter().partition(|(_, v)| v.shape().len() == 2);
    let muon = Muon::new(vec![ParamGroup::new(matrices)], MuonConfig::default()).unwrap();
    let adamw = Adam::adamw(groups(rest), AdamConfig::adamw()).unwrap();
    Box::new(
        Combined::new(vec![
            ("muon".to_string(), Box::new(muon)),
            ("adamw".to_string(), Box::new(adamw)),
        ])
        .unwrap(),
    )
}

const MAKERS: [(&str, MakeOpt); 6] = [
    ("sgd", |p| {
        Box::new(
            Sgd::new(
                groups(p),
                SgdConfig {
                    lr: 0.05,
                    momentum: 0.9,
                    nesterov: true,
                    ..SgdConfig::default()
                },
            )
            .unwrap(),
        )
    }),
    ("sgd_plain", |p| {
        Box::new(Sgd::new(groups(p), SgdConfig::default()).unwrap())
    }),
    ("adam", |p| {
        Box::new(Adam::new(groups(p), AdamConfig::default()).unwrap())
    }),
    ("adamw", |p| {
        Box::new(Adam::new(groups(p), AdamConfig::adamw()).unwrap())
    }),
    ("lamb", |p| {
        Box::new(Lamb::new(groups(p), LambConfig::resmlp()).unwrap())
    }),
    ("muon_adamw", muon_adamw),
];

fn values(params: &[(String, Var)]) -> Vec<Vec<f32>> {
    params.iter().map(|(_, v)| v.value().to_vec()).collect()
}

#[test]
fn resume_from_saved_state_is_bit_identical() {
    const N: usize = 7;
    for (name, make) in MAKERS {
        for k in [1, 3, 6] {
            let lr_at = |t: usize| 0.01 * (1.0 + t as f64) / N as f64;
            // Straight through.
            let a = random_params(1);
            let mut opt = make(a.clone());
            for t in 0..N {
                opt.set_lr(lr_at(t)).unwrap();
                set_grads(&a, t);
                opt.step().unwrap();
            }
            // k steps, save, a fresh optimizer, load, N − k steps.
            let b = random_params(1);
            let mut opt = make(b.clone());
            for t in 0..k {
                opt.set_lr(lr_at(t)).unwrap();
                set_grads(&b, t);
                opt.step().unwrap();
            }
            let saved = opt.state();
            drop(opt);
            let mut opt = make(b.clone());
            opt.load_state(&saved).unwrap();
            assert_eq!(opt.state(), saved, "{name}: state round-trips");
            assert_eq!(opt.lr(), lr_at(k - 1), "{name}: lr restored");
            for t in k..N {
                opt.set_lr(lr_at(t)).unwrap();
                set_grads(&b, t);
                opt.step().unwrap();
            }
            assert_eq!(values(&a), values(&b), "{name}: resumed after {k} steps");
            // Control: a fresh optimizer without the state ends elsewhere (except plain SGD,
            // which has no state).
            let c = random_params(1);
            let mut opt = make(c.clone());
            for t in 0..k {
                opt.set_lr(lr_at(t)).unwrap();
                set_grads(&c, t);
                opt.step().unwrap();
            }
            let mut opt = make(c.clone());
            for t in k..N {
                opt.set_lr(lr_at(t)).unwrap();
                set_grads(&c, t);
                opt.step().unwrap();
            }
            assert_eq!(
                values(&a) == values(&c),
                name == "sgd_plain",
                "{name}: state matters"
            );
        }
    }
}

#[test]
fn load_state_errors_name_the_key_and_shapes() {
    let params = random_params(3);
    let mut adam = Adam::new(groups(params.clone()), AdamConfig::default()).unwrap();
    set_grads(&params, 0);
    adam.step().unwrap();
    let good = adam.state();
    assert_eq!(good.scalar("l0.weight.step"), Some(1.0));
    assert_eq!(good.tensor("l0.weight.exp_avg").unwrap().shape(), &[7, 5]);

    let mut missing = good.clone();
    missing.tensors.retain(|(k, _)| k != "l0.weight.exp_avg");
    let mut wrong_shape = good.clone();
    for (k, t) in wrong_shape.tensors.iter_mut() {
        if k == "l0.bias.exp_avg_sq" {
            *t = Tensor::zeros(&[1, 7]).unwrap();
        }
    }
    let mut extra = good.clone();
    extra
        .tensors
        .push(("l9.weight.exp_avg".into(), Tensor::zeros(&[2]).unwrap()));
    let mut no_step = good.clone();
    no_step.scalars.retain(|(k, _)| k != "ls.step");
    let mut bad_step = good.clone();
    bad_step.scalars.push(("ls.step".into(), 1.5));
    bad_step
        .scalars
        .retain(|(k, v)| k != "ls.step" || *v == 1.5);
    let mut step_zero = good.clone();
    for (k, v) in step_zero.scalars.iter_mut() {
        if k == "l0.weight.step" {
            *v = 0.0;
        }
    }
    let lamb_state = {
        let mut lamb = Lamb::new(groups(params.clone()), LambConfig::default()).unwrap();
        set_grads(&params, 0);
        lamb.step().unwrap();
        lamb.state()
    };
    let cases: [(&OptimizerState, &[&str]); 7] = [
        (&missing, &["missing tensor `l0.weight.exp_avg`", "[7, 5]"]),
        (
            &step_zero,
            &["`l0.weight.step` is 0 but the state holds `l0.weight.exp_avg`"],
        ),
        (
            &wrong_shape,
            &["`l0.bias.exp_avg_sq` has shape [1, 7]", "[7]"],
        ),
        (&extra, &["unexpected key `l9.weight.exp_avg`"]),
        (&no_step, &["missing scalar `ls.step`"]),
        (
            &bad_step,
            &["`ls.step` must be a non-negative integer, got 1.5"],
        ),
        (&lamb_state, &["unexpected key `group.0.step`"]),
    ];
    let fresh = Adam::new(groups(random_params(3)), AdamConfig::default()).unwrap();
    let mut target = Adam::new(groups(random_params(3)), AdamConfig::default()).unwrap();
    for (state, wants) in cases {
        let e = target.load_state(state).unwrap_err().to_string();
        assert!(e.contains("Adam::load_state"), "{e}");
        for w in wants {
            assert!(e.contains(w), "{e} should contain {w}");
        }
        // A failed load changes nothing.
        assert_eq!(target.state(), fresh.state());
    }
    // Loading the good state works, and the SGD/Adam keys are not interchangeable.
    target.load_state(&good).unwrap();
    let mut sgd = Sgd::new(
        groups(params.clone()),
        SgdConfig {
            momentum: 0.9,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let e = sgd.load_state(&good).unwrap_err().to_string();
    assert!(
        e.contains("SGD::load_state") && e.contains("missing tensor"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Construction errors, skipping, step-count semantics.

#[test]
fn bad_hyper_parameters_are_errors() {
    let p = || vec![ParamGroup::new(random_params(5))];
    let errs = [
        Sgd::new(
            p(),
            SgdConfig {
                lr: -1.0,
                ..SgdConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "SGD::new", "learning rate must be >= 0")),
        Sgd::new(
            p(),
            SgdConfig {
                nesterov: true,
                ..SgdConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "SGD::new", "Nesterov momentum requires")),
        Adam::new(
            p(),
            AdamConfig {
                betas: (1.0, 0.999),
                ..AdamConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "Adam::new", "beta1 must be in [0, 1), got 1")),
        Adam::adamw(
            p(),
            AdamConfig {
                eps: f64::NAN,
                ..AdamConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "AdamW::new", "eps must be >= 0")),
        Adam::new(
            p(),
            AdamConfig {
                betas: (0.9, -0.1),
                ..AdamConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "Adam::new", "beta2 must be in [0, 1)")),
        Lamb::new(
            p(),
            LambConfig {
                max_grad_norm: Some(0.0),
                ..LambConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "Lamb::new", "max_grad_norm must be > 0")),
        Lamb::new(
            p(),
            LambConfig {
                weight_decay: -0.2,
                ..LambConfig::default()
            },
        )
        .err()
        .map(|e| (e.to_string(), "Lamb::new", "weight_decay must be >= 0")),
        Lamb::new(
            vec![ParamGroup::new(random_params(5)).with_lr_scale(-1.0)],
            LambConfig::default(),
        )
        .err()
        .map(|e| (e.to_string(), "Lamb::new", "group 0 lr_scale must be >= 0")),
        Lamb::new(
            vec![ParamGroup::new(random_params(5)).with_weight_decay(f64::INFINITY)],
            LambConfig::default(),
        )
        .err()
        .map(|e| {
            (
                e.to_string(),
                "Lamb::new",
                "group 0 weight_decay must be >= 0",
            )
        }),
        {
            // One tensor under two names would be updated twice per step (torch refuses it).
            let mut ps = random_params(5);
            ps.push(("alias".into(), ps[0].1.clone()));
            Sgd::new(vec![ParamGroup::new(ps)], SgdConfig::default())
                .err()
                .map(|e| {
                    (
                        e.to_string(),
                        "SGD::new",
                        "`alias` and `l0.weight` are the same parameter",
                    )
                })
        },
        Adam::new(
            vec![
                ParamGroup::new(random_params(5)),
                ParamGroup::new(random_params(6)),
            ],
            AdamConfig::default(),
        )
        .err()
        .map(|e| {
            (
                e.to_string(),
                "Adam::new",
                "parameter name `l0.weight` appears more than once",
            )
        }),
    ];
    for (i, e) in errs.into_iter().enumerate() {
        let (msg, op, want) = e.unwrap_or_else(|| panic!("case {i} should fail"));
        assert!(msg.contains(op) && msg.contains(want), "case {i}: {msg}");
    }
    let mut opt = Adam::new(p(), AdamConfig::default()).unwrap();
    let e = opt.set_lr(f64::NAN).unwrap_err().to_string();
    assert!(
        e.contains("Adam::set_lr") && e.contains("learning rate"),
        "{e}"
    );
    assert_eq!(opt.lr(), 1e-3);
}

#[test]
fn gradient_shape_mismatch_is_an_error() {
    let params = random_params(8);
    let mut opt = Lamb::new(groups(params.clone()), LambConfig::default()).unwrap();
    set_grads(&params, 0);
    params[1].1.set_grad(Some(Tensor::zeros(&[1, 7]).unwrap()));
    let before = values(&params);
    let e = opt.step().unwrap_err().to_string();
    assert!(
        e.contains("Lamb::step") && e.contains("`l0.bias`") && e.contains("[1, 7]"),
        "{e}"
    );
    // Checked before anything moves: no parameter or state changed.
    assert_eq!(values(&params), before);
    assert_eq!(opt.state().scalar("l0.weight.step"), Some(0.0));
}

#[test]
fn parameters_without_gradient_are_skipped() {
    for (name, make) in MAKERS {
        let params = random_params(11);
        let before = values(&params);
        let mut opt = make(params.clone());
        for (_, v) in &params {
            v.zero_grad();
        }
        params[0].1.set_grad(Some(Tensor::ones(&[7, 5]).unwrap()));
        opt.set_lr(0.1).unwrap();
        opt.step().unwrap();
        let after = values(&params);
        assert_ne!(
            after[0], before[0],
            "{name}: the parameter with a gradient moves"
        );
        assert_eq!(after[1..], before[1..], "{name}: the others do not");
        let st = opt.state();
        // Combined prefixes each part's keys with its label.
        let (w, b) = match name {
            "muon_adamw" => ("muon/l0.weight", "adamw/l0.bias"),
            _ => ("l0.weight", "l0.bias"),
        };
        assert_eq!(st.scalar(&format!("{w}.step")), Some(1.0), "{name}");
        assert_eq!(st.scalar(&format!("{b}.step")), Some(0.0), "{name}");
        assert!(st.tensor(&format!("{b}.exp_avg")).is_none(), "{name}");
        opt.zero_grad();
        assert!(params.iter().all(|(_, v)| v.grad().is_none()), "{name}");
    }
}

#[test]
fn lamb_counts_steps_per_group_like_timm() {
    // timm increments a group's step on every call, even when none of its parameters has a
    // gradient; Adam counts per parameter.
    let params = random_params(12);
    let gs = groups(params.clone());
    let (g0, g1): (Vec<_>, Vec<_>) = (gs[0].params.clone(), gs[1].params.clone());
    let mut lamb = Lamb::new(gs, LambConfig::default()).unwrap();
    for (_, v) in &g0 {
        v.set_grad(None);
    }
    for (_, v) in &g1 {
        v.set_grad(Some(Tensor::ones(&v.shape()).unwrap()));
    }
    lamb.step().unwrap();
    lamb.step().unwrap();
    for (_, v) in &g0 {
        v.set_grad(Some(Tensor::ones(&v.shape()).unwrap()));
    }
    lamb.step().unwrap();
    let st = lamb.state();
    assert_eq!(st.scalar("group.0.step"), Some(3.0));
    assert_eq!(st.scalar("group.1.step"), Some(3.0));
    assert_eq!(st.scalar(&format!("{}.step", g0[0].0)), Some(1.0));
    assert_eq!(st.scalar(&format!("{}.step", g1[0].0)), Some(3.0));
}
