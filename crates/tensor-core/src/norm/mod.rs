//! Normalisation kernels, forward and backward side by side.
//!
//! - [`layer_norm`] / [`layer_norm_backward`]: LayerNorm over the last dimension
//!   (`x: [..., C]`, statistics per row), as `torch.nn.functional.layer_norm`.
//! - [`batch_norm_train`] / [`batch_norm_backward`] and [`batch_norm_eval`] /
//!   [`batch_norm_eval_backward`]: BatchNorm1d/2d (`x: [N, C]`, `[N, C, L]` or
//!   `[N, C, H, W]`, statistics per channel), as `torch.nn.functional.batch_norm`.
//!
//! Numerics: data and results are f32; every statistic and every reduction is
//! accumulated in f64. Means and variances use *shifted* sums,
//! `Σ(x−k)` and `Σ(x−k)²` with `k` the first element of the row/channel, in one
//! pass; in f64 the cancellation in `Σ(x−k)² − (Σ(x−k))²/n` is negligible for any
//! f32 data whose spread is not ~10⁸ times smaller than its offset from `k`.
//! Each sum is split into 8 interleaved f64 partial sums (so it vectorises)
//! that are combined in a fixed order.
//!
//! Determinism: work is split at boundaries that depend only on the shape (rows
//! of LayerNorm; fixed chunks of samples and single channels for BatchNorm), and
//! cross-row reductions add fixed-chunk partials in chunk order, so results are
//! bit-identical for any thread count.
//!
//! ```
//! use allmlp_tensor_core::{norm::layer_norm, Tensor};
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let out = layer_norm(&x, None, None, 1e-5)?;
//! assert_eq!(out.mean.to_vec(), vec![1.5, 3.5]);
//! assert!((out.y.get(&[0, 1])? - 1.0).abs() < 1e-4);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

mod batch_norm;
mod lane_sums;
mod layer_norm;
#[cfg(test)]
pub(crate) mod test_util;

pub use batch_norm::{
    BatchNormGrads, BatchNormOutput, batch_norm_backward, batch_norm_eval,
    batch_norm_eval_backward, batch_norm_train,
};
pub use layer_norm::{LayerNormGrads, LayerNormOutput, layer_norm, layer_norm_backward};

use crate::error::fmt_shape;
use crate::{Result, Tensor, TensorError};

/// Work below this many elements runs on the calling thread (same results:
/// the split into chunks does not change, only who runs them).
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// Checks that `eps` is finite and positive.
pub(crate) fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps > 0.0) {
        return Err(TensorError::arg(
            op,
            format!("eps must be finite and > 0, got {eps}"),
        ));
    }
    Ok(())
}

/// An optional per-channel parameter `[C]` as a vector, `default` everywhere
/// when absent (multiplying by 1 and adding 0 are exact, so this equals the
/// affine-free result bit for bit).
pub(crate) fn param_vec(
    op: &'static str,
    name: &str,
    t: Option<&Tensor>,
    c: usize,
    default: f32,
) -> Result<Vec<f32>> {
    match t {
        None => Ok(vec![default; c]),
        Some(t) => {
            if t.shape() != [c] {
                return Err(TensorError::shape(
                    op,
                    format!("{name} of shape [{c}] (one value per channel)"),
                    format!("{name} of shape {}", fmt_shape(t.shape())),
                ));
            }
            Ok(t.to_vec())
        }
    }
}

/// Adds the 8 lanes pairwise in a fixed order.
#[inline(always)]
fn combine(a: [f64; 8]) -> f64 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `(Σ(x−k), Σ(x−k)²)` in f64: 8 interleaved partial sums over full blocks of
/// 8 ([`lane_sums::shifted`]), combined in a fixed order, then the tail in
/// order.
#[inline(always)]
pub(crate) fn shifted_sums(x: &[f32], k: f64) -> (f64, f64) {
    let full = x.len() / 8 * 8;
    let (a, b) = lane_sums::shifted(&x[..full], k);
    let (mut sa, mut sb) = (combine(a), combine(b));
    for &v in &x[full..] {
        let d = v as f64 - k;
        sa += d;
        sb += d * d;
    }
    (sa, sb)
}

/// `(Σ g, Σ g·(x−m))` with `g = dy·w` (`w` = 1 when `None`), in f64, in the
/// fixed lane order of [`shifted_sums`].
#[inline(always)]
pub(crate) fn centered_sums(dy: &[f32], x: &[f32], w: Option<&[f32]>, m: f64) -> (f64, f64) {
    let n = dy.len().min(x.len());
    let full = n / 8 * 8;
    let (a, b) = lane_sums::centered(&dy[..full], &x[..full], w.map(|w| &w[..full]), m);
    let (mut sa, mut sb) = (combine(a), combine(b));
    for i in full..n {
        let g = dy[i] as f64 * w.map_or(1.0, |w| w[i] as f64);
        sa += g;
        sb += g * (x[i] as f64 - m);
    }
    (sa, sb)
}
