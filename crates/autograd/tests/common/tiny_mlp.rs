//! Tiny MLP-Mixer and ResMLP built from raw autograd ops, with timm's parameter
//! names. Shared by the PyTorch parity test and the train-step benchmark
//! (`benches/benches/train_step.rs` includes this file) until the layers and
//! models crates provide the real modules.

#![allow(dead_code)]

use std::collections::BTreeMap;

use allmlp_autograd::ops::{Conv2dParams, conv2d, layer_norm, linear};
use allmlp_autograd::{Result, Var};

/// Which architecture the parameters describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// MLP-Mixer: LayerNorm, token MLP, channel MLP.
    Mixer,
    /// ResMLP: Affine, token linear, LayerScale.
    ResMlp,
}

/// A model as a map from timm parameter names to parameters.
pub struct TinyMlp {
    pub arch: Arch,
    pub params: BTreeMap<String, Var>,
    pub patch: usize,
    pub depth: usize,
}

/// Shapes of a tiny model's parameters, in timm's names.
pub fn param_shapes(
    arch: Arch,
    in_chans: usize,
    img: usize,
    patch: usize,
    dim: usize,
    depth: usize,
    classes: usize,
) -> Vec<(String, Vec<usize>)> {
    let s = (img / patch) * (img / patch);
    let mut v = vec![
        (
            "stem.proj.weight".to_string(),
            vec![dim, in_chans, patch, patch],
        ),
        ("stem.proj.bias".to_string(), vec![dim]),
    ];
    let mut add = |n: String, shape: Vec<usize>| v.push((n, shape));
    for i in 0..depth {
        let b = format!("blocks.{i}");
        match arch {
            Arch::Mixer => {
                let ds = dim / 2;
                for n in ["norm1", "norm2"] {
                    add(format!("{b}.{n}.weight"), vec![dim]);
                    add(format!("{b}.{n}.bias"), vec![dim]);
                }
                add(format!("{b}.mlp_tokens.fc1.weight"), vec![ds, s]);
                add(format!("{b}.mlp_tokens.fc1.bias"), vec![ds]);
                add(format!("{b}.mlp_tokens.fc2.weight"), vec![s, ds]);
                add(format!("{b}.mlp_tokens.fc2.bias"), vec![s]);
            }
            Arch::ResMlp => {
                for n in ["norm1", "norm2"] {
                    add(format!("{b}.{n}.alpha"), vec![1, 1, dim]);
                    add(format!("{b}.{n}.beta"), vec![1, 1, dim]);
                }
                add(format!("{b}.linear_tokens.weight"), vec![s, s]);
                add(format!("{b}.linear_tokens.bias"), vec![s]);
                add(format!("{b}.ls1"), vec![dim]);
                add(format!("{b}.ls2"), vec![dim]);
            }
        }
        add(format!("{b}.mlp_channels.fc1.weight"), vec![4 * dim, dim]);
        add(format!("{b}.mlp_channels.fc1.bias"), vec![4 * dim]);
        add(format!("{b}.mlp_channels.fc2.weight"), vec![dim, 4 * dim]);
        add(format!("{b}.mlp_channels.fc2.bias"), vec![dim]);
    }
    match arch {
        Arch::Mixer => {
            add("norm.weight".into(), vec![dim]);
            add("norm.bias".into(), vec![dim]);
        }
        Arch::ResMlp => {
            add("norm.alpha".into(), vec![1, 1, dim]);
            add("norm.beta".into(), vec![1, 1, dim]);
        }
    }
    add("head.weight".into(), vec![classes, dim]);
    add("head.bias".into(), vec![classes]);
    v
}

impl TinyMlp {
    fn p(&self, name: &str) -> &Var {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("missing parameter {name}"))
    }

    fn mlp(&self, prefix: &str, x: &Var) -> Result<Var> {
        let h = linear(
            x,
            self.p(&format!("{prefix}.fc1.weight")),
            Some(self.p(&format!("{prefix}.fc1.bias"))),
        )?;
        linear(
            &h.gelu(),
            self.p(&format!("{prefix}.fc2.weight")),
            Some(self.p(&format!("{prefix}.fc2.bias"))),
        )
    }

    fn norm(&self, prefix: &str, x: &Var) -> Result<Var> {
        match self.arch {
            Arch::Mixer => layer_norm(
                x,
                Some(self.p(&format!("{prefix}.weight"))),
                Some(self.p(&format!("{prefix}.bias"))),
                1e-6,
            ),
            Arch::ResMlp => x
                .mul(self.p(&format!("{prefix}.alpha")))?
                .add(self.p(&format!("{prefix}.beta"))),
        }
    }

    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    pub fn forward(&self, images: &Var) -> Result<Var> {
        let stem = conv2d(
            images,
            self.p("stem.proj.weight"),
            Some(self.p("stem.proj.bias")),
            Conv2dParams::square(self.patch, 0, 1),
        )?;
        let [b, c, h, w] = stem.shape()[..] else {
            unreachable!("conv2d output is 4-d")
        };
        let mut x = stem.reshape(&[b, c, h * w])?.transpose(1, 2)?; // [B, S, C]
        for i in 0..self.depth {
            let blk = format!("blocks.{i}");
            let t = self.norm(&format!("{blk}.norm1"), &x)?.transpose(1, 2)?; // [B, C, S]
            let t = match self.arch {
                Arch::Mixer => self.mlp(&format!("{blk}.mlp_tokens"), &t)?,
                Arch::ResMlp => linear(
                    &t,
                    self.p(&format!("{blk}.linear_tokens.weight")),
                    Some(self.p(&format!("{blk}.linear_tokens.bias"))),
                )?,
            }
            .transpose(1, 2)?;
            let t = match self.arch {
                Arch::Mixer => t,
                Arch::ResMlp => t.mul(self.p(&format!("{blk}.ls1")))?,
            };
            x = x.add(&t)?;
            let m = self.mlp(
                &format!("{blk}.mlp_channels"),
                &self.norm(&format!("{blk}.norm2"), &x)?,
            )?;
            let m = match self.arch {
                Arch::Mixer => m,
                Arch::ResMlp => m.mul(self.p(&format!("{blk}.ls2")))?,
            };
            x = x.add(&m)?;
        }
        let x = self.norm("norm", &x)?.mean(&[1], false)?;
        linear(&x, self.p("head.weight"), Some(self.p("head.bias")))
    }
}
