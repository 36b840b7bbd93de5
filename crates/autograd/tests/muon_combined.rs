//! Muon's Newton–Schulz iteration against a naive f64 reference, its refusals, and
//! [`Combined`] (Muon + AdamW as one optimizer): same steps as the parts alone, errors.
//! Parity of Muon's steps with `torch.optim.Muon` is in tests/optim_parity.rs.

use allmlp_autograd::Var;
use allmlp_autograd::optim::{
    Adam, AdamConfig, Combined, Muon, MuonConfig, MuonLrAdjust, Optimizer, ParamGroup,
    orthogonalize,
};
use allmlp_autograd::tensor_core::Tensor;

/// The iteration written out naively in f64 (row-major `rows × cols`).
fn naive_orthogonalize(u: &[f32], rows: usize, cols: usize, steps: usize) -> Vec<f64> {
    let (a, b, c) = (3.4445, -4.775, 2.0315);
    let tall = rows > cols;
    let (r, k) = if tall { (cols, rows) } else { (rows, cols) };
    let at = |i: usize, j: usize| -> f64 {
        if tall {
            u[j * cols + i] as f64
        } else {
            u[i * cols + j] as f64
        }
    };
    let mut x: Vec<f64> = (0..r * k).map(|n| at(n / k, n % k)).collect();
    let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    x.iter_mut().for_each(|v| *v /= norm);
    let mul = |p: &[f64], q: &[f64], n: usize, m: usize, l: usize| -> Vec<f64> {
        // p: n × m, q: m × l.
        let mut out = vec![0.0; n * l];
        for i in 0..n {
            for j in 0..l {
                out[i * l + j] = (0..m).map(|t| p[i * m + t] * q[t * l + j]).sum();
            }
        }
        out
    };
    for _ in 0..steps {
        let xt: Vec<f64> = (0..k * r).map(|n| x[(n % r) * k + n / r]).collect();
        let g = mul(&x, &xt, r, k, r);
        let gg = mul(&g, &g, r, r, r);
        let upd: Vec<f64> = g.iter().zip(&gg).map(|(g, gg)| b * g + c * gg).collect();
        let ux = mul(&upd, &x, r, r, k);
        x = x.iter().zip(&ux).map(|(x, ux)| a * x + ux).collect();
    }
    if tall {
        (0..rows * cols)
            .map(|n| x[(n % cols) * k + n / cols])
            .collect()
    } else {
        x
    }
}

#[test]
fn orthogonalize_matches_a_naive_f64_iteration() {
    for (rows, cols, seed) in [(9, 4, 1), (4, 9, 2), (64, 49, 3), (6, 6, 4)] {
        let u = Tensor::randn(&[rows, cols], 0.0, 1.0, seed)
            .unwrap()
            .to_vec();
        let got = orthogonalize(&u, 1, rows, cols, (3.4445, -4.775, 2.0315), 5, 1e-7).unwrap();
        let want = naive_orthogonalize(&u, rows, cols, 5);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(&g, w)| (g as f64 - w).abs())
            .fold(0.0, f64::max)
            / scale;
        assert!(err < 1e-5, "{rows}×{cols}: max error {err:e}");
        // Orthogonalized: the Frobenius norm² is about min(rows, cols) (singular values ≈ 1),
        // whatever the input's scale.
        let fro2: f64 = want.iter().map(|v| v * v).sum();
        let n = rows.min(cols) as f64;
        assert!(
            fro2 > 0.4 * n && fro2 < 1.5 * n,
            "{rows}×{cols}: ‖X‖² {fro2}"
        );
    }
    let e = orthogonalize(&[1.0; 5], 1, 2, 3, (3.4, -4.7, 2.0), 5, 1e-7).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected 1 matrices of 2×3 (6 values), got 5 values"),
        "{e}"
    );
    // A batch: each matrix orthogonalized on its own, as one at a time.
    let (p, q) = (
        Tensor::randn(&[9, 4], 0.0, 1.0, 5).unwrap().to_vec(),
        Tensor::randn(&[9, 4], 0.0, 3.0, 6).unwrap().to_vec(),
    );
    let coef = (3.4445, -4.775, 2.0315);
    let both = orthogonalize(&[p.clone(), q.clone()].concat(), 2, 9, 4, coef, 5, 1e-7);
    let one_by_one = [
        orthogonalize(&p, 1, 9, 4, coef, 5, 1e-7).unwrap(),
        orthogonalize(&q, 1, 9, 4, coef, 5, 1e-7).unwrap(),
    ]
    .concat();
    assert_eq!(both.unwrap(), one_by_one);
}

