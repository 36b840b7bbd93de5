//! `allmlp eval`: the binary on the embedded Fashion-MNIST test subset, and `evaluate` against
//! an independent computation.

use std::path::Path;

use allmlp::checkpoint::{TrainedMeta, trained_state_dict};
use allmlp::commands::eval::{EvalReport, evaluate};
use allmlp::data::{DatasetSpec, FASHION_MNIST_CLASSES, Normalization, Split};
use allmlp::layers::autograd::Var;
use allmlp::layers::{Buffer, Visitor, infer};
use allmlp::models::{Model, ModelOptions, create_model};
use allmlp::tensor_core::Tensor;

mod common;
use common::{allmlp, assert_fails, subset_dir, write_idx};

/// The first `n` test images of the embedded subset written as plain IDX files into `dir`
/// (`t10k-{images-idx3,labels-idx1}-ubyte`), so the binary's runs stay short.
fn write_test_idx(dir: &Path, n: usize) -> allmlp::data::Dataset {
    let ds = DatasetSpec::FashionMnist
        .load(Split::Test, Some(&subset_dir()), [1, 28, 28])
        .unwrap()
        .take(n);
    write_idx(dir, "t10k", &ds);
    ds
}

struct Randomize(u64);

impl Visitor for Randomize {
    fn param(&mut self, name: &str, p: &Var) {
        self.0 += 1;
        let shape = p.value().shape().to_vec();
        // Random matrices, biases and norms left at their init (0 and 1), weak blocks: the
        // pooled features then follow the patch embedding of the image, and a strong head
        // spreads the predictions over classes (deep random nets answer one class for all).
        if shape.len() < 2 {
            return;
        }
        let std = match name {
            "head.weight" => 1.0,
            n if n.starts_with("stem") => 0.2,
            _ => 0.02,
        };
        p.set_value(Tensor::randn(&shape, 0.0, std, self.0).unwrap())
            .unwrap();
    }
    fn buffer(&mut self, _: &str, _: &Buffer) {}
}

fn meta(dataset: &str) -> TrainedMeta {
    TrainedMeta {
        dataset: dataset.into(),
        normalization: Normalization::fashion_mnist(),
        classes: FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        epoch: 2,
        metrics: serde_json::json!({"test_acc": 0.5}),
    }
}

/// A mixer_tiny (with `opts`) with random weights, saved with training metadata.
fn save_mixer(path: &Path, opts: &ModelOptions, meta: &TrainedMeta) -> Box<dyn Model> {
    let m = create_model("mixer_tiny", opts).unwrap();
    m.visit("", &mut Randomize(5));
    trained_state_dict(&*m, meta).unwrap().save(path).unwrap();
    m
}

/// The report computed the plain way: one forward pass over the whole set, softmax and
/// argmax by loops.
fn naive_report(net: &dyn Model, x: &Tensor, labels: &[usize]) -> EvalReport {
    let logits = infer(net, x).unwrap().to_vec();
    let k = net.num_classes();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss = 0.0;
    for (row, &l) in logits.chunks(k).zip(labels) {
        let sum: f64 = row.iter().map(|&z| f64::from(z).exp()).sum();
        loss -= (f64::from(row[l]).exp() / sum).ln();
        let mut best = 0;
        for j in 1..k {
            if row[j] > row[best] {
                best = j;
            }
        }
        confusion[l][best] += 1;
    }
    let n = labels.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    EvalReport {
        images: n,
        loss: loss / n as f64,
        accuracy: correct as f64 / n as f64,
        per_class: confusion
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let t: usize = r.iter().sum();
                (t > 0).then(|| r[i] as f64 / t as f64)
            })
            .collect(),
        confusion,
    }
}

