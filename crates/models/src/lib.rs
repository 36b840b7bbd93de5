#![doc = include_str!("../README.md")]

pub mod deploy;
mod error;
pub mod isotropic;
pub mod mixer;
mod model;
mod registry;
pub mod repmlp;
pub mod repmlpnet;
pub mod resmlp;
pub mod token_mixing;

pub use allmlp_layers as layers;
pub use allmlp_reparam as reparam;
pub use deploy::{
    Deployable, convert_checkpoint, create_deploy_model, create_deployable, deployable_names,
    to_deploy,
};
pub use error::{ModelError, Result};
pub use isotropic::{IsotropicConfig, IsotropicNet, ResidualBranches};
pub use mixer::{Mixer, MixerBlock, MixerConfig};
pub use model::Model;
pub use registry::{
    Entry, EvalTransform, Family, ModelOptions, create_model, entries, entry, model_names,
};
pub use repmlp::{
    RepMlpBlock, RepMlpBlockConfig, RepMlpPure, RepMlpPureConfig, RepMlpResNet, RepMlpResNetConfig,
};
pub use repmlpnet::{RepMlpNet, RepMlpNetConfig};
pub use resmlp::{ResBlock, ResMlp, ResMlpConfig, load_resmlp_checkpoint};
