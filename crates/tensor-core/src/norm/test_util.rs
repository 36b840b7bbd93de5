//! Helpers shared by the norm and loss tests: random data, non-contiguous
//! copies, f64 comparison and central finite differences.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::{Rng, Tensor};

/// `N(offset, scale²)` samples of `shape`, rounded to f32.
pub fn randn(shape: &[usize], offset: f64, scale: f64, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(seed);
    let v = (0..n)
        .map(|_| (offset + scale * rng.normal()) as f32)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

/// The logical (row-major) values in f64.
pub fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

/// Same logical values stored with reversed strides (a transposed buffer):
/// non-contiguous whenever two dimensions exceed 1.
pub fn transposed_layout(t: &Tensor) -> Tensor {
    let a = t.view().reversed_axes().as_standard_layout().into_owned();
    let out = Tensor::from_array(a.reversed_axes());
    assert_eq!(out.to_vec(), t.to_vec());
    out
}

/// Same logical values as a view taking every second element of the last
/// axis of a larger NaN-filled buffer (so reading a gap poisons the result).
pub fn strided_layout(t: &Tensor) -> Tensor {
    let mut big_shape = t.shape().to_vec();
    let last = big_shape.len() - 1;
    big_shape[last] *= 2;
    let mut big = ArrayD::<f32>::from_elem(IxDyn(&big_shape), f32::NAN);
    big.slice_axis_mut(Axis(last), Slice::new(0, None, 2))
        .assign(&t.view());
    let mut arc = big.into_shared();
    arc.slice_axis_inplace(Axis(last), Slice::new(0, None, 2));
    let out = Tensor::from_arc(arc);
    assert!(!out.is_contiguous() || t.numel() <= 1);
    assert_eq!(out.to_vec(), t.to_vec());
    out
}

/// Asserts `|got − want| ≤ atol_frac·max|want| + rtol·|want|` elementwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol_frac: f64) {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert_close_abs(
        what,
        got,
        want,
        rtol,
        atol_frac * scale.max(f64::MIN_POSITIVE),
    );
}

/// Asserts `|got − want| ≤ atol + rtol·|want|` elementwise (for results that
/// are a cancellation of larger terms, where `atol` is set from those terms).
pub fn assert_close_abs(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w}, |err| {err:e} > {atol:e} + {rtol:e}·|want| (max|want| {scale:e})"
        );
    }
}

/// Central finite differences of `f` at `x`, step `h·max(1, |x_i|)`.
pub fn fd_grad(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let hi = h * x[i].abs().max(1.0);
            xp[i] = x[i] + hi;
            let fp = f(&xp);
            xp[i] = x[i] - hi;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (2.0 * hi)
        })
        .collect()
}

/// `Σ a_i·b_i` in f64.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Bit patterns, for exact comparisons.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().into_iter().map(f32::to_bits).collect()
}

/// The error message of an `Err`, asserting it names `op`.
pub fn err_of<T: std::fmt::Debug>(r: crate::Result<T>, op: &str) -> String {
    let msg = r.expect_err("expected an error").to_string();
    assert!(
        msg.starts_with(&format!("{op}:")),
        "message does not name {op}: {msg}"
    );
    msg
}

/// `max|a| · max|b| · max|c|` (1 for an empty or absent factor): the size of
/// the terms a normalisation backward cancels, `dy·w·rstd`.
pub fn term_scale(a: &[f64], b: Option<&[f64]>, c: &[f64]) -> f64 {
    let m = |v: &[f64]| v.iter().fold(0f64, |m, x| m.max(x.abs()));
    m(a) * b.map_or(1.0, m) * m(c)
}
