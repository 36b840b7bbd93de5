//! `allmlp train` end to end on small slices of the embedded Fashion-MNIST subset: learning,
//! exact resume, divergence, and refusals.

mod common;

use std::path::Path;

use allmlp::commands::CliError;
use allmlp::metrics::parse_csv;
use allmlp::train::{TrainArgs, run};
use common::{assert_same_weights, small};

fn metrics(dir: &Path) -> Vec<allmlp::metrics::EpochMetrics> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    parse_csv(&text, "metrics.csv").unwrap()
}

#[test]
fn an_interrupted_and_resumed_run_ends_with_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (full, split) = (dir.path().join("full"), dir.path().join("split"));
    // Every random draw is on: shuffling, crop, flip, erasing, mixup/cutmix, drop-path.
    let randomized = |out: &Path| TrainArgs {
        mixup: Some(0.2),
        drop_path: Some(0.1),
        crop_padding: Some(2),
        random_erasing: Some(0.25),
        ..small(out, 3, 160)
    };
    run(&randomized(&full)).unwrap();

    let first = TrainArgs {
        stop_after: Some(1),
        ..randomized(&split)
    };
    run(&first).unwrap();
    assert_eq!(metrics(&split).len(), 1);
    // A new run must not overwrite it.
    let e = run(&first).unwrap_err();
    assert!(e.0.contains("already holds a training run"), "{e}");
    let resume = TrainArgs {
        resume: Some(split.clone()),
        threads: Some(1),
        ..TrainArgs::default()
    };
    run(&resume).unwrap();

    assert_same_weights(&full, &split, "after resume");
    let (ma, mb) = (metrics(&full), metrics(&split));
    assert_eq!(ma.len(), 3);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.epoch, x.train_loss, x.test_acc, x.lr),
            (y.epoch, y.train_loss, y.test_acc, y.lr)
        );
    }
    assert!(mb.windows(2).all(|w| w[1].seconds >= w[0].seconds));
}

#[test]
fn the_checkpoint_describes_itself() {
    let dir = tempfile::tempdir().unwrap();
    run(&small(dir.path(), 1, 64)).unwrap();
    let loaded = allmlp::checkpoint::load_model(
        &dir.path().join("last.safetensors"),
        None,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(loaded.name, "mixer_tiny");
    let meta = loaded.meta.unwrap();
    assert_eq!(meta.dataset, "fashion-mnist-subset");
    assert_eq!(meta.classes.len(), 10);
    assert_eq!(meta.classes[9], "Ankle boot");
    assert_eq!(meta.epoch, 1);
    assert_eq!(meta.normalization.mean, vec![0.2860]);
    let acc = meta.metrics["test_acc"].as_f64().unwrap();
    assert_eq!(acc, metrics(dir.path())[0].test_acc);
    assert!(dir.path().join("best.safetensors").is_file());
}

#[test]
fn a_diverging_run_stops_with_an_error_and_writes_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = small(dir.path(), 2, 128);
    args.optimizer = Some(allmlp::train::recipe::OptimizerKind::Sgd);
    args.lr = Some(1e30);
    args.warmup_steps = Some(0);
    args.label_smoothing = Some(0.0);
    let CliError(e) = run(&args).unwrap_err();
    assert!(
        e.contains("training loss became") && e.contains("epoch 1"),
        "{e}"
    );
    assert!(!dir.path().join("last.safetensors").exists());
    assert!(!dir.path().join("optimizer.safetensors").exists());
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(TrainArgs, &str)> = vec![
        (
            TrainArgs {
                model: Some("mixer_huge".into()),
                ..small(dir.path(), 1, 64)
            },
            "unknown model `mixer_huge`",
        ),
        (
            TrainArgs {
                dataset: Some("imagenet".into()),
                ..small(dir.path(), 1, 64)
            },
            "unknown dataset `imagenet`",
        ),
        (
            TrainArgs {
                batch_size: Some(100),
                ..small(dir.path(), 1, 64)
            },
            "--batch-size 100 is larger than the 64 training images",
        ),
        (
            TrainArgs {
                lr: Some(-1.0),
                ..small(dir.path(), 1, 64)
            },
            "--lr: must be positive",
        ),
        (
            TrainArgs {
                resume: Some(dir.path().join("nothing")),
                ..TrainArgs::default()
            },
            "no optimizer.safetensors there",
        ),
        (
            TrainArgs {
                model: Some("mixer_s16_224".into()),
                ..small(dir.path(), 1, 64)
            },
            "mixer_s16_224 cannot be built for the fashion-mnist-subset images (1×28×28, 10 \
             classes): mixer_s16_224: invalid configuration: img_size 28 must be a multiple of \
             patch_size 16",
        ),
    ];
    for (args, want) in cases {
        let CliError(e) = run(&args).unwrap_err();
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
}

#[test]
fn resume_refuses_a_different_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = small(dir.path(), 2, 64);
    args.stop_after = Some(1);
    run(&args).unwrap();
    let e = run(&TrainArgs {
        resume: Some(dir.path().to_path_buf()),
        lr: Some(0.5),
        ..TrainArgs::default()
    })
    .unwrap_err();
    assert!(e.0.contains("--lr 0.5"), "{e}");
}

