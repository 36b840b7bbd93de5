//! `scale_shift`: `y = x·s + b` with `s`, `b` of shape `[c]` (or `[1, .., 1, c]`) over the last
//! dimension of `x [.., c]` — ResMLP's Affine and LayerScale (no shift) as one
//! op instead of a broadcast multiply and add.
//!
//! Forward and backward are one pass each (`allmlp_tensor_core::channel_scale`),
//! with the same bits as `x.mul(s)?.add(b)` and its backward; nothing but `x`
//! (when the scale needs a gradient) and `s` is kept for backward.

use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::channel_scale::{scale_shift as forward, scale_shift_backward};

use crate::{Function, Result, Var};

struct ScaleShift {
    /// The input, kept only when the scale needs a gradient (`Σ g·x`).
    x: Option<Tensor>,
    scale: Tensor,
    /// The input's shape, for its gradient when `x` is not kept.
    shape: Vec<usize>,
    /// The shift's shape (`[c]` or `[1, .., 1, c]`), when there is one.
    shift_shape: Option<Vec<usize>>,
}

impl Function for ScaleShift {
    fn name(&self) -> &'static str {
        "scale_shift"
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = [
            needs[0],
            needs[1],
            self.shift_shape.is_some() && needs.get(2).copied().unwrap_or(false),
        ];
        // Without `x` (scale not differentiated), any tensor of its shape
        // serves: only `Σ g·x` reads it.
        let x = match &self.x {
            Some(x) => x.clone(),
            None => g.reshape(&self.shape)?,
        };
        let [dx, ds, db] = scale_shift_backward(g, &x, &self.scale, want)?;
        let mut grads = vec![dx, ds];
        if let Some(shape) = &self.shift_shape {
            grads.push(db.map(|d| d.reshape(shape)).transpose()?);
        }
        Ok(grads)
    }
}

/// `x·scale + shift` (or `x·scale`) over the last dimension of `x [.., c]`,
/// `scale` and `shift` of shape `[c]` or `[1, .., 1, c]` (broadcasting `x` up
/// to their rank): the same values and gradients as
/// `x.mul(scale)?.add(shift)`, in one pass each way.
///
/// ```
/// use allmlp_autograd::{Var, ops::scale_shift};
/// use allmlp_autograd::tensor_core::Tensor;
/// let x = Var::constant(Tensor::randn(&[4, 3], 0.0, 1.0, 1)?);
/// let s = Var::parameter(Tensor::randn(&[3], 1.0, 0.1, 2)?);
/// let b = Var::parameter(Tensor::randn(&[3], 0.0, 0.1, 3)?);
/// let fused = scale_shift(&x, &s, Some(&b))?;
/// assert_eq!(fused.value(), x.mul(&s)?.add(&b)?.value());
/// # Ok::<(), allmlp_autograd::AutogradError>(())
/// ```
pub fn scale_shift(x: &Var, scale: &Var, shift: Option<&Var>) -> Result<Var> {
    let (xv, sv) = (x.value(), scale.value());
    let bv = shift.map(Var::value);
    let y = forward(&xv, &sv, bv.as_ref())?;
    let f = ScaleShift {
        x: scale.requires_grad().then(|| xv.clone()),
        shape: xv.shape().to_vec(),
        scale: sv,
        shift_shape: bv.as_ref().map(|b| b.shape().to_vec()),
    };
    Ok(match shift {
        Some(b) => Var::from_op(y, &[x, scale, b], f),
        None => Var::from_op(y, &[x, scale], f),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn gradchecks_with_and_without_shift_on_a_strided_input() {
        let x = Tensor::randn(&[3, 5, 4], 0.0, 1.0, 1)
            .unwrap()
            .transpose(1, 2)
            .unwrap(); // [3, 4, 5], strided
        let s = Tensor::randn(&[5], 1.0, 0.5, 2).unwrap();
        let b = Tensor::randn(&[5], 0.0, 0.5, 3).unwrap();
        let o = GradcheckOptions::default();
        gradcheck(
            "scale_shift",
            &[x.clone(), s.clone(), b],
            |v| scale_shift(&v[0], &v[1], Some(&v[2])),
            o,
        )
        .unwrap();
        gradcheck(
            "scale_shift (no shift)",
            &[x, s],
            |v| scale_shift(&v[0], &v[1], None),
            o,
        )
        .unwrap();
    }

    /// Gradients equal the broadcasting ops' bit for bit, also when only some
    /// inputs need one (a constant scale: `x` is not kept).
    #[test]
    fn equals_mul_add_and_keeps_x_only_for_the_scale() {
        let xt = Tensor::randn(&[2, 7, 6], 0.0, 1.0, 4).unwrap();
        let st = Tensor::randn(&[6], 1.0, 0.5, 5).unwrap();
        let bt = Tensor::randn(&[6], 0.0, 0.5, 6).unwrap();
        let wt = Tensor::randn(&[2, 7, 6], 0.0, 1.0, 7).unwrap();
        let grads = |fused: bool, scale_param: bool| {
            let x = Var::parameter(xt.clone());
            let s = if scale_param {
                Var::parameter(st.clone())
            } else {
                Var::constant(st.clone())
            };
            let b = Var::parameter(bt.clone());
            let y = if fused {
                scale_shift(&x, &s, Some(&b)).unwrap()
            } else {
                x.mul(&s).unwrap().add(&b).unwrap()
            };
            y.mul(&Var::constant(wt.clone()))
                .unwrap()
                .sum(&[], false)
                .unwrap()
                .backward()
                .unwrap();
            [x.grad(), s.grad(), b.grad()].map(|g| g.map(|g| g.to_vec()))
        };
        for scale_param in [true, false] {
            assert_eq!(grads(true, scale_param), grads(false, scale_param));
        }
        assert!(grads(true, false)[1].is_none());
    }

    /// timm's `[1, 1, c]` parameters: gradients in their shapes, the input's in its own.
    #[test]
    fn leading_ones_parameters() {
        let x = Tensor::randn(&[5, 4], 0.0, 1.0, 1).unwrap();
        let s = Tensor::randn(&[1, 1, 4], 1.0, 0.5, 2).unwrap();
        let b = Tensor::randn(&[1, 1, 4], 0.0, 0.5, 3).unwrap();
        let o = GradcheckOptions::default();
        gradcheck(
            "scale_shift [1, 1, c]",
            &[x, s, b],
            |v| scale_shift(&v[0], &v[1], Some(&v[2])),
            o,
        )
        .unwrap();
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let x = Var::constant(Tensor::zeros(&[2, 3]).unwrap());
        let s = Var::constant(Tensor::zeros(&[2]).unwrap());
        let err = scale_shift(&x, &s, None).unwrap_err().to_string();
        assert!(
            err.contains("scale_shift") && err.contains("[2, 3]"),
            "{err}"
        );
    }
}
