//! MLP-Mixer (Tolstikhin et al., arXiv 2105.01601) as timm's `MlpMixer`.
//!
//! `stem` (P×P patches → C) → `blocks` → `norm` (LayerNorm, eps 1e-6) → mean over
//! tokens → `head`. Each block is
//!
//! ```text
//! U = X + W2 · σ(W1 · LN1(X) + b1) + b2     token mixing (per channel)  mlp_tokens.fc1/fc2
//! Y = U + σ(LN2(U) · W3ᵀ + b3) · W4ᵀ + b4   channel mixing (per token)  mlp_channels.fc1/fc2
//! ```
//!
//! with the token MLP computed as a left multiplication (see [`crate::token_mixing`]).
//! Parameter names, shapes, order and initialisation are timm's, so a timm
//! `state_dict` saved as safetensors loads unchanged.
//!
//! ```
//! use allmlp_models::{Mixer, MixerConfig, Model, mixer::mixer_tiny};
//! use allmlp_models::layers::{infer, num_parameters};
//! use allmlp_models::layers::autograd::tensor_core::Tensor;
//! let m = Mixer::new("mixer_tiny", &mixer_tiny(), 0)?;
//! assert_eq!(m.input_shape(), [1, 28, 28]);
//! assert_eq!(num_parameters(&m), mixer_tiny().num_parameters());
//! let y = infer(&m, &Tensor::zeros(&[2, 1, 28, 28])?)?;
//! assert_eq!(y.shape(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use allmlp_layers::autograd::tensor_core::Rng;
use allmlp_layers::autograd::{Result as AgResult, Var};
use allmlp_layers::{Ctx, DropPath, LayerNorm, Linear, Mlp, Module, Visitor, join};
use serde_json::{Value, json};

use crate::error::Result;
use crate::isotropic::{
    Check, Common, IsotropicConfig, IsotropicNet, ResidualBranches, entry, field,
    shared_config_methods, xavier_linear,
};
use crate::registry::{Entry, EvalTransform, Family};
use crate::token_mixing::token_mlp;

/// One configuration struct builds every Mixer size.
#[derive(Clone, Debug, PartialEq)]
pub struct MixerConfig {
    /// Square input side H = W.
    pub img_size: usize,
    /// Patch side P (the stem's kernel and stride).
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Hidden width C.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Token-mixing hidden width D_S (timm: `int(0.5·C)`).
    pub tokens_hidden: usize,
    /// Channel-mixing hidden width D_C (timm: `int(4·C)`).
    pub channels_hidden: usize,
    /// σ: exact erf GELU (timm) or the tanh approximation (the official JAX code).
    pub gelu_tanh: bool,
    /// LayerNorm epsilon (1e-6).
    pub norm_eps: f32,
    /// Dropout before the head (timm's `drop_rate`).
    pub drop_rate: f32,
    /// Dropout inside every MLP, after the activation and after fc2 (timm's `proj_drop_rate`).
    pub proj_drop_rate: f32,
    /// Stochastic depth: block `i` drops its residual branches with probability
    /// the same rate in every block (timm's `MlpMixer`).
    pub drop_path_rate: f32,
}

impl MixerConfig {
    /// A 224-style config: `D_S = C/2`, `D_C = 4C`, 3 input channels, 1000 classes.
    pub fn isotropic(img_size: usize, patch_size: usize, embed_dim: usize, depth: usize) -> Self {
        MixerConfig {
            img_size,
            patch_size,
            in_chans: 3,
            num_classes: 1000,
            embed_dim,
            depth,
            tokens_hidden: embed_dim / 2,
            channels_hidden: embed_dim * 4,
            gelu_tanh: false,
            norm_eps: 1e-6,
            drop_rate: 0.0,
            proj_drop_rate: 0.0,
            drop_path_rate: 0.0,
        }
    }

    /// Trainable parameters of the model this config builds, counted from the
    /// shapes (no allocation; equals `num_parameters` of the built model).
    pub fn num_parameters(&self) -> usize {
        let (c, s) = (self.embed_dim, self.num_patches());
        let (ds, dc) = (self.tokens_hidden, self.channels_hidden);
        let p = self.patch_size;
        let stem = c * self.in_chans * p * p + c;
        let block = 2 * c + (ds * s + ds) + (s * ds + s) + 2 * c + (dc * c + dc) + (c * dc + c);
        stem + self.depth * block + 2 * c + (c * self.num_classes + self.num_classes)
    }

