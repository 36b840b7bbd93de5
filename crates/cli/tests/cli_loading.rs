//! Checkpoints through the `allmlp` binary beyond its own files: the ResMLP authors' names, a
//! deploy checkpoint without metadata, sizes given by flags, and the checks that keep unusable
//! weights and misdirected outputs from giving silent results.

use std::path::Path;

use allmlp::checkpoint::{TrainedMeta, trained_state_dict};
use allmlp::data::Normalization;
use allmlp::layers::autograd::tensor_core::Tensor;
use allmlp::layers::checkpoint::state_dict;
use allmlp::layers::infer;
use allmlp::layers::state_dict::StateDict;
use allmlp::models::{Model, ModelOptions, create_model};

mod common;
use common::{
    Randomize, RandomizeAll, allmlp, assert_fails, reparam, run_infer, save_input,
    save_repmlp_tiny, stderr,
};

/// Runs `infer` and returns the logits.
fn infer_cli(dir: &Path, weights: &str, model: Option<&str>, extra: &[&str]) -> Tensor {
    let o = run_infer(dir, (weights, "x.safetensors"), model, extra);
    assert!(o.status.success(), "{}", stderr(&o));
    let y = StateDict::load(dir.join("y.safetensors")).unwrap();
    y.get("logits").unwrap().clone()
}

/// `max |a − b| ≤ tol · max |b|`, with non-trivial `b`.
fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    let (a, b) = (a.to_vec(), b.to_vec());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "{what}: trivial logits");
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= tol * scale,
        "{what}: differs by {diff} (scale {scale})"
    );
}

/// The ResMLP authors' (deit `resmlp_models.py`) name and shape of a timm key.
fn authors_name(key: &str, t: &Tensor) -> (String, Tensor) {
    let k = key
        .replace("stem.", "patch_embed.")
        .replace(".linear_tokens.", ".attn.")
        .replace(".mlp_channels.", ".mlp.")
        .replace(".ls1", ".gamma_1")
        .replace(".ls2", ".gamma_2");
    let t = if k.ends_with(".alpha") || k.ends_with(".beta") {
        t.reshape(&[t.numel()]).unwrap()
    } else {
        t.clone()
    };
    (k, t)
}

/// The authors' ResMLP names load as timm's (the spec: "loading should accept both"), and a
/// RepMLP deploy checkpoint without any metadata (as the authors' conversion writes it) loads
/// into the deploy structure.
#[test]
fn other_references_checkpoints_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let x = save_input(&p("x.safetensors"), "input", &[2, 1, 28, 28]);

    let r = create_model("resmlp_tiny", &ModelOptions::default()).unwrap();
    r.visit("", &mut Randomize(11));
    let mut authors = StateDict::new();
    for (k, t) in state_dict(&*r).iter() {
        let (k, t) = authors_name(k, t);
        authors.insert(k, t);
    }
    assert!(authors.contains_key("blocks.0.attn.weight"));
    assert_eq!(authors.get("blocks.0.norm1.alpha").unwrap().shape(), [128]);
    authors.save(p("authors.safetensors")).unwrap();
    let got = infer_cli(dir.path(), "authors.safetensors", Some("resmlp_tiny"), &[]);
    assert_close(&got, &infer(&*r, &x).unwrap(), 1e-6, "authors' names");

    let m = save_repmlp_tiny(&p("train.safetensors"), 5);
    reparam(dir.path(), "train.safetensors", "deploy.safetensors");
    let mut bare = StateDict::new();
    for (k, t) in StateDict::load(p("deploy.safetensors")).unwrap().iter() {
        bare.insert(k, t.clone());
    }
    assert!(bare.metadata.is_empty());
    bare.save(p("bare.safetensors")).unwrap();
    let got = infer_cli(dir.path(), "bare.safetensors", Some("repmlp_tiny"), &[]);
    assert_close(
        &got,
        &infer(&*m, &x).unwrap(),
        1e-4,
        "deploy without metadata",
    );
}

/// `reparam` takes `--num-classes` (and the other size flags) for a checkpoint without
/// `config` metadata, as `infer` does.
#[test]
fn reparam_takes_sizes_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let opts = ModelOptions {
        num_classes: Some(7),
        ..ModelOptions::default()
    };
    let m = create_model("repmlp_tiny", &opts).unwrap();
    m.visit("", &mut RandomizeAll(9));
    state_dict(&*m).save(p("plain.safetensors")).unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "reparam",
            "--model",
            "repmlp_tiny",
            "--weights",
            "plain.safetensors",
            "--output",
            "deploy.safetensors",
        ];
        a.extend_from_slice(extra);
        a
    };
    assert_fails(
        &allmlp(&args(&[]), dir.path()),
        &["`linear.weight`: expected [10, 64], found [7, 64]"],
    );
    let o = allmlp(&args(&["--num-classes", "7"]), dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let x = save_input(&p("x.safetensors"), "input", &[2, 1, 28, 28]);
    let got = infer_cli(
        dir.path(),
        "deploy.safetensors",
        Some("repmlp_tiny"),
        &["--num-classes", "7"],
    );
    assert_close(&got, &infer(&*m, &x).unwrap(), 1e-4, "7 classes");
}

