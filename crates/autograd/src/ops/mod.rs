//! Differentiable ops, one file each. Each is a method on [`crate::Var`] whose
//! forward calls tensor-core kernels and whose private [`crate::Function`]
//! holds the backward.

mod arith;
mod dropout;
mod left_linear;
mod linear;
mod matmul;
mod mlp;
mod patch;
mod reduce;
mod scale_shift;
mod shape;
mod unary;

pub use left_linear::left_linear;
pub use linear::{Activation, linear, linear_act, linear_packed};
pub use mlp::{Dense, left_mlp, mlp};
pub use scale_shift::scale_shift;
mod conv;
mod pool;

pub use conv::conv2d;
pub use pool::{PoolParams, adaptive_avg_pool2d, avg_pool2d, max_pool2d};
mod loss;
mod norm;

pub use allmlp_tensor_core::conv::Conv2dParams;
pub use allmlp_tensor_core::loss::Targets;
pub use loss::cross_entropy;
pub use norm::{RunningStats, batch_norm, layer_norm};
