//! `linear`: `y = act(x·Wᵀ + b)` over the last dimension, PyTorch's
//! `F.linear` followed by an optional activation, in one GEMM.
//!
//! Shapes: `x [.., in]`, `weight [out, in]`, `bias [out]`, `y [.., out]`.
//! Leading dimensions are flattened to rows so each pass is one GEMM: forward
//! `Y = act(X·Wᵀ + b)` with the bias and activation applied in the GEMM's
//! epilogue (no separate broadcast or activation pass; when recording, the
//! epilogue also stores the activation's derivative `act′(Z)` at the
//! pre-activation `Z`, sharing GELU's `erf` with the forward). Backward
//! `dZ = dY ⊙ act′(Z)` (one multiplication), `dX = dZ·W`,
//! `dW = dZᵀ·X` (one GEMM over all rows, K = rows) and `db = Σ_rows dZ`.
//! Transposes are strides, never copies.

use allmlp_tensor_core::gemm::{
    Bias, Fresh, FreshEpilogue, MatRef, PackedB, gemm_fresh, gemm_fresh_packed, padded_rows,
};
use allmlp_tensor_core::{Tensor, TensorError};

use crate::{Function, Result, Var, is_grad_enabled};

pub use allmlp_tensor_core::gemm::Activation;

struct Linear {
    x: Tensor,
    w: Tensor,
    has_bias: bool,
    /// The activation's derivative at the pre-activation, when `act` is not
    /// the identity.
    d: Option<Tensor>,
}

/// Rows of a contiguous `[.., cols]` tensor viewed as a matrix: the product of the leading
/// dimensions (also when `cols` is 0, where the element count cannot tell them).
fn as_matrix(t: &Tensor, cols: usize) -> Result<(Tensor, usize)> {
    let t = t.contiguous();
    let shape = t.shape();
    let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    debug_assert_eq!(
        rows * cols,
        t.numel(),
        "as_matrix: last dimension is not {cols}"
    );
    Ok((t, rows))
}

/// `dZ = dY ⊙ act′(Z)`: the gradient through a fused activation, from the
/// derivative the forward epilogue stored (`None` for the identity).
pub(crate) fn activation_backward(d: Option<&Tensor>, g: &Tensor) -> Result<Tensor> {
    match d {
        Some(d) => Ok(g.mul(d)?),
        None => Ok(g.clone()),
    }
}

/// The epilogue of a fused linear op: the contiguous bias placed by `place`
/// (per column for `linear`, per row for `left_linear`), the activation, and
/// its derivative stored when the op records (its backward multiplies by it).
pub(crate) fn fused_epilogue<'a>(
    bias: Option<&'a Tensor>,
    place: fn(&'a [f32]) -> Bias<'a>,
    act: Activation,
    record: bool,
) -> FreshEpilogue<'a> {
    FreshEpilogue {
        bias: bias.map_or(Bias::None, |b| place(b.as_slice().expect("contiguous"))),
        act,
        derivative: record && act != Activation::Identity,
        ..FreshEpilogue::default()
    }
}

/// Whether an op with these inputs records onto the graph (so must keep what
/// its backward needs).
pub(crate) fn records(inputs: &[Option<&Var>]) -> bool {
    is_grad_enabled() && inputs.iter().flatten().any(|v| v.requires_grad())
}

impl Function for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = activation_backward(self.d.as_ref(), g)?;
        linear_grads(&self.x, &self.w, self.has_bias, &g, needs)
    }
}

