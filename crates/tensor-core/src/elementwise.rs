//! Elementwise operations: broadcasting binary ops, scalar ops, activations and
//! their backward kernels.
//!
//! Formulas follow PyTorch's CPU kernels: exact GELU is
//! `x·½·(1 + erf(x/√2))`, the tanh approximation
//! `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. Each element is computed
//! independently, so results never depend on the thread count.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn, Zip};
use rayon::prelude::*;

use crate::error::fmt_shape;
use crate::fill::filled;
use crate::shape_ops::broadcast_shapes;
use crate::{Result, Tensor, TensorError, fast_math, threads};

/// Elements per parallel task; below this, work stays on the calling thread.
const CHUNK: usize = 1 << 14;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF: f32 = 0.044_715;
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Instruction sets the elementwise loops are compiled for, detected once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Base,
}

pub(crate) fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Base
    })
}

/// The loops, generic over the per-element function so it inlines into each
/// instantiation; the `target_feature` copies let the compiler vectorize the
/// branch-free activations (see `fast_math`) with AVX-512 or AVX2.
macro_rules! loops {
    ($map:ident, $zip:ident $(, $feat:literal)?) => {
        $(#[target_feature(enable = $feat)])?
        #[allow(unused_unsafe)]
        unsafe fn $map<F: Fn(f32) -> f32>(o: &mut [MaybeUninit<f32>], x: &[f32], f: &F) {
            o.iter_mut().zip(x).for_each(|(o, &x)| *o = MaybeUninit::new(f(x)));
        }

        $(#[target_feature(enable = $feat)])?
        #[allow(unused_unsafe)]
        unsafe fn $zip<F: Fn(f32, f32) -> f32>(
            o: &mut [MaybeUninit<f32>],
            a: &[f32],
            b: &[f32],
            f: &F,
        ) {
            o.iter_mut()
                .zip(a.iter().zip(b))
                .for_each(|(o, (&a, &b))| *o = MaybeUninit::new(f(a, b)));
        }
    };
}

loops!(map_base, zip_base);
#[cfg(target_arch = "x86_64")]
loops!(
    map_avx512,
    zip_avx512,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"
);
#[cfg(target_arch = "x86_64")]
loops!(map_avx2, zip_avx2, "avx2,fma");

fn map_chunk<F: Fn(f32) -> f32>(o: &mut [MaybeUninit<f32>], x: &[f32], f: &F) {
    match isa() {
        // SAFETY: `isa()` detected AVX-512F and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { map_avx512(o, x, f) },
        // SAFETY: `isa()` detected AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { map_avx2(o, x, f) },
        // SAFETY: the base loop needs no CPU feature.
        _ => unsafe { map_base(o, x, f) },
    }
}

fn zip_chunk<F: Fn(f32, f32) -> f32>(o: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], f: &F) {
    match isa() {
        // SAFETY: `isa()` detected AVX-512F and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { zip_avx512(o, a, b, f) },
        // SAFETY: `isa()` detected AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { zip_avx2(o, a, b, f) },
        // SAFETY: the base loop needs no CPU feature.
        _ => unsafe { zip_base(o, a, b, f) },
    }
}

/// Applies `f` to each element of a contiguous slice into a new vector, in parallel chunks.
pub(crate) fn map_slice(xs: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let fill = |out: &mut [MaybeUninit<f32>]| {
        if xs.len() <= CHUNK {
            map_chunk(out, xs, &f);
        } else {
            threads::install(|| {
                out.par_chunks_mut(CHUNK)
                    .zip(xs.par_chunks(CHUNK))
                    .for_each(|(o, x)| map_chunk(o, x, &f))
            });
        }
    };
    // SAFETY: `out` is as long as `xs`; the loops write each slot from its
    // element (chunks of `out` and `xs` pair up one to one).
    unsafe { filled(xs.len(), fill) }
}

/// Combines two same-length slices elementwise into a new vector, in parallel chunks.
pub(crate) fn zip_slices(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        if len <= CHUNK {
            zip_chunk(out, a, b, &f);
        } else {
            threads::install(|| {
                out.par_chunks_mut(CHUNK)
                    .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                    .for_each(|(o, (a, b))| zip_chunk(o, a, b, &f))
            });
        }
    };
    // SAFETY: `out`, `a` and `b` all have `len` elements; the loops write
    // each slot (their chunks pair up one to one).
    unsafe { filled(len, fill) }
}

