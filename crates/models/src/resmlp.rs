//! ResMLP (Touvron et al., arXiv 2105.03404) as timm's `MlpMixer` with `ResBlock`s.
//!
//! Like Mixer with no normalization: LayerNorm becomes a per-channel affine map
//! `Aff(x) = α ⊙ x + β` (`alpha`, `beta` of shape `[1, 1, C]`), token mixing is one
//! linear layer `S → S`, and each residual branch is scaled by a LayerScale vector:
//!
//! ```text
//! Z = X + ls1 ⊙ (A · Aff1(X) + a)           linear_tokens (A [S, S], a [S]), per channel
//! Y = Z + ls2 ⊙ fc2(σ(fc1(Aff2(Z))))        mlp_channels, per token
//! ```
//!
//! Head: final `norm` (Affine) → mean over tokens → `head`. Names, order and
//! initialisation are timm's; [`load_resmlp_checkpoint`] also reads the authors'
//! (deit repository) names and shapes.
//!
//! ```
//! use allmlp_models::{Model, ResMlp, resmlp::resmlp_tiny};
//! use allmlp_models::layers::{infer, num_parameters};
//! use allmlp_models::layers::autograd::tensor_core::Tensor;
//! let m = ResMlp::new("resmlp_tiny", &resmlp_tiny(), 0)?;
//! assert_eq!(num_parameters(&m), resmlp_tiny().num_parameters());
//! assert_eq!(infer(&m, &Tensor::zeros(&[1, 1, 28, 28])?)?.shape(), [1, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use allmlp_layers::autograd::tensor_core::Rng;
use allmlp_layers::autograd::{Result as AgResult, Var};
use allmlp_layers::checkpoint::load_state_dict;
use allmlp_layers::state_dict::{LoadReport, StateDict, Strictness, resmlp_authors_to_timm};
use allmlp_layers::{Affine, Ctx, DropPath, LayerScale, Linear, Mlp, Module, Visitor, join};
use serde_json::{Value, json};

use crate::error::Result;
use crate::isotropic::{
    Check, Common, IsotropicConfig, IsotropicNet, ResidualBranches, entry, field,
    shared_config_methods, xavier_linear,
};
use crate::registry::{Entry, EvalTransform, Family};
use crate::token_mixing::token_linear;

/// One configuration struct builds every ResMLP size.
#[derive(Clone, Debug, PartialEq)]
pub struct ResMlpConfig {
    /// Square input side H = W.
    pub img_size: usize,
    /// Patch side P.
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Hidden width C.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Channel-MLP hidden width (timm: `int(4·C)`).
    pub channels_hidden: usize,
    /// Initial value of every LayerScale entry (`ls1`, `ls2`).
    pub init_values: f32,
    /// σ: exact erf GELU (timm) or the tanh approximation.
    pub gelu_tanh: bool,
    /// Dropout before the head (timm's `drop_rate`).
    pub drop_rate: f32,
    /// Dropout inside the channel MLP (timm's `proj_drop_rate`).
    pub proj_drop_rate: f32,
    /// Stochastic depth, the same rate in every block (timm's `MlpMixer`, the authors' code).
    pub drop_path_rate: f32,
}

impl ResMlpConfig {
    /// A 224-style config: channel hidden 4C, 3 input channels, 1000 classes.
    pub fn isotropic(
        img_size: usize,
        patch_size: usize,
        embed_dim: usize,
        depth: usize,
        init_values: f32,
    ) -> Self {
        ResMlpConfig {
            img_size,
            patch_size,
            in_chans: 3,
            num_classes: 1000,
            embed_dim,
            depth,
            channels_hidden: embed_dim * 4,
            init_values,
            gelu_tanh: false,
            drop_rate: 0.0,
            proj_drop_rate: 0.0,
            drop_path_rate: 0.0,
        }
    }

