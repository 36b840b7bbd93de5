//! The RepVGG merge: 3×3 conv-BN + 1×1 conv-BN + identity BN → one 3×3 conv with bias.
//!
//! Each branch is affine in the input, so their sum is one conv (the authors'
//! `get_equivalent_kernel_bias` in `repvgg.py`):
//! - the `k×k` (3×3) branch: its BN folded into the kernel ([`fuse_bn`]);
//! - the 1×1 branch: BN folded, then zero-padded to `k×k` ([`pad_kernel`](crate::pad_kernel));
//! - the identity branch `BN(x)` (only when `C = O` and stride 1): the identity is the
//!   `k×k` kernel with a single 1 at the centre tap linking channel `i` to itself
//!   ([`identity_kernel`]); then its BN is folded like any other.
//!
//! The kernels and biases are summed ([`merge_branches`]).
//!
//! ```
//! use allmlp_reparam::{BnParams, ConvBn, repvgg_merge};
//! use allmlp_tensor_core::Tensor;
//! let bn = |c| BnParams::new(Tensor::ones(&[c])?, Tensor::zeros(&[c])?,
//!     Tensor::zeros(&[c])?, Tensor::ones(&[c])?, 1e-5);
//! let dense = ConvBn { kernel: Tensor::zeros(&[2, 2, 3, 3])?, bn: bn(2)? };
//! let (k, b) = repvgg_merge(&dense, None, Some(&bn(2)?), 1)?;
//! assert_eq!(k.shape(), &[2, 2, 3, 3]);
//! assert!((k.get(&[1, 1, 1, 1])? - 1.0).abs() < 1e-4); // the identity's centre tap
//! assert_eq!(b.to_vec(), vec![0.0, 0.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use allmlp_tensor_core::error::{checked_numel, fmt_shape};
use allmlp_tensor_core::{Result, Tensor, TensorError};

use crate::bn::{BnParams, fuse_bn};
use crate::kernel::{merge_branches, square_odd_kernel};

/// One training-time branch: a conv without bias followed by an eval-mode BatchNorm.
#[derive(Clone, Debug)]
pub struct ConvBn {
    /// `[O, C/g, k, k]`, `k` odd, padding `k/2`.
    pub kernel: Tensor,
    /// `O` channels.
    pub bn: BnParams,
}

impl ConvBn {
    /// `(kernel', bias')`: the BN folded into the conv ([`fuse_bn`]).
    pub fn fuse(&self) -> Result<(Tensor, Tensor)> {
        fuse_bn(&self.kernel, None, &self.bn)
    }
}

/// The identity map of `channels` channels as a grouped conv kernel `[C, C/g, k, k]`
/// (padding `k/2`): `kernel[i, i % (C/g), k/2, k/2] = 1`, all else 0.
///
/// Errors if `groups` is 0 or does not divide `channels`, or `k` is even.
pub fn identity_kernel(channels: usize, groups: usize, k: usize) -> Result<Tensor> {
    const OP: &str = "identity_kernel";
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(TensorError::arg(
            OP,
            format!("groups must be ≥ 1 and divide C = {channels}, got groups = {groups}"),
        ));
    }
    if k.is_multiple_of(2) {
        return Err(TensorError::arg(OP, format!("k must be odd, got k = {k}")));
    }
    let cg = channels / groups;
    let mut v = vec![0.0f32; checked_numel(OP, &[channels, cg, k, k])?];
    for i in 0..channels {
        v[((i * cg + i % cg) * k + k / 2) * k + k / 2] = 1.0;
    }
    Tensor::from_vec(v, &[channels, cg, k, k])
}

/// The deploy conv `(kernel: [O, C/g, k, k], bias: [O])` of a RepVGG block.
///
/// - `dense`: the `k×k` branch (RepVGG: `k = 3`), kernel `[O, C/g, k, k]`
/// - `one_by_one`: the 1×1 branch, kernel `[O, C/g, 1, 1]`, or `None`
/// - `identity`: the identity BN (`C` channels), or `None`. The caller passes it only when the
///   block has one, i.e. when `C = O` and stride = 1 (an identity cannot skip pixels)
/// - `groups`: the convs' groups (`C = groups·(C/g)`)
///
/// Errors (naming `repvgg_merge`) if the branches' shapes disagree, a BN length is not `O`,
/// or an identity is given with `C ≠ O`.
pub fn repvgg_merge(
    dense: &ConvBn,
    one_by_one: Option<&ConvBn>,
    identity: Option<&BnParams>,
    groups: usize,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "repvgg_merge";
    let (o, cg, k) = square_odd_kernel(OP, &dense.kernel)?;
    if groups == 0 || o % groups != 0 {
        return Err(TensorError::arg(
            OP,
            format!("groups must be ≥ 1 and divide O = {o}, got groups = {groups}"),
        ));
    }
    let mut branches = vec![dense.fuse()?];
    if let Some(b) = one_by_one {
        if b.kernel.shape() != [o, cg, 1, 1] {
            return Err(TensorError::shape(
                OP,
                format!("1×1 kernel [O, C/g, 1, 1] = [{o}, {cg}, 1, 1]"),
                format!("kernel {}", fmt_shape(b.kernel.shape())),
            ));
        }
        branches.push(b.fuse()?);
    }
    if let Some(bn) = identity {
        let c = cg * groups;
        if c != o {
            return Err(TensorError::shape(
                OP,
                "an identity branch only when C = O (and stride 1)",
                format!("C = {c}, O = {o}"),
            ));
        }
        branches.push(fuse_bn(&identity_kernel(c, groups, k)?, None, bn)?);
    }
    merge_branches(&branches)
}
