//! RepMLPNet (Ding et al., arXiv 2112.11081), as the authors' current `repmlpnet.py`
//! (github DingXiaoH/RepMLP) builds it, with the authors' state_dict names.
//!
//! `conv_embedding` (conv-BN-ReLU, kernel = stride = patch 4) → 4 stages of
//! [`RepMlpNetUnit`]s (`stages.{i}.{j}`) separated by `embeds.{i}` (conv-BN-ReLU, kernel =
//! stride = 2) → `head_norm` (BN) → global average pool → `head` (Linear).
//!
//! Two structures share one code path ([`RepMlpBlock`] holds a [`BlockForm`]): the training
//! structure (`fc3` + `fc3_bn` + local conv-BN branches `repconv{k}`) and the deploy structure
//! the authors' `locality_injection()` produces (`fc3` with a bias, nothing else). Build the
//! deploy structure with `deploy: true` in the configuration and load converted weights into
//! it, or convert a trained model with [`RepMlpNet::to_deploy`] (the authors'
//! `locality_injection()`, on `allmlp-reparam`; see [`crate::deploy`]).
//!
//! ```
//! use allmlp_models::repmlpnet::{RepMlpNet, RepMlpNetConfig};
//! use allmlp_models::layers::{infer, num_parameters};
//! use allmlp_models::layers::autograd::tensor_core::Tensor;
//! use allmlp_models::Model;
//! // A small RepMLPNet for 32×32 images: feature maps 8, 4, 2, 1.
//! let cfg = RepMlpNetConfig {
//!     img_size: 32,
//!     num_classes: 10,
//!     channels: vec![8, 16, 16, 32],
//!     hs: vec![4, 4, 2, 1],
//!     ws: vec![4, 4, 2, 1],
//!     num_blocks: vec![1, 1, 1, 1],
//!     sharesets: vec![1, 2, 4, 8],
//!     ..RepMlpNetConfig::default()
//! };
//! let net = RepMlpNet::new(&cfg)?;
//! assert_eq!(num_parameters(&net), cfg.num_parameters()?);
//! let y = infer(&net, &Tensor::randn(&[2, 3, 32, 32], 0.0, 1.0, 0)?)?;
//! assert_eq!(y.shape(), [2, 10]);
//! // A 28×28 input does not fit the partitions: an error naming the expected size.
//! let e = net.check_input(&[2, 3, 28, 28]).unwrap_err().to_string();
//! assert!(e.contains("[N, 3, 32, 32]"), "{e}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod block;
mod conv_bn;
mod unit;

pub use block::{BlockForm, GlobalPerceptron, LocalBranch, RepMlpBlock, RepMlpBlockConfig};
pub use conv_bn::ConvBn;
pub use unit::{FfnBlock, RepMlpNetUnit};

use allmlp_layers::autograd::ops::{Conv2dParams, adaptive_avg_pool2d};
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::{AutogradError, Var};
use allmlp_layers::{BatchNorm2d, Ctx, Gelu, Linear, Module, Visitor, join, visit_list};
use serde_json::{Value, json};

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::registry::{Entry, EvalTransform, Family, ModelOptions};

/// Everything that defines a RepMLPNet; the named models fill it ([`repmlpnet_t224`] …).
/// The per-stage vectors all have one entry per stage.
#[derive(Clone, Debug, PartialEq)]
pub struct RepMlpNetConfig {
    /// The model's name (registry name for the named configs).
    pub name: String,
    /// Input channels.
    pub in_chans: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Square input side the model takes.
    pub img_size: usize,
    /// `conv_embedding` kernel and stride (authors: 4).
    pub patch_size: usize,
    /// Channels per stage.
    pub channels: Vec<usize>,
    /// Partition height per stage (FC3's weights fix it).
    pub hs: Vec<usize>,
    /// Partition width per stage.
    pub ws: Vec<usize>,
    /// Units per stage.
    pub num_blocks: Vec<usize>,
    /// Sharesets `S` per stage (`channels % S = 0`).
    pub sharesets: Vec<usize>,
    /// Local-branch kernels (authors: `(1, 3)`).
    pub reparam_conv_k: Vec<usize>,
    /// Global Perceptron reduction (authors: 4).
    pub globalperceptron_reduce: usize,
    /// FFN hidden width factor (authors: 4).
    pub ffn_expand: usize,
    /// Tanh-approximate GELU in the FFN (authors: exact erf, `false`).
    pub gelu_tanh: bool,
    /// Build the deploy (locality-injected) structure.
    pub deploy: bool,
    /// Seed of the parameter initialisation.
    pub seed: u64,
}

