//! Conv → FC: the grouped FC that equals a padded conv on an `h×w` partition.
//!
//! A conv `kernel: [O, C/g, k, k]` (k odd, stride 1, zero padding `k/2`, `g` groups) applied to
//! one partition `[C, h, w]` is a linear map from the flattened input `x ∈ R^{C·h·w}` (index
//! `c·h·w + iy·w + ix`) to the flattened output `y ∈ R^{O·h·w}` (index `o·h·w + y·w + x`). With
//! groups it is block diagonal: group `j` maps inputs `j·(C/g)·h·w ..` to outputs
//! `j·(O/g)·h·w ..`, so it is a grouped FC with weight `[O·h·w, C·h·w/g]` — RepMLP's `fc3`,
//! stored as a 1×1 grouped conv weight `[O·h·w, C·h·w/g, 1, 1]`. Its entries are
//!
//! ```text
//! W[o·h·w + y·w + x, c'·h·w + iy·w + ix] = kernel[o, c', iy − y + k/2, ix − x + k/2]
//!                                          if both tap indices lie in 0..k, else 0
//! ```
//!
//! (`c'` the input channel within `o`'s group). [`conv_to_fc`] writes exactly these entries,
//! in O(output size) time. [`conv_to_fc_algorithm1`] is the paper's Algorithm 1 (the authors'
//! `_convert_conv_to_fc`): run the conv on an identity batch and read the matrix off the
//! output. Both give the same matrix (tests: ≤ 1e-6).
//!
//! The bias of the FC is the conv bias repeated for every pixel: [`conv_bias_to_fc`].
//!
//! ```
//! use allmlp_reparam::{conv_to_fc, conv_to_fc_algorithm1};
//! use allmlp_tensor_core::Tensor;
//! // 4 → 6 channels, 2 groups, 3×3 kernel, on 2×3 partitions.
//! let k = Tensor::randn(&[6, 2, 3, 3], 0.0, 1.0, 7)?;
//! let fc = conv_to_fc(&k, 2, 2, 3)?;
//! assert_eq!(fc.shape(), &[6 * 6, 2 * 6, 1, 1]);
//! let alg1 = conv_to_fc_algorithm1(&k, 2, 2, 3)?;
//! let diff = fc.to_vec().iter().zip(alg1.to_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(diff < 1e-6);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use allmlp_tensor_core::conv::{Conv2dParams, conv2d};
use allmlp_tensor_core::error::{checked_numel, fmt_shape};
use allmlp_tensor_core::{Result, Tensor, TensorError};

use crate::kernel::square_odd_kernel;

/// Validated sizes of one conversion.
#[derive(Clone, Copy, Debug)]
struct Geom {
    /// Output channels.
    o: usize,
    /// Input channels per group.
    cg: usize,
    /// Kernel size (odd).
    k: usize,
    g: usize,
    h: usize,
    w: usize,
}

impl Geom {
    fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Columns of the FC weight: `C·h·w/g`.
    fn cols(&self) -> usize {
        self.cg * self.hw()
    }
    /// Rows of the FC weight: `O·h·w`.
    fn rows(&self) -> usize {
        self.o * self.hw()
    }
    fn fc_shape(&self) -> [usize; 4] {
        [self.rows(), self.cols(), 1, 1]
    }
}

fn geometry(op: &'static str, kernel: &Tensor, groups: usize, h: usize, w: usize) -> Result<Geom> {
    let (o, cg, k) = square_odd_kernel(op, kernel)?;
    if groups == 0 {
        return Err(TensorError::arg(op, "groups must be ≥ 1, got 0"));
    }
    if h == 0 || w == 0 {
        return Err(TensorError::arg(
            op,
            format!("partition size h×w must be ≥ 1×1, got {h}×{w}"),
        ));
    }
    if o % groups != 0 {
        return Err(TensorError::shape(
            op,
            format!("kernel [O, C/g, k, k] with O divisible by groups = {groups}"),
            format!("kernel {} (O = {o})", fmt_shape(kernel.shape())),
        ));
    }
    let g = Geom {
        o,
        cg,
        k,
        g: groups,
        h,
        w,
    };
    checked_numel(op, &[g.o, g.h, g.w, g.cg, g.h, g.w])?;
    checked_numel(op, &[g.cg, g.h, g.w, g.g, g.cg, g.h, g.w])?;
    Ok(g)
}

