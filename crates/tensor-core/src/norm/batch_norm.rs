//! BatchNorm over channel dimension 1: training and eval forward, and both backwards.
//!
//! `x` is `[N, C]` (BatchNorm1d), `[N, C, L]` (BatchNorm1d) or `[N, C, H, W]`
//! (BatchNorm2d), viewed as `[N, C, S]`; statistics are per channel over the
//! `n = N·S` values of that channel, as PyTorch.

use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, centered_sums, check_eps, param_vec, shifted_sums};
use crate::error::fmt_shape;
use crate::threads::install;
use crate::{Result, Tensor, TensorError};

/// Output of [`batch_norm_train`].
#[derive(Clone, Debug)]
pub struct BatchNormOutput {
    /// Normalised output, shape of `x`.
    pub y: Tensor,
    /// Batch mean per channel: `[C]`.
    pub mean: Tensor,
    /// Batch `1/sqrt(var + eps)` per channel (biased variance): `[C]`.
    pub invstd: Tensor,
}

/// Gradients from [`batch_norm_backward`] and [`batch_norm_eval_backward`].
#[derive(Clone, Debug)]
pub struct BatchNormGrads {
    /// Gradient with respect to `x`, shape of `x`.
    pub dx: Tensor,
    /// Gradient with respect to `weight`: `[C]` (computed even without a weight).
    pub dweight: Tensor,
    /// Gradient with respect to `bias`: `[C]`.
    pub dbias: Tensor,
}

/// `x` as `(N, C, S)`, or an error for ranks other than 2, 3, 4.
fn bn_dims(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    match s.len() {
        2..=4 => Ok((s[0], s[1], s[2..].iter().product())),
        _ => Err(TensorError::shape(
            op,
            "a 2-d, 3-d or 4-d tensor ([N, C], [N, C, L] or [N, C, H, W])",
            format!("shape {}", fmt_shape(s)),
        )),
    }
}

/// Checks that a per-channel statistic has shape `[c]`.
fn check_stat(op: &'static str, name: &str, t: &Tensor, c: usize) -> Result<()> {
    if t.shape() != [c] {
        return Err(TensorError::shape(
            op,
            format!("{name} of shape [{c}] (one value per channel)"),
            format!("{name} of shape {}", fmt_shape(t.shape())),
        ));
    }
    Ok(())
}

/// Checks `dy` has the shape of `x`.
fn check_dy(op: &'static str, dy: &Tensor, x: &Tensor) -> Result<()> {
    if dy.shape() != x.shape() {
        return Err(TensorError::shape(
            op,
            format!("dy of the shape of x {}", fmt_shape(x.shape())),
            format!("dy of shape {}", fmt_shape(dy.shape())),
        ));
    }
    Ok(())
}

/// Per-channel `(Σ a, Σ b)` over `[N, C, S]` data, where `row(ch, base)` returns
/// the two sums over the `S` elements starting at flat offset `base`.
///
/// Order (independent of threads): within a fixed chunk of samples, rows are
/// added sample by sample; chunk partials are added in chunk order. Units of
/// work are (chunk, channel) pairs, so the split over channels (which does
/// not affect any sum) gives parallelism even for a batch of one.
fn channel_sums(
    (n, c, s): (usize, usize, usize),
    row: impl Fn(usize, usize) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let spc = (PAR_MIN_ELEMS / (c * s).max(1)).clamp(1, n.max(1));
    let chunks = n.div_ceil(spc);
    let unit = |u: usize| {
        let (k, ch) = (u / c, u % c);
        let mut acc = (0f64, 0f64);
        for i in k * spc..((k + 1) * spc).min(n) {
            let (p, q) = row(ch, (i * c + ch) * s);
            acc.0 += p;
            acc.1 += q;
        }
        acc
    };
    let parts: Vec<(f64, f64)> = if n * c * s < PAR_MIN_ELEMS {
        (0..chunks * c).map(unit).collect()
    } else {
        let min_units = (4096 / (spc * s).max(1)).max(1);
        install(|| {
            (0..chunks * c)
                .into_par_iter()
                .with_min_len(min_units)
                .map(unit)
                .collect()
        })
    };
    let mut total = vec![(0f64, 0f64); c];
    for part in parts.chunks(c.max(1)) {
        for (t, p) in total.iter_mut().zip(part) {
            t.0 += p.0;
            t.1 += p.1;
        }
    }
    total
}

