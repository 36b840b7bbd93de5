//! Mixup and cutmix on a batch, as timm's `Mixup` in batch mode, with soft (label-smoothed)
//! targets.
//!
//! Each image is mixed with its partner in the reversed batch (`x.flip(0)`: image `b` with
//! image `B − 1 − b`), with one coefficient `λ` for the whole batch ([`Mix::draw`]):
//!
//! 1. if either α > 0 and `next_f32() < prob`: when both α are positive, cutmix is chosen
//!    with `next_f32() < switch_prob`; `λ ~ Beta(α, α)` with the chosen α
//!    ([`beta_sample`]); otherwise `λ = 1` (no mixing);
//! 2. mixup: `x_b ← λ·x_b + (1 − λ)·x_{B−1−b}`;
//! 3. cutmix (when `λ < 1`): a box of `⌊H·√(1−λ)⌋ × ⌊W·√(1−λ)⌋` centred at `cy = below(H)`,
//!    `cx = below(W)` (drawn in that order; rows `cy − ⌊cut/2⌋ .. cy + ⌊(cut+1)/2⌋`, as
//!    timm 1.0's `rand_bbox`) is clipped to the image and pasted from the partner; `λ`
//!    becomes `1 − box area / (H·W)`;
//! 4. targets: `λ·smooth(y) + (1 − λ)·smooth(y.flip(0))` where `smooth` is one-hot with
//!    `off = ε/K`, `on = 1 − ε + off` (label smoothing ε, `K` classes).
//!
//! Unlike timm, an odd batch size is allowed: the middle image is its own partner.

use super::augment::Rect;
use super::beta::beta_sample;
use super::{DataError, Result};
use crate::tensor_core::Rng;

/// Mixup/cutmix settings (timm's `Mixup(mixup_alpha, cutmix_alpha, prob, switch_prob,
/// mode='batch', correct_lam=True)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// α of the Beta distribution of mixup's `λ` (0: no mixup).
    pub mixup_alpha: f32,
    /// α of the Beta distribution of cutmix's `λ` (0: no cutmix).
    pub cutmix_alpha: f32,
    /// Probability that a batch is mixed at all, in `[0, 1]`.
    pub prob: f32,
    /// Probability of cutmix rather than mixup when both α are positive, in `[0, 1]`.
    pub switch_prob: f32,
}

/// What [`Mix::draw`] decided for one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixDraw {
    /// Weight of each image's own label and pixels (1: no mixing); for cutmix, already
    /// corrected to `1 − box area / (H·W)`.
    pub lam: f64,
    /// The box pasted from the partner image when cutmix was chosen.
    pub cutmix: Option<Rect>,
}

impl MixDraw {
    /// No mixing: `λ = 1`.
    pub const NONE: MixDraw = MixDraw {
        lam: 1.0,
        cutmix: None,
    };
}

