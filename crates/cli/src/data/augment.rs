//! Per-image training augmentation on normalised `f32` images `[C, H, W]`: random crop with
//! zero padding, horizontal flip and random erasing, all driven by a seeded [`Rng`].
//!
//! The operations follow torchvision and timm, in the order a torchvision pipeline applies them
//! (`RandomCrop(size, padding)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(...)`,
//! timm `RandomErasing(mode='pixel')`):
//!
//! 1. **crop** (`crop_padding = p > 0`): the image is padded by `p` pixels on every side with
//!    black (a raw 0 pixel, i.e. `fill[c]` after normalisation) and an `H × W` window is cut at
//!    offsets `top = below(2p + 1)`, `left = below(2p + 1)` (drawn in that order):
//!    `out[c][y][x] = in[c][y + top − p][x + left − p]`, or `fill[c]` outside the image;
//! 2. **flip** (`hflip`): with probability ½ (`next_f32() < 0.5`) each row is reversed;
//! 3. **erase** (`erase_prob > 0`): with probability `erase_prob` (`next_f32() < erase_prob`)
//!    one rectangle is replaced by N(0, 1) noise, per pixel and channel. Up to 10 attempts draw
//!    an area fraction uniform in `[0.02, 1/3]` and a log aspect ratio uniform in
//!    `[ln 0.3, ln(1/0.3)]`, giving `h = round(√(area·ratio))`, `w = round(√(area/ratio))`
//!    (ties to even, as Python's `round`); the first with `h < H` and `w < W` is placed at
//!    `top` uniform in `0..=H−h`, `left` in `0..=W−w`. No attempt fitting means no erasing
//!    (timm's behaviour).
//!
//! A disabled step draws nothing from the generator, so the stream each step consumes is fixed
//! by the configuration alone.

use super::{DataError, Result};
use crate::tensor_core::Rng;

/// Smallest erased area, as a fraction of the image (timm's `min_area`).
pub const ERASE_MIN_AREA: f64 = 0.02;
/// Largest erased area, as a fraction of the image (timm's `max_area`).
pub const ERASE_MAX_AREA: f64 = 1.0 / 3.0;
/// Smallest aspect ratio `h / w` of an erased rectangle (timm's `min_aspect`; the largest is
/// its inverse).
pub const ERASE_MIN_ASPECT: f64 = 0.3;
/// Attempts at drawing a rectangle that fits before giving up (timm: 10).
pub const ERASE_ATTEMPTS: usize = 10;

/// Which augmentations to apply to each training image; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Padding of the random crop, in pixels (0: no crop).
    pub crop_padding: usize,
    /// Flip each image horizontally with probability ½.
    pub hflip: bool,
    /// Probability of random erasing (0: never), in `[0, 1]`.
    pub erase_prob: f32,
}

impl Default for Augment {
    /// [`Augment::none`].
    fn default() -> Self {
        Augment::none()
    }
}

/// A rectangle of an image: rows `top..top + h`, columns `left..left + w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
}

impl Augment {
    /// No augmentation (evaluation): [`Augment::apply`] leaves images untouched.
    pub fn none() -> Self {
        Augment {
            crop_padding: 0,
            hflip: false,
            erase_prob: 0.0,
        }
    }

    /// Random crop with 2 pixels of padding and horizontal flip, no erasing: what
    /// `LoaderConfig::train` starts from (`allmlp train`'s default recipe sets its own: flips
    /// only, `train::Recipe`).
    pub fn standard() -> Self {
        Augment {
            crop_padding: 2,
            hflip: true,
            erase_prob: 0.0,
        }
    }

    /// True when no step is enabled.
    pub fn is_none(&self) -> bool {
        self.crop_padding == 0 && !self.hflip && self.erase_prob == 0.0
    }

