//! ImageFolder tests on small PNG/JPEG files written by the `image` crate into a temporary
//! directory. References: pixel values written by the test itself (PNG is lossless), PIL's
//! `convert('L')` results for the luma formula, and a linear gradient for the resize.

use super::*;
use image::{ImageFormat, Rgb, RgbImage};

fn rgb_image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb(f(x, y)))
}

fn save(img: &RgbImage, path: &Path, fmt: ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, fmt).unwrap();
}

/// The pattern of image `k`: distinct per image, channel and pixel.
fn pattern(k: u32) -> impl Fn(u32, u32) -> [u8; 3] {
    move |x, y| {
        let v = (k * 37 + y * 7 + x * 3) as u8;
        [v, v.wrapping_add(50), v.wrapping_add(100)]
    }
}

fn planar_ref(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let mut out = Vec::new();
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                out.push(img.get_pixel(x, y).0[c]);
            }
        }
    }
    out
}

#[test]
fn classes_sorted_files_ordered_like_torchvision_pixels_exact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // (relative path, pattern id); PNG so that pixels survive exactly.
    let files = [
        ("b_cls/2.png", 0),
        ("b_cls/10.PNG", 1), // upper-case extension; "10" < "2" as strings
        ("a_cls/x.png", 2),
        ("a_cls/sub/y.png", 3), // nested: after a_cls's own files ("a_cls" < "a_cls/sub")
        ("c/only.png", 4),
    ];
    for (rel, k) in files {
        save(
            &rgb_image(6, 5, pattern(k)),
            &root.join(rel),
            ImageFormat::Png,
        );
    }
    std::fs::write(root.join("a_cls/notes.txt"), "not an image").unwrap();
    std::fs::write(root.join("README"), "a file at the top is not a class").unwrap();
    let ds = load_image_folder(root, [3, 5, 6]).unwrap();
    assert_eq!(ds.classes, ["a_cls", "b_cls", "c"]);
    assert_eq!(ds.shape, [5, 3, 5, 6]);
    assert_eq!(ds.labels, [0, 0, 1, 1, 2]);
    for (i, k) in [2, 3, 1, 0, 4].into_iter().enumerate() {
        assert_eq!(
            ds.image(i).unwrap(),
            planar_ref(&rgb_image(6, 5, pattern(k))),
            "image {i}"
        );
    }
    assert!(ds.source.contains(&root.display().to_string()));
}

#[test]
fn jpeg_and_grayscale_conversions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A flat colour survives JPEG almost exactly (±2 after chroma subsampling and rounding).
    save(
        &rgb_image(8, 8, |_, _| [200, 120, 40]),
        &root.join("k/a.JpEg"),
        ImageFormat::Jpeg,
    );
    let ds = load_image_folder(root, [3, 8, 8]).unwrap();
    for (c, want) in [200i32, 120, 40].into_iter().enumerate() {
        for &v in &ds.image(0).unwrap()[c * 64..(c + 1) * 64] {
            assert!(
                (i32::from(v) - want).abs() <= 2,
                "channel {c}: {v} vs {want}"
            );
        }
    }
    // Luma: PIL 13 `Image.new('RGB', (3, 1))` with these pixels, `.convert('L')` gives
    // [76, 150, 130].
    let px = [[255, 0, 0], [0, 255, 0], [12, 200, 77]];
    // Three rows of those pixels, read at their own size (no resampling).
    let tall = DynamicImage::ImageRgb8(rgb_image(3, 3, |x, _| px[x as usize]));
    let luma = to_chw(&tall, [1, 3, 3], Fit::COVER);
    assert_eq!(luma, [76, 150, 130, 76, 150, 130, 76, 150, 130]);
    // A grayscale image read as RGB repeats its values in every channel.
    let gray = DynamicImage::ImageLuma8(GrayImage::from_fn(2, 2, |x, y| {
        image::Luma([(x * 2 + y) as u8 * 40])
    }));
    assert_eq!(
        to_chw(&gray, [3, 2, 2], Fit::COVER),
        [0, 80, 40, 120, 0, 80, 40, 120, 0, 80, 40, 120]
    );
    // And luma of a gray RGB pixel is the same value.
    assert_eq!(to_chw(&gray, [1, 2, 2], Fit::COVER), [0, 80, 40, 120]);
}

