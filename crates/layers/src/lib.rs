#![doc = include_str!("../README.md")]
pub use allmlp_autograd as autograd;

pub mod state_dict;
