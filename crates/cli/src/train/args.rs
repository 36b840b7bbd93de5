//! `allmlp train` flags, and how they combine with the default recipe or a resumed run.

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use super::recipe::{OptimizerKind, Recipe, ScheduleKind};
use crate::commands::{CliError, CliResult};
use crate::data::DatasetSpec;

/// Flags of `allmlp train`. Every recipe flag is optional: unset flags take the default recipe
/// (see `Recipe::default_for`), or, with `--resume`, the resumed run's value.
#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Registered model to train (see `allmlp models`) [default: mixer_tiny].
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Dataset: fashion-mnist, fashion-mnist-subset (the embedded 5,000 + 1,000 images), mnist,
    /// cifar10, cifar100 or folder:PATH (PATH/train/CLASS/…, PATH/test/CLASS/… holding .png,
    /// .jpg or .jpeg files, other files are skipped; recorded as an absolute path) [default:
    /// fashion-mnist].
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// Directory holding the dataset files. Fashion-MNIST without it: Debian's
    /// /usr/share/datasets/fashion-mnist/ if installed, else the embedded 5,000/1,000 subset.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Epochs to train [default: 4].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Images per training step [default: 64].
    #[arg(long, value_name = "B")]
    pub batch_size: Option<usize>,
    /// Optimizer [default: muon for MLP-Mixer and ResMLP, adamw for the RepMLP nets].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate, reached after the warm-up [default: 0.002; 0.004 for ResMLP, 0.001
    /// for the RepMLP nets].
    #[arg(long, value_name = "LR", value_parser = finite::<f64>, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Weight decay; biases, norms, affine and layer-scale parameters get none [default: 0.05].
    #[arg(long, value_name = "WD", value_parser = finite::<f64>, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Linear warm-up steps from 0 to --lr, at most all but the last step [default: 500, at most
    /// a quarter of the run].
    #[arg(long, value_name = "STEPS")]
    pub warmup_steps: Option<u64>,
    /// Learning-rate decay after the warm-up: cosine or linear towards 0 (reached one step after
    /// the last, as in PyTorch's schedulers), or step (×0.1 after each third of the steps after
    /// the warm-up) [default: cosine].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Label smoothing of the training loss, in [0, 1] as in PyTorch [default: 0.1].
    #[arg(long, value_name = "EPS", value_parser = finite::<f32>, allow_negative_numbers = true)]
    pub label_smoothing: Option<f32>,
    /// Mixup alpha; > 0 turns on mixup alternating with CutMix (alpha 1) [default: 0].
    #[arg(long, value_name = "ALPHA", value_parser = finite::<f32>, allow_negative_numbers = true)]
    pub mixup: Option<f32>,
    /// Stochastic-depth rate, the same in every block as in timm [default: 0].
    #[arg(long, value_name = "RATE", value_parser = finite::<f32>, allow_negative_numbers = true)]
    pub drop_path: Option<f32>,
    /// Start the last linear layer of every residual branch at zero, so each block starts as
    /// the identity (Mixer and ResMLP; torchvision's zero_init_residual) [default: true for
    /// the MLP-Mixers, false otherwise].
    #[arg(long, value_name = "BOOL")]
    pub zero_init_residual: Option<bool>,
    /// Random-crop padding in pixels, 0 for none [default: 0].
    #[arg(long, value_name = "PIXELS")]
    pub crop_padding: Option<usize>,
    /// Random horizontal flips (true/false) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub hflip: Option<bool>,
    /// Random-erasing probability per image [default: 0].
    #[arg(long, value_name = "P", value_parser = finite::<f32>, allow_negative_numbers = true)]
    pub random_erasing: Option<f32>,
    /// Seed of initialisation, shuffling, augmentation and dropout [default: 0].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Compute threads (default: ALLMLP_NUM_THREADS, else all cores). Results do not depend
    /// on it: the kernels split work at fixed boundaries, so a run resumed on another count
    /// ends with the same weights.
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
    /// Output directory for metrics.csv, curves.png and the checkpoints [default: the --resume
    /// directory, else runs/MODEL].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run saved in DIR: its recipe (any recipe flag given must agree with it) and
    /// its --data directory or folder:PATH (unless another is given; the training images must
    /// be the same).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Train on only the first N training images (quick runs and tests).
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images (quick runs and tests).
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
    /// Stop after this many epochs of this invocation (the schedule still spans --epochs);
    /// continue later with --resume.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
}

