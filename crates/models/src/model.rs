//! The [`Model`] trait: a [`Module`] that knows its name, configuration and input.

use allmlp_layers::Module;
use serde_json::Value;

/// A complete image classifier built by the registry.
pub trait Model: Module {
    /// Registry name (e.g. `mixer_b16_224`).
    fn name(&self) -> &str;

    /// The full configuration as JSON (written into checkpoint metadata, so a
    /// checkpoint describes itself).
    fn config(&self) -> Value;

    /// Input `[C, H, W]` the model takes.
    fn input_shape(&self) -> [usize; 3];

    /// Number of classes (the logits' width).
    fn num_classes(&self) -> usize;

    /// True for a re-parameterized (deploy) structure.
    fn is_deploy(&self) -> bool {
        false
    }
}