/// The gradients `[dx, dW, db]` (`db` only with a bias) of `z = x·Wᵀ + b`
/// from `dZ` (`[.., out]`, the gradient at the pre-activation), each `None`
/// where `needs` says so: `dX = dZ·W`, `dW = dZᵀ·X` (one GEMM over all
/// rows, or its transpose when that pads less), `db = Σ_rows dZ`.
pub(crate) fn linear_grads(
    x: &Tensor,
    w: &Tensor,
    has_bias: bool,
    dz: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let (g, rows) = as_matrix(dz, out_f)?;
    let gs = g.as_slice().expect("contiguous");
    let gm = MatRef::row_major(gs, rows, out_f)?;
    let dx = if needs[0] {
        Some(input_grad_times(&g, w, None, x.shape())?)
    } else {
        None
    };
    let dw = if needs[1] {
        let (x, _) = as_matrix(x, in_f)?;
        let xm = MatRef::row_major(x.as_slice().expect("contiguous"), rows, in_f)?;
        // `dW` or `dWᵀ` (the same bits), whichever pads fewer rows of tiles:
        // 128 output features pad to 140, 512 input ones to 518.
        let waste = |m: usize, n: usize| (padded_rows(m) - m) * n;
        if waste(in_f, out_f) < waste(out_f, in_f) {
            let dwt = gemm_fresh(1.0, xm.t(), gm, FreshEpilogue::default())?.c;
            Some(
                Tensor::from_vec(dwt, &[in_f, out_f])?
                    .transpose(0, 1)?
                    .contiguous(),
            )
        } else {
            let dw = gemm_fresh(1.0, gm.t(), xm, FreshEpilogue::default())?.c;
            Some(Tensor::from_vec(dw, &[out_f, in_f])?)
        }
    } else {
        None
    };
    let mut grads = vec![dx, dw];
    if has_bias {
        grads.push(if needs[2] {
            Some(g.reshape(&[rows, out_f])?.sum(&[0], false)?)
        } else {
            None
        });
    }
    Ok(grads)
}

/// `dZ = (dY·W) ⊙ m`: the input gradient of `y = h·Wᵀ + b` (`W [out, in]`,
/// `dY [.., out]`) times `m`, laid out like `h` (`shape`), in one product:
/// an [`Mlp`](super::mlp)'s gradient at its hidden pre-activation, `m` being
/// the activation's derivative there (`None`: no multiplication).
pub(crate) fn input_grad_times(
    dy: &Tensor,
    w: &Tensor,
    m: Option<&Tensor>,
    shape: &[usize],
) -> Result<Tensor> {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let (g, rows) = as_matrix(dy, out_f)?;
    let w = w.contiguous();
    let gm = MatRef::row_major(g.as_slice().expect("contiguous"), rows, out_f)?;
    let wm = MatRef::row_major(w.as_slice().expect("contiguous"), out_f, in_f)?;
    let m = m.map(Tensor::contiguous);
    let epilogue = FreshEpilogue {
        multiplier: m.as_ref().map(|m| m.as_slice().expect("contiguous")),
        ..FreshEpilogue::default()
    };
    Ok(Tensor::from_vec(
        gemm_fresh(1.0, gm, wm, epilogue)?.c,
        shape,
    )?)
}

/// `x·Wᵀ + b` for `x [.., in]`, `weight [out, in]`, optional `bias [out]`
/// (the bias added in the GEMM's epilogue).
pub fn linear(x: &Var, weight: &Var, bias: Option<&Var>) -> Result<Var> {
    linear_act(x, weight, bias, Activation::Identity)
}

/// `act(x·Wᵀ + b)`: [`linear`] with the activation fused into the GEMM's
/// epilogue, the same values as `linear(..)` followed by the activation op
/// (e.g. [`Var::gelu`]), without the separate passes over the output.
///
/// ```
/// use allmlp_autograd::{Var, ops::{Activation, linear, linear_act}};
/// use allmlp_autograd::tensor_core::Tensor;
/// let x = Var::constant(Tensor::randn(&[4, 3], 0.0, 1.0, 1)?);
/// let w = Var::parameter(Tensor::randn(&[5, 3], 0.0, 1.0, 2)?);
/// let b = Var::parameter(Tensor::randn(&[5], 0.0, 1.0, 3)?);
/// let fused = linear_act(&x, &w, Some(&b), Activation::Gelu)?;
/// let separate = linear(&x, &w, Some(&b))?.gelu();
/// assert_eq!(fused.value(), separate.value());
/// # Ok::<(), allmlp_autograd::AutogradError>(())
/// ```
pub fn linear_act(x: &Var, weight: &Var, bias: Option<&Var>, act: Activation) -> Result<Var> {
    let record = records(&[Some(x), Some(weight), bias]);
    let w = weight.value().contiguous();
    let (y, d) = linear_forward(&x.value(), &w, bias.map(Var::value).as_ref(), act, record)?;
    if !record {
        return Ok(Var::constant(y));
    }
    let f = Linear {
        x: x.value(),
        w,
        has_bias: bias.is_some(),
        d,
    };
    Ok(taped(y, &[Some(x), Some(weight), bias], f))
}

