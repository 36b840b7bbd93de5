//! Softmax and log-softmax along an axis: forward and backward.
//!
//! `x` is viewed as `[outer, K, inner]` with `K` the size of `axis`; each of
//! the `outer·inner` slices of length `K` is normalised. `inner = 1` (the last
//! axis) is the fast path: contiguous rows.

use rayon::prelude::*;

use crate::error::fmt_shape;
use crate::norm::PAR_MIN_ELEMS;
use crate::threads::install;
use crate::{Result, Tensor, TensorError};

/// `x` as `(outer, K, inner)` around `axis`.
fn split(op: &'static str, x: &Tensor, axis: usize) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if axis >= s.len() {
        return Err(TensorError::AxisOutOfRange {
            op,
            axis,
            rank: s.len(),
        });
    }
    Ok((
        s[..axis].iter().product(),
        s[axis],
        s[axis + 1..].iter().product(),
    ))
}

/// Runs `f(x_block, out_block)` over consecutive blocks of `block` elements,
/// in parallel for large inputs (blocks are independent).
fn for_blocks(xs: &[f32], out: &mut [f32], block: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if out.is_empty() {
        return;
    }
    let run = |(xb, ob): (&[f32], &mut [f32])| f(xb, ob);
    if out.len() < PAR_MIN_ELEMS {
        xs.chunks(block).zip(out.chunks_mut(block)).for_each(run);
    } else {
        let min = (PAR_MIN_ELEMS / 8 / block).max(1);
        install(|| {
            xs.par_chunks(block)
                .zip(out.par_chunks_mut(block))
                .with_min_len(min)
                .for_each(run)
        });
    }
}

/// Forward over one `[K, inner]` block.
fn forward_block(x: &[f32], y: &mut [f32], inner: usize, log: bool) {
    let k = x.len() / inner;
    let mut m = x[..inner].to_vec();
    for r in 1..k {
        for (mi, &v) in m.iter_mut().zip(&x[r * inner..(r + 1) * inner]) {
            *mi = mi.max(v);
        }
    }
    let mut s = vec![0f64; inner];
    for r in 0..k {
        let (xr, yr) = (
            &x[r * inner..(r + 1) * inner],
            &mut y[r * inner..(r + 1) * inner],
        );
        for i in 0..inner {
            let e = (xr[i] as f64 - m[i] as f64).exp();
            s[i] += e;
            if !log {
                yr[i] = e as f32;
            }
        }
    }
    if log {
        let ls: Vec<f64> = s.iter().map(|v| v.ln()).collect();
        for r in 0..k {
            let (xr, yr) = (
                &x[r * inner..(r + 1) * inner],
                &mut y[r * inner..(r + 1) * inner],
            );
            for i in 0..inner {
                yr[i] = (xr[i] as f64 - m[i] as f64 - ls[i]) as f32;
            }
        }
    } else {
        let inv: Vec<f64> = s.iter().map(|v| 1.0 / v).collect();
        for yr in y.chunks_mut(inner) {
            for (o, &iv) in yr.iter_mut().zip(&inv) {
                *o = (*o as f64 * iv) as f32;
            }
        }
    }
}

/// Forward along the last axis: one contiguous row.
fn forward_row(x: &[f32], y: &mut [f32], log: bool) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let mut s = 0f64;
    for (o, &v) in y.iter_mut().zip(x) {
        let e = (v as f64 - m).exp();
        s += e;
        *o = e as f32;
    }
    if log {
        let ls = m + s.ln();
        for (o, &v) in y.iter_mut().zip(x) {
            *o = (v as f64 - ls) as f32;
        }
    } else {
        let inv = 1.0 / s;
        for o in y.iter_mut() {
            *o = (*o as f64 * inv) as f32;
        }
    }
}

fn forward(op: &'static str, x: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    let (_, k, inner) = split(op, x, axis)?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let mut y = vec![0f32; xs.len()];
    if inner == 1 {
        for_blocks(xs, &mut y, k, |xr, yr| forward_row(xr, yr, log));
    } else {
        for_blocks(xs, &mut y, k * inner, |xb, yb| {
            forward_block(xb, yb, inner, log)
        });
    }
    Tensor::from_vec(y, x.shape())
}

