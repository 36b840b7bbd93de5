//! `--dataset NAME [--data DIR]`: which dataset to load, where from, and its defaults.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::fashion::{
    DEBIAN_FASHION_MNIST_DIR, DataLocation, Split, load_fashion_mnist, load_mnist,
};
use super::{CifarKind, DataError, Dataset, Normalization, Result, load_cifar};

/// A dataset the command line can name: `fashion-mnist`, `fashion-mnist-subset`, `mnist`, `cifar10`, `cifar100` or
/// `folder:PATH` (an ImageFolder tree with `train/` and `test/` sub-folders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSpec {
    /// Fashion-MNIST (IDX): `--data DIR`, else Debian's copy, else the embedded subset.
    FashionMnist,
    /// The 5,000/1,000-image Fashion-MNIST subset embedded in the binary, whatever is installed
    /// (quick runs, CI).
    FashionMnistSubset,
    /// MNIST (IDX files in `--data DIR`).
    Mnist,
    /// CIFAR-10 binary batches (`data_batch_{1..5}.bin`, `test_batch.bin` in `--data DIR`).
    Cifar10,
    /// CIFAR-100 binary files (`train.bin`, `test.bin` in `--data DIR`), fine labels.
    Cifar100,
    /// ImageFolder: `PATH/train/<class>/*.png|jpg` and `PATH/test/<class>/…`.
    Folder(PathBuf),
}

/// The names [`DatasetSpec::from_str`] accepts, for messages.
pub const DATASET_NAMES: &str =
    "fashion-mnist, fashion-mnist-subset, mnist, cifar10, cifar100, folder:PATH";

impl FromStr for DatasetSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(DatasetSpec::FashionMnist),
            "fashion-mnist-subset" => Ok(DatasetSpec::FashionMnistSubset),
            "mnist" => Ok(DatasetSpec::Mnist),
            "cifar10" | "cifar-10" => Ok(DatasetSpec::Cifar10),
            "cifar100" | "cifar-100" => Ok(DatasetSpec::Cifar100),
            _ => match s.strip_prefix("folder:") {
                Some(p) if !p.is_empty() => Ok(DatasetSpec::Folder(PathBuf::from(p))),
                _ => Err(format!(
                    "unknown dataset `{s}`; expected one of {DATASET_NAMES}"
                )),
            },
        }
    }
}

