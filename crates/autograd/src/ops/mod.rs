//! Differentiable ops, one file each. Each is a method on [`crate::Var`] whose
//! forward calls tensor-core kernels and whose private [`crate::Function`]
//! holds the backward.

mod arith;
mod dropout;
mod linear;
mod matmul;
mod patch;
mod reduce;
mod shape;
mod unary;

pub use linear::linear;
