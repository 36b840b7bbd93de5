//! `mlp` and `left_mlp`: two linear layers with an activation between, as
//! one op: `fc2(act(fc1(x)))`, over the last dimension ([`super::linear`]'s
//! `x·Wᵀ + b`) or the second-to-last (token mixing, [`super::left_linear`]'s
//! `W·x + b·1ᵀ`).
//!
//! The values and gradients are those of the two ops in sequence, bit for
//! bit. What the single op saves is one pass over the hidden activations in
//! backward: there the gradient at the hidden pre-activation,
//! `dZ = (dY·W₂) ⊙ act′(Z)`, is one GEMM whose epilogue multiplies each tile
//! by the derivative stored in forward while the tile is in cache, where the
//! two ops wrote `dY·W₂` out and then multiplied it in a separate pass (two
//! more streams of the largest tensor of the block through memory).
//!
//! timm's `Mlp` puts a dropout between the activation and `fc2`; a layer
//! uses this op only when that dropout is the identity (rate 0, or not
//! training).

use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::TensorError;
use allmlp_tensor_core::error::fmt_shape;

use super::left_linear::{left_input_grad_times, left_linear_forward, left_linear_grads};
use super::linear::{Activation, input_grad_times, linear_forward, linear_grads, records, taped};
use crate::{Function, Result, Var};

/// The parameters of one linear layer: `weight [out, in]` (`[D, S]` for a
/// token-mixing one) and an optional bias.
#[derive(Clone, Copy, Debug)]
pub struct Dense<'a> {
    /// The weight.
    pub weight: &'a Var,
    /// The bias, if the layer has one.
    pub bias: Option<&'a Var>,
}

/// Which dimension the layers mix.
#[derive(Clone, Copy, Debug)]
enum Side {
    /// The last, `x·Wᵀ + b` ([`mlp`]).
    Right,
    /// The second-to-last, `W·x + b·1ᵀ` ([`left_mlp`]).
    Left,
}

impl Side {
    fn forward(
        self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        act: Activation,
        record: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        match self {
            Side::Right => linear_forward(x, w, b, act, record),
            Side::Left => left_linear_forward(x, w, b, act, record),
        }
    }

    fn grads(
        self,
        x: &Tensor,
        w: &Tensor,
        has_bias: bool,
        dz: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        match self {
            Side::Right => linear_grads(x, w, has_bias, dz, needs),
            Side::Left => left_linear_grads(x, w, has_bias, dz, needs),
        }
    }

    fn input_grad_times(
        self,
        dy: &Tensor,
        w: &Tensor,
        m: Option<&Tensor>,
        shape: &[usize],
    ) -> Result<Tensor> {
        match self {
            Side::Right => input_grad_times(dy, w, m, shape),
            Side::Left => left_input_grad_times(dy, w, m, shape),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Right => "mlp",
            Side::Left => "left_mlp",
        }
    }
}

struct TwoLayer {
    side: Side,
    x: Tensor,
    w1: Tensor,
    b1: bool,
    /// `act(Z)`, `fc2`'s input.
    h: Tensor,
    /// `act′(Z)`, when `act` is not the identity.
    d: Option<Tensor>,
    w2: Tensor,
    b2: bool,
}

impl Function for TwoLayer {
    fn name(&self) -> &'static str {
        self.side.name()
    }

    /// Inputs `[x, w1, (b1), w2, (b2)]`.
    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let n1 = 2 + usize::from(self.b1);
        let (needs1, rest) = needs.split_at(n1);
        let mut grads = if needs1.iter().any(|&n| n) {
            let dz = self
                .side
                .input_grad_times(g, &self.w2, self.d.as_ref(), self.h.shape())?;
            self.side.grads(&self.x, &self.w1, self.b1, &dz, needs1)?
        } else {
            vec![None; n1]
        };
        let needs2: Vec<bool> = std::iter::once(false).chain(rest.iter().copied()).collect();
        let fc2 = self.side.grads(&self.h, &self.w2, self.b2, g, &needs2)?;
        grads.extend(fc2.into_iter().skip(1));
        Ok(grads)
    }
}

