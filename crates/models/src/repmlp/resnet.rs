//! RepMLP-ResNet (paper v1; the authors' `repmlp_resnet.py` and `repmlp_blocks.py`).
//!
//! A ResNet-50 layout (`stage0` = 7×7/2 ConvBNReLU + 3×3/2 max pool; `stage1..4` of bottleneck
//! blocks with channels `[256, 512, 1024, 2048]`; global average pool; `linear`) in which every
//! stride-1 block of stages 2 and 3 (feature maps at 1/8 and 1/16 of the input) is a RepMLP
//! block:
//!
//! - **Light** (`light_conv1` 1×1 ConvBNReLU → channels/8, `light_repmlp`, ReLU, `light_conv3`
//!   1×1 ConvBN → channels, + shortcut, ReLU);
//! - **Bottleneck** (`btnk_conv1` 1×1 ConvBNReLU → channels/4, `btnk_conv2` 3×3 ConvBNReLU →
//!   mid/r, `btnk_repmlp`, ReLU, `btnk_conv4` 3×3 ConvBNReLU → mid, `btnk_conv5` 1×1 ConvBN,
//!   + shortcut, ReLU; r = 2 in stage 2 and 4 in stage 3). There is no `btnk_conv3`.
//!
//! Every other block is the plain ResNet bottleneck (`shortcut`, `conv1`, `conv2`, `conv3`).
//! The deploy form has each ConvBN as a conv with bias and each RepMLP block in its deploy form;
//! the stem conv and the ResNet convs stay convolutions (only the RepMLP blocks are FC-only).

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

/// Which block replaces the stride-1 blocks of stages 2 and 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetBlockKind {
    /// No replacement: the original ResNet.
    Base,
    /// `RepMLPLightBlock`.
    Light,
    /// `RepMLPBottleneckBlock`.
    Bottleneck,
}

impl ResNetBlockKind {
    fn as_str(self) -> &'static str {
        match self {
            ResNetBlockKind::Base => "base",
            ResNetBlockKind::Light => "light",
            ResNetBlockKind::Bottleneck => "bottleneck",
        }
    }
}

/// Configuration of a RepMLP-ResNet (the arguments of the authors' `RepMLPResNet`, plus the
/// widths they hard-code, so that reduced versions can be built for tests).
#[derive(Clone, Debug, PartialEq)]
pub struct RepMlpResNetConfig {
    /// The RepMLP block type.
    pub block: ResNetBlockKind,
    /// Blocks per stage (`[3, 4, 6, 3]` for ResNet-50).
    pub layers: [usize; 4],
    /// Output channels of the stem (64).
    pub stem_channels: usize,
    /// Output channels of stages 1–4 (`[256, 512, 1024, 2048]`).
    pub channels: [usize; 4],
    /// Square input side; a multiple of 32.
    pub img_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Classes.
    pub num_classes: usize,
    /// RepMLP partition `(h, w)`.
    pub partition: (usize, usize),
    /// Local Perceptron kernels.
    pub reparam_conv_k: Vec<usize>,
    /// Global Perceptron reduction.
    pub fc1_fc2_reduction: usize,
    /// FC3 groups.
    pub fc3_groups: usize,
    /// Bottleneck block's channel reduction `r` in stages 2 and 3.
    pub bottleneck_r: (usize, usize),
    /// Dropout before `linear` (0 in the paper).
    pub drop_rate: f32,
    /// Build the deploy form.
    pub deploy: bool,
}

impl RepMlpResNetConfig {
    /// RepMLP-Res50 at 224 with `block`: h = w = 7, k = (1, 3, 5), reduction 1, groups 4
    /// (Light) or 8 (Bottleneck), r = (2, 4).
    pub fn res50_224(block: ResNetBlockKind) -> RepMlpResNetConfig {
        RepMlpResNetConfig {
            block,
            layers: [3, 4, 6, 3],
            stem_channels: 64,
            channels: [256, 512, 1024, 2048],
            img_size: 224,
            in_chans: 3,
            num_classes: 1000,
            partition: (7, 7),
            reparam_conv_k: vec![1, 3, 5],
            fc1_fc2_reduction: 1,
            fc3_groups: if block == ResNetBlockKind::Bottleneck {
                8
            } else {
                4
            },
            bottleneck_r: (2, 4),
            drop_rate: 0.0,
            deploy: false,
        }
    }

