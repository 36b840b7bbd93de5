//! `ConvBn`: the authors' `conv_bn` / `conv_bn_relu` — a bias-free `Conv2d`, a
//! `BatchNorm2d`, optionally a ReLU — with their `Sequential` names (`conv.*`, `bn.*`;
//! the ReLU has no parameters).

use allmlp_layers::autograd::ops::Conv2dParams;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{BatchNorm2d, Conv2d, Ctx, Module, Visitor, join};

use crate::deploy::{copy_bn2d, copy_conv2d};
use crate::error::ModelError;

/// Conv (no bias) → BN → optional ReLU.
#[derive(Debug)]
pub struct ConvBn {
    /// `conv.weight [O, C/groups, k, k]`.
    pub conv: Conv2d,
    /// `bn.*` over `O` channels.
    pub bn: BatchNorm2d,
    /// Whether a ReLU follows (`conv_bn_relu`).
    pub relu: bool,
}

impl ConvBn {
    /// `cin → cout`, square kernel `k`, `params` (stride, padding, groups), PyTorch's
    /// default initialisation from `seed`.
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        params: Conv2dParams,
        relu: bool,
        seed: u64,
    ) -> Result<ConvBn> {
        Ok(ConvBn {
            conv: Conv2d::new(cin, cout, (k, k), params, false, seed)?,
            bn: BatchNorm2d::new(cout)?,
            relu,
        })
    }
}

impl ConvBn {
    /// An independent copy (the authors' `locality_injection` leaves these conv-BNs unfused,
    /// so the deploy model carries them unchanged).
    pub fn copy(&self) -> std::result::Result<ConvBn, ModelError> {
        Ok(ConvBn {
            conv: copy_conv2d(&self.conv)?,
            bn: copy_bn2d(&self.bn)?,
            relu: self.relu,
        })
    }
}

impl Module for ConvBn {
    /// `x [N, C, H, W]` → `[N, O, OH, OW]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let y = self.bn.forward(&self.conv.forward(x, ctx)?, ctx)?;
        Ok(if self.relu { y.relu() } else { y })
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.conv.visit(&join(prefix, "conv"), v);
        self.bn.visit(&join(prefix, "bn"), v);
    }
}