impl Default for RepMlpNetConfig {
    /// RepMLPNet-T224's configuration under the name `repmlpnet`.
    fn default() -> Self {
        RepMlpNetConfig {
            name: "repmlpnet".into(),
            in_chans: 3,
            num_classes: 1000,
            img_size: 224,
            patch_size: 4,
            channels: vec![64, 128, 256, 512],
            hs: vec![56, 28, 14, 7],
            ws: vec![56, 28, 14, 7],
            num_blocks: vec![2, 2, 6, 2],
            sharesets: vec![1, 4, 16, 128],
            reparam_conv_k: vec![1, 3],
            globalperceptron_reduce: 4,
            ffn_expand: 4,
            gelu_tanh: false,
            deploy: false,
            seed: 0,
        }
    }
}

fn named(
    name: &str,
    img: usize,
    channels: [usize; 4],
    blocks: [usize; 4],
    sharesets: [usize; 4],
) -> RepMlpNetConfig {
    let f = img / 4;
    let sides = vec![f, f / 2, f / 4, f / 8];
    RepMlpNetConfig {
        name: name.into(),
        img_size: img,
        channels: channels.to_vec(),
        hs: sides.clone(),
        ws: sides,
        num_blocks: blocks.to_vec(),
        sharesets: sharesets.to_vec(),
        ..RepMlpNetConfig::default()
    }
}

/// RepMLPNet-T224 (38.3M parameters).
pub fn repmlpnet_t224() -> RepMlpNetConfig {
    named(
        "repmlpnet_t224",
        224,
        [64, 128, 256, 512],
        [2, 2, 6, 2],
        [1, 4, 16, 128],
    )
}

/// RepMLPNet-B224 (68.2M parameters).
pub fn repmlpnet_b224() -> RepMlpNetConfig {
    named(
        "repmlpnet_b224",
        224,
        [96, 192, 384, 768],
        [2, 2, 12, 2],
        [1, 4, 32, 128],
    )
}

/// RepMLPNet-T256 (58.7M parameters).
pub fn repmlpnet_t256() -> RepMlpNetConfig {
    named(
        "repmlpnet_t256",
        256,
        [64, 128, 256, 512],
        [2, 2, 6, 2],
        [1, 4, 16, 128],
    )
}

/// RepMLPNet-B256 (96.4M parameters; the paper says 96.5M).
pub fn repmlpnet_b256() -> RepMlpNetConfig {
    named(
        "repmlpnet_b256",
        256,
        [96, 192, 384, 768],
        [2, 2, 12, 2],
        [1, 4, 32, 128],
    )
}

/// RepMLPNet-D256 (86.9M parameters).
pub fn repmlpnet_d256() -> RepMlpNetConfig {
    named(
        "repmlpnet_d256",
        256,
        [80, 160, 320, 640],
        [2, 2, 18, 2],
        [1, 4, 16, 128],
    )
}

/// RepMLPNet-L256 (117.6M parameters; the paper says 117.7M).
pub fn repmlpnet_l256() -> RepMlpNetConfig {
    named(
        "repmlpnet_l256",
        256,
        [96, 192, 384, 768],
        [2, 2, 18, 2],
        [1, 4, 32, 256],
    )
}

