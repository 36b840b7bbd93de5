//! End-to-end tests of the `allmlp` binary, each in its own temporary directory.

use std::path::Path;

use allmlp::layers::checkpoint::state_dict;
use allmlp::layers::state_dict::StateDict;
use allmlp::layers::{infer, num_parameters};
use allmlp::models::{ModelOptions, create_model, model_names};
use allmlp::tensor_core::Tensor;

mod common;
use common::{
    Randomize, allmlp, assert_fails, reparam, run_infer, save_input, save_repmlp_tiny, stderr,
    stdout,
};

/// A fresh mixer_tiny saved with its name and config, its weights changed away from init so
/// the head is not zero (timm zero-initialises it) and logits are non-trivial.
fn save_mixer_tiny(path: &Path) -> Box<dyn allmlp::models::Model> {
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    m.visit("", &mut Randomize(1));
    let mut sd = state_dict(&*m);
    sd.set_model("mixer_tiny");
    sd.set_config(&m.config()).unwrap();
    sd.save(path).unwrap();
    m
}

#[test]
fn no_arguments_prints_help_and_version_works() {
    let dir = tempfile::tempdir().unwrap();
    let o = allmlp(&[], dir.path());
    assert!(!o.status.success());
    let help = stderr(&o);
    for cmd in ["models", "info", "infer", "reparam"] {
        assert!(help.contains(cmd), "{help}");
    }
    let o = allmlp(&["--version"], dir.path());
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("allmlp {}", env!("CARGO_PKG_VERSION"))
    );
    let o = allmlp(&["infer", "--help"], dir.path());
    for flag in [
        "--model",
        "--weights",
        "--input",
        "--output",
        "--threads",
        "--img-size",
    ] {
        assert!(stdout(&o).contains(flag), "{}", stdout(&o));
    }
}

