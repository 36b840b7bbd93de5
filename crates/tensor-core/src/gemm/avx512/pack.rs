//! Packing of A and B blocks into the panel layouts the microkernel streams.
//!
//! Packing reads its source through arbitrary strides, which is how transposed
//! operands cost no copy; unit-stride rows or columns take fast paths. Partial
//! panels are zero-padded to full width, so the kernel always runs full tiles
//! (the padding only adds exact zeros to accumulators that are never stored).

use std::arch::x86_64::*;

/// A read-only strided operand: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(super) struct Src {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

impl Src {
    /// The operand shifted to start at element `(i, j)`.
    ///
    /// # Safety
    /// `(i, j)` must be inside the matrix (or one past it, never dereferenced).
    pub unsafe fn at(self, i: usize, j: usize) -> Src {
        Src {
            // SAFETY: in bounds of the matrix, as the caller promises.
            ptr: unsafe { self.ptr.add(i * self.rs + j * self.cs) },
            ..self
        }
    }
}

/// Packs the `mc × kc` block of A at `a` into `MR`-row panels:
/// panel `r` (rows `r·MR ..`) at `dst + r·MR·kc`, element `(i, p)` at `p·MR + i`.
///
/// # Safety
/// Elements `(i, p)`, `i < mc`, `p < kc` of `a` must be readable; `dst` must
/// be writable for `cap` floats (checked to cover `ceil(mc / MR)·MR·kc`).
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn pack_a<const MR: usize>(
    mc: usize,
    kc: usize,
    a: Src,
    dst: *mut f32,
    cap: usize,
) {
    assert!(
        mc.div_ceil(MR) * MR * kc <= cap,
        "gemm: packed A exceeds its buffer"
    );
    for r0 in (0..mc).step_by(MR) {
        let rows = MR.min(mc - r0);
        // SAFETY: row `r0 < mc` is inside A; the panel lies inside `dst`.
        let (src, out) = unsafe { (a.at(r0, 0), dst.add(r0 * kc)) };
        // SAFETY: `src` has `rows × kc` readable elements, `out` has room for
        // `kc·MR` floats (the caller's contract restricted to this panel).
        unsafe {
            if rows == MR && a.cs == 1 {
                pack_a_rows::<MR>(kc, src, out);
            } else if a.rs == 1 {
                pack_a_cols::<MR>(rows, kc, src, out);
            } else {
                pack_a_any::<MR>(rows, kc, src, out);
            }
        }
    }
}

/// A full panel of a row-major A: `MR ≤ 16` rows of `kc` contiguous floats,
/// transposed 16 columns at a time in registers.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pack_a_rows<const MR: usize>(kc: usize, src: Src, out: *mut f32) {
    if MR > 16 {
        // SAFETY: forwarded contract.
        return unsafe { pack_a_any::<MR>(MR, kc, src, out) };
    }
    let store = if MR >= 16 { 0xffff } else { (1u16 << MR) - 1 };
    for p0 in (0..kc).step_by(16) {
        let cnt = 16.min(kc - p0);
        let load = if cnt >= 16 { 0xffff } else { (1u16 << cnt) - 1 };
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, x) in r.iter_mut().enumerate().take(MR) {
            // SAFETY: row `i < MR`, columns `p0 .. p0 + cnt ≤ kc` (masked).
            *x = unsafe { _mm512_maskz_loadu_ps(load, src.ptr.add(i * src.rs + p0)) };
        }
        let cols = transpose16(r);
        for (e, x) in cols.iter().enumerate().take(cnt) {
            // SAFETY: column `p0 + e < kc`: lanes `< MR` go to
            // `(p0 + e)·MR .. + MR ≤ kc·MR`.
            unsafe { _mm512_mask_storeu_ps(out.add((p0 + e) * MR), store, *x) };
        }
    }
}

/// Transposes a 16×16 block held as 16 row vectors into 16 column vectors.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // Stage 1: interleave pairs of rows: t[2q] = (r[2q][e], r[2q+1][e]) for even
    // e of each 128-bit lane ... (unpack works within 128-bit lanes).
    let mut t = [_mm512_setzero_ps(); 16];
    for q in 0..8 {
        t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
    }
    // Stage 2: u[4g + d] holds rows 4g..4g+4 at element 4L + d of lane L.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(a, c);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(b, d);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
    }
    // Stages 3 and 4: gather the four row groups' 128-bit lanes per element.
    let mut out = [_mm512_setzero_ps(); 16];
    for d in 0..4 {
        let (g0, g1, g2, g3) = (u[d], u[4 + d], u[8 + d], u[12 + d]);
        let v0 = _mm512_shuffle_f32x4::<0x88>(g0, g1); // lanes 0, 2 of g0, g1
        let v1 = _mm512_shuffle_f32x4::<0x88>(g2, g3);
        let v2 = _mm512_shuffle_f32x4::<0xDD>(g0, g1); // lanes 1, 3
        let v3 = _mm512_shuffle_f32x4::<0xDD>(g2, g3);
        out[d] = _mm512_shuffle_f32x4::<0x88>(v0, v1); // element d
        out[8 + d] = _mm512_shuffle_f32x4::<0xDD>(v0, v1); // element 8 + d
        out[4 + d] = _mm512_shuffle_f32x4::<0x88>(v2, v3); // element 4 + d
        out[12 + d] = _mm512_shuffle_f32x4::<0xDD>(v2, v3); // element 12 + d
    }
    out
}

