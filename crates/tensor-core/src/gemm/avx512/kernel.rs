//! The AVX-512 microkernel: an `MR × NR` tile of C (`NR = 16·NV`) from packed
//! panels of A and B.
//!
//! Per step `p` of the k loop, `NV` vectors of the packed B row `p` are loaded
//! and each of the `MR` entries of the packed A column `p` is broadcast into an
//! FMA with them; the `MR·NV` accumulators live in zmm registers for the whole
//! k loop. Element `(i, j)` of the tile is therefore `Σ_p a[i,p]·b[p,j]` summed
//! in increasing `p` by one FMA chain, whatever the tile's position: this is
//! what makes results independent of how C is split over threads.
//!
//! Tile sizes, blocking and measured throughput: see the parent module.

use std::arch::x86_64::*;

/// A bias added to the tile as it is stored (the first k block's store).
#[derive(Clone, Copy)]
pub(super) enum TileBias {
    None,
    /// `b[j]` added to column `j < cols` of the tile.
    Col(*const f32),
    /// `b[i]` added to row `i < rows` of the tile.
    Row(*const f32),
}

/// Where a tile is written and how: `C = α·acc + β·C + bias` (β = 0: C not
/// read), every element rounded as `fma(β, c, α·acc) + b`.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    /// Element `(0, 0)` of the tile in C.
    pub c: *mut f32,
    /// Row and column strides of C, in elements.
    pub rs: usize,
    pub cs: usize,
    /// Valid rows (≤ MR) and columns (≤ NR) of this tile.
    pub rows: usize,
    pub cols: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: TileBias,
}

/// Computes one tile.
///
/// A is read at `a[i·ars + p]` when `DIRECT` (an unpacked row-major A, `i <
/// MR`) and at `a[p·MR + i]` otherwise (a packed panel; `ars` unused). B is
/// read at `b[p·brs + j]`, `j < NR`: a packed panel (`brs = NR`) or the rows
/// of a row-major B in place (`brs` its row stride).
///
/// # Safety
/// Those `MR × kc` elements of A must be readable; so must `b[p·brs + j]`
/// for `p < kc`, `j < NR`. For
/// `i < t.rows`, `j < t.cols`, `t.c + i·t.rs + j·t.cs` must be valid for
/// reads and writes and not aliased by anything else during the call; a
/// `t.bias` pointer must be readable for `t.cols` (`Col`) or `t.rows` (`Row`)
/// floats. The CPU must support AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn tile<const MR: usize, const NV: usize, const DIRECT: bool>(
    kc: usize,
    a: *const f32,
    ars: usize,
    (b, brs): (*const f32, usize),
    t: Tile,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if t.cs == 1 {
        for i in 0..MR.min(t.rows) {
            // Prefetching is a hint: it never faults, even outside the tile.
            let row = t.c.wrapping_add(i * t.rs) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64 * NV - 1));
        }
    }
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: `b` walks the panel: row `p` (< kc) of `NR` readable
            // floats, this is vector `v` (< NV). Unaligned loads: an
            // in-place B's rows need not be 64-byte aligned (packed ones are,
            // and cost the same through `loadu`).
            *x = unsafe { _mm512_loadu_ps(b.add(16 * v)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: `a` points at column `p` (< kc) of the panel; entry
            // `i < MR` of that column is readable by the caller's contract.
            let ai = _mm512_set1_ps(unsafe { *a.add(if DIRECT { i * ars } else { i }) });
            for (x, bx) in row.iter_mut().zip(bv) {
                *x = _mm512_fmadd_ps(ai, bx, *x);
            }
        }
        // SAFETY: one step past the last column/row at most (p = kc), a
        // one-past-the-end pointer of the panel, never dereferenced.
        unsafe {
            a = a.add(if DIRECT { 1 } else { MR });
            b = b.add(brs);
        }
    }
    if t.cs == 1 && t.rows == MR && t.cols == 16 * NV {
        // Full tile, unit column stride: straight-line code on the
        // accumulators in registers.
        let alpha = _mm512_set1_ps(t.alpha);
        let beta = _mm512_set1_ps(t.beta);
        for (i, row) in acc.iter().enumerate() {
            let rb = match t.bias {
                // SAFETY: row `i < MR = rows` of a row bias.
                TileBias::Row(b) => _mm512_set1_ps(unsafe { *b.add(i) }),
                _ => _mm512_setzero_ps(),
            };
            for (v, &x) in row.iter().enumerate() {
                let x = _mm512_mul_ps(alpha, x);
                // SAFETY: row `i < MR = rows`, columns `16v .. 16v + 16 ≤ NR = cols`
                // of C and of a column bias.
                unsafe {
                    let p = t.c.add(i * t.rs + 16 * v);
                    let y = if t.beta == 0.0 {
                        x
                    } else {
                        _mm512_fmadd_ps(beta, _mm512_loadu_ps(p), x)
                    };
                    let y = match t.bias {
                        TileBias::None => y,
                        TileBias::Col(b) => _mm512_add_ps(y, _mm512_loadu_ps(b.add(16 * v))),
                        TileBias::Row(_) => _mm512_add_ps(y, rb),
                    };
                    _mm512_storeu_ps(p, y);
                }
            }
        }
    } else {
        // SAFETY: the caller guarantees the tile's valid elements are accessible.
        unsafe { store_edge::<MR, NV>(acc, t) }
    }
}

