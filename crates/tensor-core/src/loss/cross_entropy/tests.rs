//! Cross-entropy against a naive f64 reference (PyTorch's formula), hand
//! computed values, finite differences and the soft/class-target equivalence.
//!
//! Tolerances: the loss is computed in f64 and rounded once, so it is asserted
//! to 1e-6 relative (rows are added in f64, so N ≥ 1000 needs no looser bound).
//! Each gradient entry is one rounding of `g/N·(p·Σt' − t')`, a difference of
//! terms ≤ |g|/N: asserted to 1e-6 relative + 1e-7·|g|/N. Finite differences
//! of the f64 reference (step 1e-5·max(1,|x|), error ~1e-10·|g|/N) get 1e-6·|g|/N.

use super::*;
use crate::Rng;
use crate::norm::test_util::*;
use crate::threads::set_num_threads;

/// Naive f64 targets: class indices or soft rows.
enum RefT<'a> {
    Classes(&'a [usize]),
    Soft(&'a [f64]),
}

/// PyTorch's definition, term by term, in f64.
fn ce_ref(x: &[f64], n: usize, k: usize, t: &RefT<'_>, eps: f64) -> f64 {
    let mut total = 0.0;
    for i in 0..n {
        let row = &x[i * k..(i + 1) * k];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let logp: Vec<f64> = row.iter().map(|v| v - lse).collect();
        total += match t {
            RefT::Classes(t) => {
                let nll = -logp[t[i]];
                let smooth = -logp.iter().sum::<f64>() / k as f64;
                (1.0 - eps) * nll + eps * smooth
            }
            RefT::Soft(t) => (0..k)
                .map(|j| -(t[i * k + j] * (1.0 - eps) + eps / k as f64) * logp[j])
                .sum(),
        };
    }
    total / n as f64
}

/// Random probability rows: half Dirichlet-like, half mixup of two one-hots.
fn soft_targets(n: usize, k: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let mut v = vec![0f32; n * k];
    for (i, row) in v.chunks_mut(k).enumerate() {
        if i % 2 == 0 {
            let e: Vec<f64> = (0..k).map(|_| rng.normal().exp()).collect();
            let s: f64 = e.iter().sum();
            for (o, x) in row.iter_mut().zip(e) {
                *o = (x / s) as f32;
            }
        } else {
            let lam = rng.next_f32();
            row[rng.below(k as u64) as usize] += lam;
            row[rng.below(k as u64) as usize] += 1.0 - lam;
        }
    }
    Tensor::from_vec(v, &[n, k]).unwrap()
}

fn classes(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(k as u64) as usize).collect()
}

const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 5),
    (4, 1),
    (3, 2),
    (7, 10),
    (64, 100),
    (1100, 3),
];

#[test]
fn hand_computed_values() {
    // logits [1, 2, 3], class 2: nll = ln(e + e² + e³) − 3 = 0.40760596;
    // mean_k(−log p_k) = lse − mean(x) = 3.40760596 − 2 = 1.40760596.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3]).unwrap();
    let nll = cross_entropy(&x, Targets::Classes(&[2]), 0.0).unwrap();
    // Rounded once to f32: within 0.5 ulp (3e-8) of the exact value.
    assert!((nll as f64 - 0.407_605_964).abs() < 5e-8, "{nll}");
    let ls = cross_entropy(&x, Targets::Classes(&[2]), 0.1).unwrap();
    assert!(
        (ls as f64 - (0.9 * 0.407_605_964 + 0.1 * 1.407_605_964)).abs() < 5e-8,
        "{ls}"
    );
    // Equal logits: ln K whatever the smoothing; gradient p − t'.
    let z = Tensor::zeros(&[2, 2]).unwrap();
    let l = cross_entropy(&z, Targets::Classes(&[0, 1]), 0.3).unwrap();
    assert!((l - 2f32.ln()).abs() < 1e-7, "{l}");
    let g = cross_entropy_backward(&z, Targets::Classes(&[0, 1]), 0.2, 1.0).unwrap();
    // t' = [0.9, 0.1] and [0.1, 0.9]; (0.5 − t')/2.
    assert_close("grad", &g.to_vec(), &[-0.2, 0.2, 0.2, -0.2], 1e-6, 0.0);
}

