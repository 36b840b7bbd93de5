//! A training batch cut into parts whose forward and backward passes run side
//! by side ([`threads::side_by_side`]), their gradients added in part order.
//!
//! The parts' losses are means over their own rows; weighting each part's
//! backward by its share of the batch (`rows / batch`) makes the summed
//! gradients those of the whole batch's mean loss, up to the order in which
//! the products add (a weight gradient sums over each part's rows, then the
//! parts). The cut depends on the batch size only, never on the thread count,
//! so a step gives the same bits on any number of threads.

use std::ops::Range;

use allmlp_autograd::tensor_core::{Tensor, TensorError, threads};
use allmlp_autograd::{LeafGrads, Result, Var, is_grad_enabled, no_grad};

use crate::module::{Module, named_buffers};

/// How many parts a training batch of `batch` images is cut into for `model`:
/// two, or one when the batch has fewer than two images or the model has
/// buffers (BatchNorm's running statistics: its batch statistics would be
/// each part's instead of the whole batch's, changing the step).
pub fn batch_parts(model: &dyn Module, batch: usize) -> usize {
    if batch < 2 || !named_buffers(model).is_empty() {
        1
    } else {
        2
    }
}

/// `min(parts, batch)` contiguous row ranges (at least one) covering
/// `0..batch`, sizes differing by at most one (the first ones larger): no
/// part is empty unless the batch is.
pub fn part_rows(batch: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, batch.max(1));
    let (base, extra) = (batch / parts, batch % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Forward and backward of one batch of `batch` rows cut into (at most)
/// `parts` ([`part_rows`]), run side by side: `part(i, rows)` runs part `i`'s forward
/// and returns its loss (a mean over `rows`, one element) and anything else
/// the caller wants back (its logits). Each loss is back-propagated with the
/// weight `rows.len() / batch`; the leaves' gradients are added in part order
/// and accumulated into the leaves, as one `backward` over the whole batch's
/// mean loss would.
///
/// Returns the batch's loss (the weighted sum of the parts') and the parts'
/// extras in order. An error of any part is returned (the first in part
/// order), with no gradient accumulated. Inside a `no_grad` scope the parts
/// record nothing, so backward reports [`allmlp_autograd::AutogradError::NoGradient`].
///
/// ```
/// use allmlp_layers::{batch_parts::forward_backward_parts, Linear, Module, Ctx};
/// use allmlp_layers::autograd::Var;
/// use allmlp_layers::autograd::tensor_core::Tensor;
/// let fc = Linear::new(3, 1, true, 7)?;
/// let x = Tensor::randn(&[4, 3], 0.0, 1.0, 1)?;
/// let (loss, rows) = forward_backward_parts(4, 2, |_, rows| {
///     let y = fc.forward(&Var::constant(x.narrow(0, rows.start, rows.len())?), &Ctx::train(0))?;
///     Ok((y.mean(&[0, 1], false)?, rows.len()))
/// })?;
/// assert_eq!(rows, [2, 2]);
/// // d mean(x·wᵀ + b) / db = 1, from the two halves' 0.5 each.
/// assert_eq!(fc.bias.as_ref().unwrap().grad().unwrap().to_vec(), [1.0]);
/// assert!(loss.is_finite());
/// # Ok::<(), allmlp_layers::autograd::AutogradError>(())
/// ```
pub fn forward_backward_parts<T: Send>(
    batch: usize,
    parts: usize,
    part: impl Fn(usize, Range<usize>) -> Result<(Var, T)> + Sync,
) -> Result<(f64, Vec<T>)> {
    let rows = part_rows(batch, parts);
    let grad_enabled = is_grad_enabled();
    let run = |i: usize| -> Result<(f64, LeafGrads, T)> {
        let r = rows[i].clone();
        let weight = r.len() as f32 / batch.max(1) as f32;
        let pass = || -> Result<(f64, LeafGrads, T)> {
            let (loss, extra) = part(i, r)?;
            let value = loss.value();
            if value.numel() != 1 {
                return Err(TensorError::shape(
                    "forward_backward_parts",
                    "each part's loss to be one element",
                    format!("part {i}'s loss of shape {:?}", value.shape()),
                )
                .into());
            }
            let grads = loss.backward_collect(Tensor::full(value.shape(), weight)?)?;
            Ok((f64::from(weight) * f64::from(value.item()?), grads, extra))
        };
        // The caller's grad mode, which is per thread, holds in every part.
        if grad_enabled { pass() } else { no_grad(pass) }
    };
    let mut loss = 0.0;
    let mut total = LeafGrads::default();
    let mut extras = Vec::with_capacity(rows.len());
    for done in threads::side_by_side(rows.len(), run) {
        let (part_loss, grads, extra) = done?;
        loss += part_loss;
        total.add(grads)?;
        extras.push(extra);
    }
    total.accumulate()?;
    Ok((loss, extras))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::{Ctx, named_parameters};
    use crate::{BatchNorm1d, Linear, Mlp, mlp::Activation};
    use allmlp_autograd::ops::{Targets, cross_entropy};

    #[test]
    fn rows_cover_the_batch_in_near_equal_parts() {
        assert_eq!(part_rows(128, 2), [0..64, 64..128]);
        assert_eq!(part_rows(7, 2), [0..4, 4..7]);
        assert_eq!(part_rows(5, 3), [0..2, 2..4, 4..5]);
        assert_eq!(part_rows(1, 2), vec![(0..1)]);
        assert_eq!(part_rows(3, 5), [0..1, 1..2, 2..3]);
        assert_eq!(part_rows(9, 1), vec![(0..9)]);
    }

    #[test]
    fn models_with_buffers_are_not_cut() {
        let mlp = Mlp::new(4, 8, 3, Activation::Gelu, 0.0, 1).unwrap();
        assert_eq!(batch_parts(&mlp, 128), 2);
        assert_eq!(batch_parts(&mlp, 1), 1);
        assert_eq!(batch_parts(&BatchNorm1d::new(4).unwrap(), 128), 1);
    }

    fn grads(m: &dyn Module) -> Vec<Vec<f32>> {
        named_parameters(m)
            .into_iter()
            .map(|(_, p)| p.grad().expect("a gradient").to_vec())
            .collect()
    }

    /// An MLP classifier's gradients from a batch cut in parts: within f32
    /// rounding of one pass over the whole batch, the same loss, and the same
    /// bits whether the parts run side by side or one after the other (on a
    /// one-thread share), run after run.
    #[test]
    fn parts_give_the_whole_batch_gradient_side_by_side_or_in_turn() {
        let mlp = Mlp::new(6, 16, 5, Activation::Gelu, 0.0, 3).unwrap();
        let x = Tensor::randn(&[9, 6], 0.0, 1.0, 4).unwrap();
        let labels: Vec<usize> = (0..9).map(|i| (i * 3) % 5).collect();
        let zero = |m: &Mlp| named_parameters(m).iter().for_each(|(_, p)| p.zero_grad());

        let logits = mlp
            .forward(&Var::constant(x.clone()), &Ctx::train(0))
            .unwrap();
        let loss = cross_entropy(&logits, Targets::Classes(&labels), 0.1).unwrap();
        loss.backward().unwrap();
        let (whole, whole_loss) = (grads(&mlp), loss.value().item().unwrap());

        let cut = |parts: usize| {
            zero(&mlp);
            let (loss, n) = forward_backward_parts(9, parts, |_, r| {
                let xi = Var::constant(x.narrow(0, r.start, r.len())?);
                let logits = mlp.forward(&xi, &Ctx::train(0))?;
                Ok((
                    cross_entropy(&logits, Targets::Classes(&labels[r.clone()]), 0.1)?,
                    r.len(),
                ))
            })
            .unwrap();
            assert_eq!(n.iter().sum::<usize>(), 9);
            (grads(&mlp), loss)
        };
        let (two_parts, loss2) = cut(2);
        assert!(
            (loss2 - f64::from(whole_loss)).abs() < 1e-6,
            "{loss2} vs {whole_loss}"
        );
        for (a, b) in two_parts.iter().flatten().zip(whole.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert_eq!(cut(2).0, two_parts, "a second run");
        // Inside one piece of a side-by-side pair (one thread, when the
        // kernel pool has two), the two parts run one after the other: the
        // same bits.
        let nested = threads::side_by_side(2, |i| (i == 0).then(|| cut(2).0));
        assert_eq!(nested[0].as_ref(), Some(&two_parts));
        // Three parts of 3 rows: a different cut, still the whole gradient.
        let (three, _) = cut(3);
        for (a, b) in three.iter().flatten().zip(whole.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// A part's error comes back and nothing is accumulated; a loss of more
    /// than one element is refused.
    #[test]
    fn errors_leave_the_gradients_alone() {
        let fc = Linear::new(3, 2, true, 5).unwrap();
        let x = Tensor::randn(&[4, 3], 0.0, 1.0, 6).unwrap();
        let e = forward_backward_parts(4, 2, |i, r| {
            let y = fc.forward(
                &Var::constant(x.narrow(0, r.start, r.len())?),
                &Ctx::train(0),
            )?;
            if i == 1 {
                return Err(TensorError::arg("part", "part 1 failed").into());
            }
            Ok((y.mean(&[0, 1], false)?, ()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("part 1 failed"), "{e}");
        assert!(fc.weight.grad().is_none());

        let e = forward_backward_parts(4, 2, |_, r| {
            let y = fc.forward(
                &Var::constant(x.narrow(0, r.start, r.len())?),
                &Ctx::train(0),
            )?;
            Ok((y, ()))
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("part 0's loss of shape [2, 2]"),
            "{e}"
        );
        assert!(fc.weight.grad().is_none());
    }
}
