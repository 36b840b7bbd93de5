//! GEMM against an independent naive reference, for every backend.
//!
//! Tolerance: each kernel forms `Σ_p a_ip·b_pj` in f32 by k sequential
//! (fused) multiply-adds, then applies α and β with two more roundings. The
//! standard forward bound for such a sum (Higham, §3.1) is
//! `|computed − exact| ≤ γ_{k+2}·(|α|·Σ_p |a_ip·b_pj| + |β·c_ij|)` with
//! `γ_n = n·u/(1 − n·u)`, `u = 2⁻²⁴`. We assert it with `(k + 3)·u` (a hair
//! over γ_{k+2} for the k ≤ 3000 used here) plus 1e-30 for exact zeros. It is
//! rigorous, yet any real bug (a lost, doubled or misplaced term of typical
//! size `Σ/k`) exceeds it by orders of magnitude.

use super::*;
use crate::Rng;

pub(super) const U: f64 = 1.0 / (1u64 << 24) as f64;

pub(super) fn randv(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

/// Storage for an `rows × cols` operand, row-major or (when `trans`) column-major.
pub(super) fn operand(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    trans: bool,
) -> (Vec<f32>, usize, usize) {
    let v = randv(rng, rows * cols);
    if trans {
        (v, 1, rows.max(1))
    } else {
        (v, cols.max(1), 1)
    }
}

/// Layouts of C under test.
#[derive(Clone, Copy, Debug)]
pub(super) enum CLayout {
    RowMajor,
    /// C transposed: column-major storage.
    ColMajor,
    /// Row-major with 3 elements of padding per row.
    Padded,
}

impl CLayout {
    pub(super) fn strides(self, m: usize, n: usize) -> (usize, usize, usize) {
        match self {
            CLayout::RowMajor => (n, 1, m * n),
            CLayout::ColMajor => (1, m, m * n),
            CLayout::Padded => (n + 3, 1, m * (n + 3)),
        }
    }
}

/// The reference: `α·A·B + β·C` in f64, with the error scale `|α|Σ|ab| + |βc|`.
fn reference(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &[f32],
    crs: usize,
    ccs: usize,
) -> Vec<(f64, f64)> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut abs) = (0f64, 0f64);
            for p in 0..k {
                let x = a.at(i, p).unwrap() as f64 * b.at(p, j).unwrap() as f64;
                s += x;
                abs += x.abs();
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c[i * crs + j * ccs] as f64
            };
            out.push((
                alpha as f64 * s + old,
                (alpha as f64).abs() * abs + old.abs(),
            ));
        }
    }
    out
}

fn assert_close(
    what: &str,
    got: &[f32],
    crs: usize,
    ccs: usize,
    want: &[(f64, f64)],
    n: usize,
    k: usize,
) {
    for (idx, &(w, scale)) in want.iter().enumerate() {
        let (i, j) = (idx / n, idx % n);
        let g = got[i * crs + j * ccs] as f64;
        let tol = (k as f64 + 3.0) * U * scale + 1e-30;
        assert!(
            (g - w).abs() <= tol,
            "{what}: C[{i},{j}] = {g}, expected {w} (|err| {} > tol {tol})",
            (g - w).abs()
        );
    }
}

/// Backends to compare: Portable, Auto and, where the CPU has it, Avx512.
pub(super) fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Portable, Backend::Auto];
    if Kernel::select("test", Backend::Avx512).is_ok() {
        v.push(Backend::Avx512);
    }
    v
}

/// Runs one product with every backend and layout option and checks it.
#[allow(clippy::too_many_arguments)]
fn check_case(
    rng: &mut Rng,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    cl: CLayout,
    alpha: f32,
    beta: f32,
) {
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
    let want = reference(alpha, a, b, beta, &c0, crs, ccs);
    for backend in backends() {
        let mut c = c0.clone();
        gemm_with(
            backend,
            alpha,
            a,
            b,
            beta,
            MatMut::new(&mut c, m, n, crs, ccs).unwrap(),
        )
        .unwrap();
        let what = format!("{backend:?} {m}x{k}x{n} ta={ta} tb={tb} {cl:?} α={alpha} β={beta}");
        assert_close(&what, &c, crs, ccs, &want, n, k);
        if let CLayout::Padded = cl {
            for i in 0..m {
                for j in n..n + 3 {
                    assert!(
                        c[i * crs + j].to_bits() == c0[i * crs + j].to_bits(),
                        "{what}: padding written"
                    );
                }
            }
        }
    }
}

