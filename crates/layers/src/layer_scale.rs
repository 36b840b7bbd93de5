//! `LayerScale`: a learned per-channel scale `y = x ⊙ gamma` over the last
//! dimension, timm's `timm.layers.LayerScale`.
//!
//! Parameter: `gamma [C]`, every entry `init_value` (ResMLP in timm: 1e-4 for
//! depth 12, 1e-5 for depth 24, 1e-6 for depth 36 and the big model).
//!
//! **Parameter name.** timm's `LayerScale` module names its parameter `gamma`
//! (state_dict key `<prefix>.gamma`), but timm's ResMLP block stores the vector
//! directly on the block as `ls1` / `ls2` (keys `blocks.{i}.ls1`, no `.gamma`).
//! [`LayerScale::named`] sets the name the layer reports to its visitor: a
//! ResMLP block visits `LayerScale::new(c, 1e-4)?.named("ls1")` with its own
//! prefix to produce `blocks.{i}.ls1`. The default is `gamma`.
//!
//! ```
//! use allmlp_layers::{Ctx, LayerScale, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let ls = LayerScale::new(3, 0.5)?;
//! let y = ls.forward(&Var::constant(Tensor::ones(&[2, 3])?), &Ctx::eval())?;
//! assert_eq!(y.value().to_vec(), [0.5; 6]);
//! let names = |m: &LayerScale| -> Vec<String> {
//!     named_parameters(m).into_iter().map(|(n, _)| n).collect()
//! };
//! assert_eq!(names(&ls), ["gamma"]);
//! assert_eq!(names(&ls.named("ls1")), ["ls1"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::scale_shift;
use allmlp_autograd::tensor_core::error::fmt_shape;
use allmlp_autograd::tensor_core::{Tensor, TensorError};
use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor, join};

/// A per-channel scale over the last dimension.
#[derive(Debug)]
pub struct LayerScale {
    /// `[C]`.
    pub gamma: Var,
    name: String,
}

impl LayerScale {
    /// `dim` channels, every scale `init_value` (timm's init), named `gamma`.
    pub fn new(dim: usize, init_value: f32) -> Result<LayerScale> {
        LayerScale::from_tensor(Tensor::full(&[dim], init_value)?)
    }

    /// A layer with the given `gamma [C]`, named `gamma`.
    pub fn from_tensor(gamma: Tensor) -> Result<LayerScale> {
        gamma.expect_rank("LayerScale", 1, "[C]")?;
        Ok(LayerScale {
            gamma: Var::parameter(gamma),
            name: "gamma".to_string(),
        })
    }

    /// The same layer, reporting its parameter as `name` instead of `gamma`
    /// (timm's ResMLP: `ls1`, `ls2`).
    pub fn named(self, name: impl Into<String>) -> LayerScale {
        LayerScale {
            name: name.into(),
            ..self
        }
    }

    /// The parameter's state_dict name relative to the layer's prefix.
    pub fn param_name(&self) -> &str {
        &self.name
    }

    /// The number of channels `C` (0 if `gamma` is a scalar, which the forward then
    /// refuses).
    pub fn dim(&self) -> usize {
        self.gamma.shape().first().copied().unwrap_or(0)
    }
}

impl Module for LayerScale {
    /// `x [.., C]` → `y [.., C]`.
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        let s = x.shape();
        if s.last() != Some(&self.dim()) {
            return Err(TensorError::shape(
                "LayerScale",
                format!("input [.., {}]", self.dim()),
                fmt_shape(&s),
            )
            .into());
        }
        scale_shift(x, &self.gamma, None)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        v.param(&join(prefix, &self.name), &self.gamma);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::named_parameters;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn layer_scale_gradcheck_names_and_shape_errors() {
        let ls = LayerScale::new(4, 1e-5).unwrap();
        assert_eq!(ls.gamma.value().to_vec(), [1e-5; 4]);
        // A permuted (non-contiguous) [3, 2, 4] input, random gamma.
        let x = Tensor::randn(&[4, 3, 2], 0.0, 1.0, 1)
            .unwrap()
            .permute(&[1, 2, 0])
            .unwrap();
        let g = Tensor::randn(&[4], 0.0, 1.0, 2).unwrap();
        gradcheck(
            "LayerScale",
            &[x, g],
            |v| {
                LayerScale {
                    gamma: v[1].clone(),
                    name: "gamma".into(),
                }
                .forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        let ls = ls.named("ls2");
        let mut names = Vec::new();
        struct Names<'a>(&'a mut Vec<String>);
        impl Visitor for Names<'_> {
            fn param(&mut self, name: &str, _: &Var) {
                self.0.push(name.to_string());
            }
            fn buffer(&mut self, _: &str, _: &crate::module::Buffer) {}
        }
        ls.visit("blocks.3", &mut Names(&mut names));
        assert_eq!(names, ["blocks.3.ls2"]);
        assert_eq!(named_parameters(&ls)[0].0, "ls2");
        let e = ls
            .forward(
                &Var::constant(Tensor::zeros(&[4, 3]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LayerScale") && e.contains("[.., 4]") && e.contains("[4, 3]"),
            "{e}"
        );
        assert!(LayerScale::from_tensor(Tensor::ones(&[1, 1, 4]).unwrap()).is_err());
    }
}
