//! `RepMlpBlock`: RepMLPNet's token mixer (the authors' `RepMLPBlock` in `repmlpnet.py`),
//! in its training structure and its deploy (locality-injected) structure.
//!
//! Input and output `[N, C, H, W]`, partitions `h × w` (`H % h = W % w = 0`, `hp = H/h`,
//! `wp = W/w`), `S` sharesets (`C % S = 0`, `G = C/S` channel groups share FC3).
//!
//! - **Global Perceptron** `gp` (SE-like): GAP → 1×1 conv `gp.fc1` (C → C/r, bias) → ReLU →
//!   1×1 conv `gp.fc2` (→ C, bias) → sigmoid: a `[N, C, 1, 1]` gate that MULTIPLIES the output.
//! - **Partition Perceptron** `fc3`: `x` is cut into partitions `[N, hp, wp, C, h, w]`, read as
//!   `B = N·hp·wp·G` rows of `S` planes of `h·w` pixels, and plane `s` of every row goes
//!   through the same `h·w × h·w` matrix `W_s`. The authors store it as
//!   `Conv2d(S·h·w, S·h·w, 1, groups=S)`, `fc3.weight [S·h·w, h·w, 1, 1]`; here it is ONE batched
//!   GEMM over the `S` sharesets, `[S, B, h·w] × [S, h·w, h·w]` (see the spec's implementation
//!   note: the grouped-1×1-conv form is several times slower). Training: no bias, then
//!   `fc3_bn = BatchNorm2d(S)` on `[B, S, h, w]`. Deploy: `fc3.bias [S·h·w]`, no BN.
//! - **Local Perceptron** (training only): for each `k` in `reparam_conv_k`, `repconv{k}` =
//!   depthwise conv `S → S`, `k × k`, padding `k/2`, groups `S`, + BN, on the same `[B, S, h, w]`
//!   planes (zero padding at partition borders); their sum is added to FC3's output.
//! - The result goes back to `[N, C, H, W]` with the authors' reshapes, exactly: they read the
//!   `[B, S, h, w]` result as `[N·G, hp, wp, S, h, w]` (leading axis `N·G`, not `N`), permute
//!   `(0, 3, 1, 4, 2, 5)` and reshape to `[N, C, H, W]`. When `hp·wp > 1` and `G > 1` this is not
//!   the inverse of the partitioning (partitions and channel groups are shuffled); every named
//!   config has `hp = wp = 1` where it is the inverse. Reproduced as is, so authors' checkpoints
//!   compute what they computed there.
//!
//! Deploy (`local_inject`): the local branches and `fc3_bn` fold into `fc3.weight`/`fc3.bias`
//! ([`RepMlpBlock::to_deploy`], docs/reparam.md).

use allmlp_layers::autograd::ops::{Conv2dParams, adaptive_avg_pool2d};
use allmlp_layers::autograd::tensor_core::TensorError;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::{Result, Var};
use allmlp_layers::{BatchNorm2d, Conv2d, Ctx, Module, Visitor, join};

use allmlp_reparam::{ConvBn as ReparamConvBn, Fc3Bn, equivalent_fc3};

use super::conv_bn::ConvBn;
use crate::deploy::{already_deployed, bn2d, copy_conv2d};
use crate::error::ModelError;

/// The SE-like Global Perceptron (`gp.fc1`, `gp.fc2`).
#[derive(Debug)]
pub struct GlobalPerceptron {
    /// `gp.fc1`: 1×1 conv `C → C/r` with bias.
    pub fc1: Conv2d,
    /// `gp.fc2`: 1×1 conv `C/r → C` with bias.
    pub fc2: Conv2d,
}

impl GlobalPerceptron {
    /// `channels → channels / reduce → channels`, PyTorch's default init from `seed`.
    pub fn new(channels: usize, hidden: usize, seed: u64) -> Result<GlobalPerceptron> {
        let p = Conv2dParams::new((1, 1), (0, 0), 1);
        Ok(GlobalPerceptron {
            fc1: Conv2d::new(channels, hidden, (1, 1), p, true, seed)?,
            fc2: Conv2d::new(hidden, channels, (1, 1), p, true, seed.wrapping_add(1))?,
        })
    }
}