/// Softmax along `axis`: `y = exp(x − max) / Σ exp(x − max)`.
///
/// - `x`: any shape and layout, `axis < rank`
///
/// Returns `y` of the shape of `x`. An all-`−∞` slice gives NaN, as PyTorch.
pub fn softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    forward("softmax", x, axis, false)
}

/// Log-softmax along `axis`: `y = x − max − ln Σ exp(x − max)`.
///
/// - `x`: any shape and layout, `axis < rank`
pub fn log_softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    forward("log_softmax", x, axis, true)
}

/// Backward over one `[K, inner]` block (or a row when `inner = 1`).
fn backward_block(dy: &[f32], y: &[f32], dx: &mut [f32], inner: usize, log: bool) {
    // softmax: Σ dy·y; log-softmax: Σ dy (per slice, sequential over K).
    let mut s = vec![0f64; inner];
    for (dr, yr) in dy.chunks(inner).zip(y.chunks(inner)) {
        for ((si, &d), &v) in s.iter_mut().zip(dr).zip(yr) {
            *si += if log { d as f64 } else { d as f64 * v as f64 };
        }
    }
    for ((dr, yr), xr) in dy
        .chunks(inner)
        .zip(y.chunks(inner))
        .zip(dx.chunks_mut(inner))
    {
        for (((o, &d), &v), &si) in xr.iter_mut().zip(dr).zip(yr).zip(&s) {
            let (d, v) = (d as f64, v as f64);
            *o = if log { d - v.exp() * si } else { v * (d - si) } as f32;
        }
    }
}

fn backward(op: &'static str, dy: &Tensor, y: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    let (_, k, inner) = split(op, y, axis)?;
    if dy.shape() != y.shape() {
        return Err(TensorError::shape(
            op,
            format!("dy of the shape of y {}", fmt_shape(y.shape())),
            format!("dy of shape {}", fmt_shape(dy.shape())),
        ));
    }
    let (y, dy) = (y.contiguous(), dy.contiguous());
    let (ys, dys) = (
        y.as_slice().expect("contiguous"),
        dy.as_slice().expect("contiguous"),
    );
    let mut dx = vec![0f32; ys.len()];
    let block = k * inner;
    if block > 0 {
        // Pair each dx block with its y block; dy is indexed by block offset.
        let f = |(b, (yb, db)): (usize, (&[f32], &mut [f32]))| {
            backward_block(&dys[b * block..(b + 1) * block], yb, db, inner, log)
        };
        if ys.len() < PAR_MIN_ELEMS {
            ys.chunks(block)
                .zip(dx.chunks_mut(block))
                .enumerate()
                .for_each(f);
        } else {
            let min = (PAR_MIN_ELEMS / 8 / block).max(1);
            install(|| {
                ys.par_chunks(block)
                    .zip(dx.par_chunks_mut(block))
                    .enumerate()
                    .with_min_len(min)
                    .for_each(f)
            });
        }
    }
    Tensor::from_vec(dx, y.shape())
}

/// Softmax backward: `dx = y·(dy − Σ_axis dy·y)`.
///
/// - `dy`, `y`: the shape of the forward's input; `y` is the output of
///   [`softmax`] along the same `axis`.
pub fn softmax_backward(dy: &Tensor, y: &Tensor, axis: usize) -> Result<Tensor> {
    backward("softmax_backward", dy, y, axis, false)
}

/// Log-softmax backward: `dx = dy − exp(y)·Σ_axis dy`.
///
/// - `dy`, `y`: the shape of the forward's input; `y` is the output of
///   [`log_softmax`] along the same `axis`.
pub fn log_softmax_backward(dy: &Tensor, y: &Tensor, axis: usize) -> Result<Tensor> {
    backward("log_softmax_backward", dy, y, axis, true)
}

#[cfg(test)]
mod tests;
