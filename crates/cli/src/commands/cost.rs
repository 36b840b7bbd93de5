//! Parameter counts and multiply-accumulates (MACs) per image, from configurations.
//!
//! MACs count every Linear / Conv2d / FC3 multiply-accumulate at batch 1, as the RepMLP
//! models' own `macs()` do (docs/repmlp.md): normalisations, activations, pooling, gates and
//! residual additions are not counted. This is the quantity the Mixer, ResMLP and RepMLP papers
//! (and timm / fvcore) report as "FLOPs"; one MAC is two floating-point operations.

use allmlp_layers::num_parameters;
use allmlp_models::repmlp::{ConvBn, ResBlock};
use allmlp_models::{
    IsotropicConfig, MixerConfig, ModelOptions, RepMlpNetConfig, RepMlpPure, RepMlpResNet,
    ResMlpConfig, create_model,
};

use super::known::{Known, lookup, pure_config, resnet_config};
use super::{CliError, CliResult};

/// What one model costs.
pub struct Cost {
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-accumulates per image, when known.
    pub macs: Option<u64>,
}

/// Patch stem: S positions × C outputs × (in·P²) inputs.
fn patch_stem_macs(s: usize, c: usize, in_chans: usize, p: usize) -> u64 {
    (s * c * in_chans * p * p) as u64
}

/// One Mixer block: token MLP on each channel (S→D_S→S), channel MLP on each token (C→D_C→C).
pub fn mixer_block_macs(c: &MixerConfig) -> u64 {
    let (s, d) = (c.num_patches(), c.embed_dim);
    (d * 2 * s * c.tokens_hidden + s * 2 * d * c.channels_hidden) as u64
}

/// The Mixer's rows: stem, one block, head.
pub fn mixer_macs(c: &MixerConfig) -> (u64, u64, u64) {
    let s = c.num_patches();
    (
        patch_stem_macs(s, c.embed_dim, c.in_chans, c.patch_size),
        mixer_block_macs(c),
        (c.embed_dim * c.num_classes) as u64,
    )
}

/// One ResMLP block: the token Linear (S×S on each channel) and the channel MLP.
pub fn resmlp_block_macs(c: &ResMlpConfig) -> u64 {
    let (s, d) = (c.num_patches(), c.embed_dim);
    (d * s * s + s * 2 * d * c.channels_hidden) as u64
}

/// ResMLP's rows: stem, one block, head.
pub fn resmlp_macs(c: &ResMlpConfig) -> (u64, u64, u64) {
    let s = c.num_patches();
    (
        patch_stem_macs(s, c.embed_dim, c.in_chans, c.patch_size),
        resmlp_block_macs(c),
        (c.embed_dim * c.num_classes) as u64,
    )
}

/// RepMLPNet `conv_embedding`: kernel = stride = patch.
pub fn repmlpnet_embedding_macs(c: &RepMlpNetConfig) -> u64 {
    let f = c.img_size / c.patch_size.max(1);
    (f * f * c.channels[0] * c.in_chans * c.patch_size * c.patch_size) as u64
}

/// One RepMLPNet unit of stage `i` on its `f×f` map: Global Perceptron (on the pooled vector),
/// FC3 (`C·H·W·h·w`), the local branches in the training form (`C·H·W·k²` each), the FFN.
pub fn repmlpnet_unit_macs(c: &RepMlpNetConfig, i: usize) -> u64 {
    let f = c.feature_sizes()[i];
    let ch = c.channels[i];
    let r = ch / c.globalperceptron_reduce.max(1);
    let hw = c.hs[i] * c.ws[i];
    let mut m = 2 * ch * r + ch * f * f * hw;
    if !c.deploy {
        m += c
            .reparam_conv_k
            .iter()
            .map(|k| ch * f * f * k * k)
            .sum::<usize>();
    }
    m += 2 * f * f * ch * ch * c.ffn_expand;
    m as u64
}

/// RepMLPNet `embeds.{i}`: 2×2 stride-2 conv from stage `i` to stage `i + 1`.
pub fn repmlpnet_embed_macs(c: &RepMlpNetConfig, i: usize) -> u64 {
    let f = c.feature_sizes()[i] / 2;
    (f * f * c.channels[i + 1] * c.channels[i] * 4) as u64
}

/// Every Linear/Conv MAC of a RepMLPNet.
pub fn repmlpnet_macs(c: &RepMlpNetConfig) -> u64 {
    let n = c.num_stages();
    let mut m = repmlpnet_embedding_macs(c);
    for i in 0..n {
        m += c.num_blocks[i] as u64 * repmlpnet_unit_macs(c, i);
        if i + 1 < n {
            m += repmlpnet_embed_macs(c, i);
        }
    }
    m + (c.channels[n - 1] * c.num_classes) as u64
}

/// A RepMLP (v1) `ConvBn` (either form) whose output is `out_hw`: each weight element
/// (`O·C/groups·k·k`) is used once per output position.
pub fn conv_bn_macs(c: &ConvBn, out_hw: (usize, usize)) -> u64 {
    (c.conv.weight.value().numel() * out_hw.0 * out_hw.1) as u64
}

