//! `LayerNorm`: normalisation over the last dimension, PyTorch's `nn.LayerNorm(C)`.
//!
//! `y = (x − mean) / √(var + eps) · weight + bias`, with the mean and the biased
//! variance taken over the last dimension of `x [.., C]`. Parameters (when
//! `elementwise_affine`): `weight [C]` (init 1), `bias [C]` (init 0). timm's
//! Mixer uses `eps = 1e-6`; PyTorch's default is `1e-5`.
//!
//! ```
//! use allmlp_layers::{Ctx, LayerNorm, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let ln = LayerNorm::new(4, 1e-6, true)?;
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 4])?;
//! let y = ln.forward(&Var::constant(x), &Ctx::eval())?.value().to_vec();
//! assert!(y.iter().sum::<f32>().abs() < 1e-5 && (y[3] - 1.3416).abs() < 1e-3);
//! let names: Vec<String> = named_parameters(&ln).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["weight", "bias"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::layer_norm;
use allmlp_autograd::tensor_core::error::fmt_shape;
use allmlp_autograd::tensor_core::{Tensor, TensorError};
use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor, join};

/// Layer normalisation over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    /// `[C]`, if the layer is elementwise-affine.
    pub weight: Option<Var>,
    /// `[C]`, if the layer has a bias.
    pub bias: Option<Var>,
    /// Added to the variance (timm's Mixer: 1e-6; PyTorch's default: 1e-5).
    pub eps: f32,
    dim: usize,
}

impl LayerNorm {
    /// Normalises `dim` features with `eps`; with `elementwise_affine`, `weight`
    /// starts at 1 and `bias` at 0 (PyTorch's init).
    pub fn new(dim: usize, eps: f32, elementwise_affine: bool) -> Result<LayerNorm> {
        if elementwise_affine {
            LayerNorm::from_tensors(
                dim,
                Some(Tensor::ones(&[dim])?),
                Some(Tensor::zeros(&[dim])?),
                eps,
            )
        } else {
            LayerNorm::from_tensors(dim, None, None, eps)
        }
    }

    /// A layer over `dim` features with the given `weight [dim]` and `bias [dim]`
    /// (either may be absent, as PyTorch's `elementwise_affine` / `bias` flags).
    pub fn from_tensors(
        dim: usize,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        eps: f32,
    ) -> Result<LayerNorm> {
        if dim == 0 || !(eps.is_finite() && eps > 0.0) {
            return Err(TensorError::arg(
                "LayerNorm",
                format!("need dim > 0 and a finite eps > 0, got dim {dim}, eps {eps}"),
            )
            .into());
        }
        for t in weight.iter().chain(&bias) {
            t.expect_shape("LayerNorm", &[dim])?;
        }
        Ok(LayerNorm {
            weight: weight.map(Var::parameter),
            bias: bias.map(Var::parameter),
            eps,
            dim,
        })
    }

    /// The number of features normalised (`C`).
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl Module for LayerNorm {
    /// `x [.., C]` → `y [.., C]`.
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        let s = x.shape();
        if s.last() != Some(&self.dim) {
            return Err(TensorError::shape(
                "LayerNorm",
                format!("input [.., {}]", self.dim),
                fmt_shape(&s),
            )
            .into());
        }
        layer_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        if let Some(w) = &self.weight {
            v.param(&join(prefix, "weight"), w);
        }
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
    fn layer_norm_gradcheck_and_shape_errors() {
        // Non-contiguous input [5, 2, 7] (a transposed view), random affine parameters.
        let x = Tensor::randn(&[2, 5, 7], 0.5, 2.0, 1)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let w = Tensor::randn(&[7], 1.0, 0.5, 2).unwrap();
        let b = Tensor::randn(&[7], 0.0, 0.5, 3).unwrap();
        gradcheck(
            "LayerNorm",
            &[x.clone(), w, b],
            |v| {
                LayerNorm {
                    weight: Some(v[1].clone()),
                    bias: Some(v[2].clone()),
                    eps: 1e-6,
                    dim: 7,
                }
                .forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        let plain = LayerNorm::new(7, 1e-5, false).unwrap();
        assert!(plain.weight.is_none() && plain.bias.is_none());
        gradcheck(
            "LayerNorm_plain",
            &[x],
            |v| plain.forward(&v[0], &Ctx::eval()),
            GradcheckOptions::default(),
        )
        .unwrap();
        let e = plain
            .forward(
                &Var::constant(Tensor::zeros(&[2, 6]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LayerNorm") && e.contains("[.., 7]") && e.contains("[2, 6]"),
            "{e}"
        );
        assert!(LayerNorm::new(7, 0.0, true).is_err());
        assert!(LayerNorm::from_tensors(7, Some(Tensor::ones(&[6]).unwrap()), None, 1e-5).is_err());
    }
}
