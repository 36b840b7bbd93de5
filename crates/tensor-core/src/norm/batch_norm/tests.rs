//! BatchNorm against naive f64 references, finite differences and a hand
//! computation of the running-statistics update.
//!
//! Tolerances as for LayerNorm (see `layer_norm/tests.rs`): outputs are
//! rounded once from f64 plus the f32 affine multiply-add, so forward results
//! are asserted to 1e-5 relative + 1e-6·max; dweight/dbias (from the
//! f32-rounded saved mean/invstd) to 1e-5 + 1e-5·max. The training `dx`
//! cancels terms of size |dy·w·invstd| (`dy − mean(dy) − x̂·mean(dy·x̂)`, ~0 for
//! two values per channel), so its absolute bound is 1e-6·max|dy|·max|w|·max(invstd). Channel sums are
//! accumulated in f64, so the ≥ 1000-element reductions need no looser bound.
//! Finite differences are of the f64 reference (step 1e-5·max(1,|x|)).

use super::*;
use crate::norm::test_util::*;
use crate::threads::set_num_threads;

type Dims = (usize, usize, usize);

fn dims_of(shape: &[usize]) -> Dims {
    (shape[0], shape[1], shape[2..].iter().product())
}

/// Two-pass f64 batch statistics: (mean, biased var) per channel.
fn stats_ref(x: &[f64], (n, c, s): Dims) -> (Vec<f64>, Vec<f64>) {
    let cnt = (n * s) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| (0..s).map(move |j| (i * c + ch) * s + j))
            .map(|k| x[k])
            .collect();
        mean[ch] = vals.iter().sum::<f64>() / cnt;
        var[ch] = vals.iter().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / cnt;
    }
    (mean, var)
}

/// `(x − mean)/sqrt(var + eps)·w + b` per channel, in f64.
fn apply_ref(
    x: &[f64],
    (_, c, s): Dims,
    mean: &[f64],
    var: &[f64],
    w: Option<&[f64]>,
    b: Option<&[f64]>,
    eps: f64,
) -> Vec<f64> {
    (0..x.len())
        .map(|k| {
            let ch = (k / s) % c;
            let v = (x[k] - mean[ch]) / (var[ch] + eps).sqrt();
            v * w.map_or(1.0, |w| w[ch]) + b.map_or(0.0, |b| b[ch])
        })
        .collect()
}

fn train_ref(x: &[f64], d: Dims, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let (mean, var) = stats_ref(x, d);
    apply_ref(x, d, &mean, &var, w, b, eps)
}

/// Classic chain rule through the batch mean and variance (Ioffe & Szegedy),
/// a formulation independent of the kernel's: (dx, dweight, dbias).
fn train_bwd_ref(
    dy: &[f64],
    x: &[f64],
    d @ (n, c, s): Dims,
    w: Option<&[f64]>,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = stats_ref(x, d);
    let cnt = (n * s) as f64;
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    let ch_of = |k: usize| (k / s) % c;
    let (mut dvar, mut dmean) = (vec![0.0; c], vec![0.0; c]);
    for k in 0..x.len() {
        let ch = ch_of(k);
        let inv = 1.0 / (var[ch] + eps).sqrt();
        let dxhat = dy[k] * w.map_or(1.0, |w| w[ch]);
        dvar[ch] += dxhat * (x[k] - mean[ch]) * -0.5 * inv.powi(3);
        dw[ch] += dy[k] * (x[k] - mean[ch]) * inv;
        db[ch] += dy[k];
    }
    for k in 0..x.len() {
        let ch = ch_of(k);
        let inv = 1.0 / (var[ch] + eps).sqrt();
        let dxhat = dy[k] * w.map_or(1.0, |w| w[ch]);
        dmean[ch] += -dxhat * inv + dvar[ch] * -2.0 * (x[k] - mean[ch]) / cnt;
    }
    for k in 0..x.len() {
        let ch = ch_of(k);
        let inv = 1.0 / (var[ch] + eps).sqrt();
        let dxhat = dy[k] * w.map_or(1.0, |w| w[ch]);
        dx[k] = dxhat * inv + dvar[ch] * 2.0 * (x[k] - mean[ch]) / cnt + dmean[ch] / cnt;
    }
    (dx, dw, db)
}

