//! Dataset readers: MNIST / Fashion-MNIST (IDX, raw or gzip), CIFAR-10/100 (binary format),
//! ImageFolder trees (PNG/JPEG), normalisation to `f32` tensors `[N, C, H, W]`, seeded
//! augmentation ([`Augment`]: crop, flip, erasing; [`Mix`]: mixup/cutmix) and the prefetching,
//! reproducible batch [`Loader`] used by training and evaluation.
//!
//! Fashion-MNIST is found, in this order, in `--data DIR` (when given), in the Debian package
//! `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`), or in a 5,000 + 1,000 image
//! subset embedded in the binary ([`fashion::DataLocation`]); [`Dataset::source`] says which.
//!
//! Every reader validates its input: a corrupt, truncated or inconsistent file gives a
//! [`DataError`] naming the file and the problem, never a panic.

pub mod augment;
pub mod batch;
pub mod beta;
pub mod cifar;
pub mod fashion;
pub mod file;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod mix;
pub mod select;

pub use augment::Augment;
pub use batch::{Batches, Normalization};
pub use beta::beta_sample;
pub use cifar::{CifarKind, load_cifar, parse_cifar};
pub use fashion::{DEBIAN_FASHION_MNIST_DIR, DataLocation, Split, load_fashion_mnist, load_mnist};
pub use file::read_data_file;
pub use folder::{Fit, load_image_file, load_image_folder};
pub use idx::{decode, parse_idx_images, parse_idx_labels};
pub use loader::{Batch, Loader, LoaderConfig};
pub use mix::Mix;
pub use select::{DATASET_NAMES, DatasetSpec};

use std::fmt;

/// A data-loading error: the file (or in-memory source) it concerns and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// The file path or source name the problem was found in.
    pub file: String,
    /// What is wrong, e.g. `truncated: header says 60000 images of 28×28 (47040000 bytes), got 100`.
    pub problem: String,
}

impl DataError {
    /// An error about `file` describing `problem`.
    pub fn new(file: impl Into<String>, problem: impl Into<String>) -> Self {
        DataError {
            file: file.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl std::error::Error for DataError {}

/// Result of the data readers.
pub type Result<T> = std::result::Result<T, DataError>;

/// Fashion-MNIST class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST class names (the digits), by label.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// An image classification dataset held in memory as raw bytes.
///
/// `images` is `[N, C, H, W]` row-major `u8` (`shape` = `[N, C, H, W]`), `labels[i]` is the class
/// index of image `i` into `classes`. Use [`Dataset::validate`] after building one by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixels, `[N, C, H, W]` row-major, 0..=255.
    pub images: Vec<u8>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Class index of each image, `[N]`, each `< classes.len()`.
    pub labels: Vec<usize>,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Dataset name, e.g. `fashion-mnist/train`.
    pub name: String,
    /// Where the data came from, e.g. `embedded subset (...)` or the file paths read.
    pub source: String,
}

impl Dataset {
    /// Number of images `N`.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Bytes of one image (`C·H·W`).
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// Pixels of image `i`, `[C, H, W]`; `None` when `i >= len()` (or the dataset is invalid).
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.image_len();
        self.images
            .get(i.checked_mul(n)?..i.checked_add(1)?.checked_mul(n)?)
    }

    /// The image count, shape and a 64-bit FNV-1a hash of every pixel, label and class name:
    /// equal fingerprints mean the same data in the same order (`--resume` checks it).
    pub fn fingerprint(&self) -> String {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let labels = self.labels.iter().flat_map(|&l| (l as u64).to_le_bytes());
        let classes = self.classes.iter().flat_map(|c| c.bytes().chain([0]));
        for b in self.images.iter().copied().chain(labels).chain(classes) {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
        let [n, c, hh, w] = self.shape;
        format!("{n} images {c}×{hh}×{w}, fnv1a64 {h:016x}")
    }

    /// Checks that `images`, `shape`, `labels` and `classes` agree.
    pub fn validate(&self) -> Result<()> {
        let err = |p: String| Err(DataError::new(&self.name, p));
        let total = self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if total != Some(self.images.len()) {
            return err(format!(
                "images hold {} bytes, shape {:?} needs {}",
                self.images.len(),
                self.shape,
                total.map_or("more than usize::MAX".to_string(), |t| t.to_string())
            ));
        }
        if self.labels.len() != self.shape[0] {
            return err(format!(
                "{} labels for {} images",
                self.labels.len(),
                self.shape[0]
            ));
        }
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l >= self.classes.len())
        {
            return err(format!(
                "label {l} of image {i} is out of range for {} classes",
                self.classes.len()
            ));
        }
        Ok(())
    }

    /// The first `n` images (all when `n >= len()`), same classes, name and source.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let mut d = self.clone();
        d.images.truncate(n * self.image_len());
        d.labels.truncate(n);
        d.shape[0] = n;
        d
    }
}

/// Class names as owned strings.
pub(crate) fn class_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests;