impl Module for GlobalPerceptron {
    /// `x [N, C, H, W]` → gate `[N, C, 1, 1]` in (0, 1).
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let v = adaptive_avg_pool2d(x, (1, 1))?;
        let v = self.fc1.forward(&v, ctx)?.relu();
        Ok(self.fc2.forward(&v, ctx)?.sigmoid())
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.fc1.visit(&join(prefix, "fc1"), v);
        self.fc2.visit(&join(prefix, "fc2"), v);
    }
}

/// One local branch `repconv{k}`: depthwise `k × k` conv (groups `S`) + BN.
#[derive(Debug)]
pub struct LocalBranch {
    /// Kernel side (odd).
    pub k: usize,
    /// `repconv{k}.conv`, `repconv{k}.bn`.
    pub conv_bn: ConvBn,
}

/// What surrounds the FC3 GEMM: the training structure or its deploy fold. The parts both
/// forms share (`gp`, `fc3.weight`, the partitioning, the GEMM) live in [`RepMlpBlock`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per block, never moved in a hot path
pub enum BlockForm {
    /// Training: `fc3` has no bias; `fc3_bn` follows it and the local branches add to it.
    Train {
        /// `fc3_bn`: BatchNorm2d over the `S` sharesets.
        fc3_bn: BatchNorm2d,
        /// `repconv{k}` for each `k` of `reparam_conv_k`, in that order.
        local: Vec<LocalBranch>,
    },
    /// Deploy (after the authors' `locality_injection()`): `fc3` carries a bias and is all.
    Deploy,
}

/// Hyper-parameters of one [`RepMlpBlock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepMlpBlockConfig {
    /// Channels `C` (in = out).
    pub channels: usize,
    /// Partition height `h`.
    pub h: usize,
    /// Partition width `w`.
    pub w: usize,
    /// Sharesets `S` (`C % S = 0`).
    pub sharesets: usize,
    /// Local-branch kernel sides (odd, distinct), e.g. `[1, 3]`; empty for none.
    pub reparam_conv_k: Vec<usize>,
    /// Global Perceptron reduction `r` (hidden `C / r`, at least 1).
    pub globalperceptron_reduce: usize,
    /// Build the deploy structure.
    pub deploy: bool,
}

impl RepMlpBlockConfig {
    /// Checks the values; the message says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (c, s, r) = (self.channels, self.sharesets, self.globalperceptron_reduce);
        if c == 0 || s == 0 || !c.is_multiple_of(s) {
            return Err(format!(
                "channels must be a positive multiple of sharesets, got channels {c}, sharesets {s}"
            ));
        }
        if r == 0 || c / r == 0 {
            return Err(format!(
                "globalperceptron_reduce must be in 1..=channels, got {r} with channels {c}"
            ));
        }
        if self.h == 0 || self.w == 0 {
            return Err(format!(
                "partition sides must be positive, got {}×{}",
                self.h, self.w
            ));
        }
        let ks = &self.reparam_conv_k;
        for (i, &k) in ks.iter().enumerate() {
            if k.is_multiple_of(2) || ks[..i].contains(&k) {
                return Err(format!(
                    "reparam_conv_k must hold distinct odd sizes, got {ks:?}"
                ));
            }
        }
        Ok(())
    }
}

/// RepMLPNet's RepMLPBlock; state_dict names as the authors' (`gp.*`, `fc3.*`, `fc3_bn.*`,
/// `repconv{k}.conv.weight`, `repconv{k}.bn.*`; deploy: `gp.*`, `fc3.weight`, `fc3.bias`).
#[derive(Debug)]
pub struct RepMlpBlock {
    /// Channels `C`.
    pub channels: usize,
    /// Partition height.
    pub h: usize,
    /// Partition width.
    pub w: usize,
    /// Sharesets `S`.
    pub sharesets: usize,
    /// The Global Perceptron.
    pub gp: GlobalPerceptron,
    /// `fc3.weight [S·h·w, h·w, 1, 1]` (the authors' grouped 1×1 conv layout) and, in the
    /// deploy form, `fc3.bias [S·h·w]`. Applied as a batched GEMM, never as a conv.
    pub fc3: Conv2d,
    /// Training or deploy structure.
    pub form: BlockForm,
}

