//! Fresh products ([`gemm_batched_fresh_with`]) against the general entry
//! point writing into zero-filled buffers: the same bits on every backend,
//! for single and batched products, every epilogue output, transposed
//! operands, several k blocks, and sizes that run on the pool.

use super::tests::{backends, operand, randv};
use super::*;
use crate::Rng;

/// One fresh product against `gemm_batched_with` into zeroed buffers (and,
/// with `mul`, a multiplier against multiplying its result afterwards).
#[allow(clippy::too_many_arguments)]
fn check(
    rng: &mut Rng,
    batch: usize,
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    shared_a: bool,
    row_bias: bool,
    act: Activation,
    (pre, deriv, mul): (bool, bool, bool),
) {
    let (a1, ars, acs) = operand(rng, m, k, ta);
    let a_stride = if shared_a { 0 } else { m * k };
    let av = if shared_a {
        a1
    } else {
        randv(rng, batch.max(1) * m * k)
    };
    let (b1, brs, bcs) = operand(rng, k, n, tb);
    let bv: Vec<f32> = (0..batch.max(1)).flat_map(|_| b1.iter().copied()).collect();
    let bv: Vec<f32> = bv
        .iter()
        .enumerate()
        .map(|(i, x)| x + i as f32 * 1e-3)
        .collect();
    let bias_v = randv(rng, if row_bias { m } else { n });
    let bias = match (row_bias, rng.next_f64() < 0.2) {
        (_, true) => Bias::None,
        (true, false) => Bias::PerRow(&bias_v),
        (false, false) => Bias::PerColumn(&bias_v),
    };
    let a = MatRef::new(&av, m, k, ars, acs).unwrap();
    let b = MatRef::new(&bv, k, n, brs, bcs).unwrap();
    let multiplier = randv(rng, batch * m * n);
    for backend in backends() {
        let len = batch * m * n;
        // The general entry point needs room for one C even when batch = 0.
        let room = len.max(m * n);
        let (mut c, mut z, mut d) = (vec![0.0; room], vec![0.0; room], vec![0.0; room]);
        let epi = Epilogue {
            bias,
            act,
            pre_activation: pre.then_some(&mut z[..]),
            derivative: deriv.then_some(&mut d[..]),
        };
        let cm = MatMut::row_major(&mut c, m, n).unwrap();
        gemm_batched_with(
            backend,
            batch,
            1.5,
            a,
            a_stride,
            b,
            k * n,
            0.0,
            cm,
            m * n,
            epi,
        )
        .unwrap();
        if mul {
            c.iter_mut().zip(&multiplier).for_each(|(c, &m)| *c *= m);
        }
        let fe = FreshEpilogue {
            bias,
            act,
            pre_activation: pre,
            derivative: deriv,
            multiplier: mul.then_some(&multiplier[..]),
        };
        let got = gemm_batched_fresh_with(backend, batch, 1.5, a, a_stride, b, k * n, fe).unwrap();
        let what =
            format!("{backend:?} batch {batch} {m}×{k}×{n} t{ta}{tb} {act:?} {pre} {deriv} {mul}");
        let bits = |v: &[f32]| v[..len].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.c), bits(&c), "C of {what}");
        assert_eq!(
            got.pre_activation.map(|v| bits(&v)),
            pre.then(|| bits(&z)),
            "z of {what}"
        );
        assert_eq!(
            got.derivative.map(|v| bits(&v)),
            deriv.then(|| bits(&d)),
            "d of {what}"
        );
    }
}

#[test]
fn fresh_products_equal_products_into_zeroed_buffers() {
    let mut rng = Rng::new(21);
    let acts = [
        Activation::Identity,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Relu,
    ];
    let shapes = [
        (1, (3, 4, 5)),
        (1, (70, 600, 33)),   // two k blocks
        (1, (300, 130, 200)), // on the pool
        (7, (15, 9, 40)),     // small batch, serial
        (16, (64, 49, 128)),  // token mixing: shared weight, shared out
        (3, (200, 100, 90)),  // few big products: parallel inside each
        (2, (5, 0, 6)),       // k = 0: zeros, then bias and activation
        (4, (0, 3, 6)),
        (0, (4, 3, 6)),
    ];
    for (i, &(batch, mkn)) in shapes.iter().enumerate() {
        let act = acts[i % acts.len()];
        let trans = (i % 3 == 1, i % 2 == 1);
        let (pre, deriv) = [(false, false), (true, false), (false, true), (true, true)][i % 4];
        let extra = (pre, deriv, i % 3 == 2);
        check(
            &mut rng,
            batch,
            mkn,
            trans,
            i % 2 == 0,
            i % 3 == 0,
            act,
            extra,
        );
        check(
            &mut rng,
            batch,
            mkn,
            (false, false),
            true,
            false,
            Activation::Gelu,
            (false, true, true),
        );
    }
}

/// Fresh buffers reuse freed memory: garbage there (NaN) must never reach the
/// outputs, which the kernel writes without reading.
#[test]
fn fresh_outputs_never_read_stale_memory() {
    let mut rng = Rng::new(22);
    let (m, k, n) = (257, 49, 512);
    let (av, bv) = (randv(&mut rng, m * k), randv(&mut rng, k * n));
    let bias = randv(&mut rng, n);
    let a = MatRef::row_major(&av, m, k).unwrap();
    let b = MatRef::row_major(&bv, k, n).unwrap();
    let epi = FreshEpilogue {
        bias: Bias::PerColumn(&bias),
        act: Activation::Gelu,
        pre_activation: true,
        derivative: true,
        multiplier: None,
    };
    let want = gemm_fresh(1.0, a, b, epi).unwrap();
    for _ in 0..4 {
        drop(vec![f32::NAN; m * n]);
        let stale: Vec<Vec<f32>> = (0..3).map(|_| vec![f32::NAN; m * n]).collect();
        drop(stale);
        let got = gemm_fresh(1.0, a, b, epi).unwrap();
        assert_eq!(got, want);
        assert!(
            got.c
                .iter()
                .chain(got.derivative.as_ref().unwrap())
                .all(|x| x.is_finite())
        );
    }
}

