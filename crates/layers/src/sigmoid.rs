//! `Sigmoid`: the logistic function `1/(1 + e^(−x))` elementwise, PyTorch's
//! `nn.Sigmoid`. No parameters; any input shape.
//!
//! ```
//! use allmlp_layers::{Ctx, Module, Sigmoid};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let x = Var::constant(Tensor::from_vec(vec![0.0, 2.0], &[2])?);
//! let y = Sigmoid.forward(&x, &Ctx::eval())?.value().to_vec();
//! assert!(y[0] == 0.5 && (y[1] - 0.880_797).abs() < 1e-6);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor};

/// The logistic sigmoid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sigmoid;

impl Module for Sigmoid {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        Ok(x.sigmoid())
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn sigmoid_layer_values_and_gradcheck() {
        let x = Tensor::randn(&[4, 6], 0.0, 3.0, 5).unwrap();
        let y = Sigmoid
            .forward(&Var::constant(x.clone()), &Ctx::eval())
            .unwrap();
        for (a, b) in y.value().to_vec().iter().zip(x.to_vec()) {
            // f32 rounding of a value in (0, 1).
            assert!((*a as f64 - 1.0 / (1.0 + (-b as f64).exp())).abs() < 1e-6);
        }
        gradcheck(
            "Sigmoid",
            &[x],
            |v| Sigmoid.forward(&v[0], &Ctx::eval()),
            GradcheckOptions::default(),
        )
        .unwrap();
    }
}
