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
        return Err(CliError(format!(
            "--resume {}: no {RESUME_FILE} there (it is written after each completed epoch)",
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
