//! RepMLPNet against the reference modules of tools/fixtures/models_repmlpnet.py (written from
//! the authors' `repmlpnet.py`): parity of one block and of a small network, in both the
//! training and the deploy structure, with every parameter and BN statistic random; the
//! parameter counts and state_dict names of the named configs; errors for bad inputs.
//!
//! Parity metric: max|ours − ref| / max|ref| ≤ 1e-4 (f32 on both sides; the network's longest
//! chains are GEMMs of length ≤ 256 and the BN folds, ~1e-6 observed).

use std::collections::BTreeMap;

use allmlp_models::layers::autograd::Var;
use allmlp_models::layers::autograd::tensor_core::Tensor;
use allmlp_models::layers::checkpoint::{load_state_dict, state_dict};
use allmlp_models::layers::state_dict::{StateDict, Strictness};
use allmlp_models::layers::{Ctx, Module, infer, named_buffers, named_parameters, num_parameters};
use allmlp_models::repmlpnet::{
    NAMED, RepMlpBlock, RepMlpBlockConfig, RepMlpNet, RepMlpNetConfig, repmlpnet_t224,
};
use allmlp_models::{Model, ModelError, ModelOptions, create_model};

const TOL: f64 = 1e-4;

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> BTreeMap<String, Tensor> {
    let sd = StateDict::load(fixture_path(name)).unwrap();
    sd.iter().map(|(k, t)| (k.to_string(), t.clone())).collect()
}

/// The entries under `prefix.`, prefix removed.
fn sub(f: &BTreeMap<String, Tensor>, prefix: &str) -> StateDict {
    let p = format!("{prefix}.");
    f.iter()
        .filter_map(|(k, t)| k.strip_prefix(&p).map(|k| (k.to_string(), t.clone())))
        .collect()
}

fn rel_err(got: &Tensor, want: &Tensor, floor: f64) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let (g, w) = (got.to_vec(), want.to_vec());
    let max_ref = w.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let max_diff = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    max_diff / max_ref.max(floor)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_close_floor(what, got, want, tol, 1e-12);
}

