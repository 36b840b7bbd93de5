//! ImageFolder datasets (torchvision's layout): `DIR/<class>/…/*.png|jpg|jpeg`, one sub-folder
//! per class, plus single-image loading for `allmlp predict`.
//!
//! - **Classes** are the sub-folders of `DIR`, sorted by name (label = position), as
//!   torchvision's `find_classes` (hidden folders included, like torchvision).
//! - **Images** are the files under each class folder, at any depth (symbolic links followed,
//!   at most [`MAX_DEPTH`] levels), whose extension is `png`, `jpg` or `jpeg` in any case; other
//!   files are ignored. They are ordered by (folder path, file name), as torchvision's
//!   `make_dataset` orders them; the format is detected from the content.
//! - **Channels**: every image is converted to 8-bit RGB (alpha dropped, 16-bit scaled); for a
//!   1-channel model, to luma with PIL's `convert('L')` formula
//!   `L = (19595·R + 38470·G + 7471·B + 2¹⁵) >> 16` (ITU-R 601-2 weights).
//! - **Size**: the image is resized, keeping its aspect ratio, to the smallest size covering
//!   `H × W` (the side that needs the larger scale becomes exactly `H` or `W`, the other
//!   `⌊side·scale⌋`) with a bilinear filter (the `image` crate's `Triangle`, widened when
//!   shrinking as PIL's antialiased bilinear; close to but not bit-identical with PIL), then
//!   the centre `H × W` is cut (`top = round((h − H)/2)`, ties to even, as torchvision's
//!   `CenterCrop`). For a square input this is torchvision's `Resize(H)` + `CenterCrop(H)`
//!   (short side to `H`). An image that already covers `H × W` at scale 1 is only cropped.
//!   `allmlp predict` on a checkpoint without metadata of a model with reference weights
//!   prepares the image as timm evaluates them ([`Fit::timm`]): bicubic, to cover
//!   `⌊H / crop_pct⌋ × ⌊W / crop_pct⌋`, then the centre `H × W`.
//!
//! Decoding runs on up to 8 threads; the result does not depend on their number.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageBuffer, Pixel};

use super::{DataError, Dataset, Result, read_data_file};

/// Deepest folder level searched below a class folder (guards against symbolic-link loops).
pub const MAX_DEPTH: usize = 32;

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// How an image is brought to a model's `H × W` input: resized, aspect kept, to the smallest
/// size covering `⌊H / crop_pct⌋ × ⌊W / crop_pct⌋`, then the centre `H × W` cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The crop's share of the resized side (1: resize straight to cover `H × W`).
    pub crop_pct: f64,
    /// Bicubic (Catmull-Rom, as PIL's `BICUBIC`) resampling instead of bilinear.
    pub bicubic: bool,
}

impl Fit {
    /// Bilinear, straight to cover `H × W`: the image folders', and so allmlp's checkpoints'.
    pub const COVER: Fit = Fit {
        crop_pct: 1.0,
        bicubic: false,
    };

    /// timm's evaluation transform for a model whose `pretrained_cfg` has this `crop_pct`
    /// and bicubic interpolation: `Resize(⌊size / crop_pct⌋, BICUBIC)`, `CenterCrop(size)`.
    pub fn timm(crop_pct: f32) -> Fit {
        Fit {
            crop_pct: f64::from(crop_pct),
            bicubic: true,
        }
    }

    /// The size the image is resized to cover, for an `h × w` input.
    fn target(self, h: usize, w: usize) -> (usize, usize) {
        let scale = |s: usize| (s as f64 / self.crop_pct).floor() as usize;
        (scale(h), scale(w))
    }
}

