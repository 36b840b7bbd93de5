//! The training/evaluation batch loader: one epoch of normalised, augmented, optionally mixed
//! mini-batches, prepared on a background thread while the training step runs.
//!
//! **Determinism.** Everything random is derived from `(seed, epoch)` and the batch index, never
//! from thread timing: the epoch's order is a Fisher–Yates shuffle driven by
//! [`Rng::new(shuffle_seed(seed, epoch))`](shuffle_seed), and batch `b` is augmented by one
//! generator [`Rng::new(batch_seed(seed, epoch, b))`](batch_seed), used for the images in batch
//! order ([`Augment`] draws) and then for the batch's [`Mix`] draw. So a run resumed at any epoch
//! (or at any batch, [`Loader::starting_at`]) sees exactly the batches an uninterrupted run sees.
//!
//! **Prefetch.** A worker thread builds batches ahead of the consumer through a bounded channel
//! ([`PREFETCH`] batches queued, one more in progress). Dropping the [`Loader`] closes the
//! channel; the worker stops at its next send and is joined, so dropping mid-epoch neither
//! hangs nor leaks a thread.
//!
//! ```
//! use std::sync::Arc;
//! use allmlp::data::{Augment, Dataset, Loader, LoaderConfig, Mix, Normalization};
//! let ds = Arc::new(Dataset {
//!     images: (0..10 * 4).map(|i| i as u8).collect(),
//!     shape: [10, 1, 2, 2],
//!     labels: (0..10).map(|i| i % 3).collect(),
//!     classes: vec!["a".into(), "b".into(), "c".into()],
//!     name: "toy".into(),
//!     source: "memory".into(),
//! });
//! let cfg = LoaderConfig {
//!     mix: Some(Mix::mixup(0.2)),
//!     label_smoothing: 0.1,
//!     ..LoaderConfig::train(4, Normalization::identity(1))
//! };
//! let loader = Loader::new(ds, cfg, 42, 0)?;
//! assert_eq!(loader.num_batches(), 3);
//! let batches: Vec<_> = loader.collect();
//! assert_eq!(batches[2].images.shape(), &[2, 1, 2, 2]); // the last, partial batch
//! assert_eq!(batches[0].targets.as_ref().unwrap().shape(), &[4, 3]);
//! # Ok::<(), allmlp::data::DataError>(())
//! ```

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::augment::Augment;
use super::batch::shuffled_order;
use super::mix::{Mix, mix_images, soft_targets};
use super::{DataError, Dataset, Normalization, Result};
use crate::tensor_core::{Rng, Tensor};

/// Batches the worker may have finished ahead of the consumer.
pub const PREFETCH: usize = 2;

/// How a [`Loader`] builds its batches.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch (≥ 1).
    pub batch_size: usize,
    /// Shuffle the epoch's order (training); `false` keeps dataset order (evaluation).
    pub shuffle: bool,
    /// Per-channel normalisation applied to every image before augmentation.
    pub normalization: Normalization,
    /// Per-image augmentation ([`Augment::none`] for evaluation).
    pub augment: Augment,
    /// Mixup/cutmix; when set, every batch carries soft targets.
    pub mix: Option<Mix>,
    /// Label smoothing of the soft targets (only used with `mix`; without it the labels are
    /// hard and smoothing belongs to the loss).
    pub label_smoothing: f32,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
}

impl LoaderConfig {
    /// Training defaults: shuffled, [`Augment::standard`], no mixing, no smoothing, the last
    /// partial batch kept.
    pub fn train(batch_size: usize, normalization: Normalization) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            normalization,
            augment: Augment::standard(),
            mix: None,
            label_smoothing: 0.0,
            drop_last: false,
        }
    }

    /// Evaluation: dataset order, no augmentation or mixing, every image.
    pub fn eval(batch_size: usize, normalization: Normalization) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            normalization,
            augment: Augment::none(),
            mix: None,
            label_smoothing: 0.0,
            drop_last: false,
        }
    }
}

/// One mini-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised (augmented, mixed) images `[B, C, H, W]`.
    pub images: Tensor,
    /// The class of each image, `[B]` (before mixing).
    pub labels: Vec<usize>,
    /// Soft targets `[B, K]` (`K` = the dataset's classes) when the config has `mix`.
    pub targets: Option<Tensor>,
}