/// Fills `out` (`[N, C, S]`, row-major) row by row: `f(ch, base, out_row)`.
fn map_rows(
    (n, c, s): (usize, usize, usize),
    out: &mut [f32],
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    if n * c * s == 0 {
        return;
    }
    let row = |(r, o): (usize, &mut [f32])| f(r % c, r * s, o);
    if n * c * s < PAR_MIN_ELEMS {
        out.chunks_mut(s).enumerate().for_each(row);
    } else {
        let min_rows = (4096 / s).max(1);
        install(|| {
            out.par_chunks_mut(s)
                .enumerate()
                .with_min_len(min_rows)
                .for_each(row)
        });
    }
}

/// `y = ((x − mean)·invstd)·w + b`, the normalisation in f64 rounded once.
fn normalise(
    dims: (usize, usize, usize),
    xs: &[f32],
    mean: &[f64],
    invstd: &[f64],
    w: &[f32],
    b: &[f32],
) -> Vec<f32> {
    let mut y = vec![0f32; xs.len()];
    map_rows(dims, &mut y, |ch, base, yr| {
        let (m, is, wc, bc) = (mean[ch], invstd[ch], w[ch], b[ch]);
        let len = yr.len();
        for (o, &v) in yr.iter_mut().zip(&xs[base..base + len]) {
            *o = ((v as f64 - m) * is) as f32 * wc + bc;
        }
    });
    y
}

fn to_tensor(v: &[f64], c: usize) -> Result<Tensor> {
    Tensor::from_vec(v.iter().map(|&v| v as f32).collect(), &[c])
}

/// BatchNorm forward in training mode (batch statistics).
///
/// - `x: [N, C]`, `[N, C, L]` or `[N, C, H, W]` (any layout)
/// - `weight`, `bias`: `[C]` or `None` (affine=false)
/// - `running_mean`, `running_var`: `[C]` or `None`; updated in place as
///   `r ← (1 − momentum)·r + momentum·batch`, with the *unbiased* batch
///   variance (`var·n/(n−1)`) for `running_var`, as PyTorch
/// - `momentum ∈ [0, 1]`, `eps > 0`
///
/// `y` is normalised with the *biased* variance. Needs `n = N·S > 1` values per
/// channel. Statistics: one pass of shifted f64 sums per channel.
pub fn batch_norm_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: Option<&mut Tensor>,
    running_var: Option<&mut Tensor>,
    momentum: f32,
    eps: f32,
) -> Result<BatchNormOutput> {
    const OP: &str = "batch_norm_train";
    check_eps(OP, eps)?;
    if !(0.0..=1.0).contains(&momentum) {
        return Err(TensorError::arg(
            OP,
            format!("momentum must be in [0, 1], got {momentum}"),
        ));
    }
    let dims @ (n, c, s) = bn_dims(OP, x)?;
    let w = param_vec(OP, "weight", weight, c, 1.0)?;
    let b = param_vec(OP, "bias", bias, c, 0.0)?;
    if let Some(r) = &running_mean {
        check_stat(OP, "running_mean", r, c)?;
    }
    if let Some(r) = &running_var {
        check_stat(OP, "running_var", r, c)?;
    }
    let count = n * s;
    if count <= 1 {
        return Err(TensorError::arg(
            OP,
            format!(
                "expected more than 1 value per channel when training, got input of shape {}",
                fmt_shape(x.shape())
            ),
        ));
    }
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    // Shift each channel by its first value (sample 0, position 0).
    let shift: Vec<f64> = (0..c).map(|ch| xs[ch * s] as f64).collect();
    let sums = channel_sums(dims, |ch, base| {
        shifted_sums(&xs[base..base + s], shift[ch])
    });
    let nf = count as f64;
    let mut mean = vec![0f64; c];
    let mut var = vec![0f64; c];
    for ch in 0..c {
        let (s1, s2) = sums[ch];
        let dm = s1 / nf;
        mean[ch] = shift[ch] + dm;
        var[ch] = ((s2 - s1 * dm) / nf).max(0.0);
    }
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps as f64).sqrt()).collect();
    let y = normalise(dims, xs, &mean, &invstd, &w, &b);

    let m = momentum as f64;
    let update = |r: &mut Tensor, batch: &dyn Fn(usize) -> f64| {
        for (ch, v) in r.array_mut().iter_mut().enumerate() {
            *v = ((1.0 - m) * *v as f64 + m * batch(ch)) as f32;
        }
    };
    if let Some(r) = running_mean {
        update(r, &|ch| mean[ch]);
    }
    if let Some(r) = running_var {
        update(r, &|ch| var[ch] * nf / (nf - 1.0));
    }
    Ok(BatchNormOutput {
        y: Tensor::from_vec(y, x.shape())?,
        mean: to_tensor(&mean, c)?,
        invstd: to_tensor(&invstd, c)?,
    })
}