/// `f(full, row)` when `row` broadcasts against `full` as one row repeated
/// (its shape, leading 1s dropped, is a suffix of `full`'s, and it has no
/// more dimensions; both contiguous):
/// a bias, Affine's α and β, LayerScale's γ. Each of `full`'s rows is zipped
/// with the row through the vectorized loop, instead of the general
/// broadcast's per-element index arithmetic (and its zero-filled output).
/// `None` for other shapes.
fn zip_rows(
    full: &Tensor,
    row: &Tensor,
    f: &(impl Fn(f32, f32) -> f32 + Sync),
) -> Option<Vec<f32>> {
    let lead = row.shape().iter().take_while(|&&d| d == 1).count();
    let suffix = &row.shape()[lead..];
    // (Not longer than `full`'s shape either, so the result has its shape.)
    if suffix.is_empty() || row.ndim() > full.ndim() || !full.shape().ends_with(suffix) {
        return None;
    }
    let (a, r) = (full.as_slice()?, row.as_slice()?);
    let len = r.len();
    if len == 0 || a.is_empty() {
        return None;
    }
    let rows_per_task = (CHUNK / len).max(1);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let rows = |(o, x): (&mut [MaybeUninit<f32>], &[f32])| {
            for (o, x) in o.chunks_mut(len).zip(x.chunks(len)) {
                zip_chunk(o, x, r, f);
            }
        };
        if a.len() <= CHUNK {
            rows((out, a));
        } else {
            let task = rows_per_task * len;
            threads::install(|| {
                out.par_chunks_mut(task)
                    .zip(a.par_chunks(task))
                    .for_each(rows)
            });
        }
    };
    // SAFETY: `a` is a whole number of `len`-long rows (`full`'s shape ends
    // with the row's) and `out` as long as `a`: every row of `out` is written.
    Some(unsafe { filled(a.len(), fill) })
}

impl Tensor {
    /// Applies `f` to every element (any layout), returning a contiguous tensor.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        let x = self.contiguous();
        let xs = x.as_slice().expect("contiguous() is row-major");
        let v = map_slice(xs, f);
        Tensor::from_vec(v, self.shape()).expect("same shape as input")
    }

    /// Combines `self` and `other` elementwise after broadcasting both to a common shape.
    pub fn zip_with(
        &self,
        op: &'static str,
        other: &Tensor,
        f: impl Fn(f32, f32) -> f32 + Sync + Send,
    ) -> Result<Tensor> {
        if self.shape() == other.shape() {
            let (a, b) = (self.contiguous(), other.contiguous());
            let v = zip_slices(
                a.as_slice().expect("contiguous"),
                b.as_slice().expect("contiguous"),
                f,
            );
            return Tensor::from_vec(v, self.shape());
        }
        if let Some(v) = zip_rows(self, other, &f) {
            return Tensor::from_vec(v, self.shape());
        }
        if let Some(v) = zip_rows(other, self, &|x, y| f(y, x)) {
            return Tensor::from_vec(v, other.shape());
        }
        let shape = broadcast_shapes(op, self.shape(), other.shape())?;
        let a = self.broadcast_view(op, &shape)?;
        let b = other.broadcast_view(op, &shape)?;
        let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
        let zip = Zip::from(&mut out).and(&a).and(&b);
        if shape.iter().product::<usize>() > CHUNK {
            threads::install(|| zip.par_for_each(|o, &x, &y| *o = f(x, y)));
        } else {
            zip.for_each(|o, &x, &y| *o = f(x, y));
        }
        Ok(Tensor::from_array(out))
    }

    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with("add", other, |a, b| a + b)
    }

    /// `self − other` with broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with("sub", other, |a, b| a - b)
    }

    /// `self · other` (elementwise) with broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with("mul", other, |a, b| a * b)
    }

    /// `self / other` with broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with("div", other, |a, b| a / b)
    }

    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x + s)
    }

    /// `self − s`.
    pub fn sub_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x - s)
    }

    /// `self · s`.
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x * s)
    }

    /// `self / s`.
    pub fn div_scalar(&self, s: f32) -> Tensor {
        self.map(|x| x / s)
    }

    /// `selfᵖ` elementwise.
    pub fn powf(&self, p: f32) -> Tensor {
        self.map(|x| x.powf(p))
    }

    /// `−self`.
    pub fn neg(&self) -> Tensor {
        self.map(|x| -x)
    }

    /// `eˣ`.
    pub fn exp(&self) -> Tensor {
        self.map(f32::exp)
    }

    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        self.map(f32::ln)
    }

    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.map(f32::sqrt)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.map(f32::tanh)
    }

    /// The error function.
    pub fn erf(&self) -> Tensor {
        self.map(libm::erff)
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Tensor {
        self.map(relu)
    }

    /// `1 / (1 + e⁻ˣ)`.
    pub fn sigmoid(&self) -> Tensor {
        self.map(sigmoid)
    }

    /// Exact GELU, `x·Φ(x)` with the erf-based Φ (timm's default).
    pub fn gelu(&self) -> Tensor {
        self.map(gelu)
    }

    /// GELU with the tanh approximation (the official JAX Mixer).
    pub fn gelu_tanh(&self) -> Tensor {
        self.map(gelu_tanh)
    }
}

