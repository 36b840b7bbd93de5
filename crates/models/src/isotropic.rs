//! The isotropic patch-MLP classifier shared by MLP-Mixer and ResMLP, and the
//! pieces both families use: the input check, the stochastic-depth schedule, timm's
//! Linear initialisations, the classifier head and configuration checks.
//!
//! [`IsotropicNet`] is timm's `MlpMixer`: `stem` (P×P patches → C) → `blocks` →
//! `norm` → mean over tokens → `head_drop` → `head`. A family supplies its
//! configuration, block and final norm through [`IsotropicConfig`]; [`crate::Mixer`]
//! and [`crate::ResMlp`] are `IsotropicNet<MixerConfig>` and `IsotropicNet<ResMlpConfig>`.

use std::fmt::Debug;

use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::tensor_core::{Rng, Tensor};
use allmlp_layers::autograd::{AutogradError, Result as AgResult, Var};
use allmlp_layers::{Ctx, Dropout, Linear, Module, PatchEmbed, Visitor, init, join, visit_list};
use serde_json::{Value, json};

use crate::error::{ModelError, Result};
use crate::model::Model;

/// The sizes and rates every isotropic family's configuration has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Common {
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
    /// Dropout before the head.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

/// What a family gives [`IsotropicNet`]: its configuration's JSON and checks, its
/// block and its final norm.
pub trait IsotropicConfig: Clone + Debug + Send + Sync {
    /// One block, `[B, S, C]` → `[B, S, C]`.
    type Block: Module + Debug + ResidualBranches;
    /// The final norm before pooling.
    type Norm: Module + Debug;

    /// The shared sizes and rates.
    fn common(&self) -> Common;

    /// Checks sizes and rates; `model` names the model in the error.
    fn validate(&self, model: &str) -> Result<()>;

    /// Every field as JSON, with `"arch"` and the derived `num_patches`.
    fn to_json(&self) -> Value;

    /// Block `i` of the net, with stochastic-depth rate `drop_path`, drawing its
    /// initialisation from `rng`.
    fn block(&self, drop_path: f32, rng: &mut Rng) -> Result<Self::Block>;

    /// The final norm.
    fn norm(&self) -> Result<Self::Norm>;
}

/// A block made of pre-norm residual branches `x + f(x)`, each ending in a linear layer.
pub trait ResidualBranches {
    /// The last linear layer of each branch (Mixer: `mlp_tokens.fc2`, `mlp_channels.fc2`;
    /// ResMLP: `linear_tokens`, `mlp_channels.fc2`).
    fn branch_outputs(&self) -> Vec<&Linear>;
}

/// The isotropic patch-MLP classifier (timm's `MlpMixer`) with `C`'s blocks.
#[derive(Debug)]
pub struct IsotropicNet<C: IsotropicConfig> {
    /// Patch embedding `stem.proj` (Conv P×P, stride P) → `[B, S, C]`.
    pub stem: PatchEmbed,
    /// The blocks, `blocks.{i}`.
    pub blocks: Vec<C::Block>,
    /// Final norm (Mixer: LayerNorm; ResMLP: Affine).
    pub norm: C::Norm,
    /// Dropout before the head.
    pub head_drop: Dropout,
    /// Classifier `C → classes`.
    pub head: Linear,
    cfg: C,
    name: String,
}