/// BatchNorm backward for training mode.
///
/// - `dy, x`: `[N, C, …]` as in [`batch_norm_train`] (any layout)
/// - `mean, invstd: [C]` as returned by [`batch_norm_train`]
/// - `weight: [C]` or `None`
///
/// With `x̂ = (x − mean)·invstd`, per channel `dbias = Σ dy`,
/// `dweight = Σ dy·x̂` and `dx = w·invstd·(dy − dbias/n − x̂·dweight/n)`
/// (the batch statistics depend on `x`). Sums in f64, in the fixed order of
/// [`batch_norm_train`].
pub fn batch_norm_backward(
    dy: &Tensor,
    x: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_backward";
    let dims @ (n, c, s) = bn_dims(OP, x)?;
    check_dy(OP, dy, x)?;
    check_stat(OP, "mean", mean, c)?;
    check_stat(OP, "invstd", invstd, c)?;
    let w = param_vec(OP, "weight", weight, c, 1.0)?;
    let mean: Vec<f64> = mean.to_vec().into_iter().map(f64::from).collect();
    let invstd: Vec<f64> = invstd.to_vec().into_iter().map(f64::from).collect();
    let (x, dy) = (x.contiguous(), dy.contiguous());
    let (xs, dys) = (
        x.as_slice().expect("contiguous"),
        dy.as_slice().expect("contiguous"),
    );
    let sums = channel_sums(dims, |ch, base| {
        centered_sums(&dys[base..base + s], &xs[base..base + s], None, mean[ch])
    });
    let nf = (n * s) as f64;
    let dbias: Vec<f64> = sums.iter().map(|p| p.0).collect();
    let dweight: Vec<f64> = (0..c).map(|ch| sums[ch].1 * invstd[ch]).collect();
    let mut dx = vec![0f32; xs.len()];
    map_rows(dims, &mut dx, |ch, base, out| {
        let (m, is) = (mean[ch], invstd[ch]);
        let (mb, mw, scale) = (dbias[ch] / nf, dweight[ch] / nf, w[ch] as f64 * is);
        let len = out.len();
        let rows = xs[base..base + len].iter().zip(&dys[base..base + len]);
        for (o, (&xv, &d)) in out.iter_mut().zip(rows) {
            let xhat = (xv as f64 - m) * is;
            *o = (scale * (d as f64 - mb - xhat * mw)) as f32;
        }
    });
    Ok(BatchNormGrads {
        dx: Tensor::from_vec(dx, x.shape())?,
        dweight: to_tensor(&dweight, c)?,
        dbias: to_tensor(&dbias, c)?,
    })
}

