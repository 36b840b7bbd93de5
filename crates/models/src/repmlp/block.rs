//! The RepMLP block of paper v1 (the authors' `repmlp.py`, class `RepMLP`), in its training
//! form and its deploy form, sharing one type.
//!
//! Input `[N, C, H, W]`, output `[N, O, H, W]`, partitions `h×w`, `Hp = H/h`, `Wp = W/w`:
//!
//! 1. **Global Perceptron** (only when `H ≠ h` or `W ≠ w`): average-pool each partition
//!    (`avg`), BatchNorm2d(C) (`avg.bn`, train form only), flatten to `C·Hp·Wp`, `fc1_fc2.fc1`
//!    → ReLU → `fc1_fc2.fc2`, add the result to every pixel of its partition.
//! 2. **Partition Perceptron**: partitions `[N·Hp·Wp, C, h, w]` flattened to `C·h·w`, FC3
//!    (`fc3`, grouped, batched GEMM: see [`GroupedFc`]) → BatchNorm1d(O·h·w) (`fc3_bn`, train form).
//! 3. **Local Perceptron** (train form only): for each `k` in `reparam_conv_k`,
//!    `repconv{k}.conv` (k×k, padding k/2, groups g, no bias) → `repconv{k}.bn`, on the partitions;
//!    added to FC3's output.
//! 4. Partitions back to `[N, O, H, W]`.
//!
//! The deploy form (after structural re-parameterization) has `fc1_fc2.*` (the avg BN folded
//! into fc1), `fc3.weight` and `fc3.bias` (fc3_bn and every local branch folded in), and no
//! BN or conv: it is the same struct with the train-only parts absent.
//!
//! ```
//! use allmlp_models::repmlp::{RepMlpBlock, RepMlpBlockConfig};
//! use allmlp_models::layers::{Ctx, Module, named_parameters};
//! use allmlp_models::layers::autograd::{Var, tensor_core::Tensor};
//! let cfg = RepMlpBlockConfig::new(8, 8, (14, 14), (7, 7), &[1, 3, 5], 1, 4);
//! let block = RepMlpBlock::new(cfg.clone(), 0)?;
//! let y = block.forward(&Var::constant(Tensor::ones(&[2, 8, 14, 14])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), [2, 8, 14, 14]);
//! let deploy = RepMlpBlock::new(cfg.deploy(), 0)?;
//! let names: Vec<String> = named_parameters(&deploy).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["fc1_fc2.fc1.weight", "fc1_fc2.fc1.bias", "fc1_fc2.fc2.weight",
//!                    "fc1_fc2.fc2.bias", "fc3.weight", "fc3.bias"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use allmlp_layers::autograd::ops::{Conv2dParams, PoolParams, avg_pool2d};
use allmlp_layers::autograd::tensor_core::Rng;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::{AutogradError, Result, Var};
use allmlp_layers::{BatchNorm1d, BatchNorm2d, Conv2d, Ctx, Linear, Module, Visitor, join};
use serde_json::{Value, json};

use allmlp_reparam::{ConvBn as ReparamConvBn, Fc3Bn, equivalent_fc3, fold_bn_into_fc1};

use super::fc3::GroupedFc;
use crate::deploy::{already_deployed, bn1d, bn2d, copy_linear};
use crate::error::ModelError;

/// The configuration of one RepMLP block (the arguments of the authors' `RepMLP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepMlpBlockConfig {
    /// `C`: input channels.
    pub in_channels: usize,
    /// `O`: output channels.
    pub out_channels: usize,
    /// `(H, W)`: the feature map the block takes (its FCs fix it).
    pub input_size: (usize, usize),
    /// `(h, w)`: the partition size; must divide `(H, W)`.
    pub partition: (usize, usize),
    /// Kernel sides of the Local Perceptron's conv branches (odd, distinct; empty: none).
    pub reparam_conv_k: Vec<usize>,
    /// `fc1` maps `C·Hp·Wp` to `C·Hp·Wp / fc1_fc2_reduction` (integer division, as the authors).
    pub fc1_fc2_reduction: usize,
    /// `g`: groups of FC3 and of the local convs; divides `C` and `O`.
    pub fc3_groups: usize,
    /// Build the deploy (re-parameterized) form.
    pub deploy: bool,
}

