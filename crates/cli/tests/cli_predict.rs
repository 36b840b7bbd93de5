//! `allmlp predict`: top-K classes of image files, checked against the library run by hand.

use std::path::Path;

use allmlp::checkpoint::{TrainedMeta, trained_state_dict};
use allmlp::data::{FASHION_MNIST_CLASSES, Normalization};
use allmlp::layers::autograd::Var;
use allmlp::layers::{Buffer, Visitor, infer};
use allmlp::models::{Model, ModelOptions, create_model};
use allmlp::tensor_core::Tensor;
use image::{GrayImage, Luma, Rgb, RgbImage};

mod common;
use common::{allmlp, assert_fails};

struct Randomize(u64);

impl Visitor for Randomize {
    fn param(&mut self, _: &str, p: &Var) {
        self.0 += 1;
        let shape = p.value().shape().to_vec();
        p.set_value(Tensor::randn(&shape, 0.0, 0.2, self.0).unwrap())
            .unwrap();
    }
    fn buffer(&mut self, _: &str, _: &Buffer) {}
}

/// A random mixer_tiny saved to `dir/w.safetensors`, with training metadata when `meta`.
fn save_mixer(dir: &Path, meta: bool) -> Box<dyn Model> {
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    m.visit("", &mut Randomize(11));
    let path = dir.join("w.safetensors");
    if meta {
        let meta = TrainedMeta {
            dataset: "fashion-mnist".into(),
            normalization: Normalization::fashion_mnist(),
            classes: FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            epoch: 1,
            metrics: serde_json::json!({}),
        };
        trained_state_dict(&*m, &meta).unwrap().save(&path).unwrap();
    } else {
        let mut sd = allmlp::layers::checkpoint::state_dict(&*m);
        sd.set_model("mixer_tiny");
        sd.set_config(&m.config()).unwrap();
        sd.save(&path).unwrap();
    }
    m
}

/// A 28×28 grayscale test pattern (needs no resizing, so its pixels are the model's input).
fn pattern(seed: u32) -> GrayImage {
    GrayImage::from_fn(28, 28, |x, y| {
        Luma([((x * 7 + y * 13 + seed * 31) % 256) as u8])
    })
}

/// Probabilities by the plain route: normalise by hand, one forward, softmax by loops.
fn expected(net: &dyn Model, img: &GrayImage, mean: f32, std: f32) -> Vec<f64> {
    let x: Vec<f32> = img
        .as_raw()
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - mean) / std)
        .collect();
    let logits = infer(net, &Tensor::from_vec(x, &[1, 1, 28, 28]).unwrap())
        .unwrap()
        .to_vec();
    let e: Vec<f64> = logits.iter().map(|&z| f64::from(z).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The `(name, percent)` lines printed under `file`.
fn listed(out: &str, file: &str) -> Vec<(String, String)> {
    let (_, rest) = out
        .split_once(&format!("\n{file}\n"))
        .unwrap_or_else(|| panic!("{file} not in:\n{out}"));
    rest.lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (_, after_rank) = l.trim_start().split_once(". ").unwrap();
            let (name, pct) = after_rank.trim_end().rsplit_once(' ').unwrap();
            (name.trim().to_string(), pct.trim().to_string())
        })
        .collect()
}

#[test]
fn predict_lists_the_top_classes_with_their_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let net = save_mixer(p, true);
    let (a, b) = (pattern(1), pattern(2));
    a.save(p.join("a.png")).unwrap();
    b.save(p.join("b.png")).unwrap();
    let o = allmlp(
        &[
            "predict",
            "--weights",
            "w.safetensors",
            "a.png",
            "b.png",
            "--top",
            "3",
            "--threads",
            "1",
        ],
        p,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("top 3 of 10 classes; normalization from the checkpoint"),
        "{out}"
    );
    for (file, img) in [("a.png", &a), ("b.png", &b)] {
        let probs = expected(&*net, img, 0.2860, 0.3530);
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
        let want: Vec<(String, String)> = order[..3]
            .iter()
            .map(|&i| {
                (
                    FASHION_MNIST_CLASSES[i].to_string(),
                    format!("{:.2}%", probs[i] * 100.0),
                )
            })
            .collect();
        assert_eq!(listed(&out, file), want, "{out}");
    }
    // The two patterns give different answers (the test can tell the images apart).
    assert_ne!(listed(&out, "a.png"), listed(&out, "b.png"));
}