    /// The config [`MixerConfig::to_json`] wrote (`model` names it in errors).
    pub fn from_json(model: &str, v: &Value) -> Result<MixerConfig> {
        Ok(MixerConfig {
            img_size: field(model, v, "img_size")?,
            patch_size: field(model, v, "patch_size")?,
            in_chans: field(model, v, "in_chans")?,
            num_classes: field(model, v, "num_classes")?,
            embed_dim: field(model, v, "embed_dim")?,
            depth: field(model, v, "depth")?,
            tokens_hidden: field(model, v, "tokens_hidden")?,
            channels_hidden: field(model, v, "channels_hidden")?,
            gelu_tanh: field(model, v, "gelu_tanh")?,
            norm_eps: field(model, v, "norm_eps")?,
            drop_rate: field(model, v, "drop_rate")?,
            proj_drop_rate: field(model, v, "proj_drop_rate")?,
            drop_path_rate: field(model, v, "drop_path_rate")?,
        })
    }
}

/// Mixer-S/32 at 224: C 512, depth 8, P 32 (19.10M parameters).
pub fn mixer_s32_224() -> MixerConfig {
    MixerConfig::isotropic(224, 32, 512, 8)
}

/// Mixer-S/16 at 224: C 512, depth 8, P 16 (18.53M).
pub fn mixer_s16_224() -> MixerConfig {
    MixerConfig::isotropic(224, 16, 512, 8)
}

/// Mixer-B/32 at 224: C 768, depth 12, P 32 (60.29M).
pub fn mixer_b32_224() -> MixerConfig {
    MixerConfig::isotropic(224, 32, 768, 12)
}

/// Mixer-B/16 at 224: C 768, depth 12, P 16 (59.88M).
pub fn mixer_b16_224() -> MixerConfig {
    MixerConfig::isotropic(224, 16, 768, 12)
}

/// Mixer-L/32 at 224: C 1024, depth 24, P 32 (206.94M).
pub fn mixer_l32_224() -> MixerConfig {
    MixerConfig::isotropic(224, 32, 1024, 24)
}

/// Mixer-L/16 at 224: C 1024, depth 24, P 16 (208.20M).
pub fn mixer_l16_224() -> MixerConfig {
    MixerConfig::isotropic(224, 16, 1024, 24)
}

/// Mixer-H/14 at 224 (paper only, not in timm): C 1280, depth 32, P 14, D_S 640, D_C 5120.
pub fn mixer_h14_224() -> MixerConfig {
    MixerConfig::isotropic(224, 14, 1280, 32)
}

/// Our small Mixer for 28×28 / 32×32 data: P 4, C 128, depth 8, D_S 64, D_C 512;
/// defaults 1×28×28 input (S = 49 tokens), 10 classes.
pub fn mixer_tiny() -> MixerConfig {
    MixerConfig {
        in_chans: 1,
        num_classes: 10,
        ..MixerConfig::isotropic(28, 4, 128, 8)
    }
}

/// One Mixer block: token mixing then channel mixing, each a pre-norm residual.
#[derive(Debug)]
pub struct MixerBlock {
    /// LayerNorm before token mixing.
    pub norm1: LayerNorm,
    /// Token MLP `S → D_S → S` (`fc1.weight [D_S, S]`, `fc2.weight [S, D_S]`).
    pub mlp_tokens: Mlp,
    /// Stochastic depth on both residual branches.
    pub drop_path: DropPath,
    /// LayerNorm before channel mixing.
    pub norm2: LayerNorm,
    /// Channel MLP `C → D_C → C`.
    pub mlp_channels: Mlp,
}

impl MixerBlock {
    fn new(cfg: &MixerConfig, drop_path: f32, rng: &mut Rng) -> Result<MixerBlock> {
        let (c, s) = (cfg.embed_dim, cfg.num_patches());
        let mlp = |i, h, rng: &mut Rng| -> Result<Mlp> {
            let fc1 = xavier_linear(i, h, true, rng)?;
            let fc2 = xavier_linear(h, i, true, rng)?;
            Ok(Mlp::from_linears(fc1, fc2, cfg.act(), cfg.proj_drop_rate)?)
        };
        Ok(MixerBlock {
            norm1: LayerNorm::new(c, cfg.norm_eps, true)?,
            mlp_tokens: mlp(s, cfg.tokens_hidden, rng)?,
            drop_path: DropPath::new(drop_path)?,
            norm2: LayerNorm::new(c, cfg.norm_eps, true)?,
            mlp_channels: mlp(c, cfg.channels_hidden, rng)?,
        })
    }
}

