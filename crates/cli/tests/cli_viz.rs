//! `allmlp viz`: the token-mixing weight grid of Mixer and ResMLP checkpoints, checked pixel by
//! pixel on hand-made weights.

use std::path::Path;

use allmlp::layers::checkpoint::state_dict;
use allmlp::models::{ModelOptions, create_model};
use allmlp::plot::colormap::{NEGATIVE_EXTREME, NEUTRAL, POSITIVE_EXTREME};
use allmlp::tensor_core::Tensor;
use image::RgbImage;

mod common;
use common::{allmlp, assert_fails};

/// Saves `name` (7×7 patch grid, as the *_tiny models) with every weight matching `pattern`
/// (`{}` = block) set to zero except `hot`: (block, unit, patch row, patch column, value).
fn save_with_hot_units(
    path: &Path,
    name: &str,
    pattern: &str,
    hot: &[(usize, usize, usize, usize, f32)],
) {
    let m = create_model(name, &ModelOptions::default()).unwrap();
    let mut sd = state_dict(&*m);
    sd.set_model(name);
    sd.set_config(&m.config()).unwrap();
    for b in 0.. {
        let key = pattern.replace("{}", &b.to_string());
        let Some(t) = sd.get(&key) else { break };
        let shape = t.shape().to_vec();
        assert_eq!(shape[1], 49, "{key}");
        let mut w = vec![0.0; shape[0] * 49];
        for &(hb, u, r, c, v) in hot {
            if hb == b {
                w[u * 49 + r * 7 + c] = v;
            }
        }
        sd.insert(&key, Tensor::from_vec(w, &shape).unwrap());
    }
    sd.save(path).unwrap();
}

/// Bounding box `(x0, y0, x1, y1)` (inclusive) of the pixels of exactly `colour`.
fn bbox(img: &RgbImage, colour: [u8; 3]) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in img.enumerate_pixels() {
        if p.0 == colour {
            b = Some(match b {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    b
}

fn count(img: &RgbImage, colour: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == colour).count()
}

#[test]
fn mixer_units_are_drawn_at_their_patches() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Block 0: unit 0 one-hot +1 at patch (2, 5); unit 1 −3 at patch (6, 0) and +0.3 at (0, 6).
    save_with_hot_units(
        &p.join("w.safetensors"),
        "mixer_tiny",
        "blocks.{}.mlp_tokens.fc1.weight",
        &[(0, 0, 2, 5, 1.0), (0, 1, 6, 0, -3.0), (0, 1, 0, 6, 0.3)],
    );
    let o = allmlp(&["viz", "--weights", "w.safetensors", "--out", "v.png"], p);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("drew 4 block(s) of 64 units"), "{out}");
    let img = image::open(p.join("v.png")).unwrap().to_rgb8();
    // Layout by hand (plot::weights constants): 7×7 patches at 4 px → 28 px units, 8 per row
    // with 2 px gaps; width max(10+8·28+7·2+10, 400) = 400; each block 20 + 8·28 + 7·2 = 258
    // px, 4 blocks + 3 gaps of 8 under a 40 px title, 10 px margins: 10+40+4·258+24+10.
    assert_eq!(img.dimensions(), (400, 1116));
    // Unit 0 of block 0 starts at (10, 10+40+20) = (10, 70); patch (2, 5) at (10+20, 70+8).
    // The only pixels of the positive extreme are that 4×4 square.
    assert_eq!(bbox(&img, POSITIVE_EXTREME), Some((30, 78, 33, 81)));
    assert_eq!(count(&img, POSITIVE_EXTREME), 16);
    // Unit 1 starts at (10+28+2, 70); patch (6, 0) at (40, 94).
    assert_eq!(bbox(&img, NEGATIVE_EXTREME), Some((40, 94, 43, 97)));
    assert_eq!(count(&img, NEGATIVE_EXTREME), 16);
    // Unit 1 is scaled to its own max |w| = 3: +0.3 is drawn as +0.1, pale but not neutral;
    // every other patch of every unit is neutral.
    let pale = img.get_pixel(40 + 24, 70).0;
    assert_eq!(pale, allmlp::plot::colormap::diverging(0.1));
    assert_ne!(pale, NEUTRAL);
    assert_eq!(img.get_pixel(10, 70).0, NEUTRAL);
    // Count in block 0's units (8 rows of 8 units, 30 px apart; anti-aliased text elsewhere
    // can hit the neutral grey): all 64·49 patches of 16 px but the three non-zero ones.
    let block0 = image::imageops::crop_imm(&img, 10, 70, 8 * 30, 8 * 30).to_image();
    assert_eq!(count(&block0, NEUTRAL), 64 * 49 * 16 - 3 * 16);
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(p).unwrap().count(), 2);
}

