//! `Affine`: ResMLP's per-channel affine map `y = alpha ⊙ x + beta`, timm's
//! `timm.models.mlp_mixer.Affine` (the normalisation-free replacement for LayerNorm).
//!
//! Parameters: `alpha [1, 1, C]` (init 1), `beta [1, 1, C]` (init 0), shaped as
//! timm stores them. They broadcast against `x [.., C]` as in PyTorch: a
//! `[B, S, C]` input gives `[B, S, C]` (an input of rank < 3 broadcasts up to
//! rank 3, as `torch.addcmul` does).
//!
//! ```
//! use allmlp_layers::{Affine, Ctx, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let aff = Affine::from_tensors(
//!     Tensor::from_vec(vec![2.0, 3.0], &[2])?, // the authors' `[C]` layout is accepted
//!     Tensor::from_vec(vec![1.0, 0.0], &[1, 1, 2])?,
//! )?;
//! let y = aff.forward(&Var::constant(Tensor::ones(&[1, 3, 2])?), &Ctx::eval())?;
//! assert_eq!(y.value().to_vec(), [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]);
//! let shapes: Vec<(String, Vec<usize>)> =
//!     named_parameters(&aff).into_iter().map(|(n, p)| (n, p.shape())).collect();
//! assert_eq!(shapes, [("alpha".into(), vec![1, 1, 2]), ("beta".into(), vec![1, 1, 2])]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::scale_shift;
use allmlp_autograd::tensor_core::error::fmt_shape;
use allmlp_autograd::tensor_core::{Tensor, TensorError};
use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor, join};

/// The affine map `alpha ⊙ x + beta` over the last dimension.
#[derive(Debug)]
pub struct Affine {
    /// `[1, 1, C]`.
    pub alpha: Var,
    /// `[1, 1, C]`.
    pub beta: Var,
}

impl Affine {
    /// `dim` channels with timm's init: `alpha = 1`, `beta = 0`.
    pub fn new(dim: usize) -> Result<Affine> {
        Affine::from_tensors(Tensor::ones(&[1, 1, dim])?, Tensor::zeros(&[1, 1, dim])?)
    }

    /// A layer with the given `alpha` and `beta`, each `[1, 1, C]` (timm) or
    /// `[C]` (the authors' checkpoints; reshaped to `[1, 1, C]`).
    pub fn from_tensors(alpha: Tensor, beta: Tensor) -> Result<Affine> {
        let c = match alpha.shape() {
            [c] | [1, 1, c] => *c,
            s => {
                return Err(TensorError::shape(
                    "Affine",
                    "alpha of shape [1, 1, C] or [C]",
                    fmt_shape(s),
                )
                .into());
            }
        };
        if beta.shape() != [c] && beta.shape() != [1, 1, c] {
            return Err(TensorError::shape(
                "Affine",
                format!("beta of shape [1, 1, {c}] or [{c}] like alpha"),
                fmt_shape(beta.shape()),
            )
            .into());
        }
        Ok(Affine {
            alpha: Var::parameter(alpha.reshape(&[1, 1, c])?),
            beta: Var::parameter(beta.reshape(&[1, 1, c])?),
        })
    }

    /// The number of channels `C` (the last dimension of `alpha`; 0 if `alpha` is a
    /// scalar, which the forward then refuses).
    pub fn dim(&self) -> usize {
        self.alpha.shape().last().copied().unwrap_or(0)
    }
}

impl Module for Affine {
    /// `x [.., C]` → `y [.., C]`.
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        let s = x.shape();
        if s.last() != Some(&self.dim()) {
            return Err(TensorError::shape(
                "Affine",
                format!("input [.., {}]", self.dim()),
                fmt_shape(&s),
            )
            .into());
        }
        scale_shift(x, &self.alpha, Some(&self.beta))
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        v.param(&join(prefix, "alpha"), &self.alpha);
        v.param(&join(prefix, "beta"), &self.beta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn affine_gradcheck_init_and_shape_errors() {
        let aff = Affine::new(5).unwrap();
        assert_eq!(aff.alpha.value().to_vec(), [1.0; 5]);
        assert_eq!(aff.beta.value().to_vec(), [0.0; 5]);
        // A transposed (non-contiguous) [3, 2, 5] input, random parameters.
        let x = Tensor::randn(&[2, 3, 5], 0.0, 1.0, 1)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let a = Tensor::randn(&[1, 1, 5], 1.0, 0.5, 2).unwrap();
        let b = Tensor::randn(&[1, 1, 5], 0.0, 0.5, 3).unwrap();
        gradcheck(
            "Affine",
            &[x, a, b],
            |v| {
                Affine {
                    alpha: v[1].clone(),
                    beta: v[2].clone(),
                }
                .forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        let e = aff
            .forward(
                &Var::constant(Tensor::zeros(&[2, 3, 4]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Affine") && e.contains("[.., 5]") && e.contains("[2, 3, 4]"),
            "{e}"
        );
        let (c5, c4) = (Tensor::ones(&[5]).unwrap(), Tensor::ones(&[4]).unwrap());
        assert!(Affine::from_tensors(c5.clone(), c4).is_err());
        assert!(Affine::from_tensors(Tensor::ones(&[1, 5]).unwrap(), c5).is_err());
    }
}
