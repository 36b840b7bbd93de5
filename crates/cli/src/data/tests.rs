//! Tests of the dataset readers. References are written here independently of the readers:
//! IDX and CIFAR files are encoded by hand (big-endian headers, explicit record layout), and the
//! embedded-subset statistics were computed with Python's `gzip` module (tools/make_fmnist_subset.py
//! inputs) — see the constants in `embedded_subset_matches_python_reference`.

use super::cifar::{CIFAR10_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES};
use super::fashion::dataset_from_idx;
use super::*;
use crate::tensor_core::Rng;
use std::io::Write;
use std::path::Path;

/// Hand-written IDX encoder: magic `[0, 0, 8, ndim]`, big-endian u32 dims, data.
fn idx_bytes(ndim: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, ndim];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn random_bytes(rng: &mut Rng, n: usize, below: u64) -> Vec<u8> {
    (0..n).map(|_| rng.below(below) as u8).collect()
}

fn assert_err<T: std::fmt::Debug>(r: Result<T>, file: &str, words: &[&str]) {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    assert!(msg.starts_with(file), "error should name {file}: {msg}");
    for w in words {
        assert!(msg.contains(w), "error should mention {w:?}: {msg}");
    }
}

#[test]
fn idx_roundtrip_raw_and_gzip_random_shapes() {
    let mut rng = Rng::new(1);
    for (n, h, w) in [(1, 1, 1), (3, 28, 28), (7, 5, 3), (0, 28, 28), (2, 1, 9)] {
        let px = random_bytes(&mut rng, n * h * w, 256);
        let labels = random_bytes(&mut rng, n, 10);
        let ib = idx_bytes(3, &[n as u32, h as u32, w as u32], &px);
        let lb = idx_bytes(1, &[n as u32], &labels);
        for (ib, lb) in [(ib.clone(), lb.clone()), (gzip(&ib), gzip(&lb))] {
            let im = parse_idx_images("im", &ib).unwrap();
            assert_eq!((im.count, im.rows, im.cols), (n, h, w));
            assert_eq!(im.pixels, px);
            let l = parse_idx_labels("lb", &lb, 10).unwrap();
            assert_eq!(l, labels.iter().map(|&x| x as usize).collect::<Vec<_>>());
            let ds = dataset_from_idx(
                ("im", &ib),
                ("lb", &lb),
                None,
                vec!["c".into(); 10],
                "t",
                "s".into(),
            )
            .unwrap();
            assert_eq!(ds.shape, [n, 1, h, w]);
            ds.validate().unwrap();
            for i in 0..n {
                assert_eq!(ds.image(i).unwrap(), &px[i * h * w..(i + 1) * h * w]);
            }
            assert!(ds.image(n).is_none());
        }
    }
}

