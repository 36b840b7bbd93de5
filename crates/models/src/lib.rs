//! # allmlp-models
//!
//! MLP-Mixer, ResMLP, RepMLP and RepMLPNet with their named configurations and
//! a registry by name. Filled by the models issue.

pub use allmlp_layers as layers;
pub use allmlp_reparam as reparam;