impl<C: IsotropicConfig> IsotropicNet<C> {
    /// Builds `cfg` with timm's initialisation drawn from `seed`: stem LeCun-normal
    /// with zero bias, then each block's own (Linears xavier-uniform, see
    /// [`IsotropicConfig::block`]), the final norm 1/0, head zero. `name` is what
    /// [`Model::name`] reports.
    pub fn new(name: &str, cfg: &C, seed: u64) -> Result<IsotropicNet<C>> {
        cfg.validate(name)?;
        let k = cfg.common();
        let mut rng = Rng::new(seed);
        let (img, c) = (k.img_size, k.embed_dim);
        let stem = PatchEmbed::new((img, img), k.patch_size, k.in_chans, c, rng.next_u64())?;
        // Every block gets the same stochastic-depth rate, as in timm's `MlpMixer` (which builds
        // Mixer and ResMLP) and the ResMLP authors' code.
        let blocks = (0..k.depth)
            .map(|_| cfg.block(k.drop_path_rate, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(IsotropicNet {
            stem,
            blocks,
            norm: cfg.norm()?,
            head_drop: Dropout::new(k.drop_rate)?,
            head: zero_head(c, k.num_classes)?,
            cfg: cfg.clone(),
            name: name.to_string(),
        })
    }

    /// Sets the weight and bias of the last linear layer of every residual branch to zero
    /// ([`ResidualBranches`]), so that each block starts as the identity and the net as
    /// `head(norm(stem(x)))` — torchvision's `zero_init_residual`, ReZero's idea. Training
    /// wakes the branches from the output backwards: once the head (zero in timm's
    /// initialisation) has moved, the zeroed layers get gradients, and once they have moved,
    /// the rest of their branch does.
    pub fn zero_init_residual(&self) -> Result<()> {
        for fc in self.blocks.iter().flat_map(|b| b.branch_outputs()) {
            for p in std::iter::once(&fc.weight).chain(&fc.bias) {
                p.set_value(Tensor::zeros(&p.shape())?)?;
            }
        }
        Ok(())
    }

    /// The configuration it was built from.
    pub fn cfg(&self) -> &C {
        &self.cfg
    }

    /// `Ok` for an image batch `[B, C, H, W]` of the size the model was built for,
    /// else [`ModelError::BadInput`] naming the model and the expected `[C, H, W]`.
    pub fn check_input(&self, shape: &[usize]) -> Result<()> {
        check_image(&self.name, shape, self.input_shape())
    }

    /// `x [B, C, H, W]` → final-normed tokens `[B, S, C]` (before pooling).
    pub fn forward_features(&self, x: &Var, ctx: &Ctx) -> AgResult<Var> {
        self.check_input(&x.shape()).map_err(into_autograd)?;
        let mut x = self.stem.forward(x, ctx)?;
        for b in &self.blocks {
            x = b.forward(&x, ctx)?;
        }
        self.norm.forward(&x, ctx)
    }
}

impl<C: IsotropicConfig> Module for IsotropicNet<C> {
    /// `x [B, C, H, W]` → logits `[B, classes]`; a wrong input size is an error
    /// naming the model and the `[C, H, W]` it takes.
    fn forward(&self, x: &Var, ctx: &Ctx) -> AgResult<Var> {
        let f = self.forward_features(x, ctx)?;
        head_forward(&f, &self.head_drop, &self.head, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.stem.visit(&join(prefix, "stem"), v);
        visit_list(prefix, "blocks", &self.blocks, v);
        self.norm.visit(&join(prefix, "norm"), v);
        self.head.visit(&join(prefix, "head"), v);
    }
}

impl<C: IsotropicConfig> Model for IsotropicNet<C> {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> Value {
        let mut v = self.cfg.to_json();
        v["name"] = json!(self.name);
        v
    }

    fn input_shape(&self) -> [usize; 3] {
        let k = self.cfg.common();
        [k.in_chans, k.img_size, k.img_size]
    }

    fn num_classes(&self) -> usize {
        self.cfg.common().num_classes
    }
}

/// A registry entry for `$name` (a function returning the family's configuration)
/// that builds an [`IsotropicNet`], whose reference checkpoints expect `$norm`.
macro_rules! entry {
    ($family:expr, $name:ident, $desc:expr, $norm:expr) => {
        $crate::registry::Entry {
            name: stringify!($name),
            family: $family,
            description: $desc,
            eval_transform: $norm,
            build: |o: &$crate::registry::ModelOptions| {
                let cfg = $name().with_options(o);
                let net = $crate::isotropic::IsotropicNet::new(stringify!($name), &cfg, o.seed)?;
                if o.zero_init_residual {
                    net.zero_init_residual()?;
                }
                Ok(Box::new(net) as Box<dyn $crate::model::Model>)
            },
        }
    };
}
pub(crate) use entry;

/// The inherent methods both configuration structs share field for field:
/// `num_patches`, `with_options` and the activation.
macro_rules! shared_config_methods {
    ($ty:ty) => {
        impl $ty {
            /// Number of tokens S = (H/P)·(W/P) (`usize::MAX` when that overflows, which
            /// validation refuses).
            pub fn num_patches(&self) -> usize {
                let g = self.img_size / self.patch_size.max(1);
                g.saturating_mul(g)
            }

            /// The config with the set fields of `opts` applied (the seed is not part of it).
            pub fn with_options(mut self, opts: &$crate::registry::ModelOptions) -> $ty {
                self.img_size = opts.img_size.unwrap_or(self.img_size);
                self.in_chans = opts.in_chans.unwrap_or(self.in_chans);
                self.num_classes = opts.num_classes.unwrap_or(self.num_classes);
                self.patch_size = opts.patch_size.unwrap_or(self.patch_size);
                self.gelu_tanh |= opts.gelu_tanh;
                self.drop_rate = opts.drop_rate;
                self.drop_path_rate = opts.drop_path_rate;
                self
            }

            /// The shared fields, for [`IsotropicConfig::common`](crate::isotropic::IsotropicConfig::common).
            fn shared(&self) -> $crate::isotropic::Common {
                $crate::isotropic::Common {
                    img_size: self.img_size,
                    patch_size: self.patch_size,
                    in_chans: self.in_chans,
                    num_classes: self.num_classes,
                    embed_dim: self.embed_dim,
                    depth: self.depth,
                    drop_rate: self.drop_rate,
                    drop_path_rate: self.drop_path_rate,
                }
            }

            /// σ: exact erf GELU or the tanh approximation.
            fn act(&self) -> allmlp_layers::Activation {
                if self.gelu_tanh {
                    allmlp_layers::Activation::GeluTanh
                } else {
                    allmlp_layers::Activation::Gelu
                }
            }
        }
    };
}
pub(crate) use shared_config_methods;

/// `Ok` if `shape` is `[B, C, H, W]` with `[C, H, W] == want`, else
/// [`ModelError::BadInput`] naming `model`, the expected input and what it got.
pub(crate) fn check_image(model: &str, shape: &[usize], want: [usize; 3]) -> Result<()> {
    let [c, h, w] = want;
    if shape.len() == 4 && shape[0] > 0 && shape[1..] == want {
        return Ok(());
    }
    Err(ModelError::BadInput {
        model: model.to_string(),
        expected: format!(
            "an image batch [B, {c}, {h}, {w}] ([C, H, W] = [{c}, {h}, {w}]: the token-mixing \
             weights fix the input size; another size needs another model)"
        ),
        got: fmt_shape(shape),
    })
}

/// A model error carried through `Module::forward`'s autograd result.
pub(crate) fn into_autograd(e: ModelError) -> AutogradError {
    match e {
        ModelError::Autograd(a) => a,
        other => AutogradError::InvalidArgument {
            op: "model input",
            msg: other.to_string(),
        },
    }
}

/// timm's Mixer Linear init: weight xavier-uniform, bias `N(0, 1e-6)` when the
/// module's name contains "mlp", else zero.
pub(crate) fn xavier_linear(
    in_f: usize,
    out_f: usize,
    mlp_bias: bool,
    rng: &mut Rng,
) -> Result<Linear> {
    let w = init::xavier_uniform(&[out_f, in_f], 1.0, rng.next_u64())?;
    let b = if mlp_bias {
        Tensor::randn(&[out_f], 0.0, 1e-6, rng.next_u64())?
    } else {
        Tensor::zeros(&[out_f])?
    };
    Ok(Linear::from_tensors(w, Some(b))?)
}

/// The head: timm zero-initialises weight and bias (`nlhb` off).
pub(crate) fn zero_head(dim: usize, classes: usize) -> Result<Linear> {
    Ok(Linear::from_tensors(
        Tensor::zeros(&[classes, dim])?,
        Some(Tensor::zeros(&[classes])?),
    )?)
}

/// Mean over tokens, dropout, Linear: `x [B, S, C]` → `[B, classes]`.
pub(crate) fn head_forward(
    x: &Var,
    drop: &Dropout,
    head: &Linear,
    ctx: &Ctx,
) -> allmlp_layers::autograd::Result<Var> {
    let pooled = x.mean(&[1], false)?;
    head.forward(&drop.forward(&pooled, ctx)?, ctx)
}

/// Configuration checks shared by both families.
pub(crate) struct Check<'a> {
    pub(crate) model: &'a str,
}

impl Check<'_> {
    fn err(&self, msg: String) -> ModelError {
        ModelError::InvalidConfig {
            model: self.model.to_string(),
            msg,
        }
    }

    /// Every named size must be non-zero.
    pub(crate) fn positive(&self, fields: &[(&str, usize)]) -> Result<()> {
        match fields.iter().find(|(_, v)| *v == 0) {
            Some((k, _)) => Err(self.err(format!("{k} must be > 0, got 0"))),
            None => Ok(()),
        }
    }

    /// The checks every isotropic family makes: the shared sizes and then `sizes`
    /// non-zero, whole patches, and the three dropout rates probabilities.
    pub(crate) fn isotropic(
        &self,
        k: &Common,
        sizes: &[(&str, usize)],
        proj_drop_rate: f32,
    ) -> Result<()> {
        self.positive(&[
            ("img_size", k.img_size),
            ("patch_size", k.patch_size),
            ("in_chans", k.in_chans),
            ("num_classes", k.num_classes),
            ("embed_dim", k.embed_dim),
            ("depth", k.depth),
        ])?;
        self.positive(sizes)?;
        self.patches(k.img_size, k.patch_size)?;
        self.probs(&[
            ("drop_rate", k.drop_rate),
            ("proj_drop_rate", proj_drop_rate),
            ("drop_path_rate", k.drop_path_rate),
        ])
    }

    /// `img_size` must be a multiple of `patch_size`.
    pub(crate) fn patches(&self, img: usize, patch: usize) -> Result<()> {
        if !img.is_multiple_of(patch) {
            return Err(self.err(format!(
                "img_size {img} must be a multiple of patch_size {patch}"
            )));
        }
        let grid = img / patch;
        match grid.checked_mul(grid) {
            Some(_) => Ok(()),
            None => Err(self.err(format!(
                "img_size {img} with patch_size {patch} gives {grid}×{grid} tokens, \
                 more than a usize can count"
            ))),
        }
    }

    /// Every named (drop) probability must be in `[0, 1]`.
    pub(crate) fn probs(&self, fields: &[(&str, f32)]) -> Result<()> {
        match fields.iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            Some((k, p)) => Err(self.err(format!("{k} must be in [0, 1], got {p}"))),
            None => Ok(()),
        }
    }

