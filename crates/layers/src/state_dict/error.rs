//! [`StateDictError`]: everything that can go wrong reading, writing, remapping or matching a
//! state dict.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::report::LoadReport;

/// Result alias for state-dict operations.
pub type Result<T, E = StateDictError> = std::result::Result<T, E>;

/// What went wrong with a state dict. Each variant names the file (if any), the tensor key,
/// and what was expected next to what was found.
#[derive(Debug, Error)]
pub enum StateDictError {
    /// Opening, mapping, writing, syncing or renaming a file failed.
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        /// The file (or its temporary sibling) that was being accessed.
        path: PathBuf,
        /// What was being done, e.g. `open for reading` or `rename the temporary file into place`.
        action: String,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (empty, truncated, bad header length, invalid
    /// JSON, offsets outside the file, sizes that disagree with dtype and shape, …).
    #[error("{}: not a valid safetensors file: {problem}", .path.display())]
    Corrupt {
        /// The file (`<bytes>` for an in-memory buffer).
        path: PathBuf,
        /// What is wrong, with the offending values.
        problem: String,
    },
    /// A tensor is stored with a dtype that has no conversion to f32 here.
    #[error(
        "{}: tensor `{key}` has dtype {dtype}, which is not loaded \
         (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)",
        .path.display()
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the file.
        key: String,
        /// The stored dtype, as safetensors names it.
        dtype: String,
    },
    /// The state dict does not match the parameters a model expects (strict loading). The
    /// report lists every missing key, unexpected key and shape mismatch.
    #[error("{}state dict does not match the model's parameters: {report}", fmt_prefix(.path))]
    Incompatible {
        /// The file the state dict came from, if it came from one.
        path: Option<PathBuf>,
        /// All the problems found.
        report: LoadReport,
    },
    /// A remap rule's reshape cannot apply to a tensor (the element counts differ, or the
    /// inferred dimension does not divide).
    #[error("remap: tensor `{key}`: cannot reshape {found:?} to {target}: {reason}")]
    Reshape {
        /// The tensor's name (after the renames that precede the reshape rule).
        key: String,
        /// The target shape as written in the rule (`-1` is inferred).
        target: String,
        /// The tensor's shape.
        found: Vec<usize>,
        /// Why it cannot be reshaped.
        reason: String,
    },
    /// Two tensors end up with the same name (after remapping, or inserted twice when the
    /// caller asked for uniqueness).
    #[error("duplicate key `{key}`: produced from both `{first}` and `{second}`")]
    DuplicateKey {
        /// The name both tensors would take.
        key: String,
        /// The first source key.
        first: String,
        /// The second source key.
        second: String,
    },
    /// The expected-parameter list given to matching names a parameter twice.
    #[error("the model's expected parameter list names `{key}` more than once")]
    DuplicateExpected {
        /// The repeated name.
        key: String,
    },
    /// The state dict cannot be written as safetensors (a tensor named `__metadata__`, or
    /// sizes that overflow).
    #[error("{}: cannot save: {problem}", .path.display())]
    CannotSave {
        /// The destination (`<bytes>` for [`StateDict::to_bytes`](super::StateDict::to_bytes)).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A remap rule's regular expression does not compile.
    #[error("remap: invalid regular expression `{pattern}`: {source}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// The regex crate's error.
        source: Box<regex::Error>,
    },
    /// A metadata entry cannot be read or written as what was asked (e.g. the `config` entry is
    /// not valid JSON for the requested type).
    #[error("{}metadata `{key}`: {problem}", fmt_prefix(.path))]
    Metadata {
        /// The file the state dict came from, if it came from one.
        path: Option<PathBuf>,
        /// The metadata key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor could not be built or reshaped (shape arithmetic overflow and the like).
    #[error("tensor `{key}`: {source}")]
    Tensor {
        /// The tensor's name.
        key: String,
        /// The tensor-core error.
        source: allmlp_tensor_core::TensorError,
    },
}

fn fmt_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl StateDictError {
    /// Shorthand for [`StateDictError::Io`].
    pub(crate) fn io(path: &Path, action: impl Into<String>, source: std::io::Error) -> Self {
        StateDictError::Io {
            path: path.to_path_buf(),
            action: action.into(),
            source,
        }
    }

    /// Shorthand for [`StateDictError::Corrupt`].
    pub(crate) fn corrupt(path: &Path, problem: impl Into<String>) -> Self {
        StateDictError::Corrupt {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}