/// `y` recorded as `f`'s output over the inputs present (a layer's optional
/// bias among them), in order.
pub(crate) fn taped(y: Tensor, inputs: &[Option<&Var>], f: impl Function + 'static) -> Var {
    let inputs: Vec<&Var> = inputs.iter().flatten().copied().collect();
    Var::from_op(y, &inputs, f)
}

/// `(act(x·Wᵀ + b), act′(x·Wᵀ + b))`, the derivative only when `record`ing
/// and `act` is not the identity: [`linear_act`]'s values, checked.
pub(crate) fn linear_forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    record: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "linear";
    if w.ndim() != 2 || x.ndim() == 0 || x.shape()[x.ndim() - 1] != w.shape()[1] {
        return Err(TensorError::shape(
            OP,
            "input [.., in] and weight [out, in] with matching `in`",
            format!("input {:?}, weight {:?}", x.shape(), w.shape()),
        )
        .into());
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let bv = bias.map(Tensor::contiguous);
    if let Some(b) = &bv {
        b.expect_shape(OP, &[out_f])?;
    }
    let (xm, rows) = as_matrix(x, in_f)?;
    let wc = w.contiguous();
    let epilogue = fused_epilogue(bv.as_ref(), Bias::PerColumn, act, record);
    let Fresh {
        c: y,
        derivative: d,
        ..
    } = gemm_fresh(
        1.0,
        MatRef::row_major(xm.as_slice().expect("contiguous"), rows, in_f)?,
        MatRef::row_major(wc.as_slice().expect("contiguous"), out_f, in_f)?.t(),
        epilogue,
    )?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = out_f;
    let d = d.map(|d| Tensor::from_vec(d, &shape)).transpose()?;
    Ok((Tensor::from_vec(y, &shape)?, d))
}