#[test]
fn forward_and_backward_match_reference_and_finite_differences() {
    for (c, &(n, k)) in SHAPES.iter().enumerate() {
        let seed = 10 * c as u64;
        let x = randn(&[n, k], 0.3, 2.5, seed);
        let xf = f64s(&x);
        let cls = classes(n, k, seed + 1);
        let soft = soft_targets(n, k, seed + 2);
        let softf = f64s(&soft);
        let upstream = 1.7f32;
        let gscale = upstream as f64 / n as f64;
        for eps in [0.0f32, 0.1] {
            for (tname, rt) in [
                ("classes", RefT::Classes(&cls)),
                ("soft", RefT::Soft(&softf)),
            ] {
                let want = ce_ref(&xf, n, k, &rt, eps as f64);
                let fd = (n * k <= 200).then(|| {
                    fd_grad(&xf, 1e-5, |x| {
                        upstream as f64 * ce_ref(x, n, k, &rt, eps as f64)
                    })
                });
                for (xl, sl) in [
                    (x.clone(), soft.clone()),
                    (transposed_layout(&x), transposed_layout(&soft)),
                    (strided_layout(&x), strided_layout(&soft)),
                ] {
                    let t = match rt {
                        RefT::Classes(_) => Targets::Classes(&cls),
                        RefT::Soft(_) => Targets::Soft(&sl),
                    };
                    let what = format!("[{n}, {k}] {tname} ε={eps} contig={}", xl.is_contiguous());
                    let loss = cross_entropy(&xl, t, eps).unwrap();
                    assert_close(&format!("loss {what}"), &[loss], &[want], 1e-6, 0.0);
                    let g = cross_entropy_backward(&xl, t, eps, upstream).unwrap();
                    assert_eq!(g.shape(), &[n, k]);
                    // Analytic reference: g/N·(p·Σt' − t').
                    let p = softmax_rows(&xf, k);
                    let mut an = vec![0.0; n * k];
                    for i in 0..n {
                        let tp: Vec<f64> = (0..k)
                            .map(|j| {
                                let t = match rt {
                                    RefT::Classes(c) => (c[i] == j) as u8 as f64,
                                    RefT::Soft(s) => s[i * k + j],
                                };
                                t * (1.0 - eps as f64) + eps as f64 / k as f64
                            })
                            .collect();
                        let st: f64 = tp.iter().sum();
                        for j in 0..k {
                            an[i * k + j] = gscale * (p[i * k + j] * st - tp[j]);
                        }
                    }
                    assert_close_abs(
                        &format!("grad {what}"),
                        &g.to_vec(),
                        &an,
                        1e-6,
                        1e-7 * gscale,
                    );
                    if let Some(fd) = &fd {
                        assert_close_abs(
                            &format!("fd {what}"),
                            &g.to_vec(),
                            fd,
                            1e-6,
                            1e-6 * gscale,
                        );
                    }
                }
            }
        }
    }
}