impl Mix {
    /// Mixup only, with `Beta(alpha, alpha)`, on every batch.
    pub fn mixup(alpha: f32) -> Self {
        Mix {
            mixup_alpha: alpha,
            cutmix_alpha: 0.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }

    /// timm/DeiT's recipe: mixup α = 0.8, cutmix α = 1.0, every batch, half of them cutmix.
    pub fn deit() -> Self {
        Mix {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }

    /// True when some batch can be mixed (an α > 0 and `prob > 0`).
    pub fn is_active(&self) -> bool {
        (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0) && self.prob > 0.0
    }

    /// Checks both α are finite and ≥ 0 and both probabilities in `[0, 1]`.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, v: f32, want: &str| {
            Err(DataError::new(
                "mixup",
                format!("{what} must be {want}, got {v}"),
            ))
        };
        for (what, v) in [
            ("mixup alpha", self.mixup_alpha),
            ("cutmix alpha", self.cutmix_alpha),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(what, v, "finite and ≥ 0");
            }
        }
        for (what, v) in [
            ("mix probability", self.prob),
            ("switch probability", self.switch_prob),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(what, v, "in [0, 1]");
            }
        }
        Ok(())
    }

    /// Draws `λ` and, for cutmix, the box, for a batch of `h × w` images (steps 1 and 3 of the
    /// [module docs](self)). Draws nothing when [`Mix::is_active`] is false.
    pub fn draw(&self, rng: &mut Rng, h: usize, w: usize) -> MixDraw {
        if !self.is_active() || rng.next_f32() >= self.prob {
            return MixDraw::NONE;
        }
        let (mix, cut) = (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0);
        let use_cutmix = if mix && cut {
            rng.next_f32() < self.switch_prob
        } else {
            cut
        };
        let alpha = f64::from(if use_cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        });
        let lam = beta_sample(rng, alpha, alpha);
        if lam == 1.0 || !use_cutmix {
            return MixDraw { lam, cutmix: None };
        }
        let ratio = (1.0 - lam).sqrt();
        let (cut_h, cut_w) = ((h as f64 * ratio) as isize, (w as f64 * ratio) as isize);
        let cy = rng.below(h as u64) as isize;
        let cx = rng.below(w as u64) as isize;
        let clip = |v: isize, n: usize| v.clamp(0, n as isize) as usize;
        // timm 1.0's `rand_bbox`: `cut // 2` before the centre, `(cut + 1) // 2` after it, so
        // an unclipped box is exactly `cut` wide.
        let (y0, y1) = (clip(cy - cut_h / 2, h), clip(cy + (cut_h + 1) / 2, h));
        let (x0, x1) = (clip(cx - cut_w / 2, w), clip(cx + (cut_w + 1) / 2, w));
        let rect = Rect {
            top: y0,
            left: x0,
            h: y1 - y0,
            w: x1 - x0,
        };
        MixDraw {
            lam: 1.0 - (rect.h * rect.w) as f64 / (h * w) as f64,
            cutmix: Some(rect),
        }
    }

    /// Mixes `images` (`[B, C, H, W]` = `shape`) in place and returns the soft targets
    /// `[B, num_classes]` row-major ([`Mix::draw`], [`mix_images`], [`soft_targets`]). When no
    /// mixing happens (both α = 0, or the `prob` draw fails) the images are unchanged and the
    /// targets are the smoothed one-hot labels. Errors: sizes that disagree, a label
    /// `≥ num_classes`, smoothing outside `[0, 1]`, invalid settings ([`Mix::check`]).
    pub fn apply(
        &self,
        images: &mut [f32],
        shape: [usize; 4],
        labels: &[usize],
        num_classes: usize,
        label_smoothing: f32,
        rng: &mut Rng,
    ) -> Result<Vec<f32>> {
        self.check()?;
        check_batch(images.len(), shape, labels, num_classes, label_smoothing)?;
        let draw = self.draw(rng, shape[2], shape[3]);
        mix_images(images, shape, &draw);
        Ok(soft_targets(labels, num_classes, label_smoothing, draw.lam))
    }
}

fn check_batch(
    len: usize,
    shape: [usize; 4],
    labels: &[usize],
    num_classes: usize,
    smoothing: f32,
) -> Result<()> {
    let err = |p: String| Err(DataError::new("mixup", p));
    let total = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if total != Some(len) || labels.len() != shape[0] {
        return err(format!(
            "{len} values and {} labels for a batch of shape {shape:?}",
            labels.len()
        ));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= num_classes) {
        return err(format!(
            "label {l} of image {i} is out of range for {num_classes} classes"
        ));
    }
    if !(0.0..=1.0).contains(&smoothing) {
        return err(format!(
            "label smoothing must be in [0, 1], got {smoothing}"
        ));
    }
    Ok(())
}

