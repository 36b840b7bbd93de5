//! Gamma and Beta samples from a seeded [`Rng`], for the mixing coefficient of mixup/cutmix.
//!
//! Gamma uses Marsaglia & Tsang's squeeze method ("A simple method for generating gamma
//! variables", ACM TOMS 2000) for shape ≥ 1 and the boost `Gamma(a) = Gamma(a + 1)·U^{1/a}` below
//! 1, carried out in log space so that tiny shapes (mixup's α = 0.2 gives `U^5`) never
//! underflow to 0/0. Beta is `X / (X + Y)` with `X ~ Gamma(a)`, `Y ~ Gamma(b)`.

use crate::tensor_core::Rng;

/// `ln X` for `X ~ Gamma(shape, 1)`; `shape` must be positive and finite (else NaN).
pub fn ln_gamma_sample(rng: &mut Rng, shape: f64) -> f64 {
    if !(shape > 0.0 && shape.is_finite()) {
        return f64::NAN;
    }
    if shape < 1.0 {
        // Gamma(a) = Gamma(a + 1) · U^(1/a); U = 0 is redrawn (ln 0 = −∞).
        let g = ln_gamma_sample(rng, shape + 1.0);
        loop {
            let u = rng.next_f64();
            if u > 0.0 {
                return g + u.ln() / shape;
            }
        }
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.next_f64();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || (u > 0.0 && u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln())) {
            return d.ln() + v.ln();
        }
    }
}

/// A sample of `Gamma(shape, 1)`; `shape` must be positive and finite (else NaN).
pub fn gamma_sample(rng: &mut Rng, shape: f64) -> f64 {
    ln_gamma_sample(rng, shape).exp()
}

/// A sample of `Beta(a, b)` in `[0, 1]`; `a` and `b` must be positive and finite (else NaN).
/// Draws `Gamma(a)` then `Gamma(b)`.
pub fn beta_sample(rng: &mut Rng, a: f64, b: f64) -> f64 {
    let lx = ln_gamma_sample(rng, a);
    let ly = ln_gamma_sample(rng, b);
    // X / (X + Y) = 1 / (1 + exp(ln Y − ln X)), finite for any finite logs.
    1.0 / (1.0 + (ly - lx).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (
            m,
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0),
        )
    }

    /// Mean and variance of Gamma(k) are k and k; of Beta(a, b), a/(a+b) and
    /// ab/((a+b)²(a+b+1)). With n = 200 000 samples the standard error of the mean is
    /// sd/√n and that of the variance about var·√(2/n)·(1 + kurtosis/2)^½; the tolerances are
    /// ≥ 4 standard errors.
    #[test]
    fn gamma_moments() {
        let mut rng = Rng::new(11);
        let n = 200_000;
        for k in [0.2, 0.5, 1.0, 2.5, 10.0] {
            let xs: Vec<f64> = (0..n).map(|_| gamma_sample(&mut rng, k)).collect();
            assert!(xs.iter().all(|x| *x >= 0.0 && x.is_finite()));
            let (m, v) = moments(&xs);
            let se_m = (k / n as f64).sqrt();
            assert!((m - k).abs() < 5.0 * se_m, "Gamma({k}) mean {m}");
            // Excess kurtosis of Gamma(k) is 6/k.
            let se_v = k * (2.0 / n as f64 * (1.0 + 3.0 / k)).sqrt();
            assert!((v - k).abs() < 5.0 * se_v, "Gamma({k}) var {v}");
        }
    }

    #[test]
    fn beta_moments_and_symmetry() {
        let mut rng = Rng::new(12);
        let n = 200_000;
        for (a, b) in [(0.2, 0.2), (0.8, 0.8), (1.0, 1.0), (2.0, 5.0), (0.1, 3.0)] {
            let xs: Vec<f64> = (0..n).map(|_| beta_sample(&mut rng, a, b)).collect();
            assert!(
                xs.iter().all(|x| (0.0..=1.0).contains(x)),
                "Beta({a},{b}) range"
            );
            let (m, v) = moments(&xs);
            let (em, ev) = (a / (a + b), a * b / ((a + b).powi(2) * (a + b + 1.0)));
            // Var ≤ 1/4 and the 4th central moment ≤ 1/16 on [0, 1].
            assert!(
                (m - em).abs() < 5.0 * (ev / n as f64).sqrt(),
                "Beta({a},{b}) mean {m} vs {em}"
            );
            assert!(
                (v - ev).abs() < 5.0 * (0.0625 / n as f64).sqrt(),
                "Beta({a},{b}) var {v} vs {ev}"
            );
            if a == b {
                // Symmetric: as many samples below ½ as above (sd of the fraction 0.0011).
                let below = xs.iter().filter(|x| **x < 0.5).count() as f64 / n as f64;
                assert!((below - 0.5).abs() < 0.006, "Beta({a},{a}) P(x<½) {below}");
            }
        }
        // Beta(1, 1) is uniform: the fraction in each tenth is 0.1 (sd 0.00067).
        let xs: Vec<f64> = (0..n).map(|_| beta_sample(&mut rng, 1.0, 1.0)).collect();
        for d in 0..10 {
            let f = xs.iter().filter(|x| (**x * 10.0) as usize == d).count() as f64 / n as f64;
            assert!((f - 0.1).abs() < 0.004, "decile {d}: {f}");
        }
    }

    #[test]
    fn tiny_shapes_stay_finite_and_bad_shapes_are_nan() {
        let mut rng = Rng::new(13);
        for _ in 0..10_000 {
            let x = beta_sample(&mut rng, 0.01, 0.01);
            assert!((0.0..=1.0).contains(&x));
        }
        assert!(gamma_sample(&mut rng, 0.0).is_nan());
        assert!(gamma_sample(&mut rng, -1.0).is_nan());
        assert!(gamma_sample(&mut rng, f64::INFINITY).is_nan());
        let (mut r1, mut r2) = (Rng::new(4), Rng::new(4));
        assert_eq!(
            beta_sample(&mut r1, 0.8, 0.8),
            beta_sample(&mut r2, 0.8, 0.8)
        );
    }
}
