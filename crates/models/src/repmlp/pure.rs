//! Pure-MLP RepMLP networks for small images (our design from the v1 paper's CIFAR model; the
//! authors released no code for it): `repmlp_pure` (CIFAR, 3×32×32) and `repmlp_tiny`
//! (Fashion-MNIST, 1×28×28). docs/repmlp.md explains every choice.
//!
//! Layout (names in brackets):
//!
//! - `stem`: 3×3 ConvBNReLU, `in_chans → channels[0]` (the only conv of the deploy model);
//! - stage `i` (`stages.{i}`, at `img/2^i`), `units_per_stage` units `stages.{i}.{j}`:
//!   `repmlp` (RepMLP block `c_i → c_i`) → ReLU → `fc` (1×1 ConvBNReLU, the FC layer; the last
//!   unit of a stage maps to the next stage's width); then a 2×2 max pool between stages;
//! - global average pool, dropout (`drop_rate`), `linear`.

use allmlp_layers::autograd::ops::{PoolParams, adaptive_avg_pool2d, max_pool2d};
use allmlp_layers::autograd::tensor_core::Rng;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{Ctx, Dropout, Linear, Module, Visitor, join};
use serde_json::{Value, json};

use super::block::{RepMlpBlock, RepMlpBlockConfig};
use super::conv_bn::{ConvBn, ConvSpec};
use super::{Opts, check_image, into_autograd};
use crate::deploy::{already_deployed, copy_linear};
use crate::error::ModelError;
use crate::model::Model;

/// Configuration of a pure-MLP RepMLP network.
#[derive(Clone, Debug, PartialEq)]
pub struct RepMlpPureConfig {
    /// Input channels.
    pub in_chans: usize,
    /// Square input side; stage `i` runs at `img_size / 2^i`.
    pub img_size: usize,
    /// Classes.
    pub num_classes: usize,
    /// Width of each stage (one stage per entry).
    pub channels: Vec<usize>,
    /// RepMLP + FC units per stage.
    pub units_per_stage: usize,
    /// RepMLP partition `(h, w)`, the same in every stage.
    pub partition: (usize, usize),
    /// Local Perceptron kernels.
    pub reparam_conv_k: Vec<usize>,
    /// Global Perceptron reduction.
    pub fc1_fc2_reduction: usize,
    /// FC3 groups.
    pub fc3_groups: usize,
    /// Dropout before `linear`.
    pub drop_rate: f32,
    /// Build the deploy form.
    pub deploy: bool,
}

impl RepMlpPureConfig {
    /// `repmlp_pure`: CIFAR 3×32×32, stages 32/16/8 with channels 16/32/64, one RepMLP + FC per
    /// stage, partitions 8×8, k = (1, 3, 5, 7), g = 1, reduction 1 (52.3M deploy / 118.3M
    /// train-time MACs; the paper: 52.8M / 118.9M).
    pub fn pure_cifar() -> RepMlpPureConfig {
        RepMlpPureConfig {
            in_chans: 3,
            img_size: 32,
            num_classes: 10,
            channels: vec![16, 32, 64],
            units_per_stage: 1,
            partition: (8, 8),
            reparam_conv_k: vec![1, 3, 5, 7],
            fc1_fc2_reduction: 1,
            fc3_groups: 1,
            drop_rate: 0.0,
            deploy: false,
        }
    }

    /// `repmlp_tiny`: Fashion-MNIST 1×28×28, stages 28/14/7 with channels 16/32/64, one
    /// RepMLP + FC per stage, partitions 7×7, k = (1, 3, 5), g = 4, reduction 1.
    pub fn tiny_fmnist() -> RepMlpPureConfig {
        RepMlpPureConfig {
            in_chans: 1,
            img_size: 28,
            num_classes: 10,
            channels: vec![16, 32, 64],
            units_per_stage: 1,
            partition: (7, 7),
            reparam_conv_k: vec![1, 3, 5],
            fc1_fc2_reduction: 1,
            fc3_groups: 4,
            drop_rate: 0.0,
            deploy: false,
        }
    }

