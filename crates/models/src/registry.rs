//! Models by name, like timm's `create_model`.
//!
//! Each registered name maps to a function that fills an architecture's
//! configuration; model code never branches on a model's name.

use crate::error::{ModelError, Result};
use crate::model::Model;

/// Overrides applied on top of a named configuration (`None`: keep the default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelOptions {
    /// Square input side.
    pub img_size: Option<usize>,
    /// Input channels.
    pub in_chans: Option<usize>,
    /// Output classes.
    pub num_classes: Option<usize>,
    /// Patch side (Mixer/ResMLP).
    pub patch_size: Option<usize>,
    /// Use the tanh approximation of GELU (the official JAX Mixer) instead of exact erf.
    pub gelu_tanh: bool,
    /// Dropout probability.
    pub drop_rate: f32,
    /// Stochastic-depth rate, the same in every block (as timm's Mixer and ResMLP).
    pub drop_path_rate: f32,
    /// Start every residual branch at zero, each block as the identity (Mixer and ResMLP:
    /// [`crate::isotropic::IsotropicNet::zero_init_residual`]; torchvision's option of the
    /// same name). Off by default: timm's initialisation.
    pub zero_init_residual: bool,
    /// Seed of the parameter initialisation.
    pub seed: u64,
}

/// Which family a registered model belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// MLP-Mixer.
    Mixer,
    /// ResMLP.
    ResMlp,
    /// RepMLP (paper v1): ResNet hybrids and pure-MLP nets.
    RepMlp,
    /// RepMLPNet.
    RepMlpNet,
}

/// One registry entry.
#[derive(Clone, Copy)]
pub struct Entry {
    /// The name users pass.
    pub name: &'static str,
    /// The family.
    pub family: Family,
    /// One line for `allmlp models`.
    pub description: &'static str,
    /// Builds the training-time model.
    pub build: fn(&ModelOptions) -> Result<Box<dyn Model>>,
}

/// Every registered model, in listing order.
pub fn entries() -> Vec<Entry> {
    let mut v: Vec<Entry> = Vec::new();
    // Families register here: `v.extend(crate::mixer::entries());` …
    v.extend(crate::mixer::entries());
    v.extend(crate::resmlp::entries());
    v.extend(crate::repmlpnet::entries());
    v.extend(crate::repmlp::entries());
    v.sort_by_key(|e| e.name);
    v
}

/// Every registered name.
pub fn model_names() -> Vec<&'static str> {
    entries().iter().map(|e| e.name).collect()
}

/// Builds the model registered as `name` with `opts` applied.
pub fn create_model(name: &str, opts: &ModelOptions) -> Result<Box<dyn Model>> {
    let all = entries();
    match all.iter().find(|e| e.name == name) {
        Some(e) => (e.build)(opts),
        None => Err(ModelError::UnknownModel {
            name: name.to_string(),
            known: all.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_errors_listing_the_registry() {
        let e = create_model("mixer_zz", &ModelOptions::default())
            .err()
            .expect("unknown");
        assert!(e.to_string().starts_with("unknown model `mixer_zz`"), "{e}");
    }
}