/// What CI checks of real learning: a few hundred steps on the embedded subset take the loss
/// well down and the accuracy far above chance (10%).
#[test]
fn a_few_hundred_steps_on_the_embedded_subset_learn() {
    let dir = tempfile::tempdir().unwrap();
    let args = TrainArgs {
        dataset: Some("fashion-mnist-subset".into()),
        epochs: Some(3),
        batch_size: Some(64),
        warmup_steps: Some(50),
        threads: None,
        out: Some(dir.path().to_path_buf()),
        ..TrainArgs::default()
    };
    run(&args).unwrap();
    let m = metrics(dir.path());
    assert_eq!(m.len(), 3);
    assert!(m[2].train_loss < 0.75 * m[0].train_loss, "{m:?}");
    assert!(
        m[2].test_acc > 0.70,
        "test accuracy {} after 234 steps",
        m[2].test_acc
    );
}

/// `repmlp_tiny` trained, converted with `allmlp reparam`, and run in deploy form predicts the
/// same classes (the issue asks for ≥ 99.9% identical predictions; here all of them) with logits
/// equal to float rounding.
#[test]
fn a_trained_repmlp_converts_to_a_deploy_model_with_the_same_predictions() {
    use allmlp::commands::reparam;
    use allmlp::data::{DatasetSpec, Split};
    use allmlp::layers::infer;
    let dir = tempfile::tempdir().unwrap();
    let mut args = small(dir.path(), 1, 1024);
    args.model = Some("repmlp_tiny".into());
    args.lr = Some(3e-3);
    run(&args).unwrap();
    let (train_w, deploy_w) = (
        dir.path().join("last.safetensors"),
        dir.path().join("deploy.safetensors"),
    );
    reparam::run(&train_w, &deploy_w, None, reparam::converter()).unwrap();
    let a = allmlp::checkpoint::load_model(&train_w, None, &Default::default()).unwrap();
    let b = allmlp::checkpoint::load_model(&deploy_w, None, &Default::default()).unwrap();
    assert!(!a.net.is_deploy() && b.net.is_deploy());
    assert_eq!(
        b.meta.as_ref().unwrap().classes,
        a.meta.as_ref().unwrap().classes
    );
    let test = DatasetSpec::FashionMnistSubset
        .load(Split::Test, None, [1, 28, 28])
        .unwrap()
        .take(200);
    let x = test
        .to_tensor(&a.meta.as_ref().unwrap().normalization)
        .unwrap();
    let (ya, yb) = (infer(&*a.net, &x).unwrap(), infer(&*b.net, &x).unwrap());
    let scale = ya.to_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
    for (p, q) in ya.to_vec().iter().zip(yb.to_vec()) {
        assert!((p - q).abs() <= 1e-4 * scale.max(1.0), "{p} vs {q}");
    }
    let (pa, pb) = (
        ya.argmax(1, false).unwrap().data,
        yb.argmax(1, false).unwrap().data,
    );
    assert_eq!(pa, pb);
    // The trained net is not constant: the comparison covers several classes.
    let mut classes = pa.clone();
    classes.sort_unstable();
    classes.dedup();
    assert!(classes.len() >= 3, "{classes:?}");
}