impl ResidualBranches for MixerBlock {
    fn branch_outputs(&self) -> Vec<&Linear> {
        vec![&self.mlp_tokens.fc2, &self.mlp_channels.fc2]
    }
}

impl Module for MixerBlock {
    /// `x [B, S, C]` → `[B, S, C]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> AgResult<Var> {
        let t = token_mlp(&self.mlp_tokens, &self.norm1.forward(x, ctx)?, ctx)?;
        let x = x.add(&self.drop_path.forward(&t, ctx)?)?;
        let c = self
            .mlp_channels
            .forward(&self.norm2.forward(&x, ctx)?, ctx)?;
        x.add(&self.drop_path.forward(&c, ctx)?)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.norm1.visit(&join(prefix, "norm1"), v);
        self.mlp_tokens.visit(&join(prefix, "mlp_tokens"), v);
        self.norm2.visit(&join(prefix, "norm2"), v);
        self.mlp_channels.visit(&join(prefix, "mlp_channels"), v);
    }
}

/// The MLP-Mixer classifier (timm's `MlpMixer` with `MixerBlock`s).
pub type Mixer = IsotropicNet<MixerConfig>;

shared_config_methods!(MixerConfig);

impl IsotropicConfig for MixerConfig {
    type Block = MixerBlock;
    type Norm = LayerNorm;

    fn common(&self) -> Common {
        self.shared()
    }

    /// Checks sizes and rates; `model` names the model in the error.
    fn validate(&self, model: &str) -> Result<()> {
        let ck = Check { model };
        let sizes = [
            ("tokens_hidden", self.tokens_hidden),
            ("channels_hidden", self.channels_hidden),
        ];
        ck.isotropic(&self.shared(), &sizes, self.proj_drop_rate)?;
        ck.finite("norm_eps", self.norm_eps)
    }

    /// Every field as JSON, with `"arch": "mixer"` and the derived `num_patches`.
    fn to_json(&self) -> Value {
        json!({
            "arch": "mixer",
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_patches": self.num_patches(),
            "tokens_hidden": self.tokens_hidden,
            "channels_hidden": self.channels_hidden,
            "gelu_tanh": self.gelu_tanh,
            "norm_eps": self.norm_eps,
            "drop_rate": self.drop_rate,
            "proj_drop_rate": self.proj_drop_rate,
            "drop_path_rate": self.drop_path_rate,
        })
    }

    fn block(&self, drop_path: f32, rng: &mut Rng) -> Result<MixerBlock> {
        MixerBlock::new(self, drop_path, rng)
    }

    fn norm(&self) -> Result<LayerNorm> {
        Ok(LayerNorm::new(self.embed_dim, self.norm_eps, true)?)
    }
}

