//! Plots, drawn with plotters into an RGB buffer and written as PNG atomically (temporary
//! sibling file, then rename): training curves, confusion matrices and token-mixing weight
//! grids. Text uses the DejaVu Sans font embedded in the binary (`assets/`), so no system font
//! is needed.

pub mod canvas;
pub mod colormap;
pub mod confusion;
pub mod curves;
pub mod weights;

pub use canvas::{Canvas, write_atomic};
pub use confusion::{plot_confusion, render_confusion};
pub use curves::{plot_curves, render_curves};
pub use weights::{GridLayout, WeightBlock, plot_weight_grid, render_weight_grid};
