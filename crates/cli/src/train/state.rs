//! `DIR/optimizer.safetensors`: everything `--resume` needs, in one atomically written file.
//!
//! It holds the model's weights (`model.*`), the optimizer's state tensors (`optim.*`) and, in
//! metadata `train_state`, the recipe, the epochs and steps done, the elapsed seconds, the
//! metrics so far, the optimizer's scalars and the thread count. Being one file, it is always
//! consistent: a kill at any moment leaves either the previous or the new epoch's state.
//! Augmentation, shuffling and dropout draw from seeds derived from (seed, epoch, step), so
//! nothing else needs saving to continue bit for bit.

use std::path::Path;

use allmlp_autograd::optim::OptimizerState;
use allmlp_layers::state_dict::StateDict;
use serde::{Deserialize, Serialize};

use super::recipe::Recipe;
use crate::commands::{CliError, CliResult};
use crate::metrics::EpochMetrics;

/// File name of the resume state inside the run directory.
pub const RESUME_FILE: &str = "optimizer.safetensors";
/// Metadata key of the JSON progress record.
const KEY: &str = "train_state";
const MODEL: &str = "model.";
const OPTIM: &str = "optim.";

/// Where a run stands after a completed epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The run's recipe.
    pub recipe: Recipe,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Wall-clock seconds of training so far (all invocations).
    pub seconds: f64,
    /// Metrics of every completed epoch.
    pub metrics: Vec<EpochMetrics>,
    /// Optimizer scalars (learning rate, step counts).
    pub optimizer_scalars: Vec<(String, f64)>,
    /// Compute threads the run used.
    pub threads: usize,
    /// The run's `--data` directory: a resume without `--data` reads the same one.
    #[serde(default)]
    pub data: Option<std::path::PathBuf>,
    /// The training split's [`crate::data::Dataset::fingerprint`]: a resume must find the same
    /// training data (absent in state files written before it existed).
    #[serde(default)]
    pub train_data: Option<String>,
}

impl Progress {
    /// An error naming `dir`'s resume file when the record does not hang together for a run of
    /// `epochs` epochs of `steps_per_epoch` steps: more epochs done than the run has, a metrics
    /// row per epoch missing, or a step count that is not `epoch × steps_per_epoch`.
    pub fn check(&self, dir: &Path, epochs: usize, steps_per_epoch: usize) -> CliResult<()> {
        let problem = if self.epoch > epochs {
            format!("{} epochs done, but the run has {epochs}", self.epoch)
        } else if self.metrics.len() != self.epoch {
            format!(
                "{} epochs done, but {} rows of metrics",
                self.epoch,
                self.metrics.len()
            )
        } else if self.step != (self.epoch as u64).saturating_mul(steps_per_epoch as u64) {
            format!(
                "{} steps taken, but {} epochs of {steps_per_epoch} steps make {}",
                self.step,
                self.epoch,
                self.epoch * steps_per_epoch
            )
        } else {
            return Ok(());
        };
        Err(CliError(format!(
            "{}: metadata `{KEY}` is inconsistent: {problem}",
            dir.join(RESUME_FILE).display()
        )))
    }
}

/// Writes `dir/optimizer.safetensors` atomically from the model's state dict, the optimizer's
/// state and `progress`.
pub fn save(
    dir: &Path,
    model: &StateDict,
    optim: &OptimizerState,
    progress: &Progress,
) -> CliResult<()> {
    let mut sd = StateDict::new();
    for (k, t) in model.iter() {
        sd.insert(format!("{MODEL}{k}"), t.clone());
    }
    for (k, t) in &optim.tensors {
        sd.insert(format!("{OPTIM}{k}"), t.clone());
    }
    let mut p = progress.clone();
    p.optimizer_scalars = optim.scalars.clone();
    let json = serde_json::to_string(&p).map_err(|e| CliError(e.to_string()))?;
    sd.set_metadata(KEY, json);
    sd.save(dir.join(RESUME_FILE))?;
    Ok(())
}

/// Reads `dir/optimizer.safetensors`: the model's state dict, the optimizer state and the
/// progress record. Errors name the file and what is missing or malformed.
pub fn load(dir: &Path) -> CliResult<(StateDict, OptimizerState, Progress)> {
    let path = dir.join(RESUME_FILE);
    if !path.is_file() {
        let hint = if dir.join("last.safetensors").is_file() {
            "; the run was stopped before its first epoch was saved in full: start it again \
             with another --out, or after deleting the directory"
        } else {
            ""
        };
        return Err(CliError(format!(
            "--resume {}: no {RESUME_FILE} there (it is written after each completed epoch){hint}",
            dir.display()
        )));
    }
    let sd = StateDict::load(&path)?;
    let json = sd.metadata_value(KEY).ok_or_else(|| {
        CliError(format!(
            "{}: metadata `{KEY}` is missing (not an allmlp resume file)",
            path.display()
        ))
    })?;
    let progress: Progress = serde_json::from_str(json).map_err(|e| {
        CliError(format!(
            "{}: metadata `{KEY}` is malformed: {e}",
            path.display()
        ))
    })?;
    let (mut model, mut optim) = (StateDict::new(), OptimizerState::default());
    for (k, t) in sd.iter() {
        if let Some(name) = k.strip_prefix(MODEL) {
            model.insert(name, t.clone());
        } else if let Some(name) = k.strip_prefix(OPTIM) {
            optim.tensors.push((name.to_string(), t.clone()));
        } else {
            return Err(CliError(format!(
                "{}: unexpected tensor `{k}` (expected `{MODEL}*` or `{OPTIM}*`)",
                path.display()
            )));
        }
    }
    optim.scalars = progress.optimizer_scalars.clone();
    Ok((model, optim, progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(epoch: usize, step: u64) -> Progress {
        Progress {
            recipe: Recipe::default_for("mixer_tiny", "fashion-mnist"),
            epoch,
            step,
            seconds: 0.0,
            metrics: Vec::new(),
            optimizer_scalars: Vec::new(),
            threads: 1,
            data: None,
            train_data: None,
        }
    }

    /// Each way a record can disagree with its run is named; a consistent one passes.
    #[test]
    fn a_record_must_fit_its_run() {
        let dir = Path::new("run");
        assert!(progress(0, 0).check(dir, 2, 10).is_ok());
        for (p, want) in [
            (progress(3, 30), "3 epochs done, but the run has 2"),
            (progress(1, 10), "1 epochs done, but 0 rows of metrics"),
            (
                progress(0, 5),
                "5 steps taken, but 0 epochs of 10 steps make 0",
            ),
        ] {
            let e = p.check(dir, 2, 10).unwrap_err().0;
            assert!(
                e.contains("optimizer.safetensors") && e.contains(want),
                "{want}: {e}"
            );
        }
    }
}
