//! The 8 interleaved f64 partial sums behind [`super::shifted_sums`] and
//! [`super::centered_sums`]: lane `l` adds elements `l, l + 8, l + 16, …` in
//! order.
//!
//! The portable loops are what the lanes mean. Written that way the compiler
//! keeps them scalar even on AVX-512 (it vectorizes the lane pairs `a[l]`,
//! `b[l]` instead of the lanes), so on AVX-512 the same operations run eight
//! lanes to a register with intrinsics: one lane of the register per partial
//! sum, the same conversions, subtractions, products and additions in the
//! same order, hence the same bits (`norm`'s tests compare the paths).
//! Slices are whole blocks of 8 (the callers add their tails).

#[cfg(target_arch = "x86_64")]
use crate::elementwise::Isa;
#[cfg(target_arch = "x86_64")]
use crate::vectorized::current;

/// Lanes of `(Σ(x−k), Σ(x−k)²)`.
#[inline(always)]
pub(super) fn shifted(x: &[f32], k: f64) -> ([f64; 8], [f64; 8]) {
    debug_assert!(x.len().is_multiple_of(8));
    #[cfg(target_arch = "x86_64")]
    if current() == Isa::Avx512 {
        // SAFETY: `current()` reports AVX-512 only when the CPU has it.
        return unsafe { avx512::shifted(x, k) };
    }
    let (mut a, mut b) = ([0f64; 8], [0f64; 8]);
    for xb in x.chunks_exact(8) {
        for l in 0..8 {
            let d = xb[l] as f64 - k;
            a[l] += d;
            b[l] += d * d;
        }
    }
    (a, b)
}

/// Lanes of `(Σ g, Σ g·(x−m))`, `g = dy·w` (`dy` when `w` is `None`).
#[inline(always)]
pub(super) fn centered(dy: &[f32], x: &[f32], w: Option<&[f32]>, m: f64) -> ([f64; 8], [f64; 8]) {
    debug_assert!(dy.len().is_multiple_of(8) && dy.len() == x.len());
    #[cfg(target_arch = "x86_64")]
    if current() == Isa::Avx512 {
        // SAFETY: `current()` reports AVX-512 only when the CPU has it.
        return unsafe { avx512::centered(dy, x, w, m) };
    }
    let (mut a, mut b) = ([0f64; 8], [0f64; 8]);
    let blocks = dy.chunks_exact(8).zip(x.chunks_exact(8));
    match w {
        Some(w) => {
            for ((d8, x8), w8) in blocks.zip(w.chunks_exact(8)) {
                for l in 0..8 {
                    let g = d8[l] as f64 * w8[l] as f64;
                    a[l] += g;
                    b[l] += g * (x8[l] as f64 - m);
                }
            }
        }
        None => {
            for (d8, x8) in blocks {
                for l in 0..8 {
                    let g = d8[l] as f64;
                    a[l] += g;
                    b[l] += g * (x8[l] as f64 - m);
                }
            }
        }
    }
    (a, b)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512d, _mm256_loadu_ps, _mm512_add_pd, _mm512_cvtps_pd, _mm512_mul_pd, _mm512_set1_pd,
        _mm512_setzero_pd, _mm512_storeu_pd, _mm512_sub_pd,
    };

    /// Eight floats from `p` as f64 lanes.
    ///
    /// # Safety
    /// AVX-512F; `p` points at 8 readable floats.
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m512d {
        // SAFETY: the caller's contract.
        unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(p)) }
    }

    #[inline(always)]
    fn lanes(v: __m512d) -> [f64; 8] {
        let mut out = [0f64; 8];
        // SAFETY: `out` holds 8 f64 (unaligned store).
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), v) };
        out
    }

    /// As [`super::shifted`]'s portable loop.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn shifted(x: &[f32], k: f64) -> ([f64; 8], [f64; 8]) {
        let kv = _mm512_set1_pd(k);
        let (mut a, mut b) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for xb in x.chunks_exact(8) {
            // SAFETY: a block of 8 floats.
            let d = _mm512_sub_pd(unsafe { load8(xb.as_ptr()) }, kv);
            a = _mm512_add_pd(a, d);
            b = _mm512_add_pd(b, _mm512_mul_pd(d, d));
        }
        (lanes(a), lanes(b))
    }

    /// As [`super::centered`]'s portable loop.
    ///
    /// # Safety
    /// AVX-512F; `x` (and `w`) at least as long as `dy`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn centered(
        dy: &[f32],
        x: &[f32],
        w: Option<&[f32]>,
        m: f64,
    ) -> ([f64; 8], [f64; 8]) {
        let mv = _mm512_set1_pd(m);
        let (mut a, mut b) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        let blocks = dy.chunks_exact(8).zip(x.chunks_exact(8));
        match w {
            Some(w) => {
                for ((d8, x8), w8) in blocks.zip(w.chunks_exact(8)) {
                    // SAFETY: blocks of 8 floats.
                    let (d, xv, wv) =
                        unsafe { (load8(d8.as_ptr()), load8(x8.as_ptr()), load8(w8.as_ptr())) };
                    let g = _mm512_mul_pd(d, wv);
                    a = _mm512_add_pd(a, g);
                    b = _mm512_add_pd(b, _mm512_mul_pd(g, _mm512_sub_pd(xv, mv)));
                }
            }
            None => {
                for (d8, x8) in blocks {
                    // SAFETY: blocks of 8 floats.
                    let (g, xv) = unsafe { (load8(d8.as_ptr()), load8(x8.as_ptr())) };
                    a = _mm512_add_pd(a, g);
                    b = _mm512_add_pd(b, _mm512_mul_pd(g, _mm512_sub_pd(xv, mv)));
                }
            }
        }
        (lanes(a), lanes(b))
    }
}