/// One RepMLP-ResNet block taking an `in_hw` map to `out_hw`: the first 1×1 conv of a plain
/// bottleneck runs before its (strided) 3×3, at the input size; every other conv, the
/// shortcut included, produces the output size; a RepMLP block counts its own MACs.
pub fn resnet_block_macs(b: &ResBlock, in_hw: (usize, usize), out_hw: (usize, usize)) -> u64 {
    let sc = |s: &Option<ConvBn>| s.as_ref().map_or(0, |c| conv_bn_macs(c, out_hw));
    let at_out = |cs: &[&ConvBn]| cs.iter().map(|c| conv_bn_macs(c, out_hw)).sum::<u64>();
    match b {
        ResBlock::Base(b) => {
            conv_bn_macs(&b.conv1, in_hw) + at_out(&[&b.conv2, &b.conv3]) + sc(&b.shortcut)
        }
        ResBlock::Light(b) => {
            at_out(&[&b.light_conv1, &b.light_conv3])
                + b.light_repmlp.config.macs()
                + sc(&b.shortcut)
        }
        ResBlock::Bottleneck(b) => {
            let convs = [&b.btnk_conv1, &b.btnk_conv2, &b.btnk_conv4, &b.btnk_conv5];
            at_out(&convs) + b.btnk_repmlp.config.macs() + sc(&b.shortcut)
        }
    }
}

/// The cost of `name` built with `opts`: analytic for Mixer, ResMLP and RepMLPNet (nothing
/// allocated); RepMLP (v1) models are built once (their `macs()` is computed while building).
/// An unknown-to-the-CLI registered name is built once for its parameter count.
pub fn cost(name: &str, opts: &ModelOptions) -> CliResult<Cost> {
    let e = |m: allmlp_models::ModelError| CliError::from(m);
    Ok(match lookup(name) {
        Some(Known::Mixer(f)) => {
            let c = f().with_options(opts);
            c.validate(name).map_err(e)?;
            let (stem, block, head) = mixer_macs(&c);
            Cost {
                params: c.num_parameters(),
                macs: Some(stem + c.depth as u64 * block + head),
            }
        }
        Some(Known::ResMlp(f)) => {
            let c = f().with_options(opts);
            c.validate(name).map_err(e)?;
            let (stem, block, head) = resmlp_macs(&c);
            Cost {
                params: c.num_parameters(),
                macs: Some(stem + c.depth as u64 * block + head),
            }
        }
        Some(Known::RepMlpNet(f)) => {
            let c = f().with_options(opts).map_err(e)?;
            Cost {
                params: c.num_parameters().map_err(e)?,
                macs: Some(repmlpnet_macs(&c)),
            }
        }
        Some(Known::RepMlpResNet(f)) => {
            let m = RepMlpResNet::new(name, resnet_config(f, opts), opts.seed).map_err(e)?;
            Cost {
                params: num_parameters(&m),
                macs: Some(m.macs()),
            }
        }
        Some(Known::RepMlpPure(f)) => {
            let m = RepMlpPure::new(name, pure_config(f, opts), opts.seed).map_err(e)?;
            Cost {
                params: num_parameters(&m),
                macs: Some(m.macs()),
            }
        }
        None => Cost {
            params: num_parameters(&*create_model(name, opts).map_err(e)?),
            macs: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic counts equal the built models' for every small registered model.
    #[test]
    fn analytic_counts_match_built_models() {
        for name in ["mixer_tiny", "resmlp_tiny", "repmlp_tiny", "repmlp_pure"] {
            let opts = ModelOptions::default();
            let built = num_parameters(&*create_model(name, &opts).unwrap());
            assert_eq!(cost(name, &opts).unwrap().params, built, "{name}");
        }
        // With options applied.
        let opts = ModelOptions {
            img_size: Some(32),
            in_chans: Some(3),
            num_classes: Some(7),
            ..ModelOptions::default()
        };
        for name in ["mixer_tiny", "resmlp_tiny"] {
            let built = num_parameters(&*create_model(name, &opts).unwrap());
            assert_eq!(cost(name, &opts).unwrap().params, built, "{name}");
        }
    }

    /// Hand-computed Mixer/ResMLP MACs, and the published figures (timm/fvcore "GFLOPs" are MACs).
    #[test]
    fn macs_match_hand_counts_and_papers() {
        let o = ModelOptions::default();
        // mixer_tiny: S 49, C 128, D_S 64, D_C 512, 1 input channel, P 4, 10 classes.
        let block = 128 * 2 * 49 * 64 + 49 * 2 * 128 * 512;
        let want = 49 * 128 * 16 + 8 * block + 128 * 10;
        assert_eq!(cost("mixer_tiny", &o).unwrap().macs, Some(want as u64));
        let g = |n: &str| cost(n, &o).unwrap().macs.unwrap() as f64 / 1e9;
        // Published: Mixer-B/16 12.61G, ResMLP-12 3.0G, RepMLPNet-T224 2.8G, -B256 9.6G.
        assert!(
            (g("mixer_b16_224") - 12.61).abs() < 0.05,
            "{}",
            g("mixer_b16_224")
        );
        assert!(
            (g("resmlp_12_224") - 3.0).abs() < 0.05,
            "{}",
            g("resmlp_12_224")
        );
        assert!(
            (g("repmlpnet_t224") - 2.8).abs() < 0.1,
            "{}",
            g("repmlpnet_t224")
        );
        assert!(
            (g("repmlpnet_b256") - 9.6).abs() < 0.2,
            "{}",
            g("repmlpnet_b256")
        );
    }
}