    /// Trainable parameters, counted from the shapes (no allocation).
    pub fn num_parameters(&self) -> usize {
        let (c, s, h, p) = (
            self.embed_dim,
            self.num_patches(),
            self.channels_hidden,
            self.patch_size,
        );
        let stem = c * self.in_chans * p * p + c;
        let block = 2 * c + 2 * c + (s * s + s) + 2 * c + (h * c + h) + (c * h + c);
        stem + self.depth * block + 2 * c + (c * self.num_classes + self.num_classes)
    }

    /// The config [`ResMlpConfig::to_json`] wrote.
    pub fn from_json(model: &str, v: &Value) -> Result<ResMlpConfig> {
        Ok(ResMlpConfig {
            img_size: field(model, v, "img_size")?,
            patch_size: field(model, v, "patch_size")?,
            in_chans: field(model, v, "in_chans")?,
            num_classes: field(model, v, "num_classes")?,
            embed_dim: field(model, v, "embed_dim")?,
            depth: field(model, v, "depth")?,
            channels_hidden: field(model, v, "channels_hidden")?,
            init_values: field(model, v, "init_values")?,
            gelu_tanh: field(model, v, "gelu_tanh")?,
            drop_rate: field(model, v, "drop_rate")?,
            proj_drop_rate: field(model, v, "proj_drop_rate")?,
            drop_path_rate: field(model, v, "drop_path_rate")?,
        })
    }
}

/// ResMLP-12 at 224: C 384, depth 12, P 16, LayerScale 1e-4 (15.35M).
pub fn resmlp_12_224() -> ResMlpConfig {
    ResMlpConfig::isotropic(224, 16, 384, 12, 1e-4)
}

/// ResMLP-24 at 224: C 384, depth 24, P 16, LayerScale 1e-5 (30.02M).
pub fn resmlp_24_224() -> ResMlpConfig {
    ResMlpConfig::isotropic(224, 16, 384, 24, 1e-5)
}

/// ResMLP-36 at 224: C 384, depth 36, P 16, LayerScale 1e-6 (44.69M).
pub fn resmlp_36_224() -> ResMlpConfig {
    ResMlpConfig::isotropic(224, 16, 384, 36, 1e-6)
}

/// ResMLP-B24/8 at 224: C 768, depth 24, P 8, LayerScale 1e-6 (129.14M).
pub fn resmlp_big_24_224() -> ResMlpConfig {
    ResMlpConfig::isotropic(224, 8, 768, 24, 1e-6)
}

/// Our small ResMLP for 28×28 / 32×32 data: P 4, C 128, depth 8, channel hidden 512,
/// LayerScale 0.1 (the authors' value for shallow nets); defaults 1×28×28, 10 classes.
pub fn resmlp_tiny() -> ResMlpConfig {
    ResMlpConfig {
        in_chans: 1,
        num_classes: 10,
        ..ResMlpConfig::isotropic(28, 4, 128, 8, 0.1)
    }
}

/// One ResMLP block.
#[derive(Debug)]
pub struct ResBlock {
    /// LayerScale of the token branch, `ls1 [C]`.
    pub ls1: LayerScale,
    /// LayerScale of the channel branch, `ls2 [C]`.
    pub ls2: LayerScale,
    /// Affine before token mixing.
    pub norm1: Affine,
    /// Token mixing `S → S` (`weight [S, S]`, `bias [S]`).
    pub linear_tokens: Linear,
    /// Stochastic depth on both residual branches.
    pub drop_path: DropPath,
    /// Affine before the channel MLP.
    pub norm2: Affine,
    /// Channel MLP `C → 4C → C`.
    pub mlp_channels: Mlp,
}

