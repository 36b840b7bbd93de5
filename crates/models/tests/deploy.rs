//! Train → deploy conversion of the RepMLP family (`allmlp_models::deploy`).
//!
//! Every test fills ALL parameters and BN statistics with random values (running mean, running
//! var, γ, β: defaults would hide a wrong fold) and compares, in eval mode, the training model
//! with its converted deploy model:
//! - per block: max|train − deploy| / max|train| ≤ 1e-5 (one FC3 GEMM against FC3 + BN + up to
//!   three convs + BN, f32, lengths ≤ a few hundred);
//! - per whole model: ≤ 1e-4 (the spec's parity metric; the error compounds over depth);
//! - against the authors' conversion (`deploy.*` tensors of the block/net fixtures written by
//!   tools/fixtures/models_repmlp.py and models_repmlpnet.py): our converted WEIGHTS ≤ 1e-6.
//!
//! The linearity of each step (BN fold, pad, merge, conv → FC) is property-tested in
//! `crates/reparam/tests/` (conv_to_fc.rs: linearity and pad/merge commute; bn_fusion.rs,
//! repmlp_fc3.rs, global_perceptron.rs). Full-size 224/256 conversions are `#[ignore]`d:
//! `cargo test -p allmlp-models --test deploy -- --ignored`.

use allmlp_models::layers::autograd::tensor_core::Tensor;
use allmlp_models::layers::autograd::{Var, no_grad};
use allmlp_models::layers::checkpoint::{load_state_dict, state_dict};
use allmlp_models::layers::state_dict::{StateDict, Strictness};
use allmlp_models::layers::{Buffer, Ctx, Module, Visitor, num_parameters};
use allmlp_models::repmlp::ResNetBlockKind;
use allmlp_models::repmlpnet::{self, RepMlpNet, RepMlpNetConfig};
use allmlp_models::{
    Model, ModelOptions, RepMlpBlock, RepMlpBlockConfig, RepMlpPure, RepMlpPureConfig,
    RepMlpResNet, RepMlpResNetConfig, convert_checkpoint, create_deploy_model, create_deployable,
    create_model, deployable_names, to_deploy,
};
use serde_json::Value;

const BLOCK_TOL: f64 = 1e-5;
const MODEL_TOL: f64 = 1e-4;
const AUTHORS_TOL: f64 = 1e-6;

// ------------------------------------------------------------- helpers

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Random values for the tensor `name`: BN γ and running var in [0.5, 1.5], other vectors
/// (β, running mean, biases) in [−0.3, 0.3], weights uniform with variance 2/fan_in.
fn random(name: &str, shape: &[usize], salt: u64) -> Tensor {
    let seed = fnv1a(name.as_bytes()) ^ salt;
    let vector_weight = shape.len() == 1 && name.ends_with("weight");
    if name.ends_with("running_var") || vector_weight {
        Tensor::rand_uniform(shape, 0.5, 1.5, seed).unwrap()
    } else if shape.len() <= 1 {
        Tensor::rand_uniform(shape, -0.3, 0.3, seed).unwrap()
    } else {
        let fan_in: usize = shape[1..].iter().product();
        let s = (6.0 / fan_in as f32).sqrt();
        Tensor::rand_uniform(shape, -s, s, seed).unwrap()
    }
}

struct Randomize(u64);

impl Visitor for Randomize {
    fn param(&mut self, name: &str, p: &Var) {
        p.set_value(random(name, &p.shape(), self.0)).unwrap();
    }
    fn buffer(&mut self, name: &str, b: &Buffer) {
        if name.ends_with("num_batches_tracked") {
            b.set(Tensor::scalar(7.0));
        } else {
            b.set(random(name, b.get().shape(), self.0));
        }
    }
}

fn randomize(m: &dyn Module, salt: u64) {
    m.visit("", &mut Randomize(salt));
}

fn eval(m: &dyn Module, x: &Tensor) -> Tensor {
    no_grad(|| m.forward(&Var::constant(x.clone()), &Ctx::eval()))
        .unwrap()
        .value()
}