#[test]
fn resize_short_side_then_center_crop() {
    // 12 wide × 6 tall into [1, 6, 6]: short side already 6, so only the centre 6 columns
    // (left = 3) are cut, exactly.
    let img = rgb_image(12, 6, |x, y| [(x * 20 + y) as u8; 3]);
    let got = to_chw(&DynamicImage::ImageRgb8(img), [1, 6, 6], Fit::COVER);
    let want: Vec<u8> = (0..6)
        .flat_map(|y| (3..9).map(move |x| (x * 20 + y) as u8))
        .collect();
    assert_eq!(got, want);
    // Odd margin: 7 wide × 4 tall into 4 × 4 is not resized; left = round(1.5) = 2 (ties to
    // even, as Python's round in torchvision's CenterCrop).
    let img = rgb_image(7, 4, |x, _| [x as u8 * 10; 3]);
    let got = to_chw(&DynamicImage::ImageRgb8(img), [1, 4, 4], Fit::COVER);
    assert_eq!(&got[..4], [20, 30, 40, 50]);
    // Halving a horizontal gradient v = 4x: output column x averages source columns
    // 2x and 2x + 1 (centre 2x + 0.5), so ≈ 8x + 2 away from the borders.
    let img = rgb_image(56, 56, |x, _| [(x * 4) as u8; 3]);
    let got = to_chw(&DynamicImage::ImageRgb8(img), [1, 28, 28], Fit::COVER);
    for y in 0..28 {
        for x in 1..27 {
            let v = i32::from(got[y * 28 + x]);
            assert!((v - (8 * x as i32 + 2)).abs() <= 1, "({x}, {y}): {v}");
        }
    }
    // Upscaling a flat image keeps it flat; non-square input and output shapes.
    let img = rgb_image(5, 9, |_, _| [90, 91, 92]);
    let got = to_chw(&DynamicImage::ImageRgb8(img), [3, 10, 7], Fit::COVER);
    assert_eq!(got.len(), 3 * 10 * 7);
    for (c, plane) in got.chunks(70).enumerate() {
        assert!(
            plane.iter().all(|&v| v == 90 + c as u8),
            "channel {c}: {plane:?}"
        );
    }
}

#[test]
fn single_image_file_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("one.png");
    save(&rgb_image(4, 4, pattern(9)), &p, ImageFormat::Png);
    assert_eq!(
        load_image_file(&p, [3, 4, 4], Fit::COVER).unwrap(),
        planar_ref(&rgb_image(4, 4, pattern(9)))
    );
    for crop_pct in [0.0, -1.0, 1.5, f64::NAN] {
        let fit = Fit {
            crop_pct,
            bicubic: true,
        };
        let e = load_image_file(&p, [3, 4, 4], fit).unwrap_err().to_string();
        assert!(e.contains("crop_pct must be in (0, 1]"), "{e}");
    }
    let missing = dir.path().join("missing.png");
    let e = load_image_file(&missing, [3, 4, 4], Fit::COVER).unwrap_err();
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let e = load_image_file(&bad, [3, 4, 4], Fit::COVER)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.png") && e.contains("decode"), "{e}");
    // A JPEG cut short decodes without complaint (the missing scan comes out grey): refused,
    // wherever it is cut; trailing bytes after a complete image are accepted.
    let jpg = dir.path().join("full.jpg");
    save(&rgb_image(64, 48, pattern(5)), &jpg, ImageFormat::Jpeg);
    let full = std::fs::read(&jpg).unwrap();
    let sos = full.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let cut = dir.path().join("cut.jpg");
    for len in [sos + 20, full.len() / 2, full.len() - 2] {
        std::fs::write(&cut, &full[..len]).unwrap();
        let e = load_image_file(&cut, [3, 8, 8], Fit::COVER)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cut.jpg") && e.contains("truncated JPEG"),
            "{len}: {e}"
        );
    }
    let mut padded = full.clone();
    padded.extend_from_slice(&[0; 16]);
    std::fs::write(&cut, &padded).unwrap();
    assert_eq!(
        load_image_file(&cut, [3, 8, 8], Fit::COVER).unwrap(),
        load_image_file(&jpg, [3, 8, 8], Fit::COVER).unwrap()
    );
    assert!(
        load_image_file(&p, [2, 4, 4], Fit::COVER)
            .unwrap_err()
            .to_string()
            .contains("2 channels")
    );
    assert!(load_image_file(&p, [3, 0, 4], Fit::COVER).is_err());
    // Not regular files: refused before opening (opening a FIFO blocks until a writer comes).
    let e = load_image_file(dir.path(), [3, 4, 4], Fit::COVER)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a directory, not a file"), "{e}");
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let e = load_image_file(&fifo, [3, 4, 4], Fit::COVER)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fifo.png") && e.contains("not a regular file"),
            "{e}"
        );
    }
    // A 100,000 × 1 strip: covering 28 × 28 would take a 2.8M × 28 intermediate.
    let strip = dir.path().join("strip.png");
    save(&rgb_image(100_000, 1, pattern(3)), &strip, ImageFormat::Png);
    let e = load_image_file(&strip, [1, 28, 28], Fit::COVER)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("strip.png") && e.contains("2800000×28") && e.contains("aspect ratio"),
        "{e}"
    );
}