    /// The configuration as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "arch": "repmlp_pure",
            "in_chans": self.in_chans,
            "img_size": self.img_size,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "units_per_stage": self.units_per_stage,
            "partition": [self.partition.0, self.partition.1],
            "reparam_conv_k": self.reparam_conv_k,
            "fc1_fc2_reduction": self.fc1_fc2_reduction,
            "fc3_groups": self.fc3_groups,
            "drop_rate": self.drop_rate,
            "deploy": self.deploy,
        })
    }
}

/// One RepMLP + FC unit.
#[derive(Debug)]
pub struct PureUnit {
    /// `repmlp`: the RepMLP block (followed by a ReLU).
    pub repmlp: RepMlpBlock,
    /// `fc`: a 1×1 ConvBNReLU (the FC layer over channels).
    pub fc: ConvBn,
}

/// A pure-MLP RepMLP classifier.
#[derive(Debug)]
pub struct RepMlpPure {
    name: String,
    config: RepMlpPureConfig,
    macs: u64,
    /// `stem`: 3×3 ConvBNReLU.
    pub stem: ConvBn,
    /// `stages.{i}.{j}`.
    pub stages: Vec<Vec<PureUnit>>,
    /// Dropout before the classifier (no parameters).
    pub drop: Dropout,
    /// `linear`: the classifier.
    pub linear: Linear,
}

impl RepMlpPure {
    /// Builds `config` under the registry name `name`, initialised as PyTorch from `seed`.
    pub fn new(
        name: &str,
        config: RepMlpPureConfig,
        seed: u64,
    ) -> std::result::Result<RepMlpPure, ModelError> {
        let c = &config;
        let err = |msg: String| ModelError::InvalidConfig {
            model: name.to_string(),
            msg,
        };
        if c.channels.is_empty()
            || c.channels.contains(&0)
            || [c.in_chans, c.img_size, c.num_classes, c.units_per_stage].contains(&0)
        {
            return Err(err(format!(
                "need at least one stage and every size > 0, got {}",
                c.to_json()
            )));
        }
        let stages_n = c.channels.len();
        if !c.img_size.is_multiple_of(1 << (stages_n - 1)) {
            return Err(err(format!(
                "img_size {} must be divisible by 2^(stages − 1) = {}",
                c.img_size,
                1 << (stages_n - 1)
            )));
        }
        let drop = Dropout::new(c.drop_rate).map_err(|e| err(e.to_string()))?;
        let mut rng = Rng::new(seed);
        let mut macs = 0u64;
        let stem_spec = ConvSpec::same(c.in_chans, c.channels[0], 3);
        macs += stem_spec.macs(c.img_size, c.img_size);
        let stem = ConvBn::new(stem_spec, true, c.deploy, rng.next_u64())?;
        let mut stages = Vec::with_capacity(stages_n);
        for (i, &ch) in c.channels.iter().enumerate() {
            let hw = c.img_size >> i;
            let next = *c.channels.get(i + 1).unwrap_or(&ch);
            let mut units = Vec::with_capacity(c.units_per_stage);
            for j in 0..c.units_per_stage {
                let cfg = RepMlpBlockConfig {
                    in_channels: ch,
                    out_channels: ch,
                    input_size: (hw, hw),
                    partition: c.partition,
                    reparam_conv_k: c.reparam_conv_k.clone(),
                    fc1_fc2_reduction: c.fc1_fc2_reduction,
                    fc3_groups: c.fc3_groups,
                    deploy: c.deploy,
                };
                cfg.validate(name)?;
                macs += cfg.macs();
                let repmlp = RepMlpBlock::new(cfg, rng.next_u64())?;
                let out = if j + 1 == c.units_per_stage { next } else { ch };
                let spec = ConvSpec::same(ch, out, 1);
                macs += spec.macs(hw, hw);
                let fc = ConvBn::new(spec, true, c.deploy, rng.next_u64())?;
                units.push(PureUnit { repmlp, fc });
            }
            stages.push(units);
        }
        let last = *c.channels.last().unwrap_or(&0);
        macs += (last * c.num_classes) as u64;
        let linear = Linear::new(last, c.num_classes, true, rng.next_u64())?;
        Ok(RepMlpPure {
            name: name.to_string(),
            config,
            macs,
            stem,
            stages,
            drop,
            linear,
        })
    }

