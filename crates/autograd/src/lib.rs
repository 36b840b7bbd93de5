//! # allmlp-autograd
//!
//! Reverse-mode automatic differentiation over `allmlp-tensor-core`, plus the
//! optimizers and learning-rate schedules used to train the all-MLP models.
//! The crate is filled by the autograd issue; today it re-exports the tensor
//! core it is built on so the layering is in place.

pub use allmlp_tensor_core as tensor_core;