#[test]
fn gzip_is_detected_by_magic_not_extension() {
    let raw = idx_bytes(1, &[3], &[1, 2, 3]);
    assert_eq!(
        parse_idx_labels("labels.bin", &gzip(&raw), 10).unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(
        parse_idx_labels("labels.gz", &raw, 10).unwrap(),
        vec![1, 2, 3]
    );
}

#[test]
fn idx_errors_name_file_and_problem() {
    let px = vec![0u8; 2 * 4 * 4];
    let good = idx_bytes(3, &[2, 4, 4], &px);
    let labels = idx_bytes(1, &[2], &[0, 1]);
    // Wrong magic: a label file given as images, and garbage.
    assert_err(
        parse_idx_images("a.idx", &labels),
        "a.idx",
        &["wrong magic 0x00000801", "0x00000803"],
    );
    assert_err(
        parse_idx_labels("b.idx", &good, 10),
        "b.idx",
        &["wrong magic 0x00000803"],
    );
    let mut f32_type = good.clone();
    f32_type[2] = 0x0d;
    assert_err(
        parse_idx_images("t.idx", &f32_type),
        "t.idx",
        &["wrong magic 0x00000d03"],
    );
    assert_err(
        parse_idx_images("e.idx", &[]),
        "e.idx",
        &["truncated", "0 bytes"],
    );
    assert_err(
        parse_idx_images("h.idx", &good[..10]),
        "h.idx",
        &["truncated header", "expected 16"],
    );
    assert_err(
        parse_idx_images("d.idx", &good[..good.len() - 1]),
        "d.idx",
        &["truncated", "need 32", "got 31"],
    );
    let mut long = good.clone();
    long.push(0);
    assert_err(
        parse_idx_images("l.idx", &long),
        "l.idx",
        &["1 trailing bytes"],
    );
    let huge = idx_bytes(3, &[u32::MAX, u32::MAX, u32::MAX], &[]);
    assert_err(parse_idx_images("o.idx", &huge), "o.idx", &["overflow"]);
    assert_err(
        parse_idx_labels("r.idx", &idx_bytes(1, &[3], &[0, 10, 2]), 10),
        "r.idx",
        &["label 10 at index 1", "10 classes"],
    );
    let mut bad_gz = gzip(&good);
    let k = bad_gz.len() / 2;
    bad_gz.truncate(k);
    assert_err(parse_idx_images("g.gz", &bad_gz), "g.gz", &["gzip"]);
    // Count mismatch and wrong image size in the pair loader.
    let three = idx_bytes(1, &[3], &[0, 1, 2]);
    let cls = || vec!["c".to_string(); 10];
    assert_err(
        dataset_from_idx(
            ("im", &good),
            ("lb", &three),
            None,
            cls(),
            "t",
            String::new(),
        ),
        "lb",
        &["3 labels but im has 2 images"],
    );
    assert_err(
        dataset_from_idx(
            ("im", &good),
            ("lb", &labels),
            Some((28, 28)),
            cls(),
            "t",
            String::new(),
        ),
        "im",
        &["4×4, expected 28×28"],
    );
}

#[test]
fn idx_truncation_and_byte_flips_never_panic() {
    let mut rng = Rng::new(7);
    let px = random_bytes(&mut rng, 3 * 6 * 5, 256);
    let raw = idx_bytes(3, &[3, 6, 5], &px);
    let gz = gzip(&raw);
    let lraw = idx_bytes(1, &[3], &[1, 2, 3]);
    for file in [&raw, &gz, &lraw, &gzip(&lraw)] {
        for len in 0..file.len() {
            // A strict prefix of a valid file is never a valid file of the same kind.
            assert!(parse_idx_images("x", &file[..len]).is_err(), "prefix {len}");
            assert!(
                parse_idx_labels("x", &file[..len], 10).is_err(),
                "prefix {len}"
            );
        }
        for _ in 0..3000 {
            let mut f = file.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(f.len() as u64) as usize;
                f[i] = rng.below(256) as u8;
            }
            // Either result is fine; what matters is no panic and consistent sizes on Ok.
            if let Ok(im) = parse_idx_images("x", &f) {
                assert_eq!(im.pixels.len(), im.count * im.rows * im.cols);
            }
            if let Ok(l) = parse_idx_labels("x", &f, 10) {
                assert!(l.iter().all(|&x| x < 10));
            }
        }
    }
}