    /// Builds a registered configuration with the registry options applied.
    pub(crate) fn build(
        name: &str,
        config: RepMlpPureConfig,
        o: &crate::ModelOptions,
    ) -> std::result::Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(RepMlpPure::with_options(name, config, o)?))
    }

    /// [`RepMlpPure::new`] of a registered configuration with the registry options applied.
    pub(crate) fn with_options(
        name: &str,
        mut config: RepMlpPureConfig,
        o: &crate::ModelOptions,
    ) -> std::result::Result<RepMlpPure, ModelError> {
        let opts = Opts::check(name, o)?;
        config.img_size = opts.img_size.unwrap_or(config.img_size);
        config.in_chans = opts.in_chans.unwrap_or(config.in_chans);
        config.num_classes = opts.num_classes.unwrap_or(config.num_classes);
        config.drop_rate = opts.drop_rate;
        RepMlpPure::new(name, config, o.seed)
    }

    /// The deploy-form model computed once from this trained model (eval-mode BN statistics):
    /// the stem and every `fc` ConvBNReLU → conv with bias, every RepMLP block → its deploy
    /// form ([`RepMlpBlock::to_deploy`]); `linear` copied. `self` is untouched. An
    /// already-deployed model is an `InvalidConfig` error naming it.
    pub fn to_deploy(&self) -> std::result::Result<RepMlpPure, ModelError> {
        if self.config.deploy {
            return Err(already_deployed(&self.name));
        }
        let mut saved = 0u64;
        let mut stages = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let mut units = Vec::with_capacity(stage.len());
            for u in stage {
                let r = &u.repmlp.config;
                saved += r.macs() - r.clone().deploy().macs();
                units.push(PureUnit {
                    repmlp: u.repmlp.to_deploy()?,
                    fc: u.fc.to_deploy()?,
                });
            }
            stages.push(units);
        }
        let mut config = self.config.clone();
        config.deploy = true;
        Ok(RepMlpPure {
            name: self.name.clone(),
            config,
            macs: self.macs - saved,
            stem: self.stem.to_deploy()?,
            stages,
            drop: self.drop,
            linear: copy_linear(&self.linear)?,
        })
    }

    /// The configuration.
    pub fn pure_config(&self) -> &RepMlpPureConfig {
        &self.config
    }

    /// Multiply-accumulates per image of every conv and FC in this form (train or deploy);
    /// BN, pooling, ReLU and additions are not counted.
    pub fn macs(&self) -> u64 {
        self.macs
    }

    /// `Ok` if `shape` is an image batch this model takes, else [`ModelError::BadInput`].
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), ModelError> {
        check_image(
            &self.name,
            shape,
            self.input_shape(),
            "the RepMLP blocks' FC weights",
        )
    }
}

impl Module for RepMlpPure {
    /// `x [B, in_chans, img, img]` → logits `[B, num_classes]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        self.check_input(&x.shape()).map_err(into_autograd)?;
        let pool = PoolParams {
            kernel: (2, 2),
            stride: (2, 2),
            padding: (0, 0),
        };
        let mut y = self.stem.forward(x, ctx)?;
        for (i, stage) in self.stages.iter().enumerate() {
            if i > 0 {
                y = max_pool2d(&y, pool)?;
            }
            for u in stage {
                y = u.fc.forward(&u.repmlp.forward(&y, ctx)?.relu(), ctx)?;
            }
        }
        let y = adaptive_avg_pool2d(&y, (1, 1))?;
        let n = y.shape()[0];
        let y = y.reshape(&[n, y.shape()[1]])?;
        self.linear.forward(&self.drop.forward(&y, ctx)?, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.stem.visit(&join(prefix, "stem"), v);
        for (i, stage) in self.stages.iter().enumerate() {
            for (j, u) in stage.iter().enumerate() {
                let p = join(prefix, &format!("stages.{i}.{j}"));
                u.repmlp.visit(&join(&p, "repmlp"), v);
                u.fc.visit(&join(&p, "fc"), v);
            }
        }
        self.linear.visit(&join(prefix, "linear"), v);
    }
}

impl Model for RepMlpPure {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> Value {
        self.config.to_json()
    }

    fn input_shape(&self) -> [usize; 3] {
        let c = &self.config;
        [c.in_chans, c.img_size, c.img_size]
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn is_deploy(&self) -> bool {
        self.config.deploy
    }
}