/// Writes `α·acc + β·C + bias` (β = 0: C not read) into the valid part of
/// an edge tile or a tile of a C without unit column stride.
///
/// Like the full-tile path of [`tile`], every element is `fma(β, c, α·acc) +
/// b` (or without the terms that are absent), so the result does not depend
/// on C's strides or the tile's position.
///
/// # Safety
/// As for [`tile`].
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
unsafe fn store_edge<const MR: usize, const NV: usize>(acc: [[__m512; NV]; MR], t: Tile) {
    let alpha = _mm512_set1_ps(t.alpha);
    let beta = _mm512_set1_ps(t.beta);
    if t.cs == 1 {
        for (i, row) in acc.iter().enumerate().take(t.rows) {
            let rb = match t.bias {
                // SAFETY: row `i < rows` of a row bias.
                TileBias::Row(b) => _mm512_set1_ps(unsafe { *b.add(i) }),
                _ => _mm512_setzero_ps(),
            };
            for (v, &x) in row.iter().enumerate() {
                if 16 * v >= t.cols {
                    break;
                }
                let mask = crate::lanes::first(t.cols - 16 * v);
                let x = _mm512_mul_ps(alpha, x);
                // SAFETY: row `i < rows`, columns `16v .. 16v + 16` masked to
                // `< cols` (of C and of a column bias): masked-off lanes are
                // neither read nor written and cannot fault.
                unsafe {
                    let p = t.c.add(i * t.rs + 16 * v);
                    let y = if t.beta == 0.0 {
                        x
                    } else {
                        _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, p), x)
                    };
                    let y = match t.bias {
                        TileBias::None => y,
                        TileBias::Col(b) => {
                            _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, b.add(16 * v)))
                        }
                        TileBias::Row(_) => _mm512_add_ps(y, rb),
                    };
                    _mm512_mask_storeu_ps(p, mask, y);
                }
            }
        }
    } else {
        let mut tmp = [[[0f32; 16]; NV]; MR];
        for (dst, src) in tmp.iter_mut().zip(&acc) {
            for (d, &s) in dst.iter_mut().zip(src) {
                // SAFETY: `d` is 16 writable floats.
                unsafe { _mm512_storeu_ps(d.as_mut_ptr(), _mm512_mul_ps(alpha, s)) };
            }
        }
        for (i, row) in tmp.iter().enumerate().take(t.rows) {
            for j in 0..t.cols {
                let x = row[j / 16][j % 16];
                // SAFETY: `i < rows`, `j < cols`: a valid element of the tile and
                // of a bias.
                unsafe {
                    let p = t.c.add(i * t.rs + j * t.cs);
                    let y = if t.beta == 0.0 {
                        x
                    } else {
                        t.beta.mul_add(*p, x)
                    };
                    *p = match t.bias {
                        TileBias::None => y,
                        TileBias::Col(b) => y + *b.add(j),
                        TileBias::Row(b) => y + *b.add(i),
                    };
                }
            }
        }
    }
}
