//! 2-D pooling with PyTorch semantics (NCHW), forward and backward.
//!
//! - [`max_pool2d`] / [`max_pool2d_backward`]: padding counts as −∞ (never
//!   selected), NaN propagates, the returned indices are flat `ih·W + iw` offsets
//!   inside each input plane as PyTorch's `return_indices=True` gives them.
//! - [`avg_pool2d`] / [`avg_pool2d_backward`]: zero padding, with PyTorch's
//!   `count_include_pad` (default `true` there) deciding whether padded cells
//!   count in the divisor.
//! - [`adaptive_avg_pool2d`] / [`adaptive_avg_pool2d_backward`]: output cell `i`
//!   averages input rows `⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉` (likewise columns).
//!
//! Only `ceil_mode = false` and dilation 1 are supported (no model here uses
//! others): `OH = ⌊(H + 2·ph − kh)/sh⌋ + 1`. As in PyTorch, padding may be at
//! most half the kernel (`p ≤ k/2`), which also guarantees that every window
//! holds at least one real input cell.
//!
//! Every kernel works on one (image, channel) plane per task, so results are
//! bit-identical for any thread count.

mod adaptive;
mod avg;
mod max;
#[cfg(test)]
mod tests;

pub use adaptive::{adaptive_avg_pool2d, adaptive_avg_pool2d_backward};
pub use avg::{avg_pool2d, avg_pool2d_backward};
pub use max::{max_pool2d, max_pool2d_backward};

use crate::error::{checked_numel, fmt_shape};
use crate::{Result, Tensor, TensorError};

/// Validated sizes of a windowed pooling.
#[derive(Clone, Copy, Debug)]
struct Win {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl Win {
    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    /// Window of output index `o` along one axis: `(start, end, size)` where
    /// `start..end` is clipped to the input `0..len` and `size` counts the padded
    /// cells too (PyTorch's `pool_size`). Non-empty because `p ≤ k/2 < k`.
    fn span(o: usize, s: usize, p: usize, k: usize, len: usize) -> (usize, usize, usize) {
        let start_p = o * s; // padded coordinates
        let end_p = (start_p + k).min(len + 2 * p);
        (start_p.max(p) - p, end_p.min(len + p) - p, end_p - start_p)
    }
}

/// Checks the input shape and window arguments of a pooling op.
fn window(
    op: &'static str,
    x_shape: &[usize],
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Win> {
    let [n, c, h, w] = rank4(op, x_shape)?;
    let ((kh, kw), (sh, sw), (ph, pw)) = (kernel, stride, padding);
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err(TensorError::arg(
            op,
            format!(
                "kernel and stride must be at least 1, got kernel {kernel:?}, stride {stride:?}"
            ),
        ));
    }
    if ph > kh / 2 || pw > kw / 2 {
        return Err(TensorError::arg(
            op,
            format!(
                "padding must be at most half the kernel, got padding {padding:?} for kernel {kernel:?}"
            ),
        ));
    }
    // ph ≤ kh/2 keeps these sums far from overflow unless h is near usize::MAX.
    let (Some(ph2), Some(pw2)) = (h.checked_add(2 * ph), w.checked_add(2 * pw)) else {
        return Err(TensorError::Overflow {
            op,
            what: "the padded input size".into(),
        });
    };
    if ph2 < kh || pw2 < kw {
        return Err(TensorError::shape(
            op,
            format!(
                "kernel {kh}×{kw} no larger than the padded input ({h} + 2·{ph})×({w} + 2·{pw})"
            ),
            format!("input {}", fmt_shape(x_shape)),
        ));
    }
    Ok(Win {
        n,
        c,
        h,
        w,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        oh: (ph2 - kh) / sh + 1,
        ow: (pw2 - kw) / sw + 1,
    })
}

/// `[N, C, H, W]` with H, W ≥ 1 and a representable element count.
fn rank4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    let &[n, c, h, w] = shape else {
        return Err(TensorError::shape(
            op,
            "input as a 4-d tensor [N, C, H, W]",
            format!("shape {}", fmt_shape(shape)),
        ));
    };
    if h == 0 || w == 0 {
        return Err(TensorError::shape(
            op,
            "input [N, C, H, W] with H and W at least 1",
            format!("input {}", fmt_shape(shape)),
        ));
    }
    checked_numel(op, shape)?;
    Ok([n, c, h, w])
}

/// Checks that the output gradient has the forward output's shape.
fn check_dy(op: &'static str, dy: &Tensor, y_shape: &[usize]) -> Result<()> {
    if dy.shape() != y_shape {
        return Err(TensorError::shape(
            op,
            format!("output gradient dy {}", fmt_shape(y_shape)),
            format!("dy {}", fmt_shape(dy.shape())),
        ));
    }
    Ok(())
}