/// `fc2(act(fc1(x)))` over the last dimension: `x [.., in]`,
/// `fc1.weight [hidden, in]`, `fc2.weight [out, hidden]`, biases `[hidden]`
/// and `[out]`; `[.., out]`. The same values and gradients as
/// [`super::linear_act`] then [`super::linear`], one pass fewer in backward.
///
/// ```
/// use allmlp_autograd::{Var, ops::{Activation, Dense, linear, linear_act, mlp}};
/// use allmlp_autograd::tensor_core::Tensor;
/// let x = Var::constant(Tensor::randn(&[4, 3], 0.0, 1.0, 1)?);
/// let (w1, w2) = (Var::parameter(Tensor::randn(&[5, 3], 0.0, 1.0, 2)?), Var::parameter(Tensor::randn(&[2, 5], 0.0, 1.0, 3)?));
/// let fc1 = Dense { weight: &w1, bias: None };
/// let fc2 = Dense { weight: &w2, bias: None };
/// let y = mlp(&x, fc1, Activation::Gelu, fc2)?;
/// let two = linear(&linear_act(&x, &w1, None, Activation::Gelu)?, &w2, None)?;
/// assert_eq!(y.value(), two.value());
/// # Ok::<(), allmlp_autograd::AutogradError>(())
/// ```
pub fn mlp(x: &Var, fc1: Dense<'_>, act: Activation, fc2: Dense<'_>) -> Result<Var> {
    two_layer(Side::Right, x, fc1, act, fc2)
}

/// `fc2(act(fc1(x)))` over the second-to-last dimension (Mixer's token
/// MLP): `x [.., S, C]`, `fc1.weight [D, S]`, `fc2.weight [S_out, D]`,
/// biases `[D]` and `[S_out]`; `[.., S_out, C]`. The same values and
/// gradients as [`super::left_linear`] twice, one pass fewer in backward.
pub fn left_mlp(x: &Var, fc1: Dense<'_>, act: Activation, fc2: Dense<'_>) -> Result<Var> {
    two_layer(Side::Left, x, fc1, act, fc2)
}