    /// The configuration as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "arch": "repmlp_resnet",
            "block": self.block.as_str(),
            "layers": self.layers,
            "stem_channels": self.stem_channels,
            "channels": self.channels,
            "img_size": self.img_size,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "partition": [self.partition.0, self.partition.1],
            "reparam_conv_k": self.reparam_conv_k,
            "fc1_fc2_reduction": self.fc1_fc2_reduction,
            "fc3_groups": self.fc3_groups,
            "bottleneck_r": [self.bottleneck_r.0, self.bottleneck_r.1],
            "drop_rate": self.drop_rate,
            "deploy": self.deploy,
        })
    }

    fn apply(&mut self, o: &Opts) {
        self.img_size = o.img_size.unwrap_or(self.img_size);
        self.in_chans = o.in_chans.unwrap_or(self.in_chans);
        self.num_classes = o.num_classes.unwrap_or(self.num_classes);
        self.drop_rate = o.drop_rate;
    }
}

/// The original ResNet bottleneck (`BaseBlock`).
#[derive(Debug)]
pub struct BaseBlock {
    /// 1×1 (strided) ConvBN when the shape changes, else identity.
    pub shortcut: Option<ConvBn>,
    /// 1×1 ConvBNReLU → mid.
    pub conv1: ConvBn,
    /// 3×3 (strided) ConvBNReLU.
    pub conv2: ConvBn,
    /// 1×1 ConvBN → out.
    pub conv3: ConvBn,
}

/// `RepMLPLightBlock`.
#[derive(Debug)]
pub struct LightBlock {
    /// 1×1 ConvBN when in ≠ out, else identity.
    pub shortcut: Option<ConvBn>,
    /// 1×1 ConvBNReLU → channels/8.
    pub light_conv1: ConvBn,
    /// RepMLP(mid → mid).
    pub light_repmlp: RepMlpBlock,
    /// 1×1 ConvBN → out.
    pub light_conv3: ConvBn,
}

/// `RepMLPBottleneckBlock`.
#[derive(Debug)]
pub struct BottleneckBlock {
    /// 1×1 ConvBN when in ≠ out, else identity.
    pub shortcut: Option<ConvBn>,
    /// 1×1 ConvBNReLU → mid.
    pub btnk_conv1: ConvBn,
    /// 3×3 ConvBNReLU → mid/r.
    pub btnk_conv2: ConvBn,
    /// RepMLP(mid/r → mid/r).
    pub btnk_repmlp: RepMlpBlock,
    /// 3×3 ConvBNReLU → mid.
    pub btnk_conv4: ConvBn,
    /// 1×1 ConvBN → out.
    pub btnk_conv5: ConvBn,
}

/// One block of a stage.
#[derive(Debug)]
pub enum ResBlock {
    /// Plain bottleneck.
    Base(Box<BaseBlock>),
    /// Light RepMLP block.
    Light(Box<LightBlock>),
    /// Bottleneck RepMLP block.
    Bottleneck(Box<BottleneckBlock>),
}

fn deploy_opt(m: &Option<ConvBn>) -> std::result::Result<Option<ConvBn>, ModelError> {
    m.as_ref().map(ConvBn::to_deploy).transpose()
}

impl ResBlock {
    /// The deploy form: every ConvBN folded into a conv with bias, the RepMLP block in its
    /// deploy form ([`RepMlpBlock::to_deploy`]).
    pub fn to_deploy(&self) -> std::result::Result<ResBlock, ModelError> {
        Ok(match self {
            ResBlock::Base(b) => ResBlock::Base(Box::new(BaseBlock {
                shortcut: deploy_opt(&b.shortcut)?,
                conv1: b.conv1.to_deploy()?,
                conv2: b.conv2.to_deploy()?,
                conv3: b.conv3.to_deploy()?,
            })),
            ResBlock::Light(b) => ResBlock::Light(Box::new(LightBlock {
                shortcut: deploy_opt(&b.shortcut)?,
                light_conv1: b.light_conv1.to_deploy()?,
                light_repmlp: b.light_repmlp.to_deploy()?,
                light_conv3: b.light_conv3.to_deploy()?,
            })),
            ResBlock::Bottleneck(b) => ResBlock::Bottleneck(Box::new(BottleneckBlock {
                shortcut: deploy_opt(&b.shortcut)?,
                btnk_conv1: b.btnk_conv1.to_deploy()?,
                btnk_conv2: b.btnk_conv2.to_deploy()?,
                btnk_repmlp: b.btnk_repmlp.to_deploy()?,
                btnk_conv4: b.btnk_conv4.to_deploy()?,
                btnk_conv5: b.btnk_conv5.to_deploy()?,
            })),
        })
    }