/// Label histograms, first labels and pixel sums of the embedded subset, computed with Python:
/// `gzip.open(f).read()[16:]` / `[8:]`, `sum(...)`, `labels.count(c)`.
#[test]
fn embedded_subset_matches_python_reference() {
    let cases = [
        (
            Split::Train,
            5000,
            [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
            [457, 556, 504, 501, 488, 493, 493, 512, 490, 506],
            76247u64,
            286031984u64,
        ),
        (
            Split::Test,
            1000,
            [9, 2, 1, 1, 6, 1, 4, 6, 5, 7],
            [107, 105, 111, 93, 115, 87, 97, 95, 95, 95],
            33456,
            58034149,
        ),
    ];
    for (split, n, first, hist, sum0, sum) in cases {
        let ds = load_fashion_mnist(split, &DataLocation::Embedded).unwrap();
        ds.validate().unwrap();
        assert_eq!(ds.shape, [n, 1, 28, 28]);
        assert!(ds.source.starts_with("embedded subset"), "{}", ds.source);
        assert_eq!(&ds.labels[..10], &first);
        let mut h = [0usize; 10];
        ds.labels.iter().for_each(|&l| h[l] += 1);
        assert_eq!(h, hist);
        assert_eq!(
            ds.image(0).unwrap().iter().map(|&p| p as u64).sum::<u64>(),
            sum0
        );
        assert_eq!(ds.images.iter().map(|&p| p as u64).sum::<u64>(), sum);
        assert_eq!(ds.classes[9], "Ankle boot");
        assert_eq!(ds.classes[0], "T-shirt/top");
    }
}

/// Runs only where Debian's dataset-fashion-mnist is installed: the full set (reference values
/// from Python) and that the embedded subset is its prefix.
#[test]
fn debian_copy_when_installed() {
    if !Path::new(DEBIAN_FASHION_MNIST_DIR).is_dir() {
        eprintln!("skipping: {DEBIAN_FASHION_MNIST_DIR} not installed");
        return;
    }
    let loc = DataLocation::resolve(None, Path::new(DEBIAN_FASHION_MNIST_DIR));
    assert_eq!(loc, DataLocation::Debian);
    let train = load_fashion_mnist(Split::Train, &loc).unwrap();
    assert_eq!(train.shape, [60000, 1, 28, 28]);
    assert!(train.source.contains("Debian") && train.source.contains("train-images-idx3-ubyte.gz"));
    let mut h = [0usize; 10];
    train.labels.iter().for_each(|&l| h[l] += 1);
    assert_eq!(h, [6000; 10]);
    assert_eq!(train.labels[59999], 5);
    assert_eq!(
        train
            .image(59999)
            .unwrap()
            .iter()
            .map(|&p| p as u64)
            .sum::<u64>(),
        16684
    );
    let sub = load_fashion_mnist(Split::Train, &DataLocation::Embedded).unwrap();
    assert_eq!(train.take(5000).images, sub.images);
    assert_eq!(train.take(5000).labels, sub.labels);
    let test = load_fashion_mnist(Split::Test, &loc).unwrap();
    assert_eq!(test.shape, [10000, 1, 28, 28]);
    let sub = load_fashion_mnist(Split::Test, &DataLocation::Embedded).unwrap();
    assert_eq!(
        test.take(1000),
        Dataset {
            source: test.source.clone(),
            ..sub
        }
    );
}

#[test]
fn location_resolution_and_data_dir() {
    let missing = Path::new("/nonexistent/allmlp-test-dir");
    assert_eq!(DataLocation::resolve(None, missing), DataLocation::Embedded);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        DataLocation::resolve(Some(dir.path()), missing),
        DataLocation::Dir(dir.path().into())
    );
    let loc = DataLocation::Dir(dir.path().into());
    // Missing files: the error names the path looked for.
    let e = load_fashion_mnist(Split::Test, &loc).unwrap_err();
    assert!(e.file.ends_with("t10k-images-idx3-ubyte"), "{e}");
    assert!(e.problem.contains("cannot read"), "{e}");
    // Raw images and gzip labels, mixed, read from the directory; MNIST uses the same names.
    let px: Vec<u8> = (0..2 * 784).map(|i| (i % 251) as u8).collect();
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_bytes(3, &[2, 28, 28], &px),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        gzip(&idx_bytes(1, &[2], &[4, 9])),
    )
    .unwrap();
    let ds = load_fashion_mnist(Split::Test, &loc).unwrap();
    assert_eq!((ds.images.clone(), ds.labels.clone()), (px, vec![4, 9]));
    assert!(ds.source.starts_with("--data directory"), "{}", ds.source);
    let m = load_mnist(Split::Test, dir.path()).unwrap();
    assert_eq!(m.classes[4], "4");
    // A corrupt file in the directory is an error, not a fallback.
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), b"junk").unwrap();
    assert!(
        load_fashion_mnist(Split::Test, &loc)
            .unwrap_err()
            .to_string()
            .contains("wrong magic")
    );
}

/// A synthetic CIFAR file: bytes, (first, second) label bytes and pixels of each record.
type CifarFile = (Vec<u8>, Vec<(u8, u8)>, Vec<Vec<u8>>);

