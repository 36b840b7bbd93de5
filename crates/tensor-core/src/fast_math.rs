//! Branch-free f32 `exp` and `erf` that compilers vectorize, for the
//! activations (GELU, sigmoid, tanh-GELU) and their gradients.
//!
//! - [`exp`]: Cephes' range reduction `x = n·ln2 + r` and degree-6 polynomial
//!   (fused multiply-adds, as in the other functions here), `2ⁿ` built from
//!   the exponent bits; ≤ 2 ulp on [−87.3, 88.37]. Inputs are
//!   clamped to that range (so it saturates at ~1e-38 and ~2.4e38 instead of
//!   0 and ∞, and `n ≤ 127` keeps `2ⁿ` finite: an ∞ there made tanh-GELU's
//!   gradient `0·∞ = NaN` below x ≈ −10): use it only where the result is
//!   then bounded (activations);
//!   `Tensor::exp` keeps the libm `expf`.
//! - [`erf_and_gauss`]: `erf` and the factor `e^{−x²}` its formula computes
//!   (saturating at ~1e-38 like [`exp`]), which GELU's derivative reuses.
//! - [`erf`]: Abramowitz & Stegun 7.1.26 (1.5e-7 in exact arithmetic, ≤ 7e-7
//!   absolute evaluated in f32) — the formula and f32 evaluation, fused
//!   multiply-adds included, of PyTorch's vectorized CPU `erf` (and so of its
//!   exact GELU); only its `exp` (Sleef's there) differs.
//!
//! `f32::mul_add` is one instruction where the caller is compiled with FMA
//! (the vectorized kernels are) and a correctly rounded libm `fmaf` elsewhere:
//! the same bits either way.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding and subtracting it rounds to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// The largest argument: `x·log₂e` stays below 127.5, so `n ≤ 127`.
const MAX_X: f32 = 88.376_2;

/// `eˣ` for `x` in [−87.3, 88.37] (clamped outside).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_55, MAX_X);
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5.000_000_1e-1_f64 as f32);
    let y = (p * r).mul_add(r, r) + 1.0;
    // `t` lies in [2²³, 2²⁴), where consecutive floats are 1 apart, so the
    // integer `n` is the difference of the bit patterns: no float-to-int
    // conversion (whose saturating `as` LLVM does not vectorize), and the same
    // `n` as `n as i32`.
    let n = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    y * f32::from_bits((n.wrapping_add(127) << 23) as u32)
}

/// The error function (A&S 7.1.26).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_and_gauss(x).0
}

/// `(erf(x), e^{−x²})`: the Gaussian factor A&S 7.1.26 computes anyway, which
/// GELU's derivative needs too (its density term is `e^{−x²}` at `x/√2`), so
/// the pair costs one `exp`.
#[inline(always)]
pub fn erf_and_gauss(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let mut r = 1.061_405_4f32;
    r = r.mul_add(t, -1.453_152_1);
    r = r.mul_add(t, 1.421_413_7);
    r = r.mul_add(t, -0.284_496_74);
    r = r.mul_add(t, 0.254_829_6);
    let g = exp(-a * a);
    let y = (-g * t).mul_add(r, 1.0);
    (y.copysign(x), g)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The previous formulation (`n as i32`), to show the bit trick changes nothing.
    fn exp_cast(x: f32) -> f32 {
        let x = x.clamp(-87.336_55, MAX_X);
        let n = x.mul_add(LOG2E, ROUND) - ROUND;
        let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
        let mut p = 1.987_569_1e-4f32;
        p = p.mul_add(r, 1.398_2e-3);
        p = p.mul_add(r, 8.333_452e-3);
        p = p.mul_add(r, 4.166_579_6e-2);
        p = p.mul_add(r, 1.666_666_5e-1);
        p = p.mul_add(r, 5.000_000_1e-1_f64 as f32);
        let y = (p * r).mul_add(r, r) + 1.0;
        y * f32::from_bits(((n as i32 + 127) << 23) as u32)
    }

    #[test]
    fn exponent_from_bits_equals_the_cast() {
        let mut xs: Vec<f32> = (-2_000_000..=2_000_000).map(|i| i as f32 * 5e-5).collect();
        xs.extend([
            -1e30,
            -87.336_55,
            -87.4,
            MAX_X,
            88.722_83,
            88.8,
            1e30,
            f32::MIN,
            f32::MAX,
        ]);
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, 1e-40, -1e-40]);
        for x in xs {
            assert_eq!(exp(x).to_bits(), exp_cast(x).to_bits(), "exp({x})");
        }
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn accuracy_against_f64() {
        let mut worst = [0f64; 3];
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4 * 8.0; // [-16, 16]
            let e = exp(x.clamp(-80.0, 80.0)) as f64;
            let want = (x.clamp(-80.0, 80.0) as f64).exp();
            worst[0] = worst[0].max((e - want).abs() / want);
            worst[1] = worst[1].max((erf(x) as f64 - libm::erf(x as f64)).abs());
            let (e, g) = erf_and_gauss(x);
            assert_eq!(e.to_bits(), erf(x).to_bits(), "erf_and_gauss({x}).0");
            let want = (-(x as f64) * (x as f64)).exp();
            worst[2] = worst[2].max((g as f64 - want).abs() / want.max(1e-30));
        }
        // e^{−a·a} with `a·a` rounded to f32: ≤ 1 ulp of a·a (≤ 256·2⁻²⁴ at
        // |x| ≤ 16) on top of exp's error, relative to the exact e^{−x²}.
        assert!(worst[2] < 2e-5, "gauss relative error {}", worst[2]);
        assert!(worst[0] < 3e-7, "exp relative error {}", worst[0]);
        // A&S 7.1.26 in f32, as PyTorch evaluates it: ≤ 7e-7 absolute.
        assert!(worst[1] < 7e-7, "erf absolute error {}", worst[1]);
        assert!(erf(0.0).abs() < 2e-7); // as PyTorch's vectorized erf: 1.8e-7
        assert!(erf(-0.5) < 0.0 && (erf(-0.5) + erf(0.5)).abs() < 1e-7);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37 && exp(1000.0) > 1e38);
        assert!(exp(1000.0).is_finite() && exp(f32::INFINITY).is_finite());
        let top = (MAX_X as f64).exp();
        assert!((exp(MAX_X) as f64 - top).abs() < 3e-7 * top, "exp({MAX_X})");
    }
}