/// `max(x, 0)` (NaN propagates, as in PyTorch).
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x > 0.0 || x.is_nan() { x } else { 0.0 }
}

/// The logistic function.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_math::exp(-x))
}

/// Exact GELU of one value: `x·½·(1 + erf(x/√2))` with PyTorch's vectorized erf.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * 0.5 * (1.0 + fast_math::erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Tanh-approximate GELU of one value, `½·x·(1 + tanh(u))` written as
/// `x·σ(2u)` (the same function, without cancellation where tanh saturates).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x);
    x / (1.0 + fast_math::exp(-2.0 * u))
}

/// d gelu(x)/dx = Φ(x) + x·φ(x).
///
/// φ(x) = e^{−x²/2}/√(2π), and e^{−x²/2} is the Gaussian factor the A&S
/// `erf` formula computes anyway at `x/√2`: Φ and φ share one `exp`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let (erf, gauss) = fast_math::erf_and_gauss(x * std::f32::consts::FRAC_1_SQRT_2);
    let cdf = 0.5 * (1.0 + erf);
    cdf + x * (FRAC_1_SQRT_2PI * gauss)
}

/// `(gelu(x), gelu_grad(x))` with the `erf` computed once: the same bits as
/// the two functions (the GEMM epilogue stores both in training).
#[inline(always)]
pub(crate) fn gelu_with_grad(x: f32) -> (f32, f32) {
    let (erf, gauss) = fast_math::erf_and_gauss(x * std::f32::consts::FRAC_1_SQRT_2);
    let t = 1.0 + erf;
    (x * 0.5 * t, 0.5 * t + x * (FRAC_1_SQRT_2PI * gauss))
}

/// `(gelu_tanh(x), gelu_tanh_grad(x))` with `e^{−2u}` computed once: the
/// same bits as the two functions.
#[inline(always)]
pub(crate) fn gelu_tanh_with_grad(x: f32) -> (f32, f32) {
    let u = SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * x * x);
    let e = fast_math::exp(-2.0 * u);
    let s = 1.0 / (1.0 + e);
    (x / (1.0 + e), s + 2.0 * x * s * s * e * du)
}

/// d gelu_tanh(x)/dx = ½(1 + t) + ½x(1 − t²)·u′ with t = tanh(u); using
/// s = σ(2u) and e = e^{−2u}: 1 + t = 2s and 1 − t² = 4s²e, no cancellation.
#[inline(always)]
pub fn gelu_tanh_grad(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * x * x);
    let e = fast_math::exp(-2.0 * u);
    let s = 1.0 / (1.0 + e);
    s + 2.0 * x * s * s * e * du
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(TensorError::shape(
            op,
            format!(
                "gradient of the same shape as the input {}",
                fmt_shape(a.shape())
            ),
            fmt_shape(b.shape()),
        ));
    }
    Ok(())
}

