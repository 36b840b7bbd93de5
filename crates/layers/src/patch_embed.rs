//! `PatchEmbed`: the Mixer/ResMLP stem, timm's `timm.layers.PatchEmbed`.
//!
//! Cuts the image into non-overlapping `P×P` patches and projects each to
//! `embed_dim` channels with `proj = Conv2d(in_chans, embed_dim, P, stride P)`,
//! then flattens the grid to tokens: `x [B, in_chans, H, W]` →
//! `[B, S, embed_dim]`, `S = (H/P)·(W/P)`, tokens in row-major grid order
//! (timm: `proj(x).flatten(2).transpose(1, 2)`). Parameters: `proj.weight
//! [embed_dim, in_chans, P, P]`, `proj.bias [embed_dim]`. No norm layer
//! (timm's Mixer and ResMLP build the stem with `norm_layer=None`).
//!
//! The forward computes that conv as what it is, a linear layer over the
//! patches (`patchify`, then the weight viewed as `[embed_dim, in_chans·P·P]`):
//! the same sums, so the same bits, with the tokens written contiguous
//! `[B, S, embed_dim]` rather than transposed from the conv's `[B, embed_dim, S]`.
//!
//! The image size is fixed at construction, as timm's `strict_img_size`: the
//! token-mixing layers after the stem are sized for exactly `S` tokens, so
//! another size is an error that names the expected one.
//!
//! **Init.** [`PatchEmbed::new`] uses timm's Mixer/ResMLP init (`_init_weights`):
//! `proj.weight` LeCun-normal (truncated normal, variance `1/fan_in`), `proj.bias`
//! zeros. A standalone `timm.layers.PatchEmbed` keeps PyTorch's default `Conv2d`
//! init instead; for that, build the conv with [`Conv2d::new`] and wrap it with
//! [`PatchEmbed::from_conv`].
//!
//! ```
//! use allmlp_layers::{Ctx, Module, PatchEmbed, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let stem = PatchEmbed::new((28, 28), 4, 1, 16, 0)?;
//! assert_eq!(stem.num_patches(), 49);
//! let y = stem.forward(&Var::constant(Tensor::ones(&[2, 1, 28, 28])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), [2, 49, 16]);
//! let names: Vec<String> = named_parameters(&stem).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["proj.weight", "proj.bias"]);
//! let err = stem.forward(&Var::constant(Tensor::ones(&[2, 1, 32, 32])?), &Ctx::eval());
//! assert!(err.unwrap_err().to_string().contains("28×28"));
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::{Conv2dParams, linear};
use allmlp_autograd::tensor_core::error::fmt_shape;
use allmlp_autograd::tensor_core::patch::PatchOrder;
use allmlp_autograd::tensor_core::{Tensor, TensorError};
use allmlp_autograd::{Result, Var};

use crate::conv2d::Conv2d;
use crate::init;
use crate::module::{Ctx, Module, Visitor, join};

/// Image → patch tokens by a `P×P`, stride-`P` convolution.
#[derive(Debug)]
pub struct PatchEmbed {
    /// `Conv2d(in_chans, embed_dim, P, stride P)`.
    pub proj: Conv2d,
    img_size: (usize, usize),
}

impl PatchEmbed {
    /// A stem for `img_size = (H, W)` images of `in_chans` channels, patch size
    /// `patch_size`, `embed_dim` output channels, with timm's Mixer init
    /// (LeCun-normal weight, zero bias) from `seed`.
    pub fn new(
        img_size: (usize, usize),
        patch_size: usize,
        in_chans: usize,
        embed_dim: usize,
        seed: u64,
    ) -> Result<PatchEmbed> {
        let w = init::lecun_normal(&[embed_dim, in_chans, patch_size, patch_size], seed)?;
        PatchEmbed::from_tensors(w, Some(Tensor::zeros(&[embed_dim])?), img_size)
    }

