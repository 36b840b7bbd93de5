//! Helpers shared by the end-to-end tests of the `allmlp` binary.

#![allow(dead_code)] // each test file uses a subset

use std::path::Path;
use std::process::{Command, Output};

use allmlp::layers::autograd::tensor_core::Tensor;
use allmlp::layers::state_dict::StateDict;
use allmlp::train::TrainArgs;

/// Runs the `allmlp` binary with `args` in `dir`.
pub fn allmlp(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allmlp"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the allmlp binary runs")
}

/// The process's standard error, for assertion messages.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: non-zero exit, `error: ` first, no panic, each of `what` named.
pub fn assert_fails(o: &Output, what: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure: {err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for w in what {
        assert!(err.contains(w), "expected `{w}` in: {err}");
    }
}

/// A small, fast run: `n` training images in batches of 32, 128 test images, one thread.
pub fn small(out: &Path, epochs: usize, n: usize) -> TrainArgs {
    TrainArgs {
        dataset: Some("fashion-mnist-subset".into()),
        epochs: Some(epochs),
        batch_size: Some(32),
        warmup_steps: Some(4),
        train_limit: Some(n),
        test_limit: Some(128),
        threads: Some(1),
        out: Some(out.to_path_buf()),
        ..TrainArgs::default()
    }
}

/// Every tensor of the two runs' `last.safetensors`, bit for bit.
pub fn assert_same_weights(a: &Path, b: &Path, what: &str) {
    let a = StateDict::load(a.join("last.safetensors")).unwrap();
    let b = StateDict::load(b.join("last.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, t) in a.iter() {
        assert_eq!(t.to_vec(), b.get(k).unwrap().to_vec(), "{k} differs {what}");
    }
}

/// The embedded Fashion-MNIST subset's directory (gzip IDX).
pub fn subset_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset")
}

/// Writes `ds` (28×28 grey images) into `dir` as the plain IDX pair of Fashion-MNIST's
/// `prefix` split (`train` or `t10k`), creating `dir`.
pub fn write_idx(dir: &Path, prefix: &str, ds: &allmlp::data::Dataset) {
    let n = ds.len();
    let mut images = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        images.extend((d as u32).to_be_bytes());
    }
    images.extend(&ds.images);
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    labels.extend(ds.labels.iter().map(|&l| l as u8));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

/// A Fashion-MNIST directory of `n` training images of the embedded subset starting at
/// `first` and its first 64 test images.
pub fn write_fashion_dir(dir: &Path, first: usize, n: usize) {
    use allmlp::data::{DatasetSpec, Split};
    let load = |split| {
        DatasetSpec::FashionMnist
            .load(split, Some(&subset_dir()), [1, 28, 28])
            .unwrap()
    };
    let mut train = load(Split::Train);
    let px = train.image_len();
    train.images = train.images[first * px..(first + n) * px].to_vec();
    train.labels = train.labels[first..first + n].to_vec();
    train.shape[0] = n;
    write_idx(dir, "train", &train);
    write_idx(dir, "t10k", &load(Split::Test).take(64));
}

/// The process's standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Sets every parameter to N(0, 0.05²) noise, a new seed each (so heads are not zero and
/// logits are non-trivial).
pub struct Randomize(pub u64);

impl allmlp::layers::Visitor for Randomize {
    fn param(&mut self, _: &str, p: &allmlp::layers::autograd::Var) {
        self.0 += 1;
        let shape = p.value().shape().to_vec();
        p.set_value(Tensor::randn(&shape, 0.0, 0.05, self.0).unwrap())
            .unwrap();
    }
    fn buffer(&mut self, _: &str, _: &allmlp::layers::Buffer) {}
}

/// [`Randomize`], and BatchNorm running statistics away from 0 and 1 (so folding them matters).
pub struct RandomizeAll(pub u64);

impl allmlp::layers::Visitor for RandomizeAll {
    fn param(&mut self, name: &str, p: &allmlp::layers::autograd::Var) {
        Randomize(self.0).param(name, p);
        self.0 += 1;
    }
    fn buffer(&mut self, name: &str, b: &allmlp::layers::Buffer) {
        self.0 += 1;
        let shape = b.get().shape().to_vec();
        if name.ends_with("running_var") {
            b.set(Tensor::rand_uniform(&shape, 0.5, 2.0, self.0).unwrap());
        } else if name.ends_with("running_mean") {
            b.set(Tensor::randn(&shape, 0.0, 0.5, self.0).unwrap());
        }
    }
}

/// Saves `N(0, 1)` noise of `shape` as tensor `key` in the safetensors file `path`; returns it.
pub fn save_input(path: &Path, key: &str, shape: &[usize]) -> Tensor {
    let x = Tensor::randn(shape, 0.0, 1.0, 7).unwrap();
    let mut sd = StateDict::new();
    sd.insert(key, x.clone());
    sd.save(path).unwrap();
    x
}

/// A `repmlp_tiny` with random weights and BatchNorm statistics ([`RandomizeAll`] from `seed`),
/// saved to `path` with its name and config; returns the model.
pub fn save_repmlp_tiny(path: &Path, seed: u64) -> Box<dyn allmlp::models::Model> {
    use allmlp::models::{ModelOptions, create_model};
    let m = create_model("repmlp_tiny", &ModelOptions::default()).unwrap();
    m.visit("", &mut RandomizeAll(seed));
    let mut sd = allmlp::layers::checkpoint::state_dict(&*m);
    sd.set_model("repmlp_tiny");
    sd.set_config(&m.config()).unwrap();
    sd.save(path).unwrap();
    m
}

/// Runs `allmlp reparam --weights from --output to` in `dir`, which must succeed.
pub fn reparam(dir: &Path, from: &str, to: &str) {
    let o = allmlp(&["reparam", "--weights", from, "--output", to], dir);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs `allmlp infer --weights W --input X --output y.safetensors [--model M] EXTRA…` in `dir`.
pub fn run_infer(
    dir: &Path,
    (weights, input): (&str, &str),
    model: Option<&str>,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "infer",
        "--weights",
        weights,
        "--input",
        input,
        "--output",
        "y.safetensors",
    ];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    args.extend_from_slice(extra);
    allmlp(&args, dir)
}
