//! `Mlp`: timm's `timm.layers.Mlp`, the two-layer feed-forward block of
//! MLP-Mixer (token and channel mixing) and ResMLP (channel mixing).
//!
//! `fc1 → act → drop → fc2 → drop` over the last dimension: `[…, in] → […, hidden]
//! → […, out]`, with `fc1`'s bias and the activation fused into its GEMM's
//! epilogue (`allmlp_autograd::ops::linear_act`), in training and inference.
//! With a tape and no dropout between the layers, both run as one op
//! (`allmlp_autograd::ops::mlp`: the same values and gradients, one pass
//! fewer in backward). Parameters as timm names them: `fc1.weight [hidden, in]`,
//! `fc1.bias [hidden]`, `fc2.weight [out, hidden]`, `fc2.bias [out]`. Both
//! Linears get PyTorch's default init (timm's Mlp does not re-initialise;
//! the models do). Both dropouts use the same probability, each drawing its
//! own mask from the context (first `drop1`, then `drop2`).
//!
//! ```
//! use allmlp_layers::{Activation, Ctx, Mlp, Module, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let mlp = Mlp::new(8, 32, 8, Activation::Gelu, 0.0, 0)?;
//! let y = mlp.forward(&Var::constant(Tensor::ones(&[2, 5, 8])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), vec![2, 5, 8]);
//! let names: Vec<String> = named_parameters(&mlp).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops;
use allmlp_autograd::tensor_core::{Rng, TensorError};
use allmlp_autograd::{Result, Var, is_grad_enabled};

use crate::dropout::Dropout;
use crate::linear::Linear;
use crate::module::{Ctx, Module, Visitor, join};

/// The nonlinearity of an [`Mlp`] (timm's `act_layer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU, timm's default `nn.GELU`.
    #[default]
    Gelu,
    /// Tanh-approximate GELU (`nn.GELU(approximate='tanh')`, the JAX Mixer's).
    GeluTanh,
    /// `nn.ReLU`.
    Relu,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply(self, x: &Var) -> Var {
        match self {
            Activation::Gelu => x.gelu(),
            Activation::GeluTanh => x.gelu_tanh(),
            Activation::Relu => x.relu(),
        }
    }

    /// The same activation as a GEMM epilogue (for [`Linear::forward_act`]).
    pub fn fused(self) -> ops::Activation {
        match self {
            Activation::Gelu => ops::Activation::Gelu,
            Activation::GeluTanh => ops::Activation::GeluTanh,
            Activation::Relu => ops::Activation::Relu,
        }
    }
}

impl Module for Activation {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        Ok(self.apply(x))
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

/// A two-layer perceptron.
#[derive(Debug)]
pub struct Mlp {
    /// `in → hidden`.
    pub fc1: Linear,
    /// The nonlinearity after `fc1`.
    pub act: Activation,
    /// Dropout after the activation.
    pub drop1: Dropout,
    /// `hidden → out`.
    pub fc2: Linear,
    /// Dropout after `fc2`.
    pub drop2: Dropout,
}

impl Mlp {
    /// `in_features → hidden_features → out_features` with bias, activation
    /// `act`, dropout probability `drop` (in `[0, 1)`) after the activation and
    /// after `fc2`, and PyTorch's default Linear init from `seed`.
    pub fn new(
        in_features: usize,
        hidden_features: usize,
        out_features: usize,
        act: Activation,
        drop: f32,
        seed: u64,
    ) -> Result<Mlp> {
        // Independent streams per Linear, so Mlps seeded s and s + 1 share no weights.
        let mut rng = Rng::new(seed);
        let fc1 = Linear::new(in_features, hidden_features, true, rng.next_u64())?;
        let fc2 = Linear::new(hidden_features, out_features, true, rng.next_u64())?;
        Mlp::from_linears(fc1, fc2, act, drop)
    }