/// The grouped-FC weight `[O·h·w, C·h·w/g, 1, 1]` equal to `kernel: [O, C/g, k, k]` (k odd,
/// stride 1, zero padding `k/2`, `groups` groups) on `h×w` partitions, built entry by entry
/// from the index formula in the module doc, in O(output size).
///
/// Errors (naming `conv_to_fc`) if the kernel is not `[O, C/g, k, k]` with `k` odd, `groups`
/// is 0 or does not divide `O`, or `h` or `w` is 0.
pub fn conv_to_fc(kernel: &Tensor, groups: usize, h: usize, w: usize) -> Result<Tensor> {
    let g = geometry("conv_to_fc", kernel, groups, h, w)?;
    let kt = kernel.contiguous();
    let ks = kt.as_slice().expect("contiguous");
    let (hw, cols, k, p) = (g.hw(), g.cols(), g.k, g.k / 2);
    let mut fc = vec![0.0f32; g.rows() * cols];
    if fc.is_empty() {
        return Tensor::from_vec(fc, &g.fc_shape());
    }
    // Row block of output channel o: rows o·hw .. (o+1)·hw, each `cols` long.
    for (o, block) in fc.chunks_exact_mut(hw * cols).enumerate() {
        for c in 0..g.cg {
            let taps = &ks[(o * g.cg + c) * k * k..(o * g.cg + c + 1) * k * k];
            for y in 0..h {
                // Input rows iy = y + dy − p with 0 ≤ iy < h.
                let dy0 = p.saturating_sub(y);
                let dy1 = k.min(h + p - y);
                for x in 0..w {
                    let dx0 = p.saturating_sub(x);
                    let dx1 = k.min(w + p - x);
                    let row = &mut block[(y * w + x) * cols + c * hw..][..hw];
                    for dy in dy0..dy1 {
                        let iy = y + dy - p;
                        for dx in dx0..dx1 {
                            row[iy * w + x + dx - p] = taps[dy * k + dx];
                        }
                    }
                }
            }
        }
    }
    Tensor::from_vec(fc, &g.fc_shape())
}

/// The paper's Algorithm 1 (the authors' `_convert_conv_to_fc`): same result as
/// [`conv_to_fc`], computed by convolving an identity batch.
///
/// With `n = C·h·w/g`: `I = eye(n)` repeated `g` times along columns (`[n, g·n]`), reshaped to
/// `[n, C, h, w]`, so sample `i` holds a one-hot at input (`c'`, pixel) = `(i / (h·w), i % (h·w))`
/// in every group; `F = conv2d(I, kernel, padding k/2, groups g)` is `[n, O, h, w]`, and row `i`
/// of `F` (flattened to `O·h·w`) is column `i` of the grouped FC: the weight is
/// `F.reshape(n, O·h·w)ᵀ`, returned as `[O·h·w, n, 1, 1]`.
///
/// Note: the authors write `F.reshape(O·h·w/g, C·h·w).t()` and then `reshape_as(fc3.weight)`,
/// which is the same matrix only when `C = O` (their code says "assume in_channel =
/// out_channel"; every model they ship has `C = O`). For `C ≠ O` that reshape scrambles the
/// entries; we use the reshape that is correct for every `C`, `O` (checked against the conv
/// itself in the tests).
///
/// Uses `allmlp_tensor_core::conv::conv2d`; memory `n·C·h·w` floats for `I`. Errors as
/// [`conv_to_fc`], naming `conv_to_fc_algorithm1`.
pub fn conv_to_fc_algorithm1(kernel: &Tensor, groups: usize, h: usize, w: usize) -> Result<Tensor> {
    const OP: &str = "conv_to_fc_algorithm1";
    let g = geometry(OP, kernel, groups, h, w)?;
    let n = g.cols();
    let c = g.cg * g.g;
    // eye(n).repeat(1, g): row i has ones at columns j·n + i, j = 0..g.
    let mut eye = vec![0.0f32; n * g.g * n];
    for i in 0..n {
        for j in 0..g.g {
            eye[i * g.g * n + j * n + i] = 1.0;
        }
    }
    let eye = Tensor::from_vec(eye, &[n, c, h, w])?;
    let f = conv2d(&eye, kernel, None, Conv2dParams::square(1, g.k / 2, g.g))?;
    debug_assert_eq!(f.shape(), [n, g.o, h, w]);
    f.reshape(&[n, g.rows()])?
        .transpose(0, 1)?
        .contiguous()
        .reshape(&g.fc_shape())
}

/// The FC bias `[O·h·w]` equal to a conv bias `[O]` on `h×w` partitions: each `bias[o]`
/// repeated `h·w` times (PyTorch's `repeat_interleave(h·w)`).
pub fn conv_bias_to_fc(bias: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    const OP: &str = "conv_bias_to_fc";
    let [o] = *bias.shape() else {
        return Err(TensorError::shape(
            OP,
            "bias [O]",
            format!("bias {}", fmt_shape(bias.shape())),
        ));
    };
    checked_numel(OP, &[o, h, w])?;
    let hw = h * w;
    if hw == 0 {
        return Err(TensorError::arg(
            OP,
            format!("partition size h×w must be ≥ 1×1, got {h}×{w}"),
        ));
    }
    let v: Vec<f32> = bias
        .to_vec()
        .into_iter()
        .flat_map(|b| std::iter::repeat_n(b, hw))
        .collect();
    Tensor::from_vec(v, &[o * hw])
}
