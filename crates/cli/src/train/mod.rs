//! `allmlp train`: trains a registered model on an image dataset, evaluating on the test split
//! after each epoch, and keeps everything in one run directory:
//!
//! - `metrics.csv` (`epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds`) and
//!   `curves.png` (loss and accuracy per epoch);
//! - `last.safetensors` and `best.safetensors` (highest test accuracy so far): weights plus
//!   metadata (model, config, dataset, normalization, classes, epoch, metrics), usable by
//!   `eval`, `predict`, `viz`, `infer` and `reparam` without further flags;
//! - `optimizer.safetensors`: everything `--resume DIR` needs (see [`state`]).
//!
//! Every file is written to a temporary name and renamed, after each completed epoch, with the
//! resume state last: killing the process at any moment leaves the previous epoch's files
//! intact, and resuming repeats the interrupted epoch exactly (every random draw is seeded
//! from (seed, epoch, step)), so an interrupted and resumed run ends with the same weights as
//! an uninterrupted one with the same thread count. A NaN or infinite loss (training or test)
//! stops training with an error; nothing of the diverged epoch is written.

pub mod args;
pub mod epoch;
pub mod optim;
pub mod progress;
pub mod recipe;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use allmlp_layers::checkpoint::{load_state_dict, state_dict};
use allmlp_layers::named_parameters;
use allmlp_layers::state_dict::Strictness;
use allmlp_models::{Model, ModelOptions, create_model};

pub use args::TrainArgs;
use epoch::train_epoch;
use optim::{build_optimizer, build_schedule};
use recipe::Recipe;

use crate::checkpoint::{TrainedMeta, trained_state_dict};
use crate::commands::eval::evaluate;
use crate::commands::{CliError, CliResult};
use crate::data::{Dataset, DatasetSpec, Normalization, Split};
use crate::metrics::{EpochMetrics, to_csv};
use crate::plot::{plot_curves, write_atomic};

/// Parameters that never get weight decay besides biases and 1-D tensors: ResMLP's Affine
/// (`[1, 1, C]`) and any layer scale.
const NO_DECAY: &[&str] = &["*.alpha", "*.beta", "*.gamma", "*ls1*", "*ls2*"];

/// Images per forward pass of the per-epoch test evaluation (see the constant's note).
const EVAL_BATCH: usize = crate::commands::eval::DEFAULT_BATCH;

/// The files of a run directory; a new run never writes into a directory holding any of them.
const RUN_FILES: [&str; 4] = [
    state::RESUME_FILE,
    "last.safetensors",
    "best.safetensors",
    "metrics.csv",
];