#[test]
fn evaluate_matches_a_naive_computation_at_any_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let net = save_mixer(
        &dir.path().join("w.safetensors"),
        &ModelOptions::default(),
        &meta("fashion-mnist"),
    );
    let ds = DatasetSpec::FashionMnist
        .load(Split::Test, Some(&subset_dir()), [1, 28, 28])
        .unwrap()
        .take(150);
    let norm = Normalization::fashion_mnist();
    let want = naive_report(&*net, &ds.to_tensor(&norm).unwrap(), &ds.labels);
    for batch in [1, 64, 150, 1000] {
        let got = evaluate(&*net, &ds, &norm, batch).unwrap();
        assert_eq!(got.confusion, want.confusion, "batch {batch}");
        assert_eq!(got.per_class, want.per_class);
        assert_eq!(got.images, 150);
        assert!(
            (got.loss - want.loss).abs() < 1e-6,
            "{} vs {}",
            got.loss,
            want.loss
        );
        assert_eq!(got.accuracy, want.accuracy);
    }
    // Random weights: predictions spread over several classes (not one constant answer).
    let predicted = (0..10).filter(|&j| want.confusion.iter().any(|r| r[j] > 0));
    assert!(predicted.count() >= 3, "{:?}", want.confusion);
    assert!(want.loss.is_finite() && want.loss > 1.0);
    // Wrong sizes and batch 0 are errors, not panics.
    assert!(evaluate(&*net, &ds, &norm, 0).is_err());
    let e = evaluate(&*net, &ds, &Normalization::cifar10(), 8).unwrap_err();
    assert!(e.0.contains("3 means"), "{e}");
}

