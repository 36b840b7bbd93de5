#![doc = include_str!("../README.md")]

pub mod allocator;
pub mod channel_scale;
pub mod conv;
pub mod elementwise;
pub mod error;
mod fast_math;
mod fill;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod lanes;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod patch;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod shape_ops;
mod strided_copy;
pub mod tensor;
pub mod threads;
mod vectorized;

pub use error::{Result, TensorError};
pub use random::Rng;
pub use tensor::Tensor;
pub use threads::{num_threads, set_num_threads};
