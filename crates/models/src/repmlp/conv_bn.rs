//! `ConvBn`: the authors' `ConvBN` / `ConvBNReLU` (conv without bias → BatchNorm2d → optional
//! ReLU). The deploy form is the conv with a bias (the BN folded into it) and no `bn`.
//!
//! Names: `conv.weight`, `bn.{weight,bias,running_mean,running_var,num_batches_tracked}`
//! (train form); `conv.weight`, `conv.bias` (deploy form).

use allmlp_layers::autograd::ops::Conv2dParams;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{BatchNorm2d, Conv2d, Ctx, Module, Visitor, join};
use allmlp_reparam::fuse_bn;

use crate::deploy::{bn2d, copy_conv2d};
use crate::error::ModelError;

/// Conv → BN (train form) or conv with bias (deploy form), then ReLU if `relu`.
#[derive(Debug)]
pub struct ConvBn {
    /// `[O, C/groups, k, k]`; with a bias `[O]` in the deploy form only.
    pub conv: Conv2d,
    /// The BatchNorm2d(O) of the train form; `None` in the deploy form.
    pub bn: Option<BatchNorm2d>,
    /// Apply a ReLU at the end (`ConvBNReLU`).
    pub relu: bool,
}

/// Geometry of a [`ConvBn`]: channels, square kernel, stride, padding, groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Zero padding along both axes.
    pub padding: usize,
}

impl ConvSpec {
    /// A `k×k` conv, stride 1, padding `k/2` (size-preserving for odd `k`).
    pub fn same(in_channels: usize, out_channels: usize, kernel: usize) -> ConvSpec {
        ConvSpec {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
        }
    }

    /// Multiply-accumulates of the conv on an `h×w` input (per image).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (oh, ow) = self.out_size(h, w);
        (oh * ow * self.out_channels * self.in_channels * self.kernel * self.kernel) as u64
    }

    /// Output size on an `h×w` input.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |n: usize| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        (o(h), o(w))
    }
}

impl ConvBn {
    /// PyTorch's default initialisation (conv kaiming-uniform, BN weight 1, bias 0) from `seed`;
    /// `deploy` builds the deploy form (conv with a default-initialised bias, no BN).
    pub fn new(spec: ConvSpec, relu: bool, deploy: bool, seed: u64) -> Result<ConvBn> {
        let p = Conv2dParams::square(spec.stride, spec.padding, 1);
        let k = (spec.kernel, spec.kernel);
        let conv = Conv2d::new(spec.in_channels, spec.out_channels, k, p, deploy, seed)?;
        let bn = if deploy {
            None
        } else {
            Some(BatchNorm2d::new(spec.out_channels)?)
        };
        Ok(ConvBn { conv, bn, relu })
    }

    /// True for the deploy form.
    pub fn is_deploy(&self) -> bool {
        self.bn.is_none()
    }

    /// The deploy form: the BN (eval-mode statistics) folded into the conv, which gains a
    /// bias (`allmlp_reparam::fuse_bn`); a deploy-form `ConvBn` is copied as it is.
    pub fn to_deploy(&self) -> std::result::Result<ConvBn, ModelError> {
        let conv = match &self.bn {
            Some(bn) => {
                let b0 = self.conv.bias.as_ref().map(|b| b.value());
                let (w, b) = fuse_bn(&self.conv.weight.value(), b0.as_ref(), &bn2d(bn)?)?;
                Conv2d::from_tensors(w, Some(b), self.conv.params)?
            }
            None => copy_conv2d(&self.conv)?,
        };
        Ok(ConvBn {
            conv,
            bn: None,
            relu: self.relu,
        })
    }
}

impl Module for ConvBn {
    /// `x [N, C, H, W]` → `[N, O, OH, OW]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let mut y = self.conv.forward(x, ctx)?;
        if let Some(bn) = &self.bn {
            y = bn.forward(&y, ctx)?;
        }
        Ok(if self.relu { y.relu() } else { y })
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.conv.visit(&join(prefix, "conv"), v);
        if let Some(bn) = &self.bn {
            bn.visit(&join(prefix, "bn"), v);
        }
    }
}
