#![doc = include_str!("../README.md")]
pub use allmlp_layers as layers;
pub use allmlp_reparam as reparam;
