//! Loading MNIST and Fashion-MNIST: from a directory, the Debian package, or the embedded subset.

use super::idx::{parse_idx_images, parse_idx_labels};
use super::{
    DataError, Dataset, FASHION_MNIST_CLASSES, MNIST_CLASSES, Result, class_names, read_data_file,
};
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST (gzip IDX files).
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Number of images of each split in the embedded subset (train, test).
pub const EMBEDDED_COUNTS: (usize, usize) = (5000, 1000);

const EMBEDDED: [(&str, &[u8]); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        include_bytes!("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz"),
    ),
    (
        "train-labels-idx1-ubyte.gz",
        include_bytes!("../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz"),
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        include_bytes!("../../data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz"),
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        include_bytes!("../../data/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz"),
    ),
];

/// Which split of MNIST / Fashion-MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training split (`train-*` files; 60,000 images in the full sets).
    Train,
    /// The test split (`t10k-*` files; 10,000 images in the full sets).
    Test,
}

impl Split {
    /// File name prefix: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Where to read Fashion-MNIST from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLocation {
    /// A directory given by the user (`--data DIR`); missing files are an error.
    Dir(PathBuf),
    /// The full Debian copy in [`DEBIAN_FASHION_MNIST_DIR`].
    Debian,
    /// The subset embedded in the binary (first 5,000 train / 1,000 test images).
    Embedded,
}

impl DataLocation {
    /// The location used for `--data` = `data`: that directory when given, else the Debian
    /// copy when `debian_dir` exists, else the embedded subset. (`debian_dir` is normally
    /// [`DEBIAN_FASHION_MNIST_DIR`]; tests pass another.)
    pub fn resolve(data: Option<&Path>, debian_dir: &Path) -> DataLocation {
        match data {
            Some(d) => DataLocation::Dir(d.to_path_buf()),
            None if debian_dir.is_dir() => DataLocation::Debian,
            None => DataLocation::Embedded,
        }
    }
}

/// Reads `{dir}/{name}`, or `{dir}/{name}.gz` when that is the one present.
fn read_in_dir(dir: &Path, name: &str) -> Result<(String, Vec<u8>)> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let path = if plain.is_file() || !gz.is_file() {
        plain
    } else {
        gz
    };
    let shown = path.display().to_string();
    let bytes = read_data_file(&path, &shown).map_err(|e| {
        let also = dir.join(format!("{name}.gz"));
        DataError::new(
            &shown,
            format!("{} (also looked for {})", e.problem, also.display()),
        )
    })?;
    Ok((shown, bytes))
}

/// Builds a dataset from IDX image and label files (raw or gzip), checking that both hold the
/// same number of items, images are `rows × cols` = `expect_hw` when given, and labels are
/// below `classes.len()`. Output images are `[N, 1, rows, cols]`.
pub fn dataset_from_idx(
    images: (&str, &[u8]),
    labels: (&str, &[u8]),
    expect_hw: Option<(usize, usize)>,
    classes: Vec<String>,
    name: &str,
    source: String,
) -> Result<Dataset> {
    let im = parse_idx_images(images.0, images.1)?;
    if let Some((h, w)) = expect_hw
        && (im.rows, im.cols) != (h, w)
    {
        return Err(DataError::new(
            images.0,
            format!("images are {}×{}, expected {h}×{w}", im.rows, im.cols),
        ));
    }
    let lb = parse_idx_labels(labels.0, labels.1, classes.len())?;
    if lb.len() != im.count {
        return Err(DataError::new(
            labels.0,
            format!(
                "{} labels but {} has {} images",
                lb.len(),
                images.0,
                im.count
            ),
        ));
    }
    Ok(Dataset {
        shape: [im.count, 1, im.rows, im.cols],
        images: im.pixels,
        labels: lb,
        classes,
        name: name.to_string(),
        source,
    })
}

fn load_idx_dir(
    dir: &Path,
    split: Split,
    classes: &[&str],
    name: &str,
    what: &str,
) -> Result<Dataset> {
    let p = split.prefix();
    let (ip, ib) = read_in_dir(dir, &format!("{p}-images-idx3-ubyte"))?;
    let (lp, lb) = read_in_dir(dir, &format!("{p}-labels-idx1-ubyte"))?;
    let source = format!("{what}: {ip}, {lp}");
    dataset_from_idx(
        (&ip, &ib),
        (&lp, &lb),
        Some((28, 28)),
        class_names(classes),
        name,
        source,
    )
}

/// Loads a Fashion-MNIST split from `location` (see [`DataLocation::resolve`]).
///
/// Files: `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`. Images `[N, 1, 28, 28]`, labels
/// 0..10 named by [`FASHION_MNIST_CLASSES`]. [`Dataset::source`] says which data is in use.
pub fn load_fashion_mnist(split: Split, location: &DataLocation) -> Result<Dataset> {
    let name = format!("fashion-mnist/{}", split.prefix());
    match location {
        DataLocation::Dir(d) => {
            load_idx_dir(d, split, &FASHION_MNIST_CLASSES, &name, "--data directory")
        }
        DataLocation::Debian => load_idx_dir(
            Path::new(DEBIAN_FASHION_MNIST_DIR),
            split,
            &FASHION_MNIST_CLASSES,
            &name,
            "full Debian copy (dataset-fashion-mnist)",
        ),
        DataLocation::Embedded => {
            let (i, l) = match split {
                Split::Train => (EMBEDDED[0], EMBEDDED[1]),
                Split::Test => (EMBEDDED[2], EMBEDDED[3]),
            };
            let (iname, lname) = (format!("embedded:{}", i.0), format!("embedded:{}", l.0));
            let n = match split {
                Split::Train => EMBEDDED_COUNTS.0,
                Split::Test => EMBEDDED_COUNTS.1,
            };
            let source = format!(
                "embedded subset (first {n} images of the Fashion-MNIST {} split; install \
                 dataset-fashion-mnist or pass --data DIR for the full set)",
                split.prefix()
            );
            let classes = class_names(&FASHION_MNIST_CLASSES);
            dataset_from_idx(
                (&iname, i.1),
                (&lname, l.1),
                Some((28, 28)),
                classes,
                &name,
                source,
            )
        }
    }
}

/// Loads an MNIST split from `dir` (same file names as Fashion-MNIST, raw or `.gz`).
/// Images `[N, 1, 28, 28]`, labels 0..10 named by [`MNIST_CLASSES`].
pub fn load_mnist(split: Split, dir: &Path) -> Result<Dataset> {
    let name = format!("mnist/{}", split.prefix());
    load_idx_dir(dir, split, &MNIST_CLASSES, &name, "MNIST directory")
}
