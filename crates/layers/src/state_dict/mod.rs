//! State dicts: named f32 tensors with PyTorch's dotted names, saved and loaded as safetensors.
//!
//! A [`StateDict`] is an ordered map from names such as `blocks.3.mlp_tokens.fc1.weight`,
//! `fc3_bn.running_var` or `bn.num_batches_tracked` to [`Tensor`]s, plus string
//! [`metadata`](StateDict::metadata) stored in the file's header (by convention `model`, the
//! model's name, and `config`, its configuration as JSON, so a checkpoint describes itself).
//!
//! - [`StateDict::load`] memory-maps a file and converts F32/F16/BF16/F64 and integer tensors
//!   (PyTorch's I64 `num_batches_tracked`) to f32. Broken files are errors naming the file
//!   and the problem, never panics.
//! - [`StateDict::save`] writes atomically (temporary sibling file, fsync, rename).
//! - [`StateDict::match_expected`] / [`StateDict::load_matching`] check the tensors against a
//!   model's `(name, shape)` list: strictly by default, with one error listing every missing
//!   key, unexpected key and shape mismatch; or non-strictly, with a [`LoadReport`].
//! - [`Remap`] renames (prefix, regex with capture groups), drops and reshapes keys at load
//!   time; [`resmlp_authors_to_timm`] maps the ResMLP authors' checkpoints to timm's names.
//!
//! ```
//! use allmlp_layers::state_dict::{LoadOptions, StateDict, Strictness};
//! use allmlp_layers::autograd::tensor_core::Tensor;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("tiny.safetensors");
//!
//! let mut sd = StateDict::new();
//! sd.insert("fc.weight", Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?);
//! sd.insert("fc.bias", Tensor::zeros(&[2])?);
//! sd.set_model("tiny_mlp");
//! sd.set_config(&serde_json::json!({ "in": 3, "out": 2 }))?;
//! sd.save(&path)?;
//!
//! let back = StateDict::load(&path)?;
//! assert_eq!(back, sd);
//! assert_eq!(back.model(), Some("tiny_mlp"));
//! let cfg: serde_json::Value = back.config()?.expect("a config was saved");
//! assert_eq!(cfg["out"], 2);
//!
//! // Strict matching against what the model expects lists every problem at once.
//! let expected = [("fc.weight", vec![3, 2]), ("fc.bias", vec![2]), ("fc.scale", vec![2])];
//! let err = StateDict::load_matching(&path, expected.clone(), &LoadOptions::default())
//!     .unwrap_err()
//!     .to_string();
//! assert!(err.contains("missing key `fc.scale`"));
//! assert!(err.contains("shape mismatch for `fc.weight`: expected [3, 2], found [2, 3]"));
//!
//! // Non-strict matching loads what fits and reports the rest.
//! let options = LoadOptions { strictness: Strictness::NonStrict, ..Default::default() };
//! let loaded = StateDict::load_matching(&path, expected, &options)?;
//! assert_eq!(loaded.state_dict.keys().collect::<Vec<_>>(), ["fc.bias"]);
//! assert_eq!(loaded.report.missing.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dtype;
mod error;
mod header_keys;
mod io;
mod remap;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use allmlp_tensor_core::Tensor;
use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{Result, StateDictError};
pub use io::{LoadOptions, write_atomic};
pub use remap::{Remap, RemapRule, resmlp_authors_to_timm};
pub use report::{LoadReport, Loaded, ShapeMismatch, Strictness};

/// Metadata key conventionally holding the model's name (e.g. `resmlp_12_224`).
pub const MODEL_KEY: &str = "model";
/// Metadata key conventionally holding the model's configuration as JSON.
pub const CONFIG_KEY: &str = "config";

/// An ordered map from PyTorch-style parameter names to f32 tensors, with string metadata.
///
/// Order is insertion order (for a loaded file: the order of the data in the file). Equality
/// compares tensors (names, shapes, values; not order) and metadata.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    tensors: IndexMap<String, Tensor>,
    /// String key/value pairs stored in the safetensors header's `__metadata__`.
    pub metadata: BTreeMap<String, String>,
    /// The file this state dict was loaded from, for error messages.
    source: Option<PathBuf>,
}

impl PartialEq for StateDict {
    fn eq(&self, other: &StateDict) -> bool {
        self.tensors == other.tensors && self.metadata == other.metadata
    }
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> StateDict {
        StateDict::default()
    }

    /// Adds or replaces the tensor `name`, returning the one it replaces. A new name goes at
    /// the end; a replaced one keeps its place.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.tensors.insert(name.into(), tensor)
    }

    /// The tensor `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Removes the tensor `name`, keeping the order of the others.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.shift_remove(name)
    }

    /// True if `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True if there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// `(name, tensor)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// `(name, shape)` pairs, in order: the form [`StateDict::match_expected`] takes, so a
    /// model's freshly initialised state dict describes what it expects.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.iter()
            .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
            .collect()
    }

    /// Total number of elements over all tensors.
    pub fn num_elements(&self) -> usize {
        self.tensors.values().map(Tensor::numel).sum()
    }

    /// The file this state dict was loaded from, if it was.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Sets a metadata entry, returning the previous value.
    pub fn set_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Option<String> {
        self.metadata.insert(key.into(), value.into())
    }

    /// The metadata entry `key`, if present.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Records the model's name under [`MODEL_KEY`].
    pub fn set_model(&mut self, name: impl Into<String>) {
        self.metadata.insert(MODEL_KEY.to_string(), name.into());
    }

    /// The model's name recorded under [`MODEL_KEY`], if any.
    pub fn model(&self) -> Option<&str> {
        self.metadata_value(MODEL_KEY)
    }

    /// Records `config` as JSON under [`CONFIG_KEY`].
    pub fn set_config<T: Serialize + ?Sized>(&mut self, config: &T) -> Result<()> {
        let json = serde_json::to_string(config).map_err(|e| StateDictError::Metadata {
            path: self.source.clone(),
            key: CONFIG_KEY.to_string(),
            problem: format!("cannot serialize the config to JSON: {e}"),
        })?;
        self.metadata.insert(CONFIG_KEY.to_string(), json);
        Ok(())
    }

    /// The config recorded under [`CONFIG_KEY`], parsed from JSON as a `T` (use
    /// `serde_json::Value` for an untyped view); `Ok(None)` if there is none, an error naming
    /// the key if it does not parse as a `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let Some(json) = self.metadata.get(CONFIG_KEY) else {
            return Ok(None);
        };
        serde_json::from_str(json)
            .map(Some)
            .map_err(|e| StateDictError::Metadata {
                path: self.source.clone(),
                key: CONFIG_KEY.to_string(),
                problem: format!("not valid JSON for {}: {e}", std::any::type_name::<T>()),
            })
    }
}

impl FromIterator<(String, Tensor)> for StateDict {
    /// Collects `(name, tensor)` pairs; a repeated name keeps its first place and last tensor.
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> StateDict {
        StateDict {
            tensors: iter.into_iter().collect(),
            ..StateDict::default()
        }
    }
}

impl IntoIterator for StateDict {
    type Item = (String, Tensor);
    type IntoIter = indexmap::map::IntoIter<String, Tensor>;

    /// The `(name, tensor)` pairs, in order.
    fn into_iter(self) -> Self::IntoIter {
        self.tensors.into_iter()
    }
}
