//! `Linear`: `y = x·Wᵀ + b` over the last dimension, PyTorch's `nn.Linear`.
//!
//! The bias is added in the GEMM's epilogue; [`Linear::forward_act`] fuses an
//! activation there too.
//!
//! Parameters: `weight [out, in]`, `bias [out]` (optional). Default
//! initialisation as PyTorch: weight kaiming-uniform (a = √5), bias
//! `U(−1/√in, 1/√in)`.
//!
//! ```
//! use allmlp_layers::{Ctx, Linear, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let fc = Linear::new(4, 3, true, 0)?;
//! let y = fc.forward(&Var::constant(Tensor::ones(&[2, 5, 4])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), vec![2, 5, 3]);
//! let names: Vec<String> = named_parameters(&fc).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["weight", "bias"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::{self, linear, linear_act};
use allmlp_autograd::tensor_core::Tensor;
use allmlp_autograd::{Result, Var};

use crate::init;
use crate::module::{Ctx, Module, Visitor, join};

/// A fully connected layer.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Var,
    /// `[out]`, if the layer has a bias.
    pub bias: Option<Var>,
}

impl Linear {
    /// `in_features → out_features` with PyTorch's default initialisation from `seed`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, seed: u64) -> Result<Linear> {
        let w = init::kaiming_uniform_default(&[out_features, in_features], seed)?;
        let b = if bias {
            Some(init::default_bias(
                out_features,
                in_features,
                seed ^ 0x9E37,
            )?)
        } else {
            None
        };
        Linear::from_tensors(w, b)
    }

    /// A layer with the given weight `[out, in]` and bias `[out]`.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        weight.expect_rank("Linear", 2, "[out, in]")?;
        if let Some(b) = &bias {
            b.expect_shape("Linear", &[weight.shape()[0]])?;
        }
        Ok(Linear {
            weight: Var::parameter(weight),
            bias: bias.map(Var::parameter),
        })
    }

    /// `(in_features, out_features)`.
    pub fn features(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (s[1], s[0])
    }

    /// `act(x·Wᵀ + b)`, the activation fused into the GEMM's epilogue: the
    /// same values as `forward` followed by the activation, one pass fewer.
    pub fn forward_act(&self, x: &Var, act: ops::Activation) -> Result<Var> {
        linear_act(x, &self.weight, self.bias.as_ref(), act)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        linear(x, &self.weight, self.bias.as_ref())
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        v.param(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            v.param(&join(prefix, "bias"), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn linear_layer_gradcheck_and_init_bounds() {
        let fc = Linear::new(5, 3, true, 7).unwrap();
        assert!(
            fc.weight
                .value()
                .to_vec()
                .iter()
                .all(|v| v.abs() <= 1.0 / 5f32.sqrt())
        );
        let x = Tensor::randn(&[2, 4, 5], 0.0, 1.0, 1).unwrap();
        let (w, b) = (fc.weight.value(), fc.bias.as_ref().unwrap().value());
        gradcheck(
            "Linear",
            &[x, w, b],
            |v| {
                Linear {
                    weight: v[1].clone(),
                    bias: Some(v[2].clone()),
                }
                .forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        assert!(Linear::from_tensors(Tensor::zeros(&[3]).unwrap(), None).is_err());
        assert!(
            Linear::from_tensors(
                Tensor::zeros(&[3, 2]).unwrap(),
                Some(Tensor::zeros(&[2]).unwrap())
            )
            .is_err()
        );
    }
}
