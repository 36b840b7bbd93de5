//! Token-mixing weights as a grid of small heat maps (MLP-Mixer paper, Fig. 10; ResMLP, Fig. 29).
//!
//! Each *unit* (one row of a token-mixing weight matrix: the weights from every input patch)
//! is drawn as a `gh × gw` square of patches, `scale` pixels a patch, in a diverging colour map
//! normalised to the unit's own largest |w| (so +max is [`POSITIVE_EXTREME`] red, −max
//! [`NEGATIVE_EXTREME`] blue, 0 near white). A block's units fill rows of `cols` squares; the
//! blocks are stacked top to bottom, each under a one-line label. [`GridLayout`] gives every
//! position in pixels.
//!
//! [`POSITIVE_EXTREME`]: super::colormap::POSITIVE_EXTREME
//! [`NEGATIVE_EXTREME`]: super::colormap::NEGATIVE_EXTREME

use std::path::Path;

use plotters::prelude::*;

use super::canvas::Canvas;
use super::colormap::diverging;
use crate::commands::{CliError, CliResult};

/// Outer margin, pixels.
pub const MARGIN: u32 = 10;
/// Height of the title band at the top (title and a note on the colours), pixels.
pub const TITLE_H: u32 = 40;
/// Height of the label above each block's units, pixels.
pub const LABEL_H: u32 = 20;
/// Space between neighbouring units, pixels.
pub const GAP: u32 = 2;
/// Colour of the gaps around and between a block's units.
pub const GAP_COLOUR: [u8; 3] = [190, 190, 190];
/// Extra space between blocks, pixels.
pub const BLOCK_GAP: u32 = 8;
/// A unit's longer side is at least this many pixels (patches are drawn `scale` pixels wide,
/// `scale = ceil(MIN_UNIT / max(gh, gw))`).
pub const MIN_UNIT: u32 = 24;
/// The image is at least this wide, so the title fits.
pub const MIN_WIDTH: u32 = 400;

/// One block's units: each a row of the weight matrix, `gh · gw` values in patch order
/// (row-major over the patch grid, as the patch embedding flattens it).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightBlock {
    /// Label drawn above the block, e.g. `block 0: blocks.0.mlp_tokens.fc1.weight [64, 49]`.
    pub label: String,
    /// The units, each of `gh · gw` values.
    pub units: Vec<Vec<f32>>,
}

/// Where everything goes, in pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridLayout {
    /// Patch grid `[gh, gw]`.
    pub grid: [usize; 2],
    /// Pixels per patch side.
    pub scale: u32,
    /// Units per row of a block.
    pub cols: u32,
    /// Rows of units of each block.
    pub rows: Vec<u32>,
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
}

impl GridLayout {
    /// The layout of blocks holding `units[b]` units each, on a `grid` of patches. `cols` is
    /// `ceil(√max units)`.
    pub fn new(grid: [usize; 2], units: &[usize]) -> CliResult<GridLayout> {
        let [gh, gw] = grid;
        let most = units.iter().copied().max().unwrap_or(0);
        if gh == 0 || gw == 0 || most == 0 || gh.max(gw) > 4096 || most > 1 << 16 {
            return Err(CliError(format!(
                "cannot lay out {} blocks of up to {most} units on a {gh}×{gw} patch grid",
                units.len()
            )));
        }
        let side = gh.max(gw) as u32;
        let scale = MIN_UNIT.div_ceil(side).max(1);
        let cols = (most as f64).sqrt().ceil() as u32;
        let rows: Vec<u32> = units
            .iter()
            .map(|&n| (n as u32).div_ceil(cols).max(1))
            .collect();
        let (uw, uh) = (gw as u32 * scale, gh as u32 * scale);
        let width = (2 * MARGIN + cols * uw + (cols - 1) * GAP).max(MIN_WIDTH);
        let blocks_h: u32 = rows.iter().map(|&r| LABEL_H + r * uh + (r - 1) * GAP).sum();
        let height =
            2 * MARGIN + TITLE_H + blocks_h + (rows.len() as u32).saturating_sub(1) * BLOCK_GAP;
        Ok(GridLayout {
            grid,
            scale,
            cols,
            rows,
            width,
            height,
        })
    }

    /// Unit width and height in pixels.
    pub fn unit_size(&self) -> (u32, u32) {
        (
            self.grid[1] as u32 * self.scale,
            self.grid[0] as u32 * self.scale,
        )
    }

    /// Top of block `b`'s label band.
    pub fn block_top(&self, b: usize) -> u32 {
        let (_, uh) = self.unit_size();
        MARGIN
            + TITLE_H
            + self.rows[..b]
                .iter()
                .map(|&r| LABEL_H + r * uh + (r - 1) * GAP + BLOCK_GAP)
                .sum::<u32>()
    }

    /// Top-left pixel of unit `u` of block `b`.
    pub fn unit_origin(&self, b: usize, u: usize) -> (u32, u32) {
        let (uw, uh) = self.unit_size();
        let (r, c) = (u as u32 / self.cols, u as u32 % self.cols);
        (
            MARGIN + c * (uw + GAP),
            self.block_top(b) + LABEL_H + r * (uh + GAP),
        )
    }

    /// Top-left pixel of patch (`r`, `c`) of unit `u` of block `b` (the square is `scale`
    /// pixels a side).
    pub fn patch_origin(&self, b: usize, u: usize, r: usize, c: usize) -> (u32, u32) {
        let (x, y) = self.unit_origin(b, u);
        (x + c as u32 * self.scale, y + r as u32 * self.scale)
    }
}