#[test]
fn folder_errors_name_the_folder_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = load_image_folder(&root.join("nope"), [1, 4, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("cannot read"), "{e}");
    let e = load_image_folder(root, [1, 4, 4]).unwrap_err().to_string();
    assert!(e.contains("no class sub-folders"), "{e}");
    save(
        &rgb_image(4, 4, pattern(0)),
        &root.join("cat/a.png"),
        ImageFormat::Png,
    );
    std::fs::create_dir_all(root.join("dog")).unwrap();
    std::fs::write(root.join("dog/readme.txt"), "x").unwrap();
    let e = load_image_folder(root, [1, 4, 4]).unwrap_err().to_string();
    assert!(e.contains("dog") && e.contains("no .png"), "{e}");
    std::fs::write(root.join("dog/broken.jpg"), [0xFF, 0xD8, 0xFF, 0, 1, 2]).unwrap();
    let e = load_image_folder(root, [1, 4, 4]).unwrap_err().to_string();
    assert!(e.contains("broken.jpg"), "{e}");
    std::fs::remove_file(root.join("dog/broken.jpg")).unwrap();
    save(
        &rgb_image(3, 3, pattern(1)),
        &root.join("dog/d.jpg"),
        ImageFormat::Jpeg,
    );
    let ds = load_image_folder(root, [1, 4, 4]).unwrap();
    assert_eq!(
        (ds.classes.clone(), ds.labels.clone()),
        (vec!["cat".into(), "dog".into()], vec![0, 1])
    );
    assert!(
        load_image_folder(root, [4, 4, 4])
            .unwrap_err()
            .to_string()
            .contains("4 channels")
    );
}

#[test]
fn many_images_decode_in_order_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..30u32 {
        let p = dir.path().join(format!("c{}/{k:02}.png", k % 3));
        save(&rgb_image(3, 3, pattern(k)), &p, ImageFormat::Png);
    }
    let ds = load_image_folder(dir.path(), [3, 3, 3]).unwrap();
    assert_eq!(ds.len(), 30);
    let mut i = 0;
    for c in 0..3u32 {
        for k in (0..30).filter(|k| k % 3 == c) {
            assert_eq!(ds.labels[i], c as usize);
            assert_eq!(
                ds.image(i).unwrap(),
                planar_ref(&rgb_image(3, 3, pattern(k)))
            );
            i += 1;
        }
    }
}

