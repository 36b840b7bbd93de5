//! RepMLP's FC3 deploy weights: FC3 + its BN + the Local Perceptron's conv-BN branches → one
//! grouped FC with bias (the authors' `get_equivalent_fc1_fc3_params` (v1) and
//! `get_equivalent_fc3` (RepMLPNet)).
//!
//! Steps: fold FC3's BN into FC3 ([`fuse_bn`], or [`fuse_bn_repeat_interleave`] for
//! RepMLPNet's `BatchNorm2d(S)`); fold each branch's BN into its conv; pad the kernels to the
//! largest and sum ([`merge_branches`]); convert the summed conv to an FC ([`conv_to_fc`],
//! [`conv_bias_to_fc`]) and add it to FC3.
//!
//! ```
//! use allmlp_reparam::{BnParams, ConvBn, Fc3Bn, equivalent_fc3};
//! use allmlp_tensor_core::Tensor;
//! let bn = |c, seed| BnParams::new(Tensor::rand_uniform(&[c], 0.5, 1.5, seed)?,
//!     Tensor::randn(&[c], 0.0, 1.0, seed + 1)?, Tensor::randn(&[c], 0.0, 1.0, seed + 2)?,
//!     Tensor::rand_uniform(&[c], 0.5, 1.5, seed + 3)?, 1e-5);
//! // RepMLPNet block: S = 2 sharesets, 3×4 partitions, branches k = 1, 3.
//! let (s, h, w) = (2, 3, 4);
//! let fc3 = Tensor::randn(&[s * h * w, h * w, 1, 1], 0.0, 0.1, 1)?;
//! let local = [
//!     ConvBn { kernel: Tensor::randn(&[s, 1, 1, 1], 0.0, 1.0, 2)?, bn: bn(s, 10)? },
//!     ConvBn { kernel: Tensor::randn(&[s, 1, 3, 3], 0.0, 1.0, 3)?, bn: bn(s, 20)? },
//! ];
//! let (wt, b) = equivalent_fc3(&fc3, Fc3Bn::PerChannel(&bn(s, 30)?), &local, s, h, w)?;
//! assert_eq!(wt.shape(), fc3.shape());
//! assert_eq!(b.shape(), &[s * h * w]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use allmlp_tensor_core::error::fmt_shape;
use allmlp_tensor_core::{Result, Tensor, TensorError};

use crate::bn::{BnParams, fuse_bn, fuse_bn_repeat_interleave};
use crate::conv_to_fc::{conv_bias_to_fc, conv_to_fc};
use crate::kernel::merge_branches;
use crate::repvgg::ConvBn;

/// The BatchNorm after FC3.
#[derive(Clone, Copy, Debug)]
pub enum Fc3Bn<'a> {
    /// RepMLP v1: `BatchNorm1d(O·h·w)`, one channel per FC output.
    PerOutput(&'a BnParams),
    /// RepMLPNet: `BatchNorm2d(O)` on the output reshaped to `[.., O, h, w]` (`O = S`
    /// sharesets), one channel per `h·w` FC outputs.
    PerChannel(&'a BnParams),
    /// No BatchNorm (a deploy FC3 that already has a bias is not supported; pass its BN-free
    /// weight and add the bias yourself).
    None,
}

/// The deploy FC3 `(weight, bias: [O·h·w])` of a RepMLP block.
///
/// - `fc3_weight: [O·h·w, C·h·w/g, 1, 1]` (or `[O·h·w, C·h·w/g]`; the result has the same shape)
/// - `fc3_bn`: see [`Fc3Bn`]
/// - `local`: the Local Perceptron's branches, kernels `[O, C/g, k, k]` with odd `k`, padding
///   `k/2`, `groups` groups; may be empty
/// - `groups`: `g` (v1 `fc3_groups`, RepMLPNet `S` with `C = O = S`); `h×w` the partition
///
/// Errors (naming `equivalent_fc3`, or the step that failed) on any shape disagreement.
pub fn equivalent_fc3(
    fc3_weight: &Tensor,
    fc3_bn: Fc3Bn<'_>,
    local: &[ConvBn],
    groups: usize,
    h: usize,
    w: usize,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "equivalent_fc3";
    let rows = match fc3_weight.shape() {
        [r, _, 1, 1] | [r, _] => *r,
        s => {
            return Err(TensorError::shape(
                OP,
                "fc3 weight [O·h·w, C·h·w/g, 1, 1] or [O·h·w, C·h·w/g]",
                format!("weight {}", fmt_shape(s)),
            ));
        }
    };
    let hw = h.checked_mul(w).filter(|&hw| hw > 0).ok_or_else(|| {
        TensorError::arg(OP, format!("partition size h×w must be ≥ 1×1, got {h}×{w}"))
    })?;
    let (fw, fb) = match fc3_bn {
        Fc3Bn::PerOutput(bn) => fuse_bn(fc3_weight, None, bn)?,
        Fc3Bn::PerChannel(bn) => fuse_bn_repeat_interleave(fc3_weight, None, bn, hw)?,
        Fc3Bn::None => (fc3_weight.clone(), Tensor::zeros(&[rows])?),
    };
    if local.is_empty() {
        return Ok((fw, fb));
    }
    let fused = local.iter().map(ConvBn::fuse).collect::<Result<Vec<_>>>()?;
    let (kernel, bias) = merge_branches(&fused)?;
    let cw = conv_to_fc(&kernel, groups, h, w)?;
    let cb = conv_bias_to_fc(&bias, h, w)?;
    let (r, c) = (cw.shape()[0], cw.shape()[1]);
    if fw.shape()[..2] != [r, c] {
        return Err(TensorError::shape(
            OP,
            format!(
                "fc3 weight [O·h·w, C·h·w/g] = [{r}, {c}] (from the local kernels {} with \
                 groups = {groups}, h×w = {h}×{w})",
                fmt_shape(kernel.shape())
            ),
            format!("weight {}", fmt_shape(fc3_weight.shape())),
        ));
    }
    let wsum: Vec<f32> = fw
        .to_vec()
        .iter()
        .zip(cw.to_vec())
        .map(|(a, b)| a + b)
        .collect();
    let bsum: Vec<f32> = fb
        .to_vec()
        .iter()
        .zip(cb.to_vec())
        .map(|(a, b)| a + b)
        .collect();
    Ok((
        Tensor::from_vec(wsum, fw.shape())?,
        Tensor::from_vec(bsum, &[rows])?,
    ))
}
