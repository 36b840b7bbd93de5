//! Token mixing as a left multiplication: `Y = W · X + b·1ᵀ` per image.
//!
//! timm applies a token-mixing `nn.Linear(S, D)` to the transposed tokens,
//! `fc(x.transpose(1, 2)).transpose(1, 2)`. The same maths without a transpose:
//! for one image `X [S, C]`, `W [D, S] · X` is `[D, C]`, and for the batch the
//! shared weight is a stride-0 operand of a batched GEMM (`[D, S]` times
//! `[B, S, C]` gives `[B, D, C]`); the bias `[D]` is added to each row and the
//! MLP's activation applied in the GEMM's epilogue
//! (`allmlp_autograd::ops::left_linear`). Activations stay `[B, tokens, C]` and
//! contiguous from the stem to the head.
//! The parameters are a plain [`Linear`] (`weight [D, S]`, `bias [D]`) so their
//! names and layouts are timm's.
//!
//! ```
//! use allmlp_models::layers::{Ctx, Linear, Module};
//! use allmlp_models::layers::autograd::{Var, tensor_core::Tensor};
//! use allmlp_models::token_mixing::{token_linear, token_linear_transposed};
//! let fc = Linear::new(5, 3, true, 1)?; // S = 5 tokens → 3
//! let x = Var::constant(Tensor::randn(&[2, 5, 4], 0.0, 1.0, 2)?); // [B, S, C]
//! let y = token_linear(&fc, &x)?;
//! assert_eq!(y.shape(), [2, 3, 4]);
//! let r = token_linear_transposed(&fc, &x, &Ctx::eval())?;
//! let d = y.value().to_vec().iter().zip(r.value().to_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(d < 1e-5);
//! # Ok::<(), allmlp_models::layers::autograd::AutogradError>(())
//! ```

use allmlp_layers::autograd::ops::{Activation, left_linear, left_mlp};
use allmlp_layers::autograd::tensor_core::TensorError;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::{Result, Var, is_grad_enabled};
use allmlp_layers::{Ctx, Linear, Mlp, Module};

/// `fc` over the token axis: `x [B, S, C]` → `W [D, S] · x + b [D, 1]` = `[B, D, C]`.
///
/// One batched GEMM with the weight shared (stride 0) across the batch; no
/// transposed copy of `x` or of the result.
pub fn token_linear(fc: &Linear, x: &Var) -> Result<Var> {
    token_linear_act(fc, x, Activation::Identity)
}

/// [`token_linear`] followed by `act`, fused into the GEMM's epilogue.
fn token_linear_act(fc: &Linear, x: &Var, act: Activation) -> Result<Var> {
    check_tokens(fc, x)?;
    left_linear(x, &fc.weight, fc.bias.as_ref(), act)
}

/// `x` is `[B, S, C]` with the `S` tokens `fc` mixes.
fn check_tokens(fc: &Linear, x: &Var) -> Result<()> {
    let (s_in, _) = fc.features();
    let s = x.shape();
    if s.len() != 3 || s[1] != s_in {
        return Err(TensorError::shape(
            "token mixing",
            format!("tokens [B, {s_in}, C] ({s_in} tokens, fixed by the token-mixing weight)"),
            fmt_shape(&s),
        )
        .into());
    }
    Ok(())
}

/// timm's token MLP `fc2(drop(act(fc1(·))))` (then dropout) applied over the
/// token axis with [`token_linear`]: `x [B, S, C]` → `[B, S_out, C]`.
pub fn token_mlp(mlp: &Mlp, x: &Var, ctx: &Ctx) -> Result<Var> {
    if is_grad_enabled() && mlp.drop1.is_identity(ctx) {
        // One op for both layers (`ops::left_mlp`): the same values and
        // gradients, one pass fewer in backward.
        check_tokens(&mlp.fc1, x)?;
        let fc = (mlp.fc1.for_tape(), mlp.fc2.for_tape());
        let y = left_mlp(x, fc.0, mlp.act.fused(), fc.1)?;
        return mlp.drop2.forward(&y, ctx);
    }
    let h = token_linear_act(&mlp.fc1, x, mlp.act.fused())?;
    let h = mlp.drop1.forward(&h, ctx)?;
    mlp.drop2.forward(&token_linear(&mlp.fc2, &h)?, ctx)
}

