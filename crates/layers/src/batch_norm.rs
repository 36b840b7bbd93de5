//! `BatchNorm1d` and `BatchNorm2d`: batch normalisation per channel (dimension 1),
//! PyTorch's `nn.BatchNorm1d` / `nn.BatchNorm2d`.
//!
//! `BatchNorm1d` takes `[N, C]` or `[N, C, L]`, `BatchNorm2d` takes `[N, C, H, W]`;
//! the two differ only in the input ranks they accept (as in PyTorch), so one
//! macro below stamps out both from the same code.
//!
//! Parameters (when `affine`): `weight [C]` (init 1), `bias [C]` (init 0).
//! Buffers: `running_mean [C]` (init 0), `running_var [C]` (init 1),
//! `num_batches_tracked []` (the count, held as f32).
//!
//! - **Training** ([`Ctx::train`]): normalise with the batch mean and biased
//!   variance; then `running = (1 − m)·running + m·batch` with the *unbiased*
//!   batch variance, and `num_batches_tracked += 1`. `momentum = None` is
//!   PyTorch's cumulative average, `m = 1/num_batches_tracked`.
//! - **Evaluation** ([`Ctx::eval`]): normalise with the running statistics.
//!
//! `track_running_stats=False` is not supported.
//!
//! ```
//! use allmlp_layers::{BatchNorm2d, Ctx, Module, named_buffers, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let bn = BatchNorm2d::new(2)?;
//! let x = Tensor::from_vec((0..16).map(|i| i as f32).collect(), &[2, 2, 2, 2])?;
//! let y = bn.forward(&Var::constant(x), &Ctx::train(0))?;
//! assert!(y.value().to_vec().iter().sum::<f32>().abs() < 1e-4);
//! // Channel 0 holds 0..4 and 8..12: mean 5.5, so running_mean = 0.1·5.5.
//! assert!((bn.running_mean.get().to_vec()[0] - 0.55).abs() < 1e-6);
//! assert_eq!(bn.num_batches_tracked.get().item()?, 1.0);
//! let p: Vec<String> = named_parameters(&bn).into_iter().map(|(n, _)| n).collect();
//! let b: Vec<String> = named_buffers(&bn).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(p, ["weight", "bias"]);
//! assert_eq!(b, ["running_mean", "running_var", "num_batches_tracked"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::{RunningStats, batch_norm};
use allmlp_autograd::tensor_core::error::fmt_shape;
use allmlp_autograd::tensor_core::{Tensor, TensorError};
use allmlp_autograd::{Result, Var};

use crate::module::{Buffer, Ctx, Module, Visitor, join};

/// Checks `eps` and `momentum` as PyTorch would accept them.
fn check_options(layer: &'static str, c: usize, eps: f32, momentum: Option<f32>) -> Result<()> {
    let m_ok = momentum.is_none_or(|m| (0.0..=1.0).contains(&m));
    if c == 0 || !(eps.is_finite() && eps > 0.0) || !m_ok {
        return Err(TensorError::arg(
            layer,
            format!(
                "need num_features > 0, a finite eps > 0 and momentum in [0, 1] or None, \
                 got num_features {c}, eps {eps}, momentum {momentum:?}"
            ),
        )
        .into());
    }
    Ok(())
}

/// The parts shared by both layers: the forward pass.
struct Parts<'a> {
    weight: Option<&'a Var>,
    bias: Option<&'a Var>,
    running_mean: &'a Buffer,
    running_var: &'a Buffer,
    num_batches_tracked: &'a Buffer,
    momentum: Option<f32>,
    eps: f32,
}