impl TrainArgs {
    /// The recipe of a new run: the default recipe with the given flags applied.
    pub fn new_recipe(&self) -> CliResult<Recipe> {
        let model = self.model.as_deref().unwrap_or("mixer_tiny");
        let dataset = self.dataset.as_deref().unwrap_or("fashion-mnist");
        let mut r = Recipe::default_for(model, dataset);
        let mut result = Ok(());
        self.for_each_flag(|name, v| {
            if result.is_ok() {
                result = set_field(&mut r, name, v);
            }
        });
        result?;
        r.dataset = canonical_dataset(&r.dataset);
        Ok(r)
    }

    /// The recipe a resumed run continues with: `saved`, after checking the given flags
    /// agree with it. A `--dataset folder:PATH` may name another place for the run's folder
    /// (moved images, or a relative path given from another directory): the run's fingerprint
    /// of its training split refuses other images.
    pub fn resumed_recipe(&self, saved: &Recipe) -> CliResult<Recipe> {
        self.check_resume(saved)?;
        let mut r = saved.clone();
        if let Some(folder) = self.dataset.as_deref().and_then(absolute_folder) {
            r.dataset = folder;
        }
        Ok(r)
    }

    /// Checks the given flags agree with `saved` (the recipe of the run being resumed).
    fn check_resume(&self, saved: &Recipe) -> CliResult<()> {
        let saved_json = serde_json::to_value(saved).map_err(|e| CliError(e.to_string()))?;
        let mut bad = Vec::new();
        self.for_each_flag(|name, v| {
            let was = &saved_json[name];
            let (v, was) = if name == "dataset" {
                // By canonical name: `fmnist` is `fashion-mnist`.
                let canonical =
                    |d: &Value| Value::from(canonical_dataset(d.as_str().unwrap_or("")));
                (canonical(&v), canonical(was))
            } else {
                (v, was.clone())
            };
            let both_folders = name == "dataset"
                && [&v, &was]
                    .iter()
                    .all(|d| d.as_str().is_some_and(|d| d.starts_with("folder:")));
            if was != v && !both_folders {
                bad.push(format!(
                    "--{} {} (the resumed run has {})",
                    name.replace('_', "-"),
                    v,
                    was
                ));
            }
        });
        if bad.is_empty() {
            Ok(())
        } else {
            Err(CliError(format!(
                "--resume continues a run with its own recipe; these flags disagree with it: {}",
                bad.join(", ")
            )))
        }
    }

    /// Calls `f(recipe field name, value as JSON)` for every recipe flag that was given.
    fn for_each_flag(&self, mut f: impl FnMut(&str, Value)) {
        let json = |v: &dyn erased::Json| v.json();
        let fields: [(&str, Option<&dyn erased::Json>); 19] = [
            ("model", self.model.as_ref().map(|v| v as _)),
            ("dataset", self.dataset.as_ref().map(|v| v as _)),
            ("epochs", self.epochs.as_ref().map(|v| v as _)),
            ("batch_size", self.batch_size.as_ref().map(|v| v as _)),
            ("optimizer", self.optimizer.as_ref().map(|v| v as _)),
            ("lr", self.lr.as_ref().map(|v| v as _)),
            ("weight_decay", self.weight_decay.as_ref().map(|v| v as _)),
            ("warmup_steps", self.warmup_steps.as_ref().map(|v| v as _)),
            ("schedule", self.schedule.as_ref().map(|v| v as _)),
            (
                "label_smoothing",
                self.label_smoothing.as_ref().map(|v| v as _),
            ),
            ("mixup", self.mixup.as_ref().map(|v| v as _)),
            ("drop_path", self.drop_path.as_ref().map(|v| v as _)),
            (
                "zero_init_residual",
                self.zero_init_residual.as_ref().map(|v| v as _),
            ),
            ("crop_padding", self.crop_padding.as_ref().map(|v| v as _)),
            ("hflip", self.hflip.as_ref().map(|v| v as _)),
            (
                "random_erasing",
                self.random_erasing.as_ref().map(|v| v as _),
            ),
            ("seed", self.seed.as_ref().map(|v| v as _)),
            ("train_limit", self.train_limit.as_ref().map(|v| v as _)),
            ("test_limit", self.test_limit.as_ref().map(|v| v as _)),
        ];
        for (name, v) in fields {
            if let Some(v) = v {
                f(name, json(v));
            }
        }
    }
}