/// Checks the running statistics and returns them with `1/sqrt(var + eps)`.
fn running_stats(
    op: &'static str,
    running_mean: &Tensor,
    running_var: &Tensor,
    c: usize,
    eps: f32,
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_eps(op, eps)?;
    check_stat(op, "running_mean", running_mean, c)?;
    check_stat(op, "running_var", running_var, c)?;
    let rv = running_var.to_vec();
    if let Some((ch, v)) = rv.iter().enumerate().find(|(_, v)| v.is_nan() || **v < 0.0) {
        return Err(TensorError::arg(
            op,
            format!("running_var must be ≥ 0 everywhere, got {v} for channel {ch}"),
        ));
    }
    let mean = running_mean.to_vec().into_iter().map(f64::from).collect();
    let invstd = rv
        .into_iter()
        .map(|v| 1.0 / (v as f64 + eps as f64).sqrt())
        .collect();
    Ok((mean, invstd))
}

/// BatchNorm forward in eval mode (running statistics).
///
/// - `x: [N, C]`, `[N, C, L]` or `[N, C, H, W]` (any layout, any `N`)
/// - `weight`, `bias`: `[C]` or `None`
/// - `running_mean`, `running_var: [C]` (`running_var ≥ 0`), `eps > 0`
///
/// `y = (x − running_mean)/sqrt(running_var + eps)·weight + bias`.
pub fn batch_norm_eval(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    const OP: &str = "batch_norm_eval";
    let dims @ (_, c, _) = bn_dims(OP, x)?;
    let (mean, invstd) = running_stats(OP, running_mean, running_var, c, eps)?;
    let w = param_vec(OP, "weight", weight, c, 1.0)?;
    let b = param_vec(OP, "bias", bias, c, 0.0)?;
    let x = x.contiguous();
    let y = normalise(
        dims,
        x.as_slice().expect("contiguous"),
        &mean,
        &invstd,
        &w,
        &b,
    );
    Tensor::from_vec(y, x.shape())
}

/// BatchNorm backward for eval mode (the statistics are constants).
///
/// - `dy, x`: as in [`batch_norm_eval`]; `running_mean`, `running_var: [C]`
/// - `weight: [C]` or `None`; `eps` as in the forward
///
/// `dx = dy·weight·invstd`, `dweight = Σ dy·(x − running_mean)·invstd`,
/// `dbias = Σ dy`, with `invstd = 1/sqrt(running_var + eps)`.
pub fn batch_norm_eval_backward(
    dy: &Tensor,
    x: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: Option<&Tensor>,
    eps: f32,
) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_eval_backward";
    let dims @ (_, c, s) = bn_dims(OP, x)?;
    check_dy(OP, dy, x)?;
    let (mean, invstd) = running_stats(OP, running_mean, running_var, c, eps)?;
    let w = param_vec(OP, "weight", weight, c, 1.0)?;
    let (x, dy) = (x.contiguous(), dy.contiguous());
    let (xs, dys) = (
        x.as_slice().expect("contiguous"),
        dy.as_slice().expect("contiguous"),
    );
    let sums = channel_sums(dims, |ch, base| {
        centered_sums(&dys[base..base + s], &xs[base..base + s], None, mean[ch])
    });
    let dbias: Vec<f64> = sums.iter().map(|p| p.0).collect();
    let dweight: Vec<f64> = (0..c).map(|ch| sums[ch].1 * invstd[ch]).collect();
    let mut dx = vec![0f32; xs.len()];
    map_rows(dims, &mut dx, |ch, base, out| {
        let scale = w[ch] as f64 * invstd[ch];
        for (o, &d) in out.iter_mut().zip(&dys[base..base + s]) {
            *o = (d as f64 * scale) as f32;
        }
    });
    Ok(BatchNormGrads {
        dx: Tensor::from_vec(dx, x.shape())?,
        dweight: to_tensor(&dweight, c)?,
        dbias: to_tensor(&dbias, c)?,
    })
}

#[cfg(test)]
mod tests;
