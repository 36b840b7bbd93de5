//! `allmlp train` end to end on small slices of the embedded Fashion-MNIST subset: learning,
//! exact resume, divergence, and refusals.

mod common;

use std::path::Path;

use allmlp::commands::CliError;
use allmlp::layers::state_dict::StateDict;
use allmlp::metrics::parse_csv;
use allmlp::train::{TrainArgs, run};
use common::{assert_same_weights, small, write_fashion_dir};

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
                epochs: Some(usize::MAX),
                ..small(dir.path(), 1, 64)
            },
            "overflows the step count",
        ),
        (
            TrainArgs {
                threads: Some(0),
                ..small(dir.path(), 1, 64)
            },
            "--threads 0: set_num_threads: invalid argument: thread count must be at least 1",
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

/// A resume reads the run's own `--data` directory when none is given, and refuses a directory
/// holding other training images.
#[test]
fn a_resume_reads_the_runs_data_and_refuses_other_images() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("run"),
    );
    write_fashion_dir(&a, 0, 64);
    write_fashion_dir(&b, 64, 64);
    run(&TrainArgs {
        dataset: Some("fashion-mnist".into()),
        data: Some(a.clone()),
        train_limit: None,
        test_limit: None,
        stop_after: Some(1),
        ..small(&out, 2, 0)
    })
    .unwrap();
    let resume = |data: Option<&Path>| TrainArgs {
        resume: Some(out.clone()),
        data: data.map(Path::to_path_buf),
        threads: Some(1),
        ..TrainArgs::default()
    };
    let CliError(e) = run(&resume(Some(&b))).unwrap_err();
    assert!(
        e.contains("the run's training images (64 images 1×28×28")
            && e.contains("not the fashion-mnist images")
            && e.contains("give the run's data with --data"),
        "{e}"
    );
    assert_eq!(metrics(&out).len(), 1, "nothing written on refusal");
    // Without --data: directory `a` again (Debian's copy or the embedded subset would hold
    // other images and be refused).
    run(&resume(None)).unwrap();
    assert_eq!(metrics(&out).len(), 2);
}

