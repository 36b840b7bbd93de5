//! 1×1 convolutions without padding: plain GEMMs, no im2col.
//!
//! - Point-wise (stride 1): each image's plane is already a matrix,
//!   `Y_n,g [og, HW] = W_g [og, Cg] · X_n,g [Cg, HW]`, batched over images with the
//!   weight shared (batch stride 0).
//! - Grouped FC (1×1 input, RepMLP's FC3): `Y_g [N, og] = X_g [N, Cg] · W_gᵀ [Cg, og]`,
//!   one GEMM per group, batched over groups. Group `g`'s columns of `x: [N, C]`
//!   are a strided matrix (row stride C), so nothing is copied on the way in; the
//!   per-group results are interleaved back into `[N, O]` (a copy of the output,
//!   tiny next to the `2·N·O·Cg` flops). The weight gradient lands directly in
//!   `[O, Cg]` layout.

use rayon::prelude::*;

use super::{Geom, add_bias};
use crate::gemm::{MatMut, MatRef, gemm_batched};
use crate::{Result, threads};

/// Point-wise forward. `x: [N, C, H, W]`, `w: [O, Cg, 1, 1]` → `y: [N, O, H, W]`.
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    let (cg, og, hw) = (g.cg(), g.og(), g.hw());
    for grp in 0..g.g {
        let a = MatRef::row_major(&w[grp * og * cg..], og, cg)?;
        let b = MatRef::row_major(&x[grp * cg * hw..], cg, hw)?;
        let c = MatMut::row_major(&mut y[grp * og * hw..], og, hw)?;
        gemm_batched(g.n, 1.0, a, 0, b, g.c * hw, 0.0, c, g.o * hw)?;
    }
    if let Some(b) = bias {
        add_bias(y, b, hw);
    }
    Ok(())
}

/// Point-wise input gradient: `dX_n,g = W_gᵀ · dY_n,g`.
/// `dy: [N, O, H, W]`, `w: [O, Cg, 1, 1]` → `dx: [N, C, H, W]`.
pub(super) fn backward_input(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<()> {
    let (cg, og, hw) = (g.cg(), g.og(), g.hw());
    for grp in 0..g.g {
        let a = MatRef::row_major(&w[grp * og * cg..], og, cg)?.t();
        let b = MatRef::row_major(&dy[grp * og * hw..], og, hw)?;
        let c = MatMut::row_major(&mut dx[grp * cg * hw..], cg, hw)?;
        gemm_batched(g.n, 1.0, a, 0, b, g.o * hw, 0.0, c, g.c * hw)?;
    }
    Ok(())
}

/// Interleaves `src: [groups, N, per]` into `dst: [N, groups·per]`.
fn interleave(src: &[f32], groups: usize, per: usize, dst: &mut [f32]) {
    let n = dst.len() / (groups * per);
    threads::install(|| {
        dst.par_chunks_mut(groups * per)
            .enumerate()
            .for_each(|(i, row)| {
                for (grp, d) in row.chunks_exact_mut(per).enumerate() {
                    d.copy_from_slice(&src[(grp * n + i) * per..][..per]);
                }
            });
    });
}

/// Grouped-FC forward. `x: [N, C, 1, 1]`, `w: [O, Cg, 1, 1]` → `y: [N, O, 1, 1]`.
pub(super) fn fc_forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    let (cg, og) = (g.cg(), g.og());
    let a = MatRef::new(x, g.n, cg, g.c, 1)?;
    let b = MatRef::row_major(w, og, cg)?.t();
    if g.g == 1 {
        gemm_batched(1, 1.0, a, 0, b, 0, 0.0, MatMut::row_major(y, g.n, og)?, 0)?;
    } else {
        let mut yg = vec![0.0f32; g.n * g.o];
        let c = MatMut::row_major(&mut yg, g.n, og)?;
        gemm_batched(g.g, 1.0, a, cg, b, og * cg, 0.0, c, g.n * og)?;
        interleave(&yg, g.g, og, y);
    }
    if let Some(b) = bias {
        add_bias(y, b, 1);
    }
    Ok(())
}

/// Grouped-FC input gradient: `dX_g [N, Cg] = dY_g [N, og] · W_g [og, Cg]`.
pub(super) fn fc_backward_input(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<()> {
    let (cg, og) = (g.cg(), g.og());
    let a = MatRef::new(dy, g.n, og, g.o, 1)?;
    let b = MatRef::row_major(w, og, cg)?;
    if g.g == 1 {
        gemm_batched(1, 1.0, a, 0, b, 0, 0.0, MatMut::row_major(dx, g.n, cg)?, 0)?;
    } else {
        let mut dxg = vec![0.0f32; g.n * g.c];
        let c = MatMut::row_major(&mut dxg, g.n, cg)?;
        gemm_batched(g.g, 1.0, a, og, b, og * cg, 0.0, c, g.n * cg)?;
        interleave(&dxg, g.g, cg, dx);
    }
    Ok(())
}

/// Grouped-FC weight gradient: `dW_g [og, Cg] = dY_gᵀ [og, N] · X_g [N, Cg]`.
pub(super) fn fc_backward_weight(g: &Geom, x: &[f32], dy: &[f32], dw: &mut [f32]) -> Result<()> {
    let (cg, og) = (g.cg(), g.og());
    let a = MatRef::new(dy, og, g.n, 1, g.o)?;
    let b = MatRef::new(x, g.n, cg, g.c, 1)?;
    let c = MatMut::row_major(dw, og, cg)?;
    gemm_batched(g.g, 1.0, a, og, b, cg, 0.0, c, og * cg)
}
