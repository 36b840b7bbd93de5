//! The error type every fallible tensor-core operation returns.

use thiserror::Error;

/// Result alias used throughout tensor-core.
pub type Result<T, E = TensorError> = std::result::Result<T, E>;

/// Everything that can go wrong when a tensor operation is given bad input.
///
/// Each variant names the operation (`op`) so that a message read far from its
/// cause (a training log, a CLI error) still says where it came from, and
/// states what was expected next to what was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// Two shapes that must agree do not.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        /// The operation that checked the shapes.
        op: &'static str,
        /// What the operation needed, in words or as a shape.
        expected: String,
        /// What it was given.
        got: String,
    },
    /// An axis index is out of range for the tensor's rank.
    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank}")]
    AxisOutOfRange {
        /// The operation.
        op: &'static str,
        /// The axis requested.
        axis: usize,
        /// The tensor's number of dimensions.
        rank: usize,
    },
    /// A scalar argument (a size, a stride, a count, an index) is invalid.
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the offending value.
        msg: String,
    },
    /// A buffer is too short for the shape and strides it is described with.
    #[error("{op}: buffer of length {len} is too short: the layout needs {needed} elements")]
    BufferTooShort {
        /// The operation.
        op: &'static str,
        /// Elements the described layout reaches.
        needed: usize,
        /// Elements actually provided.
        len: usize,
    },
    /// A size computation overflowed `usize`.
    #[error("{op}: size overflow computing {what}")]
    Overflow {
        /// The operation.
        op: &'static str,
        /// What was being computed.
        what: String,
    },
    /// The allocator refused a buffer (more memory than the machine can give).
    #[error("{op}: cannot allocate {what}: {bytes} bytes ({gib:.1} GiB) is more than this machine can give", gib = *bytes as f64 / (1u64 << 30) as f64)]
    OutOfMemory {
        /// The operation.
        op: &'static str,
        /// What the buffer was for, with its shape.
        what: String,
        /// The size asked for.
        bytes: usize,
    },
}

impl TensorError {
    /// Shorthand for [`TensorError::ShapeMismatch`].
    pub fn shape(op: &'static str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        TensorError::ShapeMismatch {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`TensorError::InvalidArgument`].
    pub fn arg(op: &'static str, msg: impl Into<String>) -> Self {
        TensorError::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}

/// Formats a shape the way PyTorch prints one: `[2, 3, 4]`.
pub fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// An empty `Vec` with room for the `n` values of `shape`, or [`TensorError::OutOfMemory`]
/// naming `op` when the allocator refuses it, where `Vec::with_capacity` would abort the
/// process. (Memory the system promises but cannot back later is beyond this check.)
pub fn try_vec<T>(op: &'static str, shape: &[usize], n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| TensorError::OutOfMemory {
            op,
            what: format!("a tensor of shape {}", fmt_shape(shape)),
            bytes: n.saturating_mul(std::mem::size_of::<T>()),
        })?;
    Ok(v)
}

/// Product of the dimensions, or an [`TensorError::Overflow`] naming `op` when it overflows or
/// when as many f32 values would not fit in memory's address range (`isize::MAX` bytes, Rust's
/// limit for one allocation, which would otherwise panic with "capacity overflow").
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f32>())
        .ok_or_else(|| TensorError::Overflow {
            op,
            what: format!("the element count of shape {} (as f32)", fmt_shape(shape)),
        })
}