/// Mixes each image of `images` (`[B, C, H, W]` = `shape`) with its partner `B − 1 − b` as
/// `draw` says: the whole image weighted by `λ` (mixup) or the cutmix box pasted. A `λ` of 1
/// leaves the images unchanged. Arithmetic is in `f32` as timm's
/// `x.mul_(λ).add_(x.flip(0).mul_(1 − λ))`.
///
/// # Panics
/// When `images.len()` is not the product of `shape`, or the box is outside `H × W`
/// ([`Mix::apply`] checks both).
pub fn mix_images(images: &mut [f32], shape: [usize; 4], draw: &MixDraw) {
    let [b, c, h, w] = shape;
    assert_eq!(
        images.len(),
        b * c * h * w,
        "mix_images: batch of shape {shape:?}"
    );
    if draw.lam == 1.0 || images.is_empty() {
        return;
    }
    let n = c * h * w;
    let (lam, rest) = (draw.lam as f32, (1.0 - draw.lam) as f32);
    for i in 0..b.div_ceil(2) {
        let j = b - 1 - i;
        let (head, tail) = images.split_at_mut(j * n);
        let xj = &mut tail[..n];
        if i == j {
            // The middle image of an odd batch is its own partner.
            if draw.cutmix.is_none() {
                for v in xj {
                    *v = *v * lam + *v * rest;
                }
            }
            continue;
        }
        let xi = &mut head[i * n..(i + 1) * n];
        match draw.cutmix {
            None => {
                for (a, b) in xi.iter_mut().zip(xj.iter_mut()) {
                    let (va, vb) = (*a, *b);
                    *a = va * lam + vb * rest;
                    *b = vb * lam + va * rest;
                }
            }
            Some(r) => {
                assert!(
                    r.top + r.h <= h && r.left + r.w <= w,
                    "cutmix box {r:?} outside {h}×{w}"
                );
                for (pi, pj) in xi.chunks_exact_mut(h * w).zip(xj.chunks_exact_mut(h * w)) {
                    for y in r.top..r.top + r.h {
                        let s = y * w + r.left..y * w + r.left + r.w;
                        pi[s.clone()].swap_with_slice(&mut pj[s]);
                    }
                }
            }
        }
    }
}

