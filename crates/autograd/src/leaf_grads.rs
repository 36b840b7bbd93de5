//! [`LeafGrads`]: the leaf gradients of one backward pass, held apart from the
//! leaves.

use std::collections::HashMap;

use allmlp_tensor_core::Tensor;

use crate::{Result, Var};

/// The gradients one [`Var::backward_collect`] computed for the leaves it
/// reached, in the order it first reached them, not yet added to the leaves.
///
/// Passes over parts of a batch that ran side by side finish in any order;
/// adding their `LeafGrads` in part order ([`LeafGrads::add`]) and then
/// accumulating gives the same bits every time.
#[derive(Default)]
pub struct LeafGrads {
    entries: Vec<(Var, Tensor)>,
    index: HashMap<u64, usize>,
}

impl LeafGrads {
    /// Adds the gradient `g` of one use of `leaf` (to any it already has).
    pub(crate) fn add_one(&mut self, leaf: &Var, g: Tensor) -> Result<()> {
        match self.index.get(&leaf.id()) {
            Some(&i) => {
                let sum = self.entries[i].1.add(&g)?;
                self.entries[i].1 = sum;
            }
            None => {
                self.index.insert(leaf.id(), self.entries.len());
                self.entries.push((leaf.clone(), g));
            }
        }
        Ok(())
    }

    /// Adds `other`'s gradients to these, leaf by leaf (`self + other`, in
    /// that order); leaves only `other` reached are appended.
    pub fn add(&mut self, other: LeafGrads) -> Result<()> {
        for (leaf, g) in other.entries {
            self.add_one(&leaf, g)?;
        }
        Ok(())
    }

    /// The gradient collected for `leaf`, if backward reached it.
    pub fn get(&self, leaf: &Var) -> Option<&Tensor> {
        self.index.get(&leaf.id()).map(|&i| &self.entries[i].1)
    }

    /// How many leaves have a gradient here.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when backward reached no leaf.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds each gradient to its leaf's (as [`Var::backward`] would have).
    pub fn accumulate(self) -> Result<()> {
        for (leaf, g) in self.entries {
            leaf.accumulate(g)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_tensor_core::Tensor;

    fn param(v: &[f32]) -> Var {
        Var::parameter(Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap())
    }

    /// Collected gradients equal what `backward` accumulates, bit for bit,
    /// leave the leaves untouched until `accumulate`, and add per leaf.
    #[test]
    fn collected_gradients_equal_backward_and_add_per_leaf() {
        let (a, b) = (param(&[0.3, -1.7, 2.1]), param(&[1.1, 0.4, -0.9]));
        let loss = |a: &Var, b: &Var| {
            // a used twice (a·b and a·a), b once.
            let y = a.mul(b).unwrap().add(&a.mul(a).unwrap()).unwrap();
            y.sum(&[0], false).unwrap()
        };
        loss(&a, &b).backward().unwrap();
        let (ga, gb) = (a.grad().unwrap().to_vec(), b.grad().unwrap().to_vec());
        a.zero_grad();
        b.zero_grad();

        let first = loss(&a, &b).backward_collect(Tensor::scalar(1.0)).unwrap();
        assert_eq!(first.len(), 2);
        assert!(a.grad().is_none() && b.grad().is_none());
        assert_eq!(first.get(&a).unwrap().to_vec(), ga);
        assert_eq!(first.get(&b).unwrap().to_vec(), gb);

        // A second pass that reaches only b, added after the first.
        let second = b
            .mul(&b)
            .unwrap()
            .sum(&[0], false)
            .unwrap()
            .backward_collect(Tensor::scalar(0.5))
            .unwrap();
        assert!(second.get(&a).is_none());
        let mut total = first;
        total.add(second).unwrap();
        total.accumulate().unwrap();
        assert_eq!(a.grad().unwrap().to_vec(), ga);
        let want: Vec<f32> = gb
            .iter()
            .zip([1.1f32, 0.4, -0.9])
            .map(|(g, b)| g + 0.5 * 2.0 * b)
            .collect();
        assert_eq!(b.grad().unwrap().to_vec(), want);
    }

    /// A collected graph is freed like any other: a second pass is an error.
    #[test]
    fn a_collected_graph_cannot_be_collected_again() {
        let a = param(&[1.0, 2.0]);
        let y = a.mul(&a).unwrap().sum(&[0], false).unwrap();
        let grads = y.backward_collect(Tensor::scalar(1.0)).unwrap();
        assert!(!grads.is_empty());
        assert!(y.backward_collect(Tensor::scalar(1.0)).is_err());
    }
}
