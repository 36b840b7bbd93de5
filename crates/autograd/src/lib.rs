#![doc = include_str!("../README.md")]

mod error;
mod function;
mod grad_mode;
pub mod gradcheck;
mod leaf_grads;
pub mod ops;
pub mod optim;
mod var;

pub use allmlp_tensor_core as tensor_core;
pub use error::{AutogradError, Result};
pub use function::Function;
pub use grad_mode::{NoGradGuard, is_grad_enabled, no_grad};
pub use leaf_grads::LeafGrads;
pub use var::Var;