const SHAPES: &[&[usize]] = &[
    &[2, 3],
    &[5, 1],
    &[1, 4, 3],
    &[3, 2, 1],
    &[2, 3, 4, 5],
    &[1, 2, 1, 2],
    &[7, 5, 3, 1],
    &[1, 3, 7, 9],
    &[40, 3, 5, 6], // 1200 values per channel
    &[1100, 3],
];

fn layouts(t: &Tensor) -> [Tensor; 3] {
    [t.clone(), transposed_layout(t), strided_layout(t)]
}

fn params(c: usize, affine: bool, seed: u64) -> (Option<Tensor>, Option<Tensor>) {
    if affine {
        (
            Some(randn(&[c], 1.0, 0.5, seed)),
            Some(randn(&[c], 0.0, 0.5, seed + 1)),
        )
    } else {
        (None, None)
    }
}

#[test]
fn train_forward_and_running_stats_match_reference() {
    let eps = 1e-5;
    for (k, &shape) in SHAPES.iter().enumerate() {
        let d @ (n, c, s) = dims_of(shape);
        for affine in [true, false] {
            let seed = 10 * k as u64 + affine as u64;
            let x = randn(shape, 3.0, 2.0, seed);
            let (w, b) = params(c, affine, seed + 100);
            let (wf, bf) = (w.as_ref().map(f64s), b.as_ref().map(f64s));
            let xf = f64s(&x);
            let (mean, var) = stats_ref(&xf, d);
            let y = apply_ref(
                &xf,
                d,
                &mean,
                &var,
                wf.as_deref(),
                bf.as_deref(),
                eps as f64,
            );
            let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps as f64).sqrt()).collect();
            let rm0 = randn(&[c], 0.0, 1.0, seed + 200);
            let rv0 = Tensor::from_vec(
                randn(&[c], 0.0, 1.0, seed + 300)
                    .to_vec()
                    .iter()
                    .map(|v| v.abs() + 0.1)
                    .collect(),
                &[c],
            )
            .unwrap();
            let cnt = (n * s) as f64;
            let rm_want: Vec<f64> = f64s(&rm0)
                .iter()
                .zip(&mean)
                .map(|(r, m)| 0.9 * r + 0.1 * m)
                .collect();
            let rv_want: Vec<f64> = f64s(&rv0)
                .iter()
                .zip(&var)
                .map(|(r, v)| 0.9 * r + 0.1 * v * cnt / (cnt - 1.0))
                .collect();
            for xl in layouts(&x) {
                let what = format!(
                    "{shape:?} affine={affine} contiguous={}",
                    xl.is_contiguous()
                );
                let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
                let out = batch_norm_train(
                    &xl,
                    w.as_ref(),
                    b.as_ref(),
                    Some(&mut rm),
                    Some(&mut rv),
                    0.1,
                    eps,
                )
                .unwrap();
                assert_eq!(out.y.shape(), shape);
                assert_close(&format!("y {what}"), &out.y.to_vec(), &y, 1e-5, 1e-6);
                assert_close(
                    &format!("mean {what}"),
                    &out.mean.to_vec(),
                    &mean,
                    1e-6,
                    1e-7,
                );
                assert_close(
                    &format!("invstd {what}"),
                    &out.invstd.to_vec(),
                    &invstd,
                    1e-6,
                    0.0,
                );
                assert_close(
                    &format!("running_mean {what}"),
                    &rm.to_vec(),
                    &rm_want,
                    1e-6,
                    1e-7,
                );
                assert_close(
                    &format!("running_var {what}"),
                    &rv.to_vec(),
                    &rv_want,
                    1e-6,
                    0.0,
                );
                // The inputs' stored statistics are untouched by the update.
                assert_eq!(rm0.to_vec(), randn(&[c], 0.0, 1.0, seed + 200).to_vec());
            }
        }
    }
}