fn two_layer(side: Side, x: &Var, fc1: Dense<'_>, act: Activation, fc2: Dense<'_>) -> Result<Var> {
    let (w1, w2) = (fc1.weight.value(), fc2.weight.value());
    if w1.ndim() != 2 || w2.ndim() != 2 || w2.shape()[1] != w1.shape()[0] {
        return Err(TensorError::shape(
            side.name(),
            "fc1.weight [hidden, in] and fc2.weight [out, hidden] with matching `hidden`",
            format!(
                "fc1.weight {}, fc2.weight {}",
                fmt_shape(w1.shape()),
                fmt_shape(w2.shape())
            ),
        )
        .into());
    }
    let (w1, w2) = (w1.contiguous(), w2.contiguous());
    let record = records(&[
        Some(x),
        Some(fc1.weight),
        fc1.bias,
        Some(fc2.weight),
        fc2.bias,
    ]);
    let value = |b: Option<&Var>| b.map(Var::value);
    let xv = x.value();
    let (h, d) = side.forward(&xv, &w1, value(fc1.bias).as_ref(), act, record)?;
    let (y, _) = side.forward(
        &h,
        &w2,
        value(fc2.bias).as_ref(),
        Activation::Identity,
        false,
    )?;
    if !record {
        return Ok(Var::constant(y));
    }
    let f = TwoLayer {
        side,
        x: xv,
        w1,
        b1: fc1.bias.is_some(),
        h,
        d,
        w2,
        b2: fc2.bias.is_some(),
    };
    let inputs = [
        Some(x),
        Some(fc1.weight),
        fc1.bias,
        Some(fc2.weight),
        fc2.bias,
    ];
    Ok(taped(y, &inputs, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use crate::ops::{left_linear, linear, linear_act};

    /// The op against the two single-layer ops: the value and every
    /// gradient bit for bit, for each activation, with and without biases,
    /// with only some inputs needing gradients, on both sides (a size where
    /// the products run on the pool and k spans two blocks included); and
    /// gradcheck.
    #[test]
    fn equals_the_two_layers_bit_for_bit_and_gradchecks() {
        let acts = [
            Activation::Identity,
            Activation::Gelu,
            Activation::GeluTanh,
            Activation::Relu,
        ];
        // (side, x, w1, b1, w2, b2)
        let t = |s: &[usize], seed| Tensor::randn(s, 0.0, 0.5, seed).unwrap();
        let cases = [
            (
                Side::Right,
                t(&[2, 3, 5], 1),
                t(&[7, 5], 2),
                t(&[7], 3),
                t(&[4, 7], 4),
                t(&[4], 5),
            ),
            (
                Side::Right,
                t(&[70, 600], 6),
                t(&[40, 600], 7),
                t(&[40], 8),
                t(&[33, 40], 9),
                t(&[33], 10),
            ),
            (
                Side::Left,
                t(&[3, 5, 4], 11),
                t(&[6, 5], 12),
                t(&[6], 13),
                t(&[5, 6], 14),
                t(&[5], 15),
            ),
            (
                Side::Left,
                t(&[2, 3, 5, 6], 16),
                t(&[4, 5], 17),
                t(&[4], 18),
                t(&[2, 4], 19),
                t(&[2], 20),
            ),
        ];
        for (side, x, w1, b1, w2, b2) in &cases {
            for (i, act) in acts.into_iter().enumerate() {
                let biases = i % 2 == 0;
                // Which of the inputs need gradients: all, or all but x and b2.
                for partial in [false, true] {
                    let run = |fused: bool| {
                        let v = [x, w1, b1, w2, b2].map(|t| Var::parameter(t.clone()));
                        let x = if partial {
                            Var::constant(x.clone())
                        } else {
                            v[0].clone()
                        };
                        let b2v = if partial {
                            Var::constant(b2.clone())
                        } else {
                            v[4].clone()
                        };
                        let (bias1, bias2) = if biases {
                            (Some(&v[2]), Some(&b2v))
                        } else {
                            (None, None)
                        };
                        let fc1 = Dense {
                            weight: &v[1],
                            bias: bias1,
                        };
                        let fc2 = Dense {
                            weight: &v[3],
                            bias: bias2,
                        };
                        let y = match (fused, side) {
                            (true, Side::Right) => mlp(&x, fc1, act, fc2).unwrap(),
                            (true, Side::Left) => left_mlp(&x, fc1, act, fc2).unwrap(),
                            (false, Side::Right) => {
                                let h = linear_act(&x, &v[1], bias1, act).unwrap();
                                linear(&h, &v[3], bias2).unwrap()
                            }
                            (false, Side::Left) => {
                                let h = left_linear(&x, &v[1], bias1, act).unwrap();
                                left_linear(&h, &v[3], bias2, Activation::Identity).unwrap()
                            }
                        };
                        let r = Tensor::randn(&y.shape(), 0.0, 1.0, 21).unwrap();
                        y.backward_with(r).unwrap();
                        let mut out = vec![Some(y.value())];
                        out.push(x.grad());
                        out.extend(v[1..4].iter().map(Var::grad));
                        out.push(b2v.grad());
                        out
                    };
                    let (f, s) = (run(true), run(false));
                    let what = format!(
                        "{side:?} {:?} {act:?} biases {biases} partial {partial}",
                        x.shape()
                    );
                    assert_eq!(f, s, "{what}");
                    assert!(f.iter().filter(|g| g.is_some()).count() >= 3, "{what}");
                }
            }
        }
        let o = GradcheckOptions::default();
        for (side, x, w1, b1, w2, b2) in &cases[..1] {
            for act in acts {
                let f = move |v: &[Var]| {
                    let fc1 = Dense {
                        weight: &v[1],
                        bias: Some(&v[2]),
                    };
                    let fc2 = Dense {
                        weight: &v[3],
                        bias: Some(&v[4]),
                    };
                    two_layer(*side, &v[0], fc1, act, fc2)
                };
                let inputs = [x, w1, b1, w2, b2].map(Tensor::clone);
                gradcheck("mlp", &inputs, f, o).unwrap();
            }
        }
        let (side, x, w1, b1, w2, b2) = &cases[2];
        let inputs = [x, w1, b1, w2, b2].map(Tensor::clone);
        let f = |v: &[Var]| {
            let fc1 = Dense {
                weight: &v[1],
                bias: Some(&v[2]),
            };
            let fc2 = Dense {
                weight: &v[3],
                bias: Some(&v[4]),
            };
            two_layer(*side, &v[0], fc1, Activation::Gelu, fc2)
        };
        gradcheck("left_mlp", &inputs, f, o).unwrap();
    }

    /// Layers whose sizes do not chain, and a bad input, are errors naming
    /// the op and the shapes.
    #[test]
    fn mismatched_layers_are_errors() {
        let p = |s: &[usize]| Var::parameter(Tensor::zeros(s).unwrap());
        let (x, w1, w2) = (p(&[2, 3]), p(&[4, 3]), p(&[5, 6]));
        let dense = |w| Dense {
            weight: w,
            bias: None,
        };
        let e = mlp(&x, dense(&w1), Activation::Gelu, dense(&w2)).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("mlp") && m.contains("[4, 3]") && m.contains("[5, 6]"),
            "{m}"
        );
        let e = left_mlp(
            &p(&[2, 7, 3]),
            dense(&w1),
            Activation::Gelu,
            dense(&p(&[5, 4])),
        );
        let m = e.unwrap_err().to_string();
        assert!(
            m.starts_with("left_linear") && m.contains("[2, 7, 3]"),
            "{m}"
        );
    }
}
