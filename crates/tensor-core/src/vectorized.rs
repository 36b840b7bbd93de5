//! [`vectorized`]: runs a closure compiled for the widest vector instruction
//! set this CPU has, for loops written in plain Rust (LayerNorm's and
//! BatchNorm's rows, the f64 column sums of `reduce`).
//!
//! The crate is built for the baseline x86-64 (SSE2), where those loops run
//! two f64 lanes at a time. Inlined into a `target_feature` function, the same
//! source vectorizes with AVX-512 (eight f64 lanes) or AVX2. The results are
//! the same bits on every path: Rust never contracts `a * b + c` into a fused
//! multiply-add nor reorders floating-point sums, so each path performs the
//! same IEEE operations in the same order; only the width of the registers
//! differs. (`fast_math` and the elementwise loops, which do use `mul_add`,
//! get the same bits from the library `fmaf` on the base path.)

use crate::elementwise::{Isa, isa};

/// `f()`, with `f` (and whatever it inlines) compiled for AVX-512 or AVX2
/// when the CPU has them. Put it around a whole loop, not inside one: each
/// call costs a cached feature lookup, and only code inlined into `f` gains.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    match current() {
        // SAFETY: `current()` reports AVX-512F and FMA only when `isa()`
        // detected them on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512(f) },
        // SAFETY: as above, for AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2(f) },
        _ => f(),
    }
}

/// The instruction set [`vectorized`] uses: [`isa()`], or the base one while
/// a test compares the paths. Loops written with intrinsics pick theirs
/// with it, so that comparison reaches them too.
#[inline(always)]
pub(crate) fn current() -> Isa {
    #[cfg(test)]
    if tests::BASE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return Isa::Base;
    }
    isa()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Makes [`super::vectorized`] run the base path, process-wide: other
    /// tests running meanwhile take it too, which is harmless, as both
    /// paths give the same bits (what [`on_both_paths`] checks).
    pub(crate) static BASE_ONLY: AtomicBool = AtomicBool::new(false);
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// `f()` on the vector path and on the base path (SSE2 on x86-64),
    /// asserting the two results are equal; returns the first.
    pub(crate) fn on_both_paths<R: PartialEq + std::fmt::Debug>(f: impl Fn() -> R) -> R {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let wide = f();
        BASE_ONLY.store(true, Ordering::Relaxed);
        let base = f();
        BASE_ONLY.store(false, Ordering::Relaxed);
        assert_eq!(wide, base, "vector and base paths differ");
        wide
    }
}
