//! Pooling kernels against naive f64 loops and central finite differences.
//!
//! Tolerances: max pooling selects values, so `y` and the indices must match
//! exactly, and its `dx` (sums of a few `dy` values) to 1e-6. Average pooling
//! sums at most `kh·kw ≤ 25` cells (adaptive: at most 196) in f32 and divides; the
//! f32 rounding error is below `L·2⁻²⁴ ≈ 1.2e-5` of the summed magnitudes, so we
//! check `|got − want| ≤ 1e-5 · max(1, max|want|)` (normwise, as cancelling
//! sums make elementwise relative errors meaningless). Finite differences are
//! of the f64 references: average pooling is linear (central differences exact
//! to ~1e-10) and max pooling is linear away from ties (random data has none
//! within the step `h = 1e-6`).

use ndarray::{ArrayD, IxDyn};

use super::*;
use crate::Rng;

const TOL: f64 = 1e-5;

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
}

const fn case(
    n: usize,
    c: usize,
    hw: (usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Case {
    Case {
        n,
        c,
        h: hw.0,
        w: hw.1,
        k,
        s,
        p,
    }
}

/// Odd sizes, h ≠ w, kh ≠ kw, overlapping and disjoint windows, padding up to
/// k/2, a 1×1 kernel, batch 1, one channel.
const CASES: [Case; 7] = [
    case(2, 3, (7, 9), (3, 3), (2, 2), (1, 1)),
    case(1, 2, (8, 5), (2, 3), (2, 1), (1, 1)),
    case(3, 1, (5, 5), (5, 5), (1, 1), (2, 2)),
    case(2, 4, (6, 6), (2, 2), (2, 2), (0, 0)),
    case(1, 3, (11, 7), (3, 2), (3, 2), (0, 1)),
    case(2, 2, (4, 4), (1, 1), (2, 2), (0, 0)),
    case(2, 2, (3, 8), (3, 3), (1, 2), (1, 1)),
];

impl Case {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.p.0 - self.k.0) / self.s.0 + 1,
            (self.w + 2 * self.p.1 - self.k.1) / self.s.1 + 1,
        )
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
}