/// A new run refuses a directory holding any file of a run (not only the resume state), and a
/// run resumed into another directory carries its best weights so far there.
#[test]
fn runs_are_never_overwritten_and_a_resume_elsewhere_keeps_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&TrainArgs {
        stop_after: Some(1),
        ..small(&a, 2, 64)
    })
    .unwrap();
    std::fs::copy(a.join("last.safetensors"), dir.path().join("kept")).unwrap();
    let optimizer = std::fs::read(a.join("optimizer.safetensors")).unwrap();
    std::fs::remove_file(a.join("optimizer.safetensors")).unwrap();
    let CliError(e) = run(&small(&a, 2, 64)).unwrap_err();
    assert!(
        e.contains("already holds a training run") && e.contains("it has no resume file yet"),
        "{e}"
    );
    let CliError(e) = run(&TrainArgs {
        resume: Some(a.clone()),
        ..TrainArgs::default()
    })
    .unwrap_err();
    assert!(
        e.contains("no optimizer.safetensors there")
            && e.contains("stopped before its first epoch was saved"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(a.join("last.safetensors")).unwrap(),
        std::fs::read(dir.path().join("kept")).unwrap()
    );
    std::fs::write(a.join("optimizer.safetensors"), optimizer).unwrap();

    run(&TrainArgs {
        resume: Some(a.clone()),
        out: Some(b.clone()),
        threads: Some(1),
        ..TrainArgs::default()
    })
    .unwrap();
    let m = metrics(&b);
    assert_eq!(m.len(), 2);
    let best_epoch = if m[1].test_acc > m[0].test_acc { 2 } else { 1 };
    let best = StateDict::load(b.join("best.safetensors")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(best.metadata_value("epoch").unwrap()).unwrap();
    assert_eq!(meta, best_epoch, "best.safetensors of {m:?}");
    if best_epoch == 1 {
        assert_eq!(
            std::fs::read(b.join("best.safetensors")).unwrap(),
            std::fs::read(a.join("best.safetensors")).unwrap()
        );
    }
}

/// Resuming in place removes the temporary files a killed run left (its own names only), and
/// accepts a dataset alias for the run's dataset; a resume record that does not hang together
/// is refused, naming the file.
#[test]
fn a_resume_cleans_up_after_a_kill_and_checks_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    let args = TrainArgs {
        dataset: Some("fashion-mnist".into()),
        data: Some(common::subset_dir()),
        stop_after: Some(1),
        ..small(&c, 2, 64)
    };
    run(&args).unwrap();
    let stale = [".last.safetensors.Ab12Cd.tmp", ".curves.png.x.tmp"];
    let kept = [".notes.tmp", "notes.txt", ".last.safetensors.bak"];
    for f in stale.iter().chain(&kept) {
        std::fs::write(c.join(f), b"x").unwrap();
    }
    let record = std::fs::read(c.join("optimizer.safetensors")).unwrap();
    run(&TrainArgs {
        resume: Some(c.clone()),
        dataset: Some("fmnist".into()),
        threads: Some(1),
        ..TrainArgs::default()
    })
    .unwrap();
    assert_eq!(metrics(&c).len(), 2);
    for f in stale {
        assert!(!c.join(f).exists(), "{f} removed");
    }
    for f in kept {
        assert!(c.join(f).exists(), "{f} kept");
    }

    // The epoch-1 record, edited to claim more epochs than its metrics show.
    std::fs::write(c.join("optimizer.safetensors"), &record).unwrap();
    let mut sd = StateDict::load(c.join("optimizer.safetensors")).unwrap();
    let mut p: serde_json::Value =
        serde_json::from_str(sd.metadata_value("train_state").unwrap()).unwrap();
    p["epoch"] = 2.into();
    sd.set_metadata("train_state", p.to_string());
    sd.save(c.join("optimizer.safetensors")).unwrap();
    let CliError(e) = run(&TrainArgs {
        resume: Some(c.clone()),
        threads: Some(1),
        ..TrainArgs::default()
    })
    .unwrap_err();
    assert!(
        e.contains("optimizer.safetensors")
            && e.contains("inconsistent: 2 epochs done, but 1 rows of metrics"),
        "{e}"
    );
}

/// Empty splits and the embedded subset given a directory are refused, naming the problem.
#[test]
fn empty_or_misplaced_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(TrainArgs, &str)> = vec![
        (small(dir.path(), 1, 0), "has no images (--train-limit 0)"),
        (
            TrainArgs {
                test_limit: Some(0),
                ..small(dir.path(), 1, 64)
            },
            "has no images (--test-limit 0)",
        ),
        (
            TrainArgs {
                data: Some(dir.path().to_path_buf()),
                ..small(dir.path(), 1, 64)
            },
            "takes no --data (the subset is embedded in the binary)",
        ),
        (
            TrainArgs {
                stop_after: Some(0),
                ..small(dir.path(), 1, 64)
            },
            "--stop-after: must be at least 1",
        ),
        (
            TrainArgs {
                model: Some("repmlp_tiny".into()),
                drop_path: Some(0.1),
                ..small(dir.path(), 1, 64)
            },
            "--drop-path: repmlp_tiny does not take it",
        ),
        (
            TrainArgs {
                model: Some("repmlp_tiny".into()),
                zero_init_residual: Some(true),
                ..small(dir.path(), 1, 64)
            },
            "--zero-init-residual: repmlp_tiny does not take it",
        ),
        (
            TrainArgs {
                model: Some("repmlp_tiny".into()),
                drop_path: Some(0.1),
                zero_init_residual: Some(true),
                ..small(dir.path(), 1, 64)
            },
            "--drop-path, --zero-init-residual: repmlp_tiny does not take them",
        ),
    ];
    for (args, want) in cases {
        let CliError(e) = run(&args).unwrap_err();
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
    reparam::run(
        &train_w,
        &deploy_w,
        (None, &Default::default()),
        reparam::converter(),
    )
    .unwrap();
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