/// `act(x·Wᵀ + b)` with `Wᵀ` packed in advance (`weight_t`, a [`PackedB`]
/// of `W.t()`, `[in, out]`), for inference: the same values as
/// [`linear_act`], without packing the weight again, and no tape (the result
/// is a constant; no gradient reaches the packed weight).
pub fn linear_packed(
    x: &Var,
    weight_t: &PackedB,
    bias: Option<&Var>,
    act: Activation,
) -> Result<Var> {
    const OP: &str = "linear";
    let xv = x.value();
    let (in_f, out_f) = (weight_t.rows(), weight_t.cols());
    if xv.ndim() == 0 || xv.shape()[xv.ndim() - 1] != in_f {
        return Err(TensorError::shape(
            OP,
            format!("input [.., {in_f}] for a packed weight [{out_f}, {in_f}]"),
            format!("input {:?}", xv.shape()),
        )
        .into());
    }
    let bv = bias.map(|b| b.value().contiguous());
    if let Some(b) = &bv {
        b.expect_shape(OP, &[out_f])?;
    }
    let (xm, rows) = as_matrix(&xv, in_f)?;
    let epilogue = fused_epilogue(bv.as_ref(), Bias::PerColumn, act, false);
    let a = MatRef::row_major(xm.as_slice().expect("contiguous"), rows, in_f)?;
    let y = gemm_fresh_packed(1.0, a, weight_t, epilogue)?.c;
    let mut shape = xv.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = out_f;
    Ok(Var::constant(Tensor::from_vec(y, &shape)?))
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

    /// Zero input features give the bias (torch: `x[3, 0] @ w[4, 0]ᵀ + b`), and zero output
    /// features give an empty output whose backward still reaches x (as zeros, plus what other
    /// uses of x add): the row count comes from the leading dims, not `numel / features`.
    #[test]
    fn zero_feature_linears_work_like_torch() {
        let b = Var::parameter(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[4]).unwrap());
        let x = Var::parameter(Tensor::zeros(&[3, 0]).unwrap());
        let w = Var::parameter(Tensor::zeros(&[4, 0]).unwrap());
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.shape(), [3, 4]);
        assert_eq!(y.value().to_vec(), [1.0, 2.0, 3.0, 4.0].repeat(3));
        y.sum(&[0, 1], false).unwrap().backward().unwrap();
        assert_eq!(b.grad().unwrap().to_vec(), [3.0; 4]);
        assert_eq!(w.grad().unwrap().shape(), [4, 0]);

        let x = Var::parameter(Tensor::randn(&[3, 5], 0.0, 1.0, 4).unwrap());
        let w = Var::parameter(Tensor::zeros(&[0, 5]).unwrap());
        let y = linear(&x, &w, None).unwrap();
        assert_eq!(y.shape(), [3, 0]);
        let loss = y
            .sum(&[0, 1], false)
            .unwrap()
            .add(&x.sum(&[0, 1], false).unwrap())
            .unwrap();
        loss.backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec(), [1.0; 15]);
    }

    /// The fused op equals linear followed by the separate activation op, in
    /// value (bit for bit: the same GEMM epilogue and activation functions)
    /// and in every gradient, and passes gradcheck, for each activation, a
    /// non-contiguous input, no bias, and a size where the GEMM runs on the
    /// pool with k spanning two blocks.
    #[test]
    fn linear_act_equals_linear_then_activation_and_gradchecks() {
        let x = Tensor::randn(&[2, 5, 3], 0.0, 1.0, 1)
            .unwrap()
            .transpose(1, 2)
            .unwrap(); // [2, 3, 5]
        let w = Tensor::randn(&[4, 5], 0.0, 1.0, 2).unwrap();
        // Keep ReLU's inputs off its kink for finite differences.
        let b = Tensor::from_vec(vec![0.013, -0.021, 0.034, 0.007], &[4]).unwrap();
        let big_x = Tensor::randn(&[70, 600], 0.0, 1.0, 4).unwrap();
        let big_w = Tensor::randn(&[33, 600], 0.0, 0.05, 5).unwrap();
        let big_b = Tensor::randn(&[33], 0.0, 1.0, 6).unwrap();
        let o = GradcheckOptions::default();
        type Case = (Activation, fn(&Var) -> Var);
        let acts: [Case; 4] = [
            (Activation::Identity, |v| v.clone()),
            (Activation::Gelu, Var::gelu),
            (Activation::GeluTanh, Var::gelu_tanh),
            (Activation::Relu, Var::relu),
        ];
        for (act, separate) in acts {
            for (x, w, b) in [(&x, &w, &b), (&big_x, &big_w, &big_b)] {
                let run = |fused: bool| {
                    let vars = [x, w, b].map(|t| Var::parameter(t.clone()));
                    let y = if fused {
                        linear_act(&vars[0], &vars[1], Some(&vars[2]), act).unwrap()
                    } else {
                        separate(&linear(&vars[0], &vars[1], Some(&vars[2])).unwrap())
                    };
                    let r = Tensor::randn(&y.shape(), 0.0, 1.0, 7).unwrap();
                    y.backward_with(r).unwrap();
                    let mut out = vec![y.value()];
                    out.extend(vars.iter().map(|v| v.grad().unwrap()));
                    out
                };
                let (f, s) = (run(true), run(false));
                for (what, a, e) in ["y", "dx", "dW", "db"]
                    .iter()
                    .zip(&f)
                    .zip(&s)
                    .map(|((w, a), e)| (w, a, e))
                {
                    assert_eq!(a, e, "{act:?} {:?}: {what}", x.shape());
                }
            }
            gradcheck(
                "linear_act",
                &[x.clone(), w.clone(), b.clone()],
                |v| linear_act(&v[0], &v[1], Some(&v[2]), act),
                o,
            )
            .unwrap();
            gradcheck(
                "linear_act_nobias",
                &[x.clone(), w.clone()],
                |v| linear_act(&v[0], &v[1], None, act),
                o,
            )
            .unwrap();
        }
        // Without a tape the value is the same (no pre-activation stored).
        let (xv, wv, bv) = (Var::constant(x), Var::parameter(w), Var::parameter(b));
        let taped = linear_act(&xv, &wv, Some(&bv), Activation::Gelu).unwrap();
        let plain = crate::no_grad(|| linear_act(&xv, &wv, Some(&bv), Activation::Gelu)).unwrap();
        assert!(taped.requires_grad() && !plain.requires_grad());
        assert_eq!(taped.value(), plain.value());
    }
}