/// A registry name and the function that fills its configuration.
pub type NamedConfig = (&'static str, fn() -> RepMlpNetConfig);

/// The named configurations, in table order.
pub const NAMED: [NamedConfig; 6] = [
    ("repmlpnet_t224", repmlpnet_t224),
    ("repmlpnet_b224", repmlpnet_b224),
    ("repmlpnet_t256", repmlpnet_t256),
    ("repmlpnet_b256", repmlpnet_b256),
    ("repmlpnet_d256", repmlpnet_d256),
    ("repmlpnet_l256", repmlpnet_l256),
];

const DESCRIPTIONS: [&str; 6] = [
    "RepMLPNet-T224: channels 64-512, partitions 56/28/14/7, 38.3M params (training form)",
    "RepMLPNet-B224: channels 96-768, partitions 56/28/14/7, 68.2M params (training form)",
    "RepMLPNet-T256: channels 64-512, partitions 64/32/16/8, 58.7M params (training form)",
    "RepMLPNet-B256: channels 96-768, partitions 64/32/16/8, 96.4M params (training form)",
    "RepMLPNet-D256: channels 80-640, partitions 64/32/16/8, 86.9M params (training form)",
    "RepMLPNet-L256: channels 96-768, partitions 64/32/16/8, 117.6M params (training form)",
];

/// The registry entries of the family.
pub fn entries() -> Vec<Entry> {
    macro_rules! entry {
        ($i:expr, $f:ident) => {
            Entry {
                name: NAMED[$i].0,
                family: Family::RepMlpNet,
                description: DESCRIPTIONS[$i],
                eval_transform: Some(EvalTransform::IMAGENET),
                build: |o: &ModelOptions| {
                    let net = RepMlpNet::new(&$f().with_options(o)?)?;
                    Ok(Box::new(net) as Box<dyn Model>)
                },
            }
        };
    }
    vec![
        entry!(0, repmlpnet_t224),
        entry!(1, repmlpnet_b224),
        entry!(2, repmlpnet_t256),
        entry!(3, repmlpnet_b256),
        entry!(4, repmlpnet_d256),
        entry!(5, repmlpnet_l256),
    ]
}

impl crate::deploy::Deployable for RepMlpNet {
    fn deploy(&self) -> Result<Box<dyn Model>> {
        Ok(Box::new(self.to_deploy()?))
    }
}

/// Every named RepMLPNet, built in either form (train → deploy conversion).
pub(crate) fn deploy_entries() -> Vec<crate::deploy::DeployEntry> {
    macro_rules! entry {
        ($i:expr, $f:ident) => {
            crate::deploy::DeployEntry {
                name: NAMED[$i].0,
                build: |o: &ModelOptions, deploy: bool| {
                    let cfg = RepMlpNetConfig {
                        deploy,
                        ..$f().with_options(o)?
                    };
                    Ok(Box::new(RepMlpNet::new(&cfg)?) as Box<dyn crate::deploy::Deployable>)
                },
            }
        };
    }
    vec![
        entry!(0, repmlpnet_t224),
        entry!(1, repmlpnet_b224),
        entry!(2, repmlpnet_t256),
        entry!(3, repmlpnet_b256),
        entry!(4, repmlpnet_d256),
        entry!(5, repmlpnet_l256),
    ]
}

/// SplitMix64 of `seed` and `i`: well-separated seeds for the layers.
fn sub_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RepMlpNetConfig {
    /// Applies registry overrides: `img_size`, `in_chans`, `num_classes`, `patch_size`,
    /// `gelu_tanh`, `seed`. RepMLPNet has no dropout or drop path (neither have the authors),
    /// so a non-zero `drop_rate` / `drop_path_rate` is an error rather than silently ignored,
    /// and so is `zero_init_residual` (an option of the isotropic nets).
    pub fn with_options(mut self, o: &ModelOptions) -> Result<RepMlpNetConfig> {
        if o.zero_init_residual {
            return Err(self.invalid(
                "zero_init_residual applies to the Mixer and ResMLP families only".into(),
            ));
        }
        if o.drop_rate != 0.0 || o.drop_path_rate != 0.0 {
            return Err(self.invalid(format!(
                "RepMLPNet has no dropout or drop path (the authors' code has none), got \
                 drop_rate {}, drop_path_rate {}",
                o.drop_rate, o.drop_path_rate
            )));
        }
        self.img_size = o.img_size.unwrap_or(self.img_size);
        self.in_chans = o.in_chans.unwrap_or(self.in_chans);
        self.num_classes = o.num_classes.unwrap_or(self.num_classes);
        self.patch_size = o.patch_size.unwrap_or(self.patch_size);
        self.gelu_tanh |= o.gelu_tanh;
        self.seed = o.seed;
        self.validate()?;
        Ok(self)
    }

    fn invalid(&self, msg: String) -> ModelError {
        ModelError::InvalidConfig {
            model: self.name.clone(),
            msg,
        }
    }

    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.channels.len()
    }

    /// The square feature-map side entering each stage (`conv_embedding` then each `embeds.{i}`
    /// are convolutions with kernel = stride, so each floors).
    pub fn feature_sizes(&self) -> Vec<usize> {
        let mut f = self.img_size / self.patch_size.max(1);
        let mut v = Vec::with_capacity(self.num_stages());
        for i in 0..self.num_stages() {
            if i > 0 {
                f /= 2;
            }
            v.push(f);
        }
        v
    }

    /// The block configuration of stage `i` (`i` < number of stages).
    fn block_config(&self, i: usize) -> RepMlpBlockConfig {
        RepMlpBlockConfig {
            channels: self.channels[i],
            h: self.hs[i],
            w: self.ws[i],
            sharesets: self.sharesets[i],
            reparam_conv_k: self.reparam_conv_k.clone(),
            globalperceptron_reduce: self.globalperceptron_reduce,
            deploy: self.deploy,
        }
    }

    /// Checks every value; [`ModelError::InvalidConfig`] says what is wrong.
    pub fn validate(&self) -> Result<()> {
        let n = self.num_stages();
        let lens = [
            self.hs.len(),
            self.ws.len(),
            self.num_blocks.len(),
            self.sharesets.len(),
        ];
        if n == 0 || lens.iter().any(|&l| l != n) {
            return Err(self.invalid(format!(
                "channels, hs, ws, num_blocks and sharesets need one entry per stage (at least \
                 one), got lengths {n}, {}, {}, {}, {}",
                lens[0], lens[1], lens[2], lens[3]
            )));
        }
        if self.in_chans == 0 || self.num_classes == 0 || self.ffn_expand == 0 {
            return Err(self.invalid(format!(
                "in_chans, num_classes and ffn_expand must be positive, got {}, {}, {}",
                self.in_chans, self.num_classes, self.ffn_expand
            )));
        }
        let p = self.patch_size;
        if p == 0 || self.feature_sizes().contains(&0) {
            return Err(self.invalid(format!(
                "img_size {} with patch_size {p} leaves no pixel for {n} stages (each stage \
                 after the first halves the map)",
                self.img_size
            )));
        }
        for (i, f) in self.feature_sizes().into_iter().enumerate() {
            self.block_config(i)
                .validate()
                .map_err(|m| self.invalid(format!("stage {}: {m}", i + 1)))?;
            if !f.is_multiple_of(self.hs[i]) || !f.is_multiple_of(self.ws[i]) {
                return Err(self.invalid(format!(
                    "stage {}: the {f}×{f} feature map (img_size {}, patch {p}) is not a \
                     whole number of {}×{} partitions",
                    i + 1,
                    self.img_size,
                    self.hs[i],
                    self.ws[i]
                )));
            }
        }
        Ok(())
    }

    /// Parameter count of the structure this configuration builds, computed from the
    /// configuration alone (no allocation; equal to `num_parameters` of the built model).
    /// An invalid configuration is an error, as in [`RepMlpNet::new`].
    pub fn num_parameters(&self) -> Result<usize> {
        self.validate()?;
        let c0 = self.channels[0];
        let mut total = self.in_chans * c0 * self.patch_size * self.patch_size + 2 * c0;
        for i in 0..self.num_stages() {
            let (c, s) = (self.channels[i], self.sharesets[i]);
            let hw = self.hs[i] * self.ws[i];
            let r = c / self.globalperceptron_reduce;
            let mut unit = 2 * c * r + r + c; // gp.fc1, gp.fc2 (with biases)
            unit += s * hw * hw; // fc3.weight
            if self.deploy {
                unit += s * hw; // fc3.bias
            } else {
                unit += 2 * s; // fc3_bn
                unit += self
                    .reparam_conv_k
                    .iter()
                    .map(|k| s * k * k + 2 * s)
                    .sum::<usize>();
            }
            let e = c * self.ffn_expand;
            unit += c * e + 2 * e + e * c + 2 * c; // ffn_fc1, ffn_fc2 (conv + bn)
            unit += 4 * c; // prebn1, prebn2
            total += self.num_blocks[i] * unit;
            if i + 1 < self.num_stages() {
                let c1 = self.channels[i + 1];
                total += c * c1 * 4 + 2 * c1;
            }
        }
        let cl = *self.channels.last().expect("validated: at least one stage");
        Ok(total + 2 * cl + cl * self.num_classes + self.num_classes)
    }

    /// The configuration as JSON (checkpoint metadata).
    pub fn to_json(&self) -> Value {
        json!({
            "arch": "repmlpnet",
            "name": self.name,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "channels": self.channels,
            "hs": self.hs,
            "ws": self.ws,
            "num_blocks": self.num_blocks,
            "sharesets": self.sharesets,
            "reparam_conv_k": self.reparam_conv_k,
            "globalperceptron_reduce": self.globalperceptron_reduce,
            "ffn_expand": self.ffn_expand,
            "gelu_tanh": self.gelu_tanh,
            "deploy": self.deploy,
        })
    }
}

