//! 2-D convolution with PyTorch `conv2d` semantics, forward and backward.
//!
//! Layouts (as in PyTorch): input `x: [N, C, H, W]`, weight `w: [O, C/groups, kh, kw]`,
//! optional bias `b: [O]`, output `y: [N, O, OH, OW]` with
//! `OH = ⌊(H + 2·ph − kh)/sh⌋ + 1` (likewise `OW`). Padding is zero padding on both
//! sides; dilation is not supported (always 1) because no model here uses it.
//!
//! The four kernels an autograd op needs are separate functions so that it can
//! skip the gradients it does not need (e.g. `dx` of the stem's input image):
//! [`conv2d`], [`conv2d_backward_input`], [`conv2d_backward_weight`],
//! [`conv2d_backward_bias`].
//!
//! Paths, chosen from the shapes alone:
//! - depth-wise (`groups == C == O`, C > 1): direct loops per (image, channel) plane;
//! - grouped FC (`1×1` kernel on a `1×1` input, no padding: RepMLP's FC3): a batched
//!   GEMM over groups, `Y_g [N, O/g] = X_g [N, C/g] · W_gᵀ`;
//! - point-wise (`1×1`, stride 1, no padding): `Y_n,g = W_g · X_n,g` per image, no im2col;
//! - everything else: im2col over chunks of images + one batched GEMM over groups
//!   per chunk, and col2im for the input gradient.
//!
//! Every path splits work at boundaries fixed by the shapes, so results are
//! bit-identical for any thread count.
//!
//! ```
//! use allmlp_tensor_core::Tensor;
//! use allmlp_tensor_core::conv::{conv2d, Conv2dParams};
//! let x = Tensor::ones(&[1, 1, 3, 3])?;
//! let w = Tensor::ones(&[1, 1, 3, 3])?;
//! let y = conv2d(&x, &w, None, Conv2dParams::square(1, 1, 1))?;
//! assert_eq!(y.shape(), &[1, 1, 3, 3]);
//! assert_eq!(y.to_vec(), vec![4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

mod depthwise;
mod im2col;
mod pointwise;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use crate::error::{checked_numel, fmt_shape};
use crate::{Result, Tensor, TensorError, threads};

/// Stride, zero padding and groups of a 2-D convolution (dilation is always 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// `(sh, sw)`: step between output positions, each ≥ 1.
    pub stride: (usize, usize),
    /// `(ph, pw)`: zeros added on each side of the height and width.
    pub padding: (usize, usize),
    /// Number of groups, ≥ 1; must divide both C and O.
    pub groups: usize,
}

impl Default for Conv2dParams {
    /// Stride 1, no padding, one group (PyTorch's defaults).
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Parameters with separate height and width stride and padding.
    pub fn new(stride: (usize, usize), padding: (usize, usize), groups: usize) -> Self {
        Conv2dParams {
            stride,
            padding,
            groups,
        }
    }

    /// The same stride and padding along height and width.
    pub fn square(stride: usize, padding: usize, groups: usize) -> Self {
        Conv2dParams::new((stride, stride), (padding, padding), groups)
    }
}

/// Validated sizes of one convolution; every kernel trusts them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub g: usize,
}

impl Geom {
    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.g
    }
    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.g
    }
    /// Kernel taps.
    pub fn kk(&self) -> usize {
        self.kh * self.kw
    }
    /// Input pixels per plane.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Output pixels per plane.
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.o, self.oh, self.ow]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.o, self.cg(), self.kh, self.kw]
    }
}

/// Output size along one axis, or `None` if the kernel is larger than the padded input.
fn out_len(len: usize, k: usize, pad: usize, stride: usize) -> Option<usize> {
    let padded = pad.checked_mul(2)?.checked_add(len)?;
    padded.checked_sub(k).map(|d| d / stride + 1)
}