/// Runs `allmlp train` and returns its final report.
pub fn run(args: &TrainArgs) -> CliResult<String> {
    crate::commands::set_threads(args.threads)?;
    let threads = allmlp_tensor_core::threads::num_threads();
    let resumed = match &args.resume {
        Some(dir) => Some(state::load(dir)?),
        None => None,
    };
    let recipe = match &resumed {
        Some((_, _, p)) => args.resumed_recipe(&p.recipe)?,
        None => args.new_recipe()?,
    };
    args::validate(&recipe)?;
    if args.stop_after == Some(0) {
        return Err(CliError("--stop-after: must be at least 1, got 0".into()));
    }
    let out = args
        .out
        .clone()
        .or_else(|| args.resume.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(&recipe.model));
    let spec: DatasetSpec = recipe.dataset.parse().map_err(CliError)?;
    crate::commands::check_registered(&recipe.model)?;

    let resumed_here = args.resume.as_deref().is_some_and(|r| same_dir(r, &out));
    if let Some(f) = RUN_FILES.iter().find(|f| out.join(f).exists())
        && !resumed_here
    {
        let next = if out.join(state::RESUME_FILE).is_file() {
            format!("continue it with --resume {}, or choose", out.display())
        } else {
            // Stopped before the first epoch's resume file was written: nothing to resume.
            "it has no resume file yet (stopped during its first epoch's save); delete it or \
             choose"
                .to_string()
        };
        return Err(CliError(format!(
            "{} already holds a training run ({f}); {next} another --out (nothing was \
             overwritten)",
            out.display(),
        )));
    }
    // A resumed run reads the data it was trained on: its `--data` unless another is given
    // (moved files), and the training split must be the same images.
    let data = args
        .data
        .clone()
        .or_else(|| resumed.as_ref().and_then(|(_, _, p)| p.data.clone()));
    let (train, test, input) = load_data(&spec, data.as_deref(), &recipe)?;
    let train_data = train.fingerprint();
    if let Some(saved) = resumed.as_ref().and_then(|(_, _, p)| p.train_data.as_ref())
        && *saved != train_data
    {
        let hint = match spec {
            DatasetSpec::Folder(_) => "name the run's folder with --dataset folder:PATH",
            _ => "give the run's data with --data",
        };
        return Err(CliError(format!(
            "--resume {}: the run's training images ({saved}) are not the {} images this \
             invocation finds ({train_data}; {}); {hint}",
            args.resume.as_deref().unwrap_or(&out).display(),
            spec.name(),
            train.source
        )));
    }
    let opts = ModelOptions {
        img_size: Some(input[1]),
        in_chans: Some(input[0]),
        num_classes: Some(train.classes.len()),
        drop_path_rate: recipe.drop_path,
        zero_init_residual: recipe.zero_init_residual,
        seed: recipe.seed,
        ..ModelOptions::default()
    };
    let net = create_model(&recipe.model, &opts).map_err(|e| {
        // A model that builds without the options these flags set refuses the flags
        // themselves (`e` says which): name them rather than blame the images.
        let flags: Vec<&str> = [
            ("--drop-path", opts.drop_path_rate > 0.0),
            ("--zero-init-residual", opts.zero_init_residual),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        let without = ModelOptions {
            drop_path_rate: 0.0,
            zero_init_residual: false,
            ..opts.clone()
        };
        if !flags.is_empty() && create_model(&recipe.model, &without).is_ok() {
            return CliError(format!(
                "{}: {} does not take {}: {e}",
                flags.join(", "),
                recipe.model,
                if flags.len() == 1 { "it" } else { "them" }
            ));
        }
        CliError(format!(
            "{} cannot be built for the {} images ({}×{}×{}, {} classes): {e}",
            recipe.model,
            spec.name(),
            input[0],
            input[1],
            input[2],
            train.classes.len()
        ))
    })?;
    if net.input_shape() != input {
        return Err(CliError(format!(
            "{}: takes input {:?}, the {} images are {:?}",
            recipe.model,
            net.input_shape(),
            spec.name(),
            input
        )));
    }
    let mut opt = build_optimizer(&recipe, named_parameters(net.as_ref()), NO_DECAY)?;
    let steps_per_epoch = recipe.steps_per_epoch(train.len());
    if steps_per_epoch == 0 {
        return Err(CliError(format!(
            "--batch-size {} is larger than the {} training images",
            recipe.batch_size,
            train.len()
        )));
    }
    let total_steps = steps_per_epoch
        .checked_mul(recipe.epochs)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            CliError(format!(
                "--epochs {}: {steps_per_epoch} steps per epoch over so many epochs overflows \
                 the step count",
                recipe.epochs
            ))
        })?;
    let schedule = build_schedule(&recipe, total_steps)?;

    let mut progress = state::Progress {
        recipe: recipe.clone(),
        epoch: 0,
        step: 0,
        seconds: 0.0,
        metrics: Vec::new(),
        optimizer_scalars: Vec::new(),
        threads,
        data: None,
        train_data: None,
    };
    if let Some((model_sd, optim_state, p)) = resumed {
        if let Some(dir) = &args.resume {
            p.check(dir, recipe.epochs, steps_per_epoch)?;
        }
        load_state_dict(net.as_ref(), model_sd, Strictness::Strict)?;
        opt.load_state(&optim_state)?;
        progress = p;
        progress.threads = threads;
    }
    // Absolute, so that a resume from another working directory finds it.
    progress.data = data.map(|d| d.canonicalize().unwrap_or(d));
    progress.train_data = Some(train_data);
    if out.exists() && !out.is_dir() {
        return Err(CliError(format!(
            "--out {}: is a file; the run's files go into a directory",
            out.display()
        )));
    }
    std::fs::create_dir_all(&out)
        .map_err(|e| CliError(format!("cannot create {}: {e}", out.display())))?;
    remove_stale_temporaries(&out);
    // Resumed into another directory: it starts with the run's best weights so far, which a
    // later epoch replaces only if it is better.
    if let Some(from) = args.resume.as_deref().filter(|_| !resumed_here) {
        let best = from.join("best.safetensors");
        if best.is_file() {
            let bytes = std::fs::read(&best)
                .map_err(|e| CliError(format!("cannot read {}: {e}", best.display())))?;
            write_atomic(&out.join("best.safetensors"), &bytes)?;
        }
    }

    // A folder's statistics are measured on its training split (they go into the checkpoint).
    let norm = match spec {
        DatasetSpec::Folder(_) => {
            Normalization::from_dataset(&train).map_err(|e| CliError(e.to_string()))?
        }
        _ => spec.normalization(),
    };
    let classes = train.classes.clone();
    let meta = |epoch: usize, m: &EpochMetrics| TrainedMeta {
        dataset: spec.name(),
        normalization: norm.clone(),
        classes: classes.clone(),
        epoch,
        metrics: m.to_json(),
    };
    eprintln!(
        "allmlp train: {} on {} ({} train / {} test images; {}), {} epochs of {} steps, \
         {} thread{}, output in {}",
        recipe.model,
        spec.name(),
        train.len(),
        test.len(),
        train.source,
        recipe.epochs,
        steps_per_epoch,
        threads,
        if threads == 1 { "" } else { "s" },
        out.display()
    );
    let train = Arc::new(train);
    let start = Instant::now();
    let base_seconds = progress.seconds;
    let last_epoch = match args.stop_after {
        Some(n) => progress.epoch.saturating_add(n).min(recipe.epochs),
        None => recipe.epochs,
    };
    while progress.epoch < last_epoch {
        let epoch = progress.epoch + 1;
        let stats = train_epoch(
            net.as_ref(),
            opt.as_mut(),
            &schedule,
            &train,
            &norm,
            &recipe,
            epoch,
            &mut progress.step,
        )?;
        let (train_loss, train_acc) = (stats.loss, stats.accuracy);
        let report = evaluate(net.as_ref(), &test, &norm, EVAL_BATCH)?;
        let (test_loss, test_acc) = (report.loss, report.accuracy);
        if !test_loss.is_finite() {
            return Err(CliError(format!(
                "the test loss after epoch {epoch} is {test_loss} (the model's outputs are not \
                 finite) although training stayed finite; training stopped. {}; try a lower \
                 --lr",
                epoch::kept_checkpoint(epoch)
            )));
        }
        let m = EpochMetrics {
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            lr: opt.lr(),
            seconds: base_seconds + start.elapsed().as_secs_f64(),
        };
        let best_so_far = progress
            .metrics
            .iter()
            .map(|r| r.test_acc)
            .fold(f64::MIN, f64::max);
        progress.metrics.push(m);
        eprintln!(
            "epoch {epoch}/{}: train loss {train_loss:.4} acc {:.2}% | test loss {test_loss:.4} \
             acc {:.2}% | lr {:.2e} | {:.0} img/s, {:.1}% waiting for data | {:.0} s",
            recipe.epochs,
            100.0 * train_acc,
            100.0 * test_acc,
            m.lr,
            stats.images_per_s,
            100.0 * stats.data_wait,
            m.seconds
        );
        write_epoch(
            &out,
            net.as_ref(),
            &meta(epoch, &m),
            &progress.metrics,
            test_acc > best_so_far,
        )?;
        progress.epoch = epoch;
        progress.seconds = m.seconds;
        state::save(&out, &state_dict(net.as_ref()), &opt.state(), &progress)?;
    }
    Ok(match progress.metrics.last() {
        Some(m) => format!(
            "{}: epoch {}/{}, test accuracy {:.2}% (loss {:.4}), {:.0} s of training; files in {}",
            recipe.model,
            m.epoch,
            recipe.epochs,
            100.0 * m.test_acc,
            m.test_loss,
            m.seconds,
            out.display()
        ),
        None => format!("{}: nothing to train", recipe.model),
    })
}

