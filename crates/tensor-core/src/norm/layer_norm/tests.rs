//! LayerNorm against naive f64 references and finite differences.
//!
//! Tolerances: the kernel rounds each output once from f64 (≤ 0.5 ulp =
//! 6e-8 relative) plus the f32 affine multiply-add (two more roundings) and,
//! in backward, the f32 rounding of the saved mean/rstd. Elementwise results
//! are therefore within a few 1e-7 of the f64 reference relative to the
//! largest magnitude involved; we assert 1e-5 relative + 1e-6·max (forward)
//! and 1e-5 + 1e-5·max for dweight/dbias. `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`
//! cancels terms of size |dy·w·rstd| (and is ~0 for C = 1 or 2), so its
//! absolute bound is 1e-6·max|dy|·max|w|·max(rstd). Finite differences are taken of
//! the f64 reference with step 1e-5·max(1,|x|): truncation ~1e-10, roundoff
//! ~1e-16·|L|/1e-5 ≤ 1e-9 for our sizes, so they get the same tolerance.

use super::*;
use crate::norm::test_util::*;
use crate::threads::set_num_threads;

/// Two-pass f64 LayerNorm: (y, mean, rstd).
fn ln_ref(
    x: &[f64],
    c: usize,
    w: Option<&[f64]>,
    b: Option<&[f64]>,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / c;
    let (mut y, mut mean, mut rstd) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
    for r in 0..rows {
        let xr = &x[r * c..(r + 1) * c];
        let m = xr.iter().sum::<f64>() / c as f64;
        let v = xr.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / c as f64;
        let rs = 1.0 / (v + eps).sqrt();
        for i in 0..c {
            let mut o = (xr[i] - m) * rs;
            if let Some(w) = w {
                o *= w[i];
            }
            if let Some(b) = b {
                o += b[i];
            }
            y[r * c + i] = o;
        }
        mean[r] = m;
        rstd[r] = rs;
    }
    (y, mean, rstd)
}

/// Naive f64 backward, the classic chain rule through var and mean
/// (a different formulation from the kernel's): (dx, dweight, dbias).
fn ln_bwd_ref(
    dy: &[f64],
    x: &[f64],
    c: usize,
    w: Option<&[f64]>,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / c;
    let n = c as f64;
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for r in 0..rows {
        let xr = &x[r * c..(r + 1) * c];
        let dyr = &dy[r * c..(r + 1) * c];
        let m = xr.iter().sum::<f64>() / n;
        let var = xr.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        let dxhat: Vec<f64> = (0..c).map(|i| dyr[i] * w.map_or(1.0, |w| w[i])).collect();
        let mut dvar = 0.0;
        for i in 0..c {
            dvar += dxhat[i] * (xr[i] - m) * -0.5 * inv.powi(3);
        }
        let mut dmean = 0.0;
        for i in 0..c {
            dmean += -dxhat[i] * inv + dvar * -2.0 * (xr[i] - m) / n;
        }
        for i in 0..c {
            dx[r * c + i] = dxhat[i] * inv + dvar * 2.0 * (xr[i] - m) / n + dmean / n;
            dw[i] += dyr[i] * (xr[i] - m) * inv;
            db[i] += dyr[i];
        }
    }
    (dx, dw, db)
}

/// Which affine parameters a case has.
#[derive(Clone, Copy, Debug)]
enum Affine {
    Both,
    None,
    WeightOnly,
}

fn params(c: usize, affine: Affine, seed: u64) -> (Option<Tensor>, Option<Tensor>) {
    let w = randn(&[c], 1.0, 0.5, seed);
    let b = randn(&[c], 0.0, 0.5, seed + 1);
    match affine {
        Affine::Both => (Some(w), Some(b)),
        Affine::None => (None, None),
        Affine::WeightOnly => (Some(w), None),
    }
}

/// The same tensor in three layouts.
fn layouts(t: &Tensor) -> [Tensor; 3] {
    [t.clone(), transposed_layout(t), strided_layout(t)]
}