impl DatasetSpec {
    /// The name recorded in checkpoints: `fashion-mnist`, …, `folder:PATH`.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::FashionMnist => "fashion-mnist".into(),
            DatasetSpec::FashionMnistSubset => "fashion-mnist-subset".into(),
            DatasetSpec::Mnist => "mnist".into(),
            DatasetSpec::Cifar10 => "cifar10".into(),
            DatasetSpec::Cifar100 => "cifar100".into(),
            DatasetSpec::Folder(p) => format!("folder:{}", p.display()),
        }
    }

    /// The same dataset with a folder's path made absolute (and resolved, when it exists),
    /// so that the name a run records finds the same images from any working directory.
    pub fn absolute(self) -> DatasetSpec {
        match self {
            DatasetSpec::Folder(p) => DatasetSpec::Folder(
                p.canonicalize()
                    .or_else(|_| std::path::absolute(&p))
                    .unwrap_or(p),
            ),
            other => other,
        }
    }

    /// The input `[C, H, W]` of the dataset's images (`None` for a folder: it is resized to
    /// the model's input).
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match self {
            DatasetSpec::FashionMnist | DatasetSpec::FashionMnistSubset | DatasetSpec::Mnist => {
                Some([1, 28, 28])
            }
            DatasetSpec::Cifar10 | DatasetSpec::Cifar100 => Some([3, 32, 32]),
            DatasetSpec::Folder(_) => None,
        }
    }

    /// The default normalisation for this dataset (its training-set statistics; ImageNet's for
    /// a folder, whose own statistics `allmlp train` measures and stores in the checkpoint).
    pub fn normalization(&self) -> Normalization {
        match self {
            DatasetSpec::FashionMnist | DatasetSpec::FashionMnistSubset => {
                Normalization::fashion_mnist()
            }
            DatasetSpec::Mnist => Normalization::mnist(),
            DatasetSpec::Cifar10 => Normalization::cifar10(),
            DatasetSpec::Cifar100 => Normalization::cifar100(),
            DatasetSpec::Folder(_) => Normalization {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
        }
    }

    /// Loads `split`. `data` is `--data DIR` (required for MNIST and CIFAR); `input` is the
    /// model's `[C, H, W]`, which folder images are converted and resized to.
    pub fn load(&self, split: Split, data: Option<&Path>, input: [usize; 3]) -> Result<Dataset> {
        let need_dir = |what: &str| {
            data.ok_or_else(|| {
                DataError::new(
                    self.name(),
                    format!("needs --data DIR: the directory holding the {what}"),
                )
            })
        };
        let no_dir = match self {
            DatasetSpec::FashionMnistSubset => Some("the subset is embedded in the binary"),
            DatasetSpec::Folder(_) => Some("the folder is the PATH of folder:PATH"),
            _ => None,
        };
        if let (Some(why), Some(d)) = (no_dir, data) {
            return Err(DataError::new(
                self.name(),
                format!("takes no --data ({why}), got --data {}", d.display()),
            ));
        }
        match self {
            DatasetSpec::FashionMnist => {
                let loc = DataLocation::resolve(data, Path::new(DEBIAN_FASHION_MNIST_DIR));
                load_fashion_mnist(split, &loc)
            }
            DatasetSpec::FashionMnistSubset => load_fashion_mnist(split, &DataLocation::Embedded),
            DatasetSpec::Mnist => load_mnist(split, need_dir("MNIST IDX files")?),
            DatasetSpec::Cifar10 | DatasetSpec::Cifar100 => {
                let dir = need_dir("CIFAR binary files")?;
                let (kind, files): (CifarKind, Vec<String>) = match (self, split) {
                    (DatasetSpec::Cifar10, Split::Train) => (
                        CifarKind::Cifar10,
                        (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
                    ),
                    (DatasetSpec::Cifar10, Split::Test) => {
                        (CifarKind::Cifar10, vec!["test_batch.bin".into()])
                    }
                    (_, Split::Train) => (CifarKind::Cifar100Fine, vec!["train.bin".into()]),
                    (_, Split::Test) => (CifarKind::Cifar100Fine, vec!["test.bin".into()]),
                };
                let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
                let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
                load_cifar(&refs, kind)
            }
            DatasetSpec::Folder(root) => super::folder::load_image_folder(
                &root.join(match split {
                    Split::Train => "train",
                    Split::Test => "test",
                }),
                input,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_round_trip() {
        for s in [
            "fashion-mnist",
            "mnist",
            "cifar10",
            "cifar100",
            "folder:/x/y",
        ] {
            let d: DatasetSpec = s.parse().unwrap();
            assert_eq!(d.name(), s);
        }
        let e = "imagenet".parse::<DatasetSpec>().unwrap_err();
        assert!(e.contains("imagenet") && e.contains("cifar100"), "{e}");
        assert!("folder:".parse::<DatasetSpec>().is_err());
    }

    #[test]
    fn datasets_that_need_a_directory_say_so() {
        let e = DatasetSpec::Cifar10
            .load(Split::Train, None, [3, 32, 32])
            .unwrap_err();
        assert!(e.to_string().contains("--data DIR"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = DatasetSpec::Cifar10
            .load(Split::Test, Some(dir.path()), [3, 32, 32])
            .unwrap_err();
        assert!(e.to_string().contains("test_batch.bin"), "{e}");
    }

    #[test]
    fn fashion_mnist_shapes_and_normalization_agree() {
        let d = DatasetSpec::FashionMnist;
        let ds = d.load(Split::Test, None, [1, 28, 28]).unwrap();
        assert_eq!(ds.shape[1..], d.image_shape().unwrap());
        assert_eq!(d.normalization().mean.len(), ds.shape[1]);
    }

    #[test]
    fn folder_spec_reads_train_and_test_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        for (split, class, v) in [
            ("train", "ant", 10u8),
            ("train", "bee", 20),
            ("test", "bee", 30),
        ] {
            let p = dir.path().join(split).join(class);
            std::fs::create_dir_all(&p).unwrap();
            image::GrayImage::from_pixel(5, 5, image::Luma([v]))
                .save(p.join("x.png"))
                .unwrap();
        }
        let spec: DatasetSpec = format!("folder:{}", dir.path().display()).parse().unwrap();
        let train = spec.load(Split::Train, None, [1, 4, 4]).unwrap();
        assert_eq!(train.classes, ["ant", "bee"]);
        assert_eq!(train.labels, [0, 1]);
        assert_eq!(train.image(1).unwrap(), [20; 16]);
        let test = spec.load(Split::Test, None, [1, 4, 4]).unwrap();
        assert_eq!(
            (test.classes.clone(), test.image(0).unwrap()),
            (vec!["bee".to_string()], &[30u8; 16][..])
        );
    }
}
