//! `Dropout`: zeroes each element with probability `p` and scales the kept
//! ones by `1/(1 − p)` in training, PyTorch's `nn.Dropout`; the identity in
//! evaluation or when `p == 0`.
//!
//! The mask is drawn from the context's random stream ([`Ctx::rng`]), one draw
//! per element in row-major order, so a training step is reproducible from the
//! `Ctx::train` seed (masks do not match PyTorch's, whose generator differs).
//! `p` must lie in `[0, 1)` (PyTorch also accepts 1, which zeroes everything).
//! No parameters; any input shape.
//!
//! ```
//! use allmlp_layers::{Ctx, Dropout, Module};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let drop = Dropout::new(0.5)?;
//! let x = Var::constant(Tensor::ones(&[4, 8])?);
//! let y = drop.forward(&x, &Ctx::train(7))?.value().to_vec();
//! assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
//! assert_eq!(drop.forward(&x, &Ctx::eval())?.value(), x.value());
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::{AutogradError, Result, Var};

use crate::module::{Ctx, Module, Visitor};

/// Element-wise (inverted) dropout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in `[0, 1]`.
    pub p: f32,
}

impl Dropout {
    /// Dropout with drop probability `p` in `[0, 1]`.
    pub fn new(p: f32) -> Result<Dropout> {
        check_drop_prob("Dropout", p)?;
        Ok(Dropout { p })
    }

    /// Whether the forward in `ctx` returns its input unchanged (rate 0, or
    /// not training), drawing no mask.
    pub fn is_identity(&self, ctx: &Ctx) -> bool {
        !ctx.training() || self.p == 0.0
    }
}

/// Err unless `0 ≤ p ≤ 1` (NaN rejected; `p = 1` drops everything, as in
/// PyTorch and timm).
pub(crate) fn check_drop_prob(op: &'static str, p: f32) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(AutogradError::InvalidArgument {
            op,
            msg: format!("drop probability must be in [0, 1], got {p}"),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        if self.is_identity(ctx) {
            return Ok(x.clone());
        }
        x.dropout(self.p, true, &mut ctx.rng())
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn dropout_masks_statistics_gradient_and_modes() {
        let drop = Dropout::new(0.3).unwrap();
        let x = Var::parameter(Tensor::ones(&[200, 100]).unwrap());
        let ctx = Ctx::train(11);
        let y = drop.forward(&x, &ctx).unwrap();
        let v = y.value().to_vec();
        let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / v.len() as f64;
        // Binomial(20000, 0.7): σ ≈ 0.0032, so 0.02 is > 6σ.
        assert!((kept - 0.7).abs() < 0.02, "kept fraction {kept}");
        assert!(v.iter().all(|&e| e == 0.0 || (e - 1.0 / 0.7).abs() < 1e-6));
        // The gradient of sum(y) is the mask itself: same zeros, same scale.
        y.sum(&[], false).unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec(), v);
        // The stream advances: a second call draws a different mask; a fresh
        // context with the same seed repeats the first.
        assert_ne!(drop.forward(&x, &ctx).unwrap().value().to_vec(), v);
        let again = drop.forward(&x, &Ctx::train(11)).unwrap().value();
        assert_eq!(again.to_vec(), v);
        // Identity in evaluation and for p = 0 (no op recorded, no random draw).
        assert_eq!(drop.forward(&x, &Ctx::eval()).unwrap().value(), x.value());
        let ctx = Ctx::train(11);
        let zero = Dropout::new(0.0).unwrap();
        assert_eq!(zero.forward(&x, &ctx).unwrap().value(), x.value());
        assert_eq!(drop.forward(&x, &ctx).unwrap().value().to_vec(), v);
        for bad in [1.5, -0.1, f32::NAN] {
            let e = Dropout::new(bad).unwrap_err().to_string();
            assert!(e.contains("Dropout") && e.contains("[0, 1]"), "{e}");
        }
        // p = 1 (accepted, as in PyTorch) drops everything in training.
        let all = Dropout::new(1.0).unwrap().forward(&x, &ctx).unwrap();
        assert!(all.value().to_vec().iter().all(|&e| e == 0.0));
    }
}