impl RepMlpBlockConfig {
    /// A training-form configuration.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        input_size: (usize, usize),
        partition: (usize, usize),
        reparam_conv_k: &[usize],
        fc1_fc2_reduction: usize,
        fc3_groups: usize,
    ) -> RepMlpBlockConfig {
        RepMlpBlockConfig {
            in_channels,
            out_channels,
            input_size,
            partition,
            reparam_conv_k: reparam_conv_k.to_vec(),
            fc1_fc2_reduction,
            fc3_groups,
            deploy: false,
        }
    }

    /// The same block in its deploy form.
    pub fn deploy(mut self) -> RepMlpBlockConfig {
        self.deploy = true;
        self
    }

    /// `(Hp, Wp)`: partitions along height and width.
    pub fn parts(&self) -> (usize, usize) {
        (
            self.input_size.0 / self.partition.0.max(1),
            self.input_size.1 / self.partition.1.max(1),
        )
    }

    /// True when the block has a Global Perceptron (`H ≠ h` or `W ≠ w`).
    pub fn needs_global_perceptron(&self) -> bool {
        self.input_size != self.partition
    }

    /// Width of `fc1`'s output: `C·Hp·Wp / fc1_fc2_reduction`.
    pub fn internal_neurons(&self) -> usize {
        let (hp, wp) = self.parts();
        self.in_channels * hp * wp / self.fc1_fc2_reduction.max(1)
    }

    /// Checks every constraint; the error names `model` and the offending values.
    pub fn validate(&self, model: &str) -> std::result::Result<(), ModelError> {
        let err = |msg: String| ModelError::InvalidConfig {
            model: model.to_string(),
            msg: format!("RepMLP block: {msg}"),
        };
        let (c, o, g) = (self.in_channels, self.out_channels, self.fc3_groups);
        let ((hh, ww), (h, w)) = (self.input_size, self.partition);
        if [c, o, g, hh, ww, h, w, self.fc1_fc2_reduction].contains(&0) {
            return Err(err(format!(
                "channels, sizes, partition, groups and reduction must be > 0, got C {c}, O {o}, \
                 input {hh}×{ww}, partition {h}×{w}, fc3_groups {g}, fc1_fc2_reduction {}",
                self.fc1_fc2_reduction
            )));
        }
        if !hh.is_multiple_of(h) || !ww.is_multiple_of(w) {
            return Err(err(format!(
                "the partition {h}×{w} must divide the input {hh}×{ww}"
            )));
        }
        if !c.is_multiple_of(g) || !o.is_multiple_of(g) {
            return Err(err(format!(
                "fc3_groups {g} must divide in_channels {c} and out_channels {o}"
            )));
        }
        let mut seen = Vec::new();
        for &k in &self.reparam_conv_k {
            if k.is_multiple_of(2) || seen.contains(&k) {
                return Err(err(format!(
                    "reparam_conv_k must be distinct odd kernel sides (padding k/2 keeps the \
                     partition size), got {:?}",
                    self.reparam_conv_k
                )));
            }
            seen.push(k);
        }
        if self.needs_global_perceptron() && self.internal_neurons() == 0 {
            return Err(err(format!(
                "fc1_fc2_reduction {} leaves fc1 with no output (C·Hp·Wp = {})",
                self.fc1_fc2_reduction,
                c * self.parts().0 * self.parts().1
            )));
        }
        Ok(())
    }

    /// Multiply-accumulates per image of the FCs and convs (BN, pooling, ReLU and additions not
    /// counted), in this form (train or deploy).
    pub fn macs(&self) -> u64 {
        let (c, o, g) = (self.in_channels, self.out_channels, self.fc3_groups);
        let ((hh, ww), (h, w)) = (self.input_size, self.partition);
        let (hp, wp) = self.parts();
        let mut macs = (hp * wp) * (c * h * w / g) * (o * h * w);
        if self.needs_global_perceptron() {
            macs += 2 * c * hp * wp * self.internal_neurons();
        }
        if !self.deploy {
            macs += self
                .reparam_conv_k
                .iter()
                .map(|k| hh * ww * o * (c / g) * k * k)
                .sum::<usize>();
        }
        macs as u64
    }

    /// The configuration as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input_size": [self.input_size.0, self.input_size.1],
            "partition": [self.partition.0, self.partition.1],
            "reparam_conv_k": self.reparam_conv_k,
            "fc1_fc2_reduction": self.fc1_fc2_reduction,
            "fc3_groups": self.fc3_groups,
            "deploy": self.deploy,
        })
    }
}

/// The Global Perceptron: `avg` (pool, then `avg.bn` in the train form) and `fc1_fc2`.
#[derive(Debug)]
pub struct GlobalPerceptron {
    /// `avg.bn`: BatchNorm2d(C) after the pooling; `None` in the deploy form (folded into fc1).
    pub bn: Option<BatchNorm2d>,
    /// `fc1_fc2.fc1`: `C·Hp·Wp → internal`.
    pub fc1: Linear,
    /// `fc1_fc2.fc2`: `internal → C·Hp·Wp`.
    pub fc2: Linear,
}