/// Backward of an elementwise op: `dx = dy ⊙ f'(x)` where `grad(x, y_or_x)` gives f'.
fn backward(
    op: &'static str,
    saved: &Tensor,
    dy: &Tensor,
    grad: impl Fn(f32) -> f32 + Sync,
) -> Result<Tensor> {
    same_shape(op, saved, dy)?;
    saved.zip_with(op, dy, |s, g| g * grad(s))
}

/// GELU (exact) backward: `x` the input, `dy` the output gradient.
pub fn gelu_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward("gelu_backward", x, dy, gelu_grad)
}

/// Tanh-GELU backward: `x` the input, `dy` the output gradient.
pub fn gelu_tanh_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward("gelu_tanh_backward", x, dy, gelu_tanh_grad)
}

/// ReLU backward: `x` the input (gradient 0 at x ≤ 0, as PyTorch).
pub fn relu_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward("relu_backward", x, dy, |x| if x > 0.0 { 1.0 } else { 0.0 })
}

/// Sigmoid backward from its output `y`: `dy·y·(1−y)`.
pub fn sigmoid_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward("sigmoid_backward", y, dy, |y| y * (1.0 - y))
}

/// Tanh backward from its output `y`: `dy·(1−y²)`.
pub fn tanh_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    backward("tanh_backward", y, dy, |y| 1.0 - y * y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative tolerance for elementwise f32 results against f64 references:
    /// a handful of roundings (libm's erff is accurate to ~1 ulp) stay well under 1e-5.
    const RTOL: f64 = 1e-5;
    /// Absolute floor: GELU's `1 + erf(x/√2)` cancels for x ≪ 0 (as in PyTorch's
    /// formula, which we reproduce), leaving an error of ~1 ulp of 1.0 times |x|/2.
    const ATOL: f64 = 1e-6;

    type Reference = Box<dyn Fn(f64) -> f64>;

    fn close(got: f32, want: f64, tol: f64) -> bool {
        ((got as f64) - want).abs() <= tol * want.abs() + ATOL
    }

    fn erf64(x: f64) -> f64 {
        libm::erf(x)
    }

    #[test]
    fn activations_match_f64_references() {
        let x = Tensor::randn(&[3, 257], 0.0, 3.0, 11).unwrap();
        let xs = x.to_vec();
        let checks: [(Tensor, Reference); 7] = [
            (
                x.gelu(),
                Box::new(|v| 0.5 * v * (1.0 + erf64(v / 2f64.sqrt()))),
            ),
            (
                x.gelu_tanh(),
                Box::new(|v| {
                    0.5 * v
                        * (1.0
                            + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3)))
                                .tanh())
                }),
            ),
            (x.relu(), Box::new(|v| v.max(0.0))),
            (x.sigmoid(), Box::new(|v| 1.0 / (1.0 + (-v).exp()))),
            (x.tanh(), Box::new(f64::tanh)),
            (x.erf(), Box::new(erf64)),
            (x.exp(), Box::new(f64::exp)),
        ];
        for (i, (got, f)) in checks.iter().enumerate() {
            for (g, &v) in got.to_vec().iter().zip(&xs) {
                assert!(
                    close(*g, f(v as f64), RTOL),
                    "check {i}: x={v} got={g} want={}",
                    f(v as f64)
                );
            }
        }
        let pos = x.map(f32::abs).add_scalar(0.1);
        for (g, v) in pos.log().to_vec().iter().zip(pos.to_vec()) {
            assert!(close(*g, (v as f64).ln(), RTOL));
        }
        for (g, v) in pos.sqrt().to_vec().iter().zip(pos.to_vec()) {
            assert!(close(*g, (v as f64).sqrt(), RTOL));
        }
    }

    #[test]
    fn broadcast_binary_ops_on_strided_inputs() {
        // a: [4, 1, 5] from a transposed [5, 4] then unsqueezed; b: [3, 5].
        let base = Tensor::randn(&[5, 4], 0.0, 1.0, 1).unwrap();
        let a = base.transpose(0, 1).unwrap().unsqueeze(1).unwrap();
        let b = Tensor::randn(&[3, 5], 0.0, 1.0, 2).unwrap().add_scalar(3.0);
        for (name, got, f) in [
            (
                "add",
                a.add(&b).unwrap(),
                (|x, y| x + y) as fn(f64, f64) -> f64,
            ),
            ("sub", a.sub(&b).unwrap(), |x, y| x - y),
            ("mul", a.mul(&b).unwrap(), |x, y| x * y),
            ("div", a.div(&b).unwrap(), |x, y| x / y),
        ] {
            assert_eq!(got.shape(), &[4, 3, 5]);
            for i in 0..4 {
                for j in 0..3 {
                    for k in 0..5 {
                        let want = f(
                            base.get(&[k, i]).unwrap() as f64,
                            b.get(&[j, k]).unwrap() as f64,
                        );
                        assert!(close(got.get(&[i, j, k]).unwrap(), want, RTOL), "{name}");
                    }
                }
            }
        }
        let e = a
            .add(&Tensor::zeros(&[2, 4]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("add:") && e.contains("[4, 1, 5]") && e.contains("[2, 4]"),
            "{e}"
        );
    }

    /// A row vector (a bias, Affine's α) against a full tensor, on either
    /// side, small and over the parallel threshold: exactly the values of
    /// the same op on the row broadcast out in full.
    #[test]
    fn row_broadcasts_equal_full_broadcasts() {
        for (full, row) in [
            (vec![3, 4, 5], vec![5]),
            (vec![3, 4, 5], vec![1, 4, 5]),
            (vec![2, 3], vec![1, 1, 3]),
            (vec![40, 50, 128], vec![1, 1, 128]),
            (vec![70, 49, 128], vec![49, 128]),
        ] {
            let a = Tensor::randn(&full, 0.0, 1.0, 3).unwrap();
            let r = Tensor::randn(&row, 0.0, 1.0, 4).unwrap().add_scalar(2.0);
            let shape = broadcast_shapes("test", &full, &row).unwrap();
            let (af, rf) = (
                a.broadcast_to(&shape).unwrap().contiguous(),
                r.broadcast_to(&shape).unwrap().contiguous(),
            );
            assert_eq!(af.shape(), rf.shape());
            for threads in [1, 2] {
                crate::set_num_threads(threads).unwrap();
                assert_eq!(
                    a.sub(&r).unwrap(),
                    af.sub(&rf).unwrap(),
                    "{full:?} − {row:?}"
                );
                assert_eq!(
                    r.div(&a).unwrap(),
                    rf.div(&af).unwrap(),
                    "{row:?} / {full:?}"
                );
            }
        }
    }

    #[test]
    fn large_ops_are_thread_count_independent() {
        let a = Tensor::randn(&[300, 301], 0.0, 1.0, 5).unwrap();
        let b = Tensor::randn(&[301], 0.0, 1.0, 6).unwrap();
        crate::set_num_threads(1).unwrap();
        let one = (a.gelu(), a.mul(&b).unwrap());
        crate::set_num_threads(2).unwrap();
        let two = (a.gelu(), a.mul(&b).unwrap());
        assert_eq!(one, two);
        let s = a
            .mul_scalar(2.0)
            .add_scalar(1.0)
            .sub_scalar(0.5)
            .div_scalar(4.0)
            .neg();
        for (g, x) in s.to_vec().iter().zip(a.to_vec()) {
            assert!(close(*g, -((x as f64) * 2.0 + 0.5) / 4.0, RTOL));
        }
    }

    /// Central differences of f64 formulas: the analytic f32 gradients must agree
    /// to 1e-4 relative (f32 evaluation of the derivative formula plus h² truncation).
    #[test]
    fn backward_kernels_match_finite_differences() {
        let x = Tensor::randn(&[200], 0.0, 2.5, 9).unwrap();
        let dy = Tensor::randn(&[200], 0.0, 1.0, 10).unwrap();
        let fd = |f: &dyn Fn(f64) -> f64, v: f64| {
            let h = 1e-5;
            (f(v + h) - f(v - h)) / (2.0 * h)
        };
        let gelu64 = |v: f64| 0.5 * v * (1.0 + erf64(v / 2f64.sqrt()));
        let gelut64 = |v: f64| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
        };
        let sig64 = |v: f64| 1.0 / (1.0 + (-v).exp());
        let relu64 = |v: f64| v.max(0.0);
        let y_sig = x.sigmoid();
        let y_tanh = x.tanh();
        let cases: Vec<(Tensor, Reference)> = vec![
            (gelu_backward(&x, &dy).unwrap(), Box::new(gelu64)),
            (gelu_tanh_backward(&x, &dy).unwrap(), Box::new(gelut64)),
            (sigmoid_backward(&y_sig, &dy).unwrap(), Box::new(sig64)),
            (tanh_backward(&y_tanh, &dy).unwrap(), Box::new(f64::tanh)),
            (relu_backward(&x, &dy).unwrap(), Box::new(relu64)),
        ];
        for (i, (got, f)) in cases.iter().enumerate() {
            for ((g, &v), &d) in got.to_vec().iter().zip(&x.to_vec()).zip(&dy.to_vec()) {
                let want = d as f64 * fd(f.as_ref(), v as f64);
                assert!(
                    ((*g as f64) - want).abs() <= 1e-4 * want.abs().max(1e-2),
                    "case {i} x={v}: {g} vs {want}"
                );
            }
        }
        assert!(gelu_backward(&x, &Tensor::zeros(&[3]).unwrap()).is_err());
    }

    #[test]
    fn relu_propagates_nan_like_torch() {
        let t = Tensor::from_vec(vec![f32::NAN, -1.0, 2.0], &[3])
            .unwrap()
            .relu()
            .to_vec();
        assert!(t[0].is_nan() && t[1] == 0.0 && t[2] == 2.0);
    }
}