#[test]
fn without_metadata_classes_are_numbered_and_top_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let net = save_mixer(p, false);
    // An RGB JPEG of another size: converted to grayscale 28×28 without complaint.
    RgbImage::from_fn(60, 40, |x, y| Rgb([(x * 4) as u8, (y * 6) as u8, 90]))
        .save(p.join("c.jpg"))
        .unwrap();
    pattern(3).save(p.join("d.png")).unwrap();
    let o = allmlp(
        &[
            "predict",
            "--weights",
            "w.safetensors",
            "c.jpg",
            "d.png",
            "--top",
            "50",
        ],
        p,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("top 10 of 10 classes; no normalization metadata"),
        "{out}"
    );
    let rows = listed(&out, "c.jpg");
    assert_eq!(rows.len(), 10);
    assert!(
        rows.iter().all(|(n, _)| n.starts_with("class ")),
        "{rows:?}"
    );
    // Percentages are in decreasing order and sum to ~100.
    let pcts: Vec<f64> = rows
        .iter()
        .map(|(_, p)| p.trim_end_matches('%').parse().unwrap())
        .collect();
    assert!(pcts.windows(2).all(|w| w[0] >= w[1]), "{pcts:?}");
    assert!((pcts.iter().sum::<f64>() - 100.0).abs() < 0.1, "{pcts:?}");
    // Without metadata the pixels are only scaled to 0..1 (mean 0, std 1).
    let probs = expected(&*net, &pattern(3), 0.0, 1.0);
    let best = (0..10)
        .max_by(|&i, &j| probs[i].total_cmp(&probs[j]))
        .unwrap();
    let d = listed(&out, "d.png");
    assert_eq!(d[0].0, format!("class {best}"));
    assert_eq!(d[0].1, format!("{:.2}%", probs[best] * 100.0));
}

#[test]
fn predict_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let o = allmlp(&["predict", "--weights", "missing.safetensors", "x.png"], p);
    assert_fails(&o, &["missing.safetensors"]);
    save_mixer(p, true);
    pattern(1).save(p.join("ok.png")).unwrap();
    let o = allmlp(
        &[
            "predict",
            "--weights",
            "w.safetensors",
            "ok.png",
            "gone.png",
        ],
        p,
    );
    assert_fails(&o, &["gone.png", "cannot read", "No such file"]);
    std::fs::write(p.join("bad.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let o = allmlp(&["predict", "--weights", "w.safetensors", "bad.png"], p);
    assert_fails(&o, &["bad.png", "cannot decode the image"]);
    std::fs::write(p.join("text.jpg"), b"hello").unwrap();
    let o = allmlp(&["predict", "--weights", "w.safetensors", "text.jpg"], p);
    assert_fails(&o, &["text.jpg"]);
    let o = allmlp(
        &[
            "predict",
            "--weights",
            "w.safetensors",
            "ok.png",
            "--top",
            "0",
        ],
        p,
    );
    assert_fails(&o, &["--top"]);
    let o = allmlp(
        &[
            "predict",
            "--weights",
            "w.safetensors",
            "ok.png",
            "--threads",
            "0",
        ],
        p,
    );
    assert_fails(&o, &["--threads 0"]);
    // No image at all: clap's usage error.
    let o = allmlp(&["predict", "--weights", "w.safetensors"], p);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("IMAGE"));
}

#[test]
fn predict_help_explains_every_flag() {
    let o = allmlp(&["predict", "--help"], Path::new("."));
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--weights",
        "--model",
        "--top",
        "--threads",
        "IMAGE",
        "center-cropped",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
