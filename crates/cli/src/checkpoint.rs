//! Self-describing trained checkpoints: a model's weights (safetensors, PyTorch names) plus the
//! metadata `eval`, `predict`, `viz`, `infer` and `reparam` need to use them without flags.
//!
//! Metadata keys (all strings in the safetensors header; JSON where noted):
//!
//! | key | value |
//! |---|---|
//! | `model` | registry name, e.g. `mixer_tiny` |
//! | `config` | the model's configuration (JSON, [`Model::config`]) |
//! | `dataset` | what it was trained on, e.g. `fashion-mnist` |
//! | `normalization` | `{"mean": [...], "std": [...]}` (JSON, 0..1 pixel scale) |
//! | `classes` | class names by label (JSON array) |
//! | `epoch` | epochs completed |
//! | `metrics` | that epoch's metrics (JSON object: `train_loss`, `test_acc`, …) |
//!
//! ```
//! use allmlp::checkpoint::{TrainedMeta, load_model, trained_state_dict};
//! use allmlp::data::Normalization;
//! use allmlp::models::{ModelOptions, create_model};
//! let net = create_model("mixer_tiny", &ModelOptions::default())?;
//! let meta = TrainedMeta {
//!     dataset: "fashion-mnist".into(),
//!     normalization: Normalization::fashion_mnist(),
//!     classes: (0..10).map(|i| format!("class {i}")).collect(),
//!     epoch: 1,
//!     metrics: serde_json::json!({"test_acc": 0.5}),
//! };
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("last.safetensors");
//! trained_state_dict(net.as_ref(), &meta)?.save(&path)?;
//! let loaded = load_model(&path, None, &Default::default())?;
//! assert_eq!(loaded.name, "mixer_tiny");
//! assert_eq!(loaded.meta.unwrap(), meta);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use allmlp_layers::checkpoint::{load_state_dict, state_dict};
use allmlp_layers::state_dict::{StateDict, Strictness, resmlp_authors_to_timm};
use allmlp_models::{Family, Model, ModelOptions, create_deploy_model, create_model};
use serde_json::{Value, json};

use crate::commands::{
    CliError, CliResult, ModelArgs, check_registered, options_from_config, truncate_lines,
};
use crate::data::Normalization;

/// Metadata key: the dataset the weights were trained on.
pub const DATASET_KEY: &str = "dataset";
/// Metadata key: the input normalisation (JSON `{"mean": [...], "std": [...]}`).
pub const NORMALIZATION_KEY: &str = "normalization";
/// Metadata key: the class names (JSON array).
pub const CLASSES_KEY: &str = "classes";
/// Metadata key: the number of epochs completed.
pub const EPOCH_KEY: &str = "epoch";
/// Metadata key: the metrics of that epoch (JSON object).
pub const METRICS_KEY: &str = "metrics";

/// What a trained checkpoint records besides the model's name and configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainedMeta {
    /// Dataset name, e.g. `fashion-mnist`.
    pub dataset: String,
    /// The normalisation the model's inputs must get.
    pub normalization: Normalization,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Epochs completed.
    pub epoch: usize,
    /// Metrics of that epoch.
    pub metrics: Value,
}

impl TrainedMeta {
    /// Writes the entries into `sd`'s metadata.
    pub fn write(&self, sd: &mut StateDict) {
        sd.set_metadata(DATASET_KEY, self.dataset.clone());
        sd.set_metadata(
            NORMALIZATION_KEY,
            json!({"mean": self.normalization.mean, "std": self.normalization.std}).to_string(),
        );
        sd.set_metadata(CLASSES_KEY, json!(self.classes).to_string());
        sd.set_metadata(EPOCH_KEY, self.epoch.to_string());
        sd.set_metadata(METRICS_KEY, self.metrics.to_string());
    }

