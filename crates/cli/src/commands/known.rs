//! The registered models the CLI knows how to cost and inspect without building them.
//!
//! The registry (`allmlp_models::entries`) hands out builders that return `Box<dyn Model>`; a
//! boxed model cannot be turned back into its concrete type, and building a full-size model
//! allocates hundreds of MB. So the CLI maps each registered name to the public function that
//! fills its configuration, and counts parameters and multiply-accumulates from that
//! configuration. A name missing here still works everywhere: `models` then builds it once to
//! count its parameters (MACs shown as `-`), `info` shows parameter-only rows. A unit test
//! checks every registered name is here, so adding a model reminds whoever adds it.

use allmlp_models::repmlp::ResNetBlockKind;
use allmlp_models::{
    MixerConfig, ModelOptions, RepMlpNetConfig, RepMlpPureConfig, RepMlpResNetConfig, ResMlpConfig,
    mixer, repmlpnet, resmlp,
};

/// A registered name's configuration function, by architecture.
#[derive(Clone, Copy)]
pub enum Known {
    /// MLP-Mixer.
    Mixer(fn() -> MixerConfig),
    /// ResMLP.
    ResMlp(fn() -> ResMlpConfig),
    /// RepMLPNet.
    RepMlpNet(fn() -> RepMlpNetConfig),
    /// RepMLP (v1) ResNet hybrid.
    RepMlpResNet(fn() -> RepMlpResNetConfig),
    /// RepMLP (v1) pure-MLP net.
    RepMlpPure(fn() -> RepMlpPureConfig),
}

fn res50_light() -> RepMlpResNetConfig {
    RepMlpResNetConfig::res50_224(ResNetBlockKind::Light)
}

fn res50_bottleneck() -> RepMlpResNetConfig {
    RepMlpResNetConfig::res50_224(ResNetBlockKind::Bottleneck)
}

/// The configuration function registered under `name`, if the CLI knows it.
pub fn lookup(name: &str) -> Option<Known> {
    use Known::*;
    let k = match name {
        "mixer_s32_224" => Mixer(mixer::mixer_s32_224),
        "mixer_s16_224" => Mixer(mixer::mixer_s16_224),
        "mixer_b32_224" => Mixer(mixer::mixer_b32_224),
        "mixer_b16_224" => Mixer(mixer::mixer_b16_224),
        "mixer_l32_224" => Mixer(mixer::mixer_l32_224),
        "mixer_l16_224" => Mixer(mixer::mixer_l16_224),
        "mixer_h14_224" => Mixer(mixer::mixer_h14_224),
        "mixer_tiny" => Mixer(mixer::mixer_tiny),
        "resmlp_12_224" => ResMlp(resmlp::resmlp_12_224),
        "resmlp_24_224" => ResMlp(resmlp::resmlp_24_224),
        "resmlp_36_224" => ResMlp(resmlp::resmlp_36_224),
        "resmlp_big_24_224" => ResMlp(resmlp::resmlp_big_24_224),
        "resmlp_tiny" => ResMlp(resmlp::resmlp_tiny),
        "repmlp_res50_light_224" => RepMlpResNet(res50_light),
        "repmlp_res50_bottleneck_224" => RepMlpResNet(res50_bottleneck),
        "repmlp_pure" => RepMlpPure(RepMlpPureConfig::pure_cifar),
        "repmlp_tiny" => RepMlpPure(RepMlpPureConfig::tiny_fmnist),
        _ => {
            return repmlpnet::NAMED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| RepMlpNet(*f));
        }
    };
    Some(k)
}

/// Applies the size options the RepMLP (v1) registry builders apply.
pub fn resnet_config(f: fn() -> RepMlpResNetConfig, o: &ModelOptions) -> RepMlpResNetConfig {
    let mut c = f();
    c.img_size = o.img_size.unwrap_or(c.img_size);
    c.in_chans = o.in_chans.unwrap_or(c.in_chans);
    c.num_classes = o.num_classes.unwrap_or(c.num_classes);
    c
}

/// Applies the size options the RepMLP (v1) registry builders apply.
pub fn pure_config(f: fn() -> RepMlpPureConfig, o: &ModelOptions) -> RepMlpPureConfig {
    let mut c = f();
    c.img_size = o.img_size.unwrap_or(c.img_size);
    c.in_chans = o.in_chans.unwrap_or(c.in_chans);
    c.num_classes = o.num_classes.unwrap_or(c.num_classes);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_name_is_known() {
        for e in allmlp_models::entries() {
            assert!(
                lookup(e.name).is_some(),
                "{}: add it to commands/known.rs",
                e.name
            );
        }
    }
}
