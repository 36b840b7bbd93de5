//! Convolution kernels against naive f64 loops and central finite differences.
//!
//! Tolerances. Every kernel output is an f32 sum of at most a few hundred f32
//! products of N(0, 1) values (forward: Cg·kh·kw ≤ 200 terms; dx: og·kh·kw;
//! dw: N·OH·OW ≤ 600; db: N·OH·OW). The f32 rounding error of such a sum grows
//! like √L·2⁻²⁴·‖terms‖, about 1e-6 of the largest output here, and the worst
//! case L·2⁻²⁴ ≈ 4e-5 relative. We check the normwise relative error
//! `|got − want| ≤ TOL · max(1, max|want|)` with `TOL = 5e-5`; normwise, because
//! sums that cancel make an elementwise relative error meaningless.
//! The references are computed in f64 from the same f32 inputs, and the
//! finite differences are of the f64 reference: the convolution is linear, so
//! central differences are exact up to f64 rounding (~1e-12), and they check
//! the naive backward loops as well as the kernels.

use ndarray::{ArrayD, IxDyn};

use super::*;
use crate::Rng;

const TOL: f64 = 5e-5;

/// One convolution configuration.
#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    s: (usize, usize),
    p: (usize, usize),
    g: usize,
}

#[allow(clippy::too_many_arguments)]
const fn case(
    n: usize,
    c: usize,
    o: usize,
    hw: (usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    g: usize,
) -> Case {
    Case {
        n,
        c,
        o,
        h: hw.0,
        w: hw.1,
        kh: k.0,
        kw: k.1,
        s,
        p,
        g,
    }
}

/// Odd sizes, h ≠ w, kh ≠ kw, strides 1–3, padding, groups 1/2/4, depth-wise,
/// 1×1 (point-wise and grouped FC), batch 1, kernel equal to the padded input;
/// outputs narrower and wider than im2col's narrow-row threshold (16).
const CASES: [Case; 18] = [
    case(2, 3, 5, (7, 9), (3, 3), (1, 1), (1, 1), 1),
    case(3, 4, 6, (11, 8), (3, 2), (2, 1), (1, 0), 2),
    case(2, 8, 12, (6, 5), (3, 3), (1, 1), (1, 1), 4),
    case(1, 3, 4, (12, 10), (7, 7), (2, 2), (3, 3), 1),
    case(2, 6, 6, (9, 7), (3, 5), (2, 1), (1, 2), 6),
    case(3, 5, 5, (8, 8), (3, 3), (1, 1), (1, 1), 5),
    case(2, 5, 7, (4, 6), (1, 1), (1, 1), (0, 0), 1),
    case(3, 8, 4, (3, 5), (1, 1), (1, 1), (0, 0), 2),
    case(5, 12, 8, (1, 1), (1, 1), (1, 1), (0, 0), 4),
    case(4, 7, 3, (1, 1), (1, 1), (1, 1), (0, 0), 1),
    case(2, 4, 6, (7, 6), (1, 1), (2, 2), (0, 0), 2),
    case(2, 3, 2, (3, 4), (1, 1), (1, 1), (1, 1), 1),
    case(2, 2, 3, (3, 4), (5, 6), (1, 1), (1, 1), 1),
    case(6, 8, 8, (7, 7), (5, 5), (1, 1), (2, 2), 4),
    case(2, 4, 4, (1, 1), (3, 3), (1, 1), (1, 1), 4),
    case(1, 4, 8, (5, 5), (2, 2), (3, 3), (0, 0), 1),
    case(2, 3, 4, (5, 18), (3, 3), (1, 1), (1, 1), 1),
    case(2, 2, 4, (9, 37), (3, 5), (2, 2), (1, 2), 2),
];

impl Case {
    fn params(&self) -> Conv2dParams {
        Conv2dParams::new(self.s, self.p, self.g)
    }
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.p.0 - self.kh) / self.s.0 + 1,
            (self.w + 2 * self.p.1 - self.kw) / self.s.1 + 1,
        )
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.o, self.c / self.g, self.kh, self.kw]
    }
    fn y_shape(&self) -> [usize; 4] {
        let (oh, ow) = self.out();
        [self.n, self.o, oh, ow]
    }
}

