//! Mean cross-entropy of logits `[N, K]` with label smoothing: forward and backward.
//!
//! With `lse_i = ln Σ_k exp(x_ik)` and `log p_ik = x_ik − lse_i`:
//! - class targets `t_i`: `loss_i = (1 − ε)·(−log p_{i,t_i}) + ε·mean_k(−log p_ik)`,
//! - soft targets `t_ik` (e.g. mixup): `t' = t·(1 − ε) + ε/K`,
//!   `loss_i = −Σ_k t'_ik·log p_ik`,
//!
//! and `loss = Σ_i loss_i / N`, as PyTorch's `cross_entropy(reduction="mean")`.

use rayon::prelude::*;

use crate::error::fmt_shape;
use crate::norm::PAR_MIN_ELEMS;
use crate::threads::install;
use crate::{Result, Tensor, TensorError};

/// The targets of [`cross_entropy`].
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class index per sample: `[N]`, each `< K`.
    Classes(&'a [usize]),
    /// A probability vector per sample: `[N, K]` (any layout). Rows are used
    /// as given (not checked to sum to 1), as PyTorch.
    Soft(&'a Tensor),
}

/// Validated inputs with contiguous data.
struct Checked<'a> {
    n: usize,
    k: usize,
    logits: Tensor,
    targets: Owned<'a>,
}

/// Validated targets; soft targets made contiguous.
enum Owned<'a> {
    Classes(&'a [usize]),
    Soft(Tensor),
}

/// Targets resolved to slices.
#[derive(Clone, Copy)]
enum Tg<'a> {
    Classes(&'a [usize]),
    Soft(&'a [f32]),
}

impl Owned<'_> {
    fn slices(&self) -> Tg<'_> {
        match self {
            Owned::Classes(t) => Tg::Classes(t),
            Owned::Soft(t) => Tg::Soft(t.as_slice().expect("contiguous")),
        }
    }
}

fn check<'a>(
    op: &'static str,
    logits: &Tensor,
    targets: Targets<'a>,
    label_smoothing: f32,
) -> Result<Checked<'a>> {
    logits.expect_rank(op, 2, "N×K logits")?;
    let (n, k) = (logits.shape()[0], logits.shape()[1]);
    if n == 0 || k == 0 {
        return Err(TensorError::shape(
            op,
            "logits [N, K] with N ≥ 1 and K ≥ 1 (the mean over no samples or classes is undefined)",
            format!("logits of shape {}", fmt_shape(logits.shape())),
        ));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(TensorError::arg(
            op,
            format!("label_smoothing must be in [0, 1], got {label_smoothing}"),
        ));
    }
    let targets = match targets {
        Targets::Classes(t) => {
            if t.len() != n {
                return Err(TensorError::shape(
                    op,
                    format!(
                        "{n} class targets (one per row of logits {})",
                        fmt_shape(logits.shape())
                    ),
                    format!("{} targets", t.len()),
                ));
            }
            if let Some((i, &c)) = t.iter().enumerate().find(|&(_, &c)| c >= k) {
                return Err(TensorError::arg(
                    op,
                    format!(
                        "target {c} at position {i} is out of range for K = {k} classes (expected 0..{k})"
                    ),
                ));
            }
            Owned::Classes(t)
        }
        Targets::Soft(t) => {
            if t.shape() != logits.shape() {
                return Err(TensorError::shape(
                    op,
                    format!(
                        "soft targets of the shape of logits {}",
                        fmt_shape(logits.shape())
                    ),
                    format!("soft targets of shape {}", fmt_shape(t.shape())),
                ));
            }
            Owned::Soft(t.contiguous())
        }
    };
    Ok(Checked {
        n,
        k,
        logits: logits.contiguous(),
        targets,
    })
}

/// `(max, ln Σ exp(x − max) + max)` of a row, in f64.
fn log_sum_exp(x: &[f32]) -> f64 {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let s: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
    m + s.ln()
}