/// Loads `dir/<class>/*` (classes sorted by name), each image converted to `input`'s channels
/// (1 or 3) and resized/centre-cropped to its `[H, W]` (see the [module docs](self)). Errors
/// name the directory or file: unreadable, no class folders, a class without images, an image
/// that cannot be decoded, or an unsupported `input`.
pub fn load_image_folder(dir: &Path, input: [usize; 3]) -> Result<Dataset> {
    check_input(dir, input)?;
    let classes = sub_folders(dir)?;
    if classes.is_empty() {
        return Err(DataError::new(
            show(dir),
            "no class sub-folders (expected DIR/<class>/<image>.png|jpg|jpeg)",
        ));
    }
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    let mut names = Vec::with_capacity(classes.len());
    for (label, (name, path)) in classes.into_iter().enumerate() {
        let found = image_files(&path)?;
        if found.is_empty() {
            return Err(DataError::new(
                show(&path),
                format!(
                    "class folder `{name}` holds no .png, .jpg or .jpeg images (every class needs one)"
                ),
            ));
        }
        files.extend(found.into_iter().map(|f| (f, label)));
        names.push(name);
    }
    let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let mut images = Vec::with_capacity(files.len() * input.iter().product::<usize>());
    for img in decode_all(&paths, input) {
        images.extend(img?);
    }
    let ds = Dataset {
        shape: [files.len(), input[0], input[1], input[2]],
        images,
        labels: files.iter().map(|(_, l)| *l).collect(),
        classes: names,
        name: show(dir),
        source: format!("image folder {}", show(dir)),
    };
    ds.validate()?;
    Ok(ds)
}

/// Reads one PNG/JPEG image as `[C, H, W]` bytes for a model of input `input` (converted and
/// resized as the [module docs](self) say). Errors name the file.
pub fn load_image_file(path: &Path, input: [usize; 3], fit: Fit) -> Result<Vec<u8>> {
    check_input(path, input)?;
    if !(fit.crop_pct > 0.0 && fit.crop_pct <= 1.0) {
        return Err(DataError::new(
            show(path),
            format!("crop_pct must be in (0, 1], got {}", fit.crop_pct),
        ));
    }
    let bytes = read_data_file(path, &show(path))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::new(show(path), format!("cannot read: {e}")))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        return Err(DataError::new(
            show(path),
            "truncated JPEG: the data ends before the end-of-image marker (FF D9) of its last \
             scan",
        ));
    }
    let img = reader
        .decode()
        .map_err(|e| DataError::new(show(path), format!("cannot decode the image: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::new(show(path), "the image is empty (0 pixels)"));
    }
    let [_, h, w] = input;
    let (th, tw) = fit.target(h, w);
    let (nw, nh) = cover_size(img.width(), img.height(), th, tw);
    if nw.saturating_mul(nh) > MAX_RESIZED_PIXELS {
        return Err(DataError::new(
            show(path),
            format!(
                "the image is {}×{} pixels: scaled to cover {tw}×{th} it would be {nw}×{nh}, \
                 over the {MAX_RESIZED_PIXELS} pixels allowed (its aspect ratio is too extreme)",
                img.width(),
                img.height()
            ),
        ));
    }
    Ok(to_chw(&img, input, fit))
}

/// Whether a JPEG file holds an end-of-image marker (`FF D9`) after its last start-of-scan
/// (`FF DA`). The decoder fills a scan cut short with grey instead of failing (PIL reports
/// "image file is truncated"); entropy-coded data cannot hold either marker (a data `FF` is
/// followed by `00`), and an EXIF thumbnail's own markers come before the main image's scans.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// Converts a decoded image to `[C, H, W]` bytes for `input` = `[C, H, W]`, `C` 1 (luma) or 3
/// (RGB): PIL luma, resized to cover `H × W`, centre crop (the [module docs](self)).
///
/// # Panics
/// When `C` is not 1 or 3, or the image or `input` has a zero side ([`load_image_file`] checks).
pub(crate) fn to_chw(img: &DynamicImage, [c, h, w]: [usize; 3], fit: Fit) -> Vec<u8> {
    let rgb = img.to_rgb8();
    match c {
        1 => {
            let luma = GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0.map(u32::from);
                image::Luma([((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) as u8])
            });
            planar(&resize_crop(&luma, (h, w), fit), h, w)
        }
        3 => planar(&resize_crop(&rgb, (h, w), fit), h, w),
        _ => panic!("to_chw: {c} channels; images convert to 1 or 3"),
    }
}

fn check_input(what: &Path, [c, h, w]: [usize; 3]) -> Result<()> {
    if c != 1 && c != 3 {
        return Err(DataError::new(
            show(what),
            format!(
                "a model input of {c} channels cannot be read from images: 1 (grayscale) or 3 (RGB) supported"
            ),
        ));
    }
    if h == 0 || w == 0 || h > 1 << 15 || w > 1 << 15 {
        return Err(DataError::new(
            show(what),
            format!("input size {h}×{w} must be between 1 and 32768 on each side"),
        ));
    }
    Ok(())
}