/// PIL 13 reference (torchvision's `Resize(s)` + `CenterCrop(s)` on a mode-'L' image,
/// bilinear), produced by:
/// ```python
/// a = np.array([[(x*x + 3*y*y + x*y) & 255 for x in range(w)] for y in range(h)], np.uint8)
/// img = Image.fromarray(a, 'L'); nw, nh = (s, int(s*h/w)) if w <= h else (int(s*w/h), s)
/// r = img.resize((nw, nh), Image.BILINEAR); top, left = round((nh-s)/2), round((nw-s)/2)
/// np.array(r.crop((left, top, left+s, top+s)))
/// ```
/// The `image` crate's filter is not PIL's bit for bit; the test bounds the difference by 1.
#[test]
fn resize_is_close_to_pil_bilinear() {
    /// `((width, height, side), PIL's pixels)`.
    type Case = ((u32, u32, usize), &'static [u8]);
    let cases: [Case; 2] = [
        (
            (10, 8, 5),
            &[
                2, 6, 17, 31, 53, 14, 20, 34, 51, 75, 40, 49, 66, 85, 112, 81, 93, 112, 133, 163,
                134, 148, 170, 194, 193,
            ],
        ),
        (
            (4, 3, 6),
            &[
                0, 1, 2, 3, 5, 8, 1, 2, 3, 4, 7, 10, 3, 4, 5, 7, 10, 13, 6, 7, 9, 11, 14, 17, 11,
                12, 14, 16, 19, 22, 13, 14, 16, 19, 22, 25,
            ],
        ),
    ];
    for ((w, h, s), want) in cases {
        let img = GrayImage::from_fn(w, h, |x, y| {
            image::Luma([((x * x + 3 * y * y + x * y) & 255) as u8])
        });
        let got = to_chw(&DynamicImage::ImageLuma8(img), [1, s, s], Fit::COVER);
        let diffs: Vec<i32> = got
            .iter()
            .zip(want)
            .map(|(&a, &b)| i32::from(a) - i32::from(b))
            .collect();
        // Measured: at most 1 (rounding inside the filters).
        assert!(
            diffs.iter().all(|d| d.abs() <= 1),
            "{w}×{h} → {s}: {got:?} vs PIL {want:?}"
        );
    }
}

/// The image test is torchvision's `has_file_allowed_extension`: the name's
/// ending, any case, a dot file named just `.png` included.
#[test]
fn image_files_are_chosen_by_their_name_ending() {
    for name in ["a.png", "B.JPG", "c.Jpeg", ".png", "x.tar.png"] {
        assert!(is_image(name), "{name}");
    }
    for name in [
        "png",
        "a.gif",
        "a.png.txt",
        "apng",
        "a.jpe",
        ".DS_Store",
        "",
    ] {
        assert!(!is_image(name), "{name}");
    }
}

/// timm 1.0.31's evaluation transform (`create_transform(input_size=(1, s, s),
/// is_training=False, crop_pct=0.875, interpolation='bicubic', mean=(0,), std=(1,))`: PIL
/// bicubic `Resize(⌊s / 0.875⌋)`, `CenterCrop(s)`), times 255, on the image of
/// [`resize_is_close_to_pil_bilinear`]. `Fit::timm` with the `image` crate's Catmull-Rom
/// filter is within one level of it (measured: 0 and 1; not PIL's filter bit for bit), and
/// `Fit::COVER` (bilinear, no 0.875 margin: 56 and 12 levels off) is not.
#[test]
fn timm_fit_is_close_to_timms_eval_transform() {
    type Case = ((u32, u32, usize), &'static [u8]);
    let cases: [Case; 2] = [
        (
            (20, 16, 7),
            &[
                24, 47, 78, 117, 171, 200, 42, 50, 77, 112, 161, 201, 88, 72, 103, 136, 182, 201,
                94, 71, 166, 175, 187, 126, 71, 112, 167, 122, 92, 72, 109, 159, 155, 107, 117,
                133, 157, 122, 120, 115, 152, 141, 113, 104, 128, 119, 135, 127, 148,
            ],
        ),
        (
            (13, 23, 6),
            &[
                87, 109, 144, 179, 175, 123, 182, 172, 133, 112, 86, 129, 126, 90, 109, 132, 148,
                131, 136, 142, 117, 114, 117, 115, 106, 132, 116, 148, 125, 124, 106, 115, 137,
                111, 123, 112,
            ],
        ),
    ];
    for ((w, h, s), want) in cases {
        let img = DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
            image::Luma([((x * x + 3 * y * y + x * y) & 255) as u8])
        }));
        let max_diff = |fit| {
            to_chw(&img, [1, s, s], fit)
                .iter()
                .zip(want)
                .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
                .max()
                .unwrap()
        };
        let (timm, cover) = (max_diff(Fit::timm(0.875)), max_diff(Fit::COVER));
        assert!(timm <= 1, "{w}×{h} → {s}: {timm}");
        assert!(cover > 5, "{w}×{h} → {s}: COVER within {cover}");
    }
}
