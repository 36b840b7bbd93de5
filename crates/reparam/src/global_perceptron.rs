//! Folding the BatchNorm after RepMLP v1's Global Perceptron average pool into `fc1`.
//!
//! In the authors' `repmlp.py` the Global Perceptron is
//! `AvgPool(h×w) → BatchNorm2d(C) → reshape(N, C·Hp·Wp) → fc1 → ReLU → fc2`. The flatten is
//! channel-major: entry `j = c·Hp·Wp + (py·Wp + px)` of fc1's input is channel `c = j / (Hp·Wp)`,
//! so BN channel `c` covers `P = Hp·Wp` consecutive inputs. With `BN(z) = t·z + s`
//! (see [`BnParams::scale_shift`]):
//!
//! ```text
//! fc1(BN(z)) = W·(t_rep ⊙ z + s_rep) + b = (W·diag(t_rep))·z + (b + W·s_rep)
//! W'[d, j] = W[d, j]·t[j / P],      b'[d] = b[d] + Σ_j W[d, j]·s[j / P]
//! ```
//!
//! (`t_rep`, `s_rep`: `t`, `s` repeat-interleaved `P` times, as the authors do).
//!
//! ```
//! use allmlp_reparam::{BnParams, fold_bn_into_fc1};
//! use allmlp_tensor_core::Tensor;
//! // C = 1 channel over P = 2 positions; BN(z) = 2z + 1 (γ = 2, β = 1, μ = 0, var = 1 − eps).
//! let bn = BnParams::new(Tensor::full(&[1], 2.0)?, Tensor::full(&[1], 1.0)?,
//!     Tensor::zeros(&[1])?, Tensor::full(&[1], 1.0 - 1e-5)?, 1e-5)?;
//! let w = Tensor::from_vec(vec![1.0, 3.0], &[1, 2])?;
//! let (w2, b2) = fold_bn_into_fc1(&bn, &w, None)?;
//! assert_eq!(w2.to_vec(), vec![2.0, 6.0]);
//! assert_eq!(b2.to_vec(), vec![4.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use allmlp_tensor_core::error::fmt_shape;
use allmlp_tensor_core::{Result, Tensor, TensorError};

use crate::bn::BnParams;

/// Folds a BatchNorm over `C` channels on fc1's input into fc1: `(weight', bias')`.
///
/// - `bn`: the pool's BN, `C` channels
/// - `fc1_weight: [D, C·P]` (`nn.Linear` layout, `P = Hp·Wp` positions per channel,
///   channel-major input), `fc1_bias: [D]` or `None`
///
/// Returns `weight': [D, C·P]`, `bias': [D]`. Errors (naming `fold_bn_into_fc1`) if the
/// weight is not rank 2, its input size is not a multiple of `C`, or the bias is not `[D]`.
pub fn fold_bn_into_fc1(
    bn: &BnParams,
    fc1_weight: &Tensor,
    fc1_bias: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "fold_bn_into_fc1";
    bn.validate(OP)?;
    let [d, inputs] = *fc1_weight.shape() else {
        return Err(TensorError::shape(
            OP,
            "fc1 weight [D, C·Hp·Wp]",
            format!("weight {}", fmt_shape(fc1_weight.shape())),
        ));
    };
    let c = bn.len();
    if c == 0 || inputs % c != 0 || inputs == 0 {
        return Err(TensorError::shape(
            OP,
            format!(
                "fc1 weight [D, C·Hp·Wp] with C = {c} (the BatchNorm length) dividing the input size"
            ),
            format!("weight {}", fmt_shape(fc1_weight.shape())),
        ));
    }
    if let Some(b) = fc1_bias
        && b.shape() != [d]
    {
        return Err(TensorError::shape(
            OP,
            format!("fc1 bias [D] = [{d}]"),
            format!("bias {}", fmt_shape(b.shape())),
        ));
    }
    let p = inputs / c;
    let (t, s) = bn.scale_shift();
    let mut w = fc1_weight.contiguous().into_vec();
    let mut b: Vec<f64> = match fc1_bias {
        Some(b) => b.to_vec().into_iter().map(f64::from).collect(),
        None => vec![0.0; d],
    };
    for (row, bd) in w.chunks_exact_mut(inputs).zip(&mut b) {
        for (j, v) in row.iter_mut().enumerate() {
            let x = *v as f64;
            *bd += x * s[j / p];
            *v = (x * t[j / p]) as f32;
        }
    }
    let b = b.into_iter().map(|v| v as f32).collect();
    Ok((
        Tensor::from_vec(w, &[d, inputs])?,
        Tensor::from_vec(b, &[d])?,
    ))
}