#[cfg(test)]
mod saturation_tests {
    use super::*;

    #[test]
    fn shared_forms_equal_the_separate_functions() {
        for i in -300_000..=300_000 {
            let x = i as f32 * 5e-5 * (1.0 + (i % 7) as f32 * 0.1);
            let (g, dg) = gelu_with_grad(x);
            assert_eq!(
                (g.to_bits(), dg.to_bits()),
                (gelu(x).to_bits(), gelu_grad(x).to_bits()),
                "{x}"
            );
            let (t, dt) = gelu_tanh_with_grad(x);
            assert_eq!(
                (t.to_bits(), dt.to_bits()),
                (gelu_tanh(x).to_bits(), gelu_tanh_grad(x).to_bits()),
                "{x}"
            );
        }
    }

    /// Far into the tails the activations and their gradients saturate to
    /// finite values (0 or the identity), never NaN: `exp` must not overflow
    /// to ∞ where a formula multiplies it by an underflowed 0.
    #[test]
    fn tails_are_finite() {
        for x in [
            -1e4f32, -200.0, -90.0, -44.5, -20.0, -10.76, -10.0, 10.0, 50.0, 1e4,
        ] {
            for (name, v) in [
                ("gelu", gelu(x)),
                ("gelu_tanh", gelu_tanh(x)),
                ("sigmoid", sigmoid(x)),
                ("gelu_grad", gelu_grad(x)),
                ("gelu_tanh_grad", gelu_tanh_grad(x)),
            ] {
                assert!(v.is_finite(), "{name}({x}) = {v}");
            }
            let (g, gt) = (gelu_grad(x), gelu_tanh_grad(x));
            let want = if x > 0.0 { 1.0 } else { 0.0 };
            assert!(
                (g - want).abs() < 1e-6 && (gt - want).abs() < 1e-6,
                "{x}: {g} {gt}"
            );
        }
    }
}
