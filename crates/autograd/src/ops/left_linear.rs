//! `left_linear`: `y = act(W·x + b·1ᵀ)`, a linear layer applied along the
//! second-to-last dimension, as Mixer's token mixing applies one.
//!
//! Shapes: `x [.., S, C]`, `weight [D, S]`, `bias [D]`, `y [.., D, C]`. timm
//! writes it `fc(x.transpose(-1, -2)).transpose(-1, -2)`; here it is one
//! batched GEMM with the weight shared (batch stride 0) and no transposed
//! copy, the bias (per row of each `[D, C]` output) and the activation applied
//! in the GEMM's epilogue, which also stores the derivative `act′(Z)` when
//! recording. Backward: `dZ = dY ⊙ act′(Z)`, `dx = Wᵀ·dZ` (batched, shared
//! weight), `dW = Σ_batch dZ·xᵀ`, `db = Σ_{batch, C} dZ`.

use allmlp_tensor_core::gemm::{
    Backend, Bias, Fresh, FreshEpilogue, MatRef, gemm_batched_fresh_with, gemm_sum_nt,
};
use allmlp_tensor_core::{Tensor, TensorError};

use super::linear::{Activation, activation_backward, fused_epilogue, records, taped};
use crate::{Function, Result, Var};

struct LeftLinear {
    x: Tensor,
    w: Tensor,
    has_bias: bool,
    /// The activation's derivative at the pre-activation, when `act` is not
    /// the identity.
    d: Option<Tensor>,
}

impl Function for LeftLinear {
    fn name(&self) -> &'static str {
        "left_linear"
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = activation_backward(self.d.as_ref(), g)?;
        left_linear_grads(&self.x, &self.w, self.has_bias, &g, needs)
    }
}

/// The gradients `[dx, dW, db]` (`db` only with a bias) of `z = W·x + b·1ᵀ`
/// from `dZ` (`[.., D, C]`), each `None` where `needs` says so:
/// `dx = Wᵀ·dZ` (batched, shared weight), `dW = Σ_batch dZ·xᵀ` (one
/// [`gemm_sum_nt`]: the batch summed in its accumulators),
/// `db = Σ_{batch, C} dZ`.
pub(crate) fn left_linear_grads(
    x: &Tensor,
    w: &Tensor,
    has_bias: bool,
    dz: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let dx = if needs[0] {
        Some(left_input_grad_times(dz, w, None, x.shape())?)
    } else {
        None
    };
    let dw = if needs[1] {
        let (d, s) = (w.shape()[0], w.shape()[1]);
        let c = x.shape()[x.ndim() - 1];
        let batch: usize = x.shape()[..x.ndim() - 2].iter().product();
        let (g, x) = (dz.contiguous(), x.contiguous());
        let (gs, xs) = (
            g.as_slice().expect("contiguous"),
            x.as_slice().expect("contiguous"),
        );
        let a = MatRef::row_major(gs, d, c)?;
        let dw = gemm_sum_nt(1.0, batch, a, d * c, MatRef::row_major(xs, s, c)?, s * c)?;
        Some(Tensor::from_vec(dw, &[d, s])?)
    } else {
        None
    };
    let mut grads = vec![dx, dw];
    if has_bias {
        grads.push(if needs[2] {
            let d = w.shape()[0];
            Some(dz.sum_to(&[d, 1])?.reshape(&[d])?)
        } else {
            None
        });
    }
    Ok(grads)
}