    /// A finite value.
    pub(crate) fn finite(&self, k: &str, v: f32) -> Result<()> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.err(format!("{k} must be finite, got {v}")))
        }
    }
}

/// Reads a JSON config field, naming it when missing or mistyped.
pub(crate) fn field<T: FromJson>(model: &str, v: &Value, k: &str) -> Result<T> {
    v.get(k)
        .and_then(T::from_json)
        .ok_or_else(|| ModelError::InvalidConfig {
            model: model.to_string(),
            msg: format!(
                "config field `{k}` missing or not a {}: {}",
                T::KIND,
                v.get(k).map_or("absent".to_string(), Value::to_string)
            ),
        })
}

/// A JSON value that maps to a config field.
pub(crate) trait FromJson: Sized {
    const KIND: &'static str;
    fn from_json(v: &Value) -> Option<Self>;
}

impl FromJson for usize {
    const KIND: &'static str = "non-negative integer";
    fn from_json(v: &Value) -> Option<usize> {
        v.as_u64().and_then(|u| usize::try_from(u).ok())
    }
}

impl FromJson for f32 {
    const KIND: &'static str = "number";
    fn from_json(v: &Value) -> Option<f32> {
        v.as_f64().map(|f| f as f32)
    }
}

impl FromJson for bool {
    const KIND: &'static str = "boolean";
    fn from_json(v: &Value) -> Option<bool> {
        v.as_bool()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_the_model_and_the_fixed_size() {
        assert!(check_image("m", &[2, 1, 28, 28], [1, 28, 28]).is_ok());
        for bad in [&[2, 1, 32, 32][..], &[1, 28, 28], &[0, 1, 28, 28]] {
            let e = check_image("mixer_tiny", bad, [1, 28, 28]).unwrap_err();
            let s = e.to_string();
            assert!(matches!(e, ModelError::BadInput { .. }));
            assert!(
                s.starts_with("mixer_tiny: expected input an image batch [B, 1, 28, 28]")
                    && s.contains("token-mixing")
                    && s.contains(&fmt_shape(bad)),
                "{s}"
            );
        }
    }
}
