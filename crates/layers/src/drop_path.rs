//! `DropPath`: stochastic depth, timm's `timm.layers.DropPath`.
//!
//! In training, each sample (index along dimension 0) is zeroed as a whole with
//! probability `drop_prob`, and kept samples are divided by the keep
//! probability `1 − drop_prob` (timm's `scale_by_keep=True`); the identity in
//! evaluation or when `drop_prob == 0`. Used on a residual branch:
//! `x + drop_path(f(x))`.
//!
//! The per-sample draws come from the context's random stream ([`Ctx::rng`]),
//! so a step is reproducible from the `Ctx::train` seed (they do not match
//! PyTorch's generator). No parameters; any input of rank ≥ 1.
//!
//! ```
//! use allmlp_layers::{Ctx, DropPath, Module};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let dp = DropPath::new(0.5)?;
//! let x = Var::constant(Tensor::ones(&[6, 4, 3])?);
//! let y = dp.forward(&x, &Ctx::train(1))?.value();
//! for b in 0..6 {
//!     let s = y.narrow(0, b, 1)?.to_vec();
//!     assert!(s.iter().all(|&v| v == 0.0) || s.iter().all(|&v| v == 2.0));
//! }
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::tensor_core::TensorError;
use allmlp_autograd::{Result, Var};

use crate::dropout::check_drop_prob;
use crate::module::{Ctx, Module, Visitor};

/// Per-sample drop of a residual branch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropPath {
    /// Probability of dropping a sample, in `[0, 1]`.
    pub drop_prob: f32,
}

impl DropPath {
    /// Drop-path with probability `drop_prob` in `[0, 1]`.
    pub fn new(drop_prob: f32) -> Result<DropPath> {
        check_drop_prob("DropPath", drop_prob)?;
        Ok(DropPath { drop_prob })
    }
}

impl Module for DropPath {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        if !ctx.training() || self.drop_prob == 0.0 {
            return Ok(x.clone());
        }
        if x.shape().is_empty() {
            return Err(TensorError::shape(
                "DropPath",
                "an input of rank >= 1 (samples along dimension 0)",
                "a scalar",
            )
            .into());
        }
        x.drop_path(self.drop_prob, true, &mut ctx.rng())
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn drop_path_is_per_sample_scaled_and_its_gradient_is_the_mask() {
        let dp = DropPath::new(0.25).unwrap();
        let x = Var::parameter(Tensor::randn(&[400, 3, 5], 0.0, 1.0, 3).unwrap());
        let ctx = Ctx::train(5);
        let y = dp.forward(&x, &ctx).unwrap().value();
        let r = Tensor::randn(&[400, 3, 5], 0.0, 1.0, 4).unwrap();
        let y_var = dp.forward(&x, &Ctx::train(5)).unwrap();
        assert_eq!(y_var.value(), y);
        y_var.backward_with(r.clone()).unwrap();
        let g = x.grad().unwrap();
        let mut kept = 0;
        for b in 0..400 {
            let (xs, ys) = (
                x.value().narrow(0, b, 1).unwrap(),
                y.narrow(0, b, 1).unwrap(),
            );
            let (rs, gs) = (r.narrow(0, b, 1).unwrap(), g.narrow(0, b, 1).unwrap());
            let m = if ys.to_vec().iter().all(|&v| v == 0.0) {
                0.0
            } else {
                kept += 1;
                1.0 / 0.75
            };
            // y = m·x and ∂(Σ y·r)/∂x = m·r, with one m per sample (exact: one f32 multiply).
            let my: Vec<f32> = xs.to_vec().iter().map(|v| v * m).collect();
            let mr: Vec<f32> = rs.to_vec().iter().map(|v| v * m).collect();
            assert_eq!(ys.to_vec(), my, "sample {b}");
            assert_eq!(gs.to_vec(), mr, "sample {b}");
        }
        // Binomial(400, 0.75): σ ≈ 8.7, so ±45 is > 5σ.
        assert!((255..=345).contains(&kept), "kept {kept} of 400");
        assert_ne!(dp.forward(&x, &ctx).unwrap().value(), y, "stream advances");
        assert_eq!(dp.forward(&x, &Ctx::eval()).unwrap().value(), x.value());
        let zero = DropPath::new(0.0).unwrap();
        assert_eq!(zero.forward(&x, &Ctx::train(5)).unwrap().value(), x.value());
        let scalar = Var::constant(Tensor::scalar(1.0));
        let e = dp.forward(&scalar, &Ctx::train(1)).unwrap_err().to_string();
        assert!(e.contains("DropPath"), "{e}");
        assert!(
            DropPath::new(1.5)
                .unwrap_err()
                .to_string()
                .contains("DropPath")
        );
        // p = 1 (accepted, as in timm) drops every sample in training.
        let all = DropPath::new(1.0)
            .unwrap()
            .forward(&x, &Ctx::train(5))
            .unwrap();
        assert!(all.value().to_vec().iter().all(|&e| e == 0.0));
    }
}
