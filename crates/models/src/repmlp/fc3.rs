//! `GroupedFc`: the Partition Perceptron's FC3, a grouped fully connected layer.
//!
//! The authors store FC3 as a 1×1 `Conv2d(C·h·w, O·h·w, groups = g)` applied to a
//! `(C·h·w)×1×1` tensor, so the weight is `[O·h·w, C·h·w/g, 1, 1]` (kept here, so checkpoints
//! load unchanged). Group `j` maps input features `j·K..(j+1)·K` (`K = C·h·w/g`) to output
//! features `j·N..(j+1)·N` (`N = O·h·w/g`).
//!
//! We compute it as ONE batched matrix product over the groups, not as a grouped 1×1
//! convolution: `x [M, g·K]` is viewed (no copy) as `[g, M, K]`, the weight as `[g, K, N]`
//! (a transposed view), and `Var::matmul` runs `g` GEMMs of `M×K·K×N` in one batched call.
//! The spec's measurement: the grouped-conv form ran at 17–22 GFLOP/s and took ~79% of a
//! RepMLP training step; the batched-GEMM form made the whole step 2× faster.

use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::tensor_core::{Tensor, TensorError};
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{Ctx, Module, Visitor, init, join};

/// A grouped FC with the authors' 1×1-conv weight layout.
#[derive(Debug)]
pub struct GroupedFc {
    /// `[out, in/groups, 1, 1]`.
    pub weight: Var,
    /// `[out]`: present in the deploy form only (the BN and the local branches folded in).
    pub bias: Option<Var>,
    /// Number of groups `g`.
    pub groups: usize,
}

impl GroupedFc {
    /// `in_features → out_features` in `groups` groups with PyTorch's Conv2d default init
    /// (kaiming-uniform, bound `1/√(in/groups)`), a bias if `bias`.
    pub fn new(
        in_features: usize,
        out_features: usize,
        groups: usize,
        bias: bool,
        seed: u64,
    ) -> Result<GroupedFc> {
        if groups == 0
            || !in_features.is_multiple_of(groups)
            || !out_features.is_multiple_of(groups)
        {
            return Err(TensorError::arg(
                "GroupedFc",
                format!(
                    "groups must be >= 1 and divide in and out features, got groups {groups}, \
                     in {in_features}, out {out_features}"
                ),
            )
            .into());
        }
        let fan_in = in_features / groups;
        let w = init::kaiming_uniform_default(&[out_features, fan_in, 1, 1], seed)?;
        let b = if bias {
            Some(init::default_bias(out_features, fan_in, seed ^ 0x9E37)?)
        } else {
            None
        };
        GroupedFc::from_tensors(w, b, groups)
    }

    /// A layer with the given `weight [out, in/groups, 1, 1]` and `bias [out]`.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, groups: usize) -> Result<GroupedFc> {
        let s = weight.shape().to_vec();
        if s.len() != 4 || s[2] != 1 || s[3] != 1 || groups == 0 || !s[0].is_multiple_of(groups) {
            return Err(TensorError::shape(
                "GroupedFc",
                format!("weight [out, in/groups, 1, 1] with out a multiple of groups = {groups}"),
                fmt_shape(&s),
            )
            .into());
        }
        if let Some(b) = &bias {
            b.expect_shape("GroupedFc", &[s[0]])?;
        }
        Ok(GroupedFc {
            weight: Var::parameter(weight),
            bias: bias.map(Var::parameter),
            groups,
        })
    }

    /// `(in_features, out_features)`.
    pub fn features(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (s[1] * self.groups, s[0])
    }
}

impl Module for GroupedFc {
    /// `x [M, in]` → `[M, out]`.
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        let (fin, fout) = self.features();
        let s = x.shape();
        if s.len() != 2 || s[1] != fin {
            return Err(TensorError::shape(
                "GroupedFc",
                format!("input [M, {fin}]"),
                fmt_shape(&s),
            )
            .into());
        }
        let (m, g) = (s[0], self.groups);
        let (k, n) = (fin / g, fout / g);
        let y = if g == 1 {
            // [M, K] · [K, N] (the weight read transposed, no copy).
            x.matmul(&self.weight.reshape(&[n, k])?.transpose(0, 1)?)?
        } else {
            // [g, M, K] · [g, K, N] → [g, M, N] → [M, g·N].
            let xg = x.reshape(&[m, g, k])?.permute(&[1, 0, 2])?;
            let wg = self.weight.reshape(&[g, n, k])?.transpose(1, 2)?;
            xg.matmul(&wg)?.permute(&[1, 0, 2])?.reshape(&[m, fout])?
        };
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        v.param(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            v.param(&join(prefix, "bias"), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_layers::autograd::gradcheck::{GradcheckOptions, gradcheck};

    /// The batched-GEMM form against a naive grouped FC (f64 loops), and its gradients.
    #[test]
    fn grouped_fc_matches_naive_loops_and_gradcheck() {
        for (g, bias) in [(1, false), (3, true)] {
            let (fin, fout, m) = (6 * g, 4 * g, 5);
            let fc = GroupedFc::new(fin, fout, g, bias, 3).unwrap();
            let x = Tensor::randn(&[m, fin], 0.0, 1.0, 7).unwrap();
            let y = fc
                .forward(&Var::constant(x.clone()), &Ctx::eval())
                .unwrap()
                .value();
            let w = fc.weight.value();
            let (k, n) = (fin / g, fout / g);
            for r in 0..m {
                for o in 0..fout {
                    let j = o / n;
                    let mut acc = 0f64;
                    for i in 0..k {
                        acc += x.get(&[r, j * k + i]).unwrap() as f64
                            * w.get(&[o, i, 0, 0]).unwrap() as f64;
                    }
                    if let Some(b) = &fc.bias {
                        acc += b.value().get(&[o]).unwrap() as f64;
                    }
                    // f32 GEMM of length ≤ 18: 1e-5 absolute at O(1) values.
                    assert!((y.get(&[r, o]).unwrap() as f64 - acc).abs() < 1e-5);
                }
            }
            let mut inputs = vec![x, w];
            if let Some(b) = &fc.bias {
                inputs.push(b.value());
            }
            gradcheck(
                "GroupedFc",
                &inputs,
                |v| {
                    GroupedFc {
                        weight: v[1].clone(),
                        bias: v.get(2).cloned(),
                        groups: g,
                    }
                    .forward(&v[0], &Ctx::eval())
                },
                GradcheckOptions::default(),
            )
            .unwrap();
        }
        assert!(GroupedFc::new(6, 4, 4, false, 0).is_err());
        let fc = GroupedFc::new(6, 4, 2, false, 0).unwrap();
        let e = fc
            .forward(
                &Var::constant(Tensor::zeros(&[2, 5]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("GroupedFc") && e.contains("[M, 6]"), "{e}");
    }
}
