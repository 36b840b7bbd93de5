//! CIFAR-10 / CIFAR-100 binary format.
//!
//! A file is a sequence of records: CIFAR-10 `[label, 3072 pixels]`, CIFAR-100
//! `[coarse label, fine label, 3072 pixels]`; pixels are `[3, 32, 32]` (R, G, B planes,
//! row-major). The record count is `file size / record size`; a size that is not a multiple
//! is an error.

use super::{DataError, Dataset, Result, class_names, read_data_file};
use std::path::Path;

/// Pixels of one CIFAR image (`3 × 32 × 32`).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR variant, and for CIFAR-100 which labels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: 1 label byte per record, 10 classes.
    Cifar10,
    /// CIFAR-100, the 100 fine labels (second label byte).
    Cifar100Fine,
    /// CIFAR-100, the 20 coarse (superclass) labels (first label byte).
    Cifar100Coarse,
}

/// CIFAR-10 class names.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 coarse (superclass) names.
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// CIFAR-100 fine class names.
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

impl CifarKind {
    /// Label bytes before the pixels of each record (1 or 2).
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            _ => 2,
        }
    }

    /// Bytes per record: label bytes + 3072.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + CIFAR_IMAGE_BYTES
    }

    /// Class names of the labels used.
    pub fn classes(self) -> &'static [&'static str] {
        match self {
            CifarKind::Cifar10 => &CIFAR10_CLASSES,
            CifarKind::Cifar100Fine => &CIFAR100_FINE_CLASSES,
            CifarKind::Cifar100Coarse => &CIFAR100_COARSE_CLASSES,
        }
    }

    /// Dataset name: `cifar-10`, `cifar-100 (fine labels)` or `cifar-100 (coarse labels)`.
    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10",
            CifarKind::Cifar100Fine => "cifar-100 (fine labels)",
            CifarKind::Cifar100Coarse => "cifar-100 (coarse labels)",
        }
    }
}

/// Parses the records of one CIFAR binary file into `dst` (pixels) and `labels`. Both label
/// bytes of CIFAR-100 are range-checked (coarse < 20, fine < 100) whichever is used.
fn parse_into(
    file: &str,
    bytes: &[u8],
    kind: CifarKind,
    dst: &mut Vec<u8>,
    labels: &mut Vec<usize>,
) -> Result<()> {
    let rec = kind.record_bytes();
    if bytes.is_empty() {
        return Err(DataError::new(file, "empty file: no CIFAR records"));
    }
    if !bytes.len().is_multiple_of(rec) {
        return Err(DataError::new(
            file,
            format!(
                "size {} is not a multiple of the {} record size {rec} ({} whole records and {} extra bytes)",
                bytes.len(),
                kind.name(),
                bytes.len() / rec,
                bytes.len() % rec
            ),
        ));
    }
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let (lab, px) = r.split_at(kind.label_bytes());
        let (label, limits): (usize, &[(u8, usize, &str)]) = match kind {
            CifarKind::Cifar10 => (lab[0].into(), &[(lab[0], 10, "label")]),
            CifarKind::Cifar100Fine | CifarKind::Cifar100Coarse => {
                let l = if kind == CifarKind::Cifar100Fine {
                    lab[1]
                } else {
                    lab[0]
                };
                (
                    l.into(),
                    &[(lab[0], 20, "coarse label"), (lab[1], 100, "fine label")],
                )
            }
        };
        for &(v, n, what) in limits {
            if usize::from(v) >= n {
                return Err(DataError::new(
                    file,
                    format!("record {i}: {what} {v} is out of range for {n} classes"),
                ));
            }
        }
        labels.push(label);
        dst.extend_from_slice(px);
    }
    Ok(())
}

/// Parses one in-memory CIFAR binary file (`file` names it in errors) into a dataset of
/// images `[N, 3, 32, 32]`.
pub fn parse_cifar(file: &str, bytes: &[u8], kind: CifarKind) -> Result<Dataset> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    parse_into(file, bytes, kind, &mut images, &mut labels)?;
    Ok(Dataset {
        shape: [labels.len(), 3, 32, 32],
        images,
        labels,
        classes: class_names(kind.classes()),
        name: kind.name().to_string(),
        source: file.to_string(),
    })
}

/// Reads and concatenates CIFAR binary files (e.g. `data_batch_1.bin` … `data_batch_5.bin`, or
/// `train.bin`) in the given order into one dataset of images `[N, 3, 32, 32]`.
pub fn load_cifar(paths: &[&Path], kind: CifarKind) -> Result<Dataset> {
    if paths.is_empty() {
        return Err(DataError::new(kind.name(), "no CIFAR files given"));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut shown = Vec::new();
    for p in paths {
        let file = p.display().to_string();
        let bytes = read_data_file(p, &file)?;
        parse_into(&file, &bytes, kind, &mut images, &mut labels)?;
        shown.push(file);
    }
    Ok(Dataset {
        shape: [labels.len(), 3, 32, 32],
        images,
        labels,
        classes: class_names(kind.classes()),
        name: kind.name().to_string(),
        source: shown.join(", "),
    })
}
