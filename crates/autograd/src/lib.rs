#![doc = include_str!("../README.md")]
pub use allmlp_tensor_core as tensor_core;