/// Hand-written CIFAR record encoder.
fn cifar_file(rng: &mut Rng, n: usize, kind: CifarKind) -> CifarFile {
    let (mut bytes, mut labels, mut images) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (a, b) = (rng.below(20) as u8, rng.below(100) as u8);
        let a = if kind == CifarKind::Cifar10 {
            rng.below(10) as u8
        } else {
            a
        };
        bytes.push(a);
        if kind != CifarKind::Cifar10 {
            bytes.push(b);
        }
        let px = random_bytes(rng, 3072, 256);
        bytes.extend_from_slice(&px);
        labels.push((a, b));
        images.push(px);
    }
    (bytes, labels, images)
}

#[test]
fn cifar_synthetic_files() {
    let mut rng = Rng::new(3);
    for kind in [
        CifarKind::Cifar10,
        CifarKind::Cifar100Fine,
        CifarKind::Cifar100Coarse,
    ] {
        let (b1, l1, i1) = cifar_file(&mut rng, 3, kind);
        let (b2, l2, i2) = cifar_file(&mut rng, 1, kind);
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (
            dir.path().join("data_batch_1.bin"),
            dir.path().join("data_batch_2.bin"),
        );
        std::fs::write(&p1, &b1).unwrap();
        std::fs::write(&p2, &b2).unwrap();
        let ds = load_cifar(&[&p1, &p2], kind).unwrap();
        ds.validate().unwrap();
        assert_eq!(ds.shape, [4, 3, 32, 32]);
        let want: Vec<usize> = l1
            .iter()
            .chain(&l2)
            .map(|&(a, b)| {
                if kind == CifarKind::Cifar100Fine {
                    b as usize
                } else {
                    a as usize
                }
            })
            .collect();
        assert_eq!(ds.labels, want);
        for (i, img) in i1.iter().chain(&i2).enumerate() {
            assert_eq!(ds.image(i).unwrap(), img.as_slice());
        }
        assert!(ds.source.contains("data_batch_2.bin"));
        assert_eq!(ds.classes.len(), kind.classes().len());
        // Every truncation: Err, unless it ends on a record boundary (then fewer records).
        for len in 0..b1.len() {
            let r = parse_cifar("c.bin", &b1[..len], kind);
            assert_eq!(
                r.is_ok(),
                len > 0 && len % kind.record_bytes() == 0,
                "len {len}"
            );
        }
        assert_err(
            parse_cifar("c.bin", &b1[..5000], kind),
            "c.bin",
            &["not a multiple", "1 whole records"],
        );
        assert_err(parse_cifar("c.bin", &[], kind), "c.bin", &["empty"]);
        assert_err(load_cifar(&[], kind), kind.name(), &["no CIFAR files"]);
    }
    let mut bad = cifar_file(&mut rng, 2, CifarKind::Cifar10).0;
    bad[3073] = 10;
    assert_err(
        parse_cifar("c10", &bad, CifarKind::Cifar10),
        "c10",
        &["record 1", "label 10", "10 classes"],
    );
    let mut bad = cifar_file(&mut rng, 1, CifarKind::Cifar100Fine).0;
    bad[0] = 20;
    // The unused coarse byte is still range-checked.
    assert_err(
        parse_cifar("c100", &bad, CifarKind::Cifar100Fine),
        "c100",
        &["coarse label 20"],
    );
    bad[0] = 0;
    bad[1] = 100;
    assert_err(
        parse_cifar("c100", &bad, CifarKind::Cifar100Coarse),
        "c100",
        &["fine label 100"],
    );
    assert!(
        load_cifar(&[Path::new("/nonexistent/x.bin")], CifarKind::Cifar10)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x.bin")
    );
}

