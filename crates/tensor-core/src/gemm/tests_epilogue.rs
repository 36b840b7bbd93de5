//! The fused epilogue, `C = act(α·A·B + β·C + bias)` with optional
//! pre-activation and derivative stores, against a naive f64 reference, on
//! every backend.
//!
//! Tolerances: the pre-activation `z` carries the GEMM's rounding (see
//! `tests.rs`: `(k + 3)·u` times `|α|Σ|ab| + |βc|`) plus one rounding of the
//! bias addition (`u·|z|`, asserted as `2u·(scale + |b|)`). The stored output
//! must then be *exactly* `act(z)` as the elementwise kernels compute it from
//! the stored `z` (bit equality, no tolerance), the stored derivative exactly
//! `act′(z)` as the backward kernels compute it, and the output within `2e-6·max(1, |z|)`
//! of the f64 activation of the exact `z` (A&S erf: ≤ 7e-7 absolute, scaled
//! by |z|/2; the derivative of GELU is ≤ 1.13 and multiplies z's error).

use super::tests::{CLayout, U, backends, operand, randv};
use super::*;
use crate::Rng;

fn act_f64(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Identity => z,
        Activation::Gelu => 0.5 * z * (1.0 + libm::erf(z / 2f64.sqrt())),
        Activation::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z * z * z);
            0.5 * z * (1.0 + u.tanh())
        }
        Activation::Relu => z.max(0.0),
    }
}

/// Which bias a case uses.
#[derive(Clone, Copy, Debug)]
enum BiasKind {
    None,
    Col,
    Row,
}

struct Case {
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    cl: CLayout,
    alpha: f32,
    beta: f32,
    bias: BiasKind,
    act: Activation,
    pre: bool,
    deriv: bool,
}

fn check(rng: &mut Rng, cs: &Case) {
    let Case {
        m,
        k,
        n,
        ta,
        tb,
        cl,
        alpha,
        beta,
        bias,
        act,
        pre,
        deriv,
    } = *cs;
    let (av, ars, acs) = operand(rng, m, k, ta);
    let (bv, brs, bcs) = operand(rng, k, n, tb);
    let (crs, ccs, clen) = cl.strides(m, n);
    let a = MatRef::new(&av, m, k, ars, acs).unwrap();
    let b = MatRef::new(&bv, k, n, brs, bcs).unwrap();
    let c0 = if beta == 0.0 {
        vec![f32::NAN; clen]
    } else {
        randv(rng, clen)
    };
    let bias_v = randv(rng, if matches!(bias, BiasKind::Row) { m } else { n });
    for backend in backends() {
        let mut c = c0.clone();
        let mut z = vec![f32::NAN; clen];
        let mut d = vec![f32::NAN; clen];
        let epi = Epilogue {
            bias: match bias {
                BiasKind::None => Bias::None,
                BiasKind::Col => Bias::PerColumn(&bias_v),
                BiasKind::Row => Bias::PerRow(&bias_v),
            },
            act,
            pre_activation: pre.then_some(&mut z[..]),
            derivative: deriv.then_some(&mut d[..]),
        };
        let cm = MatMut::new(&mut c, m, n, crs, ccs).unwrap();
        gemm_batched_with(backend, 1, alpha, a, 0, b, 0, beta, cm, 0, epi).unwrap();
        let what = format!(
            "{backend:?} {m}x{k}x{n} ta={ta} tb={tb} {cl:?} α={alpha} β={beta} {bias:?} {act:?} pre={pre} deriv={deriv}"
        );
        for i in 0..m {
            for j in 0..n {
                let at = i * crs + j * ccs;
                let (mut s, mut abs) = (0f64, 0f64);
                for p in 0..k {
                    let x = a.at(i, p).unwrap() as f64 * b.at(p, j).unwrap() as f64;
                    s += x;
                    abs += x.abs();
                }
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta as f64 * c0[at] as f64
                };
                let bb = match bias {
                    BiasKind::None => 0.0,
                    BiasKind::Col => bias_v[j] as f64,
                    BiasKind::Row => bias_v[i] as f64,
                };
                let want_z = alpha as f64 * s + old + bb;
                let scale = (alpha as f64).abs() * abs + old.abs();
                let tol = (k as f64 + 3.0) * U * scale + 2.0 * U * (scale + bb.abs()) + 1e-30;
                let got = c[at];
                // Without a pre-activation output, recover z only for identity.
                let got_z = if pre {
                    z[at]
                } else if act == Activation::Identity {
                    got
                } else {
                    f32::NAN
                };
                if pre || act == Activation::Identity {
                    assert!(
                        (got_z as f64 - want_z).abs() <= tol,
                        "{what}: z[{i},{j}] = {got_z}, expected {want_z} (tol {tol})"
                    );
                    assert_eq!(
                        got.to_bits(),
                        act.apply(got_z).to_bits(),
                        "{what}: C[{i},{j}] is not act(z)"
                    );
                    if deriv {
                        assert_eq!(
                            d[at].to_bits(),
                            act.derivative(got_z).to_bits(),
                            "{what}: derivative[{i},{j}] is not act'(z)"
                        );
                    }
                }
                if deriv {
                    // The derivative against f64 central differences of the
                    // f64 activation (|act''| ≤ 1 for GELU, so the error of z
                    // moves it by less than tol; A&S erf adds ~1e-6).
                    let h = 1e-4;
                    let want_d = if act == Activation::Relu {
                        if want_z > tol {
                            1.0
                        } else if want_z < -tol {
                            0.0
                        } else {
                            d[at] as f64
                        }
                    } else {
                        (act_f64(act, want_z + h) - act_f64(act, want_z - h)) / (2.0 * h)
                    };
                    assert!(
                        (d[at] as f64 - want_d).abs() <= 1e-5 + 2.0 * tol,
                        "{what}: derivative[{i},{j}] = {}, expected {want_d} (z {got_z}, want_z {want_z})",
                        d[at]
                    );
                }
                let want_y = act_f64(act, want_z);
                let tol_y = 1.2 * tol + 2e-6 * want_z.abs().max(1.0);
                assert!(
                    (got as f64 - want_y).abs() <= tol_y,
                    "{what}: C[{i},{j}] = {got}, expected {want_y} (tol {tol_y})"
                );
            }
        }
        if let CLayout::Padded = cl {
            for i in 0..m {
                for j in n..n + 3 {
                    assert!(c[i * crs + j].to_bits() == c0[i * crs + j].to_bits());
                    assert!(z[i * crs + j].is_nan(), "{what}: padding of z written");
                    assert!(d[i * crs + j].is_nan(), "{what}: padding of d written");
                }
            }
        }
    }
}