/// A random `[N, C, H, W]` tensor, stored NHWC (non-contiguous) when asked.
fn rand_nchw(shape: [usize; 4], seed: u64, noncontig: bool) -> Tensor {
    let mut rng = Rng::new(seed);
    let [n, c, h, w] = shape;
    let v: Vec<f32> = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
    if noncontig {
        let a = ArrayD::from_shape_vec(IxDyn(&[n, h, w, c]), v).unwrap();
        let t = Tensor::from_array(a.permuted_axes(IxDyn(&[0, 3, 1, 2])));
        assert!(!t.is_contiguous() || c == 1 || h * w == 1);
        t
    } else {
        Tensor::from_vec(v, &shape).unwrap()
    }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

/// Calls `f(plane, out_index, Some(in_index) | None for padding)` for every window cell.
fn for_each_cell(cs: &Case, mut f: impl FnMut(usize, usize, Option<usize>)) {
    let (oh, ow) = cs.out();
    for plane in 0..cs.n * cs.c {
        for i in 0..oh {
            for j in 0..ow {
                for ki in 0..cs.k.0 {
                    for kj in 0..cs.k.1 {
                        let ih = (i * cs.s.0 + ki) as isize - cs.p.0 as isize;
                        let iw = (j * cs.s.1 + kj) as isize - cs.p.1 as isize;
                        let inside = ih >= 0 && iw >= 0 && ih < cs.h as isize && iw < cs.w as isize;
                        let at = inside.then(|| ih as usize * cs.w + iw as usize);
                        f(plane, (plane * oh + i) * ow + j, at);
                    }
                }
            }
        }
    }
}

/// `(y, flat index within the plane)`; a padded cell is −∞ and never selected.
fn naive_max(cs: &Case, x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let (oh, ow) = cs.out();
    let m = cs.n * cs.c * oh * ow;
    let (mut y, mut idx) = (vec![f64::NEG_INFINITY; m], vec![usize::MAX; m]);
    for_each_cell(cs, |plane, o, at| {
        if let Some(a) = at {
            let v = x[plane * cs.h * cs.w + a];
            if idx[o] == usize::MAX || v > y[o] {
                y[o] = v;
                idx[o] = a;
            }
        }
    });
    (y, idx)
}

/// Per output: `(Σ real cells, kh·kw or the number of real cells)`.
fn naive_avg(cs: &Case, x: &[f64], count_include_pad: bool) -> Vec<f64> {
    let (oh, ow) = cs.out();
    let m = cs.n * cs.c * oh * ow;
    let (mut sum, mut cnt) = (vec![0.0; m], vec![0.0; m]);
    for_each_cell(cs, |plane, o, at| {
        if let Some(a) = at {
            sum[o] += x[plane * cs.h * cs.w + a];
        }
        if at.is_some() || count_include_pad {
            cnt[o] += 1.0;
        }
    });
    sum.iter().zip(&cnt).map(|(s, c)| s / c).collect()
}

fn naive_avg_backward(cs: &Case, dy: &[f64], count_include_pad: bool) -> Vec<f64> {
    let mut cnt = vec![0.0; dy.len()];
    for_each_cell(cs, |_, o, at| {
        if at.is_some() || count_include_pad {
            cnt[o] += 1.0;
        }
    });
    let mut dx = vec![0.0; cs.n * cs.c * cs.h * cs.w];
    for_each_cell(cs, |plane, o, at| {
        if let Some(a) = at {
            dx[plane * cs.h * cs.w + a] += dy[o] / cnt[o];
        }
    });
    dx
}

fn assert_close(got: &Tensor, want: &[f64], tol: f64, what: &str) {
    let got = got.to_vec();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// Central differences of `L = Σ f(x)·r` at a few sampled coordinates.
fn check_fd(f: &dyn Fn(&[f64]) -> Vec<f64>, x: &[f64], r: &[f64], got: &Tensor, what: &str) {
    let got = got.to_vec();
    let loss = |x: &[f64]| -> f64 { f(x).iter().zip(r).map(|(a, b)| a * b).sum() };
    let h = 1e-6;
    let mut rng = Rng::new(11);
    for _ in 0..16 {
        let i = rng.below(x.len() as u64) as usize;
        let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
        xp[i] += h;
        xm[i] -= h;
        let want = (loss(&xp) - loss(&xm)) / (2.0 * h);
        assert!(
            (got[i] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{what}: fd at {i}: got {}, want {want}",
            got[i]
        );
    }
}

#[test]
fn max_pool_matches_naive_and_finite_differences() {
    for (i, cs) in CASES.iter().enumerate() {
        let x = rand_nchw(cs.x_shape(), 10 + i as u64, i % 2 == 1);
        let (oh, ow) = cs.out();
        let dy = rand_nchw([cs.n, cs.c, oh, ow], 50 + i as u64, i % 2 == 0);
        let xv = f64s(&x);
        let (y, idx) = max_pool2d(&x, cs.k, cs.s, cs.p).unwrap();
        let (yr, idxr) = naive_max(cs, &xv);
        assert_eq!(y.shape(), &[cs.n, cs.c, oh, ow]);
        assert_eq!(f64s(&y), yr, "{cs:?}");
        assert_eq!(idx, idxr, "{cs:?}");
        let dx = max_pool2d_backward(&dy, &idx, &cs.x_shape()).unwrap();
        let mut dxr = vec![0.0; xv.len()];
        let hw = cs.h * cs.w;
        for (o, (&a, d)) in idxr.iter().zip(f64s(&dy)).enumerate() {
            dxr[(o / (oh * ow)) * hw + a] += d;
        }
        assert_close(&dx, &dxr, 1e-6, &format!("max dx {cs:?}"));
        check_fd(&|x| naive_max(cs, x).0, &xv, &f64s(&dy), &dx, "max");
    }
}

#[test]
fn max_pool_padding_is_negative_infinity_and_nan_propagates() {
    // All inputs negative: a zero-padded max would return 0 at the borders.
    let x = Tensor::from_vec((1..=9).map(|v| -(v as f32)).collect(), &[1, 1, 3, 3]).unwrap();
    let (y, idx) = max_pool2d(&x, (3, 3), (1, 1), (1, 1)).unwrap();
    assert_eq!(
        y.to_vec(),
        vec![-1., -1., -2., -1., -1., -2., -4., -4., -5.]
    );
    assert_eq!(idx, vec![0, 0, 1, 0, 0, 1, 3, 3, 4]);
    let mut v = vec![0.5f32; 16];
    v[5] = f32::NAN;
    let x = Tensor::from_vec(v, &[1, 1, 4, 4]).unwrap();
    let (y, idx) = max_pool2d(&x, (2, 2), (2, 2), (0, 0)).unwrap();
    assert!(y.to_vec()[0].is_nan());
    assert_eq!(idx[0], 5);
    assert_eq!(&y.to_vec()[1..], &[0.5, 0.5, 0.5]);
}

#[test]
fn avg_pool_matches_naive_and_finite_differences() {
    for (i, cs) in CASES.iter().enumerate() {
        for cip in [true, false] {
            let x = rand_nchw(cs.x_shape(), 20 + i as u64, i % 2 == 0);
            let (oh, ow) = cs.out();
            let dy = rand_nchw([cs.n, cs.c, oh, ow], 60 + i as u64, i % 2 == 1);
            let (xv, dyv) = (f64s(&x), f64s(&dy));
            let what = format!("{cs:?} count_include_pad={cip}");
            let y = avg_pool2d(&x, cs.k, cs.s, cs.p, cip).unwrap();
            assert_close(&y, &naive_avg(cs, &xv, cip), TOL, &what);
            let dx = avg_pool2d_backward(&dy, &cs.x_shape(), cs.k, cs.s, cs.p, cip).unwrap();
            assert_close(&dx, &naive_avg_backward(cs, &dyv, cip), TOL, &what);
            check_fd(&|x| naive_avg(cs, x, cip), &xv, &dyv, &dx, &what);
        }
    }
    // The divisor differs only where a window overlaps the padding.
    let x = Tensor::ones(&[1, 1, 2, 2]).unwrap();
    let y = avg_pool2d(&x, (2, 2), (1, 1), (1, 1), true).unwrap();
    assert_eq!(
        y.to_vec(),
        vec![0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]
    );
    let y = avg_pool2d(&x, (2, 2), (1, 1), (1, 1), false).unwrap();
    assert_eq!(y.to_vec(), vec![1.0; 9]);
}

/// Windows from the real-valued definition, independent of the kernel's integer maths.
fn adaptive_span(i: usize, out: usize, len: usize) -> (usize, usize) {
    let (i, out, len) = (i as f64, out as f64, len as f64);
    (
        (i * len / out).floor() as usize,
        ((i + 1.0) * len / out).ceil() as usize,
    )
}

fn naive_adaptive(shape: [usize; 4], out: (usize, usize), x: &[f64]) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let mut y = Vec::new();
    for plane in 0..n * c {
        for i in 0..out.0 {
            let (h0, h1) = adaptive_span(i, out.0, h);
            for j in 0..out.1 {
                let (w0, w1) = adaptive_span(j, out.1, w);
                let mut s = 0.0;
                for ih in h0..h1 {
                    for iw in w0..w1 {
                        s += x[plane * h * w + ih * w + iw];
                    }
                }
                y.push(s / ((h1 - h0) * (w1 - w0)) as f64);
            }
        }
    }
    y
}

#[test]
fn adaptive_avg_pool_matches_naive_and_finite_differences() {
    let cases = [
        ([2, 3, 7, 9], (3, 4)),
        ([1, 2, 5, 5], (5, 5)),
        ([2, 1, 4, 6], (7, 5)),
        ([3, 2, 14, 14], (1, 1)),
        ([1, 2, 1, 1], (2, 3)),
        ([2, 2, 7, 7], (2, 2)),
    ];
    for (i, (shape, out)) in cases.into_iter().enumerate() {
        let x = rand_nchw(shape, 30 + i as u64, i % 2 == 0);
        let dy = rand_nchw(
            [shape[0], shape[1], out.0, out.1],
            70 + i as u64,
            i % 2 == 1,
        );
        let (xv, dyv) = (f64s(&x), f64s(&dy));
        let what = format!("{shape:?} -> {out:?}");
        let y = adaptive_avg_pool2d(&x, out).unwrap();
        assert_eq!(y.shape(), &[shape[0], shape[1], out.0, out.1]);
        assert_close(&y, &naive_adaptive(shape, out, &xv), TOL, &what);
        let dx = adaptive_avg_pool2d_backward(&dy, &shape).unwrap();
        // Naive backward: the transpose of the averaging, via the same windows.
        let [_, _, h, w] = shape;
        let mut dxr = vec![0.0; xv.len()];
        for (o, d) in dyv.iter().enumerate() {
            let plane = o / (out.0 * out.1);
            let (i, j) = ((o / out.1) % out.0, o % out.1);
            let ((h0, h1), (w0, w1)) = (adaptive_span(i, out.0, h), adaptive_span(j, out.1, w));
            for ih in h0..h1 {
                for iw in w0..w1 {
                    dxr[plane * h * w + ih * w + iw] += d / ((h1 - h0) * (w1 - w0)) as f64;
                }
            }
        }
        assert_close(&dx, &dxr, TOL, &what);
        check_fd(&|x| naive_adaptive(shape, out, x), &xv, &dyv, &dx, &what);
    }
}

#[test]
fn pooling_does_not_depend_on_thread_count() {
    let x = rand_nchw([3, 5, 23, 19], 1, true);
    let dy3 = rand_nchw([3, 5, 12, 10], 2, false);
    let dya = rand_nchw([3, 5, 5, 4], 3, false);
    let run = |t: usize| {
        crate::threads::set_num_threads(t).unwrap();
        let (y, idx) = max_pool2d(&x, (3, 3), (2, 2), (1, 1)).unwrap();
        let dx = max_pool2d_backward(&dy3, &idx, x.shape()).unwrap();
        let ya = avg_pool2d(&x, (3, 3), (2, 2), (1, 1), false).unwrap();
        let dxa = avg_pool2d_backward(&dy3, x.shape(), (3, 3), (2, 2), (1, 1), false).unwrap();
        let yd = adaptive_avg_pool2d(&x, (5, 4)).unwrap();
        let dxd = adaptive_avg_pool2d_backward(&dya, x.shape()).unwrap();
        [y, dx, ya, dxa, yd, dxd]
            .map(|t| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn bad_arguments_are_errors_naming_the_op() {
    let x = Tensor::zeros(&[2, 3, 6, 6]).unwrap();
    let msg = |r: Result<Tensor>| r.expect_err("expected an error").to_string();
    let mp = |k, s, p| max_pool2d(&x, k, s, p).map(|(y, _)| y);
    let checks: Vec<(String, &[&str])> = vec![
        (
            msg(
                max_pool2d(&Tensor::zeros(&[3, 6, 6]).unwrap(), (2, 2), (2, 2), (0, 0))
                    .map(|r| r.0),
            ),
            &["max_pool2d", "[N, C, H, W]", "[3, 6, 6]"],
        ),
        (
            msg(mp((0, 2), (2, 2), (0, 0))),
            &["max_pool2d", "kernel", "(0, 2)"],
        ),
        (
            msg(mp((2, 2), (2, 0), (0, 0))),
            &["max_pool2d", "stride", "(2, 0)"],
        ),
        (
            msg(mp((3, 3), (1, 1), (2, 1))),
            &["max_pool2d", "half the kernel", "(2, 1)"],
        ),
        (
            msg(mp((7, 2), (1, 1), (0, 0))),
            &["max_pool2d", "kernel 7×2", "[2, 3, 6, 6]"],
        ),
        (
            msg(avg_pool2d(&x, (3, 3), (1, 1), (2, 2), true)),
            &["avg_pool2d", "half the kernel"],
        ),
        (
            msg(avg_pool2d_backward(
                &Tensor::zeros(&[2, 3, 3, 2]).unwrap(),
                &[2, 3, 6, 6],
                (2, 2),
                (2, 2),
                (0, 0),
                true,
            )),
            &["avg_pool2d_backward", "[2, 3, 3, 3]", "[2, 3, 3, 2]"],
        ),
        (
            msg(max_pool2d_backward(
                &Tensor::zeros(&[2, 3, 3, 3]).unwrap(),
                &[0; 5],
                &[2, 3, 6, 6],
            )),
            &["max_pool2d_backward", "54", "5 indices"],
        ),
        (
            msg(max_pool2d_backward(
                &Tensor::zeros(&[1, 1, 1, 2]).unwrap(),
                &[0, 36],
                &[1, 1, 6, 6],
            )),
            &["max_pool2d_backward", "index 36", "6×6"],
        ),
        (
            msg(max_pool2d_backward(
                &Tensor::zeros(&[2, 4, 3, 3]).unwrap(),
                &[0; 72],
                &[2, 3, 6, 6],
            )),
            &["max_pool2d_backward", "[2, 3, 3, 3]", "[2, 4, 3, 3]"],
        ),
        (
            msg(adaptive_avg_pool2d(&x, (0, 2))),
            &["adaptive_avg_pool2d", "(0, 2)"],
        ),
        (
            msg(adaptive_avg_pool2d(
                &Tensor::zeros(&[2, 3, 0, 6]).unwrap(),
                (2, 2),
            )),
            &["adaptive_avg_pool2d", "H and W at least 1"],
        ),
        (
            msg(adaptive_avg_pool2d_backward(
                &Tensor::zeros(&[2, 3, 2]).unwrap(),
                &[2, 3, 6, 6],
            )),
            &["adaptive_avg_pool2d_backward", "4-d"],
        ),
        (
            msg(adaptive_avg_pool2d_backward(
                &Tensor::zeros(&[1, 3, 2, 2]).unwrap(),
                &[2, 3, 6, 6],
            )),
            &[
                "adaptive_avg_pool2d_backward",
                "[2, 3, 2, 2]",
                "[1, 3, 2, 2]",
            ],
        ),
    ];
    for (m, needles) in checks {
        for n in needles {
            assert!(m.contains(n), "{m:?} should contain {n:?}");
        }
    }
}
