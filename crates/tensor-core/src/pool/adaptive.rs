//! Adaptive average pooling: output size given, windows derived from it.

use rayon::prelude::*;

use super::{check_dy, rank4};
use crate::{Result, Tensor, TensorError, threads};

/// PyTorch's adaptive window of output index `i`: `⌊i·len/out⌋ .. ⌈(i+1)·len/out⌉`.
fn span(i: usize, out: usize, len: usize) -> (usize, usize) {
    let (i, out, len) = (i as u128, out as u128, len as u128);
    let start = i * len / out;
    let end = ((i + 1) * len).div_ceil(out);
    (start as usize, end as usize)
}

/// Adaptive average pooling, PyTorch `adaptive_avg_pool2d`.
///
/// `x: [N, C, H, W]`, `out = (OH, OW)` (each ≥ 1; may exceed H or W, windows then
/// repeat cells) → `y: [N, C, OH, OW]`; `y[.., i, j]` is the mean of rows
/// `⌊i·H/OH⌋..⌈(i+1)·H/OH⌉` and the matching columns.
pub fn adaptive_avg_pool2d(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    const OP: &str = "adaptive_avg_pool2d";
    let [n, c, h, w] = rank4(OP, x.shape())?;
    let (oh, ow) = out;
    if oh == 0 || ow == 0 {
        return Err(TensorError::arg(
            OP,
            format!("output size must be at least 1×1, got {out:?}"),
        ));
    }
    crate::error::checked_numel(OP, &[n, c, oh, ow])?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let (hw, ohw) = (h * w, oh * ow);
    let mut y = vec![0.0f32; n * c * ohw];
    if !y.is_empty() {
        threads::install(|| {
            y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
                let xp = &xs[plane * hw..][..hw];
                for i in 0..oh {
                    let (h0, h1) = span(i, oh, h);
                    for j in 0..ow {
                        let (w0, w1) = span(j, ow, w);
                        let mut sum = 0.0f32;
                        for ih in h0..h1 {
                            sum += xp[ih * w + w0..ih * w + w1].iter().sum::<f32>();
                        }
                        yp[i * ow + j] = sum / ((h1 - h0) * (w1 - w0)) as f32;
                    }
                }
            });
        });
    }
    Tensor::from_vec(y, &[n, c, oh, ow])
}

/// Gradient of [`adaptive_avg_pool2d`]: each `dy` element divided by its window's
/// cell count is added to every cell of the window.
///
/// `dy: [N, C, OH, OW]` (OH, OW ≥ 1), `x_shape = [N, C, H, W]` → `dx: [N, C, H, W]`.
pub fn adaptive_avg_pool2d_backward(dy: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "adaptive_avg_pool2d_backward";
    let [n, c, h, w] = rank4(OP, x_shape)?;
    dy.expect_rank(OP, 4, "N×C×OH×OW")?;
    let (oh, ow) = (dy.shape()[2], dy.shape()[3]);
    check_dy(OP, dy, &[n, c, oh.max(1), ow.max(1)])?;
    let dy = dy.contiguous();
    let dys = dy.as_slice().expect("contiguous");
    let (hw, ohw) = (h * w, oh * ow);
    let mut dx = vec![0.0f32; n * c * hw];
    if !dx.is_empty() {
        threads::install(|| {
            dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
                let dyp = &dys[plane * ohw..][..ohw];
                for i in 0..oh {
                    let (h0, h1) = span(i, oh, h);
                    for j in 0..ow {
                        let (w0, w1) = span(j, ow, w);
                        let d = dyp[i * ow + j] / ((h1 - h0) * (w1 - w0)) as f32;
                        for ih in h0..h1 {
                            dxp[ih * w + w0..ih * w + w1]
                                .iter_mut()
                                .for_each(|v| *v += d);
                        }
                    }
                }
            });
        });
    }
    Tensor::from_vec(dx, x_shape)
}