impl Parts<'_> {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let (w, b) = (self.weight, self.bias);
        if !ctx.training() {
            // O(1) clones: evaluation does not hold the buffers' locks while it runs.
            let (mut mean, mut var) = (self.running_mean.get(), self.running_var.get());
            let stats = RunningStats {
                mean: &mut mean,
                var: &mut var,
            };
            return batch_norm(x, w, b, Some(stats), false, 0.0, self.eps);
        }
        // Locks taken in one order (mean, var, count) by every caller.
        let mut mean = self.running_mean.lock();
        let mut var = self.running_var.lock();
        let mut count = self.num_batches_tracked.lock();
        let tracked = count.item()? + 1.0;
        let momentum = self.momentum.unwrap_or(1.0 / tracked);
        let stats = RunningStats {
            mean: &mut mean,
            var: &mut var,
        };
        let y = batch_norm(x, w, b, Some(stats), true, momentum, self.eps)?;
        *count = Tensor::full(count.shape(), tracked)?;
        Ok(y)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        if let Some(w) = self.weight {
            v.param(&join(prefix, "weight"), w);
        }
        if let Some(b) = self.bias {
            v.param(&join(prefix, "bias"), b);
        }
        v.buffer(&join(prefix, "running_mean"), self.running_mean);
        v.buffer(&join(prefix, "running_var"), self.running_var);
        v.buffer(
            &join(prefix, "num_batches_tracked"),
            self.num_batches_tracked,
        );
    }
}

macro_rules! batch_norm_layer {
    ($name:ident, $ranks:pat, $layout:literal, $what:literal) => {
        #[doc = concat!("Batch normalisation of ", $what, " (input ", $layout, ").")]
        #[derive(Debug)]
        pub struct $name {
            /// `[C]`, if the layer is affine.
            pub weight: Option<Var>,
            /// `[C]`, if the layer is affine.
            pub bias: Option<Var>,
            /// `[C]`: the running mean.
            pub running_mean: Buffer,
            /// `[C]`: the running unbiased variance.
            pub running_var: Buffer,
            /// `[]`: training forward passes so far.
            pub num_batches_tracked: Buffer,
            /// Weight of the new batch in the running statistics (PyTorch's
            /// default 0.1); `None` for the cumulative average.
            pub momentum: Option<f32>,
            /// Added to the variance (default 1e-5).
            pub eps: f32,
        }

        impl $name {
            /// `num_features` channels with PyTorch's defaults: `eps = 1e-5`,
            /// `momentum = 0.1`, affine.
            pub fn new(num_features: usize) -> Result<$name> {
                $name::with_options(num_features, 1e-5, Some(0.1), true)
            }

            /// `num_features` channels with the given options; parameters and
            /// buffers initialised as PyTorch (weight 1, bias 0, mean 0, var 1).
            pub fn with_options(
                num_features: usize,
                eps: f32,
                momentum: Option<f32>,
                affine: bool,
            ) -> Result<$name> {
                let (w, b) = if affine {
                    (
                        Some(Tensor::ones(&[num_features])?),
                        Some(Tensor::zeros(&[num_features])?),
                    )
                } else {
                    (None, None)
                };
                let mean = Tensor::zeros(&[num_features])?;
                let var = Tensor::ones(&[num_features])?;
                $name::from_tensors(w, b, mean, var, eps, momentum)
            }

            /// A layer with the given `weight [C]`, `bias [C]` (both or neither),
            /// `running_mean [C]`, `running_var [C]`; `num_batches_tracked` starts at 0.
            pub fn from_tensors(
                weight: Option<Tensor>,
                bias: Option<Tensor>,
                running_mean: Tensor,
                running_var: Tensor,
                eps: f32,
                momentum: Option<f32>,
            ) -> Result<$name> {
                let layer = stringify!($name);
                running_mean.expect_rank(layer, 1, "running_mean [C]")?;
                let c = running_mean.shape()[0];
                check_options(layer, c, eps, momentum)?;
                running_var.expect_shape(layer, &[c])?;
                if weight.is_some() != bias.is_some() {
                    return Err(TensorError::arg(
                        layer,
                        "weight and bias are both present (affine) or both absent",
                    )
                    .into());
                }
                for t in weight.iter().chain(&bias) {
                    t.expect_shape(layer, &[c])?;
                }
                Ok($name {
                    weight: weight.map(Var::parameter),
                    bias: bias.map(Var::parameter),
                    running_mean: Buffer::new(running_mean),
                    running_var: Buffer::new(running_var),
                    num_batches_tracked: Buffer::new(Tensor::scalar(0.0)),
                    momentum,
                    eps,
                })
            }

            /// The number of channels `C` (the length of `running_mean`; 0 if a
            /// scalar was set there, which the forward then refuses).
            pub fn num_features(&self) -> usize {
                self.running_mean
                    .get()
                    .shape()
                    .first()
                    .copied()
                    .unwrap_or(0)
            }

            fn parts(&self) -> Parts<'_> {
                Parts {
                    weight: self.weight.as_ref(),
                    bias: self.bias.as_ref(),
                    running_mean: &self.running_mean,
                    running_var: &self.running_var,
                    num_batches_tracked: &self.num_batches_tracked,
                    momentum: self.momentum,
                    eps: self.eps,
                }
            }
        }

        impl Module for $name {
            #[doc = concat!("`x ", $layout, "` → `y` of the same shape.")]
            fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
                let s = x.shape();
                let c = self.num_features();
                if !matches!(s.len(), $ranks) || s[1] != c {
                    return Err(TensorError::shape(
                        stringify!($name),
                        format!("input {} with C = {c}", $layout),
                        fmt_shape(&s),
                    )
                    .into());
                }
                self.parts().forward(x, ctx)
            }

            fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
                self.parts().visit(prefix, v);
            }
        }
    };
}