/// Soft targets `[B, K]` row-major: `λ·smooth(y_b) + (1 − λ)·smooth(y_{B−1−b})`, with
/// `smooth(y)` one-hot at `on = 1 − ε + ε/K`, `off = ε/K` (`ε = smoothing`); `λ = 1` gives the
/// smoothed labels. Each row sums to 1 (up to rounding).
///
/// # Panics
/// When a label is `≥ num_classes` ([`Mix::apply`] checks it).
pub fn soft_targets(labels: &[usize], num_classes: usize, smoothing: f32, lam: f64) -> Vec<f32> {
    let k = num_classes;
    let off64 = f64::from(smoothing) / k as f64;
    let (off, on) = (off64 as f32, (1.0 - f64::from(smoothing) + off64) as f32);
    let (l, r) = (lam as f32, (1.0 - lam) as f32);
    let b = labels.len();
    let mut out = vec![0.0f32; b * k];
    for (i, row) in out.chunks_exact_mut(k.max(1)).take(b).enumerate() {
        let (y1, y2) = (labels[i], labels[b - 1 - i]);
        for (c, v) in row.iter_mut().enumerate() {
            let a = if c == y1 { on } else { off };
            let z = if c == y2 { on } else { off };
            *v = a * l + z * r;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_mixup_and_targets() {
        // x0 = [1, 2], x1 = [3, 5], λ = 0.25.
        let mut x = vec![1.0, 2.0, 3.0, 5.0];
        let d = MixDraw {
            lam: 0.25,
            cutmix: None,
        };
        mix_images(&mut x, [2, 1, 1, 2], &d);
        assert_eq!(x, [2.5, 4.25, 1.5, 2.75]);
        // Labels [0, 2], K = 3, ε = 0.3: off 0.1, on 0.8.
        let t = soft_targets(&[0, 2], 3, 0.3, 0.25);
        let want = [0.275, 0.1, 0.625, 0.625, 0.1, 0.275];
        for (a, b) in t.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
        // λ = 1, ε = 0: plain one-hot.
        assert_eq!(soft_targets(&[1, 0], 2, 0.0, 1.0), [0.0, 1.0, 1.0, 0.0]);
    }

    /// Reference: out[b] = λ·x[b] + (1−λ)·x[B−1−b] from an unmodified copy (mixup), or x[b]
    /// with the box taken from x[B−1−b] (cutmix), by explicit index loops.
    fn reference(x: &[f32], [b, c, h, w]: [usize; 4], d: &MixDraw) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        let (l, r) = (d.lam as f32, (1.0 - d.lam) as f32);
        for i in 0..b {
            let j = b - 1 - i;
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        let at = |n: usize| ((n * c + ch) * h + y) * w + xx;
                        out[at(i)] = match d.cutmix {
                            None if d.lam == 1.0 => x[at(i)],
                            None => x[at(i)] * l + x[at(j)] * r,
                            Some(q) => {
                                let inside = y >= q.top
                                    && y < q.top + q.h
                                    && xx >= q.left
                                    && xx < q.left + q.w;
                                if inside { x[at(j)] } else { x[at(i)] }
                            }
                        };
                    }
                }
            }
        }
        out
    }

    #[test]
    fn apply_matches_reference_for_every_kind_of_draw() {
        let mut rng = Rng::new(21);
        let mut kinds = [0usize; 3]; // none, mixup, cutmix
        for mix in [
            Mix::deit(),
            Mix::mixup(0.2),
            Mix {
                prob: 0.5,
                ..Mix::deit()
            },
        ] {
            for shape in [[4, 3, 5, 6], [5, 1, 7, 7], [1, 2, 3, 3], [2, 1, 1, 1]] {
                for _ in 0..40 {
                    let [b, c, h, w] = shape;
                    let x: Vec<f32> = (0..b * c * h * w).map(|_| rng.normal() as f32).collect();
                    let labels: Vec<usize> = (0..b).map(|_| rng.below(10) as usize).collect();
                    let d = mix.draw(&mut rng.clone(), h, w);
                    kinds[match d.cutmix {
                        _ if d.lam == 1.0 => 0,
                        None => 1,
                        Some(_) => 2,
                    }] += 1;
                    let mut got = x.clone();
                    let t = mix
                        .apply(&mut got, shape, &labels, 10, 0.1, &mut rng)
                        .unwrap();
                    assert_eq!(got, reference(&x, shape, &d));
                    assert_eq!(t, soft_targets(&labels, 10, 0.1, d.lam));
                    for row in t.chunks(10) {
                        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                    }
                    if let Some(q) = d.cutmix {
                        assert!(q.top + q.h <= h && q.left + q.w <= w);
                        let want = 1.0 - (q.h * q.w) as f64 / (h * w) as f64;
                        assert_eq!(d.lam, want);
                    }
                }
            }
        }
        assert!(kinds.iter().all(|&k| k > 20), "{kinds:?}");
    }

    #[test]
    fn draw_frequencies_follow_prob_and_switch_prob() {
        let mut rng = Rng::new(22);
        let mix = Mix {
            mixup_alpha: 1.0,
            cutmix_alpha: 1.0,
            prob: 0.6,
            switch_prob: 0.25,
        };
        let n = 20_000;
        let (mut mixed, mut cut, mut lam_sum) = (0, 0, 0.0);
        for _ in 0..n {
            let d = mix.draw(&mut rng, 32, 32);
            if d.lam < 1.0 {
                mixed += 1;
                cut += usize::from(d.cutmix.is_some());
            }
            if d.cutmix.is_none() && d.lam < 1.0 {
                lam_sum += d.lam;
            }
        }
        // Binomial sds: 0.0035 (mixed), 0.004 (cut share).
        let fm = mixed as f64 / n as f64;
        let fc = cut as f64 / mixed as f64;
        assert!((fm - 0.6).abs() < 0.02, "{fm}");
        assert!((fc - 0.25).abs() < 0.02, "{fc}");
        // Mixup λ ~ Beta(1, 1): mean ½ (sd of the mean 0.0026).
        let ml = lam_sum / (mixed - cut) as f64;
        assert!((ml - 0.5).abs() < 0.015, "{ml}");
    }

    #[test]
    fn cutmix_box_matches_timm_rand_bbox() {
        // With λ fixed by a seed, recompute timm 1.0's rand_bbox from the same draws.
        let mix = Mix {
            mixup_alpha: 0.0,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
        };
        for seed in 0..200 {
            let (h, w) = (28usize, 20usize);
            let mut r = Rng::new(seed);
            let d = mix.draw(&mut r.clone(), h, w);
            assert!(r.next_f32() < 1.0); // the prob draw
            let lam = beta_sample(&mut r, 1.0, 1.0);
            let ratio = (1.0 - lam).sqrt();
            let (ch, cw) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
            let (cy, cx) = (r.below(h as u64) as i64, r.below(w as u64) as i64);
            // timm 1.0.31: `np.clip(cy - cut_h // 2, 0, H)`, `np.clip(cy + (cut_h + 1) // 2, 0, H)`.
            let yl = (cy - ch / 2).clamp(0, h as i64);
            let yh = (cy + (ch + 1) / 2).clamp(0, h as i64);
            let xl = (cx - cw / 2).clamp(0, w as i64);
            let xh = (cx + (cw + 1) / 2).clamp(0, w as i64);
            // A box inside the image is exactly the cut (one pixel short for odd cuts before).
            if cy - ch / 2 >= 0 && cy + (ch + 1) / 2 <= h as i64 {
                assert_eq!(yh - yl, ch);
            }
            let q = d.cutmix.unwrap();
            assert_eq!(
                (
                    q.top as i64,
                    q.top as i64 + q.h as i64,
                    q.left as i64,
                    q.left as i64 + q.w as i64
                ),
                (yl, yh, xl, xh)
            );
            assert_eq!(d.lam, 1.0 - ((yh - yl) * (xh - xl)) as f64 / (h * w) as f64);
        }
    }

    #[test]
    fn inactive_mix_gives_smoothed_one_hot_and_leaves_everything_alone() {
        let mut rng = Rng::new(3);
        let before = rng.clone();
        let mut x = vec![1.0, 2.0, 3.0];
        let off = Mix {
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            prob: 1.0,
            switch_prob: 0.5,
        };
        let t = off
            .apply(&mut x, [3, 1, 1, 1], &[0, 1, 1], 2, 0.2, &mut rng)
            .unwrap();
        assert_eq!(x, [1.0, 2.0, 3.0]);
        assert_eq!(rng, before);
        assert_eq!(t, [0.9, 0.1, 0.1, 0.9, 0.1, 0.9]);
        assert!(
            !off.is_active()
                && !Mix {
                    prob: 0.0,
                    ..Mix::deit()
                }
                .is_active()
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut rng = Rng::new(0);
        let m = Mix::deit();
        let mut x = vec![0.0; 8];
        let e = m
            .apply(&mut x, [2, 1, 2, 2], &[0, 3], 3, 0.1, &mut rng)
            .unwrap_err();
        assert!(e.to_string().contains("label 3 of image 1"), "{e}");
        assert!(
            m.apply(&mut x, [2, 1, 2, 3], &[0, 1], 3, 0.1, &mut rng)
                .is_err()
        );
        assert!(
            m.apply(&mut x, [2, 1, 2, 2], &[0], 3, 0.1, &mut rng)
                .is_err()
        );
        assert!(
            m.apply(&mut x, [2, 1, 2, 2], &[0, 1], 3, 1.5, &mut rng)
                .is_err()
        );
        for bad in [
            Mix {
                mixup_alpha: -1.0,
                ..m
            },
            Mix {
                cutmix_alpha: f32::NAN,
                ..m
            },
            Mix { prob: 2.0, ..m },
            Mix {
                switch_prob: -0.1,
                ..m
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
            assert!(
                bad.apply(&mut x, [2, 1, 2, 2], &[0, 1], 3, 0.1, &mut rng)
                    .is_err()
            );
        }
    }
}
