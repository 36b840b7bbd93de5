#![doc = include_str!("../README.md")]
pub use allmlp_layers as layers;