/// The reference formulation, as timm writes it: `fc(xᵀ)ᵀ`. Slower (the
/// transposed operands go through the strided paths); kept for tests and docs.
pub fn token_linear_transposed(fc: &Linear, x: &Var, ctx: &Ctx) -> Result<Var> {
    if x.shape().len() != 3 {
        return token_linear(fc, x);
    }
    fc.forward(&x.transpose(1, 2)?, ctx)?.transpose(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_layers::Activation;
    use allmlp_layers::autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_layers::autograd::tensor_core::Tensor;

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (a.to_vec(), b.to_vec());
        let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .fold(0f32, |d, (x, y)| d.max((x - y).abs()))
            / m
    }

    /// The left multiplication and timm's transpose formulation agree in value and in
    /// every gradient, on odd sizes, batch 1 and a non-contiguous input. f32 dot products
    /// of length ≤ 37 in a different summation order: ≤ 1e-6 relative.
    #[test]
    fn left_multiplication_equals_the_transpose_formulation() {
        for (b, s, c, d, seed) in [(2, 7, 5, 3, 1), (1, 9, 1, 11, 2), (3, 37, 6, 13, 3)] {
            let fc = Linear::new(s, d, true, seed).unwrap();
            let xt = Tensor::randn(&[b, c, s], 0.0, 1.0, seed + 10).unwrap();
            let x = xt.transpose(1, 2).unwrap(); // non-contiguous [B, S, C]
            let run = |f: &dyn Fn(&Var) -> Result<Var>| {
                let xv = Var::parameter(x.clone());
                let y = f(&xv).unwrap();
                let r = Tensor::randn(&y.shape(), 0.0, 1.0, 99).unwrap();
                fc.weight.zero_grad();
                fc.bias.as_ref().unwrap().zero_grad();
                y.backward_with(r).unwrap();
                (
                    y.value(),
                    xv.grad().unwrap(),
                    fc.weight.grad().unwrap(),
                    fc.bias.as_ref().unwrap().grad().unwrap(),
                )
            };
            let fast = run(&|v| token_linear(&fc, v));
            let slow = run(&|v| token_linear_transposed(&fc, v, &Ctx::eval()));
            assert_eq!(fast.0.shape(), [b, d, c]);
            for (what, f, r) in [
                ("y", &fast.0, &slow.0),
                ("dx", &fast.1, &slow.1),
                ("dW", &fast.2, &slow.2),
                ("db", &fast.3, &slow.3),
            ] {
                let e = max_rel(f, r);
                assert!(e <= 1e-6, "{what} ({b},{s},{c},{d}): {e:e}");
            }
        }
    }

    #[test]
    fn token_mlp_gradcheck_and_input_errors() {
        let mlp = Mlp::new(4, 3, 4, Activation::Gelu, 0.0, 5).unwrap();
        let x = Tensor::randn(&[2, 4, 3], 0.0, 1.0, 6).unwrap();
        let p: Vec<Tensor> = [
            &mlp.fc1.weight,
            mlp.fc1.bias.as_ref().unwrap(),
            &mlp.fc2.weight,
            mlp.fc2.bias.as_ref().unwrap(),
        ]
        .iter()
        .map(|v| v.value())
        .collect();
        gradcheck(
            "token_mlp",
            &[x, p[0].clone(), p[1].clone(), p[2].clone(), p[3].clone()],
            |v| {
                let fc1 = Linear::from_vars(v[1].clone(), Some(v[2].clone()));
                let fc2 = Linear::from_vars(v[3].clone(), Some(v[4].clone()));
                let m = Mlp::from_linears(fc1, fc2, Activation::Gelu, 0.0)?;
                token_mlp(&m, &v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        for bad in [&[2, 5, 3][..], &[4, 3]] {
            let e = token_mlp(
                &mlp,
                &Var::constant(Tensor::zeros(bad).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("token mixing") && e.contains("[B, 4, C]") && e.contains("fixed"),
                "{e}"
            );
        }
    }
}