/// SplitMix64's finaliser of `z + γ`: a bijection of `u64` that scrambles every bit.
fn scramble(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of stream `stream` of epoch `epoch` of a run seeded `seed` (nested SplitMix64
/// hashing, so nearby seeds, epochs and streams give unrelated generators).
pub fn derive_seed(seed: u64, epoch: u64, stream: u64) -> u64 {
    scramble(scramble(scramble(seed) ^ epoch) ^ stream)
}

/// The seed of epoch `epoch`'s shuffle.
pub fn shuffle_seed(seed: u64, epoch: u64) -> u64 {
    derive_seed(seed, epoch, 0)
}

/// The seed of the augmentation generator of batch `batch` of epoch `epoch`.
pub fn batch_seed(seed: u64, epoch: u64, batch: usize) -> u64 {
    derive_seed(seed, epoch, batch as u64 + 1)
}

/// Everything the worker needs to build batch `b`, independent of any other batch.
struct Plan {
    ds: Arc<Dataset>,
    cfg: LoaderConfig,
    order: Arc<[usize]>,
    fill: Vec<f32>,
    seed: u64,
    epoch: u64,
}

impl Plan {
    fn build(&self, b: usize, scratch: &mut Vec<f32>) -> Batch {
        let [_, c, h, w] = self.ds.shape;
        let n = c * h * w;
        let bs = self.cfg.batch_size;
        let idx = &self.order[b * bs..((b + 1) * bs).min(self.order.len())];
        let mut rng = Rng::new(batch_seed(self.seed, self.epoch, b));
        let mut data = Vec::with_capacity(idx.len() * n);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            let start = data.len();
            self.cfg
                .normalization
                .push(&self.ds.images[i * n..(i + 1) * n], h * w, &mut data);
            self.cfg
                .augment
                .run(&mut data[start..], [c, h, w], &self.fill, &mut rng, scratch);
            labels.push(self.ds.labels[i]);
        }
        let shape = [idx.len(), c, h, w];
        let targets = self.cfg.mix.map(|mix| {
            let draw = mix.draw(&mut rng, h, w);
            mix_images(&mut data, shape, &draw);
            let k = self.ds.classes.len();
            let t = soft_targets(&labels, k, self.cfg.label_smoothing, draw.lam);
            // Lengths match the shapes by construction (checked in `Loader::starting_at`).
            Tensor::from_vec(t, &[idx.len(), k]).expect("targets [B, K]")
        });
        let images = Tensor::from_vec(data, &shape).expect("images [B, C, H, W]");
        Batch {
            images,
            labels,
            targets,
        }
    }
}

/// One epoch of [`Batch`]es, built on a background thread; see the [module docs](self).
#[derive(Debug)]
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    order: Arc<[usize]>,
    next: usize,
    num_batches: usize,
}

impl Loader {
    /// The loader of epoch `epoch` of a run seeded `seed`, from its first batch.
    pub fn new(ds: Arc<Dataset>, cfg: LoaderConfig, seed: u64, epoch: u64) -> Result<Loader> {
        Loader::starting_at(ds, cfg, seed, epoch, 0)
    }

    /// Like [`Loader::new`] but skipping the first `first_batch` batches without building them
    /// (resuming mid-epoch); batch `b` is the same as from [`Loader::new`].
    ///
    /// Errors: an inconsistent or empty dataset, a normalisation of the wrong channel count
    /// or with std ≤ 0, batch size 0, `drop_last` with fewer images than one batch, invalid
    /// augmentation or mix settings, label smoothing outside `[0, 1]`, `first_batch` beyond the
    /// epoch, or a thread that cannot be started.
    pub fn starting_at(
        ds: Arc<Dataset>,
        cfg: LoaderConfig,
        seed: u64,
        epoch: u64,
        first_batch: usize,
    ) -> Result<Loader> {
        ds.validate()?;
        cfg.normalization.check(&ds)?;
        cfg.augment.check()?;
        if let Some(mix) = &cfg.mix {
            mix.check()?;
        }
        let err = |p: String| Err(DataError::new(&ds.name, p));
        if cfg.batch_size == 0 {
            return err("batch size must be at least 1, got 0".into());
        }
        if ds.is_empty() {
            return err("no images to load".into());
        }
        if !(0.0..=1.0).contains(&cfg.label_smoothing) {
            return err(format!(
                "label smoothing must be in [0, 1], got {}",
                cfg.label_smoothing
            ));
        }
        let num_batches = if cfg.drop_last {
            ds.len() / cfg.batch_size
        } else {
            ds.len().div_ceil(cfg.batch_size)
        };
        if num_batches == 0 {
            return err(format!(
                "batch size {} with drop_last leaves no batch of {} images",
                cfg.batch_size,
                ds.len()
            ));
        }
        if first_batch > num_batches {
            return err(format!(
                "cannot start at batch {first_batch}: the epoch has {num_batches}"
            ));
        }
        let order: Arc<[usize]> = if cfg.shuffle {
            shuffled_order(ds.len(), shuffle_seed(seed, epoch)).into()
        } else {
            (0..ds.len()).collect()
        };
        let name = ds.name.clone();
        let plan = Plan {
            fill: cfg.normalization.zero_fill(),
            ds,
            cfg,
            order: order.clone(),
            seed,
            epoch,
        };
        let (tx, rx) = sync_channel(PREFETCH);
        let worker = std::thread::Builder::new()
            .name("allmlp-loader".into())
            .spawn(move || produce(&plan, first_batch..num_batches, &tx))
            .map_err(|e| DataError::new(name, format!("cannot start the loader thread: {e}")))?;
        Ok(Loader {
            rx: Some(rx),
            worker: Some(worker),
            order,
            next: first_batch,
            num_batches,
        })
    }

    /// Batches in the whole epoch (`ceil(N / B)`, or `floor` with `drop_last`), including any
    /// skipped by [`Loader::starting_at`].
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }

    /// The epoch's image order (indices into the dataset).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Stops the worker and waits for it; returns the worker's panic payload, if it panicked.
    fn stop(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        self.rx = None;
        self.worker.take().and_then(|w| w.join().err())
    }
}

/// Sends batches `range` until done or the receiver is gone.
fn produce(plan: &Plan, range: std::ops::Range<usize>, tx: &SyncSender<Batch>) {
    let mut scratch = Vec::new();
    for b in range {
        if tx.send(plan.build(b, &mut scratch)).is_err() {
            return;
        }
    }
}

impl Iterator for Loader {
    type Item = Batch;

    /// The next batch, waiting for the worker if it is not ready. A worker that panicked
    /// (a bug: every input was checked by the constructor) re-raises its panic here rather
    /// than ending the epoch early.
    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.num_batches {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(b) => {
                self.next += 1;
                Some(b)
            }
            Err(_) => {
                if let Some(panic) = self.stop() {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.num_batches - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Loader {}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail; it then returns.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests;