/// Odd sizes, every bias kind, activation and layout, with and without the
/// pre-activation, including k spanning several KC blocks, n over NC, m over
/// several MC blocks and row counts that are not multiples of 64 (the
/// portable path's epilogue block).
#[test]
fn fused_epilogue_matches_reference() {
    let mut rng = Rng::new(11);
    let acts = [
        Activation::Identity,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Relu,
    ];
    let layouts = [CLayout::RowMajor, CLayout::ColMajor, CLayout::Padded];
    let biases = [BiasKind::Col, BiasKind::Row, BiasKind::None];
    let mut shapes = vec![(1, 1, 1), (13, 7, 33), (15, 40, 17), (29, 3, 70)];
    for _ in 0..6 {
        let d = |r: &mut Rng| 1 + r.below(80) as usize;
        shapes.push((d(&mut rng), d(&mut rng), d(&mut rng)));
    }
    let mut n_case = 0;
    for &(m, k, n) in &shapes {
        for act in acts {
            let s = n_case;
            n_case += 1;
            check(
                &mut rng,
                &Case {
                    m,
                    k,
                    n,
                    ta: s % 2 == 1,
                    tb: s % 3 == 1,
                    cl: layouts[s % 3],
                    alpha: if s % 4 == 3 { -0.75 } else { 1.0 },
                    beta: if s % 5 == 2 { 0.5 } else { 0.0 },
                    bias: biases[(s / 3) % 3],
                    act,
                    pre: s % 2 == 0,
                    deriv: s % 3 != 1,
                },
            );
        }
    }
    // Block boundaries of the AVX-512 path: k cut into 3 blocks, n over NC,
    // m over several MC blocks, in-place and packed A; then small products
    // (one thread) spanning several 64-row blocks of the portable path.
    use BiasKind::{Col, Row};
    use CLayout::{ColMajor, Padded, RowMajor};
    let big = [
        ((130, 1030, 70), (false, false), RowMajor, 0.0, Col),
        ((100, 600, 90), (true, false), Padded, 1.0, Row),
        ((13, 40, 2100), (false, true), RowMajor, 0.0, Col),
        ((200, 520, 33), (false, false), ColMajor, -0.5, Col),
        ((150, 5, 7), (false, false), ColMajor, 0.0, Row),
        ((150, 3, 9), (true, false), RowMajor, 1.0, Row),
    ];
    for (i, ((m, k, n), (ta, tb), cl, beta, bias)) in big.into_iter().enumerate() {
        let act = acts[1 + i % 3];
        let case = Case {
            m,
            k,
            n,
            ta,
            tb,
            cl,
            alpha: 1.0,
            beta,
            bias,
            act,
            pre: true,
            deriv: i % 2 == 0,
        };
        check(&mut rng, &case);
    }
}