#[test]
fn random_small_shapes_all_layouts() {
    let mut rng = Rng::new(1);
    let mut shapes = vec![(1, 1, 1), (1, 7, 1), (13, 1, 33), (12, 5, 32), (1, 70, 69)];
    for _ in 0..25 {
        let d = |r: &mut Rng| 1 + r.below(69) as usize;
        shapes.push((d(&mut rng), d(&mut rng), d(&mut rng)));
    }
    let scalars = [(1.0, 0.0), (-0.5, 0.0), (1.0, 1.0), (2.0, -0.75)];
    for (s, &(m, k, n)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for cl in [CLayout::RowMajor, CLayout::ColMajor, CLayout::Padded] {
                let (alpha, beta) = scalars[s % scalars.len()];
                check_case(&mut rng, m, k, n, ta, tb, cl, alpha, beta);
            }
        }
    }
}

/// Shapes crossing the AVX-512 path's MC (98), KC (512, balanced) and NC
/// (2048) block boundaries, its tile edges (MR = 14, NR = 32, 16-wide edge
/// panels), both A paths (row-major A is read in place when n ≤ 256 and
/// its row stride is not a multiple of 1024; packed otherwise) and both B
/// paths (a row-major B's full panels read in place on one thread when
/// m ≤ 196 and k ≤ 512, unless its row stride is a multiple of 1024).
#[test]
fn block_boundaries() {
    let mut rng = Rng::new(2);
    let cases = [
        (385, 257, 33, false, false, CLayout::RowMajor, 1.0, 0.0),
        (700, 520, 90, false, true, CLayout::Padded, 1.5, 0.5),
        (200, 700, 65, true, false, CLayout::ColMajor, 1.0, 1.0),
        (13, 300, 2100, true, true, CLayout::RowMajor, -1.0, 0.0),
        (97, 1030, 161, false, false, CLayout::RowMajor, 1.0, 2.0),
        (200, 70, 300, false, false, CLayout::RowMajor, 1.0, 0.0),
        (45, 1024, 40, false, true, CLayout::Padded, 0.5, 1.0),
        (196, 512, 100, false, false, CLayout::RowMajor, 1.0, 0.0),
        (30, 40, 1024, true, false, CLayout::Padded, 1.0, 0.5),
    ];
    for (m, k, n, ta, tb, cl, alpha, beta) in cases {
        check_case(&mut rng, m, k, n, ta, tb, cl, alpha, beta);
    }
}

#[test]
fn beta_zero_does_not_read_nan_c() {
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [1.0, 1.0, 1.0, 1.0];
    for backend in backends() {
        let mut c = [f32::NAN; 4];
        let cm = MatMut::row_major(&mut c, 2, 2).unwrap();
        let (ar, br) = (
            MatRef::row_major(&a, 2, 2).unwrap(),
            MatRef::row_major(&b, 2, 2).unwrap(),
        );
        gemm_with(backend, 1.0, ar, br, 0.0, cm).unwrap();
        assert_eq!(c, [3.0, 3.0, 7.0, 7.0], "{backend:?}");
    }
}

#[test]
fn k_zero_scales_c_and_empty_is_a_no_op() {
    for backend in backends() {
        for (beta, want) in [(0.0, 0.0), (2.0, 6.0)] {
            let mut c = [if beta == 0.0 { f32::NAN } else { 3.0 }; 6];
            let a = MatRef::new(&[], 2, 0, 0, 1).unwrap();
            let b = MatRef::new(&[], 0, 3, 3, 1).unwrap();
            gemm_with(
                backend,
                1.0,
                a,
                b,
                beta,
                MatMut::row_major(&mut c, 2, 3).unwrap(),
            )
            .unwrap();
            assert_eq!(c, [want; 6], "{backend:?} β={beta}");
        }
        let mut c = [5.0f32; 4];
        let a = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
        let b = MatRef::new(&[], 2, 0, 0, 1).unwrap();
        gemm_with(
            backend,
            1.0,
            a,
            b,
            0.0,
            MatMut::new(&mut c, 4, 0, 1, 1).unwrap(),
        )
        .unwrap();
        assert_eq!(c, [5.0; 4], "{backend:?}: n = 0 must not touch C");
    }
}

