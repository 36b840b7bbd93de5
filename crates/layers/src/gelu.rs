//! `Gelu`: the Gaussian error linear unit, PyTorch's `nn.GELU`.
//!
//! `GELU(x) = x·Φ(x)` with the exact normal CDF `Φ(x) = ½(1 + erf(x/√2))` (the
//! default, `approximate='none'`, used by timm), or the tanh approximation
//! `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (`approximate='tanh'`, used by the
//! official JAX MLP-Mixer). No parameters; any input shape.
//!
//! ```
//! use allmlp_layers::{Ctx, Gelu, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let x = Var::constant(Tensor::from_vec(vec![-1.0, 0.0, 2.0], &[3])?);
//! let y = Gelu::new().forward(&x, &Ctx::eval())?.value().to_vec();
//! assert!((y[0] + 0.158_655).abs() < 1e-5 && y[1] == 0.0 && (y[2] - 1.954_5).abs() < 1e-4);
//! let t = Gelu::tanh().forward(&x, &Ctx::eval())?.value().to_vec();
//! assert!((t[0] + 0.158_808).abs() < 1e-5);
//! assert!(named_parameters(&Gelu::new()).is_empty());
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor};

/// Which GELU formula, as PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApproximate {
    /// Exact erf form (`approximate='none'`, the default).
    #[default]
    None,
    /// Tanh approximation (`approximate='tanh'`).
    Tanh,
}

/// The GELU activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gelu {
    /// The formula.
    pub approximate: GeluApproximate,
}

impl Gelu {
    /// Exact (erf) GELU, PyTorch's default.
    pub fn new() -> Gelu {
        Gelu::default()
    }

    /// Tanh-approximate GELU.
    pub fn tanh() -> Gelu {
        Gelu {
            approximate: GeluApproximate::Tanh,
        }
    }
}

impl Module for Gelu {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        Ok(match self.approximate {
            GeluApproximate::None => x.gelu(),
            GeluApproximate::Tanh => x.gelu_tanh(),
        })
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    /// Φ(x) by the Abramowitz–Stegun 7.1.26 erf (|error| ≤ 1.5e-7), in f64.
    fn gelu_ref(x: f64, tanh: bool) -> f64 {
        if tanh {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            return 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
        }
        let z = x.abs() / 2f64.sqrt();
        let t = 1.0 / (1.0 + 0.3275911 * z);
        let poly = t
            * (0.254829592
                + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
        let erf = (1.0 - poly * (-z * z).exp()).copysign(x);
        0.5 * x * (1.0 + erf)
    }

    #[test]
    fn gelu_layer_matches_formula_and_gradcheck() {
        let x = Tensor::randn(&[2, 3, 7], 0.0, 2.0, 4).unwrap();
        for (layer, tanh) in [(Gelu::new(), false), (Gelu::tanh(), true)] {
            let y = layer
                .forward(&Var::constant(x.clone()), &Ctx::eval())
                .unwrap()
                .value();
            for (a, b) in y.to_vec().iter().zip(x.to_vec()) {
                // f32 evaluation of a smooth function: 1e-5 absolute covers rounding and the
                // reference's 1.5e-7 erf error scaled by |x| ≤ ~8.
                assert!((*a as f64 - gelu_ref(b as f64, tanh)).abs() < 1e-5);
            }
            gradcheck(
                "Gelu",
                std::slice::from_ref(&x),
                |v| layer.forward(&v[0], &Ctx::eval()),
                GradcheckOptions::default(),
            )
            .unwrap();
        }
        assert_ne!(Gelu::new(), Gelu::tanh());
    }
}
