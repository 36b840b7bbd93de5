//! Folding an eval-mode BatchNorm into the layer before it.
//!
//! A BatchNorm with running statistics is an affine map per channel:
//! `BN(z) = t·z + s` with `σ = sqrt(running_var + eps)`, `t = γ/σ`, `s = β − μ·t`.
//! After a linear layer `z = W·x + b` (a conv or an FC, output channel = dim 0 of `W`):
//!
//! ```text
//! W' = W · t        (row o of W scaled by t_o)
//! b' = β + (b − μ)·t = t·b + s
//! ```
//!
//! [`fuse_bn`] is that, for a weight of any rank. [`fuse_bn_repeat_interleave`] is the
//! RepMLPNet form, where one BN channel covers `r` consecutive outputs (the FC3 of a
//! RepMLPNet block has `S·h·w` outputs followed by `BatchNorm2d(S)` on the output
//! reshaped to `[.., S, h, w]`): `t` and `s` are repeat-interleaved `r = h·w` times,
//! as the authors' `repmlpnet.py` `fuse_bn` does.
//!
//! Arithmetic is done in f64 and rounded to f32 once.
//!
//! ```
//! use allmlp_reparam::{BnParams, fuse_bn};
//! use allmlp_tensor_core::Tensor;
//! // γ = 2, β = 1, μ = 3, var = 4 − eps  ⇒  σ = 2, t = 1, s = −2.
//! let eps = 1e-5;
//! let bn = BnParams::new(
//!     Tensor::full(&[1], 2.0)?, Tensor::full(&[1], 1.0)?,
//!     Tensor::full(&[1], 3.0)?, Tensor::full(&[1], 4.0 - eps)?, eps,
//! )?;
//! let (w, b) = fuse_bn(&Tensor::full(&[1, 2], 5.0)?, None, &bn)?;
//! assert_eq!(w.to_vec(), vec![5.0, 5.0]);
//! assert_eq!(b.to_vec(), vec![-2.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use allmlp_layers::{BatchNorm1d, BatchNorm2d};
use allmlp_tensor_core::error::fmt_shape;
use allmlp_tensor_core::{Result, Tensor, TensorError};

/// The eval-mode parameters of one BatchNorm: `γ`, `β`, running mean `μ`, running var, `eps`.
///
/// All four tensors are `[C]`. Construct with [`BnParams::new`] (validates the shapes) or
/// from a layer with [`BnParams::from_batch_norm1d`] / [`BnParams::from_batch_norm2d`].
#[derive(Clone, Debug)]
pub struct BnParams {
    /// `γ: [C]` (PyTorch's `weight`).
    pub weight: Tensor,
    /// `β: [C]` (PyTorch's `bias`).
    pub bias: Tensor,
    /// `μ: [C]`.
    pub running_mean: Tensor,
    /// `[C]`, each `≥ 0`.
    pub running_var: Tensor,
    /// Added to the variance, `> 0`.
    pub eps: f32,
}

impl BnParams {
    /// Validated parameters: all four tensors `[C]` with the same `C`, `eps > 0` and
    /// finite, `running_var + eps > 0`.
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        eps: f32,
    ) -> Result<BnParams> {
        let bn = BnParams {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
        };
        bn.validate("BnParams::new")?;
        Ok(bn)
    }

    /// Checks what [`BnParams::new`] checks, for parameters built field by field; every
    /// fold of this crate calls it first, naming itself as `op` in the error.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let c = match self.weight.shape() {
            [c] => *c,
            s => return Err(TensorError::shape(op, "BatchNorm weight [C]", fmt_shape(s))),
        };
        for (name, t) in [
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            if t.shape() != [c] {
                return Err(TensorError::shape(
                    op,
                    format!("BatchNorm {name} [C] = [{c}] (the length of weight)"),
                    format!("{name} {}", fmt_shape(t.shape())),
                ));
            }
        }
        let eps = self.eps;
        if !(eps.is_finite() && eps > 0.0) {
            return Err(TensorError::arg(
                op,
                format!("BatchNorm eps must be > 0, got {eps}"),
            ));
        }
        if let Some(v) = self
            .running_var
            .to_vec()
            .into_iter()
            .find(|&v| v.is_nan() || v + eps <= 0.0)
        {
            return Err(TensorError::arg(
                op,
                format!("BatchNorm running_var + eps must be > 0, got running_var = {v}"),
            ));
        }
        Ok(())
    }

    /// The eval-mode parameters of a `BatchNorm2d` layer (γ = 1, β = 0 if not affine).
    pub fn from_batch_norm2d(bn: &BatchNorm2d) -> Result<BnParams> {
        from_layer(
            bn.weight.as_ref().map(|w| w.value()),
            bn.bias.as_ref().map(|b| b.value()),
            bn.running_mean.get(),
            bn.running_var.get(),
            bn.eps,
        )
    }

    /// The eval-mode parameters of a `BatchNorm1d` layer (γ = 1, β = 0 if not affine).
    pub fn from_batch_norm1d(bn: &BatchNorm1d) -> Result<BnParams> {
        from_layer(
            bn.weight.as_ref().map(|w| w.value()),
            bn.bias.as_ref().map(|b| b.value()),
            bn.running_mean.get(),
            bn.running_var.get(),
            bn.eps,
        )
    }

    /// Number of channels `C`.
    pub fn len(&self) -> usize {
        self.weight.numel()
    }

    /// True when `C = 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The per-channel affine map `BN(z) = t·z + s`: `(t, s)`, each of length `C`, in f64.
    ///
    /// `t = γ/sqrt(var + eps)`, `s = β − μ·t`.
    pub fn scale_shift(&self) -> (Vec<f64>, Vec<f64>) {
        let (g, b) = (self.weight.to_vec(), self.bias.to_vec());
        let (m, v) = (self.running_mean.to_vec(), self.running_var.to_vec());
        let eps = self.eps as f64;
        let t: Vec<f64> = g
            .iter()
            .zip(&v)
            .map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt())
            .collect();
        let s = b
            .iter()
            .zip(&m)
            .zip(&t)
            .map(|((&b, &m), &t)| b as f64 - m as f64 * t)
            .collect();
        (t, s)
    }
}

