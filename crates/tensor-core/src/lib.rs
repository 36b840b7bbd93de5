//! # allmlp-tensor-core
//!
//! Hand-written f32 tensor operations for the all-MLP vision models: every op
//! MLP-Mixer, ResMLP and RepMLP need, forward and backward kernels side by
//! side, exact against naive references, with a GEMM tuned for AVX-512.
//!
//! ```
//! use allmlp_tensor_core::Tensor;
//! let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let b = a.transpose(0, 1)?;            // a strided view, no copy
//! let c = a.matmul(&b)?;                 // [2, 2]
//! assert_eq!(c.to_vec(), vec![14.0, 32.0, 32.0, 77.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```
//!
//! Every public function validates its input and returns
//! [`TensorError`] naming the op, what it expected and what it got.

pub mod conv;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod patch;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod shape_ops;
pub mod tensor;
pub mod threads;

pub use error::{Result, TensorError};
pub use random::Rng;
pub use tensor::Tensor;
pub use threads::{num_threads, set_num_threads};