#[test]
fn bad_fresh_products_are_errors() {
    let v = vec![1.0; 64];
    let a = MatRef::row_major(&v, 2, 3).unwrap();
    let b = MatRef::row_major(&v, 4, 5).unwrap();
    let e = gemm_fresh(1.0, a, b, FreshEpilogue::default()).unwrap_err();
    assert!(e.to_string().contains("A = [2, 3]"), "{e}");
    let b = MatRef::row_major(&v, 3, 5).unwrap();
    let short = FreshEpilogue {
        bias: Bias::PerColumn(&v[..4]),
        ..FreshEpilogue::default()
    };
    let e = gemm_fresh(1.0, a, b, short).unwrap_err();
    assert!(e.to_string().contains("per-column bias of n = 5"), "{e}");
    // Five B matrices 15 apart need 75 floats; there are 64.
    let e = gemm_batched_fresh_with(Backend::Auto, 5, 1.0, a, 0, b, 15, FreshEpilogue::default())
        .unwrap_err();
    assert!(e.to_string().contains("75"), "{e}");
    let wrong = FreshEpilogue {
        multiplier: Some(&v[..9]),
        ..FreshEpilogue::default()
    };
    let e = gemm_fresh(1.0, a, b, wrong).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("multiplier of 10 elements") && m.contains("9 elements"),
        "{m}"
    );
}

/// Products with B packed in advance equal products packing it per call,
/// bit for bit, whichever way they are split over 1, 2 or 3 threads: k over
/// several blocks, n over several `NC` blocks, few and many rows,
/// transposed (weight) and row-major B, with every epilogue output.
#[test]
fn packed_products_equal_fresh_products() {
    let mut rng = Rng::new(23);
    let shapes = [
        (1, 7, 5, false),
        (196, 384, 1536, true),  // a batch-1 ResMLP-12 fc1
        (40, 1100, 70, true),    // few row blocks, several k blocks: split by rows
        (300, 600, 2100, false), // two n blocks
        (9, 1300, 4200, true),
        (0, 5, 6, true),
    ];
    for (i, (m, k, n, tb)) in shapes.into_iter().enumerate() {
        let av = randv(&mut rng, m * k);
        let (bv, brs, bcs) = operand(&mut rng, k, n, tb);
        let bias = randv(&mut rng, n);
        let a = MatRef::row_major(&av, m, k).unwrap();
        let b = MatRef::new(&bv, k, n, brs, bcs).unwrap();
        let packed = PackedB::new(b);
        assert_eq!((packed.rows(), packed.cols()), (k, n));
        let epi = FreshEpilogue {
            bias: Bias::PerColumn(&bias),
            act: [Activation::Gelu, Activation::Identity, Activation::Relu][i % 3],
            pre_activation: i % 2 == 0,
            derivative: true,
            multiplier: None,
        };
        let want = gemm_fresh(1.25, a, b, epi).unwrap();
        for threads in [1, 2, 3] {
            crate::set_num_threads(threads).unwrap();
            let got = gemm_fresh_packed(1.25, a, &packed, epi).unwrap();
            assert_eq!(got, want, "{m}×{k}×{n} tb {tb}, {threads} threads");
        }
        crate::set_num_threads(2).unwrap();
    }
    let v = vec![1.0; 12];
    let packed = PackedB::new(MatRef::row_major(&v, 4, 3).unwrap());
    let a = MatRef::row_major(&v, 2, 3).unwrap();
    let e = gemm_fresh_packed(1.0, a, &packed, FreshEpilogue::default()).unwrap_err();
    assert!(e.to_string().contains("B = [4, 3]"), "{e}");
    assert!(format!("{packed:?}").starts_with("PackedB(4×3"));
}

/// On the AVX-512 kernel a product and its transpose have the same bits
/// (each element the same sum over k, in the same k blocks), so a caller may
/// pick the orientation [`padded_rows`] pads less: a weight gradient's
/// shapes, `dYᵀ·H` against `Hᵀ·dY`, over several k blocks and on the pool.
#[test]
fn products_and_their_transposes_have_the_same_bits() {
    if Kernel::native().is_none() {
        assert_eq!(padded_rows(13), 13);
        return;
    }
    assert_eq!(
        (padded_rows(128), padded_rows(512), padded_rows(14)),
        (140, 518, 14)
    );
    let mut rng = Rng::new(24);
    for (rows, out_f, in_f) in [(3136, 128, 512), (700, 33, 70), (5, 3, 4)] {
        let (dy, h) = (randv(&mut rng, rows * out_f), randv(&mut rng, rows * in_f));
        let dym = MatRef::row_major(&dy, rows, out_f).unwrap();
        let hm = MatRef::row_major(&h, rows, in_f).unwrap();
        let dw = gemm_fresh(1.0, dym.t(), hm, FreshEpilogue::default())
            .unwrap()
            .c;
        let dwt = gemm_fresh(1.0, hm.t(), dym, FreshEpilogue::default())
            .unwrap()
            .c;
        for o in 0..out_f {
            for i in 0..in_f {
                let (a, b) = (dw[o * in_f + i], dwt[i * out_f + o]);
                assert_eq!(a.to_bits(), b.to_bits(), "{rows}×{out_f}×{in_f} ({o}, {i})");
            }
        }
    }
}
