//! `cargo xtask parity`: the full-size parity checks, the `#[ignore]`d tests of
//! `allmlp-models`.
//!
//! 1. The timm fixtures of full-size Mixer/ResMLP models (random weights, batch-1 input and
//!    timm's float64 output; 60–800 MB each, never committed) are written by
//!    `tools/fixtures/models_mlp.py --full <target>/parity-fixtures --models ...` with a python
//!    that has torch, timm, safetensors and numpy (found or set up as for `cargo xtask bench`).
//!    A model whose two files are already there is not regenerated (`--regenerate` forces it).
//! 2. `cargo test -p allmlp-models --test mixer_resmlp --test repmlp --test repmlpnet
//!    --test deploy --no-fail-fast -- --ignored --test-threads=1 --nocapture` with
//!    `ALLMLP_PARITY_DIR` set to that folder: timm parity of those models, the RepMLP-Res50
//!    parity against the committed reference outputs, every RepMLPNet at full size, and the
//!    exactness of every full-size train → deploy conversion.
//! 3. A pass/fail summary; the task fails when a test or a build fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cargo, criterion, torch, workspace_root};

/// The models whose timm fixtures are written by default: those of `cargo xtask bench models`.
const DEFAULT_MODELS: [&str; 4] = [
    "mixer_s16_224",
    "mixer_b16_224",
    "resmlp_12_224",
    "resmlp_24_224",
];

/// Every registered name timm also has (`--models all`); `mixer_h14_224` is not in timm.
const TIMM_MODELS: [&str; 10] = [
    "mixer_s32_224",
    "mixer_s16_224",
    "mixer_b32_224",
    "mixer_b16_224",
    "mixer_l32_224",
    "mixer_l16_224",
    "resmlp_12_224",
    "resmlp_24_224",
    "resmlp_36_224",
    "resmlp_big_24_224",
];

/// The test targets of `allmlp-models` that hold `#[ignore]`d full-size checks.
const TEST_TARGETS: [&str; 4] = ["mixer_resmlp", "repmlp", "repmlpnet", "deploy"];

/// Parsed command line of `cargo xtask parity`.
#[derive(Debug, PartialEq)]
struct Options {
    models: Vec<String>,
    regenerate: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        models: DEFAULT_MODELS.iter().map(|s| s.to_string()).collect(),
        regenerate: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--regenerate" => opts.regenerate = true,
            "--models" => {
                let list = args
                    .next()
                    .ok_or("--models needs a list, e.g. mixer_b16_224,resmlp_12_224 or all")?;
                opts.models = parse_models(list)?;
            }
            other => {
                return Err(format!(
                    "parity: unexpected argument `{other}` (see cargo xtask --help)"
                ));
            }
        }
    }
    Ok(opts)
}