/// `dZ = (Wᵀ·dY) ⊙ m`: the input gradient of `y = W·h + b·1ᵀ` (`W [S, D]`,
/// `dY [.., S, C]`) times `m`, laid out like `h` (`shape`, `[.., D, C]`), in
/// one batched product (the same one `Wᵀ.matmul(dY)` runs): a token MLP's
/// gradient at its hidden pre-activation, `m` being the activation's
/// derivative there (`None`: no multiplication).
pub(crate) fn left_input_grad_times(
    dy: &Tensor,
    w: &Tensor,
    m: Option<&Tensor>,
    shape: &[usize],
) -> Result<Tensor> {
    let (s, d) = (w.shape()[0], w.shape()[1]);
    let c = shape[shape.len() - 1];
    let batch: usize = shape[..shape.len() - 2].iter().product();
    let (g, w, m) = (dy.contiguous(), w.contiguous(), m.map(Tensor::contiguous));
    let epilogue = FreshEpilogue {
        multiplier: m.as_ref().map(|m| m.as_slice().expect("contiguous")),
        ..FreshEpilogue::default()
    };
    let out = if batch * d * c == 0 {
        Vec::new()
    } else {
        gemm_batched_fresh_with(
            Backend::Auto,
            batch,
            1.0,
            MatRef::row_major(w.as_slice().expect("contiguous"), s, d)?.t(),
            0,
            MatRef::row_major(g.as_slice().expect("contiguous"), s, c)?,
            s * c,
            epilogue,
        )?
        .c
    };
    Ok(Tensor::from_vec(out, shape)?)
}

/// `act(W·x + b·1ᵀ)` for `x [.., S, C]` (rank ≥ 2), `weight [D, S]`,
/// optional `bias [D]`: `[.., D, C]`, the bias and activation fused into the
/// GEMM's epilogue.
///
/// ```
/// use allmlp_autograd::{Var, ops::{Activation, left_linear}};
/// use allmlp_autograd::tensor_core::Tensor;
/// let x = Var::constant(Tensor::randn(&[2, 5, 4], 0.0, 1.0, 1)?); // [B, S, C]
/// let w = Var::parameter(Tensor::randn(&[3, 5], 0.0, 1.0, 2)?); // [D, S]
/// let b = Var::parameter(Tensor::randn(&[3], 0.0, 1.0, 3)?);
/// let y = left_linear(&x, &w, Some(&b), Activation::Gelu)?;
/// let separate = w.matmul(&x)?.add(&b.reshape(&[3, 1])?)?.gelu();
/// assert_eq!(y.value(), separate.value());
/// # Ok::<(), allmlp_autograd::AutogradError>(())
/// ```
pub fn left_linear(x: &Var, weight: &Var, bias: Option<&Var>, act: Activation) -> Result<Var> {
    let record = records(&[Some(x), Some(weight), bias]);
    let w = weight.value().contiguous();
    let xv = x.value().contiguous();
    let (y, d) = left_linear_forward(&xv, &w, bias.map(Var::value).as_ref(), act, record)?;
    if !record {
        return Ok(Var::constant(y));
    }
    let f = LeftLinear {
        x: xv,
        w,
        has_bias: bias.is_some(),
        d,
    };
    Ok(taped(y, &[Some(x), Some(weight), bias], f))
}