#[test]
fn resmlp_rows_and_the_block_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Block 1, row 48 (the last unit): +2 at patch (3, 3).
    save_with_hot_units(
        &p.join("r.safetensors"),
        "resmlp_tiny",
        "blocks.{}.linear_tokens.weight",
        &[(1, 48, 3, 3, 2.0)],
    );
    let o = allmlp(
        &[
            "viz",
            "--weights",
            "r.safetensors",
            "--out",
            "r.png",
            "--blocks",
            "2",
        ],
        p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(p.join("r.png")).unwrap().to_rgb8();
    // 49 units → 7 per row, 7 rows: block 20 + 7·28 + 6·2 = 228 px; 10+40+2·228+8+10.
    assert_eq!(img.dimensions(), (400, 524));
    // Block 1 starts at 10+40+228+8 = 286, its units at 306; unit 48 is row 6, column 6:
    // (10 + 6·30, 306 + 6·30); patch (3, 3) 12 px further each way.
    assert_eq!(bbox(&img, POSITIVE_EXTREME), Some((202, 498, 205, 501)));
    // More blocks than the model has: capped, and said so.
    let o = allmlp(
        &[
            "viz",
            "--weights",
            "r.safetensors",
            "--out",
            "all.png",
            "--blocks",
            "99",
        ],
        p,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("drew 8 block(s) (the model has only 8)"),
        "{out}"
    );
    let img = image::open(p.join("all.png")).unwrap().to_rgb8();
    assert_eq!(img.height(), 10 + 40 + 8 * 228 + 7 * 8 + 10);
}

#[test]
fn viz_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let o = allmlp(
        &["viz", "--weights", "missing.safetensors", "--out", "v.png"],
        p,
    );
    assert_fails(&o, &["missing.safetensors"]);
    let m = create_model("repmlp_tiny", &ModelOptions::default()).unwrap();
    let mut sd = state_dict(&*m);
    sd.set_model("repmlp_tiny");
    sd.set_config(&m.config()).unwrap();
    sd.save(p.join("rep.safetensors")).unwrap();
    let o = allmlp(
        &["viz", "--weights", "rep.safetensors", "--out", "v.png"],
        p,
    );
    assert_fails(&o, &["repmlp_tiny", "MLP-Mixer", "ResMLP"]);
    assert!(!p.join("v.png").exists());
    save_with_hot_units(
        &p.join("w.safetensors"),
        "mixer_tiny",
        "blocks.{}.mlp_tokens.fc1.weight",
        &[],
    );
    let o = allmlp(
        &["viz", "--weights", "w.safetensors", "--out", "nodir/v.png"],
        p,
    );
    assert_fails(&o, &["nodir/v.png", "does not exist"]);
    let o = allmlp(
        &[
            "viz",
            "--weights",
            "w.safetensors",
            "--out",
            "v.png",
            "--blocks",
            "0",
        ],
        p,
    );
    assert_fails(&o, &["--blocks"]);
}

#[test]
fn a_checkpoint_without_metadata_needs_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    // A bare state dict, as converted from PyTorch: no `model` or `config` metadata.
    state_dict(&*m).save(p.join("bare.safetensors")).unwrap();
    let o = allmlp(
        &["viz", "--weights", "bare.safetensors", "--out", "v.png"],
        p,
    );
    assert_fails(&o, &["bare.safetensors", "--model"]);
    let o = allmlp(
        &[
            "viz",
            "--weights",
            "bare.safetensors",
            "--out",
            "v.png",
            "--model",
            "mixer_tiny",
        ],
        p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::open(p.join("v.png")).unwrap().height(), 1116);
}

#[test]
fn viz_help_explains_every_flag() {
    let o = allmlp(&["viz", "--help"], Path::new("."));
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--weights", "--out", "--blocks", "--model", "patch_size"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