#[test]
fn class_name_tables() {
    use std::collections::HashSet;
    assert_eq!(
        CIFAR100_FINE_CLASSES.iter().collect::<HashSet<_>>().len(),
        100
    );
    assert_eq!(
        CIFAR100_COARSE_CLASSES.iter().collect::<HashSet<_>>().len(),
        20
    );
    assert_eq!(CIFAR10_CLASSES.iter().collect::<HashSet<_>>().len(), 10);
    assert_eq!(
        FASHION_MNIST_CLASSES.iter().collect::<HashSet<_>>().len(),
        10
    );
    // Alphabetical, as in CIFAR-100's meta file.
    assert!(CIFAR100_FINE_CLASSES.windows(2).all(|w| w[0] < w[1]));
    assert!(CIFAR100_COARSE_CLASSES.windows(2).all(|w| w[0] < w[1]));
}

fn random_dataset(rng: &mut Rng, n: usize, c: usize, h: usize, w: usize) -> Dataset {
    Dataset {
        images: random_bytes(rng, n * c * h * w, 256),
        shape: [n, c, h, w],
        labels: (0..n).map(|_| rng.below(3) as usize).collect(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        name: "rand".into(),
        source: "test".into(),
    }
}

/// Naive f64 reference of the normalisation of image `i`, channel-major.
fn reference(ds: &Dataset, norm: &Normalization, i: usize) -> Vec<f64> {
    let [_, c, h, w] = ds.shape;
    let mut out = Vec::new();
    for ch in 0..c {
        for p in 0..h * w {
            let v = ds.images[i * c * h * w + ch * h * w + p] as f64 / 255.0;
            out.push((v - norm.mean[ch] as f64) / norm.std[ch] as f64);
        }
    }
    out
}

// Tolerance: one f32 division, subtraction and multiplication by 1/std on values |x| ≤ 4;
// a few ulps ≈ 2e-6 absolute. 1e-5 leaves margin.
const TOL: f64 = 1e-5;

#[test]
fn to_tensor_matches_reference() {
    let mut rng = Rng::new(11);
    for (n, c, h, w, norm) in [
        (4, 1, 28, 28, Normalization::fashion_mnist()),
        (3, 3, 5, 7, Normalization::cifar10()),
        (1, 3, 1, 1, Normalization::cifar100()),
        (2, 1, 3, 3, Normalization::mnist()),
        (0, 1, 2, 2, Normalization::identity(1)),
    ] {
        let ds = random_dataset(&mut rng, n, c, h, w);
        let t = ds.to_tensor(&norm).unwrap();
        assert_eq!(t.shape(), &[n, c, h, w]);
        let v = t.to_vec();
        for i in 0..n {
            let r = reference(&ds, &norm, i);
            let got = &v[i * c * h * w..(i + 1) * c * h * w];
            for (a, b) in got.iter().zip(&r) {
                assert!((*a as f64 - b).abs() <= TOL, "{a} vs {b}");
            }
        }
    }
    let ds = random_dataset(&mut rng, 2, 3, 2, 2);
    assert_err(
        ds.to_tensor(&Normalization::fashion_mnist()),
        "rand",
        &["1 means", "3 channels"],
    );
    let bad = Normalization {
        mean: vec![0.0; 3],
        std: vec![1.0, 0.0, 1.0],
    };
    assert_err(ds.to_tensor(&bad), "rand", &["std 0"]);
    let mut broken = ds.clone();
    broken.labels[0] = 3;
    assert_err(
        broken.to_tensor(&Normalization::cifar10()),
        "rand",
        &["label 3", "3 classes"],
    );
    broken = ds.clone();
    broken.images.pop();
    assert_err(
        broken.to_tensor(&Normalization::cifar10()),
        "rand",
        &["23 bytes", "needs 24"],
    );
}

#[test]
fn batches_are_seeded_complete_and_keep_last_partial() {
    let mut rng = Rng::new(5);
    let ds = random_dataset(&mut rng, 23, 3, 4, 2);
    let norm = Normalization::cifar10();
    let collect = |seed| ds.batches(5, seed, &norm).unwrap().collect::<Vec<_>>();
    let (a, b, c) = (collect(Some(42)), collect(Some(42)), collect(Some(43)));
    assert_eq!(a.len(), 5);
    assert_eq!(ds.batches(5, Some(42), &norm).unwrap().num_batches(), 5);
    let sizes: Vec<usize> = a.iter().map(|(_, l)| l.len()).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    for ((ta, la), (tb, lb)) in a.iter().zip(&b) {
        assert_eq!(la, lb);
        assert_eq!(ta.to_vec(), tb.to_vec(), "same seed, bit-identical batches");
    }
    let order = ds.batches(5, Some(42), &norm).unwrap().order().to_vec();
    let other = ds.batches(5, Some(43), &norm).unwrap().order().to_vec();
    assert_ne!(order, other, "different seeds shuffle differently");
    assert_ne!(order, (0..23).collect::<Vec<_>>(), "shuffled");
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..23).collect::<Vec<_>>(),
        "a permutation: every image once"
    );
    assert_eq!(c.len(), 5);
    // Contents: batch k row j is image order[5k + j], normalised (f64 reference).
    for (k, (t, l)) in a.iter().enumerate() {
        assert_eq!(t.shape(), &[l.len(), 3, 4, 2]);
        let v = t.to_vec();
        for (j, &lab) in l.iter().enumerate() {
            let i = order[5 * k + j];
            assert_eq!(lab, ds.labels[i]);
            for (x, r) in v[j * 24..(j + 1) * 24].iter().zip(reference(&ds, &norm, i)) {
                assert!((*x as f64 - r).abs() <= TOL);
            }
        }
    }
    // No seed: dataset order; batch larger than the dataset: one partial batch.
    let seq = ds.batches(100, None, &norm).unwrap().collect::<Vec<_>>();
    assert_eq!(seq.len(), 1);
    assert_eq!(seq[0].1, ds.labels);
    assert_eq!(seq[0].0.to_vec(), ds.to_tensor(&norm).unwrap().to_vec());
    assert_err(ds.batches(0, Some(1), &norm), "rand", &["batch size"]);
    assert_err(
        ds.batches(4, Some(1), &Normalization::mnist()),
        "rand",
        &["3 channels"],
    );
    let empty = ds.take(0);
    assert_eq!(empty.batches(4, Some(1), &norm).unwrap().count(), 0);
}

