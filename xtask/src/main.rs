//! `cargo xtask`: the project's tasks (`cargo xtask --help` lists them).
//!
//! Run through the alias in `.cargo/config.toml`, so `cargo` here is the one the
//! task was launched with (environment variable `CARGO`).

mod bench;
mod ci;
mod criterion;
mod parity;
mod torch;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask: the allmlp project's tasks

USAGE:
    cargo xtask <TASK> [OPTIONS]

TASKS:
    ci      cargo fmt --check, cargo clippy -D warnings, cargo test (stops at the first failure)
    bench   criterion benches of allmlp-benches against PyTorch, one GFLOP/s line per case
    parity  the full-size parity tests (timm fixtures generated, then the ignored tests)
    help    print this message (also -h, --help)

BENCH:
    cargo xtask bench [NAME] [--threads 1,2] [--case CASE] [--rounds N] [--no-torch] [--quick]
                      [--verbose]

    NAME          gemm, conv, train-step, autograd, models or all (default all; models is
                  the heaviest: full-size 224 models, tens of minutes for --threads 1,2)
    --threads     comma-separated thread counts (default 1,2); sets ALLMLP_NUM_THREADS for
                  the Rust benches and torch.set_num_threads for PyTorch
    --case        only cases whose name contains CASE (e.g. 1568x512x2048, stem7x7s2,
                  mixer_s16_224_b8)
    --rounds      run every case N times, Rust then torch each time, and report each side's
                  median over the rounds (default 1): a busy or shared machine's slow spells
                  then land on both sides alike (each round's line goes to stderr)
    --no-torch    skip the PyTorch side (torch=n/a)
    --quick       shorter warm-up and measurement on both sides (noisier)
    --verbose     show criterion's own output

    Per thread count and case, interleaved, the Rust bench runs filtered to that case's ids
    (`<kind>/<implementation>/<case>`, e.g. gemm/tensor-core/1568x512x2048), then
    tools/bench_torch.py runs the same case. The medians are printed as GFLOP/s with
    ratio = tensor-core / torch, then a summary (geometric mean and worst ratio) per kind and
    thread count; the table also goes to target/bench-summary.md.

    models: eval-mode inference of mixer_s16_224, mixer_b16_224, resmlp_12_224, resmlp_24_224
    (torch: timm.create_model(name), inference_mode), repmlp_res50_light_224 and repmlpnet_t224
    in the training and the deploy form (torch: the reference modules of tools/fixtures/).
    Batch-8 cases (`<model>_b8`) are images/s, target ratio >= 1.3; batch-1 cases (`<model>_b1`)
    are median ms per call, ratio = ours/torch latency, target <= 0.8 (the issue's targets, for
    the four timm models; none for the RepMLP family).

    PyTorch (for bench and parity) comes from, in order: $ALLMLP_TORCH_PYTHON (a python with torch installed),
    <workspace>/.venv/bin/python if it imports torch, or a .venv created with
    `python3 -m venv .venv` and `pip install -r tools/requirements-bench.txt`.
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the torch process's environment.

PARITY:
    cargo xtask parity [--models LIST] [--regenerate]

    --models      timm models whose full-size fixtures are written and checked: a comma-separated
                  list of mixer_{s32,s16,b32,b16,l32,l16}_224, resmlp_{12,24,36,big_24}_224,
                  `all` (those ten; about 2.5 GB of files) or `none` (default
                  mixer_s16_224,mixer_b16_224,resmlp_12_224,resmlp_24_224)
    --regenerate  rewrite fixtures that are already there

    1. tools/fixtures/models_mlp.py --full <target>/parity-fixtures --models M (random weights,
       batch-1 input and timm's float64 output) for each model whose files are missing, with the
       python found as for bench (it needs torch, timm, safetensors and numpy);
    2. ALLMLP_PARITY_DIR=<target>/parity-fixtures cargo test -p allmlp-models --test mixer_resmlp
       --test repmlp --test repmlpnet --test deploy --no-fail-fast -- --ignored
       --test-threads=1 --nocapture: timm parity (<= 1e-4 relative) of every model with files
       there, RepMLP-Res50 against the committed reference outputs, every RepMLPNet at full
       size, every full-size train -> deploy conversion;
    3. one line per test (ok / FAILED) and a count; fails when a test fails.
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("ci") if rest.is_empty() => ci::run(),
        Some("ci") => Err(format!("`ci` takes no arguments, got {rest:?}")),
        Some("bench") => bench::run(&rest),
        Some("parity") => parity::run(&rest),
        Some(other) => Err(format!(
            "unknown task `{other}` (`cargo xtask --help` lists the tasks)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the directory above this crate).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// A `cargo` command run in the workspace root, using the cargo that launched the xtask.
fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}