/// A panel of a column-major A (unit row stride): `kc` columns of `rows` contiguous floats.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pack_a_cols<const MR: usize>(rows: usize, kc: usize, src: Src, out: *mut f32) {
    if MR <= 16 {
        let mask = if rows >= 16 {
            0xffff
        } else {
            (1u16 << rows) - 1
        };
        let full = if MR >= 16 { 0xffff } else { (1u16 << MR) - 1 };
        for p in 0..kc {
            // SAFETY: lanes `< rows` read column `p` of the panel; lanes in
            // `rows .. MR` are zero and are written inside `out`'s `kc·MR`.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, src.ptr.add(p * src.cs));
                _mm512_mask_storeu_ps(out.add(p * MR), full, v);
            }
        }
    } else {
        // SAFETY: forwarded contract.
        unsafe { pack_a_any::<MR>(rows, kc, src, out) };
    }
}

/// Any strides; rows `rows .. MR` are zero.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pack_a_any<const MR: usize>(rows: usize, kc: usize, src: Src, out: *mut f32) {
    for p in 0..kc {
        for i in 0..MR {
            // SAFETY: `(i, p)` is read only for `i < rows`; the write is at
            // `p·MR + i < kc·MR`.
            unsafe {
                *out.add(p * MR + i) = if i < rows {
                    *src.ptr.add(i * src.rs + p * src.cs)
                } else {
                    0.0
                };
            }
        }
    }
}

/// Packs the `kc × nc` block of B at `b` into `NR`-column panels (`NR = 16·NV`):
/// panel `q` (columns `q·NR ..`) at `dst + q·NR·kc`, element `(p, j)` at
/// `p·NR + j`, except that a last panel of at most 16 columns has `p·16 + j`.
///
/// # Safety
/// Elements `(p, j)`, `p < kc`, `j < nc` of `b` must be readable; `dst` must
/// be 64-byte aligned and writable for `cap` floats (checked to cover
/// `ceil(nc / NR)·NR·kc`).
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn pack_b<const NV: usize>(
    kc: usize,
    nc: usize,
    b: Src,
    dst: *mut f32,
    cap: usize,
) {
    let nr = 16 * NV;
    assert!(
        nc.div_ceil(nr) * nr * kc <= cap,
        "gemm: packed B exceeds its buffer"
    );
    for c0 in (0..nc).step_by(nr) {
        let cols = nr.min(nc - c0);
        // SAFETY: column `c0 < nc` is inside B; the panel lies inside `dst`.
        let (src, out) = unsafe { (b.at(0, c0), dst.add(c0 * kc)) };
        // SAFETY: `src` has `kc × cols` readable elements, `out` has room for
        // `kc·NR` floats, 64-byte aligned since `c0·kc` is a multiple of 16.
        // A panel of at most 16 columns is packed 16 wide (the kernel's
        // narrow edge variant).
        unsafe {
            match (b.cs == 1, b.rs == 1, cols <= 16) {
                (true, _, true) => pack_b_rows::<1>(cols, kc, src, out),
                (true, _, false) => pack_b_rows::<NV>(cols, kc, src, out),
                (false, true, true) => pack_b_cols::<1>(cols, kc, src, out),
                (false, true, false) => pack_b_cols::<NV>(cols, kc, src, out),
                (false, false, true) => pack_b_any::<1>(cols, kc, src, out),
                (false, false, false) => pack_b_any::<NV>(cols, kc, src, out),
            }
        }
    }
}

/// A panel of a row-major B: `kc` rows of `cols` contiguous floats.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pack_b_rows<const NV: usize>(cols: usize, kc: usize, src: Src, out: *mut f32) {
    for p in 0..kc {
        for v in 0..NV {
            let n = cols.saturating_sub(16 * v);
            let mask = crate::lanes::first(n);
            // SAFETY: lanes `< cols - 16v` read row `p`, columns `< cols`;
            // the aligned store is inside `out`'s `kc·NR` floats.
            unsafe {
                let x = _mm512_maskz_loadu_ps(mask, src.ptr.add(p * src.rs + 16 * v));
                _mm512_store_ps(out.add(p * 16 * NV + 16 * v), x);
            }
        }
    }
}

/// A panel of a column-major B (unit row stride, i.e. a transposed row-major
/// matrix): `cols` columns of `kc` contiguous floats, transposed 16×16 at a
/// time in registers; columns `cols .. NR` are zero.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pack_b_cols<const NV: usize>(cols: usize, kc: usize, src: Src, out: *mut f32) {
    for v in 0..NV {
        let group = cols.saturating_sub(16 * v).min(16);
        for p0 in (0..kc).step_by(16) {
            let cnt = 16.min(kc - p0);
            let load = if cnt >= 16 { 0xffff } else { (1u16 << cnt) - 1 };
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, x) in r.iter_mut().enumerate().take(group) {
                // SAFETY: column `16v + j < cols`, rows `p0 .. p0 + cnt ≤ kc` (masked).
                *x =
                    unsafe { _mm512_maskz_loadu_ps(load, src.ptr.add((16 * v + j) * src.cs + p0)) };
            }
            let rows = transpose16(r);
            for (e, x) in rows.iter().enumerate().take(cnt) {
                // SAFETY: row `p0 + e < kc`, vector `v < NV`: inside the
                // panel's `kc·NR` floats, 64-byte aligned.
                unsafe { _mm512_store_ps(out.add((p0 + e) * 16 * NV + 16 * v), *x) };
            }
        }
    }
}

/// Any strides; columns `cols .. NR` are zero.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pack_b_any<const NV: usize>(cols: usize, kc: usize, src: Src, out: *mut f32) {
    let nr = 16 * NV;
    for p in 0..kc {
        for j in 0..nr {
            // SAFETY: `(p, j)` is read only for `j < cols`; the write is at
            // `p·NR + j < kc·NR`.
            unsafe {
                *out.add(p * nr + j) = if j < cols {
                    *src.ptr.add(p * src.rs + j * src.cs)
                } else {
                    0.0
                };
            }
        }
    }
}