    /// Reads the entries from `sd`'s metadata: `Ok(None)` when it has no `dataset` entry (a
    /// plain state dict, e.g. converted from PyTorch), an error naming the file and key when an
    /// entry is missing or malformed.
    pub fn read(sd: &StateDict, file: &Path) -> CliResult<Option<TrainedMeta>> {
        let Some(dataset) = sd.metadata_value(DATASET_KEY) else {
            return Ok(None);
        };
        let bad = |key: &str, what: &str| {
            CliError(format!("{}: metadata `{key}` {what}", file.display()))
        };
        let get = |key: &str| sd.metadata_value(key).ok_or_else(|| bad(key, "is missing"));
        let json = |key: &str| -> CliResult<Value> {
            serde_json::from_str(get(key)?).map_err(|e| bad(key, &format!("is not JSON: {e}")))
        };
        let floats = |v: &Value, field: &str| -> CliResult<Vec<f32>> {
            v.get(field)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect())
                .ok_or_else(|| {
                    bad(
                        NORMALIZATION_KEY,
                        &format!("needs `{field}`: an array of numbers"),
                    )
                })
        };
        let norm = json(NORMALIZATION_KEY)?;
        let normalization = Normalization {
            mean: floats(&norm, "mean")?,
            std: floats(&norm, "std")?,
        };
        if normalization.mean.len() != normalization.std.len()
            || !normalization.std.iter().all(|s| *s > 0.0 && s.is_finite())
        {
            return Err(bad(
                NORMALIZATION_KEY,
                "needs as many means as stds, each std > 0",
            ));
        }
        let classes = json(CLASSES_KEY)?
            .as_array()
            .and_then(|a| a.iter().map(|c| c.as_str().map(str::to_string)).collect())
            .ok_or_else(|| bad(CLASSES_KEY, "is not an array of strings"))?;
        let epoch = get(EPOCH_KEY)?
            .parse()
            .map_err(|e| bad(EPOCH_KEY, &format!("is not a count: {e}")))?;
        Ok(Some(TrainedMeta {
            dataset: dataset.to_string(),
            normalization,
            classes,
            epoch,
            metrics: json(METRICS_KEY)?,
        }))
    }
}

/// `net`'s state dict with `model`, `config` and `meta` metadata, ready to save.
pub fn trained_state_dict(net: &dyn Model, meta: &TrainedMeta) -> CliResult<StateDict> {
    let mut sd = state_dict(net);
    sd.set_model(net.name());
    sd.set_config(&net.config())?;
    meta.write(&mut sd);
    Ok(sd)
}

/// A model built from a checkpoint and loaded with its weights.
pub struct LoadedModel {
    /// Registry name.
    pub name: String,
    /// The model, weights loaded (a deploy structure for a deploy checkpoint).
    pub net: Box<dyn Model>,
    /// The training metadata, when the checkpoint has it.
    pub meta: Option<TrainedMeta>,
}

/// The registered model a checkpoint is for: `model` (a `--model` flag) when given, else its
/// `model` metadata; an error names the file when there is neither, or the name is unknown.
pub fn model_name(sd: &StateDict, model: Option<&str>, file: &Path) -> CliResult<String> {
    let name = match (model, sd.model()) {
        (Some(m), _) => m.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => {
            return Err(CliError(format!(
                "{}: no `model` metadata in the checkpoint; pass --model NAME",
                file.display()
            )));
        }
    };
    check_registered(&name)?;
    Ok(name)
}

/// True when a checkpoint's metadata says it holds a deploy (re-parameterized) structure.
pub fn is_deploy(sd: &StateDict, config: Option<&Value>) -> bool {
    config
        .and_then(|c| c.get("deploy"))
        .and_then(Value::as_bool)
        == Some(true)
        || sd.metadata_value("deploy") == Some("true")
}

/// An error naming `file` and the first tensor holding a NaN or infinite value, if any: such
/// weights give NaN logits, which would read as "every image is class 0".
pub fn check_finite(sd: &StateDict, file: &Path) -> CliResult<()> {
    for (key, t) in sd.iter() {
        if let Some((i, v)) = t.first_non_finite() {
            return Err(CliError(format!(
                "{}: tensor `{key}` holds {v} (at flat index {i} of {}); the weights are not \
                 usable",
                file.display(),
                t.numel()
            )));
        }
    }
    Ok(())
}

