//! `Linear`: `y = x·Wᵀ + b` over the last dimension, PyTorch's `nn.Linear`.
//!
//! The bias is added in the GEMM's epilogue; [`Linear::forward_act`] fuses an
//! activation there too.
//!
//! Parameters: `weight [out, in]`, `bias [out]` (optional). Default
//! initialisation as PyTorch: weight kaiming-uniform (a = √5), bias
//! `U(−1/√in, 1/√in)`.
//!
//! ```
//! use allmlp_layers::{Ctx, Linear, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let fc = Linear::new(4, 3, true, 0)?;
//! let y = fc.forward(&Var::constant(Tensor::ones(&[2, 5, 4])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), vec![2, 5, 3]);
//! let names: Vec<String> = named_parameters(&fc).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["weight", "bias"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use allmlp_autograd::ops::{self, linear_act, linear_packed};
use allmlp_autograd::tensor_core::Tensor;
use allmlp_autograd::tensor_core::gemm::{MatRef, PackedB};
use allmlp_autograd::{Result, Var, is_grad_enabled};

use crate::init;
use crate::module::{Ctx, Module, Visitor, dim_or_zero, join};

/// A fully connected layer.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Var,
    /// `[out]`, if the layer has a bias.
    pub bias: Option<Var>,
    /// `Wᵀ` packed for the GEMM kernel, for forwards without a tape.
    packed: PackedWeight,
}

/// The weight packed once for inference ([`PackedB`] of `Wᵀ`) and the weight
/// tensor it was packed from. The tensor is held, so its buffer cannot be
/// reused or changed in place (an optimizer's update copies it instead):
/// while the layer's weight shares its data, the packing is current. Dropped
/// by the next forward with a tape (training).
#[derive(Default)]
struct PackedWeight(Mutex<Option<(Tensor, Arc<PackedB>)>>);

impl PackedWeight {
    /// The packed `wᵀ`, packing it when `w` is not the weight packed last.
    fn get(&self, w: &Tensor) -> Result<Arc<PackedB>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((held, packed)) = slot.as_ref()
            && held.shares_data(w)
        {
            return Ok(packed.clone());
        }
        w.expect_rank("Linear", 2, "[out, in]")?;
        let wc = w.contiguous();
        let (out_f, in_f) = (wc.shape()[0], wc.shape()[1]);
        let wt = MatRef::row_major(wc.as_slice().expect("contiguous"), out_f, in_f)?.t();
        let packed = Arc::new(PackedB::new(wt));
        *slot = Some((w.clone(), packed.clone()));
        Ok(packed)
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some((_, p)) => write!(f, "{p:?}"),
            None => f.write_str("not packed"),
        }
    }
}