    /// The RepMLP block of this block, if it has one.
    fn repmlp(&self) -> Option<&RepMlpBlock> {
        match self {
            ResBlock::Base(_) => None,
            ResBlock::Light(b) => Some(&b.light_repmlp),
            ResBlock::Bottleneck(b) => Some(&b.btnk_repmlp),
        }
    }
}

fn residual(body: Var, shortcut: &Option<ConvBn>, x: &Var, ctx: &Ctx) -> Result<Var> {
    let s = match shortcut {
        Some(sc) => sc.forward(x, ctx)?,
        None => x.clone(),
    };
    Ok(body.add(&s)?.relu())
}

fn visit_opt(m: &Option<ConvBn>, prefix: &str, name: &str, v: &mut dyn Visitor) {
    if let Some(m) = m {
        m.visit(&join(prefix, name), v);
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        match self {
            ResBlock::Base(b) => {
                let y = b.conv1.forward(x, ctx)?;
                let y = b.conv3.forward(&b.conv2.forward(&y, ctx)?, ctx)?;
                residual(y, &b.shortcut, x, ctx)
            }
            ResBlock::Light(b) => {
                let y = b.light_conv1.forward(x, ctx)?;
                let y = b.light_repmlp.forward(&y, ctx)?.relu();
                residual(b.light_conv3.forward(&y, ctx)?, &b.shortcut, x, ctx)
            }
            ResBlock::Bottleneck(b) => {
                let y = b.btnk_conv2.forward(&b.btnk_conv1.forward(x, ctx)?, ctx)?;
                let y = b.btnk_repmlp.forward(&y, ctx)?.relu();
                let y = b.btnk_conv5.forward(&b.btnk_conv4.forward(&y, ctx)?, ctx)?;
                residual(y, &b.shortcut, x, ctx)
            }
        }
    }

    fn visit(&self, p: &str, v: &mut dyn Visitor) {
        match self {
            ResBlock::Base(b) => {
                visit_opt(&b.shortcut, p, "shortcut", v);
                b.conv1.visit(&join(p, "conv1"), v);
                b.conv2.visit(&join(p, "conv2"), v);
                b.conv3.visit(&join(p, "conv3"), v);
            }
            ResBlock::Light(b) => {
                visit_opt(&b.shortcut, p, "shortcut", v);
                b.light_conv1.visit(&join(p, "light_conv1"), v);
                b.light_repmlp.visit(&join(p, "light_repmlp"), v);
                b.light_conv3.visit(&join(p, "light_conv3"), v);
            }
            ResBlock::Bottleneck(b) => {
                visit_opt(&b.shortcut, p, "shortcut", v);
                b.btnk_conv1.visit(&join(p, "btnk_conv1"), v);
                b.btnk_conv2.visit(&join(p, "btnk_conv2"), v);
                b.btnk_repmlp.visit(&join(p, "btnk_repmlp"), v);
                b.btnk_conv4.visit(&join(p, "btnk_conv4"), v);
                b.btnk_conv5.visit(&join(p, "btnk_conv5"), v);
            }
        }
    }
}

/// Builds layers while counting their multiply-accumulates.
struct Builder {
    rng: Rng,
    deploy: bool,
    macs: u64,
}

impl Builder {
    /// A ConvBN(ReLU) applied to an `hw×hw` input.
    fn conv(&mut self, spec: ConvSpec, relu: bool, hw: usize) -> Result<ConvBn> {
        self.macs += spec.macs(hw, hw);
        ConvBn::new(spec, relu, self.deploy, self.rng.next_u64())
    }

    fn repmlp(
        &mut self,
        model: &str,
        cfg: RepMlpBlockConfig,
    ) -> std::result::Result<RepMlpBlock, ModelError> {
        cfg.validate(model)?;
        self.macs += cfg.macs();
        RepMlpBlock::new(cfg, self.rng.next_u64())
    }
}

