//! The autograd error type.

use allmlp_tensor_core::TensorError;
use thiserror::Error;

/// Result alias for autograd operations.
pub type Result<T, E = AutogradError> = std::result::Result<T, E>;

/// What can go wrong while recording or differentiating a graph.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AutogradError {
    /// A tensor kernel rejected its input (shape, argument, …).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// `backward` reached a node whose saved tensors an earlier backward already released.
    #[error(
        "backward: the graph through `{op}` was already freed by an earlier backward() (a graph can be differentiated once)"
    )]
    GraphFreed {
        /// The op whose saved state is gone.
        op: &'static str,
    },
    /// `backward` was called on a non-scalar without an explicit output gradient.
    #[error(
        "backward: expected a scalar (one element) output, got shape {shape:?}; pass a gradient with backward_with"
    )]
    NotScalar {
        /// Shape of the output.
        shape: Vec<usize>,
    },
    /// `backward` was called on a value that does not depend on any parameter.
    #[error(
        "backward: the output does not require gradients (no parameter or requires_grad input reaches it)"
    )]
    NoGradient,
    /// An op's backward returned the wrong number or shape of gradients (a bug in that op).
    #[error("{op}: backward returned {got}, expected {expected}")]
    BadGradient {
        /// The op.
        op: &'static str,
        /// What was expected.
        expected: String,
        /// What came back.
        got: String,
    },
    /// An invalid argument to an autograd-level function (optimizer, gradcheck, …).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument {
        /// The function.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
}
