//! [`clip_grad_norm`]: `torch.nn.utils.clip_grad_norm_` (2-norm).

use allmlp_tensor_core::Tensor;

use super::state::{invalid, norm2};
use crate::{Result, Var};

/// Scales the gradients of `params` so their global 2-norm is at most `max_norm`, like
/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`, and returns the total norm before clipping.
///
/// In f32 as torch computes it: each gradient's norm, the norm of those norms `N`, then every
/// gradient is multiplied by `min(max_norm / (N + 1e-6), 1)` — also when that is 1, so the
/// result is bit-identical to torch's. As in torch, a NaN norm (a NaN in any gradient) makes
/// every gradient NaN, and `max_norm = ∞` only measures the norm. Parameters without a
/// gradient are skipped; with none, the total norm is 0. `max_norm` must be ≥ 0 (or ∞).
pub fn clip_grad_norm<'a>(params: impl IntoIterator<Item = &'a Var>, max_norm: f64) -> Result<f32> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(invalid(
            "clip_grad_norm",
            format!("max_norm must be >= 0 (or infinite), got {max_norm}"),
        ));
    }
    let with_grad: Vec<(&Var, Tensor)> = params
        .into_iter()
        .filter_map(|v| v.grad().map(|g| (v, g.contiguous())))
        .collect();
    if with_grad.is_empty() {
        return Ok(0.0);
    }
    let norms: Vec<f32> = with_grad
        .iter()
        .map(|(_, g)| norm2(g.as_slice().expect("contiguous")))
        .collect();
    let total = norm2(&norms);
    // torch: `max_norm / (total + 1e-6)` is `(total + 1e-6).reciprocal() * max_norm` in f32.
    // `clamp` keeps a NaN, as torch's does (`min` would drop it).
    let coef = ((1.0 / (total + 1e-6)) * max_norm as f32).clamp(0.0, 1.0);
    for (v, g) in with_grad {
        v.set_grad(Some(g.mul_scalar(coef)));
    }
    Ok(total)
}