/// One conv-BN branch of the Local Perceptron (`repconv{k}`).
#[derive(Debug)]
pub struct LocalBranch {
    /// Kernel side `k`.
    pub k: usize,
    /// `repconv{k}.conv`: `[O, C/g, k, k]`, padding `k/2`, no bias.
    pub conv: Conv2d,
    /// `repconv{k}.bn`: BatchNorm2d(O).
    pub bn: BatchNorm2d,
}

/// The parts that exist only before re-parameterization.
#[derive(Debug)]
pub struct TrainBranches {
    /// `fc3_bn`: BatchNorm1d(O·h·w) after FC3.
    pub fc3_bn: BatchNorm1d,
    /// The Local Perceptron, in `reparam_conv_k` order.
    pub local: Vec<LocalBranch>,
}

/// A RepMLP block (train form when `train` is `Some`, deploy form when `None`).
#[derive(Debug)]
pub struct RepMlpBlock {
    /// What it was built from.
    pub config: RepMlpBlockConfig,
    /// The Global Perceptron, if `H ≠ h` or `W ≠ w`.
    pub global: Option<GlobalPerceptron>,
    /// `fc3`: `[O·h·w, C·h·w/g, 1, 1]`, with a bias `[O·h·w]` in the deploy form.
    pub fc3: GroupedFc,
    /// `fc3_bn` and the Local Perceptron (train form only).
    pub train: Option<TrainBranches>,
}