/// The registered Mixer models.
pub fn entries() -> Vec<Entry> {
    vec![
        entry!(
            Family::Mixer,
            mixer_s32_224,
            "MLP-Mixer S/32, 224×224, C 512, depth 8 (19.10M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_s16_224,
            "MLP-Mixer S/16, 224×224, C 512, depth 8 (18.53M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_b32_224,
            "MLP-Mixer B/32, 224×224, C 768, depth 12 (60.29M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_b16_224,
            "MLP-Mixer B/16, 224×224, C 768, depth 12 (59.88M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_l32_224,
            "MLP-Mixer L/32, 224×224, C 1024, depth 24 (206.94M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_l16_224,
            "MLP-Mixer L/16, 224×224, C 1024, depth 24 (208.20M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_h14_224,
            "MLP-Mixer H/14 (paper), 224×224, C 1280, depth 32 (431M)",
            Some(EvalTransform::SIGNED)
        ),
        entry!(
            Family::Mixer,
            mixer_tiny,
            "small MLP-Mixer for 28×28/32×32: P 4, C 128, depth 8, D_S 64, D_C 512",
            None
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use allmlp_layers::autograd::tensor_core::Tensor;
    use allmlp_layers::num_parameters;

    fn small() -> MixerConfig {
        MixerConfig {
            in_chans: 2,
            num_classes: 5,
            tokens_hidden: 6,
            channels_hidden: 12,
            ..MixerConfig::isotropic(12, 4, 8, 3)
        }
    }

    #[test]
    fn timm_init_and_analytic_count() {
        let m = Mixer::new("small", &small(), 3).unwrap();
        assert_eq!(num_parameters(&m), small().num_parameters());
        assert!(m.head.weight.value().to_vec().iter().all(|&v| v == 0.0));
        let b = &m.blocks[1];
        let w = b.mlp_tokens.fc1.weight.value().to_vec(); // [6, 9]: bound √(6/15)
        let bound = (6.0f32 / 15.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > bound / 2.0));
        let bias = b.mlp_channels.fc2.bias.as_ref().unwrap().value().to_vec();
        assert!(bias.iter().all(|v| v.abs() < 1e-5) && bias.iter().any(|&v| v != 0.0));
        assert_eq!(b.norm2.weight.as_ref().unwrap().value().to_vec(), [1.0; 8]);
        assert_ne!(
            m.blocks[0].mlp_tokens.fc1.weight.value(),
            m.blocks[1].mlp_tokens.fc1.weight.value()
        );
        let again = Mixer::new("small", &small(), 3).unwrap();
        assert_eq!(
            again.blocks[2].mlp_channels.fc1.weight.value(),
            m.blocks[2].mlp_channels.fc1.weight.value()
        );
    }

    #[test]
    fn drop_path_is_the_same_in_every_block_and_config_round_trips() {
        let cfg = MixerConfig {
            drop_path_rate: 0.2,
            ..small()
        };
        let m = Mixer::new("small", &cfg, 0).unwrap();
        let r: Vec<f32> = m.blocks.iter().map(|b| b.drop_path.drop_prob).collect();
        assert_eq!(r, [0.2, 0.2, 0.2]);
        assert_eq!(MixerConfig::from_json("small", &m.config()).unwrap(), cfg);
        assert_eq!(m.config()["name"], "small");
        let mut bad = m.config();
        bad["depth"] = json!("eight");
        let e = MixerConfig::from_json("small", &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("depth") && e.contains("\"eight\""), "{e}");
    }

    #[test]
    fn invalid_configs_and_inputs_are_errors() {
        for (cfg, what) in [
            (
                MixerConfig {
                    img_size: 10,
                    ..small()
                },
                "multiple of patch_size 4",
            ),
            (
                MixerConfig {
                    depth: 0,
                    ..small()
                },
                "depth must be > 0",
            ),
            (
                MixerConfig {
                    drop_path_rate: 1.5,
                    ..small()
                },
                "drop_path_rate",
            ),
        ] {
            let e = Mixer::new("bad", &cfg, 0).unwrap_err().to_string();
            assert!(
                e.starts_with("bad: invalid configuration") && e.contains(what),
                "{e}"
            );
        }
        let m = Mixer::new("small", &small(), 0).unwrap();
        let e = m
            .forward(
                &Var::constant(Tensor::zeros(&[1, 2, 16, 16]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("small: expected input an image batch [B, 2, 12, 12]")
                && e.contains("[1, 2, 16, 16]"),
            "{e}"
        );
    }

    #[test]
    fn training_forward_backward_reaches_every_parameter() {
        let cfg = MixerConfig {
            drop_path_rate: 0.1,
            proj_drop_rate: 0.1,
            drop_rate: 0.1,
            ..small()
        };
        let m = Mixer::new("small", &cfg, 1).unwrap();
        // Give the head weights so gradients flow back through the blocks.
        m.head
            .weight
            .set_value(Tensor::randn(&[5, 8], 0.0, 1.0, 2).unwrap())
            .unwrap();
        let x = Var::constant(Tensor::randn(&[3, 2, 12, 12], 0.0, 1.0, 3).unwrap());
        let y = m.forward(&x, &Ctx::train(4)).unwrap();
        y.sum(&[], false).unwrap().backward().unwrap();
        for (n, p) in allmlp_layers::named_parameters(&m) {
            let g = p.grad().unwrap_or_else(|| panic!("{n}: no gradient"));
            assert!(g.all_finite(), "{n}");
        }
    }
}