    /// A stem with the given `proj.weight [D, C, P, P]` and `proj.bias [D]`.
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        img_size: (usize, usize),
    ) -> Result<PatchEmbed> {
        weight.expect_rank("PatchEmbed", 4, "proj.weight [embed_dim, in_chans, P, P]")?;
        let p = weight.shape()[2];
        let conv = Conv2d::from_tensors(weight, bias, Conv2dParams::square(p, 0, 1))?;
        PatchEmbed::from_conv(conv, img_size)
    }

    /// Wraps a square-kernel convolution whose stride equals its kernel, no
    /// padding, one group (for example [`Conv2d::new`] with PyTorch's init).
    pub fn from_conv(proj: Conv2d, img_size: (usize, usize)) -> Result<PatchEmbed> {
        let (kh, kw) = proj.kernel_size();
        let want = Conv2dParams::square(kh, 0, 1);
        let (h, w) = img_size;
        if kh != kw || proj.params != want {
            return Err(TensorError::arg(
                "PatchEmbed",
                format!(
                    "proj must be a P×P convolution with stride P, no padding and one group, \
                     got kernel {kh}×{kw} and {:?}",
                    proj.params
                ),
            )
            .into());
        }
        if h == 0 || w == 0 || !h.is_multiple_of(kh) || !w.is_multiple_of(kh) {
            return Err(TensorError::arg(
                "PatchEmbed",
                format!("img_size must be a non-zero multiple of the patch size {kh}, got {h}×{w}"),
            )
            .into());
        }
        Ok(PatchEmbed { proj, img_size })
    }

    /// `(H, W)` of the images this stem accepts.
    pub fn img_size(&self) -> (usize, usize) {
        self.img_size
    }

    /// The patch size `P`.
    pub fn patch_size(&self) -> usize {
        self.proj.kernel_size().0
    }

    /// `(H/P, W/P)` (`(0, 0)` if `proj` was replaced by a convolution without a
    /// kernel, which the forward then refuses).
    pub fn grid_size(&self) -> (usize, usize) {
        let p = self.patch_size();
        let grid = |n: usize| n.checked_div(p).unwrap_or(0);
        (grid(self.img_size.0), grid(self.img_size.1))
    }

    /// The number of tokens `S = (H/P)·(W/P)`.
    pub fn num_patches(&self) -> usize {
        let (gh, gw) = self.grid_size();
        gh * gw
    }

    /// `P` while `proj` is the `P×P`, stride-`P` projection without padding
    /// or groups that the constructors check (`None` if the public field
    /// was replaced by another convolution).
    fn patch_projection(&self) -> Option<usize> {
        let ws = self.proj.weight.shape();
        let prm = self.proj.params;
        let p = *ws.get(2)?;
        (ws.len() == 4
            && ws[3] == p
            && prm.stride == (p, p)
            && prm.padding == (0, 0)
            && prm.groups == 1)
            .then_some(p)
    }
}