fn trained(net: &dyn Model, classes: usize) -> StateDict {
    let meta = TrainedMeta {
        dataset: "fashion-mnist".into(),
        normalization: Normalization::fashion_mnist(),
        classes: (0..classes).map(|i| format!("class {i}")).collect(),
        epoch: 1,
        metrics: serde_json::json!({"test_acc": 0.5}),
    };
    trained_state_dict(net, &meta).unwrap()
}

/// Weights holding NaN or infinity, `classes` metadata that does not name every output and
/// `normalization` metadata for another channel count are refused when loaded (they gave NaN logits scored as class 0, and wrong labels), naming
/// the file and the tensor or the counts.
#[test]
fn unusable_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    save_input(&p("x.safetensors"), "input", &[1, 1, 28, 28]);
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    m.visit("", &mut Randomize(2));
    trained(&*m, 10).save(p("ok.safetensors")).unwrap();
    infer_cli(dir.path(), "ok.safetensors", None, &[]);
    std::fs::remove_file(p("y.safetensors")).unwrap();

    for (bad, value) in [("nan", f32::NAN), ("inf", f32::INFINITY)] {
        let mut sd = trained(&*m, 10);
        let mut head = sd.get("head.bias").unwrap().to_vec();
        head[3] = value;
        sd.insert("head.bias", Tensor::from_vec(head, &[10]).unwrap());
        let file = format!("{bad}.safetensors");
        sd.save(p(&file)).unwrap();
        let predict = ["predict", "--weights", &file, "../no-image-needed.png"];
        for o in [
            run_infer(dir.path(), (&file, "x.safetensors"), None, &[]),
            allmlp(&predict, dir.path()),
        ] {
            assert_fails(
                &o,
                &[&file, "tensor `head.bias` holds", "at flat index 3 of 10"],
            );
        }
    }

    // CIFAR-10's three-channel normalization on a one-channel model: blamed on the weights.
    let meta = TrainedMeta {
        dataset: "fashion-mnist".into(),
        normalization: Normalization::cifar10(),
        classes: (0..10).map(|i| format!("class {i}")).collect(),
        epoch: 1,
        metrics: serde_json::json!({"test_acc": 0.5}),
    };
    let norm3 = trained_state_dict(&*m, &meta).unwrap();
    norm3.save(p("norm3.safetensors")).unwrap();
    let predict = [
        "predict",
        "--weights",
        "norm3.safetensors",
        "../no-image.png",
    ];
    assert_fails(
        &allmlp(&predict, dir.path()),
        &[
            "norm3.safetensors",
            "`normalization` metadata has 3 means and stds, but mixer_tiny takes 1 input",
        ],
    );
    trained(&*m, 2).save(p("two.safetensors")).unwrap();
    assert_fails(
        &run_infer(dir.path(), ("two.safetensors", "x.safetensors"), None, &[]),
        &[
            "two.safetensors",
            "metadata `classes` names 2 classes, but mixer_tiny has 10 outputs",
        ],
    );
    assert!(!p("y.safetensors").exists(), "nothing written on errors");
}

/// `infer` and `reparam` refuse an output path that is one of their inputs (also through
/// another spelling of the path), and leave that file as it was.
#[test]
fn outputs_never_replace_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    save_repmlp_tiny(&p("w.safetensors"), 1);
    save_input(&p("x.safetensors"), "input", &[1, 1, 28, 28]);
    let (w, x) = (
        std::fs::read(p("w.safetensors")).unwrap(),
        std::fs::read(p("x.safetensors")).unwrap(),
    );
    let infer_to = |out: &str| {
        allmlp(
            &[
                "infer",
                "--weights",
                "w.safetensors",
                "--input",
                "x.safetensors",
                "--output",
                out,
            ],
            dir.path(),
        )
    };
    assert_fails(
        &infer_to("w.safetensors"),
        &["--output w.safetensors is the --weights file"],
    );
    assert_fails(
        &infer_to("./x.safetensors"),
        &["--output ./x.safetensors is the --input file"],
    );
    assert_fails(
        &allmlp(
            &[
                "reparam",
                "--weights",
                "w.safetensors",
                "--output",
                "w.safetensors",
            ],
            dir.path(),
        ),
        &["is the --weights file"],
    );
    assert_eq!(std::fs::read(p("w.safetensors")).unwrap(), w);
    assert_eq!(std::fs::read(p("x.safetensors")).unwrap(), x);
}