/// Whether `a` and `b` name the same directory (compared as given when either does not exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Loads the training and test splits (from `data`, else the dataset's default place) and the
/// input shape `[C, H, W]` models get. Either split being empty is an error.
fn load_data(
    spec: &DatasetSpec,
    data: Option<&Path>,
    recipe: &Recipe,
) -> CliResult<(Dataset, Dataset, [usize; 3])> {
    let input = match spec.image_shape() {
        Some(s) => s,
        None => create_model(&recipe.model, &ModelOptions::default())?.input_shape(),
    };
    let load = |split| {
        spec.load(split, data, input)
            .map_err(|e| CliError(e.to_string()))
    };
    let mut train = load(Split::Train)?;
    let mut test = load(Split::Test)?;
    if let Some(n) = recipe.train_limit {
        train = train.take(n);
    }
    if let Some(n) = recipe.test_limit {
        test = test.take(n);
    }
    for (ds, limit, flag) in [
        (&train, recipe.train_limit, "--train-limit"),
        (&test, recipe.test_limit, "--test-limit"),
    ] {
        if ds.is_empty() {
            let why = if limit == Some(0) {
                format!(" ({flag} 0)")
            } else {
                String::new()
            };
            return Err(CliError(format!(
                "{} ({}) has no images{why}",
                ds.name, ds.source
            )));
        }
    }
    if train.classes != test.classes {
        return Err(CliError(format!(
            "{}: the training split has classes {:?}, the test split {:?}",
            spec.name(),
            train.classes,
            test.classes
        )));
    }
    Ok((train, test, input))
}

/// Removes the temporary files of a run's own outputs (`.last.safetensors.XXXXXX.tmp`, …, as
/// `write_atomic` names them) that a killed run left in `out`; nothing else is touched.
fn remove_stale_temporaries(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = RUN_FILES
            .iter()
            .chain(&["curves.png"])
            .any(|f| name.starts_with(&format!(".{f}.")));
        if ours && name.ends_with(".tmp") {
            // A file that cannot be removed is only wasted space.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes the epoch's user-facing files: last (and best) weights, metrics.csv, curves.png.
fn write_epoch(
    out: &Path,
    net: &dyn Model,
    meta: &TrainedMeta,
    rows: &[EpochMetrics],
    is_best: bool,
) -> CliResult<()> {
    let sd = trained_state_dict(net, meta)?;
    sd.save(out.join("last.safetensors"))?;
    if is_best {
        sd.save(out.join("best.safetensors"))?;
    }
    write_atomic(&out.join("metrics.csv"), to_csv(rows).as_bytes())?;
    plot_curves(&out.join("curves.png"), rows)
}
