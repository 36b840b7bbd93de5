//! Models by name, like timm's `create_model`.
//!
//! Each registered name maps to a function that fills an architecture's
//! configuration; model code never branches on a model's name.

use crate::error::{ModelError, Result};
use crate::model::Model;

/// Overrides applied on top of a named configuration (`None`: keep the default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelOptions {
    /// Square input side.
    pub img_size: Option<usize>,
    /// Input channels.
    pub in_chans: Option<usize>,
    /// Output classes.
    pub num_classes: Option<usize>,
    /// Patch side (Mixer/ResMLP).
    pub patch_size: Option<usize>,
    /// Use the tanh approximation of GELU (the official JAX Mixer) instead of exact erf.
    pub gelu_tanh: bool,
    /// Dropout probability.
    pub drop_rate: f32,
    /// Stochastic-depth rate, the same in every block (as timm's Mixer and ResMLP).
    pub drop_path_rate: f32,
    /// Start every residual branch at zero, each block as the identity (Mixer and ResMLP:
    /// [`crate::isotropic::IsotropicNet::zero_init_residual`]; torchvision's option of the
    /// same name). Off by default: timm's initialisation.
    pub zero_init_residual: bool,
    /// Seed of the parameter initialisation.
    pub seed: u64,
}

/// Which family a registered model belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// MLP-Mixer.
    Mixer,
    /// ResMLP.
    ResMlp,
    /// RepMLP (paper v1): ResNet hybrids and pure-MLP nets.
    RepMlp,
    /// RepMLPNet.
    RepMlpNet,
}

/// How a model's reference checkpoints expect an image, as timm's `pretrained_cfg` records
/// it (and timm's `create_transform` applies at evaluation): resized with a bicubic filter so
/// that its shorter side is `⌊size / crop_pct⌋`, the centre `size × size` cut, and the RGB
/// pixels, scaled to 0..1, normalised with `mean` and `std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalTransform {
    /// Mean of each of R, G, B.
    pub mean: [f32; 3],
    /// Standard deviation of each of R, G, B.
    pub std: [f32; 3],
    /// The centre crop's share of the resized image's side.
    pub crop_pct: f32,
}

impl EvalTransform {
    /// ImageNet's statistics (timm's `IMAGENET_DEFAULT_MEAN`/`STD`), crop 0.875 (224 of 256):
    /// ResMLP (trained with the DeiT recipe), RepMLP and RepMLPNet.
    pub const IMAGENET: EvalTransform = EvalTransform {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        crop_pct: 0.875,
    };
    /// Pixels mapped to [-1, 1] (mean = std = 0.5), crop 0.875: the JAX MLP-Mixer
    /// checkpoints, and timm's `mixer_*` weights converted from them.
    pub const SIGNED: EvalTransform = EvalTransform {
        mean: [0.5; 3],
        std: [0.5; 3],
        crop_pct: 0.875,
    };
}

/// One registry entry.
#[derive(Clone, Copy)]
pub struct Entry {
    /// The name users pass.
    pub name: &'static str,
    /// The family.
    pub family: Family,
    /// One line for `allmlp models`.
    pub description: &'static str,
    /// How its reference (ImageNet) checkpoints expect an image; `None` for the models without
    /// one (the small ones, whose normalization comes from the data they are trained on).
    pub eval_transform: Option<EvalTransform>,
    /// Builds the training-time model.
    pub build: fn(&ModelOptions) -> Result<Box<dyn Model>>,
}

/// Every registered model, in listing order.
pub fn entries() -> Vec<Entry> {
    let mut v: Vec<Entry> = Vec::new();
    // Families register here: `v.extend(crate::mixer::entries());` …
    v.extend(crate::mixer::entries());
    v.extend(crate::resmlp::entries());
    v.extend(crate::repmlpnet::entries());
    v.extend(crate::repmlp::entries());
    v.sort_by_key(|e| e.name);
    v
}

/// Every registered name.
pub fn model_names() -> Vec<&'static str> {
    entries().iter().map(|e| e.name).collect()
}

/// The entry registered as `name`.
pub fn entry(name: &str) -> Result<Entry> {
    let all = entries();
    all.iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or_else(|| ModelError::UnknownModel {
            name: name.to_string(),
            known: all.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        })
}

/// Builds the model registered as `name` with `opts` applied.
pub fn create_model(name: &str, opts: &ModelOptions) -> Result<Box<dyn Model>> {
    (entry(name)?.build)(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_errors_listing_the_registry() {
        let e = create_model("mixer_zz", &ModelOptions::default())
            .err()
            .expect("unknown");
        assert!(e.to_string().starts_with("unknown model `mixer_zz`"), "{e}");
    }

    /// timm's `pretrained_cfg` (timm 1.0.31): `mean`/`std` of `mixer_*` (0.5) and
    /// `resmlp_*` (ImageNet), `crop_pct` 0.875 for both; the RepMLP family is evaluated
    /// with ImageNet's mean and std and a 224 crop of 256 (mmpretrain's RepMLP configs).
    #[test]
    fn reference_eval_transforms_are_timms() {
        let norm = |name: &str| entry(name).unwrap().eval_transform;
        for name in ["mixer_s16_224", "mixer_b16_224", "mixer_h14_224"] {
            assert_eq!(norm(name), Some(EvalTransform::SIGNED), "{name}");
        }
        for name in [
            "resmlp_12_224",
            "resmlp_big_24_224",
            "repmlpnet_t224",
            "repmlpnet_l256",
            "repmlp_res50_light_224",
        ] {
            assert_eq!(norm(name), Some(EvalTransform::IMAGENET), "{name}");
        }
        for name in ["mixer_tiny", "resmlp_tiny", "repmlp_tiny", "repmlp_pure"] {
            assert_eq!(norm(name), None, "{name}");
        }
        assert_eq!(EvalTransform::IMAGENET.std, [0.229, 0.224, 0.225]);
        assert_eq!(EvalTransform::SIGNED.crop_pct, 0.875);
    }
}
