//! `Relu`: `max(x, 0)` elementwise, PyTorch's `nn.ReLU` (gradient 0 at 0, as
//! PyTorch). No parameters; any input shape.
//!
//! ```
//! use allmlp_layers::{Ctx, Module, Relu};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let x = Var::constant(Tensor::from_vec(vec![-1.5, 0.0, 2.0], &[3])?);
//! assert_eq!(Relu.forward(&x, &Ctx::eval())?.value().to_vec(), [0.0, 0.0, 2.0]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor};

/// The rectified linear unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relu;

impl Module for Relu {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        Ok(x.relu())
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn relu_layer_values_and_gradcheck() {
        // Values kept ≥ 0.1 away from the kink so the finite-difference step never crosses it.
        let mut x = Tensor::randn(&[3, 5, 4], 0.0, 1.0, 2).unwrap().to_vec();
        x.iter_mut().for_each(|v| *v += 0.1f32.copysign(*v));
        let x = Tensor::from_vec(x, &[3, 5, 4]).unwrap();
        let y = Relu
            .forward(&Var::constant(x.clone()), &Ctx::eval())
            .unwrap();
        let want: Vec<f32> = x.to_vec().iter().map(|v| v.max(0.0)).collect();
        assert_eq!(y.value().to_vec(), want);
        gradcheck(
            "Relu",
            &[x],
            |v| Relu.forward(&v[0], &Ctx::eval()),
            GradcheckOptions::default(),
        )
        .unwrap();
    }
}
