//! The general convolution path: im2col over chunks of images, one batched GEMM
//! over groups per chunk, and col2im for the input gradient.
//!
//! A chunk of `m` images is unfolded into `col: [C·kh·kw, m·OH·OW]`: row
//! `(c, ki, kj)` holds, for every image and output pixel, the input value under
//! tap `(ki, kj)` (zero in the padding). Group `g` owns rows `g·Cg·kk..`. With
//! `K = m·OH·OW`, `Cgk = C/groups·kh·kw` and `og = O/groups`:
//!
//! - forward:   `Yᵀ_g [K, og]    = col_gᵀ [K, Cgk] · W_gᵀ [Cgk, og]` (one group), or
//!   `Y_g [og, K] = W_g · col_g` (several groups: the batch is the parallelism)
//! - dx:        `dcol_g [Cgk, K] = W_gᵀ [Cgk, og] · dY_g [og, K]`, then col2im
//! - dw:        `dW_gᵀ [Cgk, og] += col_g [Cgk, K] · dY_gᵀ [K, og]` (chunk by chunk)
//!
//! With one group the long dimension (`K` or `Cgk`) is the GEMM's M, which is what the
//! GEMM splits over threads. Transposes are strides, not copies; the only copies
//! are im2col itself, `dy` permuted to `[O, K]`, and scattering `Yᵀ` into NCHW.
//! Chunks are sized from the shapes alone and reduced in order, so results do
//! not depend on the thread count.

use rayon::prelude::*;

use super::{Geom, valid_range};
#[cfg(target_arch = "x86_64")]
use crate::elementwise::{Isa, isa};
use crate::gemm::{MatMut, MatRef, gemm_batched};
use crate::{Result, threads};

/// Elements of `col` per chunk (8 MiB of f32): big GEMMs, bounded memory.
#[cfg(not(test))]
const COL_BUDGET: usize = 1 << 21;
/// Small in tests so that multi-chunk accumulation is exercised on small shapes.
#[cfg(test)]
const COL_BUDGET: usize = 2048;

/// Images per chunk.
pub(super) fn chunk_images(g: &Geom) -> usize {
    let per_image = g.c * g.kk() * g.ohw();
    (COL_BUDGET / per_image.max(1)).clamp(1, g.n.max(1))
}

/// Fills `col: [C·kk, m·OHW]` from images `n0..n0+m` of `x: [N, C, H, W]`.
fn im2col(g: &Geom, x: &[f32], n0: usize, m: usize, col: &mut [f32]) {
    let (kk, hw, ohw) = (g.kk(), g.hw(), g.ohw());
    let k = m * ohw;
    #[cfg(target_arch = "x86_64")]
    let masked_rows = masked_rows_apply(g);
    threads::install(|| {
        col.par_chunks_mut(k).enumerate().for_each(|(r, row)| {
            let (c, ki, kj) = (r / kk, (r % kk) / g.kw, r % g.kw);
            let (oh_lo, oh_hi) = valid_range(g.oh, g.h, ki, g.ph, g.sh);
            let (ow_lo, ow_hi) = valid_range(g.ow, g.w, kj, g.pw, g.sw);
            for i in 0..m {
                let xp = &x[((n0 + i) * g.c + c) * hw..][..hw];
                let dst = &mut row[i * ohw..(i + 1) * ohw];
                #[cfg(target_arch = "x86_64")]
                if masked_rows {
                    // SAFETY: `masked_rows_apply` checked AVX-512F, stride 1
                    // and `OW ≤ 16`; `xp` is a whole input plane and `dst`
                    // `OH·OW` floats.
                    unsafe { gather_rows_avx512(g, xp, (ki, kj), dst) };
                    continue;
                }
                for (oh, d) in dst.chunks_exact_mut(g.ow).enumerate() {
                    if oh < oh_lo || oh >= oh_hi {
                        d.fill(0.0);
                        continue;
                    }
                    let xr = &xp[(oh * g.sh + ki - g.ph) * g.w..][..g.w];
                    d[..ow_lo].fill(0.0);
                    d[ow_hi..].fill(0.0);
                    if ow_lo == ow_hi {
                        continue;
                    }
                    let base = ow_lo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        d[ow_lo..ow_hi].copy_from_slice(&xr[base..base + ow_hi - ow_lo]);
                    } else {
                        for (j, v) in d[ow_lo..ow_hi].iter_mut().enumerate() {
                            *v = xr[base + j * g.sw];
                        }
                    }
                }
            }
        });
    });
}

/// Whether [`im2col`] fills each output row with one masked AVX-512 load and
/// store ([`gather_rows_avx512`]): for narrow outputs with unit column stride
/// (RepMLP's 7×7 partitions), where the general loop's `memcpy`/`memset`
/// calls for a few floats each cost more than the copying (`docs/perf.md`).
#[cfg(target_arch = "x86_64")]
fn masked_rows_apply(g: &Geom) -> bool {
    g.sw == 1 && g.ow <= 16 && matches!(isa(), Isa::Avx512)
}