#[test]
fn running_stats_update_by_hand() {
    // x: [N=4, C=2]. Channel 0: 1, 2, 3, 4 → mean 2.5, biased var 1.25,
    // unbiased var 5/3. Channel 1: 0, 0, 0, 8 → mean 2, biased var 12,
    // unbiased var 16.
    let x = Tensor::from_vec(vec![1., 0., 2., 0., 3., 0., 4., 8.], &[4, 2]).unwrap();
    let mut rm = Tensor::from_vec(vec![0.5, -1.0], &[2]).unwrap();
    let mut rv = Tensor::from_vec(vec![2.0, 0.5], &[2]).unwrap();
    let out = batch_norm_train(&x, None, None, Some(&mut rm), Some(&mut rv), 0.1, 1e-5).unwrap();
    // running_mean: 0.9·0.5 + 0.1·2.5 = 0.7; 0.9·(−1) + 0.1·2 = −0.7.
    // running_var: 0.9·2 + 0.1·5/3 = 1.9666…; 0.9·0.5 + 0.1·16 = 2.05.
    let want_rm = [0.7f32, -0.7];
    let want_rv = [1.8 + 1.0 / 6.0, 2.05f32];
    for (g, w) in rm
        .to_vec()
        .iter()
        .zip(want_rm)
        .chain(rv.to_vec().iter().zip(want_rv))
    {
        assert!((g - w).abs() <= 1e-6, "got {g}, want {w}");
    }
    assert_eq!(out.mean.to_vec(), vec![2.5, 2.0]);
    let want_invstd = [1.0 / (1.25f64 + 1e-5).sqrt(), 1.0 / (12.0f64 + 1e-5).sqrt()];
    assert_close("invstd", &out.invstd.to_vec(), &want_invstd, 1e-7, 0.0);
    // Normalised with the biased variance: channel 0, x = 1 → −1.5/sqrt(1.25+eps).
    assert_close(
        "y[0]",
        &[out.y.get(&[0, 0]).unwrap()],
        &[-1.5 * want_invstd[0]],
        1e-6,
        0.0,
    );

    // momentum 0 leaves the running stats alone, momentum 1 replaces them.
    let (mut rm, mut rv) = (Tensor::ones(&[2]).unwrap(), Tensor::ones(&[2]).unwrap());
    batch_norm_train(&x, None, None, Some(&mut rm), Some(&mut rv), 0.0, 1e-5).unwrap();
    assert_eq!((rm.to_vec(), rv.to_vec()), (vec![1.0; 2], vec![1.0; 2]));
    batch_norm_train(&x, None, None, Some(&mut rm), Some(&mut rv), 1.0, 1e-5).unwrap();
    assert_eq!(rm.to_vec(), vec![2.5, 2.0]);
    assert_close("rv", &rv.to_vec(), &[5.0 / 3.0, 16.0], 1e-7, 0.0);
    // Only one of the two, or a non-contiguous running stat.
    let mut rm = transposed_layout(&Tensor::zeros(&[2]).unwrap());
    batch_norm_train(&x, None, None, Some(&mut rm), None, 0.5, 1e-5).unwrap();
    assert_eq!(rm.to_vec(), vec![1.25, 1.0]);
}

