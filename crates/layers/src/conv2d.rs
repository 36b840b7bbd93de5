//! `Conv2d`: 2-D convolution with stride, padding and groups, PyTorch's `nn.Conv2d`.
//!
//! Parameters: `weight [O, C/groups, kh, kw]`, `bias [O]` (optional). Default
//! initialisation as PyTorch: weight kaiming-uniform (a = √5, bound
//! `1/√fan_in`), bias `U(−1/√fan_in, 1/√fan_in)`, `fan_in = C/groups·kh·kw`.
//! Stride, padding and groups are an [`Conv2dParams`] (zero padding only).
//!
//! ```
//! use allmlp_layers::{Conv2d, Ctx, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, ops::Conv2dParams, tensor_core::Tensor};
//! // 4 → 6 channels, 3×3 kernel, stride 2, padding 1, 2 groups.
//! let conv = Conv2d::new(4, 6, (3, 3), Conv2dParams::square(2, 1, 2), true, 0)?;
//! assert_eq!(conv.weight.shape(), [6, 2, 3, 3]);
//! let y = conv.forward(&Var::constant(Tensor::ones(&[1, 4, 7, 8])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), [1, 6, 4, 4]);
//! let names: Vec<String> = named_parameters(&conv).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["weight", "bias"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::{Conv2dParams, conv2d};
use allmlp_autograd::tensor_core::error::fmt_shape;
use allmlp_autograd::tensor_core::{Tensor, TensorError};
use allmlp_autograd::{Result, Var};

use crate::init;
use crate::module::{Ctx, Module, Visitor, dim_or_zero, join};

/// A 2-D convolution layer.
#[derive(Debug)]
pub struct Conv2d {
    /// `[O, C/groups, kh, kw]`.
    pub weight: Var,
    /// `[O]`, if the layer has a bias.
    pub bias: Option<Var>,
    /// Stride, padding, groups.
    pub params: Conv2dParams,
}

impl Conv2d {
    /// `in_channels → out_channels` with a `kernel = (kh, kw)` kernel and PyTorch's
    /// default initialisation from `seed`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        bias: bool,
        seed: u64,
    ) -> Result<Conv2d> {
        let g = params.groups;
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return Err(TensorError::arg(
                "Conv2d",
                format!(
                    "groups must be >= 1 and divide in_channels and out_channels, \
                     got groups {g}, in_channels {in_channels}, out_channels {out_channels}"
                ),
            )
            .into());
        }
        let shape = [out_channels, in_channels / g, kernel.0, kernel.1];
        let w = init::kaiming_uniform_default(&shape, seed)?;
        let b = if bias {
            let fan_in = in_channels / g * kernel.0 * kernel.1;
            Some(init::default_bias(out_channels, fan_in, seed ^ 0x9E37)?)
        } else {
            None
        };
        Conv2d::from_tensors(w, b, params)
    }

    /// A layer with the given `weight [O, C/groups, kh, kw]` and `bias [O]`.
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        params: Conv2dParams,
    ) -> Result<Conv2d> {
        weight.expect_rank("Conv2d", 4, "[O, C/groups, kh, kw]")?;
        let s = weight.shape();
        let g = params.groups;
        if s.contains(&0)
            || g == 0
            || !s[0].is_multiple_of(g)
            || params.stride.0 == 0
            || params.stride.1 == 0
        {
            return Err(TensorError::arg(
                "Conv2d",
                format!(
                    "need a non-empty weight whose O is a multiple of groups and stride >= 1, \
                     got weight {}, groups {g}, stride {:?}",
                    fmt_shape(s),
                    params.stride
                ),
            )
            .into());
        }
        if let Some(b) = &bias {
            b.expect_shape("Conv2d", &[s[0]])?;
        }
        Ok(Conv2d {
            weight: Var::parameter(weight),
            bias: bias.map(Var::parameter),
            params,
        })
    }

    /// `(in_channels, out_channels)`, read from the weight `[O, C/groups, kh, kw]` (a
    /// dimension the weight lacks reads 0; the forward refuses such a weight).
    pub fn channels(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (
            dim_or_zero(&s, 1).saturating_mul(self.params.groups),
            dim_or_zero(&s, 0),
        )
    }

    /// `(kh, kw)` (0 for a dimension the weight lacks, as in [`Conv2d::channels`]).
    pub fn kernel_size(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (dim_or_zero(&s, 2), dim_or_zero(&s, 3))
    }
}

impl Module for Conv2d {
    /// `x [N, C, H, W]` → `y [N, O, OH, OW]`, `OH = (H + 2·ph − kh)/sh + 1`.
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        let s = x.shape();
        let c = self.channels().0;
        if s.len() != 4 || s[1] != c {
            return Err(TensorError::shape(
                "Conv2d",
                format!("input [N, {c}, H, W]"),
                fmt_shape(&s),
            )
            .into());
        }
        conv2d(x, &self.weight, self.bias.as_ref(), self.params)
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
    fn conv2d_layer_gradcheck_init_bounds_and_errors() {
        // Grouped (g = 2), stride 2, padding 1, bias, odd 5×6 input stored NHWC (non-contiguous).
        let p = Conv2dParams::square(2, 1, 2);
        let conv = Conv2d::new(4, 6, (3, 2), p, true, 3).unwrap();
        let bound = 1.0 / ((2 * 3 * 2) as f32).sqrt();
        assert!(
            conv.weight
                .value()
                .to_vec()
                .iter()
                .all(|v| v.abs() <= bound)
        );
        let b = conv.bias.as_ref().unwrap().value();
        assert!(b.to_vec().iter().all(|v| v.abs() <= bound));
        assert_eq!(conv.channels(), (4, 6));
        assert_eq!(conv.kernel_size(), (3, 2));
        let x = Tensor::randn(&[2, 5, 6, 4], 0.0, 1.0, 1)
            .unwrap()
            .permute(&[0, 3, 1, 2])
            .unwrap();
        gradcheck(
            "Conv2d",
            &[x, conv.weight.value(), b],
            |v| {
                Conv2d {
                    weight: v[1].clone(),
                    bias: Some(v[2].clone()),
                    params: p,
                }
                .forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        let e = conv
            .forward(
                &Var::constant(Tensor::zeros(&[1, 3, 5, 5]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Conv2d") && e.contains("[N, 4, H, W]") && e.contains("[1, 3, 5, 5]"),
            "{e}"
        );
        assert!(Conv2d::new(4, 6, (3, 3), Conv2dParams::square(1, 0, 4), true, 0).is_err());
        assert!(Conv2d::new(4, 6, (3, 3), Conv2dParams::square(1, 0, 0), true, 0).is_err());
        assert!(Conv2d::new(4, 6, (3, 3), Conv2dParams::square(0, 0, 1), true, 0).is_err());
        let w = Tensor::zeros(&[6, 2, 3, 3]).unwrap();
        assert!(Conv2d::from_tensors(w.clone(), Some(Tensor::zeros(&[5]).unwrap()), p).is_err());
        assert!(Conv2d::from_tensors(Tensor::zeros(&[6, 2, 3]).unwrap(), None, p).is_err());
    }
}