/// Checks the shapes of a convolution of `x_shape` with `w_shape` and derives the rest.
pub(crate) fn geometry(
    op: &'static str,
    x_shape: &[usize],
    w_shape: &[usize],
    p: Conv2dParams,
) -> Result<Geom> {
    if x_shape.len() != 4 {
        return Err(TensorError::shape(
            op,
            "input as a 4-d tensor [N, C, H, W]",
            format!("shape {}", fmt_shape(x_shape)),
        ));
    }
    if w_shape.len() != 4 {
        return Err(TensorError::shape(
            op,
            "weight as a 4-d tensor [O, C/groups, kh, kw]",
            format!("shape {}", fmt_shape(w_shape)),
        ));
    }
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let g = p.groups;
    if sh == 0 || sw == 0 {
        return Err(TensorError::arg(
            op,
            format!("stride must be at least 1, got ({sh}, {sw})"),
        ));
    }
    if g == 0 {
        return Err(TensorError::arg(op, "groups must be at least 1, got 0"));
    }
    let [n, c, h, w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
    let [o, wc, kh, kw] = [w_shape[0], w_shape[1], w_shape[2], w_shape[3]];
    if c == 0 || h == 0 || w == 0 {
        return Err(TensorError::shape(
            op,
            "input [N, C, H, W] with C, H and W at least 1",
            format!("input {}", fmt_shape(x_shape)),
        ));
    }
    if c % g != 0 || o % g != 0 {
        return Err(TensorError::shape(
            op,
            format!("input channels C and output channels O divisible by groups = {g}"),
            format!("C = {c}, O = {o}"),
        ));
    }
    if wc != c / g || kh == 0 || kw == 0 {
        return Err(TensorError::shape(
            op,
            format!(
                "weight [O, C/groups, kh, kw] with C/groups = {} and kh, kw ≥ 1",
                c / g
            ),
            format!("weight {}", fmt_shape(w_shape)),
        ));
    }
    let (Some(oh), Some(ow)) = (out_len(h, kh, ph, sh), out_len(w, kw, pw, sw)) else {
        return Err(TensorError::shape(
            op,
            format!(
                "kernel {kh}×{kw} no larger than the padded input ({h} + 2·{ph})×({w} + 2·{pw})"
            ),
            format!(
                "input {}, weight {}",
                fmt_shape(x_shape),
                fmt_shape(w_shape)
            ),
        ));
    };
    let geom = Geom {
        n,
        c,
        h,
        w,
        o,
        kh,
        kw,
        oh,
        ow,
        sh,
        sw,
        ph,
        pw,
        g,
    };
    checked_numel(op, &geom.x_shape())?;
    checked_numel(op, &geom.y_shape())?;
    checked_numel(op, &[c, kh, kw, oh, ow])?;
    Ok(geom)
}

/// The output height and width of a convolution of `x_shape` with `w_shape`.
///
/// `x_shape: [N, C, H, W]`, `w_shape: [O, C/groups, kh, kw]`; errors as [`conv2d`].
pub fn conv2d_output_hw(
    x_shape: &[usize],
    w_shape: &[usize],
    p: Conv2dParams,
) -> Result<(usize, usize)> {
    let g = geometry("conv2d", x_shape, w_shape, p)?;
    Ok((g.oh, g.ow))
}

/// Which kernel runs a convolution; chosen from the shapes alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Depthwise,
    GroupedFc,
    Pointwise,
    Im2col,
}

fn path(g: &Geom) -> Path {
    let one_by_one = g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0;
    if g.g > 1 && g.g == g.c && g.g == g.o {
        Path::Depthwise
    } else if one_by_one && g.h == 1 && g.w == 1 {
        Path::GroupedFc
    } else if one_by_one && g.sh == 1 && g.sw == 1 {
        Path::Pointwise
    } else {
        Path::Im2col
    }
}

/// Row-major data of `t`, copying only if it is not contiguous.
fn contiguous_data(t: &Tensor) -> Tensor {
    t.contiguous()
}

fn slice(t: &Tensor) -> &[f32] {
    t.as_slice()
        .expect("contiguous() returns a row-major tensor")
}

/// 2-D convolution forward: `y = conv(x, w) + b`.
///
/// `x: [N, C, H, W]`, `w: [O, C/groups, kh, kw]`, `bias: [O]` → `y: [N, O, OH, OW]`.
/// Any input layout is accepted (non-contiguous inputs are copied once).
/// Errors if a rank is not 4, C or O is not divisible by groups, the weight or
/// bias shape is wrong, the kernel is larger than the padded input, or stride
/// or groups is 0.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let g = geometry(OP, x.shape(), w.shape(), p)?;
    if let Some(b) = bias
        && b.shape() != [g.o]
    {
        return Err(TensorError::shape(
            OP,
            format!("bias [O] = [{}]", g.o),
            format!("bias {}", fmt_shape(b.shape())),
        ));
    }
    let bias = bias.map(contiguous_data);
    let bias = bias.as_ref().map(slice);
    let mut y = vec![0.0f32; g.n * g.o * g.ohw()];
    if !y.is_empty() {
        let (x, w) = (contiguous_data(x), contiguous_data(w));
        let (xs, ws) = (slice(&x), slice(&w));
        match path(&g) {
            Path::Depthwise => depthwise::forward(&g, xs, ws, bias, &mut y),
            Path::GroupedFc => pointwise::fc_forward(&g, xs, ws, bias, &mut y)?,
            Path::Pointwise => pointwise::forward(&g, xs, ws, bias, &mut y)?,
            Path::Im2col => im2col::forward(&g, xs, ws, bias, &mut y)?,
        }
    }
    Tensor::from_vec(y, &g.y_shape())
}