/// An error when `output` is the same file as one of `inputs` (`(flag, path)` pairs): writing
/// it would replace that input. Paths that do not exist yet never clash.
pub fn check_output_differs(output: &Path, inputs: &[(&str, &Path)]) -> CliResult<()> {
    let Ok(out) = std::fs::canonicalize(output) else {
        return Ok(());
    };
    for (flag, input) in inputs {
        if std::fs::canonicalize(input).is_ok_and(|p| p == out) {
            return Err(CliError(format!(
                "--output {} is the {flag} file; writing it would replace that file (choose \
                 another output path)",
                output.display()
            )));
        }
    }
    Ok(())
}

fn family(name: &str) -> Option<Family> {
    allmlp_models::entry(name).ok().map(|e| e.family)
}

/// Whether `sd` holds every parameter and buffer name of `net`.
fn has_all_keys(net: &dyn Model, sd: &StateDict) -> bool {
    state_dict(net).keys().all(|k| sd.contains_key(k))
}

/// `name`'s training structure, or its deploy structure when `sd` lacks keys of the former
/// but has every key of the latter: a RepMLP/RepMLPNet deploy checkpoint without metadata
/// (e.g. one the RepMLP authors' code converted).
fn training_or_deploy(
    name: &str,
    opts: &ModelOptions,
    sd: &StateDict,
) -> CliResult<Box<dyn Model>> {
    let train = create_model(name, opts)?;
    if !matches!(family(name), Some(Family::RepMlp | Family::RepMlpNet))
        || has_all_keys(&*train, sd)
    {
        return Ok(train);
    }
    Ok(match create_deploy_model(name, opts) {
        Ok(deploy) if has_all_keys(&*deploy, sd) => deploy,
        _ => train,
    })
}

/// Loads `weights`: the model is `model` or the checkpoint's `model` metadata; its sizes come
/// from the checkpoint's `config` metadata (when it is a checkpoint of that model) unless
/// `args` overrides them; a deploy checkpoint builds the deploy structure. ResMLP weights may
/// use the authors' (deit) names, which are renamed to timm's. The weights must match
/// strictly, and hold no NaN or infinity; `classes` metadata must name every output and
/// `normalization` metadata every input channel. Errors name the file and what disagrees.
pub fn load_model(weights: &Path, model: Option<&str>, args: &ModelArgs) -> CliResult<LoadedModel> {
    let sd = StateDict::load(weights)?;
    let meta_model = sd.model().map(str::to_string);
    let name = model_name(&sd, model, weights)?;
    let sd = if family(&name) == Some(Family::ResMlp) {
        resmlp_authors_to_timm().apply(sd)?
    } else {
        sd
    };
    // The checkpoint's config describes its sizes only if it is a checkpoint of this model.
    let config: Option<Value> = if meta_model.as_deref() == Some(name.as_str()) {
        sd.config()?
    } else {
        None
    };
    let meta = TrainedMeta::read(&sd, weights)?;
    let opts = args.apply(
        options_from_config(config.as_ref())
            .map_err(|e| CliError(format!("{}: {e}", weights.display())))?,
    );
    let net = if is_deploy(&sd, config.as_ref()) {
        create_deploy_model(&name, &opts)?
    } else {
        training_or_deploy(&name, &opts, &sd)?
    };
    if let Some(m) = &meta {
        let outputs = net.num_classes();
        if m.classes.len() != outputs {
            return Err(CliError(format!(
                "{}: metadata `{CLASSES_KEY}` names {} classes, but {name} has {outputs} outputs",
                weights.display(),
                m.classes.len()
            )));
        }
        let channels = net.input_shape()[0];
        if m.normalization.mean.len() != channels {
            return Err(CliError(format!(
                "{}: `normalization` metadata has {} means and stds, but {name} takes {channels} \
                 input channel(s)",
                weights.display(),
                m.normalization.mean.len()
            )));
        }
    }
    check_finite(&sd, weights)?;
    load_state_dict(&*net, sd, Strictness::Strict).map_err(|e| {
        // `e` names the file (the state dict was loaded from it); the hint follows the
        // shortened list, so it is shown however many keys disagree.
        CliError(format!(
            "{}\n  (the weights are not a checkpoint of {name} with these sizes)",
            truncate_lines(&e.to_string(), 20)
        ))
    })?;
    Ok(LoadedModel { name, net, meta })
}