fn from_layer(
    w: Option<Tensor>,
    b: Option<Tensor>,
    mean: Tensor,
    var: Tensor,
    eps: f32,
) -> Result<BnParams> {
    let c = mean.numel();
    let w = match w {
        Some(w) => w,
        None => Tensor::ones(&[c])?,
    };
    let b = match b {
        Some(b) => b,
        None => Tensor::zeros(&[c])?,
    };
    BnParams::new(w, b, mean, var, eps)
}

/// Folds `bn` into a conv or FC: `(W', b')` with `W' = W·t` per output channel and
/// `b' = β + (b − μ)·t`.
///
/// - `weight: [O, ...]` of any rank ≥ 1 (conv `[O, C/g, k, k]`, FC `[O, I]`, fc3 `[O·h·w,
///   C·h·w/g, 1, 1]`); output channel = dim 0
/// - `bias: [O]` or `None` (no bias: `b = 0`)
/// - `bn`: `C = O` channels
///
/// Returns `weight' ` with the shape of `weight` and `bias': [O]`.
pub fn fuse_bn(weight: &Tensor, bias: Option<&Tensor>, bn: &BnParams) -> Result<(Tensor, Tensor)> {
    fuse(weight, bias, bn, 1, "fuse_bn")
}

/// [`fuse_bn`] where each BN channel covers `repeat` consecutive output channels of the
/// layer (RepMLPNet's FC3 followed by `BatchNorm2d(S)`: `O = S·h·w`, `repeat = h·w`).
///
/// `weight: [O, ...]` with `O = bn.len()·repeat`, `bias: [O]` or `None`. The BN's `t`
/// and `s` are repeat-interleaved: output `o` uses channel `o / repeat`.
pub fn fuse_bn_repeat_interleave(
    weight: &Tensor,
    bias: Option<&Tensor>,
    bn: &BnParams,
    repeat: usize,
) -> Result<(Tensor, Tensor)> {
    if repeat == 0 {
        return Err(TensorError::arg(
            "fuse_bn_repeat_interleave",
            "repeat must be ≥ 1, got 0",
        ));
    }
    fuse(weight, bias, bn, repeat, "fuse_bn_repeat_interleave")
}

fn fuse(
    weight: &Tensor,
    bias: Option<&Tensor>,
    bn: &BnParams,
    repeat: usize,
    op: &'static str,
) -> Result<(Tensor, Tensor)> {
    bn.validate(op)?;
    let o = match weight.shape().first() {
        Some(&o) => o,
        None => {
            return Err(TensorError::shape(
                op,
                "weight [O, ...] of rank ≥ 1",
                "a scalar",
            ));
        }
    };
    let c = bn.len();
    if c.checked_mul(repeat) != Some(o) {
        let expected = if repeat == 1 {
            format!(
                "BatchNorm length = O = {o} (dim 0 of weight {})",
                fmt_shape(weight.shape())
            )
        } else {
            format!(
                "BatchNorm length · repeat = O = {o} (dim 0 of weight {}), repeat = {repeat}",
                fmt_shape(weight.shape())
            )
        };
        return Err(TensorError::shape(
            op,
            expected,
            format!("BatchNorm length {c}"),
        ));
    }
    if let Some(b) = bias
        && b.shape() != [o]
    {
        return Err(TensorError::shape(
            op,
            format!("bias [O] = [{o}]"),
            format!("bias {}", fmt_shape(b.shape())),
        ));
    }
    let (t, s) = bn.scale_shift();
    let row = weight.numel().checked_div(o).unwrap_or(0);
    let mut w = weight.contiguous().into_vec();
    if row > 0 {
        for (i, r) in w.chunks_exact_mut(row).enumerate() {
            let ti = t[i / repeat];
            r.iter_mut().for_each(|v| *v = (*v as f64 * ti) as f32);
        }
    }
    let b0 = bias.map(|b| b.to_vec());
    let b: Vec<f32> = (0..o)
        .map(|i| {
            let bi = b0.as_ref().map_or(0.0, |b| b[i] as f64);
            (bi * t[i / repeat] + s[i / repeat]) as f32
        })
        .collect();
    Ok((
        Tensor::from_vec(w, weight.shape())?,
        Tensor::from_vec(b, &[o])?,
    ))
}