/// One image's part of an im2col row for tap `(ki, kj)`, `OW ≤ 16`, column
/// stride 1: output row `oh` is input row `oh·sh + ki − ph` (zeros outside
/// the plane) shifted by `kj − pw`, the lanes outside `[ow_lo, ow_hi)` zero.
///
/// # Safety
/// AVX-512F is available; `g.sw == 1` and `g.ow ≤ 16`; `xp` is an input
/// plane (`H·W` floats) and `dst` holds `OH·OW` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_rows_avx512(g: &Geom, xp: &[f32], (ki, kj): (usize, usize), dst: &mut [f32]) {
    use crate::lanes::first;
    use std::arch::x86_64::*;
    let (lo, hi) = valid_range(g.ow, g.w, kj, g.pw, 1);
    let valid = first(hi) & !first(lo);
    let all = first(g.ow);
    for (oh, d) in dst.chunks_exact_mut(g.ow).enumerate() {
        // Rows outside the plane fail the test (those above it wrap to huge
        // indices).
        let ih = (oh * g.sh + ki).wrapping_sub(g.ph);
        let v = if ih < g.h && valid != 0 {
            // Lane `ow` reads input column `ow + kj − pw`, inside the row
            // for the enabled lanes `lo ≤ ow < hi`; the pointer may lie
            // before the row (`kj < pw`), but masked-off lanes are never
            // read and cannot fault.
            let p = xp[ih * g.w..].as_ptr().wrapping_add(kj).wrapping_sub(g.pw);
            // SAFETY: as above: only lanes `lo..hi` are read, all inside
            // input row `ih` of the plane.
            unsafe { _mm512_maskz_loadu_ps(valid, p) }
        } else {
            _mm512_setzero_ps()
        };
        // SAFETY: lanes `0..OW` of `d`, which holds `OW` floats.
        unsafe { _mm512_mask_storeu_ps(d.as_mut_ptr(), all, v) };
    }
}

/// Adds `dcol: [C·kk, m·OHW]` back onto the input planes: `dx: [m, C, H, W]` (overwritten).
fn col2im(g: &Geom, dcol: &[f32], m: usize, dx: &mut [f32]) {
    let (kk, hw, ohw) = (g.kk(), g.hw(), g.ohw());
    let k = m * ohw;
    threads::install(|| {
        dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
            let (i, c) = (plane / g.c, plane % g.c);
            dxp.fill(0.0);
            for ki in 0..g.kh {
                let (oh_lo, oh_hi) = valid_range(g.oh, g.h, ki, g.ph, g.sh);
                for kj in 0..g.kw {
                    let (ow_lo, ow_hi) = valid_range(g.ow, g.w, kj, g.pw, g.sw);
                    if ow_lo == ow_hi {
                        continue;
                    }
                    let src = &dcol[(c * kk + ki * g.kw + kj) * k + i * ohw..][..ohw];
                    for oh in oh_lo..oh_hi {
                        let dr = &mut dxp[(oh * g.sh + ki - g.ph) * g.w..][..g.w];
                        let sr = &src[oh * g.ow..][..g.ow];
                        let base = ow_lo * g.sw + kj - g.pw;
                        for ow in ow_lo..ow_hi {
                            dr[base + (ow - ow_lo) * g.sw] += sr[ow];
                        }
                    }
                }
            }
        });
    });
}

/// Copies images `n0..n0+m` of `dy: [N, O, OHW]` into `dyp: [O, m·OHW]`.
fn permute_dy(g: &Geom, dy: &[f32], n0: usize, m: usize, dyp: &mut [f32]) {
    let ohw = g.ohw();
    threads::install(|| {
        dyp.par_chunks_mut(m * ohw)
            .enumerate()
            .for_each(|(oc, row)| {
                for (i, d) in row.chunks_exact_mut(ohw).enumerate() {
                    d.copy_from_slice(&dy[((n0 + i) * g.o + oc) * ohw..][..ohw]);
                }
            });
    });
}