/// `max|got − want| / max(max|want|, floor) ≤ tol`.
fn assert_close_floor(what: &str, got: &Tensor, want: &Tensor, tol: f64, floor: f64) {
    let e = rel_err(got, want, floor);
    eprintln!("{what}: relative error {e:.2e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

fn block_cfg(deploy: bool) -> RepMlpBlockConfig {
    // As the fixture: C = 8, S = 4 (G = 2), 3×2 partitions of a 6×4 map (hp = wp = 2).
    RepMlpBlockConfig {
        channels: 8,
        h: 3,
        w: 2,
        sharesets: 4,
        reparam_conv_k: vec![1, 3],
        globalperceptron_reduce: 4,
        deploy,
    }
}

#[test]
fn block_matches_reference_in_eval_train_and_deploy() {
    let f = load("repmlpnet_block.safetensors");
    let x = &f["x"];

    // Eval, training structure.
    let blk = RepMlpBlock::new(&block_cfg(false), 0).unwrap();
    load_state_dict(&blk, sub(&f, "train"), Strictness::Strict).unwrap();
    assert_close("block eval", &infer(&blk, x).unwrap(), &f["y_eval"], TOL);

    // Deploy structure with the authors' converted weights: the same function.
    let dep = RepMlpBlock::new(&block_cfg(true), 0).unwrap();
    load_state_dict(&dep, sub(&f, "deploy"), Strictness::Strict).unwrap();
    let yd = infer(&dep, x).unwrap();
    assert_close("block deploy", &yd, &f["y_deploy"], TOL);
    assert_close("block deploy vs train", &yd, &f["y_eval"], TOL);

    // Training mode: batch statistics, gradients of Σ y ⊙ r, running statistics after the step.
    let xv = Var::parameter(x.clone());
    let y = blk.forward(&xv, &Ctx::train(0)).unwrap();
    assert_close("block train", &y.value(), &f["y_train"], TOL);
    y.backward_with(f["r"].clone()).unwrap();
    assert_close("block grad x", &xv.grad().unwrap(), &f["grad.x"], TOL);
    let params = named_parameters(&blk);
    assert_eq!(params.len(), 13);
    // Gradients are relative to max(max|ref|, 1): `repconv1.conv.weight`'s is analytically 0
    // (a per-channel 1×1 conv right before a train-mode BN is scale-invariant), so both sides
    // hold only rounding noise (~2e-4 in PyTorch); every other gradient is O(1–20).
    for (name, p) in params {
        let (g, want) = (p.grad().unwrap(), &f[&format!("grad.{name}")]);
        assert_close_floor(&format!("block grad {name}"), &g, want, TOL, 1.0);
    }
    for (name, b) in named_buffers(&blk) {
        let want = &f[&format!("train_after.{name}")];
        assert_close(&format!("block {name} after a step"), &b, want, 1e-5);
    }
}

fn small(deploy: bool) -> RepMlpNetConfig {
    // As the fixture: img 64, maps 16, 8, 4, 2; hp·wp = 4, 2, 2, 2 and C/S = 8, 8, 4, 4, so the
    // authors' partition shuffle is exercised at every stage.
    RepMlpNetConfig {
        name: "repmlpnet_small_fixture".into(),
        img_size: 64,
        num_classes: 10,
        channels: vec![8, 16, 16, 32],
        hs: vec![8, 4, 2, 2],
        ws: vec![4, 8, 4, 1],
        num_blocks: vec![1, 1, 2, 1],
        sharesets: vec![1, 2, 4, 8],
        deploy,
        ..RepMlpNetConfig::default()
    }
}

#[test]
fn small_net_matches_reference_in_train_and_deploy_structure() {
    let f = load("repmlpnet_net.safetensors");
    let x = &f["x"];
    for (deploy, key, want) in [(false, "train", "y_eval"), (true, "deploy", "y_deploy")] {
        let cfg = small(deploy);
        let net = RepMlpNet::new(&cfg).unwrap();
        assert_eq!(num_parameters(&net), cfg.num_parameters().unwrap());
        let report = load_state_dict(&net, sub(&f, key), Strictness::Strict).unwrap();
        assert!(report.is_clean());
        let y = infer(&net, x).unwrap();
        assert_close(&format!("net {key} structure, eval"), &y, &f[want], TOL);
        // The deploy structure with the authors' converted weights computes the same function.
        assert_close(
            &format!("net {key} structure vs train structure"),
            &y,
            &f["y_eval"],
            TOL,
        );
        assert_eq!(net.is_deploy(), deploy);
        // state_dict round trip keeps the authors' names and order.
        let names: Vec<String> = state_dict(&net).keys().map(str::to_string).collect();
        let mut want_names: Vec<String> = sub(&f, key).keys().map(str::to_string).collect();
        want_names.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, want_names);
    }
}

/// The paper's table (millions), in `NAMED` order.
const PAPER_M: [f64; 6] = [38.3, 68.2, 58.7, 96.5, 86.9, 117.7];

#[test]
fn parameter_counts_match_the_authors_code_and_the_paper() {
    let text = std::fs::read_to_string(fixture_path("repmlpnet_param_counts.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for ((name, f), paper) in NAMED.iter().zip(PAPER_M) {
        let authors = &doc["param_counts"][name];
        let mut cfg = f();
        assert_eq!(
            cfg.num_parameters().unwrap() as u64,
            authors["train"].as_u64().unwrap(),
            "{name}"
        );
        // The paper rounds loosely: B256 is 96.4475M (paper 96.5M) and L256 117.6416M (paper
        // 117.7M) in the authors' own code; all are within 0.07M.
        let m = cfg.num_parameters().unwrap() as f64 / 1e6;
        assert!(
            (m - paper).abs() < 0.07,
            "{name}: {m:.4}M vs paper {paper}M"
        );
        cfg.deploy = true;
        assert_eq!(
            cfg.num_parameters().unwrap() as u64,
            authors["deploy"].as_u64().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn full_size_t224_has_the_authors_names_shapes_and_counts() {
    // Builds RepMLPNet-T224 (38.3M parameters) in both structures; no forward pass.
    let text = std::fs::read_to_string(fixture_path("repmlpnet_param_counts.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for form in ["train", "deploy"] {
        let net: Box<dyn Model> = if form == "train" {
            create_model("repmlpnet_t224", &ModelOptions::default()).unwrap()
        } else {
            let mut cfg = repmlpnet_t224();
            cfg.deploy = true;
            Box::new(RepMlpNet::new(&cfg).unwrap())
        };
        let got: Vec<(String, Vec<usize>)> = state_dict(net.as_ref())
            .iter()
            .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
            .collect();
        let want: Vec<(String, Vec<usize>)> = doc["repmlpnet_t224_state_dict"][form]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1].as_array().unwrap();
                (
                    e[0].as_str().unwrap().to_string(),
                    shape.iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                )
            })
            .collect();
        assert_eq!(got, want, "{form}: state_dict names, order and shapes");
        let count = doc["param_counts"]["repmlpnet_t224"][form]
            .as_u64()
            .unwrap();
        assert_eq!(num_parameters(net.as_ref()) as u64, count, "{form}");
        assert_eq!(net.input_shape(), [3, 224, 224]);
        assert_eq!(net.num_classes(), 1000);
        assert_eq!(net.name(), "repmlpnet_t224");
        assert_eq!(net.is_deploy(), form == "deploy");
        assert_eq!(
            net.config()["sharesets"],
            serde_json::json!([1, 4, 16, 128])
        );
        // The same key as every other family's config names the architecture.
        assert_eq!(net.config()["arch"], "repmlpnet");
    }
}

#[test]
#[ignore = "full-size forward passes; run with `cargo test -p allmlp-models --test repmlpnet -- --ignored` (~12 s)"]
fn every_named_model_runs_at_full_size() {
    for (name, f) in NAMED {
        let cfg = f();
        let net = RepMlpNet::new(&cfg).unwrap();
        assert_eq!(
            num_parameters(&net),
            cfg.num_parameters().unwrap(),
            "{name}"
        );
        let s = cfg.img_size;
        let y = infer(&net, &Tensor::randn(&[1, 3, s, s], 0.0, 1.0, 0).unwrap()).unwrap();
        assert_eq!(y.shape(), [1, 1000]);
        assert!(y.to_vec().iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn bad_inputs_name_the_expected_size() {
    let net = RepMlpNet::new(&small(false)).unwrap();
    for bad in [
        &[2, 3, 56, 56][..],
        &[2, 1, 64, 64],
        &[3, 64, 64],
        &[0, 3, 64, 64],
    ] {
        match net.check_input(bad) {
            Err(ModelError::BadInput {
                model,
                expected,
                got,
            }) => {
                assert_eq!(model, "repmlpnet_small_fixture");
                assert!(expected.starts_with("[N, 3, 64, 64]"), "{expected}");
                assert!(expected.contains("8×4, 4×8, 2×4, 2×1"), "{expected}");
                assert!(expected.contains("16, 8, 4, 2"), "{expected}");
                assert_eq!(got, format!("{bad:?}"));
            }
            other => panic!("{bad:?}: {other:?}"),
        }
        // Through Module::forward: the same message.
        let x = Var::constant(Tensor::zeros(bad).unwrap());
        let e = net.forward(&x, &Ctx::eval()).unwrap_err().to_string();
        assert!(
            e.contains("repmlpnet_small_fixture") && e.contains("[N, 3, 64, 64]"),
            "{e}"
        );
    }
    assert!(net.check_input(&[1, 3, 64, 64]).is_ok());
}

#[test]
fn bad_configs_and_options_are_errors() {
    let invalid = |r: Result<RepMlpNetConfig, ModelError>, what: &str| match r {
        Err(ModelError::InvalidConfig { msg, .. }) => assert!(msg.contains(what), "{msg}"),
        other => panic!("{what}: {other:?}"),
    };
    // 256 / 4 = 64 is not a whole number of RepMLPNet-T224's 56×56 partitions.
    let o = ModelOptions {
        img_size: Some(256),
        ..ModelOptions::default()
    };
    invalid(
        repmlpnet_t224().with_options(&o),
        "not a whole number of 56×56",
    );
    // 448 gives 2×2 partitions of 56×56 at every stage: valid (the authors accept it too).
    let o = ModelOptions {
        img_size: Some(448),
        num_classes: Some(10),
        ..ModelOptions::default()
    };
    let c = repmlpnet_t224().with_options(&o).unwrap();
    assert_eq!((c.img_size, c.num_classes), (448, 10));
    let o = ModelOptions {
        drop_path_rate: 0.1,
        ..ModelOptions::default()
    };
    invalid(repmlpnet_t224().with_options(&o), "no dropout or drop path");
    let e = create_model("repmlpnet_t224", &o)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("repmlpnet_t224: invalid configuration"),
        "{e}"
    );

    let mut c = small(false);
    c.sharesets[2] = 3;
    invalid(
        c.validate().map(|_| c.clone()),
        "stage 3: channels must be a positive multiple",
    );
    let mut c = small(false);
    c.hs.pop();
    invalid(c.validate().map(|_| c.clone()), "one entry per stage");
    let mut c = small(false);
    c.img_size = 16;
    invalid(c.validate().map(|_| c.clone()), "leaves no pixel");
    let mut c = small(false);
    c.reparam_conv_k = vec![1, 2];
    invalid(c.validate().map(|_| c.clone()), "distinct odd");
    let mut c = small(false);
    c.globalperceptron_reduce = 16;
    invalid(c.validate().map(|_| c.clone()), "globalperceptron_reduce");
    assert!(RepMlpNet::new(&c).is_err());
}