fn conv(i: usize, o: usize, k: usize, stride: usize) -> ConvSpec {
    ConvSpec {
        in_channels: i,
        out_channels: o,
        kernel: k,
        stride,
        padding: k / 2,
    }
}

/// A RepMLP-ResNet classifier.
#[derive(Debug)]
pub struct RepMlpResNet {
    name: String,
    config: RepMlpResNetConfig,
    macs: u64,
    /// `stage0.0`: the 7×7/2 stem ConvBNReLU (followed by a 3×3/2 max pool, `stage0.1`).
    pub stem: ConvBn,
    /// `stage1..stage4`.
    pub stages: [Vec<ResBlock>; 4],
    /// Dropout before the classifier (`drop_rate`, 0 in the paper; no parameters).
    pub drop: Dropout,
    /// `linear`: the classifier.
    pub linear: Linear,
}

impl RepMlpResNet {
    /// Builds `config` under the registry name `name`, initialised as PyTorch from `seed`.
    pub fn new(
        name: &str,
        config: RepMlpResNetConfig,
        seed: u64,
    ) -> std::result::Result<RepMlpResNet, ModelError> {
        let c = &config;
        let err = |msg: String| ModelError::InvalidConfig {
            model: name.to_string(),
            msg,
        };
        if c.layers.contains(&0)
            || c.channels.contains(&0)
            || [c.stem_channels, c.in_chans, c.num_classes, c.img_size].contains(&0)
        {
            return Err(err(format!(
                "layers, channels, stem_channels, in_chans, num_classes and img_size must be > 0, \
                 got {}",
                c.to_json()
            )));
        }
        if !c.img_size.is_multiple_of(32) {
            return Err(err(format!(
                "img_size must be a multiple of 32 (the stages run at 1/4 … 1/32 of it), got {}",
                c.img_size
            )));
        }
        let drop = Dropout::new(c.drop_rate).map_err(|e| err(e.to_string()))?;
        let mut b = Builder {
            rng: Rng::new(seed),
            deploy: c.deploy,
            macs: 0,
        };
        let stem = b.conv(conv(c.in_chans, c.stem_channels, 7, 2), true, c.img_size)?;
        let mut in_ch = c.stem_channels;
        let mut stages: [Vec<ResBlock>; 4] = Default::default();
        for (s, stage) in stages.iter_mut().enumerate() {
            let ratio = 4 << s; // total downsampling of this stage's output
            let first_stride = if s == 0 { 1 } else { 2 };
            let out = c.channels[s];
            let hw = c.img_size / ratio;
            for i in 0..c.layers[s] {
                let stride = if i == 0 { first_stride } else { 1 };
                let in_hw = hw * stride;
                let use_mlp = c.block != ResNetBlockKind::Base && stride == 1 && (s == 1 || s == 2);
                let shortcut = if stride != 1 || in_ch != out {
                    Some(b.conv(conv(in_ch, out, 1, stride), false, in_hw)?)
                } else {
                    None
                };
                let rep = |ch: usize| RepMlpBlockConfig {
                    in_channels: ch,
                    out_channels: ch,
                    input_size: (hw, hw),
                    partition: c.partition,
                    reparam_conv_k: c.reparam_conv_k.clone(),
                    fc1_fc2_reduction: c.fc1_fc2_reduction,
                    fc3_groups: c.fc3_groups,
                    deploy: c.deploy,
                };
                let block = if !use_mlp {
                    let mid = out / 4;
                    ResBlock::Base(Box::new(BaseBlock {
                        shortcut,
                        conv1: b.conv(conv(in_ch, mid, 1, 1), true, in_hw)?,
                        conv2: b.conv(conv(mid, mid, 3, stride), true, in_hw)?,
                        conv3: b.conv(conv(mid, out, 1, 1), false, hw)?,
                    }))
                } else if c.block == ResNetBlockKind::Light {
                    let mid = out / 8;
                    ResBlock::Light(Box::new(LightBlock {
                        shortcut,
                        light_conv1: b.conv(conv(in_ch, mid, 1, 1), true, hw)?,
                        light_repmlp: b.repmlp(name, rep(mid))?,
                        light_conv3: b.conv(conv(mid, out, 1, 1), false, hw)?,
                    }))
                } else {
                    let mid = out / 4;
                    let r = if s == 1 {
                        c.bottleneck_r.0
                    } else {
                        c.bottleneck_r.1
                    };
                    if r == 0 || mid / r == 0 {
                        return Err(err(format!(
                            "bottleneck_r {r} leaves no RepMLP channels (mid {mid})"
                        )));
                    }
                    let rc = mid / r;
                    ResBlock::Bottleneck(Box::new(BottleneckBlock {
                        shortcut,
                        btnk_conv1: b.conv(conv(in_ch, mid, 1, 1), true, hw)?,
                        btnk_conv2: b.conv(conv(mid, rc, 3, 1), true, hw)?,
                        btnk_repmlp: b.repmlp(name, rep(rc))?,
                        btnk_conv4: b.conv(conv(rc, mid, 3, 1), true, hw)?,
                        btnk_conv5: b.conv(conv(mid, out, 1, 1), false, hw)?,
                    }))
                };
                stage.push(block);
                in_ch = out;
            }
        }
        b.macs += (in_ch * c.num_classes) as u64;
        let linear = Linear::new(in_ch, c.num_classes, true, b.rng.next_u64())?;
        Ok(RepMlpResNet {
            name: name.to_string(),
            macs: b.macs,
            config,
            stem,
            stages,
            drop,
            linear,
        })
    }