#[test]
fn muon_refuses_what_it_cannot_take() {
    let bias = || {
        vec![ParamGroup::new(vec![(
            "fc.bias".to_string(),
            Var::parameter(Tensor::zeros(&[4]).unwrap()),
        )])]
    };
    let w = || {
        vec![ParamGroup::new(vec![(
            "fc.weight".to_string(),
            Var::parameter(Tensor::zeros(&[4, 3]).unwrap()),
        )])]
    };
    let cases: [(Vec<ParamGroup>, MuonConfig, &str); 5] = [
        (bias(), MuonConfig::default(), "`fc.bias` has shape [4]"),
        (
            w(),
            MuonConfig {
                ns_steps: 0,
                ..MuonConfig::default()
            },
            "ns_steps must be in 1..=99, got 0",
        ),
        (
            w(),
            MuonConfig {
                eps: 0.0,
                ..MuonConfig::default()
            },
            "eps must be > 0",
        ),
        (
            w(),
            MuonConfig {
                momentum: -0.5,
                ..MuonConfig::default()
            },
            "momentum must be >= 0",
        ),
        (
            w(),
            MuonConfig {
                ns_coefficients: (f64::NAN, 1.0, 1.0),
                ..MuonConfig::default()
            },
            "ns_coefficients must be finite",
        ),
    ];
    for (groups, cfg, want) in cases {
        let e = Muon::new(groups, cfg).err().expect(want).to_string();
        assert!(e.contains("Muon::new") && e.contains(want), "{e}");
    }
    assert!(
        (MuonLrAdjust::MatchRmsAdamw.adjust(1e-3, 512, 128) - 1e-3 * 0.2 * 512f64.sqrt()).abs()
            < 1e-15
    );
    assert_eq!(MuonLrAdjust::Original.adjust(1e-3, 128, 512), 1e-3);
    assert_eq!(MuonLrAdjust::Original.adjust(1e-3, 512, 128), 2e-3);
}

/// Named parameters.
type Params = Vec<(String, Var)>;

/// Two matrices (for Muon), and a bias and a classifier (for AdamW), with fixed random values.
fn params(seed: u64) -> (Params, Params) {
    let p = |name: &str, shape: &[usize], s: u64| {
        let t = Tensor::randn(shape, 0.0, 1.0, seed + s).unwrap();
        (name.to_string(), Var::parameter(t))
    };
    (
        vec![p("fc1.weight", &[6, 4], 0), p("fc2.weight", &[3, 6], 1)],
        vec![p("fc1.bias", &[6], 2), p("head.weight", &[2, 3], 3)],
    )
}

fn set_grads(ps: &[(String, Var)], t: u64) {
    for (i, (_, v)) in ps.iter().enumerate() {
        let g = Tensor::randn(&v.shape(), 0.0, 1.0, 100 + 10 * t + i as u64).unwrap();
        v.set_grad(Some(g));
    }
}

fn muon(ps: Vec<(String, Var)>) -> Muon {
    let cfg = MuonConfig {
        lr: 0.02,
        ..MuonConfig::default()
    };
    Muon::new(vec![ParamGroup::new(ps)], cfg).unwrap()
}

fn adamw(ps: Vec<(String, Var)>) -> Adam {
    Adam::adamw(vec![ParamGroup::new(ps)], AdamConfig::adamw()).unwrap()
}

fn combined(m: Vec<(String, Var)>, a: Vec<(String, Var)>) -> Combined {
    Combined::new(vec![
        ("muon".to_string(), Box::new(muon(m))),
        ("adamw".to_string(), Box::new(adamw(a))),
    ])
    .unwrap()
}

fn values(ps: &[(String, Var)]) -> Vec<Vec<f32>> {
    ps.iter().map(|(_, v)| v.value().to_vec()).collect()
}