/// Sets `name` in `r` from JSON. The field exists and the value has its type by construction;
/// a value JSON cannot carry (a non-finite float, which the flag parsers already refuse) is an
/// error naming the flag rather than a silently kept default.
fn set_field(r: &mut Recipe, name: &str, v: Value) -> CliResult<()> {
    let flag = name.replace('_', "-");
    let mut j = serde_json::to_value(&*r).map_err(|e| CliError(format!("--{flag}: {e}")))?;
    j[name] = v.clone();
    *r = serde_json::from_value(j)
        .map_err(|e| CliError(format!("--{flag}: cannot use the value {v}: {e}")))?;
    Ok(())
}

/// Clap value parser for the recipe's real-valued flags: a finite number (`nan`, `inf` and
/// values that overflow are refused here, naming the flag; ranges are checked by [`validate`]).
fn finite<T: std::str::FromStr + Into<f64> + Copy>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let v: T = s.trim().parse().map_err(|e: T::Err| e.to_string())?;
    if v.into().is_finite() {
        Ok(v)
    } else {
        Err(format!("must be a finite number, got {s}"))
    }
}

/// `folder:PATH` with PATH absolute (`DatasetSpec::absolute`); `None` for other datasets.
fn absolute_folder(dataset: &str) -> Option<String> {
    match dataset.parse::<DatasetSpec>() {
        Ok(spec @ DatasetSpec::Folder(_)) => Some(spec.absolute().name()),
        _ => None,
    }
}

/// The name a recipe records for `dataset`: the canonical one (`fmnist` → `fashion-mnist`),
/// a folder's path made absolute; as given when it does not parse (loading reports that).
fn canonical_dataset(dataset: &str) -> String {
    match dataset.parse::<DatasetSpec>() {
        Ok(spec) => spec.absolute().name(),
        Err(_) => dataset.to_string(),
    }
}

/// Object-safe "serialize to JSON" for the flag table.
mod erased {
    use serde::Serialize;
    use serde_json::Value;

    /// A value that serializes to JSON.
    pub trait Json {
        /// The value as JSON.
        fn json(&self) -> Value;
    }

    impl<T: Serialize> Json for T {
        fn json(&self) -> Value {
            serde_json::to_value(self).unwrap_or(Value::Null)
        }
    }
}

/// Largest `--crop-padding` (pixels): far beyond any image's size, small enough for the crop
/// offsets' signed arithmetic.
const MAX_CROP_PADDING: usize = 1 << 16;