/// A RepMLPNet classifier (training or deploy structure, as its configuration says).
#[derive(Debug)]
pub struct RepMlpNet {
    /// The configuration it was built from.
    pub config: RepMlpNetConfig,
    /// `conv_embedding`: conv-BN-ReLU, kernel = stride = patch.
    pub conv_embedding: ConvBn,
    /// `stages.{i}.{j}`.
    pub stages: Vec<Vec<RepMlpNetUnit>>,
    /// `embeds.{i}`: conv-BN-ReLU, kernel = stride = 2, between stages.
    pub embeds: Vec<ConvBn>,
    /// `head_norm`: BN before the pooling.
    pub head_norm: BatchNorm2d,
    /// `head`: the classifier.
    pub head: Linear,
}

impl RepMlpNet {
    /// Builds `cfg` with PyTorch's default initialisation (as the authors' code, which sets
    /// no custom init), seeded by `cfg.seed`.
    pub fn new(cfg: &RepMlpNetConfig) -> Result<RepMlpNet> {
        cfg.validate()?;
        let mut k = 0u64;
        let mut seed = || {
            k += 1;
            sub_seed(cfg.seed, k)
        };
        let (p, ch) = (cfg.patch_size, &cfg.channels);
        let act = if cfg.gelu_tanh {
            Gelu::tanh()
        } else {
            Gelu::new()
        };
        let patch = Conv2dParams::new((p, p), (0, 0), 1);
        let conv_embedding = ConvBn::new(cfg.in_chans, ch[0], p, patch, true, seed())?;
        let mut stages = Vec::with_capacity(cfg.num_stages());
        let mut embeds = Vec::new();
        for i in 0..cfg.num_stages() {
            let bc = cfg.block_config(i);
            let units = (0..cfg.num_blocks[i])
                .map(|_| RepMlpNetUnit::new(&bc, cfg.ffn_expand, act, seed()))
                .collect::<allmlp_layers::autograd::Result<Vec<_>>>()?;
            stages.push(units);
            if i + 1 < cfg.num_stages() {
                let down = Conv2dParams::new((2, 2), (0, 0), 1);
                embeds.push(ConvBn::new(ch[i], ch[i + 1], 2, down, true, seed())?);
            }
        }
        let cl = *ch.last().expect("validated: at least one stage");
        Ok(RepMlpNet {
            config: cfg.clone(),
            conv_embedding,
            stages,
            embeds,
            head_norm: BatchNorm2d::new(cl)?,
            head: Linear::new(cl, cfg.num_classes, true, seed())?,
        })
    }

