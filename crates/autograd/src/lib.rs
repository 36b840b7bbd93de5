#![doc = include_str!("../README.md")]

mod error;
mod function;
pub mod gradcheck;
mod grad_mode;
pub mod ops;
mod var;

pub use allmlp_tensor_core as tensor_core;
pub use error::{AutogradError, Result};
pub use function::Function;
pub use grad_mode::{NoGradGuard, is_grad_enabled, no_grad};
pub use var::Var;
