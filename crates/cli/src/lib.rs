#![doc = include_str!("../README.md")]
pub use allmlp_autograd as autograd;
pub use allmlp_layers as layers;
pub use allmlp_models as models;
pub use allmlp_reparam as reparam;
pub use allmlp_tensor_core as tensor_core;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod metrics;
pub mod plot;
pub mod train;
