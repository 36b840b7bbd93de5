//! Throughput of the batch loader alone (no training step), printed, never asserted: run
//! `cargo test --release -p allmlp --test loader_throughput -- --ignored --nocapture`.
//! The training loop this feeds runs at ~300–1000 images/s on 28×28 images.

use std::sync::Arc;
use std::time::Instant;

use allmlp::data::{Augment, DatasetSpec, Loader, LoaderConfig, Mix, Split};

#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn loader_images_per_second() {
    let spec = DatasetSpec::FashionMnist;
    let ds = Arc::new(spec.load(Split::Train, None, [1, 28, 28]).unwrap());
    let norm = spec.normalization();
    println!("dataset: {} images from {}", ds.len(), ds.source);
    let configs = [
        (
            "eval (normalise only)",
            LoaderConfig::eval(128, norm.clone()),
        ),
        ("train: crop + flip", LoaderConfig::train(128, norm.clone())),
        (
            "train: crop + flip + erase 0.25 + mixup/cutmix (DeiT) + smoothing",
            LoaderConfig {
                augment: Augment {
                    erase_prob: 0.25,
                    ..Augment::standard()
                },
                mix: Some(Mix::deit()),
                label_smoothing: 0.1,
                ..LoaderConfig::train(128, norm.clone())
            },
        ),
    ];
    for (name, cfg) in configs {
        let mut best = 0.0f64;
        for epoch in 0..5 {
            let t = Instant::now();
            let n: usize = Loader::new(ds.clone(), cfg.clone(), 0, epoch)
                .unwrap()
                .map(|b| b.labels.len())
                .sum();
            best = best.max(n as f64 / t.elapsed().as_secs_f64());
        }
        println!("{name}: {best:.0} images/s (best of 5 epochs, batch 128)");
    }
}