/// Draws `blocks` on a `grid` patch grid under `title`; see the module documentation.
pub fn render_weight_grid(
    title: &str,
    grid: [usize; 2],
    blocks: &[WeightBlock],
) -> CliResult<(Canvas, GridLayout)> {
    let n = grid[0] * grid[1];
    for blk in blocks {
        if let Some((u, w)) = blk.units.iter().enumerate().find(|(_, w)| w.len() != n) {
            return Err(CliError(format!(
                "{}: unit {u} has {} weights, the {}×{} patch grid needs {n}",
                blk.label,
                w.len(),
                grid[0],
                grid[1]
            )));
        }
    }
    let counts: Vec<usize> = blocks.iter().map(|b| b.units.len()).collect();
    let layout = GridLayout::new(grid, &counts)?;
    let mut canvas = Canvas::new(layout.width, layout.height)?;
    let (uw, uh) = layout.unit_size();
    for (b, blk) in blocks.iter().enumerate() {
        // A grey backing, so the gaps between near-white units show.
        let (x, y) = layout.unit_origin(b, 0);
        let rows = layout.rows[b];
        let w = layout.cols * (uw + GAP) + GAP;
        canvas.fill_rect(x - GAP, y - GAP, w, rows * (uh + GAP) + GAP, GAP_COLOUR);
        for (u, w) in blk.units.iter().enumerate() {
            let max = w
                .iter()
                .filter(|v| v.is_finite())
                .fold(0f32, |m, v| m.max(v.abs()));
            for (i, &v) in w.iter().enumerate() {
                let norm = if max > 0.0 { v / max } else { 0.0 };
                let (x, y) = layout.patch_origin(b, u, i / grid[1], i % grid[1]);
                canvas.fill_rect(x, y, layout.scale, layout.scale, diverging(norm));
            }
        }
    }
    let tops: Vec<u32> = (0..blocks.len()).map(|b| layout.block_top(b)).collect();
    canvas.draw("weight grid", |area| {
        let text = |size: u32| ("sans-serif", size).into_font().color(&BLACK);
        area.draw_text(title, &text(15), (MARGIN as i32, MARGIN as i32))?;
        area.draw_text(
            "red > 0 > blue; each square is one unit scaled to its own max |w|",
            &text(11),
            (MARGIN as i32, (MARGIN + 21) as i32),
        )?;
        for (blk, top) in blocks.iter().zip(&tops) {
            area.draw_text(&blk.label, &text(12), (MARGIN as i32, *top as i32 + 3))?;
        }
        Ok(())
    })?;
    Ok((canvas, layout))
}

/// [`render_weight_grid`] written to `path` as a PNG (atomically).
pub fn plot_weight_grid(
    path: &Path,
    title: &str,
    grid: [usize; 2],
    blocks: &[WeightBlock],
) -> CliResult<GridLayout> {
    let (canvas, layout) = render_weight_grid(title, grid, blocks)?;
    canvas.save_png(path)?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::colormap::{NEGATIVE_EXTREME, NEUTRAL, POSITIVE_EXTREME};

    #[test]
    fn layout_sizes_by_hand() {
        // 7×7 grid: scale ceil(24/7) = 4, units 28 px; 64 units → 8 columns, 8 rows.
        let l = GridLayout::new([7, 7], &[64, 64]).unwrap();
        assert_eq!((l.scale, l.cols), (4, 8));
        // Width 10+8·28+7·2+10 = 258 → the 400 minimum.
        assert_eq!(l.width, 400);
        // 10 + 40 + 2·(20 + 8·28 + 7·2) + 8 + 10.
        assert_eq!(l.height, 10 + 40 + 2 * 258 + 8 + 10);
        assert_eq!(l.unit_origin(1, 9), (10 + 30, 10 + 40 + 258 + 8 + 20 + 30));
        let big = GridLayout::new([14, 14], &[384]).unwrap();
        assert_eq!((big.scale, big.cols), (2, 20));
        assert_eq!(big.width, 10 + 20 * 28 + 19 * 2 + 10);
        assert!(GridLayout::new([0, 7], &[3]).is_err());
        assert!(GridLayout::new([7, 7], &[]).is_err());
    }

    #[test]
    fn each_unit_is_scaled_to_its_own_max() {
        // Unit 0: +0.001 at patch (1, 2), the rest 0; unit 1: −5 at (0, 0) and +2.5 at (2, 2).
        let mut u0 = vec![0.0; 9];
        u0[5] = 0.001;
        let mut u1 = vec![0.0; 9];
        u1[0] = -5.0;
        u1[8] = 2.5;
        let blocks = [WeightBlock {
            label: "b".into(),
            units: vec![u0, u1, vec![0.0; 9]],
        }];
        let (c, l) = render_weight_grid("t", [3, 3], &blocks).unwrap();
        let px = |x: u32, y: u32| {
            let i = (y * c.width + x) as usize * 3;
            [c.rgb[i], c.rgb[i + 1], c.rgb[i + 2]]
        };
        let at = |u, r, cc| {
            let (x, y) = l.patch_origin(0, u, r, cc);
            // Every pixel of the patch square has the same colour.
            let p = px(x, y);
            assert_eq!(px(x + l.scale - 1, y + l.scale - 1), p);
            p
        };
        assert_eq!(at(0, 1, 2), POSITIVE_EXTREME);
        assert_eq!(at(0, 0, 0), NEUTRAL);
        assert_eq!(at(1, 0, 0), NEGATIVE_EXTREME);
        assert_eq!(at(1, 2, 2), diverging(0.5));
        assert_eq!(at(2, 1, 1), NEUTRAL);
        let bad = [WeightBlock {
            label: "blk".into(),
            units: vec![vec![0.0; 8]],
        }];
        let e = render_weight_grid("t", [3, 3], &bad).unwrap_err();
        assert!(
            e.0.contains("blk: unit 0 has 8 weights") && e.0.contains("needs 9"),
            "{e}"
        );
    }
}
