//! An RGB pixel buffer that plotters draws into, the embedded font, and atomic PNG writing.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::commands::{CliError, CliResult};

/// DejaVu Sans (see `assets/README.md`), registered as plotters' `sans-serif` family.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded font as `sans-serif` (once per process), so text needs no system
/// font. Every drawing function calls it first.
pub fn ensure_font() -> CliResult<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(CliError(
            "the embedded font (assets/DejaVuSans.ttf) could not be parsed".into(),
        ))
    }
}

/// A `width × height` RGB image (row-major, 3 bytes a pixel), white when created.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height · width · 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A white canvas. Errors when a side is 0 or the image would exceed 2^28 pixels.
    pub fn new(width: u32, height: u32) -> CliResult<Canvas> {
        let pixels = u64::from(width) * u64::from(height);
        if width == 0 || height == 0 || pixels > 1 << 28 {
            return Err(CliError(format!(
                "cannot draw a {width}×{height} image (each side must be ≥ 1, at most 2^28 pixels)"
            )));
        }
        Ok(Canvas {
            width,
            height,
            rgb: vec![255; pixels as usize * 3],
        })
    }

    /// Fills the rectangle of `w × h` pixels at (`x`, `y`) (clipped to the canvas).
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, color: [u8; 3]) {
        let (x1, y1) = (
            x.saturating_add(w).min(self.width),
            y.saturating_add(h).min(self.height),
        );
        for yy in y.min(y1)..y1 {
            let row = yy as usize * self.width as usize;
            for xx in x.min(x1)..x1 {
                let i = (row + xx as usize) * 3;
                self.rgb[i..i + 3].copy_from_slice(&color);
            }
        }
    }

    /// Runs `draw` on a plotters drawing area over the whole canvas (the embedded font is
    /// registered first). `what` names the picture in errors.
    pub fn draw<F>(&mut self, what: &str, draw: F) -> CliResult<()>
    where
        F: FnOnce(
            &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        ) -> Result<(), Box<dyn std::error::Error>>,
    {
        ensure_font()?;
        let (w, h) = (self.width, self.height);
        let area = BitMapBackend::with_buffer(&mut self.rgb, (w, h)).into_drawing_area();
        draw(&area)
            .and_then(|()| area.present().map_err(Into::into))
            .map_err(|e| CliError(format!("drawing the {what} failed: {e}")))
    }

    /// Encodes the canvas as PNG and writes it to `path` atomically: a temporary file
    /// `.NAME.*.tmp` in the same directory is written, synced and renamed over `path`,
    /// so `path` is never left half-written. Errors name the path.
    pub fn save_png(&self, path: &Path) -> CliResult<()> {
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(
                &self.rgb,
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| CliError(format!("{}: cannot encode PNG: {e}", path.display())))?;
        write_atomic(path, &png)
    }
}

/// Checks that `path` names a `.png` file (the only format the plots are written in) in an
/// existing directory, before a long computation whose result is to be written there.
pub fn check_png_path(path: &Path) -> CliResult<()> {
    if path.file_name().is_none() {
        return Err(CliError(format!(
            "{}: not a file path (it has no file name)",
            path.display()
        )));
    }
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        return Err(CliError(format!(
            "{}: plots are written as PNG; give a file name ending in .png",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(CliError(format!(
            "{}: is a directory; give a file name ending in .png",
            path.display()
        )));
    }
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => Err(CliError(format!(
            "{}: {} {}",
            path.display(),
            d.display(),
            if d.exists() {
                "is not a directory"
            } else {
                "does not exist (create the directory first)"
            }
        ))),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` through a synced temporary sibling file renamed into place; on
/// failure the temporary file is removed and an existing `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult<()> {
    Ok(allmlp_layers::state_dict::write_atomic(path, |w| {
        w.write_all(bytes)
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut c = Canvas::new(5, 3).unwrap();
        c.fill_rect(1, 1, 10, 10, [10, 20, 30]);
        c.save_png(&path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (5, 3));
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(4, 2).0, [10, 20, 30]);
        assert_eq!(img.get_pixel(0, 2).0, [255, 255, 255]);
        // Only the PNG is left: the temporary file was renamed.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn bad_paths_and_sizes_are_errors() {
        let c = Canvas::new(2, 2).unwrap();
        let e = c
            .save_png(Path::new("/nonexistent-dir-allmlp/x.png"))
            .unwrap_err();
        assert!(e.0.contains("/nonexistent-dir-allmlp/"), "{e}");
        assert!(Canvas::new(0, 4).is_err());
        assert!(Canvas::new(1 << 15, 1 << 15).is_err());
    }

    #[test]
    fn text_is_drawn_with_the_embedded_font() {
        let mut c = Canvas::new(80, 30).unwrap();
        c.draw("test", |a| {
            a.draw_text("Hg", &("sans-serif", 20).into_font().color(&BLACK), (5, 5))?;
            Ok(())
        })
        .unwrap();
        let dark = c.rgb.chunks(3).filter(|p| p[0] < 100).count();
        assert!(dark > 20, "text left only {dark} dark pixels");
    }
}