fn randn(shape: &[usize], rng: &mut Rng) -> Vec<f32> {
    (0..shape.iter().product::<usize>())
        .map(|_| rng.normal() as f32)
        .collect()
}

/// A tensor of logical shape `shape` whose storage is laid out with the axes in
/// `order` (a permutation): non-contiguous unless `order` is the identity.
fn strided(shape: &[usize], order: &[usize], rng: &mut Rng) -> Tensor {
    let stored: Vec<usize> = order.iter().map(|&a| shape[a]).collect();
    let arr = ArrayD::from_shape_vec(IxDyn(&stored), randn(&stored, rng)).unwrap();
    let mut inverse = vec![0; order.len()];
    for (i, &a) in order.iter().enumerate() {
        inverse[a] = i;
    }
    let t = Tensor::from_array(arr.permuted_axes(IxDyn(&inverse)));
    assert_eq!(t.shape(), shape);
    t
}

/// Inputs for a case; odd-numbered variants are non-contiguous (x stored NHWC,
/// w stored [kh, kw, Cg, O], dy stored NHWC).
fn inputs(cs: &Case, seed: u64, noncontig: bool) -> (Tensor, Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let (id, nhwc, khwco) = ([0, 1, 2, 3], [0, 2, 3, 1], [2, 3, 1, 0]);
    let (xo, wo) = if noncontig { (nhwc, khwco) } else { (id, id) };
    let x = strided(&cs.x_shape(), &xo, &mut rng);
    let w = strided(&cs.w_shape(), &wo, &mut rng);
    let b = Tensor::from_vec(randn(&[cs.o], &mut rng), &[cs.o]).unwrap();
    let dy = strided(&cs.y_shape(), &xo, &mut rng);
    if noncontig {
        assert!(!x.is_contiguous() || cs.c == 1 || cs.h * cs.w == 1);
    }
    (x, w, b, dy)
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

/// Calls `f(x_index, w_index, y_index)` for every multiply-add of the convolution.
fn for_each_tap(cs: &Case, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = cs.out();
    let (cg, og) = (cs.c / cs.g, cs.o / cs.g);
    for n in 0..cs.n {
        for oc in 0..cs.o {
            for i in 0..oh {
                for j in 0..ow {
                    let yi = ((n * cs.o + oc) * oh + i) * ow + j;
                    for ci in 0..cg {
                        let c = (oc / og) * cg + ci;
                        for ki in 0..cs.kh {
                            for kj in 0..cs.kw {
                                let ih = (i * cs.s.0 + ki) as isize - cs.p.0 as isize;
                                let iw = (j * cs.s.1 + kj) as isize - cs.p.1 as isize;
                                if ih < 0 || iw < 0 || ih >= cs.h as isize || iw >= cs.w as isize {
                                    continue;
                                }
                                let xi = ((n * cs.c + c) * cs.h + ih as usize) * cs.w + iw as usize;
                                let wi = ((oc * cg + ci) * cs.kh + ki) * cs.kw + kj;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn naive_forward(cs: &Case, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let (oh, ow) = cs.out();
    let mut y = vec![0.0; cs.n * cs.o * oh * ow];
    if let Some(b) = b {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / (oh * ow)) % cs.o];
        }
    }
    for_each_tap(cs, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// `(dx, dw, db)` of `L = Σ y·dy`.
fn naive_backward(cs: &Case, x: &[f64], w: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (oh, ow) = cs.out();
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for_each_tap(cs, |xi, wi, yi| {
        dx[xi] += w[wi] * dy[yi];
        dw[wi] += x[xi] * dy[yi];
    });
    let mut db = vec![0.0; cs.o];
    for (i, d) in dy.iter().enumerate() {
        db[(i / (oh * ow)) % cs.o] += d;
    }
    (dx, dw, db)
}

fn assert_close(got: &Tensor, want: &[f64], tol: f64, what: &str) {
    let got = got.to_vec();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

#[test]
fn forward_matches_naive_on_every_path() {
    for (i, cs) in CASES.iter().enumerate() {
        let noncontig = i % 2 == 1;
        let (x, w, b, _) = inputs(cs, 100 + i as u64, noncontig);
        let (xv, wv, bv) = (f64s(&x), f64s(&w), f64s(&b));
        let y = conv2d(&x, &w, Some(&b), cs.params()).unwrap();
        assert_eq!(y.shape(), cs.y_shape());
        assert_close(
            &y,
            &naive_forward(cs, &xv, &wv, Some(&bv)),
            TOL,
            &format!("{cs:?}"),
        );
        let y = conv2d(&x, &w, None, cs.params()).unwrap();
        assert_close(
            &y,
            &naive_forward(cs, &xv, &wv, None),
            TOL,
            &format!("{cs:?}"),
        );
    }
}

#[test]
fn backward_matches_naive_on_every_path() {
    for (i, cs) in CASES.iter().enumerate() {
        let noncontig = i % 2 == 0;
        let (x, w, _, dy) = inputs(cs, 200 + i as u64, noncontig);
        let (dxr, dwr, dbr) = naive_backward(cs, &f64s(&x), &f64s(&w), &f64s(&dy));
        let what = format!("{cs:?}");
        let dx = conv2d_backward_input(&dy, &w, &cs.x_shape(), cs.params()).unwrap();
        assert_close(&dx, &dxr, TOL, &format!("dx {what}"));
        let dw = conv2d_backward_weight(&x, &dy, &cs.w_shape(), cs.params()).unwrap();
        assert_eq!(dw.shape(), cs.w_shape());
        assert_close(&dw, &dwr, TOL, &format!("dw {what}"));
        let db = conv2d_backward_bias(&dy).unwrap();
        assert_close(&db, &dbr, TOL, &format!("db {what}"));
    }
}

/// Central differences of `L(x, w, b) = Σ naive_forward(x, w, b)·r` at sampled
/// coordinates; the reference is f64 and linear, so `h = 1e-3` is exact to
/// ~1e-10 and the kernels are held to the same `TOL` as against the loops.
#[test]
fn backward_matches_finite_differences() {
    for (i, cs) in CASES.iter().enumerate() {
        let (x, w, b, dy) = inputs(cs, 300 + i as u64, i % 3 == 0);
        let (xv, wv, bv, r) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            naive_forward(cs, x, w, Some(b))
                .iter()
                .zip(&r)
                .map(|(y, r)| y * r)
                .sum()
        };
        let h = 1e-3;
        let fd = |which: usize, idx: usize| {
            let (mut xp, mut wp, mut bp) = (xv.clone(), wv.clone(), bv.clone());
            let (mut xm, mut wm, mut bm) = (xv.clone(), wv.clone(), bv.clone());
            match which {
                0 => (xp[idx] += h, xm[idx] -= h),
                1 => (wp[idx] += h, wm[idx] -= h),
                _ => (bp[idx] += h, bm[idx] -= h),
            };
            (loss(&xp, &wp, &bp) - loss(&xm, &wm, &bm)) / (2.0 * h)
        };
        let dx = conv2d_backward_input(&dy, &w, &cs.x_shape(), cs.params()).unwrap();
        let dw = conv2d_backward_weight(&x, &dy, &cs.w_shape(), cs.params()).unwrap();
        let db = conv2d_backward_bias(&dy).unwrap();
        let (dxr, dwr, dbr) = naive_backward(cs, &xv, &wv, &r);
        let mut rng = Rng::new(7 + i as u64);
        for (which, got, naive) in [(0, &dx, &dxr), (1, &dw, &dwr), (2, &db, &dbr)] {
            let got = got.to_vec();
            let scale = naive.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for _ in 0..12 {
                let idx = rng.below(got.len() as u64) as usize;
                let want = fd(which, idx);
                assert!(
                    (naive[idx] - want).abs() <= 1e-8 * scale,
                    "naive grad {which} {cs:?} [{idx}]: {} vs fd {want}",
                    naive[idx]
                );
                assert!(
                    (got[idx] as f64 - want).abs() <= TOL * scale,
                    "grad {which} {cs:?} [{idx}]: {} vs fd {want}",
                    got[idx]
                );
            }
        }
    }
}

#[test]
fn shapes_choose_the_documented_path() {
    let expect = [
        Path::Im2col,
        Path::Im2col,
        Path::Im2col,
        Path::Im2col,
        Path::Depthwise,
        Path::Depthwise,
        Path::Pointwise,
        Path::Pointwise,
        Path::GroupedFc,
        Path::GroupedFc,
        Path::Im2col,
        Path::Im2col,
        Path::Im2col,
        Path::Im2col,
        Path::Depthwise,
        Path::Im2col,
    ];
    for (cs, want) in CASES.iter().zip(expect) {
        let g = geometry("test", &cs.x_shape(), &cs.w_shape(), cs.params()).unwrap();
        assert_eq!(path(&g), want, "{cs:?}");
        assert_eq!((g.oh, g.ow), cs.out());
    }
    // The test COL_BUDGET forces several im2col chunks on most cases.
    let cs = CASES[13];
    let g = geometry("test", &cs.x_shape(), &cs.w_shape(), cs.params()).unwrap();
    assert!(im2col::chunk_images(&g) < g.n);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // Larger shapes so that the GEMM and the image loops really split.
    let big = [
        case(3, 16, 24, (17, 15), (3, 3), (1, 1), (1, 1), 1),
        case(2, 8, 8, (20, 19), (3, 3), (2, 2), (1, 1), 8),
        case(40, 96, 96, (1, 1), (1, 1), (1, 1), (0, 0), 4),
        case(3, 32, 80, (9, 9), (1, 1), (1, 1), (0, 0), 2),
    ];
    for (i, cs) in big.iter().enumerate() {
        let (x, w, b, dy) = inputs(cs, 400 + i as u64, false);
        let run = |threads: usize| {
            crate::threads::set_num_threads(threads).unwrap();
            (
                conv2d(&x, &w, Some(&b), cs.params()).unwrap().to_vec(),
                conv2d_backward_input(&dy, &w, &cs.x_shape(), cs.params())
                    .unwrap()
                    .to_vec(),
                conv2d_backward_weight(&x, &dy, &cs.w_shape(), cs.params())
                    .unwrap()
                    .to_vec(),
                conv2d_backward_bias(&dy).unwrap().to_vec(),
            )
        };
        let one = run(1);
        let two = run(2);
        let bits = |v: &Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one.0), bits(&two.0), "y {cs:?}");
        assert_eq!(bits(&one.1), bits(&two.1), "dx {cs:?}");
        assert_eq!(bits(&one.2), bits(&two.2), "dw {cs:?}");
        assert_eq!(bits(&one.3), bits(&two.3), "db {cs:?}");
    }
}

#[test]
fn empty_batch_gives_empty_output_and_zero_weight_gradient() {
    let cs = case(0, 4, 6, (5, 5), (3, 3), (1, 1), (1, 1), 2);
    let (x, w, b, dy) = inputs(&cs, 1, false);
    let y = conv2d(&x, &w, Some(&b), cs.params()).unwrap();
    assert_eq!(y.shape(), &[0, 6, 5, 5]);
    let dx = conv2d_backward_input(&dy, &w, &cs.x_shape(), cs.params()).unwrap();
    assert_eq!(dx.shape(), &[0, 4, 5, 5]);
    let dw = conv2d_backward_weight(&x, &dy, &cs.w_shape(), cs.params()).unwrap();
    assert!(dw.to_vec().iter().all(|&v| v == 0.0));
    assert_eq!(conv2d_backward_bias(&dy).unwrap().to_vec(), vec![0.0; 6]);
}

fn err_of(r: Result<Tensor>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_arguments_are_errors_naming_the_op() {
    let x = Tensor::zeros(&[2, 4, 5, 5]).unwrap();
    let w = Tensor::zeros(&[6, 2, 3, 3]).unwrap();
    let p = Conv2dParams::square(1, 1, 2);
    let cases: Vec<(String, &[&str])> = vec![
        (
            err_of(conv2d(&Tensor::zeros(&[4, 5, 5]).unwrap(), &w, None, p)),
            &["conv2d", "[N, C, H, W]", "[4, 5, 5]"],
        ),
        (
            err_of(conv2d(&x, &Tensor::zeros(&[6, 2, 3]).unwrap(), None, p)),
            &["conv2d", "[O, C/groups, kh, kw]", "[6, 2, 3]"],
        ),
        (
            err_of(conv2d(&x, &w, None, Conv2dParams::square(1, 1, 3))),
            &["conv2d", "divisible by groups = 3", "C = 4"],
        ),
        (
            err_of(conv2d(&x, &Tensor::zeros(&[6, 4, 3, 3]).unwrap(), None, p)),
            &["conv2d", "C/groups = 2", "[6, 4, 3, 3]"],
        ),
        (
            err_of(conv2d(&x, &Tensor::zeros(&[5, 2, 3, 3]).unwrap(), None, p)),
            &["conv2d", "divisible by groups = 2", "O = 5"],
        ),
        (
            err_of(conv2d(&x, &w, Some(&Tensor::zeros(&[5]).unwrap()), p)),
            &["conv2d", "bias [O] = [6]", "[5]"],
        ),
        (
            err_of(conv2d(&x, &w, Some(&Tensor::zeros(&[6, 1]).unwrap()), p)),
            &["conv2d", "bias", "[6, 1]"],
        ),
        (
            err_of(conv2d(&x, &Tensor::zeros(&[6, 2, 8, 3]).unwrap(), None, p)),
            &[
                "conv2d",
                "kernel 8×3 no larger than the padded input",
                "[2, 4, 5, 5]",
            ],
        ),
        (
            err_of(conv2d(&x, &w, None, Conv2dParams::new((1, 0), (1, 1), 2))),
            &["conv2d", "stride", "(1, 0)"],
        ),
        (
            err_of(conv2d(&x, &w, None, Conv2dParams::square(1, 1, 0))),
            &["conv2d", "groups", "got 0"],
        ),
        (
            err_of(conv2d(&Tensor::zeros(&[2, 4, 0, 5]).unwrap(), &w, None, p)),
            &["conv2d", "H and W at least 1", "[2, 4, 0, 5]"],
        ),
        (
            err_of(conv2d_backward_input(
                &Tensor::zeros(&[2, 6, 5, 4]).unwrap(),
                &w,
                &[2, 4, 5, 5],
                p,
            )),
            &["conv2d_backward_input", "[2, 6, 5, 5]", "[2, 6, 5, 4]"],
        ),
        (
            err_of(conv2d_backward_input(
                &Tensor::zeros(&[2, 6, 5, 5]).unwrap(),
                &w,
                &[2, 4, 5],
                p,
            )),
            &["conv2d_backward_input", "[N, C, H, W]"],
        ),
        (
            err_of(conv2d_backward_weight(
                &x,
                &Tensor::zeros(&[2, 6, 5, 5]).unwrap(),
                &[6, 2, 3],
                p,
            )),
            &["conv2d_backward_weight", "[O, C/groups, kh, kw]"],
        ),
        (
            err_of(conv2d_backward_weight(
                &x,
                &Tensor::zeros(&[2, 5, 5, 5]).unwrap(),
                &[6, 2, 3, 3],
                p,
            )),
            &["conv2d_backward_weight", "[2, 6, 5, 5]", "[2, 5, 5, 5]"],
        ),
        (
            err_of(conv2d_backward_bias(&Tensor::zeros(&[2, 6]).unwrap())),
            &["conv2d_backward_bias", "4-d"],
        ),
    ];
    for (msg, needles) in cases {
        for n in needles {
            assert!(msg.contains(n), "{msg:?} should contain {n:?}");
        }
    }
    assert!(
        conv2d_output_hw(&[1, 4, 5, 5], &[6, 2, 3, 3], Conv2dParams::square(2, 1, 2)).unwrap()
            == (3, 3)
    );
    // Usize overflow in the padded size is an error, not a panic.
    let e = conv2d_output_hw(
        &[1, 1, 5, 5],
        &[1, 1, 3, 3],
        Conv2dParams::square(1, usize::MAX / 2 + 1, 1),
    );
    assert!(e.unwrap_err().to_string().contains("conv2d"));
}

/// A large plane's bias gradient keeps f32 accuracy: 2 × 512 × 512 values of 0.1 per channel
/// sum to 52428.8 (as f32 values: their f64 sum, rounded), where a running f32 sum of a
/// 262,144-element plane drifts by about 1e-4 relative.
#[test]
fn bias_gradient_of_a_large_plane_is_accurate() {
    let dy = Tensor::full(&[2, 2, 512, 512], 0.1).unwrap();
    let want = (2.0 * 512.0 * 512.0 * f64::from(0.1f32)) as f32;
    for got in conv2d_backward_bias(&dy).unwrap().to_vec() {
        assert_eq!(got, want);
    }
}
