//! `allmlp predict`: the top-K classes of PNG/JPEG images under a trained checkpoint.

use std::path::PathBuf;

use allmlp_layers::infer;
use allmlp_models::Model;
use clap::Args;

use super::{CliError, CliResult};
use crate::checkpoint::{LoadedModel, load_model};
use crate::data::{Dataset, Fit, Normalization, load_image_file};

/// Default `--top`.
pub const DEFAULT_TOP: usize = 5;

/// Images per forward pass.
const BATCH: usize = 64;

/// The flags of `allmlp predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Trained checkpoint (safetensors with `model` and `config` metadata, as `allmlp train`
    /// writes). Its `classes` metadata names the classes (else "class i") and its
    /// `normalization` metadata normalises the pixels; without it, RGB images are prepared as
    /// timm evaluates the model's reference checkpoints (bicubic resize to size / 0.875, centre
    /// crop, ImageNet's mean and std for ResMLP and the RepMLPs, 0.5 for MLP-Mixer), others
    /// only scaled to 0..1.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Registered model name; needed only when the weights carry no `model` metadata (e.g.
    /// converted from PyTorch).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// PNG or JPEG files to classify. Each is converted to the model's channels (grayscale or
    /// RGB), its shorter side resized to the model's input size (to size / 0.875 for reference
    /// weights without metadata, see --weights) and center-cropped.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// How many of the most probable classes to list per image (at most the class count).
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TOP)]
    pub top: usize,
    /// Worker threads (default: ALLMLP_NUM_THREADS, else every core).
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
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

/// How images are prepared for a checkpoint without metadata, and a note saying so: as
/// timm evaluates the model's reference checkpoints (`pretrained_cfg`: bicubic resize and
/// crop 0.875, ImageNet's mean and std for ResMLP and the RepMLPs, 0.5 for the JAX Mixer
/// weights) when it takes RGB input, else resized to cover the input and only scaled to 0..1.
fn without_metadata(model: &str, channels: usize) -> (Normalization, Fit, String) {
    let reference = allmlp_models::entry(model)
        .ok()
        .and_then(|e| e.eval_transform)
        .filter(|_| channels == 3);
    match reference {
        Some(r) => (
            Normalization {
                mean: r.mean.to_vec(),
                std: r.std.to_vec(),
            },
            Fit::timm(r.crop_pct),
            format!(
                "no normalization metadata: {model}'s reference transform (bicubic, crop {}, \
                 mean {:?}, std {:?})",
                r.crop_pct, r.mean, r.std
            ),
        ),
        None => (
            Normalization::identity(channels),
            Fit::COVER,
            "no normalization metadata: pixels only scaled to 0..1".to_string(),
        ),
    }
}

/// `predict`: decodes every image (failing on the first bad file, named), runs the model and
/// lists the top-K classes of each.
pub fn run(args: &PredictArgs) -> CliResult<String> {
    if args.top == 0 {
        return Err(CliError("--top must be at least 1".into()));
    }
    super::set_threads(args.threads)?;
    let LoadedModel { name, net, meta } =
        load_model(&args.weights, args.model.as_deref(), &Default::default())?;
    let input = net.input_shape();
    let (norm, fit, norm_note) = match &meta {
        Some(m) => (
            m.normalization.clone(),
            Fit::COVER,
            "normalization from the checkpoint".to_string(),
        ),
        None => without_metadata(&name, input[0]),
    };
    let images: Vec<Vec<u8>> = args
        .images
        .iter()
        .map(|p| load_image_file(p, input, fit).map_err(|e| CliError(e.to_string())))
        .collect::<CliResult<_>>()?;
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

    /// Without metadata: timm's `pretrained_cfg` mean/std for RGB models with reference
    /// checkpoints; 0..1 for the small models and for other channel counts.
    #[test]
    fn checkpoints_without_metadata_get_the_reference_transform() {
        let (n, fit, note) = without_metadata("resmlp_12_224", 3);
        assert_eq!(n.mean, [0.485, 0.456, 0.406]);
        assert_eq!(n.std, [0.229, 0.224, 0.225]);
        assert_eq!(fit, Fit::timm(0.875));
        assert!(
            note.contains("resmlp_12_224's reference transform"),
            "{note}"
        );
        let (n, fit, _) = without_metadata("mixer_b16_224", 3);
        assert_eq!((n.mean, n.std), (vec![0.5; 3], vec![0.5; 3]));
        assert!(fit.bicubic && fit.crop_pct == 0.875);
        for (model, channels) in [("mixer_b16_224", 1), ("mixer_tiny", 3), ("resmlp_tiny", 1)] {
            let (n, fit, note) = without_metadata(model, channels);
            assert_eq!(n, Normalization::identity(channels), "{model}");
            assert_eq!(fit, Fit::COVER);
            assert!(note.ends_with("pixels only scaled to 0..1"), "{note}");
        }
    }
}