/// Checks the recipe's values are usable; the error names the flag.
pub fn validate(r: &Recipe) -> CliResult<()> {
    let err = |flag: &str, msg: String| Err(CliError(format!("--{flag}: {msg}")));
    if r.epochs == 0 {
        return err("epochs", "must be at least 1".into());
    }
    if r.batch_size == 0 {
        return err("batch-size", "must be at least 1".into());
    }
    if !(r.lr.is_finite() && r.lr > 0.0) {
        return err("lr", format!("must be positive and finite, got {}", r.lr));
    }
    if !(r.weight_decay.is_finite() && r.weight_decay >= 0.0) {
        return err(
            "weight-decay",
            format!("must be ≥ 0, got {}", r.weight_decay),
        );
    }
    if !(0.0..=1.0).contains(&r.label_smoothing) {
        return err(
            "label-smoothing",
            format!("must be in [0, 1], got {}", r.label_smoothing),
        );
    }
    if !(r.mixup.is_finite() && r.mixup >= 0.0) {
        return err("mixup", format!("must be ≥ 0, got {}", r.mixup));
    }
    if !(0.0..=1.0).contains(&r.drop_path) {
        return err(
            "drop-path",
            format!("must be in [0, 1], got {}", r.drop_path),
        );
    }
    if r.crop_padding > MAX_CROP_PADDING {
        return err(
            "crop-padding",
            format!("must be at most {MAX_CROP_PADDING}, got {}", r.crop_padding),
        );
    }
    if !(0.0..=1.0).contains(&r.random_erasing) {
        return err(
            "random-erasing",
            format!("must be in [0, 1], got {}", r.random_erasing),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_default_recipe() {
        let a = TrainArgs {
            lr: Some(0.01),
            hflip: Some(false),
            optimizer: Some(OptimizerKind::Sgd),
            ..Default::default()
        };
        let r = a.new_recipe().unwrap();
        assert_eq!(
            (r.lr, r.hflip, r.optimizer),
            (0.01, false, OptimizerKind::Sgd)
        );
        assert_eq!(r.model, "mixer_tiny");
        assert_eq!(r.epochs, Recipe::default_for("x", "y").epochs);
    }

    /// Runs saved before `zero_init_residual` existed were initialised without it; their
    /// recipes still load, as off.
    #[test]
    fn recipes_saved_without_zero_init_residual_load_as_off() {
        let mut j =
            serde_json::to_value(Recipe::default_for("mixer_tiny", "fashion-mnist")).unwrap();
        assert_eq!(j["zero_init_residual"], serde_json::json!(true));
        j.as_object_mut().unwrap().remove("zero_init_residual");
        let r: Recipe = serde_json::from_value(j).unwrap();
        assert!(!r.zero_init_residual);
    }

    #[test]
    fn model_defaults_yield_to_their_flags() {
        use OptimizerKind::{Adamw, Muon};
        let recipe =
            |model: &str, opt: Option<OptimizerKind>, lr: Option<f64>, zero: Option<bool>| {
                let a = TrainArgs {
                    model: Some(model.into()),
                    optimizer: opt,
                    lr,
                    zero_init_residual: zero,
                    ..Default::default()
                };
                let r = a.new_recipe().unwrap();
                (r.optimizer, r.lr, r.zero_init_residual, r.epochs)
            };
        assert_eq!(
            recipe("mixer_tiny", None, None, None),
            (Muon, 2e-3, true, 4)
        );
        assert_eq!(
            recipe("mixer_s16_224", None, None, None),
            (Muon, 2e-3, true, 4)
        );
        assert_eq!(
            recipe("resmlp_tiny", None, None, None),
            (Muon, 4e-3, false, 4)
        );
        assert_eq!(
            recipe("repmlp_tiny", None, None, None),
            (Adamw, 1e-3, false, 4)
        );
        assert_eq!(
            recipe("repmlp_tiny", Some(Muon), Some(5e-4), None),
            (Muon, 5e-4, false, 4)
        );
        assert_eq!(
            recipe("mixer_tiny", Some(Adamw), None, Some(false)),
            (Adamw, 2e-3, false, 4)
        );
        assert_eq!(
            recipe("resmlp_tiny", None, None, Some(true)),
            (Muon, 4e-3, true, 4)
        );
    }

    #[test]
    fn resume_refuses_disagreeing_flags_and_accepts_agreeing_ones() {
        let saved = Recipe::default_for("mixer_tiny", "fashion-mnist");
        let same = TrainArgs {
            epochs: Some(saved.epochs),
            model: Some("mixer_tiny".into()),
            ..Default::default()
        };
        same.check_resume(&saved).unwrap();
        let other = TrainArgs {
            epochs: Some(saved.epochs + 1),
            lr: Some(0.5),
            ..Default::default()
        };
        let e = other.check_resume(&saved).unwrap_err().0;
        let want = format!("--epochs {}", saved.epochs + 1);
        assert!(e.contains(&want) && e.contains("--lr 0.5"), "{e}");
    }

    #[test]
    fn bad_values_name_their_flag() {
        let mut r = Recipe::default_for("m", "d");
        r.lr = f64::NAN;
        assert!(validate(&r).unwrap_err().0.starts_with("--lr"));
        r.lr = 1e-3;
        r.label_smoothing = 1.0; // torch's CrossEntropyLoss takes [0, 1]
        assert!(validate(&r).is_ok());
        r.label_smoothing = 1.5;
        assert!(validate(&r).unwrap_err().0.starts_with("--label-smoothing"));
        r.label_smoothing = 0.1;
        r.batch_size = 0;
        assert!(validate(&r).unwrap_err().0.starts_with("--batch-size"));
        r.batch_size = 64;
        r.crop_padding = usize::MAX;
        assert!(validate(&r).unwrap_err().0.starts_with("--crop-padding"));
    }

    /// What clap hands the recipe: `nan`, `inf` and overflowing values are refused when the
    /// flags are parsed (a JSON round trip would otherwise turn them into the default), and
    /// negative numbers reach `validate`'s range checks instead of being taken for flags.
    #[test]
    fn real_valued_flags_must_be_finite() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            args: TrainArgs,
        }
        let parse =
            |argv: &[&str]| Cli::try_parse_from(std::iter::once("t").chain(argv.iter().copied()));
        for bad in [
            ["--lr", "nan"],
            ["--lr", "inf"],
            ["--lr", "1e309"],
            ["--label-smoothing", "NaN"],
            ["--mixup", "1e39"],
            ["--drop-path", "nan"],
            ["--weight-decay", "nan"],
            ["--random-erasing", "inf"],
        ] {
            let e = parse(&bad).unwrap_err().to_string();
            assert!(e.contains(bad[0]) && e.contains("finite"), "{bad:?}: {e}");
        }
        let args = parse(&["--lr", "-1", "--mixup", "0.2"]).unwrap().args;
        let r = args.new_recipe().unwrap();
        assert_eq!((r.lr, r.mixup), (-1.0, 0.2));
        assert!(validate(&r).unwrap_err().0.starts_with("--lr"));
    }

    /// The default warm-up is 500 steps but at most a quarter of the run (so a run on the
    /// embedded subset decays); a given --warmup-steps is kept, up to all but the last step.
    #[test]
    fn the_default_warmup_fits_the_run_and_a_given_one_is_kept() {
        let r = TrainArgs::default().new_recipe().unwrap();
        assert_eq!(r.warmup_steps, None);
        // Four epochs of the full set at batch 64, and of the 5,000-image subset.
        assert_eq!(
            (r.warmup(4 * 937), r.warmup(4 * 78), r.warmup(1)),
            (500, 78, 0)
        );
        let given = TrainArgs {
            warmup_steps: Some(200),
            ..Default::default()
        }
        .new_recipe()
        .unwrap();
        assert_eq!((given.warmup(312), given.warmup(100)), (200, 99));
    }

    /// A value the recipe cannot hold is an error naming the flag, never the kept default.
    #[test]
    fn an_unusable_value_is_an_error_not_the_default() {
        let mut r = Recipe::default_for("mixer_tiny", "fashion-mnist");
        let e = set_field(&mut r, "label_smoothing", Value::Null)
            .unwrap_err()
            .0;
        assert!(e.starts_with("--label-smoothing"), "{e}");
    }
}