    /// Checks `erase_prob` is in `[0, 1]`.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.erase_prob) {
            return Err(DataError::new(
                "augmentation",
                format!(
                    "random erasing probability must be in [0, 1], got {}",
                    self.erase_prob
                ),
            ));
        }
        Ok(())
    }

    /// Augments one normalised image `img` (`[C, H, W]` = `shape`, row-major) in place.
    /// `fill[c]` is the normalised value of a black pixel of channel `c`
    /// ([`Normalization::zero_fill`](super::Normalization::zero_fill)). Errors when the lengths
    /// of `img` or `fill` disagree with `shape`, or `erase_prob` is outside `[0, 1]`.
    pub fn apply(
        &self,
        img: &mut [f32],
        shape: [usize; 3],
        fill: &[f32],
        rng: &mut Rng,
    ) -> Result<()> {
        self.check()?;
        let [c, h, w] = shape;
        if c.checked_mul(h).and_then(|n| n.checked_mul(w)) != Some(img.len()) || fill.len() != c {
            return Err(DataError::new(
                "augmentation",
                format!(
                    "image of {} values and {} fill values for shape {shape:?}",
                    img.len(),
                    fill.len()
                ),
            ));
        }
        self.run(img, shape, fill, rng, &mut Vec::new());
        Ok(())
    }

    /// [`Augment::apply`] without the checks (the caller has made them), using `scratch` as the
    /// copy of a plane so that a loop over images allocates once.
    pub(super) fn run(
        &self,
        img: &mut [f32],
        [c, h, w]: [usize; 3],
        fill: &[f32],
        rng: &mut Rng,
        scratch: &mut Vec<f32>,
    ) {
        if img.is_empty() {
            return;
        }
        let p = self.crop_padding;
        let (top, left) = if p > 0 {
            let span = 2 * p as u64 + 1;
            (rng.below(span) as usize, rng.below(span) as usize)
        } else {
            (p, p)
        };
        let flip = self.hflip && rng.next_f32() < 0.5;
        if (top, left) != (p, p) || flip {
            let (dy, dx) = (top as isize - p as isize, left as isize - p as isize);
            crop_flip(img, [c, h, w], fill, (dy, dx, flip), scratch);
        }
        if self.erase_prob > 0.0
            && rng.next_f32() < self.erase_prob
            && let Some(r) = erase_rect(rng, h, w)
        {
            for plane in img.chunks_exact_mut(h * w) {
                for row in plane.chunks_exact_mut(w).skip(r.top).take(r.h) {
                    for v in &mut row[r.left..r.left + r.w] {
                        *v = rng.normal() as f32;
                    }
                }
            }
        }
    }
}

/// `img[c][y][x] ← img[c][y + dy][x' + dx]` with `x' = W − 1 − x` when `flip`, else `x`;
/// `fill[c]` where the source is outside the image. One pass per row through a copy of the
/// plane (`src`).
fn crop_flip(
    img: &mut [f32],
    [_, h, w]: [usize; 3],
    fill: &[f32],
    (dy, dx, flip): (isize, isize, bool),
    src: &mut Vec<f32>,
) {
    src.resize(h * w, 0.0);
    // Destination columns whose source column `x + dx` is inside the image, before flipping.
    let x0 = (-dx).clamp(0, w as isize) as usize;
    let x1 = (w as isize - dx).clamp(0, w as isize) as usize;
    for (plane, &f) in img.chunks_exact_mut(h * w).zip(fill) {
        src.copy_from_slice(plane);
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            let sy = y as isize + dy;
            if sy < 0 || sy >= h as isize || x0 >= x1 {
                row.fill(f);
                continue;
            }
            let s = &src[sy as usize * w..][..w];
            let (sx0, sx1) = ((x0 as isize + dx) as usize, (x1 as isize + dx) as usize);
            row[..x0].fill(f);
            row[x0..x1].copy_from_slice(&s[sx0..sx1]);
            row[x1..].fill(f);
            if flip {
                row.reverse();
            }
        }
    }
}

