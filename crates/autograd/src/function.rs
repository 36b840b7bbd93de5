//! The one trait a differentiable op implements.

use allmlp_tensor_core::Tensor;

use crate::Result;

/// The backward half of a differentiable op.
///
/// An op is a forward function that computes its value with tensor-core
/// kernels and, when recording, hands [`crate::Var::from_op`] a value of a type
/// implementing `Function` that holds whatever backward needs (saved inputs,
/// statistics, shapes). `backward` is called at most once; the struct is then
/// dropped, releasing what it saved.
pub trait Function: Send + Sync {
    /// The op's name, used in errors.
    fn name(&self) -> &'static str;

    /// Gradients with respect to each input, in input order, given the
    /// gradient of the output. `None` for an input that needs no gradient
    /// (`needs[i]` is false) or that the op does not differentiate.
    fn backward(&self, grad_output: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>>;
}
