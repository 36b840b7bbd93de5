//! Normalisation to `f32` tensors and a seeded, shuffled mini-batch iterator.

use super::{DataError, Dataset, Result};
use crate::tensor_core::{Rng, Tensor};

/// Per-channel normalisation: `x = (pixel / 255 − mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Mean of each channel, on the 0..1 scale.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel, on the 0..1 scale (each > 0).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Fashion-MNIST training-set statistics: mean 0.2860, std 0.3530.
    pub fn fashion_mnist() -> Self {
        Normalization {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// MNIST training-set statistics: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Normalization {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// CIFAR-10 training-set statistics (R, G, B).
    pub fn cifar10() -> Self {
        Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// CIFAR-100 training-set statistics (R, G, B).
    pub fn cifar100() -> Self {
        Normalization {
            mean: vec![0.5071, 0.4865, 0.4409],
            std: vec![0.2673, 0.2564, 0.2762],
        }
    }

    /// Only scales to 0..1 (mean 0, std 1) for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Per-channel mean and (population) standard deviation of `ds`'s pixels on the 0..1 scale,
    /// for datasets without published statistics (e.g. an image folder). Errors when the
    /// dataset is inconsistent or empty, or a channel is constant (std 0).
    pub fn from_dataset(ds: &Dataset) -> Result<Normalization> {
        ds.validate()?;
        let [n, c, h, w] = ds.shape;
        if n == 0 || c * h * w == 0 {
            return Err(DataError::new(
                &ds.name,
                "no pixels to compute statistics from",
            ));
        }
        // Exact integer sums: no rounding however many pixels.
        let mut sums = vec![(0u64, 0u128); c];
        for img in ds.images.chunks_exact(c * h * w) {
            for (plane, (s, s2)) in img.chunks_exact(h * w).zip(&mut sums) {
                for &p in plane {
                    *s += u64::from(p);
                    *s2 += u128::from(u32::from(p) * u32::from(p));
                }
            }
        }
        let count = (n * h * w) as f64;
        let (mut mean, mut std) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for (ch, &(s, s2)) in sums.iter().enumerate() {
            let m = s as f64 / count;
            let var = (s2 as f64 / count - m * m).max(0.0);
            if var == 0.0 {
                return Err(DataError::new(
                    &ds.name,
                    format!("channel {ch} is constant ({m}): its std is 0"),
                ));
            }
            mean.push((m / 255.0) as f32);
            std.push((var.sqrt() / 255.0) as f32);
        }
        Ok(Normalization { mean, std })
    }

    /// The normalised value of a 0 (black) pixel in each channel, `−mean[c] / std[c]`, computed
    /// exactly as a pixel is normalised: what padding and crops fill with, so padding looks like
    /// torchvision's zero padding of the raw image.
    pub fn zero_fill(&self) -> Vec<f32> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| (0.0 - m) * (1.0 / s))
            .collect()
    }

    /// Checks that the normalisation fits `ds` (channel count) and is usable (finite means,
    /// positive finite stds).
    pub(super) fn check(&self, ds: &Dataset) -> Result<()> {
        let c = ds.shape[1];
        if self.mean.len() != c || self.std.len() != c {
            return Err(DataError::new(
                &ds.name,
                format!(
                    "normalisation has {} means and {} stds, the images have {c} channels",
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(DataError::new(
                &ds.name,
                format!("normalisation std {s} is not positive and finite"),
            ));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::new(
                &ds.name,
                format!("normalisation mean {m} is not finite"),
            ));
        }
        Ok(())
    }

    /// Normalises image `pixels` (`[C, H, W]`, `hw = H·W`) and appends them to `out`.
    pub(super) fn push(&self, pixels: &[u8], hw: usize, out: &mut Vec<f32>) {
        for (c, plane) in pixels.chunks(hw.max(1)).enumerate() {
            let (m, inv) = (self.mean[c], 1.0 / self.std[c]);
            out.extend(plane.iter().map(|&p| (f32::from(p) / 255.0 - m) * inv));
        }
    }
}

fn to_err(ds: &Dataset, e: impl std::fmt::Display) -> DataError {
    DataError::new(&ds.name, e.to_string())
}

impl Dataset {
    /// All images normalised: `f32` tensor `[N, C, H, W]`. Errors if the dataset is
    /// inconsistent or `norm` does not match its channel count.
    pub fn to_tensor(&self, norm: &Normalization) -> Result<Tensor> {
        self.validate()?;
        norm.check(self)?;
        let mut out = Vec::with_capacity(self.images.len());
        let hw = self.shape[2] * self.shape[3];
        for img in self.images.chunks(self.image_len().max(1)).take(self.len()) {
            norm.push(img, hw, &mut out);
        }
        Tensor::from_vec(out, &self.shape).map_err(|e| to_err(self, e))
    }

    /// Mini-batches of `batch_size` images in an order shuffled by `seed` (`None`: dataset
    /// order); see [`Batches`].
    pub fn batches(
        &self,
        batch_size: usize,
        seed: Option<u64>,
        norm: &Normalization,
    ) -> Result<Batches<'_>> {
        Batches::new(self, batch_size, seed, norm.clone())
    }
}

/// `0..n` shuffled by a Fisher–Yates pass driven by [`Rng::new(seed)`](Rng::new).
pub(super) fn shuffled_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Iterator over one epoch of mini-batches: `(images [B, C, H, W], labels [B])`.
///
/// The order is a Fisher–Yates shuffle driven by [`Rng::new(seed)`](Rng::new), so the same
/// seed gives the same batches on every machine and thread count; `seed = None` keeps dataset
/// order. Every image appears exactly once per epoch; the last batch is kept even when it is
/// partial (`B = N mod batch_size` then), so no data is dropped — skip batches with
/// `labels.len() < batch_size` yourself if a fixed batch size is needed.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    ds: &'a Dataset,
    norm: Normalization,
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
}

impl<'a> Batches<'a> {
    /// Validates the dataset and `norm`, and draws the epoch's order. Errors: batch size 0,
    /// inconsistent dataset, normalisation of the wrong channel count or with std ≤ 0.
    pub fn new(
        ds: &'a Dataset,
        batch_size: usize,
        seed: Option<u64>,
        norm: Normalization,
    ) -> Result<Self> {
        ds.validate()?;
        norm.check(ds)?;
        if batch_size == 0 {
            return Err(DataError::new(
                &ds.name,
                "batch size must be at least 1, got 0",
            ));
        }
        let order = match seed {
            Some(seed) => shuffled_order(ds.len(), seed),
            None => (0..ds.len()).collect(),
        };
        Ok(Batches {
            ds,
            norm,
            order,
            batch_size,
            pos: 0,
        })
    }

    /// The epoch's image order (indices into the dataset).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of batches in the epoch, `ceil(N / batch_size)`.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let idx = self.order.get(self.pos..)?;
        let idx = &idx[..idx.len().min(self.batch_size)];
        if idx.is_empty() {
            return None;
        }
        self.pos += idx.len();
        let [_, c, h, w] = self.ds.shape;
        let mut data = Vec::with_capacity(idx.len() * c * h * w);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            // `new` validated the dataset, so every index in `order` has an image.
            self.norm.push(self.ds.image(i)?, h * w, &mut data);
            labels.push(self.ds.labels[i]);
        }
        // The length matches `[B, C, H, W]` by construction; `ok()` rather than a panic.
        let t = Tensor::from_vec(data, &[idx.len(), c, h, w]).ok()?;
        Some((t, labels))
    }
}