const SHAPES: &[&[usize]] = &[
    &[7],
    &[1, 1],
    &[4, 1],
    &[3, 5],
    &[2, 3, 17],
    &[1, 1, 4],
    &[2, 5, 1],
    &[1, 9, 33],
    &[3, 2, 2, 8],
    &[1200, 3], // dweight/dbias reduce over ≥ 1000 rows
];

#[test]
fn forward_matches_reference() {
    let eps = 1e-5;
    for (k, &shape) in SHAPES.iter().enumerate() {
        let c = *shape.last().unwrap();
        for (j, affine) in [Affine::Both, Affine::None, Affine::WeightOnly]
            .into_iter()
            .enumerate()
        {
            let seed = 100 * k as u64 + 10 * j as u64;
            // Offset data: the mean is not small against the spread.
            let x = randn(shape, 2.0, 1.5, seed);
            let (w, b) = params(c, affine, seed + 2);
            let (wf, bf) = (w.as_ref().map(f64s), b.as_ref().map(f64s));
            let (y, mean, rstd) = ln_ref(&f64s(&x), c, wf.as_deref(), bf.as_deref(), eps as f64);
            for xl in layouts(&x) {
                let out = layer_norm(&xl, w.as_ref(), b.as_ref(), eps).unwrap();
                let what = format!("{shape:?} {affine:?} contiguous={}", xl.is_contiguous());
                assert_eq!(out.y.shape(), shape);
                assert_eq!(out.mean.shape(), &shape[..shape.len() - 1]);
                assert_eq!(out.rstd.shape(), &shape[..shape.len() - 1]);
                assert_close(&format!("y {what}"), &out.y.to_vec(), &y, 1e-5, 1e-6);
                assert_close(
                    &format!("mean {what}"),
                    &out.mean.to_vec(),
                    &mean,
                    1e-6,
                    1e-7,
                );
                assert_close(
                    &format!("rstd {what}"),
                    &out.rstd.to_vec(),
                    &rstd,
                    1e-6,
                    0.0,
                );
            }
        }
    }
}

#[test]
fn forward_is_precise_for_large_offsets() {
    // mean 1000, std 0.01: a naive f32 E[x²]−E[x]² would lose every digit.
    let x = randn(&[5, 64], 1000.0, 0.01, 7);
    let (y, mean, rstd) = ln_ref(&f64s(&x), 64, None, None, 1e-6);
    let out = layer_norm(&x, None, None, 1e-6).unwrap();
    assert_close("y", &out.y.to_vec(), &y, 1e-5, 1e-6);
    assert_close("mean", &out.mean.to_vec(), &mean, 1e-7, 0.0);
    assert_close("rstd", &out.rstd.to_vec(), &rstd, 1e-6, 0.0);
}

#[test]
fn constant_rows_give_bias() {
    // var = 0: y = 0·rstd·w + b exactly, rstd = 1/sqrt(eps).
    let x = Tensor::full(&[3, 4], 2.5).unwrap();
    let b = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0], &[4]).unwrap();
    let w = Tensor::full(&[4], 3.0).unwrap();
    let out = layer_norm(&x, Some(&w), Some(&b), 0.25).unwrap();
    assert_eq!(
        out.y.to_vec(),
        [b.to_vec(), b.to_vec(), b.to_vec()].concat()
    );
    assert_eq!(out.rstd.to_vec(), vec![2.0; 3]);
}

