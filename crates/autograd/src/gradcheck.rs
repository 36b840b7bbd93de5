//! `gradcheck`: analytic gradients against central finite differences.
//!
//! The function under test maps input variables to an output `y`; the check
//! differentiates the scalar `L = Σ y ⊙ R` for a fixed random `R` (so every
//! output element contributes) and compares `∂L/∂x` from backward with
//! `(L(x + h·eᵢ) − L(x − h·eᵢ)) / 2h` for every input element, accumulating
//! `L` in f64. Kernels are f32, so `h` is large enough (default 1e-2 relative
//! to the element's magnitude, at least 1e-3) for the difference to rise above
//! f32 rounding; smooth ops then agree to ~1e-3 relative.

use allmlp_tensor_core::Tensor;

use crate::{AutogradError, Result, Var, no_grad};

/// Step and tolerance of a [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step, relative to max(|x|, 1).
    pub step: f32,
    /// Allowed |analytic − numeric| ≤ atol + rtol·|numeric|.
    pub rtol: f64,
    /// Absolute part of the tolerance.
    pub atol: f64,
    /// Seed of the random output weights `R`.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            step: 1e-2,
            rtol: 2e-2,
            atol: 2e-3,
            seed: 12345,
        }
    }
}

fn weighted_sum(y: &Tensor, r: &Tensor) -> f64 {
    y.to_vec()
        .iter()
        .zip(r.to_vec())
        .map(|(&a, b)| a as f64 * b as f64)
        .sum()
}

/// Checks the gradients of `f` at `inputs`; the error names the op, the input
/// and element, and both values.
pub fn gradcheck(
    name: &'static str,
    inputs: &[Tensor],
    f: impl Fn(&[Var]) -> Result<Var>,
    opts: GradcheckOptions,
) -> Result<()> {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::parameter(t.clone())).collect();
    let y = f(&vars)?;
    let r = Tensor::randn(&y.shape(), 0.0, 1.0, opts.seed)?;
    y.backward_with(r.clone())?;
    for (i, (x, v)) in inputs.iter().zip(&vars).enumerate() {
        let analytic = v
            .grad()
            .map(|g| g.to_vec())
            .unwrap_or_else(|| vec![0.0; x.numel()]);
        let base = x.to_vec();
        for (j, &a) in analytic.iter().enumerate() {
            let h = opts.step * base[j].abs().max(1.0);
            let eval = |delta: f32| -> Result<f64> {
                let mut p = base.clone();
                p[j] += delta;
                let xs: Vec<Var> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        if k == i {
                            Tensor::from_vec(p.clone(), t.shape()).map(Var::constant)
                        } else {
                            Ok(Var::constant(t.clone()))
                        }
                    })
                    .collect::<std::result::Result<_, _>>()?;
                no_grad(|| f(&xs)).map(|y| weighted_sum(&y.value(), &r))
            };
            let numeric = (eval(h)? - eval(-h)?) / (2.0 * h as f64);
            if (a as f64 - numeric).abs() > opts.atol + opts.rtol * numeric.abs() {
                return Err(AutogradError::InvalidArgument {
                    op: "gradcheck",
                    msg: format!(
                        "{name}: input {i} element {j}: analytic {a} vs numeric {numeric:.6} (step {h})"
                    ),
                });
            }
        }
    }
    Ok(())
}