    /// Ok when `shape` is an input this model takes (`[N, in_chans, img_size, img_size]`,
    /// N ≥ 1); otherwise [`ModelError::BadInput`] naming the expected size and why it is fixed.
    pub fn check_input(&self, shape: &[usize]) -> Result<()> {
        let c = &self.config;
        let (i, s) = (c.in_chans, c.img_size);
        if shape.len() == 4 && shape[0] > 0 && shape[1] == i && shape[2] == s && shape[3] == s {
            return Ok(());
        }
        let parts: Vec<String> = (0..c.num_stages())
            .map(|k| format!("{}×{}", c.hs[k], c.ws[k]))
            .collect();
        let maps: Vec<String> = c.feature_sizes().iter().map(|f| f.to_string()).collect();
        Err(ModelError::BadInput {
            model: c.name.clone(),
            expected: format!(
                "[N, {i}, {s}, {s}] (the FC3 weights fix the partitions, {} at the stages, \
                 which fit the feature maps {} of a {s}×{s} image)",
                parts.join(", "),
                maps.join(", ")
            ),
            got: fmt_shape(shape),
        })
    }

    /// The deploy (locality-injected) model computed once from this trained model, as the
    /// authors' `locality_injection()`: every block's `fc3_bn` and local branches folded into
    /// `fc3.weight` + `fc3.bias` ([`RepMlpBlock::to_deploy`]); everything else
    /// (`conv_embedding`, `embeds`, the FFN conv-BNs, `prebn1/2`, `head_norm`, `head`) copied
    /// unfused, as the authors leave it. `self` is untouched; an already-deployed model is an
    /// `InvalidConfig` error naming it.
    pub fn to_deploy(&self) -> Result<RepMlpNet> {
        if self.config.deploy {
            return Err(crate::deploy::already_deployed(&self.config.name));
        }
        let stages = self
            .stages
            .iter()
            .map(|units| units.iter().map(RepMlpNetUnit::to_deploy).collect())
            .collect::<Result<Vec<Vec<_>>>>()?;
        let embeds = self
            .embeds
            .iter()
            .map(ConvBn::copy)
            .collect::<Result<Vec<_>>>()?;
        Ok(RepMlpNet {
            config: RepMlpNetConfig {
                deploy: true,
                ..self.config.clone()
            },
            conv_embedding: self.conv_embedding.copy()?,
            stages,
            embeds,
            head_norm: crate::deploy::copy_bn2d(&self.head_norm)?,
            head: crate::deploy::copy_linear(&self.head)?,
        })
    }

