//! Byte-level property tests of the readers that take files from users: CIFAR binaries and
//! trained checkpoints (safetensors). Deterministic loops (fixed seeds) over truncations and
//! random byte changes: a reader must never panic, and must either return an error naming the
//! input or load something consistent. (IDX files get the same treatment in
//! `src/data/tests.rs`.) `cargo fuzz` is not installed on this machine, so these loops stand in
//! for fuzz targets.

use std::path::Path;

use allmlp::checkpoint::{TrainedMeta, load_model, trained_state_dict};
use allmlp::data::{CifarKind, Normalization, load_cifar, parse_cifar};
use allmlp::layers::state_dict::StateDict;
use allmlp::models::{ModelOptions, create_model};
use allmlp::tensor_core::Rng;

/// Changes 1–3 random bytes of `f` inside `range` to random values.
fn flip(rng: &mut Rng, f: &mut [u8], range: std::ops::Range<usize>) {
    for _ in 0..1 + rng.below(3) {
        let i = range.start + rng.below(range.len() as u64) as usize;
        f[i] = rng.below(256) as u8;
    }
}

fn cifar_bytes(rng: &mut Rng, n: usize, kind: CifarKind) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..n {
        match kind {
            CifarKind::Cifar10 => v.push(rng.below(10) as u8),
            _ => v.extend([rng.below(20) as u8, rng.below(100) as u8]),
        }
        v.extend((0..3072).map(|_| rng.below(256) as u8));
    }
    v
}

#[test]
fn cifar_byte_changes_and_truncations_never_panic() {
    let mut rng = Rng::new(31);
    let dir = tempfile::tempdir().unwrap();
    for kind in [
        CifarKind::Cifar10,
        CifarKind::Cifar100Fine,
        CifarKind::Cifar100Coarse,
    ] {
        let good = cifar_bytes(&mut rng, 3, kind);
        let rec = kind.record_bytes();
        // Label bytes are where a change can make the file invalid; pixels anywhere else.
        let label_at: Vec<usize> = (0..3)
            .flat_map(|r| (0..kind.label_bytes()).map(move |b| r * rec + b))
            .collect();
        for _ in 0..3000 {
            let mut f = good.clone();
            if rng.below(2) == 0 {
                let i = label_at[rng.below(label_at.len() as u64) as usize];
                f[i] = rng.below(256) as u8;
            } else {
                flip(&mut rng, &mut f, 0..good.len());
            }
            match parse_cifar("c.bin", &f, kind) {
                Ok(ds) => {
                    ds.validate().unwrap();
                    assert_eq!(ds.shape, [3, 3, 32, 32]);
                    assert!(ds.labels.iter().all(|&l| l < kind.classes().len()));
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with("c.bin: record "), "{msg}");
                    assert!(msg.contains("out of range"), "{msg}");
                }
            }
        }
        // Truncated or padded files, through the file reader: an error naming the file unless
        // the length is a whole number of records.
        let path = dir.path().join("data_batch_1.bin");
        for len in (0..good.len() + 40).step_by(97) {
            let mut f = good.clone();
            f.resize(len, 7);
            std::fs::write(&path, &f).unwrap();
            match load_cifar(&[&path], kind) {
                Ok(ds) => {
                    assert!(len > 0 && len % rec == 0, "len {len}");
                    assert_eq!(ds.len(), len / rec);
                }
                Err(e) => {
                    assert!(len == 0 || len % rec != 0, "len {len}: {e}");
                    assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
                }
            }
        }
    }
}

/// A small trained checkpoint: `mixer_tiny` at 8×8 inputs (patch 4), 3 classes, with metadata.
fn checkpoint(path: &Path) -> Vec<u8> {
    let opts = ModelOptions {
        img_size: Some(8),
        patch_size: Some(4),
        num_classes: Some(3),
        ..ModelOptions::default()
    };
    let net = create_model("mixer_tiny", &opts).unwrap();
    let meta = TrainedMeta {
        dataset: "fashion-mnist".into(),
        normalization: Normalization::fashion_mnist(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        epoch: 2,
        metrics: serde_json::json!({"test_acc": 0.5}),
    };
    trained_state_dict(net.as_ref(), &meta)
        .unwrap()
        .save(path)
        .unwrap();
    std::fs::read(path).unwrap()
}

/// Where the tensor data starts: after the 8-byte length prefix and the JSON header.
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn state_dict_truncations_and_byte_changes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = checkpoint(&dir.path().join("ok.safetensors"));
    let start = data_start(&good);
    assert!(start > 1000 && start < good.len(), "header ends at {start}");
    let reference = StateDict::from_bytes(&good).unwrap();
    // Every prefix up to the end of the header, then a stride through the data: never valid.
    let lens = (0..=start).chain((start..good.len()).step_by(4099));
    for len in lens {
        let e = StateDict::from_bytes(&good[..len]).expect_err("a strict prefix must not load");
        assert!(e.to_string().starts_with("<bytes>: "), "len {len}: {e}");
    }
    // Random changes, mostly in the header (where the structure is), some in the data.
    let mut rng = Rng::new(32);
    let (mut ok, mut err) = (0, 0);
    for i in 0..2000 {
        let mut f = good.clone();
        let range = if i % 20 == 0 {
            start..good.len()
        } else {
            0..start
        };
        flip(&mut rng, &mut f, range);
        match StateDict::from_bytes(&f) {
            Ok(sd) => {
                ok += 1;
                // Whatever loaded is self-consistent.
                for (k, t) in sd.iter() {
                    assert_eq!(t.numel(), t.shape().iter().product::<usize>(), "{k}");
                }
            }
            Err(e) => {
                err += 1;
                assert!(e.to_string().starts_with("<bytes>: "), "{e}");
            }
        }
    }
    // Both outcomes happen (otherwise the loop tests nothing); the reference is intact.
    assert!(ok > 50 && err > 500, "ok {ok}, err {err}");
    assert_eq!(reference.len(), StateDict::from_bytes(&good).unwrap().len());
}

#[test]
fn load_model_on_damaged_checkpoints_errors_or_loads() {
    let dir = tempfile::tempdir().unwrap();
    let good = checkpoint(&dir.path().join("ok.safetensors"));
    let start = data_start(&good);
    let path = dir.path().join("damaged.safetensors");
    let shown = path.display().to_string();
    let opts = Default::default();
    // Truncations: a stride through the header and the data.
    let lens = (0..=start)
        .step_by(61)
        .chain((start..good.len()).step_by(250_007));
    for len in lens {
        std::fs::write(&path, &good[..len]).unwrap();
        let e = load_model(&path, None, &opts)
            .err()
            .expect("a truncated checkpoint must not load");
        assert!(e.to_string().contains(&shown), "len {len}: {e}");
    }
    // Byte changes in the header (JSON, metadata) and a few in the data.
    let mut rng = Rng::new(33);
    let (mut ok, mut err) = (0, 0);
    for i in 0..150 {
        let mut f = good.clone();
        let range = if i % 10 == 0 {
            start..good.len()
        } else {
            8..start
        };
        flip(&mut rng, &mut f, range);
        std::fs::write(&path, &f).unwrap();
        match load_model(&path, None, &opts) {
            Ok(m) => {
                ok += 1;
                assert_eq!(m.net.num_classes(), 3);
            }
            Err(e) => {
                err += 1;
                // The error names the file (or, for a model name changed into another, the
                // unknown model).
                let msg = e.to_string();
                assert!(msg.contains(&shown) || msg.contains("model"), "{msg}");
            }
        }
    }
    assert!(ok > 5 && err > 20, "ok {ok}, err {err}");
}
