//! Tiny MLP-Mixer and ResMLP built from raw autograd ops, with timm's parameter
//! names, for the PyTorch gradient-parity test: autograd is tested on its own,
//! below the layers and models crates (which have parity tests of their own).

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