/// Most pixels an image may be scaled to before its centre crop (2^26: a 64-megapixel
/// intermediate; a 1 × 10,000,000 strip scaled to cover 28 × 28 would need 7.8 billion).
const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// The smallest `(width, height)` with the image's aspect ratio (rounded down) that covers
/// `h × w`.
fn cover_size(iw: u32, ih: u32, h: usize, w: usize) -> (u64, u64) {
    let (h, w) = (h as u64, w as u64);
    let (iw, ih) = (u64::from(iw), u64::from(ih));
    // Scale h/ih ≥ w/iw: the height decides; ⌊h·iw/ih⌋ ≥ w then.
    if h * iw >= w * ih {
        (h * iw / ih, h)
    } else {
        (w, w * ih / iw)
    }
}

/// Resized (aspect kept, as `fit` says) to the smallest size covering `fit`'s target for
/// `h × w`, then the centre `h × w`.
fn resize_crop<P>(
    img: &ImageBuffer<P, Vec<u8>>,
    (h, w): (usize, usize),
    fit: Fit,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let (th, tw) = fit.target(h, w);
    let (nw, nh) = cover_size(img.width(), img.height(), th, tw);
    let (h, w) = (h as u64, w as u64);
    let filter = if fit.bicubic {
        FilterType::CatmullRom
    } else {
        FilterType::Triangle
    };
    let resized;
    let src = if (nw, nh) == (u64::from(img.width()), u64::from(img.height())) {
        img
    } else {
        resized = image::imageops::resize(img, nw as u32, nh as u32, filter);
        &resized
    };
    let top = ((nh - h) as f64 / 2.0).round_ties_even() as u32;
    let left = ((nw - w) as f64 / 2.0).round_ties_even() as u32;
    image::imageops::crop_imm(src, left, top, w as u32, h as u32).to_image()
}

/// Interleaved `h × w × C` pixels to planar `[C, h, w]`.
fn planar<P: Pixel<Subpixel = u8>>(img: &ImageBuffer<P, Vec<u8>>, h: usize, w: usize) -> Vec<u8> {
    let c = usize::from(P::CHANNEL_COUNT);
    let raw = img.as_raw();
    let mut out = vec![0u8; c * h * w];
    for (i, px) in raw.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * h * w + i] = v;
        }
    }
    out
}

fn read_dir(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let err =
        |e: std::io::Error| DataError::new(show(dir), format!("cannot read the directory: {e}"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        // `metadata` follows symbolic links; a dangling link is skipped.
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            path,
            is_dir,
        ));
    }
    out.sort();
    Ok(out)
}

/// `(name, path)` of the sub-folders of `dir`, sorted by name.
fn sub_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    Ok(read_dir(dir)?
        .into_iter()
        .filter(|e| e.2)
        .map(|(n, p, _)| (n, p))
        .collect())
}

/// Whether the file name ends in `.png`, `.jpg` or `.jpeg` (any case), as torchvision's
/// `has_file_allowed_extension` asks: a file named just `.png` counts too, which
/// `Path::extension` (no extension for a dot file) would miss.
fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|x| {
        lower
            .strip_suffix(x)
            .is_some_and(|stem| stem.ends_with('.'))
    })
}

/// The image files under `dir`, ordered by (folder path, file name).
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut folders = vec![(dir.to_path_buf(), 0usize)];
    let mut found: Vec<(String, String, PathBuf)> = Vec::new();
    while let Some((d, depth)) = folders.pop() {
        for (name, path, is_dir) in read_dir(&d)? {
            if is_dir {
                if depth >= MAX_DEPTH {
                    return Err(DataError::new(
                        show(&path),
                        format!(
                            "folders nested deeper than {MAX_DEPTH} levels (a symbolic-link loop?)"
                        ),
                    ));
                }
                folders.push((path, depth + 1));
            } else if is_image(&name) {
                found.push((d.to_string_lossy().into_owned(), name, path));
            }
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, _, p)| p).collect())
}

/// Decodes `paths` on up to 8 threads, each taking a contiguous share, results in order.
fn decode_all(paths: &[&Path], input: [usize; 3]) -> Vec<Result<Vec<u8>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| load_image_file(p, input, Fit::COVER))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                // A decoder panic (a bug in a codec) becomes an error, not a crash.
                Err(_) => vec![Err(DataError::new(
                    "image folder",
                    "an image decoder panicked",
                ))],
            })
            .collect()
    })
}

#[cfg(test)]
mod tests;