#[test]
fn backward_matches_reference_and_finite_differences() {
    let eps = 1e-5;
    for (k, &shape) in SHAPES.iter().enumerate() {
        let c = *shape.last().unwrap();
        for (j, affine) in [Affine::Both, Affine::None, Affine::WeightOnly]
            .into_iter()
            .enumerate()
        {
            let seed = 1000 + 100 * k as u64 + 10 * j as u64;
            let x = randn(shape, -1.0, 2.0, seed);
            let dy = randn(shape, 0.0, 1.0, seed + 1);
            let (w, b) = params(c, affine, seed + 2);
            let (xf, dyf) = (f64s(&x), f64s(&dy));
            let wf = w.as_ref().map(f64s);
            let bf = b.as_ref().map(f64s);
            let (dx, dw, db) = ln_bwd_ref(&dyf, &xf, c, wf.as_deref(), eps as f64);
            let fwd = layer_norm(&x, w.as_ref(), b.as_ref(), eps).unwrap();
            // dx cancels terms of size |dy·w·rstd|: its absolute error scales with them.
            let ts = term_scale(&dyf, wf.as_deref(), &f64s(&fwd.rstd));
            for (dyl, xl) in layouts(&dy).into_iter().zip(layouts(&x)) {
                let g = layer_norm_backward(&dyl, &xl, &fwd.mean, &fwd.rstd, w.as_ref()).unwrap();
                let what = format!("{shape:?} {affine:?} contiguous={}", xl.is_contiguous());
                assert_close_abs(&format!("dx {what}"), &g.dx.to_vec(), &dx, 1e-5, 1e-6 * ts);
                assert_close(&format!("dw {what}"), &g.dweight.to_vec(), &dw, 1e-5, 1e-5);
                assert_close(&format!("db {what}"), &g.dbias.to_vec(), &db, 1e-5, 1e-6);
            }
            if x.numel() > 200 {
                continue; // finite differences on the small shapes only
            }
            let g = layer_norm_backward(&dy, &x, &fwd.mean, &fwd.rstd, w.as_ref()).unwrap();
            let loss = |x: &[f64], w: Option<&[f64]>, b: Option<&[f64]>| {
                dot(&dyf, &ln_ref(x, c, w, b, eps as f64).0)
            };
            let h = 1e-5;
            let fdx = fd_grad(&xf, h, |x| loss(x, wf.as_deref(), bf.as_deref()));
            assert_close_abs("fd dx", &g.dx.to_vec(), &fdx, 1e-5, 1e-6 * ts);
            let wfd = wf.clone().unwrap_or(vec![1.0; c]);
            let fdw = fd_grad(&wfd, h, |w| loss(&xf, Some(w), bf.as_deref()));
            assert_close("fd dw", &g.dweight.to_vec(), &fdw, 1e-5, 1e-5);
            let bfd = bf.clone().unwrap_or(vec![0.0; c]);
            let fdb = fd_grad(&bfd, h, |b| loss(&xf, wf.as_deref(), Some(b)));
            assert_close("fd db", &g.dbias.to_vec(), &fdb, 1e-5, 1e-5);
        }
    }
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    // Large enough for the parallel path (> PAR_MIN_ELEMS) and many row chunks.
    let shape = [6, 197, 40];
    let x = randn(&shape, 0.5, 2.0, 11);
    let dy = randn(&shape, 0.0, 1.0, 12);
    let (w, b) = params(40, Affine::Both, 13);
    let run = |n| {
        set_num_threads(n).unwrap();
        let f = layer_norm(&x, w.as_ref(), b.as_ref(), 1e-6).unwrap();
        let g = layer_norm_backward(&dy, &x, &f.mean, &f.rstd, w.as_ref()).unwrap();
        [f.y, f.mean, f.rstd, g.dx, g.dweight, g.dbias].map(|t| bits(&t))
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(one, two);
    // And the parallel path is still right.
    let (xf, dyf) = (f64s(&x), f64s(&dy));
    let wf = f64s(w.as_ref().unwrap());
    let (_, dw, db) = ln_bwd_ref(&dyf, &xf, 40, Some(&wf), 1e-6);
    let to_f32 = |b: &Vec<u32>| b.iter().map(|&v| f32::from_bits(v)).collect::<Vec<_>>();
    assert_close("dw", &to_f32(&one[4]), &dw, 1e-5, 1e-5);
    assert_close("db", &to_f32(&one[5]), &db, 1e-5, 1e-6);
}

#[test]
fn empty_leading_dims_give_empty_outputs() {
    let x = Tensor::zeros(&[0, 4]).unwrap();
    let out = layer_norm(&x, None, None, 1e-5).unwrap();
    assert_eq!(out.y.shape(), &[0, 4]);
    assert_eq!(out.mean.shape(), &[0]);
    let g = layer_norm_backward(&x, &x, &out.mean, &out.rstd, None).unwrap();
    assert_eq!(g.dx.shape(), &[0, 4]);
    assert_eq!(g.dweight.to_vec(), vec![0.0; 4]);
}

#[test]
fn errors_name_the_op_and_what_was_expected() {
    const F: &str = "layer_norm";
    let x = randn(&[2, 3], 0.0, 1.0, 1);
    for eps in [0.0, -1e-5, f32::NAN, f32::INFINITY] {
        let m = err_of(layer_norm(&x, None, None, eps), F);
        assert!(m.contains("eps"), "{m}");
    }
    let m = err_of(layer_norm(&Tensor::scalar(1.0), None, None, 1e-5), F);
    assert!(m.contains("rank ≥ 1") && m.contains("0-d"), "{m}");
    let m = err_of(
        layer_norm(&Tensor::zeros(&[2, 0]).unwrap(), None, None, 1e-5),
        F,
    );
    assert!(m.contains("C ≥ 1") && m.contains("[2, 0]"), "{m}");
    let w4 = Tensor::ones(&[4]).unwrap();
    let m = err_of(layer_norm(&x, Some(&w4), None, 1e-5), F);
    assert!(
        m.contains("weight of shape [3]") && m.contains("[4]"),
        "{m}"
    );
    let b13 = Tensor::ones(&[1, 3]).unwrap();
    let m = err_of(layer_norm(&x, None, Some(&b13), 1e-5), F);
    assert!(
        m.contains("bias of shape [3]") && m.contains("[1, 3]"),
        "{m}"
    );

    const B: &str = "layer_norm_backward";
    let f = layer_norm(&x, None, None, 1e-5).unwrap();
    let dy_bad = Tensor::zeros(&[3, 2]).unwrap();
    let m = err_of(layer_norm_backward(&dy_bad, &x, &f.mean, &f.rstd, None), B);
    assert!(m.contains("[2, 3]") && m.contains("[3, 2]"), "{m}");
    let m = err_of(
        layer_norm_backward(&x, &x, &f.rstd.contiguous(), &x, None),
        B,
    );
    assert!(
        m.contains("rstd of shape [2]") && m.contains("[2, 3]"),
        "{m}"
    );
    let m = err_of(layer_norm_backward(&x, &x, &x, &f.rstd, None), B);
    assert!(m.contains("mean of shape [2]"), "{m}");
    let m = err_of(layer_norm_backward(&x, &x, &f.mean, &f.rstd, Some(&w4)), B);
    assert!(m.contains("weight of shape [3]"), "{m}");
    err_of(
        layer_norm_backward(&Tensor::scalar(1.0), &Tensor::scalar(1.0), &x, &x, None),
        B,
    );
}

/// The bits of a tensor's elements (so `-0.0` and `0.0` differ).
fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

/// The rows compiled for AVX-512 (and the intrinsic lane sums) give the same
/// bits as the base (SSE2) build of the same loops: rows of 128 (whole
/// blocks of 8) and of 131 (a tail), one chunk and parallel chunks, with and
/// without the affine parameters.
#[test]
fn vector_and_base_paths_give_the_same_bits() {
    use crate::vectorized::tests::on_both_paths;
    for (rows, c) in [(5, 128), (300, 131), (260, 128)] {
        let x = Tensor::randn(&[rows, c], 0.5, 2.0, 11).unwrap();
        let dy = Tensor::randn(&[rows, c], 0.0, 1.0, 12).unwrap();
        let w = Tensor::randn(&[c], 1.0, 0.3, 13).unwrap();
        let b = Tensor::randn(&[c], 0.0, 0.3, 14).unwrap();
        for affine in [false, true] {
            let (w, b) = if affine {
                (Some(&w), Some(&b))
            } else {
                (None, None)
            };
            on_both_paths(|| {
                let f = layer_norm(&x, w, b, 1e-5).unwrap();
                let g = layer_norm_backward(&dy, &x, &f.mean, &f.rstd, w).unwrap();
                [&f.y, &f.mean, &f.rstd, &g.dx, &g.dweight, &g.dbias].map(bits)
            });
        }
    }
}