/// On the AVX-512 kernel, a per-column bias gives the same bits as the
/// formulation it replaces (C pre-filled with the bias, β = 1), even when k
/// spans several blocks; the fused GELU equals `Tensor::gelu` of that.
#[test]
fn column_bias_equals_prefilled_c() {
    let Ok(kernel) = Kernel::select("test", Backend::Avx512) else {
        return;
    };
    let mut rng = Rng::new(12);
    for (m, k, n) in [(50, 70, 40), (99, 1100, 65)] {
        let (av, bv, bias) = (
            randv(&mut rng, m * k),
            randv(&mut rng, k * n),
            randv(&mut rng, n),
        );
        let a = MatRef::row_major(&av, m, k).unwrap();
        let b = MatRef::row_major(&bv, k, n).unwrap();
        let mut old = bias.repeat(m);
        kernel.serial(
            1.0,
            a,
            b,
            1.0,
            MatMut::row_major(&mut old, m, n).unwrap(),
            Epilogue::default(),
        );
        let mut fused = vec![0.0; m * n];
        let epi = Epilogue {
            bias: Bias::PerColumn(&bias),
            act: Activation::Gelu,
            ..Epilogue::default()
        };
        gemm_fused(
            1.0,
            a,
            b,
            0.0,
            MatMut::row_major(&mut fused, m, n).unwrap(),
            epi,
        )
        .unwrap();
        let want = crate::Tensor::from_vec(old, &[m, n])
            .unwrap()
            .gelu()
            .to_vec();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&fused) == bits(&want), "{m}x{k}x{n}");
    }
}

/// Batched (shared weight, per-row bias: token mixing) with a pre-activation
/// laid out like a padded, spaced-out C; and k = 0 (C = act(β·C + bias)).
#[test]
fn batched_and_k_zero_epilogues() {
    let mut rng = Rng::new(13);
    let (batch, m, k, n) = (5, 24, 49, 40);
    let (crs, cstride) = (n + 2, m * (n + 2) + 3);
    let av = randv(&mut rng, m * k);
    let bv = randv(&mut rng, batch * k * n);
    let bias = randv(&mut rng, m);
    for backend in backends() {
        let mut c = vec![f32::NAN; batch * cstride];
        let mut z = vec![f32::NAN; batch * cstride];
        let a = MatRef::row_major(&av, m, k).unwrap();
        let b = MatRef::row_major(&bv, k, n).unwrap();
        let epi = Epilogue {
            bias: Bias::PerRow(&bias),
            act: Activation::GeluTanh,
            pre_activation: Some(&mut z),
            derivative: None,
        };
        let cm = MatMut::new(&mut c, m, n, crs, 1).unwrap();
        gemm_batched_with(backend, batch, 1.0, a, 0, b, k * n, 0.0, cm, cstride, epi).unwrap();
        for t in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k)
                        .map(|p| av[i * k + p] as f64 * bv[t * k * n + p * n + j] as f64)
                        .sum();
                    let abs: f64 = (0..k)
                        .map(|p| (av[i * k + p] as f64 * bv[t * k * n + p * n + j] as f64).abs())
                        .sum();
                    let want = s + bias[i] as f64;
                    let at = t * cstride + i * crs + j;
                    let tol = (k as f64 + 5.0) * U * (abs + bias[i].abs() as f64);
                    assert!(
                        (z[at] as f64 - want).abs() <= tol,
                        "{backend:?} z[{t},{i},{j}]"
                    );
                    assert_eq!(c[at].to_bits(), gelu_tanh_bits(z[at]), "{backend:?}");
                }
                assert!(
                    c[t * cstride + i * crs + n].is_nan() && z[t * cstride + i * crs + n].is_nan()
                );
            }
        }
        // k = 0: C = act(β·C + bias), pre-activation β·C + bias.
        let mut c = vec![-2.0, 1.0, 3.0, -1.0];
        let mut z = vec![0.0; 4];
        let epi = Epilogue {
            bias: Bias::PerColumn(&[1.0, -1.0]),
            act: Activation::Relu,
            pre_activation: Some(&mut z),
            derivative: None,
        };
        let (a, b) = (
            MatRef::new(&[], 2, 0, 0, 1).unwrap(),
            MatRef::new(&[], 0, 2, 2, 1).unwrap(),
        );
        let cm = MatMut::row_major(&mut c, 2, 2).unwrap();
        gemm_batched_with(backend, 1, 1.0, a, 0, b, 0, 2.0, cm, 0, epi).unwrap();
        assert_eq!(z, [-3.0, 1.0, 7.0, -3.0], "{backend:?}");
        assert_eq!(c, [0.0, 1.0, 7.0, 0.0], "{backend:?}");
    }
}

