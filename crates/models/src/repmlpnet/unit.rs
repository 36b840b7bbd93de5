//! `RepMlpNetUnit`: `y = x + RepMLPBlock(prebn1(x))`, then `z = y + FFN(prebn2(y))`, with the
//! authors' names (`repmlp_block.*`, `ffn_block.ffn_fc1.*`, `ffn_block.ffn_fc2.*`, `prebn1.*`,
//! `prebn2.*`). The FFN is 1×1 conv-BN (C → 4C), GELU (exact erf, `nn.GELU()`), 1×1 conv-BN
//! (4C → C). No drop path (the authors have none).

use allmlp_layers::autograd::ops::Conv2dParams;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{BatchNorm2d, Ctx, Gelu, Module, Visitor, join};

use super::block::{RepMlpBlock, RepMlpBlockConfig};
use super::conv_bn::ConvBn;
use crate::deploy::copy_bn2d;
use crate::error::ModelError;

/// The channel-mixing FFN (`ffn_block`).
#[derive(Debug)]
pub struct FfnBlock {
    /// `ffn_fc1`: 1×1 conv-BN `C → hidden`.
    pub ffn_fc1: ConvBn,
    /// `ffn_fc2`: 1×1 conv-BN `hidden → C`.
    pub ffn_fc2: ConvBn,
    /// The activation between them.
    pub act: Gelu,
}

impl FfnBlock {
    /// `channels → hidden → channels`, default init from `seed`.
    pub fn new(channels: usize, hidden: usize, act: Gelu, seed: u64) -> Result<FfnBlock> {
        let p = Conv2dParams::new((1, 1), (0, 0), 1);
        Ok(FfnBlock {
            ffn_fc1: ConvBn::new(channels, hidden, 1, p, false, seed)?,
            ffn_fc2: ConvBn::new(hidden, channels, 1, p, false, seed.wrapping_add(1))?,
            act,
        })
    }
}

impl Module for FfnBlock {
    /// `x [N, C, H, W]` → `[N, C, H, W]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let h = self.act.forward(&self.ffn_fc1.forward(x, ctx)?, ctx)?;
        self.ffn_fc2.forward(&h, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.ffn_fc1.visit(&join(prefix, "ffn_fc1"), v);
        self.ffn_fc2.visit(&join(prefix, "ffn_fc2"), v);
    }
}

/// One RepMLPNet unit (block + FFN, each pre-normalised by BN and residual).
#[derive(Debug)]
pub struct RepMlpNetUnit {
    /// The token mixer.
    pub repmlp_block: RepMlpBlock,
    /// The channel mixer.
    pub ffn_block: FfnBlock,
    /// BN before the block.
    pub prebn1: BatchNorm2d,
    /// BN before the FFN.
    pub prebn2: BatchNorm2d,
}

impl RepMlpNetUnit {
    /// A unit around a block built from `block`; FFN hidden width `ffn_expand · C`.
    pub fn new(
        block: &RepMlpBlockConfig,
        ffn_expand: usize,
        act: Gelu,
        seed: u64,
    ) -> Result<RepMlpNetUnit> {
        let c = block.channels;
        Ok(RepMlpNetUnit {
            repmlp_block: RepMlpBlock::new(block, seed)?,
            ffn_block: FfnBlock::new(c, c * ffn_expand, act, seed.wrapping_add(16))?,
            prebn1: BatchNorm2d::new(c)?,
            prebn2: BatchNorm2d::new(c)?,
        })
    }
}

impl RepMlpNetUnit {
    /// The deploy form: the block locality-injected ([`RepMlpBlock::to_deploy`]); the FFN and
    /// the pre-BNs copied unfused, as the authors' `locality_injection` leaves them.
    pub fn to_deploy(&self) -> std::result::Result<RepMlpNetUnit, ModelError> {
        Ok(RepMlpNetUnit {
            repmlp_block: self.repmlp_block.to_deploy()?,
            ffn_block: FfnBlock {
                ffn_fc1: self.ffn_block.ffn_fc1.copy()?,
                ffn_fc2: self.ffn_block.ffn_fc2.copy()?,
                act: self.ffn_block.act,
            },
            prebn1: copy_bn2d(&self.prebn1)?,
            prebn2: copy_bn2d(&self.prebn2)?,
        })
    }
}

impl Module for RepMlpNetUnit {
    /// `x [N, C, H, W]` → `[N, C, H, W]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let y = x.add(
            &self
                .repmlp_block
                .forward(&self.prebn1.forward(x, ctx)?, ctx)?,
        )?;
        y.add(
            &self
                .ffn_block
                .forward(&self.prebn2.forward(&y, ctx)?, ctx)?,
        )
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.repmlp_block.visit(&join(prefix, "repmlp_block"), v);
        self.ffn_block.visit(&join(prefix, "ffn_block"), v);
        self.prebn1.visit(&join(prefix, "prebn1"), v);
        self.prebn2.visit(&join(prefix, "prebn2"), v);
    }
}