/// Forward. `x: [N, C, H, W]`, `w: [O, Cg, kh, kw]`, `bias: [O]` → `y: [N, O, OH, OW]`.
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    let (og, cgk, ohw, rows) = (g.og(), g.cg() * g.kk(), g.ohw(), g.c * g.kk());
    let nb = chunk_images(g);
    let mut col = vec![0.0f32; rows * nb * ohw];
    // Per chunk, Yᵀ as [groups, K, og] or (wide) Y as [groups, og, K] = [O, K].
    let wide = wide_forward(g);
    let mut yt = vec![0.0f32; nb * ohw * g.o];
    for n0 in (0..g.n).step_by(nb) {
        let m = nb.min(g.n - n0);
        let k = m * ohw;
        let col = &mut col[..rows * k];
        im2col(g, x, n0, m, col);
        if wide {
            let a = MatRef::row_major(w, og, cgk)?;
            let b = MatRef::row_major(col, cgk, k)?;
            let c = MatMut::row_major(&mut yt[..g.o * k], og, k)?;
            gemm_batched(g.g, 1.0, a, og * cgk, b, cgk * k, 0.0, c, og * k)?;
        } else {
            let a = MatRef::new(col, k, cgk, 1, k)?;
            let b = MatRef::new(w, cgk, og, 1, cgk)?;
            let c = MatMut::row_major(&mut yt[..g.o * k], k, og)?;
            gemm_batched(g.g, 1.0, a, cgk * k, b, og * cgk, 0.0, c, k * og)?;
        }
        // Scatter into NCHW planes (and add the bias).
        let yt = &yt[..g.o * k];
        let ychunk = &mut y[n0 * g.o * ohw..(n0 + m) * g.o * ohw];
        threads::install(|| {
            ychunk
                .par_chunks_mut(ohw)
                .enumerate()
                .for_each(|(plane, yp)| {
                    let (i, oc) = (plane / g.o, plane % g.o);
                    let b = bias.map_or(0.0, |b| b[oc]);
                    if wide {
                        let src = &yt[oc * k + i * ohw..][..ohw];
                        for (v, &s) in yp.iter_mut().zip(src) {
                            *v = s + b;
                        }
                    } else {
                        let (grp, o) = (oc / og, oc % og);
                        let src = &yt[grp * k * og + i * ohw * og + o..];
                        for (p, v) in yp.iter_mut().enumerate() {
                            *v = src[p * og] + b;
                        }
                    }
                });
        });
    }
    Ok(())
}

/// Whether the forward GEMM is `Y_g = W_g · col_g` (M = og) rather than
/// `Yᵀ_g = col_gᵀ · W_gᵀ` (M = K). The GEMM splits threads over M only, so the
/// transposed form is needed for one group with few output channels; with
/// several groups the batch already runs in parallel. Measured single-threaded
/// (shared 2-core machine): equal speed for the grouped local 5×5 case, 20%
/// faster for one group, where the transposed form wins back with 2 threads.
fn wide_forward(g: &Geom) -> bool {
    g.g > 1
}

/// Input gradient. `dy: [N, O, OH, OW]`, `w: [O, Cg, kh, kw]` → `dx: [N, C, H, W]`.
pub(super) fn backward_input(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<()> {
    let (og, cgk, ohw, rows) = (g.og(), g.cg() * g.kk(), g.ohw(), g.c * g.kk());
    let nb = chunk_images(g);
    let mut dcol = vec![0.0f32; rows * nb * ohw];
    let mut dyp = vec![0.0f32; g.o * nb * ohw];
    let chw = g.c * g.hw();
    for n0 in (0..g.n).step_by(nb) {
        let m = nb.min(g.n - n0);
        let k = m * ohw;
        let dyp = &mut dyp[..g.o * k];
        permute_dy(g, dy, n0, m, dyp);
        let a = MatRef::new(w, cgk, og, 1, cgk)?;
        let b = MatRef::row_major(dyp, og, k)?;
        let c = MatMut::row_major(&mut dcol[..rows * k], cgk, k)?;
        gemm_batched(g.g, 1.0, a, og * cgk, b, og * k, 0.0, c, cgk * k)?;
        col2im(g, &dcol[..rows * k], m, &mut dx[n0 * chw..(n0 + m) * chw]);
    }
    Ok(())
}

/// Weight gradient. `x: [N, C, H, W]`, `dy: [N, O, OH, OW]` → `dw: [O, Cg, kh, kw]`.
pub(super) fn backward_weight(g: &Geom, x: &[f32], dy: &[f32], dw: &mut [f32]) -> Result<()> {
    let (og, cgk, ohw, rows) = (g.og(), g.cg() * g.kk(), g.ohw(), g.c * g.kk());
    let nb = chunk_images(g);
    let mut col = vec![0.0f32; rows * nb * ohw];
    let mut dyp = vec![0.0f32; g.o * nb * ohw];
    // dWᵀ per group, accumulated over chunks: [groups, Cgk, og].
    let mut acc = vec![0.0f32; g.g * cgk * og];
    for n0 in (0..g.n).step_by(nb) {
        let m = nb.min(g.n - n0);
        let k = m * ohw;
        let col = &mut col[..rows * k];
        im2col(g, x, n0, m, col);
        let dyp = &mut dyp[..g.o * k];
        permute_dy(g, dy, n0, m, dyp);
        let a = MatRef::row_major(col, cgk, k)?;
        let b = MatRef::new(dyp, k, og, 1, k)?;
        let c = MatMut::row_major(&mut acc, cgk, og)?;
        let beta = if n0 == 0 { 0.0 } else { 1.0 };
        gemm_batched(g.g, 1.0, a, cgk * k, b, og * k, beta, c, cgk * og)?;
    }
    threads::install(|| {
        dw.par_chunks_mut(cgk).enumerate().for_each(|(oc, row)| {
            let (grp, o) = (oc / og, oc % og);
            let src = &acc[grp * cgk * og + o..];
            for (r, v) in row.iter_mut().enumerate() {
                *v = src[r * og];
            }
        });
    });
    Ok(())
}