fn gelu_tanh_bits(z: f32) -> u32 {
    Activation::GeluTanh.apply(z).to_bits()
}

/// 1, 2 and 3 threads give the same bits with a bias, GELU, the
/// pre-activation and the derivative, on row splits, column splits and the
/// batched path.
#[test]
fn epilogue_thread_count_does_not_change_bits() {
    let mut rng = Rng::new(14);
    for (m, k, n) in [(300, 600, 200), (20, 300, 900), (257, 49, 512)] {
        let (av, bv) = (randv(&mut rng, m * k), randv(&mut rng, k * n));
        let bias = randv(&mut rng, n);
        for backend in backends() {
            let kernel = Kernel::select("test", backend).unwrap();
            let mut results = Vec::new();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let (mut c, mut z, mut d) = (vec![0.0; m * n], vec![0.0; m * n], vec![0.0; m * n]);
                let a = MatRef::row_major(&av, m, k).unwrap();
                let b = MatRef::row_major(&bv, k, n).unwrap();
                let epi = Epilogue {
                    bias: Bias::PerColumn(&bias),
                    act: Activation::Gelu,
                    pre_activation: Some(&mut z),
                    derivative: Some(&mut d),
                };
                let cm = MatMut::row_major(&mut c, m, n).unwrap();
                pool.install(|| kernel.parallel(1.0, a, b, 0.0, cm, epi));
                c.extend_from_slice(&z);
                c.extend_from_slice(&d);
                results.push(c.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
            assert!(
                results[0] == results[1],
                "{backend:?} {m}x{k}x{n}: 1 vs 2 threads"
            );
            assert!(
                results[0] == results[2],
                "{backend:?} {m}x{k}x{n}: 1 vs 3 threads"
            );
        }
    }
    let (batch, m, k, n) = (6, 64, 49, 70);
    let av = randv(&mut rng, m * k);
    let bv = randv(&mut rng, batch * k * n);
    let bias = randv(&mut rng, m);
    let mut outs = Vec::new();
    for threads in [1, 2] {
        crate::threads::set_num_threads(threads).unwrap();
        let (mut c, mut d) = (vec![0.0; batch * m * n], vec![0.0; batch * m * n]);
        let epi = Epilogue {
            bias: Bias::PerRow(&bias),
            act: Activation::Gelu,
            derivative: Some(&mut d),
            ..Epilogue::default()
        };
        let a = MatRef::row_major(&av, m, k).unwrap();
        let b = MatRef::row_major(&bv, k, n).unwrap();
        let cm = MatMut::row_major(&mut c, m, n).unwrap();
        gemm_batched_with(
            Backend::Auto,
            batch,
            1.0,
            a,
            0,
            b,
            k * n,
            0.0,
            cm,
            m * n,
            epi,
        )
        .unwrap();
        c.extend_from_slice(&d);
        outs.push(c.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
    assert!(
        outs[0] == outs[1],
        "batched epilogue: 1 vs 2 threads differ"
    );
}

#[test]
fn bad_epilogue_is_an_error() {
    let data = [1.0f32; 6];
    let a = MatRef::row_major(&data, 2, 3).unwrap();
    let b = MatRef::row_major(&data, 3, 2).unwrap();
    let mut c = [0.0f32; 4];
    let epi = Epilogue {
        bias: Bias::PerColumn(&[1.0; 3]),
        ..Epilogue::default()
    };
    let err = gemm_fused(
        1.0,
        a,
        b,
        0.0,
        MatMut::row_major(&mut c, 2, 2).unwrap(),
        epi,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("gemm_fused: shape mismatch") && msg.contains("per-column"),
        "{msg}"
    );
    let mut z = [0.0f32; 3];
    let epi = Epilogue {
        pre_activation: Some(&mut z),
        ..Epilogue::default()
    };
    let err = gemm_fused(
        1.0,
        a,
        b,
        0.0,
        MatMut::row_major(&mut c, 2, 2).unwrap(),
        epi,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TensorError::BufferTooShort {
                op: "gemm_fused",
                needed: 4,
                len: 3
            }
        ),
        "{err}"
    );
    let mut d = [0.0f32; 2];
    let epi = Epilogue {
        act: Activation::Gelu,
        derivative: Some(&mut d),
        ..Epilogue::default()
    };
    let err = gemm_fused(
        1.0,
        a,
        b,
        0.0,
        MatMut::row_major(&mut c, 2, 2).unwrap(),
        epi,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TensorError::BufferTooShort {
                needed: 4,
                len: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(c, [0.0; 4], "C untouched after an error");
}
