//! Training curves: loss (left) and accuracy (right) per epoch, train and test.

use std::path::Path;

use plotters::prelude::*;

use super::canvas::Canvas;
use crate::commands::{CliError, CliResult};
use crate::metrics::EpochMetrics;

/// Image size of [`plot_curves`], pixels.
pub const CURVES_SIZE: (u32, u32) = (1000, 420);

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(214, 39, 40);

/// One series: legend name, the value it plots, its colour.
type Series = (&'static str, fn(&EpochMetrics) -> f64, RGBColor);

/// One panel of the figure.
struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    range: (f64, f64),
    series: [Series; 2],
}

/// A value range for the y axis covering `values` (finite ones), padded by 5%; `None` when
/// none is finite.
fn y_range(values: impl Iterator<Item = f64>, floor: Option<f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return None;
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let lo = floor.map_or(lo - pad, |f| (lo - pad).max(f));
    Some((lo, hi + pad))
}

/// Draws `rows` as two panels: train and test loss, train and test accuracy (%), against the
/// epoch. Non-finite values are left out. Errors when `rows` is empty.
pub fn render_curves(rows: &[EpochMetrics]) -> CliResult<Canvas> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Err(CliError("no epochs to plot".into()));
    };
    // Half an epoch of room at the ends, so the markers are not cut by the frame.
    let (x0, x1) = (
        first.epoch as f64 - 0.5,
        last.epoch.max(first.epoch) as f64 + 0.5,
    );
    let loss = y_range(
        rows.iter().flat_map(|r| [r.train_loss, r.test_loss]),
        Some(0.0),
    )
    .unwrap_or((0.0, 1.0));
    let acc = y_range(
        rows.iter()
            .flat_map(|r| [r.train_acc * 100.0, r.test_acc * 100.0]),
        Some(0.0),
    )
    .map_or((0.0, 100.0), |(lo, hi)| (lo, hi.min(100.0).max(lo + 1.0)));
    let mut canvas = Canvas::new(CURVES_SIZE.0, CURVES_SIZE.1)?;
    canvas.draw("training curves", |area| {
        let panels = area.split_evenly((1, 2));
        let specs = [
            Panel {
                caption: "loss (train: against its smoothed/mixed targets)",
                y_desc: "cross-entropy",
                range: loss,
                series: [
                    ("train", |r| r.train_loss, TRAIN),
                    ("test", |r| r.test_loss, TEST),
                ],
            },
            Panel {
                caption: "accuracy",
                y_desc: "accuracy (%)",
                range: acc,
                series: [
                    ("train", |r| r.train_acc * 100.0, TRAIN),
                    ("test", |r| r.test_acc * 100.0, TEST),
                ],
            },
        ];
        let legend_at = [
            SeriesLabelPosition::UpperRight,
            SeriesLabelPosition::LowerRight,
        ];
        for ((panel, spec), at) in panels.iter().zip(specs).zip(legend_at) {
            let Panel {
                caption,
                y_desc,
                range: (lo, hi),
                series,
            } = spec;
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(y_desc)
                .x_labels(rows.len().clamp(2, 12))
                // Epochs are whole numbers: label only those.
                .x_label_formatter(&|x| {
                    if x.fract().abs() < 1e-9 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                })
                .light_line_style(RGBColor(235, 235, 235))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()?;
            for (name, pick, colour) in series {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .map(|r| (r.epoch as f64, pick(r)))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .position(at)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })?;
    Ok(canvas)
}

/// [`render_curves`] written to `path` as a PNG (atomically; `train` writes `DIR/curves.png`
/// after every epoch).
pub fn plot_curves(path: &Path, rows: &[EpochMetrics]) -> CliResult<()> {
    render_curves(rows)?.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, loss: f64, acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: loss,
            train_acc: acc,
            test_loss: loss * 0.9,
            test_acc: acc + 0.02,
            lr: 1e-3,
            seconds: epoch as f64,
        }
    }

    fn count(c: &Canvas, colour: RGBColor) -> usize {
        c.rgb
            .chunks(3)
            .filter(|p| p == &[colour.0, colour.1, colour.2])
            .count()
    }

    #[test]
    fn both_panels_draw_both_series() {
        let rows: Vec<_> = (1..=5)
            .map(|e| row(e, 1.0 / e as f64, 0.5 + 0.05 * e as f64))
            .collect();
        let c = render_curves(&rows).unwrap();
        assert_eq!((c.width, c.height), CURVES_SIZE);
        // Each series colour appears in both halves (loss and accuracy panels).
        let half = |left: bool| {
            let mut h = Canvas::new(c.width / 2, c.height).unwrap();
            for y in 0..c.height as usize {
                let src =
                    y * c.width as usize * 3 + if left { 0 } else { c.width as usize / 2 * 3 };
                let dst = y * h.width as usize * 3;
                let n = h.width as usize * 3;
                h.rgb[dst..dst + n].copy_from_slice(&c.rgb[src..src + n]);
            }
            h
        };
        for left in [true, false] {
            let h = half(left);
            assert!(count(&h, TRAIN) > 100, "train series missing");
            assert!(count(&h, TEST) > 100, "test series missing");
        }
    }

    #[test]
    fn one_epoch_and_non_finite_values_still_draw() {
        let c = render_curves(&[row(1, f64::NAN, 0.3)]).unwrap();
        assert!(count(&c, TEST) > 10);
        assert!(render_curves(&[]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.png");
        plot_curves(&p, &[row(1, 2.0, 0.1), row(2, 1.0, 0.4)]).unwrap();
        assert_eq!(image::open(&p).unwrap().to_rgb8().dimensions(), CURVES_SIZE);
    }
}