batch_norm_layer!(
    BatchNorm1d,
    2 | 3,
    "[N, C] or [N, C, L]",
    "`[N, C]` or `[N, C, L]`"
);
batch_norm_layer!(BatchNorm2d, 4, "[N, C, H, W]", "`[N, C, H, W]` images");

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};

    fn bn2d(v: &[Var], mean: &Tensor, var: &Tensor) -> BatchNorm2d {
        BatchNorm2d {
            weight: Some(v[1].clone()),
            bias: Some(v[2].clone()),
            running_mean: Buffer::new(mean.clone()),
            running_var: Buffer::new(var.clone()),
            num_batches_tracked: Buffer::new(Tensor::scalar(0.0)),
            momentum: Some(0.1),
            eps: 1e-5,
        }
    }

    #[test]
    fn batch_norm_gradcheck_train_and_eval() {
        // Permuted (non-contiguous) [3, 4, 2, 3] input, random parameters and statistics.
        let x = Tensor::randn(&[3, 2, 3, 4], 0.3, 1.5, 1)
            .unwrap()
            .permute(&[0, 3, 1, 2])
            .unwrap();
        let w = Tensor::randn(&[4], 1.0, 0.3, 2).unwrap();
        let b = Tensor::randn(&[4], 0.0, 0.3, 3).unwrap();
        let mean = Tensor::randn(&[4], 0.0, 1.0, 4).unwrap();
        let var = Tensor::rand_uniform(&[4], 0.5, 2.0, 5).unwrap();
        let o = GradcheckOptions::default();
        for train in [true, false] {
            let ctx = || if train { Ctx::train(0) } else { Ctx::eval() };
            let inputs = [x.clone(), w.clone(), b.clone()];
            gradcheck(
                "BatchNorm2d",
                &inputs,
                |v| bn2d(v, &mean, &var).forward(&v[0], &ctx()),
                o,
            )
            .unwrap();
        }
        // BatchNorm1d on [N, C, L], no affine, eval.
        let bn = BatchNorm1d::from_tensors(None, None, mean.clone(), var.clone(), 1e-5, Some(0.1));
        let bn = bn.unwrap();
        let x3 = Tensor::randn(&[3, 4, 5], 0.0, 1.0, 6).unwrap();
        gradcheck("BatchNorm1d", &[x3], |v| bn.forward(&v[0], &Ctx::eval()), o).unwrap();
    }

    #[test]
    fn cumulative_momentum_and_training_updates() {
        // momentum = None averages the batch statistics seen so far (PyTorch's
        // cumulative moving average); checked against means computed here in f64.
        let bn = BatchNorm1d::with_options(3, 1e-5, None, false).unwrap();
        let xs: Vec<Tensor> = (0..3)
            .map(|i| Tensor::randn(&[5, 3], i as f32, 1.0, 10 + i).unwrap())
            .collect();
        for x in &xs {
            bn.forward(&Var::constant(x.clone()), &Ctx::train(0))
                .unwrap();
        }
        assert_eq!(bn.num_batches_tracked.get().item().unwrap(), 3.0);
        let got = bn.running_mean.get().to_vec();
        for (ch, g) in got.iter().enumerate() {
            let want: f64 = xs
                .iter()
                .map(|x| (0..5).map(|n| x.get(&[n, ch]).unwrap() as f64).sum::<f64>() / 5.0)
                .sum::<f64>()
                / 3.0;
            assert!(
                (*g as f64 - want).abs() < 1e-5,
                "channel {ch}: {g} vs {want}"
            );
        }
        // Evaluation leaves the statistics and the count alone.
        bn.forward(&Var::constant(xs[0].clone()), &Ctx::eval())
            .unwrap();
        assert_eq!(bn.num_batches_tracked.get().item().unwrap(), 3.0);
        assert_eq!(bn.running_mean.get().to_vec(), got);
    }

    #[test]
    fn batch_norm_errors_name_the_layer() {
        let bn1 = BatchNorm1d::new(3).unwrap();
        let bn2 = BatchNorm2d::new(3).unwrap();
        let run = |m: &dyn Module, shape: &[usize]| {
            m.forward(&Var::constant(Tensor::zeros(shape).unwrap()), &Ctx::eval())
                .unwrap_err()
                .to_string()
        };
        let e = run(&bn1, &[2, 3, 4, 4]);
        assert!(
            e.contains("BatchNorm1d") && e.contains("[N, C] or [N, C, L]"),
            "{e}"
        );
        assert!(e.contains("[2, 3, 4, 4]"), "{e}");
        let e = run(&bn2, &[2, 3, 4]);
        assert!(e.contains("BatchNorm2d") && e.contains("[N, C, H, W]") && e.contains("[2, 3, 4]"));
        let e = run(&bn2, &[2, 5, 4, 4]);
        assert!(e.contains("BatchNorm2d") && e.contains("C = 3"), "{e}");
        let e = run(&bn1, &[3]);
        assert!(e.contains("BatchNorm1d"), "{e}");
        // One value per channel cannot be normalised with batch statistics.
        let x1 = Var::constant(Tensor::zeros(&[1, 3]).unwrap());
        assert!(bn1.forward(&x1, &Ctx::train(0)).is_err());
        assert_eq!(bn1.num_batches_tracked.get().item().unwrap(), 0.0);
        assert!(BatchNorm2d::with_options(3, 0.0, Some(0.1), true).is_err());
        assert!(BatchNorm2d::with_options(3, 1e-5, Some(1.5), true).is_err());
        assert!(BatchNorm2d::with_options(0, 1e-5, Some(0.1), true).is_err());
        let (z, o) = (Tensor::zeros(&[3]).unwrap(), Tensor::ones(&[3]).unwrap());
        assert!(
            BatchNorm2d::from_tensors(Some(o.clone()), None, z.clone(), o.clone(), 1e-5, None)
                .is_err()
        );
        assert!(
            BatchNorm2d::from_tensors(None, None, z, Tensor::ones(&[4]).unwrap(), 1e-5, None)
                .is_err()
        );
    }
}
