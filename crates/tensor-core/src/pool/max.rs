//! Max pooling: forward with argmax indices, backward scattering through them.

use rayon::prelude::*;

use super::{Win, check_dy, rank4, window};
use crate::error::fmt_shape;
use crate::{Result, Tensor, TensorError, threads};

/// Max pooling, PyTorch `max_pool2d(..., return_indices=True)` with `ceil_mode=False`.
///
/// `x: [N, C, H, W]` → `(y: [N, C, OH, OW], indices)`, where `indices[k]` is the
/// flat offset `ih·W + iw` of `y`'s k-th element (row-major) inside its input
/// plane. Padding is −∞; a NaN in a window wins (PyTorch's rule
/// `val > max || isnan(val)`, later elements replacing earlier ones).
/// Errors on rank ≠ 4, a zero kernel or stride, `padding > kernel/2`, or a
/// kernel larger than the padded input.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<(Tensor, Vec<usize>)> {
    let g = window("max_pool2d", x.shape(), kernel, stride, padding)?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![0.0f32; g.n * g.c * ohw];
    let mut idx = vec![0usize; y.len()];
    if !y.is_empty() {
        threads::install(|| {
            y.par_chunks_mut(ohw)
                .zip(idx.par_chunks_mut(ohw))
                .enumerate()
                .for_each(|(plane, (yp, ip))| forward_plane(&g, &xs[plane * hw..][..hw], yp, ip));
        });
    }
    Ok((Tensor::from_vec(y, &g.y_shape())?, idx))
}

fn forward_plane(g: &Win, xp: &[f32], yp: &mut [f32], ip: &mut [usize]) {
    for oh in 0..g.oh {
        let (h0, h1, _) = Win::span(oh, g.sh, g.ph, g.kh, g.h);
        for ow in 0..g.ow {
            let (w0, w1, _) = Win::span(ow, g.sw, g.pw, g.kw, g.w);
            let mut best = f32::NEG_INFINITY;
            let mut at = h0 * g.w + w0;
            for ih in h0..h1 {
                for iw in w0..w1 {
                    let v = xp[ih * g.w + iw];
                    if v > best || v.is_nan() {
                        best = v;
                        at = ih * g.w + iw;
                    }
                }
            }
            yp[oh * g.ow + ow] = best;
            ip[oh * g.ow + ow] = at;
        }
    }
}

/// Gradient of [`max_pool2d`]: each `dy` element is added to the input cell its
/// index points at.
///
/// `dy: [N, C, OH, OW]`, `indices` from the forward (one per `dy` element, each
/// `< H·W`), `x_shape = [N, C, H, W]` → `dx: [N, C, H, W]`. Overlapping windows
/// that pick the same cell add up, in row-major order of `dy`.
pub fn max_pool2d_backward(dy: &Tensor, indices: &[usize], x_shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "max_pool2d_backward";
    let [n, c, h, w] = rank4(OP, x_shape)?;
    dy.expect_rank(OP, 4, "N×C×OH×OW")?;
    let (oh, ow) = (dy.shape()[2], dy.shape()[3]);
    check_dy(OP, dy, &[n, c, oh, ow])?;
    let hw = h * w;
    if indices.len() != dy.numel() {
        return Err(TensorError::shape(
            OP,
            format!(
                "one index per dy element ({} for dy {})",
                dy.numel(),
                fmt_shape(dy.shape())
            ),
            format!("{} indices", indices.len()),
        ));
    }
    if let Some((k, &bad)) = indices.iter().enumerate().find(|&(_, &i)| i >= hw) {
        return Err(TensorError::arg(
            OP,
            format!(
                "index {bad} at position {k} is outside an input plane of {h}×{w} = {hw} cells"
            ),
        ));
    }
    let dy = dy.contiguous();
    let dys = dy.as_slice().expect("contiguous");
    let ohw = oh * ow;
    let mut dx = vec![0.0f32; n * c * hw];
    if !dx.is_empty() && ohw > 0 {
        threads::install(|| {
            dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
                let range = plane * ohw..(plane + 1) * ohw;
                for (&i, &d) in indices[range.clone()].iter().zip(&dys[range]) {
                    dxp[i] += d;
                }
            });
        });
    }
    Tensor::from_vec(dx, x_shape)
}