#[test]
fn combined_steps_like_its_parts_alone() {
    let (m1, a1) = params(7);
    let mut both = combined(m1.clone(), a1.clone());
    let (m2, a2) = params(7);
    let (mut mu, mut ad) = (muon(m2.clone()), adamw(a2.clone()));
    for t in 0..4 {
        let lr = 0.01 * (t + 1) as f64;
        both.set_lr(lr).unwrap();
        mu.set_lr(lr).unwrap();
        ad.set_lr(lr).unwrap();
        for ps in [&m1, &a1, &m2, &a2] {
            set_grads(ps, t);
        }
        both.step().unwrap();
        mu.step().unwrap();
        ad.step().unwrap();
    }
    assert_eq!(values(&m1), values(&m2));
    assert_eq!(values(&a1), values(&a2));
    assert_ne!(values(&m1), values(&params(7).0), "the matrices moved");
    assert_eq!(both.lr(), 0.04);
    assert_eq!(both.param_groups().len(), 2);
    let labels: Vec<&str> = both.parts().map(|(l, _)| l).collect();
    assert_eq!(labels, ["muon", "adamw"]);
    // The state is the parts' states under their labels.
    let st = both.state();
    assert_eq!(
        st.tensor("muon/fc1.weight.momentum_buffer"),
        mu.state().tensor("fc1.weight.momentum_buffer")
    );
    assert_eq!(st.scalar("adamw/head.weight.step"), Some(4.0));
    assert_eq!(st.scalar("muon/lr"), Some(0.04));
    both.zero_grad();
    assert!(m1.iter().chain(&a1).all(|(_, v)| v.grad().is_none()));
}

#[test]
fn combined_errors_change_nothing() {
    let (m, a) = params(3);
    // The same parameter in two parts.
    let e = Combined::new(vec![
        ("muon".to_string(), Box::new(muon(m.clone()))),
        ("other".to_string(), Box::new(adamw(m.clone()))),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("`fc1.weight` is in both `muon` and `other`"),
        "{e}"
    );
    // The same tensor under another name in the other part: it would be stepped twice.
    let renamed: Params = m
        .iter()
        .map(|(n, v)| (format!("{n}.copy"), v.clone()))
        .collect();
    let e = Combined::new(vec![
        ("muon".to_string(), Box::new(muon(m.clone()))),
        ("adamw".to_string(), Box::new(adamw(renamed))),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("`fc1.weight.copy` and `fc1.weight` are the same parameter"),
        "{e}"
    );
    let e = Combined::new(vec![
        ("x".to_string(), Box::new(muon(m.clone()))),
        ("x".to_string(), Box::new(adamw(a.clone()))),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("label `x`"), "{e}");
    assert!(Combined::new(Vec::new()).is_err());

    let mut opt = combined(m.clone(), a.clone());
    set_grads(&m, 0);
    set_grads(&a, 0);
    opt.step().unwrap();
    let good = opt.state();
    // A bad gradient in the second part: nothing moves, not even the first part.
    let before = values(&m);
    a[1].1.set_grad(Some(Tensor::zeros(&[3, 2]).unwrap()));
    set_grads(&m, 1);
    let e = opt.step().unwrap_err().to_string();
    assert!(
        e.contains("gradient of `head.weight` has shape [3, 2]"),
        "{e}"
    );
    assert_eq!(values(&m), before);
    assert_eq!(opt.state(), good);
    // A key without a known label.
    let mut bad = good.clone();
    bad.scalars.push(("sgd/lr".to_string(), 0.1));
    let e = opt.load_state(&bad).unwrap_err().to_string();
    assert!(
        e.contains("unexpected key `sgd/lr`") && e.contains("muon/, adamw/"),
        "{e}"
    );
    // The second part refuses its state: the first part, already loaded, is put back.
    set_grads(&m, 2);
    set_grads(&a, 2);
    opt.step().unwrap();
    let now = opt.state();
    let mut bad = good.clone();
    bad.tensors
        .retain(|(k, _)| k != "adamw/head.weight.exp_avg");
    let e = opt.load_state(&bad).unwrap_err().to_string();
    assert!(
        e.contains("part `adamw`") && e.contains("missing tensor `head.weight.exp_avg`"),
        "{e}"
    );
    assert_eq!(opt.state(), now);
    opt.load_state(&good).unwrap();
    assert_eq!(opt.state(), good);
}