#[test]
fn models_lists_every_registered_name() {
    let dir = tempfile::tempdir().unwrap();
    let o = allmlp(&["models"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let names: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for n in model_names() {
        assert!(names.contains(&n), "{n} missing from:\n{out}");
    }
    let tiny = out.lines().find(|l| l.starts_with("mixer_tiny ")).unwrap();
    let cols: Vec<&str> = tiny.split_whitespace().collect();
    assert_eq!(cols[1], "MLP-Mixer");
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    assert_eq!(cols[2], format!("{:.2}", num_parameters(&*m) as f64 / 1e6));
    // GFLOPs are two per MAC.
    let (gmacs, gflops): (f64, f64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
    assert!((gflops - 2.0 * gmacs).abs() <= 0.0015, "{tiny}");
}

#[test]
fn info_totals_equal_the_parameter_count() {
    let dir = tempfile::tempdir().unwrap();
    for (args, opts) in [
        (
            vec!["info", "--model", "mixer_tiny"],
            ModelOptions::default(),
        ),
        (
            vec![
                "info",
                "--model",
                "mixer_tiny",
                "--img-size",
                "32",
                "--in-chans",
                "3",
            ],
            ModelOptions {
                img_size: Some(32),
                in_chans: Some(3),
                ..ModelOptions::default()
            },
        ),
    ] {
        let o = allmlp(&args, dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let n = num_parameters(&*create_model("mixer_tiny", &opts).unwrap());
        assert!(out.contains(&format!("\nparams: {n} (")), "{out}");
        // The per-layer rows add up to the total, and the last row is the logits' shape.
        let rows: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("---"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        let params = |l: &str| -> usize {
            let cols: Vec<&str> = l.split("  ").filter(|c| !c.trim().is_empty()).collect();
            cols[cols.len() - 2]
                .trim()
                .replace(',', "")
                .parse()
                .unwrap()
        };
        let (total, layers) = rows.split_last().unwrap();
        assert_eq!(layers.iter().map(|l| params(l)).sum::<usize>(), n, "{out}");
        assert_eq!(params(total), n);
        assert!(
            total.starts_with("total") && total.contains("[1, 10]"),
            "{total}"
        );
        assert!(
            layers
                .iter()
                .any(|l| l.starts_with("blocks.7") && l.contains("[1, ")),
            "{out}"
        );
    }
    // RepMLP (v1) ResNets: a shape on every row (each block with its shortcut is one row), the
    // row MACs add up to the printed total, which is the model's own count.
    let name = "repmlp_res50_light_224";
    let o = allmlp(&["info", "--model", name], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let m = create_model(name, &ModelOptions::default()).unwrap();
    let n = num_parameters(&*m);
    assert!(out.contains(&format!("\nparams: {n} (")), "{out}");
    let rows: Vec<Vec<String>> = out
        .lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect();
    let num = |c: &str| c.replace(',', "").parse::<u64>().unwrap();
    let (total, layers) = rows.split_last().unwrap();
    assert_eq!(layers.len(), 1 + 1 + 16 + 1 + 1, "{out}");
    assert!(layers.iter().all(|r| r[1].starts_with("[1, ")), "{out}");
    let row = |name: &str| layers.iter().find(|r| r[0] == name).unwrap();
    assert_eq!(row("stage0.0")[1], "[1, 64, 112, 112]");
    assert_eq!(row("stage2.1")[1], "[1, 512, 28, 28]");
    assert_eq!(row("stage4.2")[1], "[1, 2048, 7, 7]");
    assert_eq!(row("linear")[1], "[1, 1000]");
    let macs: u64 = layers.iter().map(|r| num(&r[3])).sum();
    assert_eq!(macs, num(&total[3]), "{out}");
    assert_eq!(layers.iter().map(|r| num(&r[2])).sum::<u64>(), n as u64);
    assert!(out.contains(&format!("MACs per image: {macs} (")), "{out}");
    assert!(!out.contains("parameter-only"), "{out}");
    assert_fails(
        &allmlp(&["info", "--model", "mixer_zz"], dir.path()),
        &["unknown model `mixer_zz`", "mixer_tiny"],
    );
    // Sizes the machine cannot hold are errors naming the problem, never a panic or an abort.
    for (flag, value, want) in [
        // More f32 values than one allocation may hold ("capacity overflow").
        (
            "--num-classes",
            "36028797018963968",
            &["[36028797018963968, 128]"][..],
        ),
        // One allocation may hold 4.7 TiB; no machine running the tests can, and the
        // kernel refuses it unless told to promise any amount of memory (skipped below).
        (
            "--num-classes",
            "10000000000",
            &["cannot allocate", "[10000000000, 128]"],
        ),
        // A token count past usize (2^32 × 2^32 patches).
        (
            "--img-size",
            "17179869184",
            &["4294967296×4294967296 tokens"],
        ),
    ] {
        // With vm.overcommit_memory = 1 the kernel grants any allocation and the zero fill
        // would meet the OOM killer instead of an error.
        let always_overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
            .is_ok_and(|m| m.trim() == "1");
        if want.contains(&"cannot allocate") && always_overcommit {
            continue;
        }
        let o = allmlp(&["info", "--model", "mixer_tiny", flag, value], dir.path());
        assert_fails(&o, want);
    }
}

#[test]
fn infer_matches_the_library_and_uses_checkpoint_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let m = save_mixer_tiny(&p("w.safetensors"));
    let x = save_input(&p("x.safetensors"), "input", &[3, 1, 28, 28]);
    let want = infer(&*m, &x).unwrap();
    // Without --model (from metadata), with it, and on one thread.
    for extra in [&[][..], &["--model", "mixer_tiny"], &["--threads", "1"]] {
        let mut args = vec![
            "infer",
            "--weights",
            "w.safetensors",
            "--input",
            "x.safetensors",
            "--output",
            "y.safetensors",
        ];
        args.extend_from_slice(extra);
        let o = allmlp(&args, dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let y = StateDict::load(p("y.safetensors")).unwrap();
        let got = y.get("logits").expect("logits written");
        assert_eq!(got.shape(), [3, 10]);
        let (g, w) = (got.to_vec(), want.to_vec());
        let max = w.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(max > 1e-3, "non-trivial logits");
        // Same code path on the same weights: equal to float rounding.
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
        std::fs::remove_file(p("y.safetensors")).unwrap();
    }
}

#[test]
fn infer_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    save_mixer_tiny(&p("w.safetensors"));
    save_input(&p("x.safetensors"), "input", &[2, 1, 28, 28]);
    save_input(&p("other_key.safetensors"), "images", &[2, 1, 28, 28]);
    save_input(&p("wrong_shape.safetensors"), "input", &[2, 1, 32, 32]);
    std::fs::write(
        p("corrupt.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    // Weights of another model, without metadata.
    let r = create_model("resmlp_tiny", &ModelOptions::default()).unwrap();
    state_dict(&*r).save(p("resmlp.safetensors")).unwrap();

    let run = |w: &str, x: &str, model: Option<&str>| run_infer(dir.path(), (w, x), model, &[]);
    assert_fails(
        &run("w.safetensors", "x.safetensors", Some("mixer_zz")),
        &["unknown model `mixer_zz`", "mixer_tiny", "resmlp_tiny"],
    );
    let mut zero_threads = vec!["infer", "--weights", "w.safetensors", "--input"];
    zero_threads.extend([
        "x.safetensors",
        "--output",
        "y.safetensors",
        "--threads",
        "0",
    ]);
    assert_fails(&allmlp(&zero_threads, dir.path()), &["--threads 0"]);
    assert!(!p("y.safetensors").exists());
    assert_fails(
        &run("w.safetensors", "other_key.safetensors", None),
        &["other_key.safetensors", "no tensor `input`", "images"],
    );
    assert_fails(
        &run("w.safetensors", "wrong_shape.safetensors", None),
        &["[2, 1, 32, 32]", "mixer_tiny expects [N, 1, 28, 28]"],
    );
    assert_fails(
        &run("resmlp.safetensors", "x.safetensors", Some("mixer_tiny")),
        &[
            "does not match",
            "missing key `blocks.0.mlp_tokens.fc1.weight`",
            "unexpected key",
            // The hint survives the shortened key list.
            "… and ",
            "(the weights are not a checkpoint of mixer_tiny with these sizes)",
        ],
    );
    assert_fails(
        &run("resmlp.safetensors", "x.safetensors", None),
        &["no `model` metadata", "--model"],
    );
    assert_fails(
        &run("corrupt.safetensors", "x.safetensors", Some("mixer_tiny")),
        &["corrupt.safetensors", "not a valid safetensors file"],
    );
    assert_fails(
        &run("w.safetensors", "corrupt.safetensors", None),
        &["corrupt.safetensors", "not a valid safetensors file"],
    );
    let mut nan = Tensor::randn(&[3, 1, 28, 28], 0.0, 1.0, 3)
        .unwrap()
        .to_vec();
    nan[28 * 28 + 5 * 28 + 6] = f32::NAN;
    let mut sd = StateDict::new();
    sd.insert("input", Tensor::from_vec(nan, &[3, 1, 28, 28]).unwrap());
    sd.save(p("nan.safetensors")).unwrap();
    assert_fails(
        &run("w.safetensors", "nan.safetensors", None),
        &["nan.safetensors", "holds NaN at [1, 0, 5, 6]", "image 1"],
    );
    assert_fails(
        &run("missing.safetensors", "x.safetensors", None),
        &["missing.safetensors", "cannot"],
    );
    assert!(!p("y.safetensors").exists(), "nothing written on errors");
}

#[test]
fn reparam_refuses_models_with_nothing_to_convert() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    save_mixer_tiny(&p("w.safetensors"));
    let o = allmlp(
        &[
            "reparam",
            "--weights",
            "w.safetensors",
            "--output",
            "d.safetensors",
        ],
        dir.path(),
    );
    assert_fails(&o, &["mixer_tiny", "has no deploy form"]);
    assert!(!p("d.safetensors").exists());
    // Its own argument errors come first.
    assert_fails(
        &allmlp(
            &[
                "reparam",
                "--weights",
                "w.safetensors",
                "--output",
                "d.safetensors",
                "--model",
                "nope",
            ],
            dir.path(),
        ),
        &["unknown model `nope`"],
    );
    assert_fails(
        &allmlp(
            &[
                "reparam",
                "--weights",
                "w.safetensors",
                "--output",
                "d.safetensors",
                "--model",
                "resmlp_tiny",
            ],
            dir.path(),
        ),
        &["does not match", "missing key"],
    );
}

/// Randomises BatchNorm running statistics too (defaults would hide fusion errors).
#[test]
fn reparam_then_infer_gives_the_training_form_logits() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let m = save_repmlp_tiny(&p("train.safetensors"), 3);
    let x = save_input(&p("x.safetensors"), "input", &[2, 1, 28, 28]);
    let want = infer(&*m, &x).unwrap();

    reparam(dir.path(), "train.safetensors", "deploy.safetensors");
    let deployed = StateDict::load(p("deploy.safetensors")).unwrap();
    assert_eq!(deployed.metadata_value("deploy"), Some("true"));
    assert!(
        deployed
            .keys()
            .all(|k| !k.contains("fc3_bn") && !k.contains("repconv"))
    );

    let o = allmlp(
        &[
            "infer",
            "--weights",
            "deploy.safetensors",
            "--input",
            "x.safetensors",
            "--output",
            "y.safetensors",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = StateDict::load(p("y.safetensors"))
        .unwrap()
        .get("logits")
        .unwrap()
        .clone();
    let (g, w) = (got.to_vec(), want.to_vec());
    let scale = w.iter().fold(0f32, |a, v| a.max(v.abs()));
    let diff = g
        .iter()
        .zip(&w)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "deploy logits differ by {diff} (scale {scale})"
    );

    // Converting the deploy checkpoint again is an error, and writes nothing.
    let o = allmlp(
        &[
            "reparam",
            "--weights",
            "deploy.safetensors",
            "--output",
            "again.safetensors",
        ],
        dir.path(),
    );
    assert_fails(&o, &["already"]);
    assert!(!p("again.safetensors").exists());
}

/// A malformed `ALLMLP_NUM_THREADS` is an error naming it, for every command, instead of
/// silently meaning "every core"; a valid one is accepted.
#[test]
fn a_malformed_thread_count_in_the_environment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let with_env = |v: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_allmlp"))
            .arg("models")
            .env("ALLMLP_NUM_THREADS", v)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    for bad in ["abc", "0", "-1", ""] {
        assert_fails(
            &with_env(bad),
            &[&format!("ALLMLP_NUM_THREADS=\"{bad}\""), "≥ 1"],
        );
    }
    let o = with_env("1");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--threads` overrides the variable, so a malformed `ALLMLP_NUM_THREADS` does not stop a
/// command given the flag: the error is then about the command's own input.
#[test]
fn the_threads_flag_overrides_a_malformed_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |flag: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_allmlp"))
            .args(["eval", "--weights", "missing.safetensors"])
            .args(flag)
            .env("ALLMLP_NUM_THREADS", "abc")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let o = eval(&["--threads", "1"]);
    assert_fails(&o, &["missing.safetensors"]);
    assert!(!stderr(&o).contains("ALLMLP_NUM_THREADS"), "{}", stderr(&o));
    assert_fails(&eval(&[]), &["ALLMLP_NUM_THREADS=\"abc\""]);
}

/// A negative number in exponent or non-finite form (`-1e-3`, `-inf`) reaches its option's
/// own check, as `-0.001` does, instead of being read as short flags ("unexpected argument
/// '-1'"); a forgotten value is still clap's "a value is required".
#[test]
fn negative_numbers_in_any_form_reach_the_options_check() {
    let dir = tempfile::tempdir().unwrap();
    let train = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_allmlp"))
            .arg("train")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert_fails(&train(&["--lr", "-1e-3"]), &["--lr", "positive", "-0.001"]);
    assert_fails(&train(&["--mixup", "-inf"]), &["--mixup", "finite"]);
    assert_fails(
        &train(&["--mixup", "--lr", "0.1"]),
        &["a value is required", "--mixup"],
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