/// Gradient of [`conv2d`] with respect to its input: `dx = convᵀ(dy, w)`.
///
/// `dy: [N, O, OH, OW]`, `w: [O, C/groups, kh, kw]`, `x_shape = [N, C, H, W]` (the
/// forward input's shape; H and W cannot be recovered from `dy` when the stride
/// drops rows) → `dx: [N, C, H, W]`.
pub fn conv2d_backward_input(
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d_backward_input";
    let g = geometry(OP, x_shape, w.shape(), p)?;
    check_dy(OP, dy, &g)?;
    let mut dx = vec![0.0f32; g.n * g.c * g.hw()];
    if !dx.is_empty() && g.o > 0 {
        let (dy, w) = (contiguous_data(dy), contiguous_data(w));
        let (dys, ws) = (slice(&dy), slice(&w));
        match path(&g) {
            Path::Depthwise => depthwise::backward_input(&g, dys, ws, &mut dx),
            Path::GroupedFc => pointwise::fc_backward_input(&g, dys, ws, &mut dx)?,
            Path::Pointwise => pointwise::backward_input(&g, dys, ws, &mut dx)?,
            Path::Im2col => im2col::backward_input(&g, dys, ws, &mut dx)?,
        }
    }
    Tensor::from_vec(dx, &g.x_shape())
}

/// Gradient of [`conv2d`] with respect to its weight.
///
/// `x: [N, C, H, W]`, `dy: [N, O, OH, OW]`, `w_shape = [O, C/groups, kh, kw]` →
/// `dw: [O, C/groups, kh, kw]`, summed over the batch in an order fixed by the shapes.
pub fn conv2d_backward_weight(
    x: &Tensor,
    dy: &Tensor,
    w_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d_backward_weight";
    let g = geometry(OP, x.shape(), w_shape, p)?;
    check_dy(OP, dy, &g)?;
    let mut dw = vec![0.0f32; g.o * g.cg() * g.kk()];
    if !dw.is_empty() && g.n > 0 {
        let (x, dy) = (contiguous_data(x), contiguous_data(dy));
        let (xs, dys) = (slice(&x), slice(&dy));
        match path(&g) {
            Path::Depthwise => depthwise::backward_weight(&g, xs, dys, &mut dw),
            Path::GroupedFc => pointwise::fc_backward_weight(&g, xs, dys, &mut dw)?,
            Path::Pointwise | Path::Im2col => im2col::backward_weight(&g, xs, dys, &mut dw)?,
        }
    }
    Tensor::from_vec(dw, &g.w_shape())
}

/// Gradient of [`conv2d`] with respect to its bias: `db[o] = Σ_{n,i,j} dy[n, o, i, j]`.
///
/// `dy: [N, O, OH, OW]` → `db: [O]`. Each channel is summed on one thread in f64,
/// element by element (so the result is deterministic, and a large plane's sum keeps f32
/// accuracy where a running f32 sum would lose digits).
pub fn conv2d_backward_bias(dy: &Tensor) -> Result<Tensor> {
    const OP: &str = "conv2d_backward_bias";
    dy.expect_rank(OP, 4, "N×O×OH×OW")?;
    let [n, o, oh, ow] = [dy.shape()[0], dy.shape()[1], dy.shape()[2], dy.shape()[3]];
    let dy = contiguous_data(dy);
    let dys = slice(&dy);
    let plane = oh * ow;
    let mut db = vec![0.0f32; o];
    threads::install(|| {
        db.par_iter_mut().enumerate().for_each(|(oc, d)| {
            let mut acc = 0.0f64;
            for img in 0..n {
                let start = (img * o + oc) * plane;
                acc += dys[start..start + plane]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum::<f64>();
            }
            *d = acc as f32;
        });
    });
    Tensor::from_vec(db, &[o])
}

fn check_dy(op: &'static str, dy: &Tensor, g: &Geom) -> Result<()> {
    if dy.shape() != g.y_shape() {
        return Err(TensorError::shape(
            op,
            format!("output gradient dy {}", fmt_shape(&g.y_shape())),
            format!("dy {}", fmt_shape(dy.shape())),
        ));
    }
    Ok(())
}

/// Output positions `lo..hi` (of `out`) whose input index `o·stride + koff − pad`
/// falls inside `0..len`.
pub(crate) fn valid_range(
    out: usize,
    len: usize,
    koff: usize,
    pad: usize,
    stride: usize,
) -> (usize, usize) {
    let lo = if koff >= pad {
        0
    } else {
        (pad - koff).div_ceil(stride)
    };
    let hi = if len + pad < koff + 1 {
        0
    } else {
        (len - 1 + pad - koff) / stride + 1
    };
    let lo = lo.min(out);
    (lo, hi.min(out).max(lo))
}

/// `y[n, o, :, :] += bias[o]` for every plane of `y: [N, O, P]`.
fn add_bias(y: &mut [f32], bias: &[f32], plane: usize) {
    let o = bias.len();
    threads::install(|| {
        y.par_chunks_mut(plane).enumerate().for_each(|(i, yp)| {
            let b = bias[i % o];
            yp.iter_mut().for_each(|v| *v += b);
        });
    });
}
