//! Softmax and log-softmax against naive f64 references, Jacobian-based
//! backward references and finite differences.
//!
//! Tolerances: the kernel computes `exp(x − max)` and the sums in f64 and
//! rounds once (log-softmax) or twice (softmax: the exponential, then the
//! quotient), so forward results are within 1.2e-7 relative of the f64
//! reference; we assert 1e-6 relative (+1e-7·max for log-softmax values near
//! 0). Backward results are one rounding from f64 of a difference of terms of
//! size |dy| (y ≤ 1), computed from the f32 `y`: asserted to 1e-5 relative +
//! 1e-6·max|dy|. Finite differences of the f64 reference (step 1e-5·max(1,|x|))
//! are accurate to ~1e-9 and get the same bound.

use super::*;
use crate::norm::test_util::*;
use crate::threads::set_num_threads;

/// Naive f64 softmax / log-softmax along `axis` via explicit index arithmetic.
fn softmax_ref(x: &[f64], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let k = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let idx = |r: usize| (o * k + r) * inner + i;
            let m = (0..k).map(|r| x[idx(r)]).fold(f64::NEG_INFINITY, f64::max);
            let lse = m + (0..k).map(|r| (x[idx(r)] - m).exp()).sum::<f64>().ln();
            for r in 0..k {
                y[idx(r)] = if log {
                    x[idx(r)] - lse
                } else {
                    (x[idx(r)] - lse).exp()
                };
            }
        }
    }
    y
}

/// Backward through the full Jacobian of each slice (O(K²)):
/// softmax `∂y_j/∂x_i = y_j(δ_ij − y_i)`, log-softmax `∂y_j/∂x_i = δ_ij − p_i`.
fn backward_ref(dy: &[f64], y: &[f64], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let k = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut dx = vec![0.0; y.len()];
    for o in 0..outer {
        for i in 0..inner {
            let idx = |r: usize| (o * k + r) * inner + i;
            for a in 0..k {
                let mut acc = 0.0;
                for b in 0..k {
                    let delta = if a == b { 1.0 } else { 0.0 };
                    acc += dy[idx(b)]
                        * if log {
                            delta - y[idx(a)].exp()
                        } else {
                            y[idx(b)] * (delta - y[idx(a)])
                        };
                }
                dx[idx(a)] = acc;
            }
        }
    }
    dx
}

const CASES: &[(&[usize], usize)] = &[
    (&[5], 0),
    (&[1], 0),
    (&[3, 7], 1),
    (&[3, 7], 0),
    (&[1, 1], 1),
    (&[2, 3, 4], 0),
    (&[2, 3, 4], 1),
    (&[2, 3, 4], 2),
    (&[4, 1, 3], 1), // K = 1: softmax 1, log-softmax 0
    (&[2, 5, 1, 3], 1),
    (&[2, 5, 1, 3], 3),
    (&[1, 9, 2, 1], 2),
    (&[1200, 3], 1),
    (&[3, 1100], 0),
];

fn layouts(t: &Tensor) -> [Tensor; 3] {
    [t.clone(), transposed_layout(t), strided_layout(t)]
}

#[test]
fn forward_matches_reference() {
    for (c, &(shape, axis)) in CASES.iter().enumerate() {
        let x = randn(shape, 0.5, 3.0, c as u64);
        let xf = f64s(&x);
        for log in [false, true] {
            let want = softmax_ref(&xf, shape, axis, log);
            for xl in layouts(&x) {
                let y = if log {
                    log_softmax(&xl, axis)
                } else {
                    softmax(&xl, axis)
                }
                .unwrap();
                let what = format!(
                    "{shape:?} axis {axis} log={log} contig={}",
                    xl.is_contiguous()
                );
                assert_eq!(y.shape(), shape);
                // Probabilities below f32's smallest normal (1.2e-38) lose relative precision.
                let atol = if log { 1e-7 } else { 1.2e-38 };
                assert_close(&what, &y.to_vec(), &want, 1e-6, atol);
            }
        }
    }
}

