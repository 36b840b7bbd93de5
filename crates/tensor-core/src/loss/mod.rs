//! Softmax, log-softmax and cross-entropy, forward and backward side by side.
//!
//! - [`softmax`] / [`softmax_backward`], [`log_softmax`] /
//!   [`log_softmax_backward`]: along any axis (a fast path for the last axis),
//!   numerically stable (the maximum is subtracted first).
//! - [`cross_entropy`] / [`cross_entropy_backward`]: mean cross-entropy of
//!   logits `[N, K]` against class indices or soft (mixup) targets, with label
//!   smoothing, as `torch.nn.functional.cross_entropy(reduction="mean")`.
//!
//! Numerics: the maximum is found in f32, exponentials and sums are computed
//! in f64 and each result is rounded to f32 once (softmax: twice). Every sum
//! is sequential within one row/column and every total over rows is added in
//! row order, so results are bit-identical for any thread count.
//!
//! ```
//! use allmlp_tensor_core::{loss::{cross_entropy, softmax, Targets}, Tensor};
//! let logits = Tensor::from_vec(vec![0.0, 0.0, 1.0, 2.0], &[2, 2])?;
//! let p = softmax(&logits, 1)?;
//! assert_eq!(p.get(&[0, 0])?, 0.5);
//! let loss = cross_entropy(&logits, Targets::Classes(&[0, 1]), 0.0)?;
//! let want = (2f64.ln() + (1.0 + (-1f64).exp()).ln()) / 2.0;
//! assert!((loss as f64 - want).abs() < 1e-6);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

mod cross_entropy;
mod softmax;

pub use cross_entropy::{Targets, cross_entropy, cross_entropy_backward};
pub use softmax::{log_softmax, log_softmax_backward, softmax, softmax_backward};
