//! Tests of the loader against the contract in its module docs, rebuilt here step by step
//! from the public pieces (shuffle seed, per-batch generator, `Augment::apply`, `Mix::apply`),
//! and against the plain `Batches` iterator for evaluation.

use super::*;
use crate::data::Batches;

fn toy(n: usize, c: usize, h: usize, w: usize, classes: usize, seed: u64) -> Arc<Dataset> {
    let mut rng = Rng::new(seed);
    Arc::new(Dataset {
        images: (0..n * c * h * w).map(|_| rng.below(256) as u8).collect(),
        shape: [n, c, h, w],
        labels: (0..n).map(|_| rng.below(classes as u64) as usize).collect(),
        classes: (0..classes).map(|k| format!("c{k}")).collect(),
        name: "toy".into(),
        source: "test".into(),
    })
}

fn norm3() -> Normalization {
    Normalization {
        mean: vec![0.4, 0.5, 0.6],
        std: vec![0.2, 0.25, 0.3],
    }
}

fn train_cfg() -> LoaderConfig {
    LoaderConfig {
        batch_size: 8,
        augment: Augment {
            crop_padding: 2,
            hflip: true,
            erase_prob: 0.5,
        },
        mix: Some(Mix::deit()),
        label_smoothing: 0.1,
        ..LoaderConfig::train(8, norm3())
    }
}

fn same(a: &Batch, b: &Batch) -> bool {
    let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    a.labels == b.labels
        && a.images.shape() == b.images.shape()
        && bits(&a.images) == bits(&b.images)
        && a.targets.as_ref().map(bits) == b.targets.as_ref().map(bits)
}

#[test]
fn eval_loader_equals_plain_batches_in_dataset_order() {
    let ds = toy(23, 3, 5, 4, 7, 1);
    let loader = Loader::new(ds.clone(), LoaderConfig::eval(5, norm3()), 9, 3).unwrap();
    assert_eq!(loader.num_batches(), 5);
    assert_eq!(loader.order(), (0..23).collect::<Vec<_>>());
    let plain: Vec<_> = Batches::new(&ds, 5, None, norm3()).unwrap().collect();
    let got: Vec<_> = loader.collect();
    assert_eq!(got.len(), plain.len());
    for (g, (t, l)) in got.iter().zip(&plain) {
        assert_eq!(&g.labels, l);
        assert_eq!(g.images.to_vec(), t.to_vec());
        assert!(g.targets.is_none());
    }
}

#[test]
fn shuffle_uses_the_epoch_seed_and_covers_every_image_once() {
    let ds = toy(50, 1, 3, 3, 4, 2);
    let cfg = LoaderConfig {
        augment: Augment::none(),
        ..LoaderConfig::train(7, Normalization::identity(1))
    };
    let l0 = Loader::new(ds.clone(), cfg.clone(), 5, 0).unwrap();
    let l1 = Loader::new(ds.clone(), cfg.clone(), 5, 1).unwrap();
    assert_ne!(l0.order(), l1.order());
    let mut sorted = l0.order().to_vec();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    // Same order and batches as the plain iterator given the derived seed.
    let plain: Vec<_> = Batches::new(&ds, 7, Some(shuffle_seed(5, 0)), Normalization::identity(1))
        .unwrap()
        .collect();
    let order = l0.order().to_vec();
    let got: Vec<_> = l0.collect();
    assert_eq!(got.len(), 8);
    for (g, (t, l)) in got.iter().zip(&plain) {
        assert_eq!(&g.labels, l);
        assert_eq!(g.images.to_vec(), t.to_vec());
    }
    let labels: Vec<usize> = got.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(
        labels,
        order.iter().map(|&i| ds.labels[i]).collect::<Vec<_>>()
    );
    // Seeds differ across seeds, epochs and streams.
    let seeds = [
        shuffle_seed(0, 0),
        shuffle_seed(0, 1),
        shuffle_seed(1, 0),
        batch_seed(0, 0, 0),
        batch_seed(0, 1, 0),
        batch_seed(1, 0, 0),
        batch_seed(0, 0, 1),
    ];
    let distinct: std::collections::HashSet<_> = seeds.iter().collect();
    assert_eq!(distinct.len(), seeds.len());
}

#[test]
fn each_batch_follows_the_documented_recipe() {
    let ds = toy(37, 3, 6, 5, 10, 3);
    let cfg = train_cfg();
    let (seed, epoch) = (77, 4);
    let loader = Loader::new(ds.clone(), cfg.clone(), seed, epoch).unwrap();
    let order = loader.order().to_vec();
    let fill = cfg.normalization.zero_fill();
    let n = 3 * 6 * 5;
    for (b, got) in loader.enumerate() {
        let idx = &order[b * 8..((b + 1) * 8).min(37)];
        let mut rng = Rng::new(batch_seed(seed, epoch, b));
        let mut images = Vec::new();
        for &i in idx {
            let mut img: Vec<f32> = ds.images[i * n..(i + 1) * n]
                .chunks(30)
                .enumerate()
                .flat_map(|(c, plane)| {
                    let (m, s) = (cfg.normalization.mean[c], cfg.normalization.std[c]);
                    plane
                        .iter()
                        .map(move |&p| (f32::from(p) / 255.0 - m) * (1.0 / s))
                })
                .collect();
            cfg.augment
                .apply(&mut img, [3, 6, 5], &fill, &mut rng)
                .unwrap();
            images.extend(img);
        }
        let labels: Vec<usize> = idx.iter().map(|&i| ds.labels[i]).collect();
        let targets = cfg
            .mix
            .unwrap()
            .apply(
                &mut images,
                [idx.len(), 3, 6, 5],
                &labels,
                10,
                0.1,
                &mut rng,
            )
            .unwrap();
        let want = Batch {
            images: Tensor::from_vec(images, &[idx.len(), 3, 6, 5]).unwrap(),
            labels,
            targets: Some(Tensor::from_vec(targets, &[idx.len(), 10]).unwrap()),
        };
        assert!(same(&got, &want), "batch {b}");
    }
}

