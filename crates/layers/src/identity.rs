//! `Identity`: returns its input unchanged, PyTorch's `nn.Identity` (the
//! placeholder timm uses for a disabled norm, drop-path or head). No
//! parameters; any input shape; records no op on the tape.
//!
//! ```
//! use allmlp_layers::{Ctx, Identity, Module};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let x = Var::constant(Tensor::ones(&[2, 3])?);
//! assert_eq!(Identity.forward(&x, &Ctx::eval())?.value(), x.value());
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor};

/// The identity map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity;

impl Module for Identity {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        Ok(x.clone())
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn identity_passes_values_and_gradients_through() {
        let x = Var::parameter(Tensor::randn(&[2, 3, 4], 0.0, 1.0, 1).unwrap());
        let r = Tensor::randn(&[2, 3, 4], 0.0, 1.0, 2).unwrap();
        for ctx in [Ctx::eval(), Ctx::train(3)] {
            x.zero_grad();
            let y = Identity.forward(&x, &ctx).unwrap();
            assert_eq!(y.value(), x.value());
            y.mul(&Var::constant(r.clone()))
                .unwrap()
                .sum(&[], false)
                .unwrap()
                .backward()
                .unwrap();
            assert_eq!(x.grad().unwrap(), r);
        }
    }
}