/// Batched products against the reference, including shared (stride 0)
/// operands, batch 1, a batch large enough to be split over threads and k = 0.
#[test]
fn batched_matches_reference() {
    let mut rng = Rng::new(3);
    // (batch, m, k, n, A shared, B shared, β)
    let cases = [
        (1, 30, 20, 40, false, false, 0.0),
        (3, 33, 17, 45, true, false, 1.0),
        (9, 49, 49, 64, true, false, 0.0),
        (7, 25, 31, 19, false, true, 0.5),
        (5, 8, 0, 9, false, false, 2.0),
    ];
    for (batch, m, k, n, sa, sb, beta) in cases {
        let (sa_len, sb_len) = (m * k, k * n);
        let av = randv(&mut rng, if sa { sa_len } else { batch * sa_len });
        let bv = randv(&mut rng, if sb { sb_len } else { batch * sb_len });
        // C rows padded by 2, matrices 5 elements apart beyond their extent.
        let (crs, cstride) = (n + 2, m * (n + 2) + 5);
        let c0 = if beta == 0.0 {
            vec![f32::NAN; batch * cstride]
        } else {
            randv(&mut rng, batch * cstride)
        };
        let a_stride = if sa { 0 } else { sa_len };
        let b_stride = if sb { 0 } else { sb_len };
        for backend in backends() {
            let mut c = c0.clone();
            let a = MatRef::new(&av, m, k, k.max(1), 1).unwrap();
            let b = MatRef::new(&bv, k, n, n, 1).unwrap();
            let cm = MatMut::new(&mut c, m, n, crs, 1).unwrap();
            gemm_batched_with(
                backend,
                batch,
                0.75,
                a,
                a_stride,
                b,
                b_stride,
                beta,
                cm,
                cstride,
                Epilogue::default(),
            )
            .unwrap();
            for i in 0..batch {
                let ai = MatRef::new(&av[i * a_stride..], m, k, k.max(1), 1).unwrap();
                let bi = MatRef::new(&bv[i * b_stride..], k, n, n, 1).unwrap();
                let want = reference(0.75, ai, bi, beta, &c0[i * cstride..], crs, 1);
                let what = format!("{backend:?} batch {i}/{batch} {m}x{k}x{n}");
                assert_close(&what, &c[i * cstride..], crs, 1, &want, n, k);
            }
        }
    }
}