fn parse_models(list: &str) -> Result<Vec<String>, String> {
    match list.trim() {
        "all" => return Ok(TIMM_MODELS.iter().map(|s| s.to_string()).collect()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    list.split(',')
        .map(|m| {
            let m = m.trim();
            if TIMM_MODELS.contains(&m) {
                Ok(m.to_string())
            } else {
                Err(format!(
                    "--models: `{m}` is not a timm model we register; expected some of {}, \
                     `all` or `none`",
                    TIMM_MODELS.join(", ")
                ))
            }
        })
        .collect()
}

/// The two files `models_mlp.py --full` writes for `model`; the `_io` file is written last.
fn fixture_files(dir: &Path, model: &str) -> [PathBuf; 2] {
    [
        dir.join(format!("{model}.safetensors")),
        dir.join(format!("{model}_io.safetensors")),
    ]
}

/// Runs `cargo xtask parity` with its arguments.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let root = workspace_root();
    let dir = criterion::target_dir()?.join("parity-fixtures");
    generate(&root, &dir, &opts)?;
    // The timm test fails when it finds no fixture at all: leave it out then (`--models none`
    // on a fresh target directory).
    let any_timm = TIMM_MODELS
        .iter()
        .any(|m| fixture_files(&dir, m).iter().all(|f| f.is_file()));
    let targets: Vec<&str> = TEST_TARGETS
        .into_iter()
        .filter(|t| any_timm || *t != "mixer_resmlp")
        .collect();
    let outcome = run_tests(&dir, &targets)?;
    println!();
    for (name, ok) in &outcome.tests {
        println!("parity {} {name}", if *ok { "ok    " } else { "FAILED" });
    }
    let failed = outcome.tests.iter().filter(|t| !t.1).count();
    println!(
        "parity: {} passed, {failed} failed (timm fixtures in {}: {})",
        outcome.tests.len() - failed,
        dir.display(),
        if opts.models.is_empty() {
            "none".to_string()
        } else {
            opts.models.join(", ")
        }
    );
    if failed > 0 || !outcome.success {
        return Err(if failed > 0 {
            format!("{failed} parity test(s) failed")
        } else {
            "cargo test failed (see above)".to_string()
        });
    }
    Ok(())
}

/// Writes the missing (or, with `--regenerate`, all) timm fixtures of `opts.models`.
fn generate(root: &Path, dir: &Path, opts: &Options) -> Result<(), String> {
    let todo: Vec<&String> = opts
        .models
        .iter()
        .filter(|m| opts.regenerate || !fixture_files(dir, m).iter().all(|f| f.is_file()))
        .collect();
    for m in opts.models.iter().filter(|m| !todo.contains(m)) {
        eprintln!("xtask parity: {m}: fixtures present in {}", dir.display());
    }
    if todo.is_empty() {
        return Ok(());
    }
    let python = torch::find_fixture_python(root)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let script = root.join("tools").join("fixtures").join("models_mlp.py");
    for m in todo {
        // One model per run: the script's seeds depend on the list position only, and each
        // pair of files (weights, input/output) is self-consistent.
        eprintln!("xtask parity: writing the timm fixtures of {m}");
        let status = Command::new(&python)
            .arg(&script)
            .arg("--full")
            .arg(dir)
            .args(["--models", m])
            .current_dir(root)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        if !status.success() {
            // A half-written pair would pass the presence check next time.
            for f in fixture_files(dir, m) {
                let _ = std::fs::remove_file(f);
            }
            return Err(format!(
                "{} {} --full {} --models {m} failed: {status}",
                python.display(),
                script.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// What the test run reported.
struct Outcome {
    /// `(test name, passed)` in the order they finished.
    tests: Vec<(String, bool)>,
    /// cargo's exit status was success.
    success: bool,
}

/// Runs the ignored tests, echoing their output, and collects the verdicts.
fn run_tests(dir: &Path, targets: &[&str]) -> Result<Outcome, String> {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "allmlp-models", "--no-fail-fast"]);
    for t in targets {
        cmd.args(["--test", t]);
    }
    cmd.args(["--", "--ignored", "--test-threads=1", "--nocapture"])
        .env("ALLMLP_PARITY_DIR", dir)
        .stdout(Stdio::piped());
    eprintln!(
        "xtask parity: ALLMLP_PARITY_DIR={} cargo test -p allmlp-models --test {} \
         --no-fail-fast -- --ignored --test-threads=1 --nocapture",
        dir.display(),
        targets.join(" --test ")
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let mut lines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| format!("reading cargo test's output: {e}"))?;
            println!("{line}");
            lines.push(line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo test: {e}"))?;
    Ok(Outcome {
        tests: verdicts(&lines),
        success: status.success(),
    })
}

/// Test names and verdicts from libtest's output under `--nocapture`, where a test's own
/// output can come between `test NAME ... ` and its `ok` / `FAILED`: a test started by
/// `test NAME ...` passed unless it is listed under a `failures:` heading.
fn verdicts(lines: &[String]) -> Vec<(String, bool)> {
    let mut started: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut in_failures = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, _)) = rest.split_once(" ...")
        {
            started.push(name.trim().to_string());
            in_failures = false;
        } else if line == "failures:" {
            in_failures = true;
        } else if in_failures {
            match line.strip_prefix("    ") {
                Some(name) if !name.trim().is_empty() => failed.push(name.trim().to_string()),
                _ if line.trim().is_empty() => {}
                _ => in_failures = false,
            }
        }
    }
    started
        .into_iter()
        .map(|n| {
            let ok = !failed.contains(&n);
            (n, ok)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.models, DEFAULT_MODELS);
        assert!(!o.regenerate);
        let o = parse(&args("--models mixer_s32_224,resmlp_36_224 --regenerate")).unwrap();
        assert_eq!(o.models, ["mixer_s32_224", "resmlp_36_224"]);
        assert!(o.regenerate);
        assert_eq!(parse(&args("--models all")).unwrap().models, TIMM_MODELS);
        assert!(parse(&args("--models none")).unwrap().models.is_empty());
        for bad in [
            "--models",
            "--models mixer_h14_224",
            "--models mixer_tiny",
            "--quick",
            "mixer",
        ] {
            let err = parse(&args(bad)).err();
            assert!(err.is_some(), "`{bad}` should be rejected");
        }
        let e = parse(&args("--models resmlp_12")).unwrap_err();
        assert!(
            e.contains("resmlp_12") && e.contains("resmlp_12_224"),
            "{e}"
        );
    }

    #[test]
    fn reads_verdicts_through_test_output() {
        let out = "\
running 1 test
test full_size_models_match_timm ... mixer_b16_224: max relative error 3.1e-7
ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 12 filtered out

running 2 tests
test res50_light_224_matches_reference ... ok
test res50_bottleneck_224_matches_reference ... thread 'x' panicked at tests/repmlp.rs:9:5:
relative error 1.0e-2
FAILED

failures:

failures:
    res50_bottleneck_224_matches_reference

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 20 filtered out";
        let lines: Vec<String> = out.lines().map(String::from).collect();
        let v = verdicts(&lines);
        assert_eq!(
            v,
            [
                ("full_size_models_match_timm".to_string(), true),
                ("res50_light_224_matches_reference".to_string(), true),
                ("res50_bottleneck_224_matches_reference".to_string(), false),
            ]
        );
    }

    #[test]
    fn fixture_files_are_the_scripts_names() {
        let [w, io] = fixture_files(Path::new("/d"), "mixer_b16_224");
        assert_eq!(w, Path::new("/d/mixer_b16_224.safetensors"));
        assert_eq!(io, Path::new("/d/mixer_b16_224_io.safetensors"));
    }
}
