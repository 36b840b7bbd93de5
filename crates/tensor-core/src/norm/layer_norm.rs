//! LayerNorm over the last dimension: forward and backward.
//!
//! `y = (x − mean) · rstd · weight + bias` per row of `C` elements, with
//! `rstd = 1/sqrt(var + eps)` and the biased variance, as PyTorch.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, centered_sums, check_eps, param_vec, shifted_sums};
use crate::error::fmt_shape;
use crate::fill::filled;
use crate::threads::install;
use crate::vectorized::vectorized;
use crate::{Result, Tensor, TensorError};

/// Output of [`layer_norm`]: the result and the statistics backward needs.
#[derive(Clone, Debug)]
pub struct LayerNormOutput {
    /// Normalised output, same shape as `x`: `[..., C]`.
    pub y: Tensor,
    /// Row means, shape of `x` without its last dimension: `[...]`.
    pub mean: Tensor,
    /// Row reciprocal standard deviations `1/sqrt(var + eps)`: `[...]`.
    pub rstd: Tensor,
}

/// Gradients from [`layer_norm_backward`].
#[derive(Clone, Debug)]
pub struct LayerNormGrads {
    /// Gradient with respect to `x`: `[..., C]`.
    pub dx: Tensor,
    /// Gradient with respect to `weight`: `[C]` (computed even when the layer
    /// has no weight; then it is simply unused).
    pub dweight: Tensor,
    /// Gradient with respect to `bias`: `[C]`.
    pub dbias: Tensor,
}

/// Splits `x: [..., C]` into (rows, C), checking rank ≥ 1 and C ≥ 1.
fn rows_cols(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    let Some(&c) = x.shape().last() else {
        return Err(TensorError::shape(
            op,
            "a tensor of rank ≥ 1 ([..., C])",
            "a 0-d tensor",
        ));
    };
    if c == 0 {
        return Err(TensorError::shape(
            op,
            "a last (normalised) dimension C ≥ 1",
            format!("shape {}", fmt_shape(x.shape())),
        ));
    }
    Ok((x.numel() / c, c))
}

/// Rows per chunk of the backward's `dweight`/`dbias` reduction: a function of
/// the shape only, so the summation order never depends on the thread count.
/// At least 32 rows, so the per-chunk `[2, C]` partials cost ≤ 1/16 of the
/// row work, and at most 64 chunks.
fn rows_per_chunk(rows: usize) -> usize {
    rows.div_ceil(64).max(32).min(rows.max(1))
}

/// LayerNorm forward over the last dimension.
///
/// - `x: [..., C]` (any leading shape, any layout)
/// - `weight`, `bias`: `[C]` or `None` (no affine transform)
/// - `eps > 0`, finite
///
/// Returns `y: [..., C]`, `mean: [...]`, `rstd: [...]`. Statistics are one
/// pass per row of shifted sums in f64; `(x − mean)·rstd` is formed in f64 and
/// rounded once before the affine transform.
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<LayerNormOutput> {
    const OP: &str = "layer_norm";
    check_eps(OP, eps)?;
    let (rows, c) = rows_cols(OP, x)?;
    let w = param_vec(OP, "weight", weight, c, 1.0)?;
    let b = param_vec(OP, "bias", bias, c, 0.0)?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let eps = eps as f64;

    let mut mean = vec![0f32; rows];
    let mut rstd = vec![0f32; rows];
    // Rows from `r0`: their outputs, means and reciprocal deviations.
    type Rows<'a> = (&'a mut [MaybeUninit<f32>], (&'a mut [f32], &'a mut [f32]));
    let rows_from = |r0: usize, (y, (m, s)): Rows| {
        vectorized(
            #[inline(always)]
            || {
                let it = y.chunks_mut(c).zip(m.iter_mut().zip(s.iter_mut()));
                for (r, (yr, (m, s))) in (r0..).zip(it) {
                    let xr = &xs[r * c..(r + 1) * c];
                    let k = xr[0] as f64;
                    let (s1, s2) = shifted_sums(xr, k);
                    let n = c as f64;
                    let dm = s1 / n;
                    let var = ((s2 - s1 * dm) / n).max(0.0);
                    let mu = k + dm;
                    let rs = 1.0 / (var + eps).sqrt();
                    *m = mu as f32;
                    *s = rs as f32;
                    for (((o, &v), &wi), &bi) in yr.iter_mut().zip(xr).zip(&w).zip(&b) {
                        o.write(((v as f64 - mu) * rs) as f32 * wi + bi);
                    }
                }
            },
        )
    };
    let fill = |y: &mut [MaybeUninit<f32>]| {
        if rows * c < PAR_MIN_ELEMS {
            rows_from(0, (y, (&mut mean, &mut rstd)));
        } else {
            let task = (PAR_MIN_ELEMS / 8 / c).max(1);
            install(|| {
                y.par_chunks_mut(task * c)
                    .zip(mean.par_chunks_mut(task).zip(rstd.par_chunks_mut(task)))
                    .enumerate()
                    .for_each(|(t, part)| rows_from(t * task, part))
            });
        }
    };
    // SAFETY: `y`'s `rows` rows of `c ≥ 1` elements (`rows_cols` refuses
    // empty rows) pair up with `mean` and `rstd`; `rows_from` writes each of
    // them.
    let y = unsafe { filled(rows * c, fill) };
    let lead = &x.shape()[..x.ndim() - 1];
    Ok(LayerNormOutput {
        y: Tensor::from_vec(y, x.shape())?,
        mean: Tensor::from_vec(mean, lead)?,
        rstd: Tensor::from_vec(rstd, lead)?,
    })
}