/// Mean cross-entropy of `logits: [N, K]` (any layout) against `targets`,
/// with `label_smoothing ∈ [0, 1]`.
///
/// Each row's loss is computed in f64 (log-sum-exp with the maximum
/// subtracted) and the rows are added in row order.
pub fn cross_entropy(logits: &Tensor, targets: Targets<'_>, label_smoothing: f32) -> Result<f32> {
    const OP: &str = "cross_entropy";
    let Checked {
        n,
        k,
        logits,
        targets,
    } = check(OP, logits, targets, label_smoothing)?;
    let xs = logits.as_slice().expect("contiguous");
    let tg = targets.slices();
    let eps = label_smoothing as f64;
    let kf = k as f64;
    let row_loss = |i: usize| -> f64 {
        let x = &xs[i * k..(i + 1) * k];
        let lse = log_sum_exp(x);
        match tg {
            Tg::Classes(t) => {
                let nll = lse - x[t[i]] as f64;
                let smooth = x.iter().map(|&v| lse - v as f64).sum::<f64>() / kf;
                (1.0 - eps) * nll + eps * smooth
            }
            Tg::Soft(ts) => {
                let t = &ts[i * k..(i + 1) * k];
                x.iter()
                    .zip(t)
                    .map(|(&v, &tv)| (tv as f64 * (1.0 - eps) + eps / kf) * (lse - v as f64))
                    .sum()
            }
        }
    };
    let losses: Vec<f64> = if n * k < PAR_MIN_ELEMS {
        (0..n).map(row_loss).collect()
    } else {
        let min = (PAR_MIN_ELEMS / 8 / k).max(1);
        install(|| {
            (0..n)
                .into_par_iter()
                .with_min_len(min)
                .map(row_loss)
                .collect()
        })
    };
    Ok((losses.iter().sum::<f64>() / n as f64) as f32)
}

/// Gradient of [`cross_entropy`] with respect to the logits, times the
/// upstream gradient `grad_loss` of the scalar loss.
///
/// - `logits: [N, K]`, `targets`, `label_smoothing`: as in the forward
///
/// Returns `dlogits: [N, K] = grad_loss/N · (softmax(x)·Σ_k t'_k − t')`, where
/// `t'` are the smoothed targets (one-hot·(1 − ε) + ε/K for class targets).
/// For targets that sum to 1 per row (class targets always do) this is the
/// familiar `(softmax − t')/N`.
pub fn cross_entropy_backward(
    logits: &Tensor,
    targets: Targets<'_>,
    label_smoothing: f32,
    grad_loss: f32,
) -> Result<Tensor> {
    const OP: &str = "cross_entropy_backward";
    let Checked {
        n,
        k,
        logits,
        targets,
    } = check(OP, logits, targets, label_smoothing)?;
    let xs = logits.as_slice().expect("contiguous");
    let tg = targets.slices();
    let eps = label_smoothing as f64;
    let kf = k as f64;
    let scale = grad_loss as f64 / n as f64;
    let mut dx = vec![0f32; n * k];
    let row = |(i, d): (usize, &mut [f32])| {
        let x = &xs[i * k..(i + 1) * k];
        let lse = log_sum_exp(x);
        match tg {
            Tg::Classes(t) => {
                for (j, (o, &v)) in d.iter_mut().zip(x).enumerate() {
                    let tj = if j == t[i] { 1.0 - eps } else { 0.0 } + eps / kf;
                    *o = (scale * ((v as f64 - lse).exp() - tj)) as f32;
                }
            }
            Tg::Soft(ts) => {
                let t = &ts[i * k..(i + 1) * k];
                let smooth = |tv: f32| tv as f64 * (1.0 - eps) + eps / kf;
                let sum_t: f64 = t.iter().map(|&tv| smooth(tv)).sum();
                for ((o, &v), &tv) in d.iter_mut().zip(x).zip(t) {
                    *o = (scale * ((v as f64 - lse).exp() * sum_t - smooth(tv))) as f32;
                }
            }
        }
    };
    if n * k < PAR_MIN_ELEMS {
        dx.chunks_mut(k).enumerate().for_each(row);
    } else {
        let min = (PAR_MIN_ELEMS / 8 / k).max(1);
        install(|| {
            dx.par_chunks_mut(k)
                .enumerate()
                .with_min_len(min)
                .for_each(row)
        });
    }
    Tensor::from_vec(dx, &[n, k])
}

#[cfg(test)]
mod tests;