#[test]
fn normalization_from_dataset_matches_two_pass_reference() {
    let mut rng = Rng::new(41);
    for (n, c, h, w) in [(5, 3, 4, 6), (1, 1, 2, 2), (9, 1, 28, 28)] {
        let ds = random_dataset(&mut rng, n, c, h, w);
        let got = Normalization::from_dataset(&ds).unwrap();
        for ch in 0..c {
            // Two passes in f64 over the channel's pixels, on the 0..1 scale.
            let px: Vec<f64> = (0..n)
                .flat_map(|i| ds.image(i).unwrap()[ch * h * w..(ch + 1) * h * w].to_vec())
                .map(|p| f64::from(p) / 255.0)
                .collect();
            let m = px.iter().sum::<f64>() / px.len() as f64;
            let sd = (px.iter().map(|p| (p - m) * (p - m)).sum::<f64>() / px.len() as f64).sqrt();
            assert!((f64::from(got.mean[ch]) - m).abs() < 1e-6, "{got:?} vs {m}");
            assert!(
                (f64::from(got.std[ch]) - sd).abs() < 1e-6,
                "{got:?} vs {sd}"
            );
        }
    }
    let mut flat = random_dataset(&mut rng, 2, 3, 2, 2);
    flat.images[..4].fill(9);
    flat.images[12..16].fill(9);
    assert_err(
        Normalization::from_dataset(&flat),
        "rand",
        &["channel 0 is constant"],
    );
    assert_err(
        Normalization::from_dataset(&flat.take(0)),
        "rand",
        &["no pixels"],
    );
}

#[test]
fn zero_fill_is_a_normalised_black_pixel() {
    let norm = Normalization::cifar10();
    let ds = Dataset {
        images: vec![0; 3],
        shape: [1, 3, 1, 1],
        labels: vec![0],
        classes: vec!["x".into()],
        name: "black".into(),
        source: "test".into(),
    };
    assert_eq!(ds.to_tensor(&norm).unwrap().to_vec(), norm.zero_fill());
}
