//! `linear`: `y = x·Wᵀ + b` over the last dimension, PyTorch's `F.linear`.
//!
//! Shapes: `x [.., in]`, `weight [out, in]`, `bias [out]`, `y [.., out]`.
//! Leading dimensions are flattened to rows so each pass is one GEMM:
//! forward `Y = X·Wᵀ` (bias pre-filled, β = 1), backward `dX = dY·W`,
//! `dW = dYᵀ·X` (one GEMM over all rows, K = rows) and `db = Σ_rows dY`.
//! Transposes are strides, never copies.

use allmlp_tensor_core::gemm::{MatMut, MatRef, gemm};
use allmlp_tensor_core::{Tensor, TensorError};

use crate::{Function, Result, Var};

struct Linear {
    x: Tensor,
    w: Tensor,
    has_bias: bool,
}

/// Rows of a contiguous `[.., cols]` tensor viewed as a matrix.
fn as_matrix(t: &Tensor, cols: usize) -> Result<(Tensor, usize)> {
    let t = t.contiguous();
    let rows = t.numel().checked_div(cols).unwrap_or(0);
    Ok((t, rows))
}

impl Function for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (out_f, in_f) = (self.w.shape()[0], self.w.shape()[1]);
        let (g, rows) = as_matrix(g, out_f)?;
        let gs = g.as_slice().expect("contiguous");
        let w = self.w.contiguous();
        let gm = MatRef::row_major(gs, rows, out_f)?;
        let dx = if needs[0] {
            let mut dx = vec![0.0; rows * in_f];
            let wm = MatRef::row_major(w.as_slice().expect("contiguous"), out_f, in_f)?;
            gemm(1.0, gm, wm, 0.0, MatMut::row_major(&mut dx, rows, in_f)?)?;
            Some(Tensor::from_vec(dx, self.x.shape())?)
        } else {
            None
        };
        let dw = if needs[1] {
            let (x, _) = as_matrix(&self.x, in_f)?;
            let xm = MatRef::row_major(x.as_slice().expect("contiguous"), rows, in_f)?;
            let mut dw = vec![0.0; out_f * in_f];
            gemm(
                1.0,
                gm.t(),
                xm,
                0.0,
                MatMut::row_major(&mut dw, out_f, in_f)?,
            )?;
            Some(Tensor::from_vec(dw, &[out_f, in_f])?)
        } else {
            None
        };
        let mut grads = vec![dx, dw];
        if self.has_bias {
            grads.push(if needs[2] {
                Some(g.reshape(&[rows, out_f])?.sum(&[0], false)?)
            } else {
                None
            });
        }
        Ok(grads)
    }
}

/// `x·Wᵀ + b` for `x [.., in]`, `weight [out, in]`, optional `bias [out]`.
pub fn linear(x: &Var, weight: &Var, bias: Option<&Var>) -> Result<Var> {
    const OP: &str = "linear";
    let (xv, w) = (x.value(), weight.value());
    if w.ndim() != 2 || xv.ndim() == 0 || xv.shape()[xv.ndim() - 1] != w.shape()[1] {
        return Err(TensorError::shape(
            OP,
            "input [.., in] and weight [out, in] with matching `in`",
            format!("input {:?}, weight {:?}", xv.shape(), w.shape()),
        )
        .into());
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let bv = bias.map(|b| b.value());
    if let Some(b) = &bv {
        b.expect_shape(OP, &[out_f])?;
    }
    let (xm, rows) = as_matrix(&xv, in_f)?;
    let mut y = match &bv {
        Some(b) => b.contiguous().as_slice().expect("contiguous").repeat(rows),
        None => vec![0.0; rows * out_f],
    };
    let wc = w.contiguous();
    let beta = if bv.is_some() { 1.0 } else { 0.0 };
    gemm(
        1.0,
        MatRef::row_major(xm.as_slice().expect("contiguous"), rows, in_f)?,
        MatRef::row_major(wc.as_slice().expect("contiguous"), out_f, in_f)?.t(),
        beta,
        MatMut::row_major(&mut y, rows, out_f)?,
    )?;
    let mut shape = xv.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = out_f;
    let y = Tensor::from_vec(y, &shape)?;
    let f = Linear {
        x: xv,
        w: wc,
        has_bias: bias.is_some(),
    };
    Ok(match bias {
        Some(b) => Var::from_op(y, &[x, weight, b], f),
        None => Var::from_op(y, &[x, weight], f),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn linear_matches_matmul_and_gradchecks() {
        let x = Tensor::randn(&[2, 5, 3], 0.0, 1.0, 1)
            .unwrap()
            .transpose(1, 2)
            .unwrap(); // [2, 3, 5]
        let w = Tensor::randn(&[4, 5], 0.0, 1.0, 2).unwrap();
        let b = Tensor::randn(&[4], 0.0, 1.0, 3).unwrap();
        let y = linear(
            &Var::constant(x.clone()),
            &Var::constant(w.clone()),
            Some(&Var::constant(b.clone())),
        )
        .unwrap()
        .value();
        let want = x
            .matmul(&w.transpose(0, 1).unwrap())
            .unwrap()
            .add(&b)
            .unwrap();
        for (a, e) in y.to_vec().iter().zip(want.to_vec()) {
            assert!((a - e).abs() <= 1e-5 * e.abs().max(1.0));
        }
        let o = GradcheckOptions::default();
        gradcheck(
            "linear",
            &[x.clone(), w.clone(), b],
            |v| linear(&v[0], &v[1], Some(&v[2])),
            o,
        )
        .unwrap();
        gradcheck(
            "linear_nobias",
            &[x.clone(), w.clone()],
            |v| linear(&v[0], &v[1], None),
            o,
        )
        .unwrap();
        let e = linear(
            &Var::constant(x),
            &Var::constant(w.transpose(0, 1).unwrap()),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("linear: shape mismatch"), "{e}");
    }
}