impl RepMlpBlock {
    /// A block with PyTorch's default initialisation (what the authors' code gets), seeds
    /// derived from `seed`.
    pub fn new(cfg: &RepMlpBlockConfig, seed: u64) -> Result<RepMlpBlock> {
        cfg.validate()
            .map_err(|m| TensorError::arg("RepMLPBlock", m))?;
        let (c, s) = (cfg.channels, cfg.sharesets);
        let hw = cfg.h * cfg.w;
        let gp = GlobalPerceptron::new(c, c / cfg.globalperceptron_reduce, seed)?;
        let fc3_params = Conv2dParams::new((1, 1), (0, 0), s);
        let fc3 = Conv2d::new(s * hw, s * hw, (1, 1), fc3_params, cfg.deploy, seed + 2)?;
        let form = if cfg.deploy {
            BlockForm::Deploy
        } else {
            let local = cfg
                .reparam_conv_k
                .iter()
                .enumerate()
                .map(|(i, &k)| {
                    let p = Conv2dParams::new((1, 1), (k / 2, k / 2), s);
                    let conv_bn = ConvBn::new(s, s, k, p, false, seed + 3 + i as u64)?;
                    Ok(LocalBranch { k, conv_bn })
                })
                .collect::<Result<Vec<_>>>()?;
            BlockForm::Train {
                fc3_bn: BatchNorm2d::new(s)?,
                local,
            }
        };
        Ok(RepMlpBlock {
            channels: c,
            h: cfg.h,
            w: cfg.w,
            sharesets: s,
            gp,
            fc3,
            form,
        })
    }

    /// True for the deploy structure.
    pub fn is_deploy(&self) -> bool {
        matches!(self.form, BlockForm::Deploy)
    }