#[test]
fn eval_prints_accuracy_tables_and_draws_the_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let net = save_mixer(&w, &ModelOptions::default(), &meta("fashion-mnist"));
    let data = dir.path().join("data");
    let ds = write_test_idx(&data, 300);
    let o = allmlp(
        &[
            "eval",
            "--weights",
            "w.safetensors",
            "--data",
            data.to_str().unwrap(),
            "--batch-size",
            "64",
            "--plot",
            "cm.png",
            "--threads",
            "2",
        ],
        dir.path(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same figures as the library computes on the same 300 images.
    let r = evaluate(&*net, &ds, &Normalization::fashion_mnist(), 256).unwrap();
    assert_eq!(r.images, 300);
    let line = format!("accuracy {:.2}%  loss {:.4}", r.accuracy * 100.0, r.loss);
    assert!(out.contains(&line), "expected `{line}` in:\n{out}");
    assert!(
        out.contains("300 images") && out.contains("epoch 2"),
        "{out}"
    );
    assert!(out.contains("normalization from the checkpoint"), "{out}");
    for (i, name) in FASHION_MNIST_CLASSES.iter().enumerate() {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{i} {name} ")))
            .unwrap_or_else(|| panic!("no per-class row for {name}:\n{out}"));
        let n: usize = r.confusion[i].iter().sum();
        assert!(row.contains(&format!(" {n} ")), "{row}");
    }
    // The confusion-matrix table: header of predicted indices, one row per class whose
    // counts are the library's.
    let (_, table) = out.split_once("confusion matrix").unwrap();
    let row9: Vec<usize> = table
        .lines()
        .find(|l| l.starts_with("9 Ankle boot"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(row9, r.confusion[9]);
    let png = image::open(dir.path().join("cm.png")).unwrap().to_rgb8();
    assert!(
        png.width() >= 400 && png.height() >= 400,
        "{:?}",
        png.dimensions()
    );
    assert!(out.contains("wrote the confusion matrix to cm.png"));
    // No temporary file is left next to the plot.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

#[test]
fn a_plain_checkpoint_defaults_to_fashion_mnist_and_its_normalization() {
    let dir = tempfile::tempdir().unwrap();
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    let mut sd = allmlp::layers::checkpoint::state_dict(&*m);
    sd.set_model("mixer_tiny");
    sd.set_config(&m.config()).unwrap();
    sd.save(dir.path().join("w.safetensors")).unwrap();
    let data = dir.path().join("data");
    write_test_idx(&data, 100);
    let o = allmlp(
        &[
            "eval",
            "--weights",
            "w.safetensors",
            "--data",
            data.to_str().unwrap(),
        ],
        dir.path(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("on fashion-mnist/t10k"), "{out}");
    assert!(
        out.contains("normalization from the dataset's default: mean [0.286]"),
        "{out}"
    );
    // timm zero-initialises the head: every logit equal, loss ln 10, everything predicted 0.
    assert!(out.contains(&format!("loss {:.4}", 10f64.ln())), "{out}");
}

#[test]
fn eval_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let o = allmlp(&["eval", "--weights", "missing.safetensors"], p);
    assert_fails(&o, &["missing.safetensors"]);

    // A model for 3×32×32 images against Fashion-MNIST's 1×28×28.
    let rgb = ModelOptions {
        img_size: Some(32),
        in_chans: Some(3),
        ..ModelOptions::default()
    };
    let rgb_meta = TrainedMeta {
        normalization: Normalization::cifar10(),
        ..meta("fashion-mnist")
    };
    save_mixer(&p.join("rgb.safetensors"), &rgb, &rgb_meta);
    let data = subset_dir();
    let data = data.to_str().unwrap();
    let o = allmlp(&["eval", "--weights", "rgb.safetensors", "--data", data], p);
    assert_fails(&o, &["fashion-mnist/t10k", "[1, 28, 28]", "[3, 32, 32]"]);
    // The same model with one-channel normalization: the checkpoint itself is inconsistent.
    save_mixer(&p.join("rgb1.safetensors"), &rgb, &meta("fashion-mnist"));
    let o = allmlp(
        &["eval", "--weights", "rgb1.safetensors", "--data", data],
        p,
    );
    assert_fails(
        &o,
        &["rgb1.safetensors", "`normalization` metadata has 1 means"],
    );

    // Five outputs against ten classes.
    let five = ModelOptions {
        num_classes: Some(5),
        ..ModelOptions::default()
    };
    save_mixer(&p.join("five.safetensors"), &five, &meta("fashion-mnist"));
    let o = allmlp(
        &["eval", "--weights", "five.safetensors", "--data", data],
        p,
    );
    assert_fails(&o, &["10 classes", "5 outputs"]);

    // --data pointing nowhere; a dataset that needs --data; an unknown dataset name.
    save_mixer(
        &p.join("w.safetensors"),
        &ModelOptions::default(),
        &meta("mnist"),
    );
    let o = allmlp(
        &[
            "eval",
            "--weights",
            "w.safetensors",
            "--data",
            "no-such-dir",
        ],
        p,
    );
    assert_fails(&o, &["no-such-dir"]);
    let o = allmlp(&["eval", "--weights", "w.safetensors"], p);
    assert_fails(&o, &["mnist", "--data DIR"]);
    let o = allmlp(
        &[
            "eval",
            "--weights",
            "w.safetensors",
            "--dataset",
            "imagenet",
        ],
        p,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cifar100"));
    // --plot into a missing directory fails before evaluating; batch size 0.
    let o = allmlp(
        &[
            "eval",
            "--weights",
            "w.safetensors",
            "--plot",
            "nodir/cm.png",
        ],
        p,
    );
    assert_fails(&o, &["nodir/cm.png", "does not exist"]);
    let o = allmlp(
        &["eval", "--weights", "w.safetensors", "--plot", "cm.jpg"],
        p,
    );
    assert_fails(&o, &["cm.jpg", "ending in .png"]);
    // A test split with no images: an error, not a 0% accuracy with a 0 loss.
    write_test_idx(&p.join("empty"), 0);
    save_mixer(
        &p.join("f.safetensors"),
        &ModelOptions::default(),
        &meta("fashion-mnist"),
    );
    let o = allmlp(
        &["eval", "--weights", "f.safetensors", "--data", "empty"],
        p,
    );
    assert_fails(&o, &["has no images", "nothing to evaluate"]);
    let o = allmlp(
        &["eval", "--weights", "w.safetensors", "--batch-size", "0"],
        p,
    );
    assert_fails(&o, &["--batch-size"]);
}

#[test]
fn eval_help_explains_every_flag() {
    let o = allmlp(&["eval", "--help"], Path::new("."));
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--weights",
        "--dataset",
        "--data",
        "--batch-size",
        "--plot",
        "--threads",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.contains("checkpoint's normalization"), "{help}");
}
