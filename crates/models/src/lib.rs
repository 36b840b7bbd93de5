#![doc = include_str!("../README.md")]

mod error;
mod model;
mod registry;
pub mod repmlp;

pub use allmlp_layers as layers;
pub use allmlp_reparam as reparam;
pub use error::{ModelError, Result};
pub use model::Model;
pub use registry::{Entry, Family, ModelOptions, create_model, entries, model_names};
pub use repmlp::{
    RepMlpBlock, RepMlpBlockConfig, RepMlpPure, RepMlpPureConfig, RepMlpResNet, RepMlpResNetConfig,
};