impl Linear {
    /// `in_features → out_features` with PyTorch's default initialisation from `seed`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, seed: u64) -> Result<Linear> {
        let w = init::kaiming_uniform_default(&[out_features, in_features], seed)?;
        let b = if bias {
            Some(init::default_bias(
                out_features,
                in_features,
                seed ^ 0x9E37,
            )?)
        } else {
            None
        };
        Linear::from_tensors(w, b)
    }

    /// A layer with the given weight `[out, in]` and bias `[out]`.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        weight.expect_rank("Linear", 2, "[out, in]")?;
        if let Some(b) = &bias {
            b.expect_shape("Linear", &[weight.shape()[0]])?;
        }
        Ok(Linear::from_vars(
            Var::parameter(weight),
            bias.map(Var::parameter),
        ))
    }

    /// A layer over existing variables (shared with other layers or a test's
    /// inputs); shapes are checked by the forward.
    pub fn from_vars(weight: Var, bias: Option<Var>) -> Linear {
        Linear {
            weight,
            bias,
            packed: PackedWeight::default(),
        }
    }

    /// `(in_features, out_features)`, read from the weight `[out, in]` (a dimension the
    /// weight lacks reads 0; the forward refuses such a weight).
    pub fn features(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (dim_or_zero(&s, 1), dim_or_zero(&s, 0))
    }

    /// `act(x·Wᵀ + b)`, the activation fused into the GEMM's epilogue: the
    /// same values as `forward` followed by the activation, one pass fewer.
    ///
    /// Without a tape (`no_grad`, inference) the weight is packed for the
    /// GEMM kernel once and reused by later calls while it is unchanged
    /// ([`PackedB`]; the same values): at batch 1 packing it again each call
    /// cost ResMLP-12 14.5% of its forward.
    pub fn forward_act(&self, x: &Var, act: ops::Activation) -> Result<Var> {
        if is_grad_enabled() {
            self.packed.clear();
            return linear_act(x, &self.weight, self.bias.as_ref(), act);
        }
        let packed = self.packed.get(&self.weight.value())?;
        linear_packed(x, &packed, self.bias.as_ref(), act)
    }

    /// The weight and bias for an op that takes them directly (such as
    /// [`ops::mlp`]) and records onto the tape: drops the inference packing,
    /// as [`Linear::forward_act`] with a tape does.
    pub fn for_tape(&self) -> ops::Dense<'_> {
        self.packed.clear();
        ops::Dense {
            weight: &self.weight,
            bias: self.bias.as_ref(),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        self.forward_act(x, ops::Activation::Identity)
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
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn linear_layer_gradcheck_and_init_bounds() {
        let fc = Linear::new(5, 3, true, 7).unwrap();
        assert!(
            fc.weight
                .value()
                .to_vec()
                .iter()
                .all(|v| v.abs() <= 1.0 / 5f32.sqrt())
        );
        let x = Tensor::randn(&[2, 4, 5], 0.0, 1.0, 1).unwrap();
        let (w, b) = (fc.weight.value(), fc.bias.as_ref().unwrap().value());
        gradcheck(
            "Linear",
            &[x, w, b],
            |v| Linear::from_vars(v[1].clone(), Some(v[2].clone())).forward(&v[0], &Ctx::eval()),
            GradcheckOptions::default(),
        )
        .unwrap();
        assert!(Linear::from_tensors(Tensor::zeros(&[3]).unwrap(), None).is_err());
        assert!(
            Linear::from_tensors(
                Tensor::zeros(&[3, 2]).unwrap(),
                Some(Tensor::zeros(&[2]).unwrap())
            )
            .is_err()
        );
    }

    /// Without a tape the layer packs its weight once and reuses it: the
    /// same values as the taped forward, a fresh packing after the weight
    /// changes, and none kept once a taped forward runs.
    #[test]
    fn packed_weight_is_reused_while_the_weight_is_unchanged() {
        let fc = Linear::new(300, 70, true, 3).unwrap();
        let x = Var::constant(Tensor::randn(&[5, 40, 300], 0.0, 1.0, 4).unwrap());
        let act = ops::Activation::Gelu;
        let taped = fc.forward_act(&x, act).unwrap().value();
        assert_eq!(format!("{:?}", fc.packed), "not packed");
        let plain = allmlp_autograd::no_grad(|| fc.forward_act(&x, act)).unwrap();
        assert_eq!(plain.value(), taped);
        assert!(format!("{:?}", fc.packed).starts_with("PackedB(300×70"));
        let held = fc.packed.0.lock().unwrap().as_ref().unwrap().1.clone();
        let again = allmlp_autograd::no_grad(|| fc.forward(&x, &Ctx::eval())).unwrap();
        let now = fc.packed.0.lock().unwrap().as_ref().unwrap().1.clone();
        assert!(Arc::ptr_eq(&held, &now), "packed again for the same weight");
        let want = allmlp_autograd::ops::linear(&x, &fc.weight, fc.bias.as_ref()).unwrap();
        assert_eq!(again.value(), want.value());
        // A new weight (an optimizer step, a loaded checkpoint) is packed anew.
        let w2 = fc.weight.value().mul_scalar(-2.0);
        fc.weight.set_value(w2).unwrap();
        let after = allmlp_autograd::no_grad(|| fc.forward_act(&x, act)).unwrap();
        assert_eq!(after.value(), fc.forward_act(&x, act).unwrap().value());
        assert_ne!(after.value(), taped);
        assert_eq!(format!("{:?}", fc.packed), "not packed");
        let e = allmlp_autograd::no_grad(|| {
            fc.forward(
                &Var::constant(Tensor::zeros(&[2, 3]).unwrap()),
                &Ctx::eval(),
            )
        })
        .unwrap_err();
        assert!(e.to_string().contains("[.., 300]"), "{e}");
        let flat = Linear::from_vars(Var::parameter(Tensor::zeros(&[6]).unwrap()), None);
        let e = allmlp_autograd::no_grad(|| flat.forward(&x, &Ctx::eval())).unwrap_err();
        assert!(e.to_string().contains("[out, in]"), "{e}");
    }
}
