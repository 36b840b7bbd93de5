//! Average pooling over fixed windows, forward and backward.

use rayon::prelude::*;

use super::{Win, check_dy, window};
use crate::{Result, Tensor, threads};

/// The divisor of one window: all `kh·kw` cells (padding included) or only the real ones.
fn divisor(
    (h0, h1, hs): (usize, usize, usize),
    (w0, w1, ws): (usize, usize, usize),
    count_include_pad: bool,
) -> f32 {
    if count_include_pad {
        (hs * ws) as f32
    } else {
        ((h1 - h0) * (w1 - w0)) as f32
    }
}

/// Average pooling, PyTorch `avg_pool2d` with `ceil_mode=False` and no divisor override.
///
/// `x: [N, C, H, W]` → `y: [N, C, OH, OW]`: each output is the window's sum of
/// real cells divided by `kh·kw` when `count_include_pad` (PyTorch's default),
/// else by the number of real cells. Errors as [`super::max_pool2d`].
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    let g = window("avg_pool2d", x.shape(), kernel, stride, padding)?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![0.0f32; g.n * g.c * ohw];
    if !y.is_empty() {
        threads::install(|| {
            y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
                let xp = &xs[plane * hw..][..hw];
                for oh in 0..g.oh {
                    let hspan = Win::span(oh, g.sh, g.ph, g.kh, g.h);
                    for ow in 0..g.ow {
                        let wspan = Win::span(ow, g.sw, g.pw, g.kw, g.w);
                        let mut sum = 0.0f32;
                        for ih in hspan.0..hspan.1 {
                            sum += xp[ih * g.w + wspan.0..ih * g.w + wspan.1]
                                .iter()
                                .sum::<f32>();
                        }
                        yp[oh * g.ow + ow] = sum / divisor(hspan, wspan, count_include_pad);
                    }
                }
            });
        });
    }
    Tensor::from_vec(y, &g.y_shape())
}

/// Gradient of [`avg_pool2d`]: each `dy` element, divided by its window's
/// divisor, is added to every real cell of the window.
///
/// `dy: [N, C, OH, OW]`, `x_shape = [N, C, H, W]` and the forward's window
/// arguments → `dx: [N, C, H, W]`.
pub fn avg_pool2d_backward(
    dy: &Tensor,
    x_shape: &[usize],
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    const OP: &str = "avg_pool2d_backward";
    let g = window(OP, x_shape, kernel, stride, padding)?;
    check_dy(OP, dy, &g.y_shape())?;
    let dy = dy.contiguous();
    let dys = dy.as_slice().expect("contiguous");
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = vec![0.0f32; g.n * g.c * hw];
    if !dx.is_empty() {
        threads::install(|| {
            dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
                let dyp = &dys[plane * ohw..][..ohw];
                for oh in 0..g.oh {
                    let hspan = Win::span(oh, g.sh, g.ph, g.kh, g.h);
                    for ow in 0..g.ow {
                        let wspan = Win::span(ow, g.sw, g.pw, g.kw, g.w);
                        let d = dyp[oh * g.ow + ow] / divisor(hspan, wspan, count_include_pad);
                        for ih in hspan.0..hspan.1 {
                            dxp[ih * g.w + wspan.0..ih * g.w + wspan.1]
                                .iter_mut()
                                .for_each(|v| *v += d);
                        }
                    }
                }
            });
        });
    }
    Tensor::from_vec(dx, &g.x_shape())
}
