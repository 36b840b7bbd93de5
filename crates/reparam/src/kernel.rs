//! Kernel padding and branch merging.
//!
//! A `k×k` kernel with padding `k/2` equals the `K×K` kernel (`K ≥ k`, both odd) that has the
//! `k×k` taps in its centre and zeros around them, applied with padding `K/2`: the extra taps
//! only ever multiply by zero. Convolution is linear in the kernel, so parallel branches with
//! the same input, groups and stride sum into one conv: `Σ conv(x, K_i) + b_i =
//! conv(x, Σ pad(K_i)) + Σ b_i`.
//!
//! ```
//! use allmlp_reparam::pad_kernel;
//! use allmlp_tensor_core::Tensor;
//! let k = Tensor::full(&[1, 1, 1, 1], 7.0)?;
//! let p = pad_kernel(&k, 3)?;
//! assert_eq!(p.to_vec(), vec![0.0, 0.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use allmlp_tensor_core::error::{checked_numel, fmt_shape};
use allmlp_tensor_core::{Result, Tensor, TensorError};

/// Checks `kernel: [O, C/g, k, k]` with `k` odd; returns `(O, C/g, k)`.
pub(crate) fn square_odd_kernel(
    op: &'static str,
    kernel: &Tensor,
) -> Result<(usize, usize, usize)> {
    match *kernel.shape() {
        [o, cg, kh, kw] if kh == kw && kh % 2 == 1 => Ok((o, cg, kh)),
        [_, _, kh, kw] if kh == kw => Err(TensorError::shape(
            op,
            "a square kernel [O, C/g, k, k] with k odd (padding k/2 keeps the size only for odd k)",
            format!("kernel {} with k = {kh}", fmt_shape(kernel.shape())),
        )),
        _ => Err(TensorError::shape(
            op,
            "a square kernel [O, C/g, k, k] with k odd",
            format!("kernel {}", fmt_shape(kernel.shape())),
        )),
    }
}

/// Zero-pads `kernel: [O, C/g, k, k]` (k odd) in the centre of a `[O, C/g, K, K]` kernel.
///
/// `target = K` must be odd and `≥ k`; `K = k` returns a copy.
pub fn pad_kernel(kernel: &Tensor, target: usize) -> Result<Tensor> {
    const OP: &str = "pad_kernel";
    let (o, cg, k) = square_odd_kernel(OP, kernel)?;
    if target < k || target.is_multiple_of(2) {
        return Err(TensorError::arg(
            OP,
            format!("target size K must be odd and ≥ k = {k}, got K = {target}"),
        ));
    }
    let off = (target - k) / 2;
    let src = kernel.contiguous();
    let src = src.as_slice().expect("contiguous");
    let mut dst = vec![0.0f32; checked_numel(OP, &[o, cg, target, target])?];
    for (plane, s) in src.chunks_exact(k * k).enumerate() {
        let d = &mut dst[plane * target * target..(plane + 1) * target * target];
        for i in 0..k {
            let row = (i + off) * target + off;
            d[row..row + k].copy_from_slice(&s[i * k..(i + 1) * k]);
        }
    }
    Tensor::from_vec(dst, &[o, cg, target, target])
}

/// Merges parallel conv branches `(kernel_i: [O, C/g, k_i, k_i], bias_i: [O])` (same input,
/// groups and stride, padding `k_i/2`, all `k_i` odd) into one `(kernel: [O, C/g, K, K],
/// bias: [O])` with `K = max k_i`: the kernels zero-padded to `K` and summed, the biases summed.
///
/// Errors on an empty list, even or non-square kernels, or branches whose `O`, `C/g` or bias
/// shape differ from the first's.
pub fn merge_branches(branches: &[(Tensor, Tensor)]) -> Result<(Tensor, Tensor)> {
    const OP: &str = "merge_branches";
    let Some((first, _)) = branches.first() else {
        return Err(TensorError::arg(
            OP,
            "at least one branch is needed, got none",
        ));
    };
    let (o, cg, _) = square_odd_kernel(OP, first)?;
    let mut big = 1;
    for (i, (k, b)) in branches.iter().enumerate() {
        let (oi, cgi, ki) = square_odd_kernel(OP, k)?;
        if (oi, cgi) != (o, cg) {
            return Err(TensorError::shape(
                OP,
                format!("branch {i} kernel [O, C/g, k, k] with O = {o}, C/g = {cg} (as branch 0)"),
                format!("kernel {}", fmt_shape(k.shape())),
            ));
        }
        if b.shape() != [o] {
            return Err(TensorError::shape(
                OP,
                format!("branch {i} bias [O] = [{o}]"),
                format!("bias {}", fmt_shape(b.shape())),
            ));
        }
        big = big.max(ki);
    }
    let mut kernel = vec![0.0f32; o * cg * big * big];
    let mut bias = vec![0.0f32; o];
    for (k, b) in branches {
        let p = pad_kernel(k, big)?;
        kernel
            .iter_mut()
            .zip(
                p.as_slice()
                    .expect("pad_kernel returns a contiguous tensor"),
            )
            .for_each(|(d, s)| *d += s);
        bias.iter_mut().zip(b.to_vec()).for_each(|(d, s)| *d += s);
    }
    Ok((
        Tensor::from_vec(kernel, &[o, cg, big, big])?,
        Tensor::from_vec(bias, &[o])?,
    ))
}