/// Row-wise softmax of `[N, K]` in f64.
fn softmax_rows(x: &[f64], k: usize) -> Vec<f64> {
    x.chunks(k)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            row.iter()
                .map(move |v| (v - m).exp() / s)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn one_hot_soft_targets_equal_class_targets() {
    // PyTorch smooths both the same way: t' = onehot·(1 − ε) + ε/K.
    let (n, k) = (9, 7);
    let x = randn(&[n, k], 0.0, 3.0, 5);
    let cls = classes(n, k, 6);
    let mut oh = vec![0f32; n * k];
    for (i, &c) in cls.iter().enumerate() {
        oh[i * k + c] = 1.0;
    }
    let oh = Tensor::from_vec(oh, &[n, k]).unwrap();
    for eps in [0.0, 0.1] {
        let a = cross_entropy(&x, Targets::Classes(&cls), eps).unwrap();
        let b = cross_entropy(&x, Targets::Soft(&oh), eps).unwrap();
        assert!((a - b).abs() <= 1e-6 * a.abs(), "{a} vs {b}");
        let ga = cross_entropy_backward(&x, Targets::Classes(&cls), eps, 1.0).unwrap();
        let gb = cross_entropy_backward(&x, Targets::Soft(&oh), eps, 1.0).unwrap();
        assert_close_abs("grad", &ga.to_vec(), &f64s(&gb), 1e-6, 1e-7 / n as f64);
    }
}

#[test]
fn large_logits_stay_finite() {
    let (n, k) = (8, 20);
    let x = randn(&[n, k], 0.0, 1e4, 3);
    let xf = f64s(&x);
    let cls = classes(n, k, 4);
    let soft = soft_targets(n, k, 5);
    for eps in [0.0, 0.1] {
        let l = cross_entropy(&x, Targets::Classes(&cls), eps).unwrap();
        assert!(l.is_finite());
        let want = ce_ref(&xf, n, k, &RefT::Classes(&cls), eps as f64);
        assert_close("loss", &[l], &[want], 1e-6, 0.0);
        let ls = cross_entropy(&x, Targets::Soft(&soft), eps).unwrap();
        assert_close(
            "soft loss",
            &[ls],
            &[ce_ref(&xf, n, k, &RefT::Soft(&f64s(&soft)), eps as f64)],
            1e-6,
            0.0,
        );
        let g = cross_entropy_backward(&x, Targets::Classes(&cls), eps, 1.0).unwrap();
        assert!(g.all_finite());
        // Each row's gradient sums to 0 (Σp = Σt' = 1).
        for row in g.to_vec().chunks(k) {
            assert!(row.iter().map(|&v| v as f64).sum::<f64>().abs() < 1e-7);
        }
    }
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    let (n, k) = (2000, 100);
    let x = randn(&[n, k], 0.0, 2.0, 8);
    let cls = classes(n, k, 9);
    let soft = soft_targets(n, k, 10);
    let run = |threads| {
        set_num_threads(threads).unwrap();
        let mut out = Vec::new();
        for t in [Targets::Classes(&cls), Targets::Soft(&soft)] {
            out.push(vec![cross_entropy(&x, t, 0.1).unwrap().to_bits()]);
            out.push(bits(&cross_entropy_backward(&x, t, 0.1, 1.0).unwrap()));
        }
        out
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn errors_name_the_op_and_what_was_expected() {
    const F: &str = "cross_entropy";
    let x = randn(&[2, 3], 0.0, 1.0, 1);
    let m = err_of(cross_entropy(&x, Targets::Classes(&[0, 3]), 0.0), F);
    assert!(
        m.contains("target 3 at position 1") && m.contains("K = 3"),
        "{m}"
    );
    let m = err_of(cross_entropy(&x, Targets::Classes(&[0]), 0.0), F);
    assert!(
        m.contains("2 class targets") && m.contains("got 1 targets"),
        "{m}"
    );
    let m = err_of(
        cross_entropy(&x, Targets::Soft(&Tensor::zeros(&[2, 4]).unwrap()), 0.0),
        F,
    );
    assert!(m.contains("[2, 3]") && m.contains("[2, 4]"), "{m}");
    let m = err_of(
        cross_entropy(&Tensor::zeros(&[3]).unwrap(), Targets::Classes(&[0]), 0.0),
        F,
    );
    assert!(m.contains("N×K") && m.contains("[3]"), "{m}");
    let m = err_of(
        cross_entropy(
            &Tensor::zeros(&[2, 0]).unwrap(),
            Targets::Classes(&[0, 0]),
            0.0,
        ),
        F,
    );
    assert!(m.contains("K ≥ 1") && m.contains("[2, 0]"), "{m}");
    let m = err_of(
        cross_entropy(&Tensor::zeros(&[0, 3]).unwrap(), Targets::Classes(&[]), 0.0),
        F,
    );
    assert!(m.contains("N ≥ 1") && m.contains("[0, 3]"), "{m}");
    for ls in [-0.1, 1.1, f32::NAN] {
        let m = err_of(cross_entropy(&x, Targets::Classes(&[0, 1]), ls), F);
        assert!(m.contains("label_smoothing must be in [0, 1]"), "{m}");
    }
    const B: &str = "cross_entropy_backward";
    let m = err_of(
        cross_entropy_backward(&x, Targets::Classes(&[5, 0]), 0.0, 1.0),
        B,
    );
    assert!(m.contains("target 5 at position 0"), "{m}");
    let t32 = Tensor::zeros(&[3, 2]).unwrap();
    err_of(cross_entropy_backward(&x, Targets::Soft(&t32), 0.0, 1.0), B);
    err_of(
        cross_entropy_backward(&x, Targets::Classes(&[0, 1]), 2.0, 1.0),
        B,
    );
}