/// `(act(W·x + b·1ᵀ), act′(W·x + b·1ᵀ))`, the derivative only when
/// `record`ing and `act` is not the identity: [`left_linear`]'s values,
/// checked.
pub(crate) fn left_linear_forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    record: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "left_linear";
    let r = x.ndim();
    if w.ndim() != 2 || r < 2 || x.shape()[r - 2] != w.shape()[1] {
        return Err(TensorError::shape(
            OP,
            "input [.., S, C] and weight [D, S] with matching `S`",
            format!("input {:?}, weight {:?}", x.shape(), w.shape()),
        )
        .into());
    }
    let (d, s, c) = (w.shape()[0], w.shape()[1], x.shape()[r - 1]);
    let bv = bias.map(Tensor::contiguous);
    if let Some(b) = &bv {
        b.expect_shape(OP, &[d])?;
    }
    let batch: usize = x.shape()[..r - 2].iter().product();
    let xc = x.contiguous();
    let wc = w.contiguous();
    let mut shape = x.shape().to_vec();
    shape[r - 2] = d;
    let epilogue = fused_epilogue(bv.as_ref(), Bias::PerRow, act, record);
    let Fresh {
        c: y,
        derivative: dact,
        ..
    } = if batch * d * c == 0 {
        Fresh {
            derivative: epilogue.derivative.then(Vec::new),
            ..Fresh::default()
        }
    } else {
        gemm_batched_fresh_with(
            Backend::Auto,
            batch,
            1.0,
            MatRef::row_major(wc.as_slice().expect("contiguous"), d, s)?,
            0,
            MatRef::row_major(xc.as_slice().expect("contiguous"), s, c)?,
            s * c,
            epilogue,
        )?
    };
    let dact = dact.map(|v| Tensor::from_vec(v, &shape)).transpose()?;
    Ok((Tensor::from_vec(y, &shape)?, dact))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    /// Equal to `W.matmul(x) + b` then the activation op (values bit for bit,
    /// gradients to f32 rounding of differently ordered sums: 1e-5 relative
    /// to the largest), and gradchecked, for a non-contiguous input, rank 2
    /// and rank 4 inputs, no bias, and every activation.
    #[test]
    fn left_linear_equals_matmul_add_activation_and_gradchecks() {
        let x = Tensor::randn(&[2, 4, 5], 0.0, 1.0, 1)
            .unwrap()
            .transpose(1, 2)
            .unwrap(); // [2, 5, 4], non-contiguous
        let w = Tensor::randn(&[3, 5], 0.0, 1.0, 2).unwrap();
        let b = Tensor::from_vec(vec![0.011, -0.023, 0.037], &[3]).unwrap();
        type Case = (Activation, fn(&Var) -> Var);
        let acts: [Case; 4] = [
            (Activation::Identity, |v| v.clone()),
            (Activation::Gelu, Var::gelu),
            (Activation::GeluTanh, Var::gelu_tanh),
            (Activation::Relu, Var::relu),
        ];
        let x4 = Tensor::randn(&[2, 3, 5, 6], 0.0, 1.0, 3).unwrap();
        let x2 = Tensor::randn(&[5, 7], 0.0, 1.0, 4).unwrap();
        let o = GradcheckOptions::default();
        for (act, separate) in acts {
            for x in [&x, &x4, &x2] {
                let run = |fused: bool| {
                    let v = [x, &w, &b].map(|t| Var::parameter(t.clone()));
                    let y = if fused {
                        left_linear(&v[0], &v[1], Some(&v[2]), act).unwrap()
                    } else {
                        let lin = v[1].matmul(&v[0]).unwrap();
                        separate(&lin.add(&v[2].reshape(&[3, 1]).unwrap()).unwrap())
                    };
                    let r = Tensor::randn(&y.shape(), 0.0, 1.0, 7).unwrap();
                    y.backward_with(r).unwrap();
                    let mut out = vec![y.value()];
                    out.extend(v.iter().map(|v| v.grad().unwrap()));
                    out
                };
                let (f, s) = (run(true), run(false));
                assert_eq!(f[0], s[0], "{act:?} {:?}: y", x.shape());
                for (i, what) in [(1, "dx"), (2, "dW"), (3, "db")] {
                    assert_eq!(f[i].shape(), s[i].shape());
                    let scale = s[i].to_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
                    let diff = f[i]
                        .to_vec()
                        .iter()
                        .zip(s[i].to_vec())
                        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
                    assert!(
                        diff <= 1e-5 * scale,
                        "{act:?} {:?}: {what} {diff}",
                        x.shape()
                    );
                }
            }
            gradcheck(
                "left_linear",
                &[x.clone(), w.clone(), b.clone()],
                |v| left_linear(&v[0], &v[1], Some(&v[2]), act),
                o,
            )
            .unwrap();
            gradcheck(
                "left_linear_nobias",
                &[x.clone(), w.clone()],
                |v| left_linear(&v[0], &v[1], None, act),
                o,
            )
            .unwrap();
        }
        let e = left_linear(
            &Var::constant(x.clone()),
            &Var::constant(w.transpose(0, 1).unwrap()),
            None,
            Activation::Gelu,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("left_linear: shape mismatch"),
            "{e}"
        );
        let e = left_linear(
            &Var::constant(x),
            &Var::constant(w),
            Some(&Var::constant(Tensor::zeros(&[5]).unwrap())),
            Activation::Identity,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("left_linear"), "{e}");
    }
}