    /// The deploy (locality-injected) form of this training-structure block, computed once
    /// from its parameters and eval-mode BN statistics, as the authors' `local_inject`:
    /// `fc3` ⊕ `fc3_bn` (`BatchNorm2d(S)`, repeat-interleaved `h·w` times) ⊕ every
    /// `repconv{k}` (BN folded, padded to the largest `k`, depthwise conv → FC) →
    /// `fc3.weight` + `fc3.bias` (`allmlp_reparam::equivalent_fc3` with `Fc3Bn::PerChannel`);
    /// `gp` copied. A deploy-form block is an error.
    pub fn to_deploy(&self) -> std::result::Result<RepMlpBlock, ModelError> {
        let BlockForm::Train { fc3_bn, local } = &self.form else {
            return Err(already_deployed("RepMLPNet block"));
        };
        let branches = local
            .iter()
            .map(|b| {
                Ok(ReparamConvBn {
                    kernel: b.conv_bn.conv.weight.value(),
                    bn: bn2d(&b.conv_bn.bn)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, ModelError>>()?;
        let bn = bn2d(fc3_bn)?;
        let (weight, bias) = equivalent_fc3(
            &self.fc3.weight.value(),
            Fc3Bn::PerChannel(&bn),
            &branches,
            self.sharesets,
            self.h,
            self.w,
        )?;
        Ok(RepMlpBlock {
            channels: self.channels,
            h: self.h,
            w: self.w,
            sharesets: self.sharesets,
            gp: GlobalPerceptron {
                fc1: copy_conv2d(&self.gp.fc1)?,
                fc2: copy_conv2d(&self.gp.fc2)?,
            },
            fc3: Conv2d::from_tensors(weight, Some(bias), self.fc3.params)?,
            form: BlockForm::Deploy,
        })
    }

    /// FC3 as one batched GEMM over the sharesets: `rows [B, S, h·w]` → `[B, S, h·w]`,
    /// `out[b, s] = W_s · rows[b, s] (+ bias_s)`.
    fn fc3_gemm(&self, rows: &Var) -> Result<Var> {
        let (s, hw) = (self.sharesets, self.h * self.w);
        // [S·hw, hw, 1, 1] → [S, hw_out, hw_in] → Wᵀ per shareset [S, hw_in, hw_out] (a view).
        let wt = self.fc3.weight.reshape(&[s, hw, hw])?.transpose(1, 2)?;
        // [B, S, hw] → [S, B, hw]: a strided view the GEMM reads without copying.
        let mut y = rows.permute(&[1, 0, 2])?.matmul(&wt)?;
        if let Some(b) = &self.fc3.bias {
            y = y.add(&b.reshape(&[s, 1, hw])?)?;
        }
        y.permute(&[1, 0, 2])
    }

    fn check_input(&self, shape: &[usize]) -> Result<()> {
        let (c, h, w) = (self.channels, self.h, self.w);
        let ok = shape.len() == 4
            && shape[1] == c
            && shape[2] > 0
            && shape[3] > 0
            && shape[2].is_multiple_of(h)
            && shape[3].is_multiple_of(w);
        if ok {
            return Ok(());
        }
        Err(TensorError::shape(
            "RepMLPBlock",
            format!(
                "input [N, {c}, H, W] with H a multiple of {h} and W a multiple of {w} \
                 (FC3's weights fix the {h}×{w} partition)"
            ),
            fmt_shape(shape),
        )
        .into())
    }
}

impl Module for RepMlpBlock {
    /// `x [N, C, H, W]` → `[N, C, H, W]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let shape = x.shape();
        self.check_input(&shape)?;
        let (n, c, hh, ww) = (shape[0], shape[1], shape[2], shape[3]);
        let (h, w, s) = (self.h, self.w, self.sharesets);
        let (hp, wp, g) = (hh / h, ww / w, c / s);
        let rows = n * hp * wp * g;

        let gate = self.gp.forward(x, ctx)?;
        // [N, C, H, W] → partitions [N, hp, wp, C, h, w] → rows of S planes [B, S, h·w].
        let parts = x
            .reshape(&[n, c, hp, h, wp, w])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape(&[rows, s, h * w])?;
        let mut y = self.fc3_gemm(&parts)?.reshape(&[rows, s, h, w])?;
        if let BlockForm::Train { fc3_bn, local } = &self.form {
            y = fc3_bn.forward(&y, ctx)?;
            let planes = parts.reshape(&[rows, s, h, w])?;
            for b in local {
                y = y.add(&b.conv_bn.forward(&planes, ctx)?)?;
            }
        }
        // The authors' way back (see the module doc): [N·G, hp, wp, S, h, w] → permute → NCHW.
        let y = y
            .reshape(&[n * g, hp, wp, s, h, w])?
            .permute(&[0, 3, 1, 4, 2, 5])?
            .reshape(&[n, c, hh, ww])?;
        y.mul(&gate)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.gp.visit(&join(prefix, "gp"), v);
        self.fc3.visit(&join(prefix, "fc3"), v);
        if let BlockForm::Train { fc3_bn, local } = &self.form {
            fc3_bn.visit(&join(prefix, "fc3_bn"), v);
            for b in local {
                b.conv_bn
                    .visit(&join(prefix, &format!("repconv{}", b.k)), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_layers::autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_layers::autograd::tensor_core::Tensor;
    use allmlp_layers::{named_buffers, named_parameters};

    fn cfg(deploy: bool) -> RepMlpBlockConfig {
        RepMlpBlockConfig {
            channels: 4,
            h: 2,
            w: 1,
            sharesets: 2,
            reparam_conv_k: vec![1, 3],
            globalperceptron_reduce: 4,
            deploy,
        }
    }

    /// A BN with random affine parameters and statistics (mean 0 / var 1 hides errors).
    fn random_bn(c: usize, seed: u64) -> BatchNorm2d {
        let t = |lo: f32, hi: f32, k: u64| Tensor::rand_uniform(&[c], lo, hi, seed + k).unwrap();
        BatchNorm2d::from_tensors(
            Some(t(0.5, 1.5, 0)),
            Some(t(-0.3, 0.3, 1)),
            t(-0.5, 0.5, 2),
            t(0.5, 2.0, 3),
            1e-5,
            Some(0.1),
        )
        .unwrap()
    }

    fn conv(w: &Var, b: Option<&Var>, groups: usize, pad: usize) -> Conv2d {
        Conv2d {
            weight: w.clone(),
            bias: b.cloned(),
            params: Conv2dParams::new((1, 1), (pad, pad), groups),
        }
    }

    /// The tiny block (C = 4, S = 2 so G = 2; 2×1 partitions of a 4×2 map so hp = wp = 2)
    /// rebuilt around the variables `v` = [x, fc3.weight, repconv3.conv.weight, gp.fc1.weight,
    /// gp.fc2.weight].
    fn tiny(v: &[Var]) -> RepMlpBlock {
        // A positive fc1 bias keeps the gate's ReLU alive (a dead one has zero gradients).
        let gb1 = Var::constant(Tensor::full(&[1], 0.5).unwrap());
        let gb2 = Var::constant(Tensor::randn(&[4], 0.0, 0.3, 8).unwrap());
        let w1 = Var::constant(Tensor::randn(&[2, 1, 1, 1], 0.0, 0.5, 9).unwrap());
        let branch = |k: usize, w: &Var, seed: u64| LocalBranch {
            k,
            conv_bn: ConvBn {
                conv: conv(w, None, 2, k / 2),
                bn: random_bn(2, seed),
                relu: false,
            },
        };
        RepMlpBlock {
            channels: 4,
            h: 2,
            w: 1,
            sharesets: 2,
            gp: GlobalPerceptron {
                fc1: conv(&v[3], Some(&gb1), 1, 0),
                fc2: conv(&v[4], Some(&gb2), 1, 0),
            },
            fc3: conv(&v[1], None, 2, 0),
            form: BlockForm::Train {
                fc3_bn: random_bn(2, 20),
                local: vec![branch(1, &w1, 30), branch(3, &v[2], 40)],
            },
        }
    }

    #[test]
    fn gradcheck_tiny_block_in_train_and_eval_mode() {
        // Train mode: every BN (fc3_bn, repconv{1,3}.bn) normalises with batch statistics.
        // Tolerances: the defaults (2e-2 relative + 2e-3 absolute for f32 central differences
        // with a 1e-2 relative step, see gradcheck's doc).
        let inputs = [
            Tensor::randn(&[2, 4, 4, 2], 0.2, 1.0, 1).unwrap(),
            Tensor::randn(&[4, 2, 1, 1], 0.0, 0.6, 2).unwrap(),
            Tensor::randn(&[2, 1, 3, 3], 0.0, 0.5, 3).unwrap(),
            Tensor::randn(&[1, 4, 1, 1], 0.0, 0.6, 4).unwrap(),
            Tensor::randn(&[4, 1, 1, 1], 0.0, 0.6, 5).unwrap(),
        ];
        for train in [true, false] {
            let ctx = || if train { Ctx::train(0) } else { Ctx::eval() };
            gradcheck(
                "RepMLPBlock",
                &inputs,
                |v| tiny(v).forward(&v[0], &ctx()),
                GradcheckOptions::default(),
            )
            .unwrap();
        }
    }

    #[test]
    fn names_shapes_and_forms() {
        let t = RepMlpBlock::new(&cfg(false), 0).unwrap();
        let d = RepMlpBlock::new(&cfg(true), 0).unwrap();
        let shapes = |m: &RepMlpBlock| -> Vec<(String, Vec<usize>)> {
            named_parameters(m)
                .into_iter()
                .map(|(n, p)| (n, p.shape()))
                .collect()
        };
        let want_t: Vec<(String, Vec<usize>)> = [
            ("gp.fc1.weight", vec![1, 4, 1, 1]),
            ("gp.fc1.bias", vec![1]),
            ("gp.fc2.weight", vec![4, 1, 1, 1]),
            ("gp.fc2.bias", vec![4]),
            ("fc3.weight", vec![4, 2, 1, 1]),
            ("fc3_bn.weight", vec![2]),
            ("fc3_bn.bias", vec![2]),
            ("repconv1.conv.weight", vec![2, 1, 1, 1]),
            ("repconv1.bn.weight", vec![2]),
            ("repconv1.bn.bias", vec![2]),
            ("repconv3.conv.weight", vec![2, 1, 3, 3]),
            ("repconv3.bn.weight", vec![2]),
            ("repconv3.bn.bias", vec![2]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(shapes(&t), want_t);
        let want_d: Vec<(String, Vec<usize>)> = want_t[..5]
            .iter()
            .cloned()
            .chain([("fc3.bias".to_string(), vec![4])])
            .collect();
        assert_eq!(shapes(&d), want_d);
        assert_eq!(named_buffers(&t).len(), 9);
        assert!(named_buffers(&d).is_empty());
        assert!(d.is_deploy() && !t.is_deploy());
        // The deploy form runs too.
        let x = Var::constant(Tensor::randn(&[1, 4, 2, 3], 0.0, 1.0, 3).unwrap());
        assert_eq!(d.forward(&x, &Ctx::eval()).unwrap().shape(), [1, 4, 2, 3]);
    }

    #[test]
    fn fc3_gemm_matches_a_naive_grouped_fc() {
        // out[b, s, o] = Σ_i W[s·hw + o, i] · x[b, s, i] + bias[s·hw + o], in f64 loops.
        let d = RepMlpBlock::new(
            &RepMlpBlockConfig {
                channels: 6,
                h: 2,
                w: 3,
                sharesets: 3,
                reparam_conv_k: vec![],
                globalperceptron_reduce: 2,
                deploy: true,
            },
            5,
        )
        .unwrap();
        let (b, s, hw) = (5, 3, 6);
        let x = Tensor::randn(&[b, s, hw], 0.0, 1.0, 9).unwrap();
        let y = d.fc3_gemm(&Var::constant(x.clone())).unwrap().value();
        let (wv, bv) = (
            d.fc3.weight.value().to_vec(),
            d.fc3.bias.as_ref().unwrap().value().to_vec(),
        );
        let xv = x.to_vec();
        let mut max_err = 0f64;
        for bi in 0..b {
            for si in 0..s {
                for o in 0..hw {
                    let mut acc = bv[si * hw + o] as f64;
                    for i in 0..hw {
                        acc +=
                            wv[(si * hw + o) * hw + i] as f64 * xv[(bi * s + si) * hw + i] as f64;
                    }
                    let got = y.get(&[bi, si, o]).unwrap() as f64;
                    max_err = max_err.max((got - acc).abs());
                }
            }
        }
        // Length-6 dot products of O(1) values in f32: 1e-5 absolute is ~10 ulps.
        assert!(max_err < 1e-5, "{max_err}");
    }

    #[test]
    fn bad_inputs_and_configs_are_errors() {
        let t = RepMlpBlock::new(&cfg(false), 0).unwrap();
        for bad in [&[1, 4, 3, 2][..], &[1, 5, 4, 2], &[4, 4, 2]] {
            let x = Var::constant(Tensor::zeros(bad).unwrap());
            let e = t.forward(&x, &Ctx::eval()).unwrap_err().to_string();
            assert!(
                e.contains("RepMLPBlock") && e.contains("multiple of 2") && e.contains("2×1"),
                "{e}"
            );
        }
        let mut c = cfg(false);
        c.sharesets = 3;
        assert!(
            RepMlpBlock::new(&c, 0)
                .unwrap_err()
                .to_string()
                .contains("sharesets 3")
        );
        let mut c = cfg(false);
        c.reparam_conv_k = vec![3, 3];
        assert!(RepMlpBlock::new(&c, 0).is_err());
        c.reparam_conv_k = vec![2];
        assert!(RepMlpBlock::new(&c, 0).is_err());
        let mut c = cfg(false);
        c.globalperceptron_reduce = 8;
        assert!(RepMlpBlock::new(&c, 0).is_err());
    }
}