#[test]
fn runs_are_reproducible_regardless_of_consumer_speed_and_resume_point() {
    let ds = toy(40, 3, 6, 5, 10, 4);
    let full: Vec<Batch> = Loader::new(ds.clone(), train_cfg(), 1, 2)
        .unwrap()
        .collect();
    assert_eq!(full.len(), 5);
    // A slow consumer: the worker runs ahead and blocks; results are identical.
    let mut slow = Loader::new(ds.clone(), train_cfg(), 1, 2).unwrap();
    for (b, want) in full.iter().enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(if b < 2 { 30 } else { 0 }));
        assert_eq!(slow.len(), 5 - b);
        assert!(same(&slow.next().unwrap(), want), "batch {b}");
    }
    assert!(slow.next().is_none() && slow.next().is_none());
    // Resuming at every batch gives the tail of the uninterrupted epoch.
    for k in 0..=5 {
        let tail: Vec<Batch> = Loader::starting_at(ds.clone(), train_cfg(), 1, 2, k)
            .unwrap()
            .collect();
        assert_eq!(tail.len(), 5 - k);
        assert!(
            tail.iter().zip(&full[k..]).all(|(a, b)| same(a, b)),
            "from {k}"
        );
    }
    // Another seed or epoch changes the batches.
    let other = Loader::new(ds.clone(), train_cfg(), 2, 2)
        .unwrap()
        .next()
        .unwrap();
    assert!(!same(&other, &full[0]));
}

#[test]
fn partial_and_dropped_last_batches() {
    let ds = toy(10, 1, 2, 2, 3, 5);
    let norm = Normalization::identity(1);
    let keep: Vec<_> = Loader::new(ds.clone(), LoaderConfig::eval(4, norm.clone()), 0, 0)
        .unwrap()
        .map(|b| b.labels.len())
        .collect();
    assert_eq!(keep, [4, 4, 2]);
    let cfg = LoaderConfig {
        drop_last: true,
        ..LoaderConfig::train(4, norm.clone())
    };
    let drop = Loader::new(ds.clone(), cfg.clone(), 0, 0).unwrap();
    assert_eq!(drop.num_batches(), 2);
    assert_eq!(
        drop.map(|b| b.images.shape()[0]).collect::<Vec<_>>(),
        [4, 4]
    );
    let e = Loader::new(
        ds.clone(),
        LoaderConfig {
            batch_size: 11,
            ..cfg
        },
        0,
        0,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("leaves no batch of 10 images"),
        "{e}"
    );
}

#[test]
fn dropping_mid_epoch_or_unused_returns_promptly() {
    let ds = toy(2000, 3, 8, 8, 10, 6);
    for take in [0, 1, 3] {
        let mut l = Loader::new(ds.clone(), train_cfg(), 0, 0).unwrap();
        for _ in 0..take {
            l.next().unwrap();
        }
        // Give the worker time to fill the channel and block on its send.
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(l); // joins the worker: hangs here if it never stops
    }
}

#[test]
fn invalid_configurations_are_errors() {
    let ds = toy(10, 3, 2, 2, 3, 7);
    let bad = |cfg: LoaderConfig, ds: Arc<Dataset>, words: &str| {
        let e = Loader::new(ds, cfg, 0, 0).unwrap_err().to_string();
        assert!(e.contains(words), "{e}");
    };
    bad(LoaderConfig::train(0, norm3()), ds.clone(), "batch size");
    bad(
        LoaderConfig::train(2, Normalization::identity(1)),
        ds.clone(),
        "3 channels",
    );
    let with = |f: &dyn Fn(&mut LoaderConfig)| {
        let mut c = train_cfg();
        f(&mut c);
        c
    };
    bad(with(&|c| c.label_smoothing = -0.1), ds.clone(), "smoothing");
    bad(with(&|c| c.augment.erase_prob = 2.0), ds.clone(), "erasing");
    bad(
        with(&|c| {
            c.mix = Some(Mix {
                prob: 1.5,
                ..Mix::deit()
            })
        }),
        ds.clone(),
        "probability",
    );
    let mut empty = (*ds).clone().take(0);
    empty.name = "empty".into();
    bad(LoaderConfig::eval(2, norm3()), Arc::new(empty), "no images");
    let mut broken = (*ds).clone();
    broken.labels[3] = 3;
    bad(
        LoaderConfig::eval(2, norm3()),
        Arc::new(broken),
        "label 3 of image 3",
    );
    let e = Loader::starting_at(ds.clone(), LoaderConfig::eval(4, norm3()), 0, 0, 4).unwrap_err();
    assert!(e.to_string().contains("has 3"), "{e}");
}