    /// Builds a registered configuration with the registry options applied.
    pub(crate) fn build(
        name: &str,
        config: RepMlpResNetConfig,
        o: &crate::ModelOptions,
    ) -> std::result::Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(RepMlpResNet::with_options(name, config, o)?))
    }

    /// [`RepMlpResNet::new`] of a registered configuration with the registry options applied.
    pub(crate) fn with_options(
        name: &str,
        mut config: RepMlpResNetConfig,
        o: &crate::ModelOptions,
    ) -> std::result::Result<RepMlpResNet, ModelError> {
        let opts = Opts::check(name, o)?;
        config.apply(&opts);
        RepMlpResNet::new(name, config, o.seed)
    }

    /// The deploy-form model computed once from this trained model (eval-mode BN statistics):
    /// every ConvBN → conv with bias, every RepMLP block → its deploy form
    /// ([`RepMlpBlock::to_deploy`]); `linear` copied. `self` is untouched. An already-deployed
    /// model is an `InvalidConfig` error naming it.
    pub fn to_deploy(&self) -> std::result::Result<RepMlpResNet, ModelError> {
        if self.config.deploy {
            return Err(already_deployed(&self.name));
        }
        let mut stages: [Vec<ResBlock>; 4] = Default::default();
        let mut saved = 0u64;
        for (dst, src) in stages.iter_mut().zip(&self.stages) {
            for block in src {
                if let Some(r) = block.repmlp() {
                    saved += r.config.macs() - r.config.clone().deploy().macs();
                }
                dst.push(block.to_deploy()?);
            }
        }
        let mut config = self.config.clone();
        config.deploy = true;
        Ok(RepMlpResNet {
            name: self.name.clone(),
            macs: self.macs - saved,
            config,
            stem: self.stem.to_deploy()?,
            stages,
            drop: self.drop,
            linear: copy_linear(&self.linear)?,
        })
    }

    /// The configuration.
    pub fn resnet_config(&self) -> &RepMlpResNetConfig {
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

impl Module for RepMlpResNet {
    /// `x [B, in_chans, img, img]` → logits `[B, num_classes]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        self.check_input(&x.shape()).map_err(into_autograd)?;
        let pool = PoolParams {
            kernel: (3, 3),
            stride: (2, 2),
            padding: (1, 1),
        };
        let mut y = max_pool2d(&self.stem.forward(x, ctx)?, pool)?;
        for stage in &self.stages {
            for block in stage {
                y = block.forward(&y, ctx)?;
            }
        }
        let y = adaptive_avg_pool2d(&y, (1, 1))?;
        let n = y.shape()[0];
        let y = y.reshape(&[n, self.config.channels[3]])?;
        self.linear.forward(&self.drop.forward(&y, ctx)?, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.stem.visit(&join(prefix, "stage0.0"), v);
        for (s, stage) in self.stages.iter().enumerate() {
            let sp = join(prefix, &format!("stage{}", s + 1));
            for (i, block) in stage.iter().enumerate() {
                block.visit(&join(&sp, &i.to_string()), v);
            }
        }
        self.linear.visit(&join(prefix, "linear"), v);
    }
}

impl Model for RepMlpResNet {
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