    /// An Mlp from its two Linears (e.g. loaded weights); `fc1`'s output size
    /// must equal `fc2`'s input size.
    pub fn from_linears(fc1: Linear, fc2: Linear, act: Activation, drop: f32) -> Result<Mlp> {
        let ((_, hidden), (fc2_in, _)) = (fc1.features(), fc2.features());
        if hidden != fc2_in {
            return Err(TensorError::shape(
                "Mlp",
                format!("fc2 with {hidden} input features (fc1's output)"),
                format!("fc2.weight {:?}", fc2.weight.shape()),
            )
            .into());
        }
        let drop = Dropout::new(drop)?;
        Ok(Mlp {
            fc1,
            act,
            drop1: drop,
            fc2,
            drop2: drop,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        if is_grad_enabled() && self.drop1.is_identity(ctx) {
            // One op for both layers: its backward multiplies by the
            // activation's derivative inside fc2's input-gradient product.
            let fc = (self.fc1.for_tape(), self.fc2.for_tape());
            let y = ops::mlp(x, fc.0, self.act.fused(), fc.1)?;
            return self.drop2.forward(&y, ctx);
        }
        let h = self.fc1.forward_act(x, self.act.fused())?;
        let h = self.drop1.forward(&h, ctx)?;
        self.drop2.forward(&self.fc2.forward(&h, ctx)?, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.fc1.visit(&join(prefix, "fc1"), v);
        self.fc2.visit(&join(prefix, "fc2"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn mlp_gradcheck_shapes_and_errors() {
        let mlp = Mlp::new(4, 6, 3, Activation::GeluTanh, 0.0, 1).unwrap();
        assert_eq!(mlp.fc1.weight.shape(), [6, 4]);
        assert_eq!(mlp.fc2.weight.shape(), [3, 6]);
        assert_ne!(
            mlp.fc1.weight.value().narrow(0, 0, 3).unwrap().to_vec(),
            mlp.fc2.weight.value().narrow(1, 0, 4).unwrap().to_vec(),
        );
        let x = Tensor::randn(&[2, 3, 4], 0.0, 1.0, 2).unwrap();
        let ws: Vec<Tensor> = [&mlp.fc1.weight, mlp.fc1.bias.as_ref().unwrap()]
            .into_iter()
            .chain([&mlp.fc2.weight, mlp.fc2.bias.as_ref().unwrap()])
            .map(|p| p.value())
            .collect();
        for act in [Activation::Gelu, Activation::GeluTanh] {
            gradcheck(
                "Mlp",
                &[
                    x.clone(),
                    ws[0].clone(),
                    ws[1].clone(),
                    ws[2].clone(),
                    ws[3].clone(),
                ],
                |v| {
                    let fc1 = Linear::from_vars(v[1].clone(), Some(v[2].clone()));
                    let fc2 = Linear::from_vars(v[3].clone(), Some(v[4].clone()));
                    Mlp::from_linears(fc1, fc2, act, 0.0)?.forward(&v[0], &Ctx::eval())
                },
                GradcheckOptions::default(),
            )
            .unwrap();
        }
        let bad = Linear::new(5, 3, true, 0).unwrap();
        let e = Mlp::from_linears(
            Linear::new(4, 6, true, 0).unwrap(),
            bad,
            Activation::Relu,
            0.0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Mlp") && e.contains('6'), "{e}");
        assert!(Mlp::new(4, 6, 3, Activation::Relu, 1.5, 0).is_err());
        assert!(Mlp::new(4, 6, 3, Activation::Relu, 1.0, 0).is_ok());
    }

    /// The fused forward equals the unfused composition `fc2(drop(act(fc1(x))))`
    /// bit for bit in value and gradients, in training (dropout masks drawn in
    /// the same order) and in evaluation, for every activation.
    #[test]
    fn fused_forward_equals_unfused_composition() {
        let x = Tensor::randn(&[3, 7, 8], 0.0, 1.0, 5).unwrap();
        for act in [Activation::Gelu, Activation::GeluTanh, Activation::Relu] {
            let mlp = Mlp::new(8, 24, 8, act, 0.25, 6).unwrap();
            let unfused = |x: &Var, ctx: &Ctx| -> Result<Var> {
                let h = act.apply(&mlp.fc1.forward(x, ctx)?);
                let h = mlp.drop1.forward(&h, ctx)?;
                mlp.drop2.forward(&mlp.fc2.forward(&h, ctx)?, ctx)
            };
            for training in [true, false] {
                let run = |f: &dyn Fn(&Var, &Ctx) -> Result<Var>| {
                    let ctx = if training { Ctx::train(9) } else { Ctx::eval() };
                    let xv = Var::parameter(x.clone());
                    let params = [&mlp.fc1.weight, &mlp.fc2.weight];
                    params.iter().for_each(|p| p.zero_grad());
                    let y = f(&xv, &ctx).unwrap();
                    y.backward_with(Tensor::randn(&y.shape(), 0.0, 1.0, 3).unwrap())
                        .unwrap();
                    let mut out = vec![y.value(), xv.grad().unwrap()];
                    out.extend(params.iter().map(|p| p.grad().unwrap()));
                    out
                };
                let fused = run(&|x, ctx| mlp.forward(x, ctx));
                assert_eq!(fused, run(&unfused), "{act:?} training={training}");
            }
        }
    }

    #[test]
    fn mlp_dropout_only_in_training() {
        let mlp = Mlp::new(8, 16, 8, Activation::Relu, 0.5, 3).unwrap();
        let x = Var::constant(Tensor::randn(&[4, 8], 0.0, 1.0, 4).unwrap());
        let eval = mlp.forward(&x, &Ctx::eval()).unwrap().value();
        let plain = Mlp::from_linears(
            Linear::from_tensors(
                mlp.fc1.weight.value(),
                mlp.fc1.bias.as_ref().map(Var::value),
            )
            .unwrap(),
            Linear::from_tensors(
                mlp.fc2.weight.value(),
                mlp.fc2.bias.as_ref().map(Var::value),
            )
            .unwrap(),
            Activation::Relu,
            0.0,
        )
        .unwrap();
        assert_eq!(plain.forward(&x, &Ctx::train(1)).unwrap().value(), eval);
        let t1 = mlp.forward(&x, &Ctx::train(1)).unwrap().value();
        assert_ne!(t1, eval);
        // drop2 zeroes output elements; the same seed reproduces the step.
        assert!(t1.to_vec().contains(&0.0));
        assert_eq!(mlp.forward(&x, &Ctx::train(1)).unwrap().value(), t1);
    }
}