/// max|got − want| / max|want|.
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let (g, w) = (got.to_vec(), want.to_vec());
    let max_ref = w.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let max_diff = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    max_diff / max_ref.max(1e-12)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) -> f64 {
    let e = rel_err(got, want);
    eprintln!("{what}: relative error {e:.2e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
    e
}

fn names_shapes(m: &dyn Module) -> Vec<(String, Vec<usize>)> {
    state_dict(m).shapes()
}

fn fixture(name: &str) -> StateDict {
    let path = format!(
        "{}/tests/fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    StateDict::load(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sub(sd: &StateDict, prefix: &str) -> StateDict {
    let p = format!("{prefix}.");
    sd.iter()
        .filter_map(|(k, t)| k.strip_prefix(&p).map(|k| (k.to_string(), t.clone())))
        .collect()
}

/// Every converted tensor against the authors' `deploy.*`, same names (both ways), ≤ 1e-6.
fn assert_weights_match_authors(what: &str, ours: &dyn Module, authors: &StateDict) -> f64 {
    let ours = state_dict(ours);
    let mut a: Vec<&str> = authors.keys().collect();
    let mut o: Vec<&str> = ours.keys().collect();
    a.sort_unstable();
    o.sort_unstable();
    assert_eq!(o, a, "{what}: deploy names");
    let mut worst = 0f64;
    for (k, t) in ours.iter() {
        let want = authors.get(k).unwrap();
        let e = rel_err(t, want);
        assert!(e <= AUTHORS_TOL, "{what} {k}: relative error {e:.3e}");
        worst = worst.max(e);
    }
    eprintln!("{what}: worst weight error vs the authors' conversion {worst:.2e}");
    worst
}

// ------------------------------------------------------------- RepMLP v1 blocks

/// C, O, H, W, h, w, k, reduction, g.
type V1 = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    &'static [usize],
    usize,
    usize,
);

const V1_BLOCKS: [V1; 6] = [
    (4, 8, 8, 12, 4, 6, &[1, 3, 5], 2, 2), // GP, C ≠ O, g = 2, rectangular partitions
    (6, 6, 8, 8, 4, 4, &[1, 3, 5], 1, 1),  // GP, g = 1
    (8, 4, 12, 8, 6, 4, &[1, 3], 1, 4),    // GP, C ≠ O, g = 4, k = (1, 3)
    (8, 8, 7, 7, 7, 7, &[1, 3, 5], 1, 4),  // no GP, g = 4
    (4, 6, 6, 6, 6, 6, &[1, 3], 1, 2),     // no GP, C ≠ O, k = (1, 3)
    (4, 4, 8, 8, 4, 4, &[], 1, 1),         // no local branch: only fc3_bn and avg.bn fold
];

#[test]
fn repmlp_v1_blocks_convert_exactly() {
    for (i, &(c, o, hh, ww, h, w, ks, red, g)) in V1_BLOCKS.iter().enumerate() {
        let cfg = RepMlpBlockConfig::new(c, o, (hh, ww), (h, w), ks, red, g);
        let block = RepMlpBlock::new(cfg.clone(), i as u64).unwrap();
        randomize(&block, i as u64);
        let dep = block.to_deploy().unwrap();
        assert!(dep.is_deploy() && !block.is_deploy());
        assert_eq!(dep.config, cfg.clone().deploy());
        // The converted block has exactly the structure the deploy config builds.
        let fresh = RepMlpBlock::new(cfg.clone().deploy(), 0).unwrap();
        assert_eq!(names_shapes(&dep), names_shapes(&fresh));
        let x = Tensor::randn(&[3, c, hh, ww], 0.0, 1.0, 100 + i as u64).unwrap();
        let what = format!("v1 block C{c} O{o} {hh}x{ww}/{h}x{w} k{ks:?} g{g}");
        assert_close(&what, &eval(&dep, &x), &eval(&block, &x), BLOCK_TOL);
        // The training block is untouched and a deploy block does not convert again.
        assert!(block.train.is_some());
        let e = dep.to_deploy().unwrap_err().to_string();
        assert!(e.contains("already in deploy form"), "{e}");
    }
}

fn v1_fixture_config(sd: &StateDict) -> RepMlpBlockConfig {
    let meta: Value = serde_json::from_str(sd.metadata_value("meta").unwrap()).unwrap();
    let c = &meta["config"];
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let ks: Vec<usize> = c["k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    RepMlpBlockConfig::new(
        u("C"),
        u("O"),
        (u("H"), u("W")),
        (u("h"), u("w")),
        &ks,
        u("reduction"),
        u("groups"),
    )
}

#[test]
fn repmlp_v1_block_weights_match_the_authors_conversion() {
    // C = O (g4: C = O = 8, with GP; nogp: C = O = 4): every deploy tensor matches.
    for name in ["g4", "nogp"] {
        let sd = fixture(&format!("repmlp_block_{name}"));
        let cfg = v1_fixture_config(&sd);
        assert_eq!(cfg.in_channels, cfg.out_channels);
        let block = RepMlpBlock::new(cfg, 0).unwrap();
        load_state_dict(&block, sub(&sd, "param"), Strictness::Strict).unwrap();
        let dep = block.to_deploy().unwrap();
        assert_weights_match_authors(&format!("v1 block {name}"), &dep, &sub(&sd, "deploy"));
        let (x, want) = (sd.get("input").unwrap(), sd.get("deploy_output").unwrap());
        let what = format!("v1 block {name} output vs authors' deploy output");
        assert_close(&what, &eval(&dep, x), want, BLOCK_TOL);
    }
    // g2 has C = 4 ≠ O = 8, where the authors' `reshape(O·h·w/g, C·h·w).t()` … `reshape_as`
    // scrambles the conv → FC matrix (docs/reparam.md §3): their deploy block is NOT the
    // training block (its output differs from the eval output by ~100%). Ours is: every other
    // tensor (fc1 with avg.bn folded, fc2, fc3.bias) equals theirs, and our deploy output
    // equals the reference TRAINING block's eval output.
    let sd = fixture("repmlp_block_g2");
    let block = RepMlpBlock::new(v1_fixture_config(&sd), 0).unwrap();
    load_state_dict(&block, sub(&sd, "param"), Strictness::Strict).unwrap();
    let dep = block.to_deploy().unwrap();
    let authors = sub(&sd, "deploy");
    for (k, t) in state_dict(&dep).iter() {
        let e = rel_err(t, authors.get(k).unwrap());
        if k == "fc3.weight" {
            assert!(
                e > 0.1,
                "the authors' C ≠ O fc3.weight should differ, got {e:.2e}"
            );
        } else {
            assert!(e <= AUTHORS_TOL, "v1 block g2 {k}: relative error {e:.3e}");
        }
    }
    let x = sd.get("input").unwrap();
    let y = eval(&dep, x);
    assert_close(
        "v1 block g2 (C≠O) vs reference eval",
        &y,
        sd.get("output").unwrap(),
        BLOCK_TOL,
    );
    let theirs = rel_err(sd.get("deploy_output").unwrap(), sd.get("output").unwrap());
    eprintln!("v1 block g2: the authors' C≠O deploy output differs from eval by {theirs:.2e}");
    assert!(theirs > 0.1);
}

// ------------------------------------------------------------- RepMLP v1 models

/// Converts `train` (a registry model, randomized) through the dynamic API and checks the
/// deploy model: output, structure, MACs when the type has them.
fn check_model(what: &str, train: &dyn Model, batch: usize) -> Box<dyn Model> {
    let dep = to_deploy(train).unwrap();
    assert!(dep.is_deploy() && !train.is_deploy());
    assert_eq!(dep.config()["deploy"], Value::Bool(true));
    assert_eq!(dep.name(), train.name());
    let [c, h, w] = train.input_shape();
    let x = Tensor::randn(&[batch, c, h, w], 0.0, 1.0, 5).unwrap();
    assert_close(what, &eval(dep.as_ref(), &x), &eval(train, &x), MODEL_TOL);
    let e = to_deploy(dep.as_ref()).err().unwrap().to_string();
    assert!(e.contains(train.name()) && e.contains("already"), "{e}");
    dep
}

#[test]
fn repmlp_tiny_and_pure_convert_exactly() {
    for (name, salt) in [("repmlp_tiny", 1), ("repmlp_pure", 2)] {
        let opts = ModelOptions::default();
        let train = create_model(name, &opts).unwrap();
        randomize(train.as_ref(), salt);
        let dep = check_model(name, train.as_ref(), 2);
        let fresh = create_deploy_model(name, &opts).unwrap();
        assert!(fresh.is_deploy());
        assert_eq!(names_shapes(dep.as_ref()), names_shapes(fresh.as_ref()));
        assert_eq!(num_parameters(dep.as_ref()), num_parameters(fresh.as_ref()));
    }
    // The typed API: same numbers, and MACs equal those of the directly built deploy model.
    let cfg = RepMlpPureConfig::tiny_fmnist();
    let train = RepMlpPure::new("repmlp_tiny", cfg.clone(), 3).unwrap();
    randomize(&train, 3);
    let dep = train.to_deploy().unwrap();
    let fresh = RepMlpPure::new(
        "repmlp_tiny",
        RepMlpPureConfig {
            deploy: true,
            ..cfg
        },
        0,
    );
    assert_eq!(dep.macs(), fresh.unwrap().macs());
    assert!(dep.macs() < train.macs());
    let x = Tensor::randn(&[2, 1, 28, 28], 0.0, 1.0, 9).unwrap();
    assert_close(
        "repmlp_tiny typed",
        &eval(&dep, &x),
        &eval(&train, &x),
        MODEL_TOL,
    );
}

/// The RepMLP-Res50 layout at reduced width and depth on 64×64 input, 4×2 partitions (both
/// RepMLP stages have a Global Perceptron), as tests/repmlp.rs.
fn small_resnet(block: ResNetBlockKind, deploy: bool) -> RepMlpResNet {
    let mut c = RepMlpResNetConfig::res50_224(block);
    c.layers = [1, 2, 3, 1];
    c.stem_channels = 16;
    c.channels = [32, 64, 128, 256];
    c.img_size = 64;
    c.num_classes = 10;
    c.partition = (4, 2);
    c.deploy = deploy;
    RepMlpResNet::new("small", c, 0).unwrap()
}

#[test]
fn reduced_light_and_bottleneck_resnets_convert_exactly() {
    for (kind, salt) in [
        (ResNetBlockKind::Light, 4),
        (ResNetBlockKind::Bottleneck, 5),
    ] {
        let train = small_resnet(kind, false);
        randomize(&train, salt);
        let dep = train.to_deploy().unwrap();
        let fresh = small_resnet(kind, true);
        assert_eq!(names_shapes(&dep), names_shapes(&fresh));
        assert_eq!(dep.macs(), fresh.macs());
        assert!(dep.is_deploy() && dep.config()["deploy"] == Value::Bool(true));
        let x = Tensor::randn(&[2, 3, 64, 64], 0.0, 1.0, 6).unwrap();
        assert_close(
            &format!("small {kind:?} resnet"),
            &eval(&dep, &x),
            &eval(&train, &x),
            MODEL_TOL,
        );
        // A custom configuration has no registry name: the dynamic path says so.
        let err = to_deploy(&train).err().unwrap().to_string();
        assert!(err.contains("small"), "{err}");
    }
}

// ------------------------------------------------------------- RepMLPNet

fn net_block_cfgs() -> Vec<repmlpnet::RepMlpBlockConfig> {
    let b = |channels, h, w, sharesets, ks: &[usize]| repmlpnet::RepMlpBlockConfig {
        channels,
        h,
        w,
        sharesets,
        reparam_conv_k: ks.to_vec(),
        globalperceptron_reduce: 4,
        deploy: false,
    };
    vec![
        b(8, 3, 2, 4, &[1, 3]),    // the fixture's block (hp = wp = 2, C/S = 2)
        b(8, 4, 4, 1, &[1, 3, 5]), // one shareset, k up to 5
        b(16, 2, 4, 16, &[3]),     // depthwise, one branch
    ]
}

#[test]
fn repmlpnet_blocks_convert_exactly() {
    for (i, cfg) in net_block_cfgs().into_iter().enumerate() {
        let blk = repmlpnet::RepMlpBlock::new(&cfg, i as u64).unwrap();
        randomize(&blk, 10 + i as u64);
        let dep = blk.to_deploy().unwrap();
        assert!(dep.is_deploy());
        let fresh = repmlpnet::RepMlpBlock::new(
            &repmlpnet::RepMlpBlockConfig {
                deploy: true,
                ..cfg.clone()
            },
            0,
        )
        .unwrap();
        assert_eq!(names_shapes(&dep), names_shapes(&fresh));
        let x = Tensor::randn(&[2, cfg.channels, cfg.h * 2, cfg.w * 2], 0.0, 1.0, 3).unwrap();
        assert_close(
            &format!("RepMLPNet block {cfg:?}"),
            &eval(&dep, &x),
            &eval(&blk, &x),
            BLOCK_TOL,
        );
        assert!(dep.to_deploy().is_err());
    }
}

/// The fixture net's configuration (tests/repmlpnet.rs `small`).
fn small_net(deploy: bool) -> RepMlpNetConfig {
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
fn repmlpnet_block_and_net_weights_match_the_authors_conversion() {
    let f = fixture("repmlpnet_block");
    let blk = repmlpnet::RepMlpBlock::new(&net_block_cfgs()[0], 0).unwrap();
    load_state_dict(&blk, sub(&f, "train"), Strictness::Strict).unwrap();
    let dep = blk.to_deploy().unwrap();
    assert_weights_match_authors("RepMLPNet block", &dep, &sub(&f, "deploy"));
    let y = eval(&dep, f.get("x").unwrap());
    assert_close(
        "RepMLPNet block vs authors' y_deploy",
        &y,
        f.get("y_deploy").unwrap(),
        BLOCK_TOL,
    );

    let f = fixture("repmlpnet_net");
    let net = RepMlpNet::new(&small_net(false)).unwrap();
    load_state_dict(&net, sub(&f, "train"), Strictness::Strict).unwrap();
    let dep = net.to_deploy().unwrap();
    // Every deploy tensor, the copied (unfused) conv-BNs and pre-BNs included.
    assert_weights_match_authors("RepMLPNet small net", &dep, &sub(&f, "deploy"));
    let y = eval(&dep, f.get("x").unwrap());
    assert_close(
        "RepMLPNet net vs authors' y_deploy",
        &y,
        f.get("y_deploy").unwrap(),
        MODEL_TOL,
    );
}

#[test]
fn small_repmlpnet_converts_exactly() {
    let net = RepMlpNet::new(&small_net(false)).unwrap();
    randomize(&net, 20);
    let dep = net.to_deploy().unwrap();
    let fresh = RepMlpNet::new(&small_net(true)).unwrap();
    assert_eq!(names_shapes(&dep), names_shapes(&fresh));
    assert_eq!(
        num_parameters(&dep),
        small_net(true).num_parameters().unwrap()
    );
    assert_eq!(dep.config()["deploy"], Value::Bool(true));
    let x = Tensor::randn(&[2, 3, 64, 64], 0.0, 1.0, 21).unwrap();
    assert_close(
        "small RepMLPNet",
        &eval(&dep, &x),
        &eval(&net, &x),
        MODEL_TOL,
    );
    // The conv-BNs the authors leave unfused are still there (BN names), as in their deploy.
    assert!(state_dict(&dep).contains_key("stages.0.0.ffn_block.ffn_fc1.bn.running_var"));
    assert!(!state_dict(&dep).contains_key("stages.0.0.repmlp_block.fc3_bn.weight"));
}

// ------------------------------------------------------------- checkpoints and registry

#[test]
fn convert_checkpoint_writes_a_deploy_checkpoint_that_loads_by_name() {
    let opts = ModelOptions::default();
    let train = create_model("repmlp_tiny", &opts).unwrap();
    randomize(train.as_ref(), 30);
    let mut sd = state_dict(train.as_ref());
    sd.set_model("repmlp_tiny");
    let out = convert_checkpoint(sd.clone(), "repmlp_tiny", &opts).unwrap();
    assert_eq!(out.metadata_value("deploy"), Some("true"));
    assert_eq!(out.model(), Some("repmlp_tiny"));
    let cfg: Value = out.config().unwrap().unwrap();
    assert_eq!(cfg["deploy"], Value::Bool(true));
    // Survives a file round trip and loads strictly into the deploy model built by name.
    let dir = std::env::temp_dir().join(format!("allmlp_deploy_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny_deploy.safetensors");
    out.save(&path).unwrap();
    let loaded = StateDict::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let dep = create_deploy_model("repmlp_tiny", &opts).unwrap();
    load_state_dict(dep.as_ref(), loaded.clone(), Strictness::Strict).unwrap();
    let x = Tensor::randn(&[2, 1, 28, 28], 0.0, 1.0, 31).unwrap();
    assert_close(
        "repmlp_tiny checkpoint",
        &eval(dep.as_ref(), &x),
        &eval(train.as_ref(), &x),
        MODEL_TOL,
    );
    // A deploy checkpoint does not convert again; nor does one with a missing key.
    let e = convert_checkpoint(loaded, "repmlp_tiny", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("repmlp_tiny") && e.contains("deploy"), "{e}");
    let mut cfg_only = sd.clone();
    cfg_only
        .set_config(&serde_json::json!({"deploy": true}))
        .unwrap();
    assert!(convert_checkpoint(cfg_only, "repmlp_tiny", &opts).is_err());
    let mut missing = sd.clone();
    missing.remove("linear.bias");
    let e = convert_checkpoint(missing, "repmlp_tiny", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("linear.bias"), "{e}");
    // A training checkpoint of another model does not load strictly.
    assert!(convert_checkpoint(sd, "repmlp_pure", &opts).is_err());
}

#[test]
fn models_without_a_deploy_form_are_errors_naming_them() {
    let opts = ModelOptions::default();
    for name in ["mixer_tiny", "resmlp_tiny"] {
        let m = create_model(name, &opts).unwrap();
        let e = to_deploy(m.as_ref()).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("no deploy form"), "{e}");
        let e = create_deploy_model(name, &opts).err().unwrap().to_string();
        assert!(e.contains(name), "{e}");
        let e = convert_checkpoint(state_dict(m.as_ref()), name, &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{e}");
    }
    let e = create_deployable("repmlp_nope", &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("repmlp_nope") && e.contains("repmlp_tiny"),
        "{e}"
    );
    let names = deployable_names();
    assert_eq!(names.len(), 10, "{names:?}");
    // Every deployable name builds its deploy form directly with the options applied.
    let small = ModelOptions {
        num_classes: Some(7),
        ..ModelOptions::default()
    };
    let m = create_deploy_model("repmlp_pure", &small).unwrap();
    assert!(m.is_deploy() && m.num_classes() == 7);
}

// ------------------------------------------------------------- full size (ignored)

#[test]
#[ignore = "full-size conversions (hundreds of MB, seconds each); run with --ignored"]
fn full_size_models_convert_exactly() {
    for name in [
        "repmlp_res50_light_224",
        "repmlp_res50_bottleneck_224",
        "repmlpnet_t224",
    ] {
        let train = create_deployable(name, &ModelOptions::default()).unwrap();
        randomize(train.as_ref(), 40);
        let dep = train.deploy().unwrap();
        let fresh = create_deploy_model(name, &ModelOptions::default()).unwrap();
        assert_eq!(names_shapes(dep.as_ref()), names_shapes(fresh.as_ref()));
        let [c, h, w] = train.input_shape();
        let x = Tensor::randn(&[1, c, h, w], 0.0, 1.0, 41).unwrap();
        assert_close(
            name,
            &eval(dep.as_ref(), &x),
            &eval(train.as_ref(), &x),
            MODEL_TOL,
        );
    }
}
