//! `matmul` with `torch.matmul` semantics (rank ≥ 2 operands, broadcast batch).
//!
//! Backward: `dA = dC · Bᵀ`, `dB = Aᵀ · dC`, each summed over the batch
//! dimensions its operand was broadcast along. The transposes are strided
//! views, so no operand is copied.

use allmlp_tensor_core::Tensor;

use crate::{AutogradError, Function, Result, Var};

struct MatMul {
    a: Tensor,
    b: Tensor,
}

fn t_last(x: &Tensor) -> Result<Tensor> {
    let r = x.ndim();
    Ok(x.transpose(r - 2, r - 1)?)
}

impl Function for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let ga = if needs[0] {
            Some(g.matmul(&t_last(&self.b)?)?.sum_to(self.a.shape())?)
        } else {
            None
        };
        let gb = if needs[1] {
            Some(t_last(&self.a)?.matmul(g)?.sum_to(self.b.shape())?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

impl Var {
    /// Matrix product of operands of rank ≥ 2 (`[.., m, k] × [.., k, n]`).
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.value(), other.value());
        if a.ndim() < 2 || b.ndim() < 2 {
            return Err(AutogradError::InvalidArgument {
                op: "matmul",
                msg: format!(
                    "differentiable matmul needs operands of rank >= 2, got {:?} and {:?}",
                    a.shape(),
                    b.shape()
                ),
            });
        }
        let out = a.matmul(&b)?;
        Ok(Var::from_op(out, &[self, other], MatMul { a, b }))
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_tensor_core::Tensor;

    #[test]
    fn matmul_gradients_with_transposed_and_shared_operands() {
        let opts = GradcheckOptions::default();
        // Token mixing: W [3, 5] shared by every image X [2, 5, 4] (X non-contiguous).
        let w = Tensor::randn(&[3, 5], 0.0, 1.0, 1).unwrap();
        let x = Tensor::randn(&[2, 4, 5], 0.0, 1.0, 2)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        gradcheck("matmul", &[w, x.clone()], |v| v[0].matmul(&v[1]), opts).unwrap();
        // Channel mixing: X [2, 5, 4] · Wᵀ with W [6, 4] passed transposed.
        let w2 = Tensor::randn(&[6, 4], 0.0, 1.0, 3)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        gradcheck("matmul", &[x, w2], |v| v[0].matmul(&v[1]), opts).unwrap();
        let a = crate::Var::parameter(Tensor::zeros(&[3]).unwrap());
        assert!(a.matmul(&a).is_err());
    }
}