impl ResBlock {
    fn new(cfg: &ResMlpConfig, drop_path: f32, rng: &mut Rng) -> Result<ResBlock> {
        let (c, s, h) = (cfg.embed_dim, cfg.num_patches(), cfg.channels_hidden);
        // timm's `_init_weights`: "linear_tokens" has no "mlp" in its name → zero bias.
        let linear_tokens = xavier_linear(s, s, false, rng)?;
        let fc1 = xavier_linear(c, h, true, rng)?;
        let fc2 = xavier_linear(h, c, true, rng)?;
        Ok(ResBlock {
            ls1: LayerScale::new(c, cfg.init_values)?.named("ls1"),
            ls2: LayerScale::new(c, cfg.init_values)?.named("ls2"),
            norm1: Affine::new(c)?,
            linear_tokens,
            drop_path: DropPath::new(drop_path)?,
            norm2: Affine::new(c)?,
            mlp_channels: Mlp::from_linears(fc1, fc2, cfg.act(), cfg.proj_drop_rate)?,
        })
    }
}

impl ResidualBranches for ResBlock {
    fn branch_outputs(&self) -> Vec<&Linear> {
        vec![&self.linear_tokens, &self.mlp_channels.fc2]
    }
}

impl Module for ResBlock {
    /// `x [B, S, C]` → `[B, S, C]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> AgResult<Var> {
        let t = token_linear(&self.linear_tokens, &self.norm1.forward(x, ctx)?)?;
        let t = self.ls1.forward(&t, ctx)?;
        let x = x.add(&self.drop_path.forward(&t, ctx)?)?;
        let c = self
            .mlp_channels
            .forward(&self.norm2.forward(&x, ctx)?, ctx)?;
        let c = self.ls2.forward(&c, ctx)?;
        x.add(&self.drop_path.forward(&c, ctx)?)
    }

    /// timm's order: a module's own parameters (`ls1`, `ls2`) before its children's.
    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.ls1.visit(prefix, v);
        self.ls2.visit(prefix, v);
        self.norm1.visit(&join(prefix, "norm1"), v);
        self.linear_tokens.visit(&join(prefix, "linear_tokens"), v);
        self.norm2.visit(&join(prefix, "norm2"), v);
        self.mlp_channels.visit(&join(prefix, "mlp_channels"), v);
    }
}

/// The ResMLP classifier (timm's `MlpMixer` with `ResBlock`s).
pub type ResMlp = IsotropicNet<ResMlpConfig>;

shared_config_methods!(ResMlpConfig);

impl IsotropicConfig for ResMlpConfig {
    type Block = ResBlock;
    type Norm = Affine;

    fn common(&self) -> Common {
        self.shared()
    }

    /// Checks sizes and rates; `model` names the model in the error.
    fn validate(&self, model: &str) -> Result<()> {
        let ck = Check { model };
        let sizes = [("channels_hidden", self.channels_hidden)];
        ck.isotropic(&self.shared(), &sizes, self.proj_drop_rate)?;
        ck.finite("init_values", self.init_values)
    }

    /// Every field as JSON, with `"arch": "resmlp"` and the derived `num_patches`.
    fn to_json(&self) -> Value {
        json!({
            "arch": "resmlp",
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_patches": self.num_patches(),
            "channels_hidden": self.channels_hidden,
            "init_values": self.init_values,
            "gelu_tanh": self.gelu_tanh,
            "drop_rate": self.drop_rate,
            "proj_drop_rate": self.proj_drop_rate,
            "drop_path_rate": self.drop_path_rate,
        })
    }

    fn block(&self, drop_path: f32, rng: &mut Rng) -> Result<ResBlock> {
        ResBlock::new(self, drop_path, rng)
    }

    fn norm(&self) -> Result<Affine> {
        Ok(Affine::new(self.embed_dim)?)
    }
}

/// Loads the safetensors checkpoint at `path` into `model`, accepting timm's names
/// or the authors' (deit `resmlp_models.py`: `patch_embed.`, `attn.`, `mlp.`,
/// `gamma_1/2`, `alpha`/`beta` of shape `[C]`), mapped with
/// [`resmlp_authors_to_timm`] as timm's `checkpoint_filter_fn` does. Strict:
/// every missing, unexpected or mis-shaped key is reported and nothing is changed.
pub fn load_resmlp_checkpoint(
    model: &ResMlp,
    path: impl AsRef<Path>,
    strictness: Strictness,
) -> Result<LoadReport> {
    let sd = StateDict::load_remapped(path, &resmlp_authors_to_timm())?;
    Ok(load_state_dict(model, sd, strictness)?)
}