#[test]
fn backward_matches_reference_and_finite_differences() {
    for (c, &(shape, axis)) in CASES.iter().enumerate() {
        let x = randn(shape, -0.5, 2.0, 100 + c as u64);
        let dy = randn(shape, 0.0, 1.0, 200 + c as u64);
        let (xf, dyf) = (f64s(&x), f64s(&dy));
        let dy_scale = dyf.iter().fold(0f64, |m, v| m.max(v.abs()));
        for log in [false, true] {
            let (fwd, bwd): (fn(&Tensor, usize) -> Result<Tensor>, _) = if log {
                (
                    log_softmax,
                    log_softmax_backward as fn(&Tensor, &Tensor, usize) -> Result<Tensor>,
                )
            } else {
                (
                    softmax,
                    softmax_backward as fn(&Tensor, &Tensor, usize) -> Result<Tensor>,
                )
            };
            let y = fwd(&x, axis).unwrap();
            let want = backward_ref(&dyf, &softmax_ref(&xf, shape, axis, log), shape, axis, log);
            for (dyl, yl) in layouts(&dy).into_iter().zip(layouts(&y)) {
                let dx = bwd(&dyl, &yl, axis).unwrap();
                let what = format!(
                    "{shape:?} axis {axis} log={log} contig={}",
                    yl.is_contiguous()
                );
                assert_close_abs(&what, &dx.to_vec(), &want, 1e-5, 1e-6 * dy_scale);
            }
            if x.numel() > 200 {
                continue;
            }
            let fd = fd_grad(&xf, 1e-5, |x| dot(&dyf, &softmax_ref(x, shape, axis, log)));
            let dx = bwd(&dy, &y, axis).unwrap();
            assert_close_abs("fd", &dx.to_vec(), &fd, 1e-5, 1e-6 * dy_scale);
        }
    }
}

#[test]
fn large_logits_stay_finite_and_exact() {
    let x = randn(&[6, 50], 0.0, 1e4, 9);
    let xf = f64s(&x);
    let p = softmax(&x, 1).unwrap();
    let lp = log_softmax(&x, 1).unwrap();
    assert!(p.all_finite() && lp.all_finite());
    // Most probabilities underflow f32: relative bound above its smallest normal.
    let want = softmax_ref(&xf, &[6, 50], 1, false);
    assert_close_abs("softmax", &p.to_vec(), &want, 1e-6, 1.2e-38);
    // log-probabilities are ~−1e4: one rounding, 1e-7 relative to the largest.
    assert_close(
        "log_softmax",
        &lp.to_vec(),
        &softmax_ref(&xf, &[6, 50], 1, true),
        1e-6,
        1e-7,
    );
    for row in p.to_vec().chunks(50) {
        let s: f64 = row.iter().map(|&v| v as f64).sum();
        assert!((s - 1.0).abs() < 1e-6, "row sums to {s}");
    }
    // Shifting by a constant changes nothing (up to the shift's rounding).
    let shifted = Tensor::from_vec(x.to_vec().iter().map(|v| v + 1e4).collect(), &[6, 50]).unwrap();
    let ps = softmax(&shifted, 1).unwrap();
    assert!(ps.all_finite());
    // x + 1e4 (|x + 1e4| < 6.5e4) rounds each logit by ≤ ulp/2 = 3.9e-3, so a
    // probability moves by ≤ e^(2·3.9e-3) − 1 < 8e-3 relative.
    assert_close_abs("shifted", &ps.to_vec(), &want, 8e-3, 1e-6);
    let dy = randn(&[6, 50], 0.0, 1.0, 10);
    assert!(softmax_backward(&dy, &p, 1).unwrap().all_finite());
    assert!(log_softmax_backward(&dy, &lp, 1).unwrap().all_finite());
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    for (shape, axis) in [
        (&[300usize, 200][..], 1),
        (&[64, 50, 20], 1),
        (&[40, 1000], 0),
    ] {
        let x = randn(shape, 0.0, 2.0, 3);
        let dy = randn(shape, 0.0, 1.0, 4);
        let run = |n| {
            set_num_threads(n).unwrap();
            let y = softmax(&x, axis).unwrap();
            let ly = log_softmax(&x, axis).unwrap();
            let dx = softmax_backward(&dy, &y, axis).unwrap();
            let ldx = log_softmax_backward(&dy, &ly, axis).unwrap();
            [y, ly, dx, ldx].map(|t| bits(&t))
        };
        assert_eq!(run(1), run(2), "{shape:?} axis {axis}");
    }
}

#[test]
fn empty_axes_give_empty_outputs() {
    let x = Tensor::zeros(&[3, 0, 2]).unwrap();
    assert_eq!(softmax(&x, 1).unwrap().shape(), &[3, 0, 2]);
    assert_eq!(log_softmax_backward(&x, &x, 2).unwrap().shape(), &[3, 0, 2]);
}

#[test]
fn errors_name_the_op_and_what_was_expected() {
    let x = randn(&[2, 3], 0.0, 1.0, 1);
    let m = err_of(softmax(&x, 2), "softmax");
    assert!(m.contains("axis 2") && m.contains("rank 2"), "{m}");
    err_of(log_softmax(&Tensor::scalar(1.0), 0), "log_softmax");
    let bad = Tensor::zeros(&[3, 2]).unwrap();
    let m = err_of(softmax_backward(&bad, &x, 1), "softmax_backward");
    assert!(m.contains("[2, 3]") && m.contains("[3, 2]"), "{m}");
    err_of(log_softmax_backward(&bad, &x, 1), "log_softmax_backward");
    err_of(log_softmax_backward(&x, &x, 5), "log_softmax_backward");
}