#[test]
fn train_backward_matches_reference_and_finite_differences() {
    let eps = 1e-5;
    for (k, &shape) in SHAPES.iter().enumerate() {
        let d @ (_, c, _) = dims_of(shape);
        for affine in [true, false] {
            let seed = 500 + 10 * k as u64 + affine as u64;
            let x = randn(shape, -1.0, 2.0, seed);
            let dy = randn(shape, 0.0, 1.0, seed + 1);
            let (w, b) = params(c, affine, seed + 2);
            let (xf, dyf) = (f64s(&x), f64s(&dy));
            let (wf, bf) = (w.as_ref().map(f64s), b.as_ref().map(f64s));
            let (dx, dw, db) = train_bwd_ref(&dyf, &xf, d, wf.as_deref(), eps as f64);
            let fwd = batch_norm_train(&x, w.as_ref(), b.as_ref(), None, None, 0.1, eps).unwrap();
            // dx cancels terms of size |dy·w·rstd|: its absolute error scales with them.
            let ts = term_scale(&dyf, wf.as_deref(), &f64s(&fwd.invstd));
            for (dyl, xl) in layouts(&dy).into_iter().zip(layouts(&x)) {
                let what = format!(
                    "{shape:?} affine={affine} contiguous={}",
                    xl.is_contiguous()
                );
                let g = batch_norm_backward(&dyl, &xl, &fwd.mean, &fwd.invstd, w.as_ref()).unwrap();
                assert_close_abs(&format!("dx {what}"), &g.dx.to_vec(), &dx, 1e-5, 1e-6 * ts);
                assert_close(&format!("dw {what}"), &g.dweight.to_vec(), &dw, 1e-5, 1e-5);
                assert_close(&format!("db {what}"), &g.dbias.to_vec(), &db, 1e-5, 1e-6);
            }
            if x.numel() > 200 {
                continue;
            }
            let g = batch_norm_backward(&dy, &x, &fwd.mean, &fwd.invstd, w.as_ref()).unwrap();
            let loss = |x: &[f64], w: Option<&[f64]>, b: Option<&[f64]>| {
                dot(&dyf, &train_ref(x, d, w, b, eps as f64))
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

/// Random running statistics (not the defaults 0 and 1, which hide scale errors).
fn running(c: usize, seed: u64) -> (Tensor, Tensor) {
    let rm = randn(&[c], 0.5, 1.0, seed);
    let rv = randn(&[c], 0.0, 1.0, seed + 1)
        .to_vec()
        .iter()
        .map(|v| v * v + 0.05)
        .collect();
    (rm, Tensor::from_vec(rv, &[c]).unwrap())
}

#[test]
fn eval_forward_and_backward_match_reference_and_finite_differences() {
    let eps = 1e-3;
    let mut shapes = SHAPES.to_vec();
    shapes.push(&[1, 3]); // batch 1 with one value per channel is fine in eval
    for (k, &shape) in shapes.iter().enumerate() {
        let d @ (_, c, s) = dims_of(shape);
        for affine in [true, false] {
            let seed = 900 + 10 * k as u64 + affine as u64;
            let x = randn(shape, 1.0, 2.0, seed);
            let dy = randn(shape, 0.0, 1.0, seed + 1);
            let (w, b) = params(c, affine, seed + 2);
            let (rm, rv) = running(c, seed + 3);
            let (xf, dyf, rmf, rvf) = (f64s(&x), f64s(&dy), f64s(&rm), f64s(&rv));
            let (wf, bf) = (w.as_ref().map(f64s), b.as_ref().map(f64s));
            let fwd = |x: &[f64], w: Option<&[f64]>, b: Option<&[f64]>| {
                apply_ref(x, d, &rmf, &rvf, w, b, eps as f64)
            };
            let y = fwd(&xf, wf.as_deref(), bf.as_deref());
            // Naive backward: the statistics are constants.
            let inv: Vec<f64> = rvf.iter().map(|v| 1.0 / (v + eps as f64).sqrt()).collect();
            let (mut dx, mut dw, mut db) = (vec![0.0; xf.len()], vec![0.0; c], vec![0.0; c]);
            for k in 0..xf.len() {
                let ch = (k / s) % c;
                dx[k] = dyf[k] * wf.as_ref().map_or(1.0, |w| w[ch]) * inv[ch];
                dw[ch] += dyf[k] * (xf[k] - rmf[ch]) * inv[ch];
                db[ch] += dyf[k];
            }
            for (dyl, xl) in layouts(&dy).into_iter().zip(layouts(&x)) {
                let what = format!(
                    "{shape:?} affine={affine} contiguous={}",
                    xl.is_contiguous()
                );
                let out = batch_norm_eval(&xl, w.as_ref(), b.as_ref(), &rm, &rv, eps).unwrap();
                assert_close(&format!("y {what}"), &out.to_vec(), &y, 1e-5, 1e-6);
                let g = batch_norm_eval_backward(&dyl, &xl, &rm, &rv, w.as_ref(), eps).unwrap();
                assert_close(&format!("dx {what}"), &g.dx.to_vec(), &dx, 1e-6, 0.0);
                assert_close(&format!("dw {what}"), &g.dweight.to_vec(), &dw, 1e-5, 1e-6);
                assert_close(&format!("db {what}"), &g.dbias.to_vec(), &db, 1e-5, 1e-6);
            }
            if x.numel() > 200 {
                continue;
            }
            let g = batch_norm_eval_backward(&dy, &x, &rm, &rv, w.as_ref(), eps).unwrap();
            let loss = |x: &[f64], w: Option<&[f64]>, b: Option<&[f64]>| dot(&dyf, &fwd(x, w, b));
            let h = 1e-5;
            let fdx = fd_grad(&xf, h, |x| loss(x, wf.as_deref(), bf.as_deref()));
            assert_close("fd dx", &g.dx.to_vec(), &fdx, 1e-5, 1e-5);
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
fn train_with_large_offset_keeps_precision() {
    let x = randn(&[16, 3, 4, 4], 1000.0, 0.01, 77);
    let xf = f64s(&x);
    let d = dims_of(x.shape());
    let (mean, var) = stats_ref(&xf, d);
    let out = batch_norm_train(&x, None, None, None, None, 0.1, 1e-8).unwrap();
    assert_close(
        "y",
        &out.y.to_vec(),
        &train_ref(&xf, d, None, None, 1e-8),
        1e-5,
        1e-6,
    );
    assert_close("mean", &out.mean.to_vec(), &mean, 1e-7, 0.0);
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-8).sqrt()).collect();
    assert_close("invstd", &out.invstd.to_vec(), &inv, 1e-6, 0.0);
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    // All above the parallel threshold: several sample chunks ([2000, 24]),
    // one chunk split over channels ([1, 8, 64, 64]), and a 4-d batch.
    for (i, shape) in [&[2000usize, 24][..], &[1, 8, 64, 64], &[4, 16, 30, 30]]
        .iter()
        .enumerate()
    {
        let c = shape[1];
        let x = randn(shape, 0.3, 1.7, 40 + i as u64);
        let dy = randn(shape, 0.0, 1.0, 50 + i as u64);
        let (w, b) = params(c, true, 60 + i as u64);
        let (rm0, rv0) = running(c, 70 + i as u64);
        let run = |n| {
            set_num_threads(n).unwrap();
            let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
            let f = batch_norm_train(
                &x,
                w.as_ref(),
                b.as_ref(),
                Some(&mut rm),
                Some(&mut rv),
                0.1,
                1e-5,
            )
            .unwrap();
            let g = batch_norm_backward(&dy, &x, &f.mean, &f.invstd, w.as_ref()).unwrap();
            let e = batch_norm_eval(&x, w.as_ref(), b.as_ref(), &rm, &rv, 1e-5).unwrap();
            let ge = batch_norm_eval_backward(&dy, &x, &rm, &rv, w.as_ref(), 1e-5).unwrap();
            [
                f.y, f.mean, f.invstd, rm, rv, g.dx, g.dweight, g.dbias, e, ge.dx, ge.dweight,
            ]
            .map(|t| bits(&t))
        };
        let one = run(1);
        assert_eq!(one, run(2), "{shape:?}");
        // The parallel path is also right.
        let d = dims_of(shape);
        let (_, dw, db) = train_bwd_ref(
            &f64s(&dy),
            &f64s(&x),
            d,
            Some(&f64s(w.as_ref().unwrap())),
            1e-5,
        );
        let f32s = |b: &Vec<u32>| b.iter().map(|&v| f32::from_bits(v)).collect::<Vec<_>>();
        assert_close("dw", &f32s(&one[6]), &dw, 1e-5, 1e-5);
        assert_close("db", &f32s(&one[7]), &db, 1e-5, 1e-6);
    }
}

#[test]
fn empty_batch_in_eval_gives_empty_output() {
    let x = Tensor::zeros(&[0, 3, 2, 2]).unwrap();
    let (rm, rv) = running(3, 1);
    assert_eq!(
        batch_norm_eval(&x, None, None, &rm, &rv, 1e-5)
            .unwrap()
            .shape(),
        &[0, 3, 2, 2]
    );
    let g = batch_norm_eval_backward(&x, &x, &rm, &rv, None, 1e-5).unwrap();
    assert_eq!(g.dbias.to_vec(), vec![0.0; 3]);
}

#[test]
fn errors_name_the_op_and_what_was_expected() {
    const T: &str = "batch_norm_train";
    let x = randn(&[4, 3, 2], 0.0, 1.0, 1);
    let c3 = Tensor::ones(&[3]).unwrap();
    let c4 = Tensor::ones(&[4]).unwrap();
    for bad in [
        Tensor::ones(&[3]).unwrap(),
        Tensor::ones(&[2, 3, 1, 1, 1]).unwrap(),
    ] {
        let m = err_of(batch_norm_train(&bad, None, None, None, None, 0.1, 1e-5), T);
        assert!(
            m.contains("[N, C, H, W]") && m.contains(&format!("{:?}", bad.shape())),
            "{m}"
        );
    }
    for eps in [0.0, -1.0, f32::NAN] {
        let m = err_of(batch_norm_train(&x, None, None, None, None, 0.1, eps), T);
        assert!(m.contains("eps"), "{m}");
    }
    for mom in [-0.1, 1.5, f32::NAN] {
        let m = err_of(batch_norm_train(&x, None, None, None, None, mom, 1e-5), T);
        assert!(m.contains("momentum must be in [0, 1]"), "{m}");
    }
    let m = err_of(
        batch_norm_train(&x, Some(&c4), None, None, None, 0.1, 1e-5),
        T,
    );
    assert!(
        m.contains("weight of shape [3]") && m.contains("[4]"),
        "{m}"
    );
    let m = err_of(
        batch_norm_train(&x, None, Some(&c4), None, None, 0.1, 1e-5),
        T,
    );
    assert!(m.contains("bias of shape [3]"), "{m}");
    let mut r4 = c4.clone();
    let m = err_of(
        batch_norm_train(&x, None, None, Some(&mut r4), None, 0.1, 1e-5),
        T,
    );
    assert!(
        m.contains("running_mean of shape [3]") && m.contains("[4]"),
        "{m}"
    );
    let m = err_of(
        batch_norm_train(&x, None, None, None, Some(&mut r4), 0.1, 1e-5),
        T,
    );
    assert!(m.contains("running_var of shape [3]"), "{m}");
    assert_eq!(r4, c4, "a failed call must not touch the running stats");
    for one in [&[1usize, 3][..], &[1, 3, 1], &[1, 3, 1, 1], &[0, 3]] {
        let t = Tensor::zeros(one).unwrap();
        let m = err_of(batch_norm_train(&t, None, None, None, None, 0.1, 1e-5), T);
        assert!(
            m.contains("expected more than 1 value per channel when training"),
            "{m}"
        );
    }

    const B: &str = "batch_norm_backward";
    let f = batch_norm_train(&x, None, None, None, None, 0.1, 1e-5).unwrap();
    let m = err_of(batch_norm_backward(&c4, &c4, &f.mean, &f.invstd, None), B);
    assert!(m.contains("[N, C]"), "{m}");
    let dy_bad = Tensor::zeros(&[4, 3, 3]).unwrap();
    let m = err_of(
        batch_norm_backward(&dy_bad, &x, &f.mean, &f.invstd, None),
        B,
    );
    assert!(m.contains("[4, 3, 2]") && m.contains("[4, 3, 3]"), "{m}");
    let m = err_of(batch_norm_backward(&x, &x, &c4, &f.invstd, None), B);
    assert!(m.contains("mean of shape [3]"), "{m}");
    let m = err_of(batch_norm_backward(&x, &x, &f.mean, &c4, None), B);
    assert!(m.contains("invstd of shape [3]"), "{m}");
    let m = err_of(
        batch_norm_backward(&x, &x, &f.mean, &f.invstd, Some(&c4)),
        B,
    );
    assert!(m.contains("weight of shape [3]"), "{m}");

    const E: &str = "batch_norm_eval";
    let m = err_of(batch_norm_eval(&x, None, None, &c4, &c3, 1e-5), E);
    assert!(m.contains("running_mean of shape [3]"), "{m}");
    let m = err_of(batch_norm_eval(&x, None, None, &c3, &c4, 1e-5), E);
    assert!(m.contains("running_var of shape [3]"), "{m}");
    let neg = Tensor::from_vec(vec![1.0, -0.5, 1.0], &[3]).unwrap();
    let m = err_of(batch_norm_eval(&x, None, None, &c3, &neg, 1e-5), E);
    assert!(
        m.contains("running_var must be ≥ 0") && m.contains("channel 1"),
        "{m}"
    );
    let nan = Tensor::from_vec(vec![1.0, 1.0, f32::NAN], &[3]).unwrap();
    err_of(batch_norm_eval(&x, None, None, &c3, &nan, 1e-5), E);
    err_of(batch_norm_eval(&x, None, None, &c3, &c3, 0.0), E);
    err_of(batch_norm_eval(&x, Some(&c4), None, &c3, &c3, 1e-5), E);

    const EB: &str = "batch_norm_eval_backward";
    err_of(
        batch_norm_eval_backward(&dy_bad, &x, &c3, &c3, None, 1e-5),
        EB,
    );
    err_of(batch_norm_eval_backward(&x, &x, &c4, &c3, None, 1e-5), EB);
    err_of(
        batch_norm_eval_backward(&x, &x, &c3, &c3, Some(&c4), 1e-5),
        EB,
    );
    err_of(
        batch_norm_eval_backward(&x, &x, &c3, &c3, None, f32::INFINITY),
        EB,
    );
}

/// BatchNorm's statistics and gradients use the lane sums that run with
/// AVX-512 intrinsics where the CPU has them: the same bits as the base
/// loops (planes of 49, so every channel sum has a tail).
#[test]
fn vector_and_base_paths_give_the_same_bits() {
    use crate::vectorized::tests::on_both_paths;
    let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let x = Tensor::randn(&[6, 5, 7, 7], 0.5, 2.0, 21).unwrap();
    let dy = Tensor::randn(&[6, 5, 7, 7], 0.0, 1.0, 22).unwrap();
    let (w, b) = params(5, true, 23);
    on_both_paths(|| {
        let f = batch_norm_train(&x, w.as_ref(), b.as_ref(), None, None, 0.1, 1e-5).unwrap();
        let g = batch_norm_backward(&dy, &x, &f.mean, &f.invstd, w.as_ref()).unwrap();
        [&f.y, &f.mean, &f.invstd, &g.dx, &g.dweight, &g.dbias].map(bits)
    });
}