    /// The pooled `[N, C_last]` features (everything but `head`).
    pub fn forward_features(&self, x: &Var, ctx: &Ctx) -> allmlp_layers::autograd::Result<Var> {
        self.check_input(&x.shape())
            .map_err(|e| AutogradError::InvalidArgument {
                op: "RepMLPNet",
                msg: e.to_string(),
            })?;
        let mut h = self.conv_embedding.forward(x, ctx)?;
        for (i, stage) in self.stages.iter().enumerate() {
            for unit in stage {
                h = unit.forward(&h, ctx)?;
            }
            if let Some(e) = self.embeds.get(i) {
                h = e.forward(&h, ctx)?;
            }
        }
        let h = adaptive_avg_pool2d(&self.head_norm.forward(&h, ctx)?, (1, 1))?;
        let n = h.shape()[0];
        h.reshape(&[n, h.shape()[1]])
    }
}

impl Module for RepMlpNet {
    /// `x [N, in_chans, img_size, img_size]` → logits `[N, num_classes]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> allmlp_layers::autograd::Result<Var> {
        self.head.forward(&self.forward_features(x, ctx)?, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.conv_embedding
            .visit(&join(prefix, "conv_embedding"), v);
        let stages = join(prefix, "stages");
        for (i, units) in self.stages.iter().enumerate() {
            visit_list(&stages, &i.to_string(), units, v);
        }
        visit_list(prefix, "embeds", &self.embeds, v);
        self.head_norm.visit(&join(prefix, "head_norm"), v);
        self.head.visit(&join(prefix, "head"), v);
    }
}

impl Model for RepMlpNet {
    fn name(&self) -> &str {
        &self.config.name
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_configs_are_valid_and_match_their_names() {
        for (name, f) in NAMED {
            let c = f();
            assert_eq!(c.name, name);
            c.validate().unwrap();
            // Every named config partitions each stage's map into exactly one partition.
            assert_eq!(c.feature_sizes(), c.hs, "{name}");
            assert_eq!(c.img_size.to_string(), name[name.len() - 3..]);
        }
        let names: Vec<&str> = entries().iter().map(|e| e.name).collect();
        assert_eq!(names, NAMED.map(|(n, _)| n));
    }

    #[test]
    fn sub_seeds_differ() {
        let s: std::collections::HashSet<u64> = (0..1000).map(|i| sub_seed(7, i)).collect();
        assert_eq!(s.len(), 1000);
    }
}
