//! The models crate's error type.

use allmlp_layers::autograd::AutogradError;
use allmlp_layers::autograd::tensor_core::TensorError;
use allmlp_layers::state_dict::StateDictError;
use thiserror::Error;

/// Result alias for model construction, loading and running.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong when building, loading or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// No model is registered under this name.
    #[error("unknown model `{name}`; registered models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Every registered name, comma-separated.
        known: String,
    },
    /// A configuration value does not fit the architecture.
    #[error("{model}: invalid configuration: {msg}")]
    InvalidConfig {
        /// The model (registry name or architecture).
        model: String,
        /// What is wrong, with the offending values.
        msg: String,
    },
    /// An input that does not fit the model.
    #[error("{model}: expected input {expected}, got {got}")]
    BadInput {
        /// The model.
        model: String,
        /// The input the model takes.
        expected: String,
        /// What it was given.
        got: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// Loading or saving weights failed.
    #[error(transparent)]
    StateDict(#[from] StateDictError),
}

impl From<TensorError> for ModelError {
    fn from(e: TensorError) -> Self {
        ModelError::Autograd(e.into())
    }
}
