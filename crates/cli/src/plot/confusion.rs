//! A confusion matrix as a heat map: rows are true classes, columns predicted classes, each
//! cell coloured by its share of the row (recall; the diagonal is per-class accuracy) with the
//! count written in it when the cells are large enough.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::Canvas;
use super::colormap::sequential;
use crate::commands::{CliError, CliResult};

/// Cell side in pixels for `k` classes: about 560 px for the matrix, 6 to 44 px a cell.
fn cell_size(k: usize) -> u32 {
    (560 / k.max(1) as u32).clamp(6, 44)
}

/// Draws `confusion` (`[true][predicted]` counts, `k × k`) with `classes` (`k` names) under
/// `title`. Errors when the matrix is not `k × k` or empty.
pub fn render_confusion(
    title: &str,
    classes: &[String],
    confusion: &[Vec<usize>],
) -> CliResult<Canvas> {
    let k = classes.len();
    if k == 0 || confusion.len() != k || confusion.iter().any(|r| r.len() != k) {
        return Err(CliError(format!(
            "a confusion matrix needs {k} rows of {k} counts (one per class), got {} rows",
            confusion.len()
        )));
    }
    let cell = cell_size(k);
    let labels = cell >= 10;
    let label_w = if labels {
        let longest = classes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i} {c}").chars().count())
            .max()
            .unwrap_or(0);
        (longest as u32 * 7 + 12).min(220)
    } else {
        40
    };
    let (left, top, bottom, right) = (label_w + 10, 56, 44, 20);
    let side = cell * k as u32;
    let width = (left + side + right).max(420);
    let height = top + side + bottom;
    let mut canvas = Canvas::new(width, height)?;
    for (t, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &n) in row.iter().enumerate() {
            let share = if total > 0 {
                n as f32 / total as f32
            } else {
                0.0
            };
            canvas.fill_rect(
                left + p as u32 * cell,
                top + t as u32 * cell,
                cell,
                cell,
                sequential(share),
            );
        }
    }
    canvas.draw("confusion matrix", |area| {
        let font = |size: u32| ("sans-serif", size).into_font();
        area.draw_text(title, &font(15).color(&BLACK), (10, 8))?;
        area.draw_text(
            "rows: true class, columns: predicted class; colour: share of the row",
            &font(11).color(&BLACK),
            (10, 30),
        )?;
        let (l, t) = (left as i32, top as i32);
        let (c, s) = (cell as i32, side as i32);
        area.draw(&Rectangle::new([(l - 1, t - 1), (l + s, t + s)], BLACK))?;
        let font_size = (cell * 2 / 5).clamp(8, 13);
        for (i, name) in classes.iter().enumerate() {
            let mid = c * i as i32 + c / 2;
            if labels {
                let right = font(font_size)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center));
                let text: String = format!("{i} {name}").chars().take(30).collect();
                area.draw_text(&text, &right, (l - 6, t + mid))?;
            }
            if !labels && i % 10 == 0 {
                let left_of = font(font_size)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center));
                area.draw_text(&i.to_string(), &left_of, (l - 6, t + mid))?;
            }
            if labels || i % 10 == 0 {
                let below = font(font_size)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top));
                area.draw_text(&i.to_string(), &below, (l + mid, t + s + 4))?;
            }
        }
        let axis = font(11)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        area.draw_text("predicted", &axis, (l + s / 2, t + s + 22))?;
        if cell >= 28 {
            for (ti, row) in confusion.iter().enumerate() {
                let total: usize = row.iter().sum();
                for (pi, &n) in row.iter().enumerate() {
                    let dark = total > 0 && n as f32 / total as f32 > 0.5;
                    let colour = if dark { WHITE } else { BLACK };
                    let style = font(font_size)
                        .color(&colour)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    let at = (l + c * pi as i32 + c / 2, t + c * ti as i32 + c / 2);
                    area.draw_text(&n.to_string(), &style, at)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(canvas)
}

/// [`render_confusion`] written to `path` as a PNG (atomically).
pub fn plot_confusion(
    path: &Path,
    title: &str,
    classes: &[String],
    confusion: &[Vec<usize>],
) -> CliResult<()> {
    render_confusion(title, classes, confusion)?.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_coloured_by_row_share() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let m = vec![vec![10, 0, 0], vec![5, 5, 0], vec![0, 0, 0]];
        let c = render_confusion("t", &classes, &m).unwrap();
        let cell = cell_size(3);
        assert_eq!(cell, 44);
        // Sample a corner of each cell, away from the number drawn in its centre.
        let (left, top) = ("2 c".chars().count() as u32 * 7 + 12 + 10, 56);
        let at = |t: u32, p: u32| {
            let (x, y) = (left + p * cell + 2, top + t * cell + 2);
            let i = ((y * c.width + x) * 3) as usize;
            [c.rgb[i], c.rgb[i + 1], c.rgb[i + 2]]
        };
        assert_eq!(at(0, 0), sequential(1.0));
        assert_eq!(at(0, 1), sequential(0.0));
        assert_eq!(at(1, 0), sequential(0.5));
        assert_eq!(at(1, 1), sequential(0.5));
        assert_eq!(at(2, 2), sequential(0.0));
        assert!(render_confusion("t", &classes, &m[..2]).is_err());
        assert!(render_confusion("t", &[], &[]).is_err());
    }
}