/// LayerNorm backward.
///
/// - `dy, x: [..., C]` (any layout)
/// - `mean, rstd: [...]` as returned by [`layer_norm`]
/// - `weight: [C]` or `None`
///
/// With `g = dy·weight` and `x̂ = (x − mean)·rstd`, per row
/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`; over all rows
/// `dweight = Σ dy·x̂`, `dbias = Σ dy`. One pass per row for the two row sums
/// (f64), then `dx` is written. `dweight`/`dbias` are summed in f64 per fixed
/// chunk of rows and the chunk partials added in chunk order.
pub fn layer_norm_backward(
    dy: &Tensor,
    x: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    weight: Option<&Tensor>,
) -> Result<LayerNormGrads> {
    const OP: &str = "layer_norm_backward";
    let (rows, c) = rows_cols(OP, x)?;
    if dy.shape() != x.shape() {
        return Err(TensorError::shape(
            OP,
            format!("dy of the shape of x {}", fmt_shape(x.shape())),
            format!("dy of shape {}", fmt_shape(dy.shape())),
        ));
    }
    let lead = &x.shape()[..x.ndim() - 1];
    for (name, t) in [("mean", mean), ("rstd", rstd)] {
        if t.shape() != lead {
            return Err(TensorError::shape(
                OP,
                format!(
                    "{name} of shape {} (x without its last dim)",
                    fmt_shape(lead)
                ),
                format!("{name} of shape {}", fmt_shape(t.shape())),
            ));
        }
    }
    let w = param_vec(OP, "weight", weight, c, 1.0)?;
    let (x, dy, mean, rstd) = (
        x.contiguous(),
        dy.contiguous(),
        mean.to_vec(),
        rstd.to_vec(),
    );
    let xs = x.as_slice().expect("contiguous");
    let dys = dy.as_slice().expect("contiguous");

    let rpc = rows_per_chunk(rows);
    // Each chunk of rows writes its dx rows and returns its partial
    // [dweight (C) | dbias (C)] in f64.
    let chunk = |(ci, dxc): (usize, &mut [MaybeUninit<f32>])| -> Vec<f64> {
        vectorized(
            #[inline(always)]
            || {
                let mut part = vec![0f64; 2 * c];
                let (pw, pb) = part.split_at_mut(c);
                for (j, dxr) in dxc.chunks_mut(c).enumerate() {
                    let r = ci * rpc + j;
                    let xr = &xs[r * c..(r + 1) * c];
                    let dyr = &dys[r * c..(r + 1) * c];
                    let (mu, rs) = (mean[r] as f64, rstd[r] as f64);
                    let (sg, sgxc) = centered_sums(dyr, xr, Some(&w), mu);
                    // mean(g) and mean(g·x̂), x̂ = (x − mean)·rstd.
                    let (mg, mgx) = (sg / c as f64, sgxc * rs / c as f64);
                    let it = dxr
                        .iter_mut()
                        .zip(xr)
                        .zip(dyr)
                        .zip(&w)
                        .zip(pw.iter_mut().zip(pb.iter_mut()));
                    for ((((o, &xv), &d), &wv), (pwi, pbi)) in it {
                        let xhat = (xv as f64 - mu) * rs;
                        let d = d as f64;
                        o.write((rs * (d * wv as f64 - mg - xhat * mgx)) as f32);
                        *pwi += d * xhat;
                        *pbi += d;
                    }
                }
                part
            },
        )
    };
    let mut parts: Vec<Vec<f64>> = Vec::new();
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        parts = if rows * c < PAR_MIN_ELEMS {
            dx.chunks_mut(rpc * c).enumerate().map(chunk).collect()
        } else {
            install(|| dx.par_chunks_mut(rpc * c).enumerate().map(chunk).collect())
        };
    };
    // SAFETY: the chunks of `rpc` rows cover `dx`; `chunk` writes every row
    // of its chunk.
    let dx = unsafe { filled(rows * c, fill) };
    let mut total = vec![0f64; 2 * c];
    for p in &parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    let dweight = total[..c].iter().map(|&v| v as f32).collect();
    let dbias = total[c..].iter().map(|&v| v as f32).collect();
    Ok(LayerNormGrads {
        dx: Tensor::from_vec(dx, x.shape())?,
        dweight: Tensor::from_vec(dweight, &[c])?,
        dbias: Tensor::from_vec(dbias, &[c])?,
    })
}

#[cfg(test)]
mod tests;