/// Bitwise equality of 1-, 2- and 3-thread runs, for row splits, column
/// splits (m small), column parts over all of k (few row blocks and several
/// k blocks, or too few row blocks for the threads) and the batched path.
#[test]
fn thread_count_does_not_change_bits() {
    let mut rng = Rng::new(4);
    let shapes = [
        (300, 600, 200, false),
        (128, 1300, 130, true), // one part per thread, by columns
        (250, 1100, 40, true),  // ... by rows
        (20, 300, 900, true),   // one k block, one row block: by columns
        (256, 196, 512, false), // ... three row blocks (token mixing at batch 1)
        (257, 49, 64, false),
    ];
    for (m, k, n, tb) in shapes {
        let (av, ars, acs) = operand(&mut rng, m, k, false);
        let (bv, brs, bcs) = operand(&mut rng, k, n, tb);
        let c0 = randv(&mut rng, m * n);
        for backend in backends() {
            let kernel = Kernel::select("test", backend).unwrap();
            let mut results = Vec::new();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = c0.clone();
                let a = MatRef::new(&av, m, k, ars, acs).unwrap();
                let b = MatRef::new(&bv, k, n, brs, bcs).unwrap();
                let cm = MatMut::row_major(&mut c, m, n).unwrap();
                pool.install(|| kernel.parallel(1.25, a, b, 0.5, cm, Epilogue::default()));
                results.push(c.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
            assert!(
                results[0] == results[1],
                "{backend:?} {m}x{k}x{n}: 1 vs 2 threads differ"
            );
            assert!(
                results[0] == results[2],
                "{backend:?} {m}x{k}x{n}: 1 vs 3 threads differ"
            );
        }
    }
    // Through the public API and the crate's pool, batched (parallel over the batch).
    let (batch, m, k, n) = (6, 49, 60, 70);
    let av = randv(&mut rng, m * k);
    let bv = randv(&mut rng, batch * k * n);
    let mut outs = Vec::new();
    for threads in [1, 2] {
        crate::threads::set_num_threads(threads).unwrap();
        let mut c = vec![0.0; batch * m * n];
        let a = MatRef::row_major(&av, m, k).unwrap();
        let b = MatRef::row_major(&bv, k, n).unwrap();
        gemm_batched(
            batch,
            1.0,
            a,
            0,
            b,
            k * n,
            0.0,
            MatMut::row_major(&mut c, m, n).unwrap(),
            m * n,
        )
        .unwrap();
        outs.push(c.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
    assert!(outs[0] == outs[1], "gemm_batched: 1 vs 2 threads differ");
}

#[test]
fn invalid_input_is_an_error_naming_the_op() {
    let data = [0.0f32; 12];
    let mut out = [0.0f32; 12];
    let a = MatRef::row_major(&data, 3, 4).unwrap();
    let b = MatRef::row_major(&data, 3, 4).unwrap();
    let err = gemm(1.0, a, b, 0.0, MatMut::row_major(&mut out, 3, 4).unwrap()).unwrap_err();
    assert!(
        matches!(err, TensorError::ShapeMismatch { op: "gemm", .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("gemm: shape mismatch"), "{err}");

    let err = MatRef::row_major(&data, 4, 4).unwrap_err();
    assert!(
        matches!(
            err,
            TensorError::BufferTooShort {
                op: "MatRef::new",
                needed: 16,
                len: 12
            }
        ),
        "{err}"
    );
    let err = MatMut::new(&mut out, 3, 4, 2, 1).unwrap_err();
    assert!(
        err.to_string().contains("MatMut::new") && err.to_string().contains("overlapping"),
        "{err}"
    );

    // Batched: outputs that overlap, inputs too short for the batch, mismatched dims.
    let a = MatRef::row_major(&data, 2, 2).unwrap();
    let err = gemm_batched(
        2,
        1.0,
        a,
        4,
        a,
        4,
        0.0,
        MatMut::row_major(&mut out, 2, 2).unwrap(),
        3,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("gemm_batched: invalid argument")
            && err.to_string().contains("overlap"),
        "{err}"
    );
    let err = gemm_batched(
        4,
        1.0,
        a,
        4,
        a,
        0,
        0.0,
        MatMut::row_major(&mut out, 2, 2).unwrap(),
        4,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TensorError::BufferTooShort {
                op: "gemm_batched",
                needed: 16,
                len: 12
            }
        ),
        "{err}"
    );
    let b = MatRef::row_major(&data, 3, 2).unwrap();
    let err = gemm_batched(
        2,
        1.0,
        a,
        4,
        b,
        0,
        0.0,
        MatMut::row_major(&mut out, 2, 2).unwrap(),
        4,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TensorError::ShapeMismatch {
                op: "gemm_batched",
                ..
            }
        ),
        "{err}"
    );

    // Requesting AVX-512 where it is absent is an error, not a crash.
    if Kernel::select("gemm", Backend::Avx512).is_err() {
        let mut c = [0.0f32; 4];
        let err = gemm_with(
            Backend::Avx512,
            1.0,
            a,
            a,
            0.0,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("gemm: invalid argument"),
            "{err}"
        );
    }
}

#[test]
fn element_access_is_checked() {
    let a = MatRef::row_major(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
    assert_eq!(a.at(1, 2), Some(6.0));
    assert_eq!(a.t().at(2, 1), Some(6.0));
    assert_eq!(a.at(2, 0), None);
    assert_eq!(a.at(0, 3), None);
}
