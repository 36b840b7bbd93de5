//! `allmlp predict`: the top-K classes of PNG/JPEG images under a trained checkpoint.

use std::path::{Path, PathBuf};

use allmlp_layers::infer;
use allmlp_models::Model;
use clap::Args;
use image::imageops::{self, FilterType};

use super::{CliError, CliResult};
use crate::checkpoint::{LoadedModel, load_model};
use crate::data::{self, DataError, Dataset, Normalization};

/// Default `--top`.
pub const DEFAULT_TOP: usize = 5;

/// Images per forward pass.
const BATCH: usize = 64;

/// The flags of `allmlp predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Trained checkpoint (safetensors with `model` and `config` metadata, as `allmlp train`
    /// writes). Its `classes` metadata names the classes (else "class i") and its
    /// `normalization` metadata normalises the pixels (else they are only scaled to 0..1).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Registered model name; needed only when the weights carry no `model` metadata (e.g.
    /// converted from PyTorch).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// PNG or JPEG files to classify. Each is converted to the model's channels (grayscale or
    /// RGB), its shorter side resized to the model's input size and center-cropped.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// How many of the most probable classes to list per image (at most the class count).
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TOP)]
    pub top: usize,
}

/// Softmax of `logits` in f64 (shifted by the maximum for stability).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits
        .iter()
        .map(|&z| f64::from(z))
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&z| (f64::from(z) - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// The `k` largest of `probs` as `(class, probability)`, most probable first (ties: lower class
/// first).
pub fn top_k(probs: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut v: Vec<(usize, f64)> = probs.iter().copied().enumerate().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// Class probabilities (softmax of the logits) of `images` (each `[C, H, W]` bytes of the
/// model's input shape), normalised by `norm`; one vector per image.
pub fn predict(
    net: &dyn Model,
    norm: &Normalization,
    images: &[Vec<u8>],
) -> CliResult<Vec<Vec<f64>>> {
    let [c, h, w] = net.input_shape();
    if let Some(i) = images.iter().position(|im| im.len() != c * h * w) {
        return Err(CliError(format!(
            "image {i} has {} bytes, {} takes [{c}, {h}, {w}] = {} bytes",
            images[i].len(),
            net.name(),
            c * h * w
        )));
    }
    let ds = Dataset {
        images: images.concat(),
        shape: [images.len(), c, h, w],
        labels: vec![0; images.len()],
        classes: vec![String::new()],
        name: "images".into(),
        source: "command line".into(),
    };
    let batches = ds
        .batches(BATCH, None, norm)
        .map_err(|e| CliError(e.to_string()))?;
    let k = net.num_classes();
    let mut out = Vec::with_capacity(images.len());
    for (x, _) in batches {
        let logits = infer(net, &x)?.to_vec();
        out.extend(logits.chunks_exact(k.max(1)).map(softmax));
    }
    Ok(out)
}

/// Reads a PNG/JPEG file as `[C, H, W]` bytes of `input`: grayscale (luma) for C = 1, RGB for
/// C = 3; the shorter side resized to `max(H, W)` (triangle filter), then the center `H × W`
/// cropped. Errors name the file: missing/unreadable, not a decodable PNG/JPEG, other C.
// TODO(lead): replace with data::folder::load_image_file once merged
fn decode_image(path: &Path, input: [usize; 3]) -> data::Result<Vec<u8>> {
    let [c, h, w] = input;
    let file = path.display().to_string();
    let err = |p: String| DataError::new(&file, p);
    if c != 1 && c != 3 {
        return Err(err(format!(
            "images can be converted to 1 (grayscale) or 3 (RGB) channels, the model takes {c}"
        )));
    }
    let img = image::ImageReader::open(path)
        .map_err(|e| err(format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| err(format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| err(format!("not a PNG/JPEG image that can be decoded: {e}")))?;
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    if w0 == 0 || h0 == 0 {
        return Err(err(format!("the image is empty ({w0}×{h0})")));
    }
    let side = h.max(w);
    let scale = |long: usize, short: usize| {
        ((long as f64 * side as f64 / short as f64).round() as usize).max(side)
    };
    let (nw, nh) = if w0 <= h0 {
        (side, scale(h0, w0))
    } else {
        (scale(w0, h0), side)
    };
    let (x0, y0) = (((nw - w) / 2) as u32, ((nh - h) / 2) as u32);
    let (nw, nh, w32, h32) = (nw as u32, nh as u32, w as u32, h as u32);
    Ok(if c == 1 {
        let small = imageops::resize(&img.to_luma8(), nw, nh, FilterType::Triangle);
        imageops::crop_imm(&small, x0, y0, w32, h32)
            .to_image()
            .into_raw()
    } else {
        let small = imageops::resize(&img.to_rgb8(), nw, nh, FilterType::Triangle);
        let hwc = imageops::crop_imm(&small, x0, y0, w32, h32)
            .to_image()
            .into_raw();
        // Interleaved RGB → planar [3, H, W].
        (0..3)
            .flat_map(|ch| hwc.iter().skip(ch).step_by(3).copied().collect::<Vec<_>>())
            .collect()
    })
}

/// `predict`: decodes every image (failing on the first bad file, named), runs the model and
/// lists the top-K classes of each.
pub fn run(args: &PredictArgs) -> CliResult<String> {
    if args.top == 0 {
        return Err(CliError("--top must be at least 1".into()));
    }
    let LoadedModel { name, net, meta } =
        load_model(&args.weights, args.model.as_deref(), &Default::default())?;
    let input = net.input_shape();
    let images: Vec<Vec<u8>> = args
        .images
        .iter()
        .map(|p| decode_image(p, input).map_err(|e| CliError(e.to_string())))
        .collect::<CliResult<_>>()?;
    let (norm, norm_note) = match &meta {
        Some(m) => (m.normalization.clone(), "normalization from the checkpoint"),
        None => (
            Normalization::identity(input[0]),
            "no normalization metadata: pixels only scaled to 0..1",
        ),
    };
    let probs = predict(&*net, &norm, &images)?;
    let k = net.num_classes();
    let class = |i: usize| {
        meta.as_ref()
            .and_then(|m| m.classes.get(i).cloned())
            .unwrap_or_else(|| format!("class {i}"))
    };
    let top = args.top.min(k);
    let mut out = format!(
        "{name} ({}): top {top} of {k} classes; {norm_note}\n",
        args.weights.display()
    );
    for (path, p) in args.images.iter().zip(&probs) {
        out += &format!("\n{}\n", path.display());
        let best = top_k(p, top);
        let width = best
            .iter()
            .map(|(i, _)| class(*i).chars().count())
            .max()
            .unwrap_or(0);
        for (rank, (i, prob)) in best.iter().enumerate() {
            out += &format!(
                "  {:>2}. {:<width$}  {:>7.2}%\n",
                rank + 1,
                class(*i),
                prob * 100.0
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    #[test]
    fn decode_crops_the_center_of_the_longer_side() {
        let dir = tempfile::tempdir().unwrap();
        // 56 × 28: left half black, right half white. Short side already 28 → no resize,
        // crop x 14..42: columns 0..14 black, 14..28 white.
        let img = GrayImage::from_fn(56, 28, |x, _| Luma([if x < 28 { 0 } else { 255 }]));
        let p = dir.path().join("wide.png");
        img.save(&p).unwrap();
        let px = decode_image(&p, [1, 28, 28]).unwrap();
        assert_eq!(px.len(), 28 * 28);
        for (i, &v) in px.iter().enumerate() {
            assert_eq!(v, if i % 28 < 14 { 0 } else { 255 }, "pixel {i}");
        }
        // Tall 28 × 84 with a white band at rows 28..56, target 14 × 14: shrink to 14 × 42,
        // keep rows 14..28 (the band, up to the filter's edges).
        let img = GrayImage::from_fn(28, 84, |_, y| {
            Luma([if (28..56).contains(&y) { 255 } else { 0 }])
        });
        let p = dir.path().join("tall.png");
        img.save(&p).unwrap();
        let px = decode_image(&p, [1, 14, 14]).unwrap();
        assert_eq!(px.len(), 14 * 14);
        assert!(px[14 * 3..14 * 11].iter().all(|&v| v == 255), "{px:?}");
    }

    #[test]
    fn decode_converts_channels_to_planes() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_pixel(10, 10, Rgb([200, 100, 50]));
        let p = dir.path().join("c.jpg");
        // JPEG is lossy: compare within a tolerance.
        img.save(&p).unwrap();
        let px = decode_image(&p, [3, 20, 20]).unwrap();
        assert_eq!(px.len(), 3 * 400);
        for (ch, want) in [200i32, 100, 50].into_iter().enumerate() {
            let plane = &px[ch * 400..(ch + 1) * 400];
            assert!(
                plane.iter().all(|&v| (i32::from(v) - want).abs() <= 3),
                "{ch}: {plane:?}"
            );
        }
        let gray = decode_image(&p, [1, 5, 5]).unwrap();
        // Rec. 709 luma of (200, 100, 50): 0.2126·200 + 0.7152·100 + 0.0722·50 ≈ 117.6.
        assert!(
            gray.iter().all(|&v| (i32::from(v) - 118).abs() <= 3),
            "{gray:?}"
        );
        let e = decode_image(&p, [2, 5, 5]).unwrap_err();
        assert!(e.problem.contains("takes 2"), "{e}");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.png");
        let e = decode_image(&missing, [1, 28, 28]).unwrap_err();
        assert!(e.to_string().contains("nope.png: cannot open"), "{e}");
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"not an image at all").unwrap();
        let e = decode_image(&junk, [1, 28, 28]).unwrap_err();
        assert!(e.to_string().contains("junk.png: not a PNG/JPEG"), "{e}");
    }

    #[test]
    fn softmax_and_top_k() {
        let p = softmax(&[1.0, 3.0, 2.0, 3.0]);
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp(), 3f64.exp()];
        let s: f64 = e.iter().sum();
        for (a, b) in p.iter().zip(e) {
            assert!((a - b / s).abs() < 1e-12);
        }
        let t = top_k(&p, 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        assert_eq!(top_k(&p, 9).len(), 4);
    }
}