/// The registered ResMLP models.
pub fn entries() -> Vec<Entry> {
    vec![
        entry!(
            Family::ResMlp,
            resmlp_12_224,
            "ResMLP-12, 224×224, C 384, P 16 (15.35M)",
            Some(EvalTransform::IMAGENET)
        ),
        entry!(
            Family::ResMlp,
            resmlp_24_224,
            "ResMLP-24, 224×224, C 384, P 16 (30.02M)",
            Some(EvalTransform::IMAGENET)
        ),
        entry!(
            Family::ResMlp,
            resmlp_36_224,
            "ResMLP-36, 224×224, C 384, P 16 (44.69M)",
            Some(EvalTransform::IMAGENET)
        ),
        entry!(
            Family::ResMlp,
            resmlp_big_24_224,
            "ResMLP-B24/8, 224×224, C 768, P 8 (129.14M)",
            Some(EvalTransform::IMAGENET)
        ),
        entry!(
            Family::ResMlp,
            resmlp_tiny,
            "small ResMLP for 28×28/32×32: P 4, C 128, depth 8, hidden 512, LayerScale 0.1",
            None
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use allmlp_layers::autograd::tensor_core::Tensor;
    use allmlp_layers::{named_parameters, num_parameters};

    fn small() -> ResMlpConfig {
        ResMlpConfig {
            in_chans: 2,
            num_classes: 5,
            channels_hidden: 12,
            ..ResMlpConfig::isotropic(12, 4, 8, 3, 0.5)
        }
    }

    #[test]
    fn timm_init_names_and_analytic_count() {
        let m = ResMlp::new("small", &small(), 3).unwrap();
        assert_eq!(num_parameters(&m), small().num_parameters());
        let b = &m.blocks[0];
        assert_eq!(b.ls2.gamma.value().to_vec(), [0.5; 8]);
        assert_eq!(b.norm1.alpha.shape(), [1, 1, 8]);
        assert_eq!(
            b.linear_tokens.bias.as_ref().unwrap().value().to_vec(),
            [0.0; 9]
        );
        let fc1b = b.mlp_channels.fc1.bias.as_ref().unwrap().value().to_vec();
        assert!(fc1b.iter().all(|v| v.abs() < 1e-5) && fc1b.iter().any(|&v| v != 0.0));
        let names: Vec<String> = named_parameters(&m)
            .into_iter()
            .map(|(n, _)| n)
            .take(7)
            .collect();
        assert_eq!(
            names,
            [
                "stem.proj.weight",
                "stem.proj.bias",
                "blocks.0.ls1",
                "blocks.0.ls2",
                "blocks.0.norm1.alpha",
                "blocks.0.norm1.beta",
                "blocks.0.linear_tokens.weight"
            ]
        );
        let cfg = ResMlpConfig {
            drop_path_rate: 0.4,
            ..small()
        };
        let m = ResMlp::new("small", &cfg, 0).unwrap();
        assert_eq!(ResMlpConfig::from_json("small", &m.config()).unwrap(), cfg);
        let r: Vec<f32> = m.blocks.iter().map(|b| b.drop_path.drop_prob).collect();
        assert_eq!(r, vec![0.4; cfg.depth]);
    }

    #[test]
    fn bad_inputs_and_configs_are_errors() {
        let m = ResMlp::new("small", &small(), 0).unwrap();
        let e = m
            .forward(
                &Var::constant(Tensor::zeros(&[1, 3, 12, 12]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("small: expected input an image batch [B, 2, 12, 12]"),
            "{e}"
        );
        let cfg = ResMlpConfig {
            init_values: f32::NAN,
            ..small()
        };
        let e = ResMlp::new("r", &cfg, 0).unwrap_err().to_string();
        assert!(e.contains("init_values must be finite"), "{e}");
    }
}
