//! A `folder:PATH` run records where its images are as an absolute path: evaluating its
//! checkpoint or resuming it works from any working directory, and a resume may name the
//! folder by another path (the training split's fingerprint refuses other images).

use std::path::Path;

mod common;
use common::{allmlp, assert_fails, stderr};

/// `root/train/CLASS/*.png` and `root/test/CLASS/*.png`: 8×8 grey images, class `dark`
/// darker than class `light`.
fn write_folder(root: &Path, per_class: usize) {
    for split in ["train", "test"] {
        for (class, base) in [("dark", 40u8), ("light", 200u8)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::GrayImage::from_fn(8, 8, |x, y| {
                    image::Luma([base.wrapping_add((x * 3 + y * 5 + i as u32) as u8 % 16)])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn a_folder_run_is_found_from_another_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let (top, sub) = (root.path(), root.path().join("sub"));
    std::fs::create_dir(&sub).unwrap();
    write_folder(&top.join("imgs"), 4);
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", stderr(&o));
    let train = |extra: &[&str], cwd: &Path| {
        let mut a = vec!["train", "--threads", "1"];
        a.extend_from_slice(extra);
        allmlp(&a, cwd)
    };
    // Started in `top` with a relative path; stopped after its first epoch of two.
    ok(train(
        &[
            "--dataset",
            "folder:imgs",
            "--epochs",
            "2",
            "--stop-after",
            "1",
            "--batch-size",
            "4",
            "--warmup-steps",
            "1",
            "--out",
            "run",
        ],
        top,
    ));
    // From `sub`: the checkpoint's dataset finds the test images.
    let o = allmlp(&["eval", "--weights", "../run/last.safetensors"], &sub);
    ok(o.clone());
    assert!(String::from_utf8_lossy(&o.stdout).contains("accuracy"));
    // A resume from `sub` may name the same folder by its path from there ...
    ok(train(
        &[
            "--resume",
            "../run",
            "--dataset",
            "folder:../imgs",
            "--out",
            "run2",
        ],
        &sub,
    ));
    let csv = std::fs::read_to_string(sub.join("run2/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and two epochs: {csv}");
    // ... but not another folder: its training images differ.
    write_folder(&top.join("other"), 5);
    assert_fails(
        &train(
            &[
                "--resume",
                "../run",
                "--dataset",
                "folder:../other",
                "--out",
                "run3",
            ],
            &sub,
        ),
        &[
            "the run's training images (8 images",
            "--dataset folder:PATH",
        ],
    );
}