/// Draws timm's random-erasing rectangle for an `h × w` image (one count, the module docs'
/// procedure); `None` when no attempt fits.
pub fn erase_rect(rng: &mut Rng, h: usize, w: usize) -> Option<Rect> {
    let area = (h * w) as f64;
    let (lo, hi) = (ERASE_MIN_ASPECT.ln(), (1.0 / ERASE_MIN_ASPECT).ln());
    for _ in 0..ERASE_ATTEMPTS {
        let target = (ERASE_MIN_AREA + (ERASE_MAX_AREA - ERASE_MIN_AREA) * rng.next_f64()) * area;
        let ratio = (lo + (hi - lo) * rng.next_f64()).exp();
        let eh = (target * ratio).sqrt().round_ties_even() as usize;
        let ew = (target / ratio).sqrt().round_ties_even() as usize;
        if eh < h && ew < w {
            let top = rng.below((h - eh + 1) as u64) as usize;
            let left = rng.below((w - ew + 1) as u64) as usize;
            return Some(Rect {
                top,
                left,
                h: eh,
                w: ew,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent reference of crop + flip: build the padded image explicitly, cut the window
    /// at `(top, left)`, then reverse columns.
    fn reference(
        img: &[f32],
        [c, h, w]: [usize; 3],
        fill: &[f32],
        p: usize,
        top: usize,
        left: usize,
        flip: bool,
    ) -> Vec<f32> {
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        let mut padded = vec![0.0; c * ph * pw];
        for ch in 0..c {
            for y in 0..ph {
                for x in 0..pw {
                    padded[(ch * ph + y) * pw + x] = if y >= p && y < p + h && x >= p && x < p + w {
                        img[(ch * h + y - p) * w + x - p]
                    } else {
                        fill[ch]
                    };
                }
            }
        }
        let mut out = vec![0.0; c * h * w];
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let cx = if flip { w - 1 - x } else { x };
                    out[(ch * h + y) * w + x] = padded[(ch * ph + y + top) * pw + cx + left];
                }
            }
        }
        out
    }

    fn random_image(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    #[test]
    fn crop_and_flip_match_padded_reference() {
        let mut rng = Rng::new(3);
        let mut seen = std::collections::HashSet::new();
        for (shape, p) in [
            ([1, 28, 28], 2),
            ([3, 5, 7], 1),
            ([2, 4, 3], 4), // padding larger than the image: some crops are all fill
            ([1, 1, 1], 1),
            ([3, 6, 6], 0),
        ] {
            let [c, h, w] = shape;
            let fill: Vec<f32> = (0..c).map(|i| -1.0 - i as f32).collect();
            for hflip in [false, true] {
                let aug = Augment {
                    crop_padding: p,
                    hflip,
                    erase_prob: 0.0,
                };
                for _ in 0..if shape[1] == 28 { 1000 } else { 100 } {
                    let img = random_image(&mut rng, c * h * w);
                    // The documented draws, from a copy of the generator.
                    let mut r = rng.clone();
                    let span = 2 * p as u64 + 1;
                    let (top, left) = if p > 0 {
                        (r.below(span) as usize, r.below(span) as usize)
                    } else {
                        (0, 0)
                    };
                    let flip = hflip && r.next_f32() < 0.5;
                    seen.insert((p, top, left, flip));
                    let mut got = img.clone();
                    aug.apply(&mut got, shape, &fill, &mut rng).unwrap();
                    assert_eq!(rng, r, "draws consumed");
                    assert_eq!(got, reference(&img, shape, &fill, p, top, left, flip));
                }
            }
        }
        // Every offset and both flips occurred for the 28×28 case.
        for top in 0..5 {
            for left in 0..5 {
                for flip in [false, true] {
                    assert!(seen.contains(&(2, top, left, flip)), "{top} {left} {flip}");
                }
            }
        }
    }

    #[test]
    fn none_leaves_images_and_generator_alone() {
        let mut rng = Rng::new(1);
        let img = random_image(&mut rng, 3 * 4 * 5);
        let mut got = img.clone();
        let before = rng.clone();
        Augment::none()
            .apply(&mut got, [3, 4, 5], &[0.0; 3], &mut rng)
            .unwrap();
        assert_eq!(got, img);
        assert_eq!(rng, before);
        assert!(Augment::none().is_none() && !Augment::standard().is_none());
    }

    #[test]
    fn flip_rate_is_one_half() {
        let mut rng = Rng::new(9);
        let aug = Augment {
            crop_padding: 0,
            hflip: true,
            erase_prob: 0.0,
        };
        let n = 20_000;
        let mut flips = 0;
        for _ in 0..n {
            let mut img = vec![1.0, 2.0];
            aug.apply(&mut img, [1, 1, 2], &[0.0], &mut rng).unwrap();
            flips += usize::from(img == [2.0, 1.0]);
        }
        // Binomial(20000, 0.5): sd 0.0035; 0.015 is over 4 sd.
        assert!((flips as f64 / n as f64 - 0.5).abs() < 0.015, "{flips}");
    }

    #[test]
    fn erasing_is_one_rectangle_of_normal_noise_within_timm_bounds() {
        let (c, h, w) = (3, 28, 28);
        let aug = Augment {
            crop_padding: 0,
            hflip: false,
            erase_prob: 0.25,
        };
        let mut rng = Rng::new(5);
        let (trials, mut erased) = (4000, 0);
        let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0usize);
        for _ in 0..trials {
            let mut img = vec![1000.0f32; c * h * w];
            aug.apply(&mut img, [c, h, w], &[0.0; 3], &mut rng).unwrap();
            let changed: Vec<usize> = (0..h * w).filter(|&i| img[i] != 1000.0).collect();
            if changed.is_empty() {
                continue;
            }
            erased += 1;
            // A rectangle: bounding box of the changed pixels is fully changed, in every channel.
            let (ys, xs): (Vec<usize>, Vec<usize>) = changed.iter().map(|i| (i / w, i % w)).unzip();
            let (y0, y1) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap());
            let (x0, x1) = (*xs.iter().min().unwrap(), *xs.iter().max().unwrap());
            let (eh, ew) = (y1 - y0 + 1, x1 - x0 + 1);
            assert_eq!(changed.len(), eh * ew);
            assert!(eh < h && ew < w);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = img[(ch * h + y) * w + x];
                        let inside = (y0..=y1).contains(&y) && (x0..=x1).contains(&x);
                        assert_eq!(v != 1000.0, inside);
                        if inside {
                            s += f64::from(v);
                            s2 += f64::from(v) * f64::from(v);
                            n += 1;
                        }
                    }
                }
            }
            // Some area fraction in [0.02, 1/3] and aspect ratio in [0.3, 1/0.3] round to
            // this h × w: sqrt(t·r) ∈ [eh ± ½] and sqrt(t/r) ∈ [ew ± ½] bound t and r.
            let (fh, fw) = (eh as f64, ew as f64);
            let (tlo, thi) = ((fh - 0.5) * (fw - 0.5), (fh + 0.5) * (fw + 0.5));
            let (rlo, rhi) = ((fh - 0.5) / (fw + 0.5), (fh + 0.5) / (fw - 0.5));
            let area = (h * w) as f64;
            assert!(
                thi >= ERASE_MIN_AREA * area && tlo <= ERASE_MAX_AREA * area,
                "{eh}×{ew}"
            );
            assert!(
                rhi >= ERASE_MIN_ASPECT && rlo <= 1.0 / ERASE_MIN_ASPECT,
                "{eh}×{ew}"
            );
        }
        // Binomial(4000, 0.25): sd 0.0068.
        assert!(
            (erased as f64 / trials as f64 - 0.25).abs() < 0.03,
            "{erased}"
        );
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn erase_rect_gives_up_on_tiny_images() {
        let mut rng = Rng::new(2);
        // 1×1: only an empty rectangle fits (h = w = 0, placed at 0 or 1 as timm's randint
        // would); any rectangle returned must fit.
        let mut empty = 0;
        for _ in 0..1000 {
            if let Some(r) = erase_rect(&mut rng, 1, 1) {
                assert_eq!((r.h, r.w), (0, 0));
                assert!(r.top <= 1 && r.left <= 1);
                empty += 1;
            }
            let r = erase_rect(&mut rng, 10, 10).expect("a 10×10 image always fits some");
            assert!(r.top + r.h <= 10 && r.left + r.w <= 10 && r.h > 0 && r.w > 0);
        }
        assert!(empty > 0, "{empty}");
        // 1 × 1000: every area is ≥ 20 pixels, so a rectangle needs h ≥ 1 = H: never fits.
        assert!((0..100).all(|_| erase_rect(&mut rng, 1, 1000).is_none()));
    }

    #[test]
    fn bad_shapes_and_probabilities_are_errors() {
        let mut rng = Rng::new(0);
        let a = Augment::standard();
        let e = a
            .apply(&mut [0.0; 5], [1, 2, 3], &[0.0], &mut rng)
            .unwrap_err();
        assert!(e.to_string().contains("5 values"), "{e}");
        assert!(
            a.apply(&mut [0.0; 6], [1, 2, 3], &[0.0, 0.0], &mut rng)
                .is_err()
        );
        assert!(a.apply(&mut [], [usize::MAX, 2, 3], &[], &mut rng).is_err());
        let bad = Augment {
            erase_prob: 1.5,
            ..Augment::none()
        };
        assert!(bad.check().unwrap_err().to_string().contains("1.5"));
        let nan = Augment {
            erase_prob: f32::NAN,
            ..Augment::none()
        };
        assert!(nan.check().is_err());
    }
}