impl RepMlpBlock {
    /// Builds the form `config.deploy` says with PyTorch's default initialisation from `seed`.
    pub fn new(
        config: RepMlpBlockConfig,
        seed: u64,
    ) -> std::result::Result<RepMlpBlock, ModelError> {
        config.validate("RepMLP block")?;
        let mut rng = Rng::new(seed);
        let (c, o, g) = (config.in_channels, config.out_channels, config.fc3_groups);
        let (h, w) = config.partition;
        let (hp, wp) = config.parts();
        let deploy = config.deploy;
        let global = if config.needs_global_perceptron() {
            let (f, inner) = (c * hp * wp, config.internal_neurons());
            Some(GlobalPerceptron {
                bn: if deploy {
                    None
                } else {
                    Some(BatchNorm2d::new(c)?)
                },
                fc1: Linear::new(f, inner, true, rng.next_u64())?,
                fc2: Linear::new(inner, f, true, rng.next_u64())?,
            })
        } else {
            None
        };
        let fc3 = GroupedFc::new(c * h * w, o * h * w, g, deploy, rng.next_u64())?;
        let train = if deploy {
            None
        } else {
            let local = config
                .reparam_conv_k
                .iter()
                .map(|&k| -> Result<LocalBranch> {
                    let p = Conv2dParams::square(1, k / 2, g);
                    Ok(LocalBranch {
                        k,
                        conv: Conv2d::new(c, o, (k, k), p, false, rng.next_u64())?,
                        bn: BatchNorm2d::new(o)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(TrainBranches {
                fc3_bn: BatchNorm1d::new(o * h * w)?,
                local,
            })
        };
        Ok(RepMlpBlock {
            config,
            global,
            fc3,
            train,
        })
    }

    /// True for the deploy form.
    pub fn is_deploy(&self) -> bool {
        self.train.is_none()
    }

    /// The deploy form of this (train-form) block, computed once from its parameters and
    /// eval-mode BN statistics (the paper's structural re-parameterization):
    ///
    /// - `fc3` ⊕ `fc3_bn` ⊕ every `repconv{k}` (BN folded, padded to the largest `k`, converted
    ///   to an FC by `allmlp_reparam::conv_to_fc`) → `fc3.weight` + `fc3.bias`
    ///   (`allmlp_reparam::equivalent_fc3`);
    /// - `avg.bn` folded into `fc1_fc2.fc1` (`allmlp_reparam::fold_bn_into_fc1`); `fc2` copied.
    ///
    /// A deploy-form block is an error (`InvalidConfig`).
    pub fn to_deploy(&self) -> std::result::Result<RepMlpBlock, ModelError> {
        let Some(t) = &self.train else {
            return Err(already_deployed("RepMLP block"));
        };
        let global = match &self.global {
            Some(gp) => {
                let fc1 = match &gp.bn {
                    Some(bn) => {
                        let b0 = gp.fc1.bias.as_ref().map(|b| b.value());
                        let (w, b) =
                            fold_bn_into_fc1(&bn2d(bn)?, &gp.fc1.weight.value(), b0.as_ref())?;
                        Linear::from_tensors(w, Some(b))?
                    }
                    None => copy_linear(&gp.fc1)?,
                };
                Some(GlobalPerceptron {
                    bn: None,
                    fc1,
                    fc2: copy_linear(&gp.fc2)?,
                })
            }
            None => None,
        };
        let local = t
            .local
            .iter()
            .map(|b| {
                Ok(ReparamConvBn {
                    kernel: b.conv.weight.value(),
                    bn: bn2d(&b.bn)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, ModelError>>()?;
        let (h, w) = self.config.partition;
        let g = self.config.fc3_groups;
        let fc3_bn = bn1d(&t.fc3_bn)?;
        let (weight, bias) = equivalent_fc3(
            &self.fc3.weight.value(),
            Fc3Bn::PerOutput(&fc3_bn),
            &local,
            g,
            h,
            w,
        )?;
        Ok(RepMlpBlock {
            config: self.config.clone().deploy(),
            global,
            fc3: GroupedFc::from_tensors(weight, Some(bias), g)?,
            train: None,
        })
    }

    fn check_input(&self, s: &[usize]) -> Result<()> {
        let (c, (hh, ww)) = (self.config.in_channels, self.config.input_size);
        if s.len() == 4 && s[0] > 0 && s[1..] == [c, hh, ww] {
            return Ok(());
        }
        Err(AutogradError::InvalidArgument {
            op: "RepMLP block",
            msg: format!(
                "expected input [N, {c}, {hh}, {ww}] (the Global Perceptron and FC3 weights fix \
                 C, H and W), got {}",
                fmt_shape(s)
            ),
        })
    }
}

impl Module for RepMlpBlock {
    /// `x [N, C, H, W]` → `[N, O, H, W]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let s = x.shape();
        self.check_input(&s)?;
        let n = s[0];
        let cfg = &self.config;
        let (c, o) = (cfg.in_channels, cfg.out_channels);
        let ((hh, ww), (h, w)) = (cfg.input_size, cfg.partition);
        let (hp, wp) = cfg.parts();
        // Global Perceptron: one vector per image, added to every pixel of each partition.
        let x = match &self.global {
            Some(gp) => {
                let pool = PoolParams {
                    kernel: (h, w),
                    stride: (h, w),
                    padding: (0, 0),
                };
                let mut v = avg_pool2d(x, pool, true)?;
                if let Some(bn) = &gp.bn {
                    v = bn.forward(&v, ctx)?;
                }
                let v = v.reshape(&[n, c * hp * wp])?;
                let v = gp.fc2.forward(&gp.fc1.forward(&v, ctx)?.relu(), ctx)?;
                let v = v.reshape(&[n, c, hp, 1, wp, 1])?;
                x.reshape(&[n, c, hp, h, wp, w])?
                    .add(&v)?
                    .reshape(&[n, c, hh, ww])?
            }
            None => x.clone(),
        };
        let parts = x.partition(h, w)?; // [N·Hp·Wp, C, h, w]
        let m = n * hp * wp;
        // Partition Perceptron.
        let mut y = self.fc3.forward(&parts.reshape(&[m, c * h * w])?, ctx)?;
        if let Some(t) = &self.train {
            y = t.fc3_bn.forward(&y, ctx)?;
        }
        let mut y = y.reshape(&[m, o, h, w])?;
        // Local Perceptron.
        if let Some(t) = &self.train {
            for b in &t.local {
                y = y.add(&b.bn.forward(&b.conv.forward(&parts, ctx)?, ctx)?)?;
            }
        }
        y.unpartition(n, hp, wp)
    }

    /// The authors' registration order: `fc1_fc2`, `avg`, `fc3`, `fc3_bn`, `repconv{k}`.
    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        if let Some(gp) = &self.global {
            gp.fc1.visit(&join(prefix, "fc1_fc2.fc1"), v);
            gp.fc2.visit(&join(prefix, "fc1_fc2.fc2"), v);
            if let Some(bn) = &gp.bn {
                bn.visit(&join(prefix, "avg.bn"), v);
            }
        }
        self.fc3.visit(&join(prefix, "fc3"), v);
        if let Some(t) = &self.train {
            t.fc3_bn.visit(&join(prefix, "fc3_bn"), v);
            for b in &t.local {
                let p = join(prefix, &format!("repconv{}", b.k));
                b.conv.visit(&join(&p, "conv"), v);
                b.bn.visit(&join(&p, "bn"), v);
            }
        }
    }
}