impl Module for PatchEmbed {
    /// `x [B, in_chans, H, W]` → tokens `[B, S, embed_dim]`.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        let s = x.shape();
        let (c, d) = self.proj.channels();
        let (h, w) = self.img_size;
        if s.len() != 4 || s[1] != c || s[2] != h || s[3] != w {
            return Err(TensorError::shape(
                "PatchEmbed",
                format!(
                    "an image batch [B, {c}, {h}, {w}] (the {h}×{w} image size it was built for)"
                ),
                fmt_shape(&s),
            )
            .into());
        }
        if let Some(p) = self.patch_projection() {
            // The conv is a linear layer over patches: tokens come out
            // contiguous `[B, S, D]` (the same sums, so the same values and
            // gradients as the conv), not as the conv's `[B, D, S]`
            // transposed, which every op after it would copy or walk with
            // strides, in forward and backward.
            let patches = x.patchify(p, PatchOrder::ChannelFirst)?;
            let w = self.proj.weight.reshape(&[d, c * p * p])?;
            return linear(&patches, &w, self.proj.bias.as_ref());
        }
        let y = self.proj.forward(x, ctx)?;
        y.reshape(&[s[0], d, self.num_patches()])?.transpose(1, 2)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        self.proj.visit(&join(prefix, "proj"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn patch_embed_gradcheck_token_order_init_and_errors() {
        let stem = PatchEmbed::new((4, 6), 2, 3, 5, 1).unwrap();
        assert_eq!((stem.grid_size(), stem.num_patches()), ((2, 3), 6));
        assert_eq!(stem.proj.bias.as_ref().unwrap().value().to_vec(), [0.0; 5]);
        // LeCun normal truncated at ±2σ (σ ≈ 1/√fan_in / 0.88, fan_in = 12).
        let lim = 2.0 * (1.0f32 / 12.0).sqrt() / 0.8796;
        assert!(
            stem.proj
                .weight
                .value()
                .to_vec()
                .iter()
                .all(|v| v.abs() <= lim + 1e-6)
        );
        let x = Tensor::randn(&[2, 3, 4, 6], 0.0, 1.0, 2).unwrap();
        let (w, b) = (
            stem.proj.weight.value(),
            Tensor::randn(&[5], 0.0, 1.0, 3).unwrap(),
        );
        gradcheck(
            "PatchEmbed",
            &[x.clone(), w.clone(), b.clone()],
            |v| {
                let proj = Conv2d {
                    weight: v[1].clone(),
                    bias: Some(v[2].clone()),
                    params: Conv2dParams::square(2, 0, 1),
                };
                PatchEmbed::from_conv(proj, (4, 6))?.forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();
        // Token (gi, gj) of image n is the patch x[n, :, 2gi..2gi+2, 2gj..2gj+2]·W + b.
        let stem = PatchEmbed::from_tensors(w.clone(), Some(b.clone()), (4, 6)).unwrap();
        let y = stem
            .forward(&Var::constant(x.clone()), &Ctx::eval())
            .unwrap()
            .value();
        assert_eq!(y.shape(), [2, 6, 5]);
        for (n, gi, gj, d) in [(0, 0, 0, 0), (1, 1, 2, 4), (0, 1, 0, 3), (1, 0, 1, 2)] {
            let mut want = b.get(&[d]).unwrap() as f64;
            for c in 0..3 {
                for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let xv = x.get(&[n, c, 2 * gi + i, 2 * gj + j]).unwrap() as f64;
                    want += xv * w.get(&[d, c, i, j]).unwrap() as f64;
                }
            }
            let got = y.get(&[n, gi * 3 + gj, d]).unwrap() as f64;
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        let e = stem
            .forward(
                &Var::constant(Tensor::zeros(&[1, 3, 6, 4]).unwrap()),
                &Ctx::eval(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PatchEmbed") && e.contains("4×6") && e.contains("[1, 3, 6, 4]"),
            "{e}"
        );
        let e = PatchEmbed::new((5, 6), 2, 3, 5, 0).unwrap_err().to_string();
        assert!(e.contains("PatchEmbed") && e.contains("5×6"), "{e}");
        let conv = Conv2d::new(3, 5, (2, 2), Conv2dParams::square(1, 0, 1), true, 0).unwrap();
        assert!(PatchEmbed::from_conv(conv, (4, 6)).is_err());
    }

    /// The stem's linear-over-patches forward against the conv it stands
    /// for (`proj(x).flatten(2).transpose(1, 2)`): the same values, input
    /// and parameter gradients bit for bit (each token the same 16- or
    /// 48-term sum), at a batch whose products run on the pool.
    #[test]
    fn linear_over_patches_equals_the_conv() {
        for (b, c, p, d) in [(2, 1, 4, 8), (64, 3, 4, 32), (3, 2, 2, 5)] {
            let stem = PatchEmbed::new((8, 8), p, c, d, 7).unwrap();
            let bias = Tensor::randn(&[d], 0.0, 1.0, 8).unwrap();
            let stem =
                PatchEmbed::from_tensors(stem.proj.weight.value(), Some(bias), (8, 8)).unwrap();
            let x = Var::parameter(Tensor::randn(&[b, c, 8, 8], 0.0, 1.0, 9).unwrap());
            let ctx = Ctx::train(1);
            let run = |tokens: &Var| {
                let r = Tensor::randn(&tokens.shape(), 0.0, 1.0, 10).unwrap();
                tokens.backward_with(r).unwrap();
                let params = [&stem.proj.weight, stem.proj.bias.as_ref().unwrap()];
                let mut out = vec![tokens.value(), x.grad().unwrap()];
                out.extend(params.iter().map(|v| v.grad().unwrap()));
                for v in [&x].into_iter().chain(params) {
                    v.zero_grad();
                }
                out
            };
            let fast = run(&stem.forward(&x, &ctx).unwrap());
            let conv = stem.proj.forward(&x, &ctx).unwrap();
            let n = stem.num_patches();
            let conv = run(&conv.reshape(&[b, d, n]).unwrap().transpose(1, 2).unwrap());
            assert!(fast[0].is_contiguous());
            for (what, (f, s)) in ["tokens", "dx", "dW", "db"]
                .iter()
                .zip(fast.iter().zip(&conv))
            {
                let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(f), bits(s), "{what} of {b}×{c}, P = {p}, D = {d}");
            }
        }
    }
}
