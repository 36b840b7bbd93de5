//! A per-channel scale and shift over the last dimension, `y = x·s + b`:
//! ResMLP's Affine (`α`, `β`) and LayerScale (`γ`, no shift), forward and
//! backward each in one pass over the activations.
//!
//! The broadcasting ops they replace (`x.mul(s).add(b)`, whose backward is
//! `g·s`, `Σ g·x` and `Σ g` through `sum_to`) make two passes forward and five
//! backward, and keep the intermediate `x·s` alive until backward. Element for
//! element the arithmetic here is theirs: `x·s` rounded, then `+ b` rounded
//! (no fused multiply-add); each `g·x` rounded to f32 before it is summed; the
//! sums in f64 over the same row runs (or column blocks) as [`Tensor::sum`],
//! added in the same order. So the results are the same bits (tested), and
//! do not depend on the thread count.
//!
//! ```
//! use allmlp_tensor_core::{Tensor, channel_scale::{scale_shift, scale_shift_backward}};
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let s = Tensor::from_vec(vec![10.0, -1.0], &[2])?;
//! let b = Tensor::from_vec(vec![0.5, 0.0], &[2])?;
//! assert_eq!(scale_shift(&x, &s, Some(&b))?.to_vec(), [10.5, -2.0, 30.5, -4.0]);
//! let g = Tensor::from_vec(vec![1.0, 1.0, 2.0, 0.0], &[2, 2])?;
//! let [dx, ds, db] = scale_shift_backward(&g, &x, &s, [true, true, true])?;
//! assert_eq!(dx.unwrap().to_vec(), [10.0, -1.0, 20.0, 0.0]);
//! assert_eq!(ds.unwrap().to_vec(), [7.0, 2.0]); // Σ g·x per channel
//! assert_eq!(db.unwrap().to_vec(), [3.0, 1.0]); // Σ g per channel
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::elementwise::{Isa, isa};
use crate::error::fmt_shape;
use crate::fill::filled;
use crate::reduce::{COLS, PAR_MIN};
use crate::{Result, Tensor, TensorError, threads};

const OP: &str = "scale_shift";

/// Elements per parallel task of the forward.
const CHUNK: usize = 1 << 14;

/// The row loops, one copy per instruction set so each vectorizes for it.
macro_rules! kernels {
    ($scale_row:ident, $sums_row:ident $(, $feat:literal)?) => {
        /// `o = x·s + b` over one row.
        $(#[target_feature(enable = $feat)])?
        #[allow(unused_unsafe)]
        unsafe fn $scale_row(o: &mut [MaybeUninit<f32>], x: &[f32], s: &[f32], b: &[f32]) {
            let n = o.len();
            let (x, s, b) = (&x[..n], &s[..n], &b[..n]);
            for j in 0..n {
                o[j] = MaybeUninit::new(x[j] * s[j] + b[j]);
            }
        }

        /// `ds += g·x`, `db += g` (each when wanted) over one row, in f64.
        $(#[target_feature(enable = $feat)])?
        #[allow(unused_unsafe)]
        unsafe fn $sums_row(g: &[f32], x: &[f32], ds: Option<&mut [f64]>, db: Option<&mut [f64]>) {
            let n = g.len();
            if let Some(ds) = ds {
                let (x, ds) = (&x[..n], &mut ds[..n]);
                for j in 0..n {
                    ds[j] += (g[j] * x[j]) as f64;
                }
            }
            if let Some(db) = db {
                let db = &mut db[..n];
                for j in 0..n {
                    db[j] += g[j] as f64;
                }
            }
        }
    };
}

kernels!(scale_row_base, sums_row_base);
#[cfg(target_arch = "x86_64")]
kernels!(
    scale_row_avx512,
    sums_row_avx512,
    "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"
);
#[cfg(target_arch = "x86_64")]
kernels!(scale_row_avx2, sums_row_avx2, "avx2,fma");

fn scale_row(o: &mut [MaybeUninit<f32>], x: &[f32], s: &[f32], b: &[f32]) {
    match isa() {
        // SAFETY: `isa()` detected AVX-512F and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { scale_row_avx512(o, x, s, b) },
        // SAFETY: `isa()` detected AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { scale_row_avx2(o, x, s, b) },
        // SAFETY: the base loop needs no CPU feature.
        _ => unsafe { scale_row_base(o, x, s, b) },
    }
}

fn sums_row(g: &[f32], x: &[f32], ds: Option<&mut [f64]>, db: Option<&mut [f64]>) {
    match isa() {
        // SAFETY: `isa()` detected AVX-512F and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { sums_row_avx512(g, x, ds, db) },
        // SAFETY: `isa()` detected AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { sums_row_avx2(g, x, ds, db) },
        // SAFETY: the base loop needs no CPU feature.
        _ => unsafe { sums_row_base(g, x, ds, db) },
    }
}

/// `shape` without its leading 1s.
fn squeezed(shape: &[usize]) -> &[usize] {
    &shape[shape.iter().take_while(|&&d| d == 1).count()..]
}

/// The channel count `c` and the output shape: `s` (and `b`) must be `[c]`,
/// possibly with leading 1s (timm's `[1, 1, c]`), where `c` is the last
/// dimension of `x`; the output has `x`'s shape, with leading 1s up to the
/// largest rank (as broadcasting gives).
fn channels(x: &Tensor, s: &Tensor, b: Option<&Tensor>) -> Result<(usize, Vec<usize>)> {
    let c = x.shape().last().copied();
    let fits = |t: &Tensor| {
        c.is_some_and(|c| {
            t.ndim() >= 1
                && squeezed(&t.shape()[..t.ndim() - 1]).is_empty()
                && t.shape()[t.ndim() - 1] == c
        })
    };
    if !fits(s) || b.is_some_and(|b| !fits(b)) {
        let shift = b.map_or(String::new(), |b| {
            format!(", shift {}", fmt_shape(b.shape()))
        });
        return Err(TensorError::shape(
            OP,
            "input [.., c] with scale [c] (and shift [c]), or [1, .., 1, c]",
            format!(
                "input {}, scale {}{shift}",
                fmt_shape(x.shape()),
                fmt_shape(s.shape())
            ),
        ));
    }
    let rank = x.ndim().max(s.ndim()).max(b.map_or(0, Tensor::ndim));
    let mut shape = vec![1; rank - x.ndim()];
    shape.extend_from_slice(x.shape());
    Ok((c.unwrap_or(0), shape))
}

/// `o = x·s + b` row by row over `x`'s `c`-long rows, in parallel tasks of whole rows.
fn scale_rows(x: &[f32], s: &[f32], b: &[f32], c: usize) -> Vec<f32> {
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let rows = |(o, x): (&mut [MaybeUninit<f32>], &[f32])| {
            for (o, x) in o.chunks_mut(c).zip(x.chunks(c)) {
                scale_row(o, x, s, b);
            }
        };
        if x.len() <= CHUNK {
            rows((out, x));
        } else {
            let task = (CHUNK / c).max(1) * c;
            threads::install(|| {
                out.par_chunks_mut(task)
                    .zip(x.par_chunks(task))
                    .for_each(rows)
            });
        }
    };
    // SAFETY: `x` is a whole number of `c`-long rows (c ≥ 1) and `out` as
    // long: every row of `out` is written.
    unsafe { filled(x.len(), fill) }
}

/// `x·s + b` (or `x·s` without a shift) with `s`, `b` of shape `[c]`
/// broadcast over the leading dimensions of `x [.., c]`: the same bits as
/// `x.mul(s)?.add(b)`, in one pass (without a shift, that multiplication).
pub fn scale_shift(x: &Tensor, scale: &Tensor, shift: Option<&Tensor>) -> Result<Tensor> {
    let (c, shape) = channels(x, scale, shift)?;
    let Some(shift) = shift else {
        return x.contiguous().mul(&scale.contiguous());
    };
    let (x, s, b) = (x.contiguous(), scale.contiguous(), shift.contiguous());
    let xs = x.as_slice().expect("contiguous");
    if xs.is_empty() {
        return Tensor::from_vec(Vec::new(), &shape);
    }
    let (ss, bs) = (
        s.as_slice().expect("contiguous"),
        b.as_slice().expect("contiguous"),
    );
    Tensor::from_vec(scale_rows(xs, ss, bs, c), &shape)
}

/// A sum's accumulators, `None` when it is not wanted (empty).
fn wanted(v: &mut [f64]) -> Option<&mut [f64]> {
    (!v.is_empty()).then_some(v)
}

/// `blocks` blocks of [`COLS`] accumulators (all `None` when not wanted).
fn column_blocks(v: &mut [f64], blocks: usize) -> Vec<Option<&mut [f64]>> {
    if v.is_empty() {
        (0..blocks).map(|_| None).collect()
    } else {
        v.chunks_mut(COLS).map(Some).collect()
    }
}

/// Column sums `(Σ g·x, Σ g)` over rows, each when wanted, in f64 and in the
/// order [`Tensor::sum`] adds them (see the module docs).
fn column_sums(g: &[f32], x: &[f32], c: usize, want: (bool, bool)) -> (Vec<f64>, Vec<f64>) {
    let rows = g.len() / c;
    let zeros = |on: bool| vec![0f64; if on { c } else { 0 }];
    let (mut ds, mut db) = (zeros(want.0), zeros(want.1));
    if c > COLS {
        // Blocks of columns, each summed over all rows in order.
        let block = |j0: usize, ds: Option<&mut [f64]>, db: Option<&mut [f64]>| {
            let (mut ds, mut db) = (ds, db);
            let width = ds.as_ref().or(db.as_ref()).map_or(0, |v| v.len());
            for r in 0..rows {
                let at = r * c + j0;
                sums_row(
                    &g[at..at + width],
                    &x[at..at + width],
                    ds.as_deref_mut(),
                    db.as_deref_mut(),
                );
            }
        };
        let blocks = c.div_ceil(COLS);
        let (dsb, dbb) = (
            column_blocks(&mut ds, blocks),
            column_blocks(&mut db, blocks),
        );
        let tasks: Vec<_> = dsb.into_iter().zip(dbb).enumerate().collect();
        threads::install(|| {
            tasks
                .into_par_iter()
                .for_each(|(i, (ds, db))| block(i * COLS, ds, db))
        });
        return (ds, db);
    }
    // Runs of rows (one run when small), their partial sums added in order.
    let run = if g.len() > PAR_MIN && rows > 1 {
        PAR_MIN.div_ceil(c)
    } else {
        rows.max(1)
    };
    let partial = |r: usize| {
        let (mut ps, mut pb) = (zeros(want.0), zeros(want.1));
        for row in r * run..rows.min((r + 1) * run) {
            let at = row * c;
            sums_row(
                &g[at..at + c],
                &x[at..at + c],
                wanted(&mut ps),
                wanted(&mut pb),
            );
        }
        (ps, pb)
    };
    let parts: Vec<(Vec<f64>, Vec<f64>)> = threads::install(|| {
        (0..rows.div_ceil(run))
            .into_par_iter()
            .map(partial)
            .collect()
    });
    for (ps, pb) in parts {
        ds.iter_mut().zip(ps).for_each(|(o, p)| *o += p);
        db.iter_mut().zip(pb).for_each(|(o, p)| *o += p);
    }
    (ds, db)
}

/// The backward of [`scale_shift`] for the output gradient `grad`:
/// `[dx, dscale, dshift]`, each computed when `needs` says so (else `None`):
/// `dx = grad·s` (in `x`'s shape), `dscale = Σ grad·x` and `dshift = Σ grad`
/// over the leading dimensions (both in the scale's shape). The same bits as
/// the broadcasting ops' backward.
pub fn scale_shift_backward(
    grad: &Tensor,
    x: &Tensor,
    scale: &Tensor,
    needs: [bool; 3],
) -> Result<[Option<Tensor>; 3]> {
    let (c, _) = channels(x, scale, None)?;
    if squeezed(grad.shape()) != squeezed(x.shape()) || grad.numel() != x.numel() {
        return Err(TensorError::shape(
            OP,
            format!("a gradient of the input's shape {}", fmt_shape(x.shape())),
            fmt_shape(grad.shape()),
        ));
    }
    let (g, x, s) = (grad.contiguous(), x.contiguous(), scale.contiguous());
    let (gs, xs) = (
        g.as_slice().expect("contiguous"),
        x.as_slice().expect("contiguous"),
    );
    let dx = if !needs[0] {
        None
    } else {
        // `g·s`: the broadcast multiplication's row loop, in `x`'s shape.
        Some(g.mul(&s)?.reshape(x.shape())?)
    };
    let (ds, db) = if c == 0 || !(needs[1] || needs[2]) {
        (vec![0f64; c], vec![0f64; c])
    } else {
        column_sums(gs, xs, c, (needs[1], needs[2]))
    };
    let as_grad = |on: bool, v: Vec<f64>| -> Result<Option<Tensor>> {
        on.then(|| Tensor::from_vec(v.into_iter().map(|v| v as f32).collect(), s.shape()))
            .transpose()
    };
    Ok([dx, as_grad(needs[1], ds)?, as_grad(needs[2], db)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broadcasting ops this replaces, as the autograd graph ran them.
    fn reference(g: &Tensor, x: &Tensor, s: &Tensor, b: &Tensor) -> [Tensor; 4] {
        let y = x.mul(s).unwrap().add(b).unwrap();
        let dx = g.mul(s).unwrap();
        let ds = g.mul(x).unwrap().sum_to(s.shape()).unwrap();
        let db = g.sum_to(b.shape()).unwrap();
        [y, dx, ds, db]
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.to_vec().iter().map(|v| v.to_bits()).collect()
    }

    /// Small, run-split (c ≤ 256 over more than 2¹⁵ elements), column-split
    /// (c > 256) and single-channel shapes, with a strided input: the same
    /// bits as the broadcasting ops, forward and backward.
    #[test]
    fn equals_the_broadcasting_ops_bit_for_bit() {
        for (i, shape) in [
            vec![3, 5],
            vec![4, 49, 128],
            vec![600, 128],
            vec![2, 7, 384],
            vec![70_000, 1],
            vec![300, 600],
        ]
        .into_iter()
        .enumerate()
        {
            let c = *shape.last().unwrap();
            let seed = 10 * i as u64;
            let x = Tensor::randn(&shape, 0.0, 1.0, seed).unwrap();
            let g = Tensor::randn(&shape, 0.0, 1.0, seed + 1).unwrap();
            let s = Tensor::randn(&[c], 1.0, 0.5, seed + 2).unwrap();
            let b = Tensor::randn(&[c], 0.0, 0.5, seed + 3).unwrap();
            let [y, dx, ds, db] = reference(&g, &x, &s, &b);
            assert_eq!(
                bits(&scale_shift(&x, &s, Some(&b)).unwrap()),
                bits(&y),
                "{shape:?}"
            );
            let no_shift = x.mul(&s).unwrap();
            assert_eq!(bits(&scale_shift(&x, &s, None).unwrap()), bits(&no_shift));
            let [gx, gs, gb] = scale_shift_backward(&g, &x, &s, [true; 3]).unwrap();
            assert_eq!(bits(&gx.unwrap()), bits(&dx), "{shape:?} dx");
            assert_eq!(bits(&gs.unwrap()), bits(&ds), "{shape:?} dscale");
            assert_eq!(bits(&gb.unwrap()), bits(&db), "{shape:?} dshift");
            let [none, gs, none2] = scale_shift_backward(&g, &x, &s, [false, true, false]).unwrap();
            assert!(none.is_none() && none2.is_none());
            assert_eq!(bits(&gs.unwrap()), bits(&ds));
        }
        // timm's `[1, 1, c]` parameters broadcast an input of lower rank up.
        let x = Tensor::randn(&[5, 4], 0.0, 1.0, 9).unwrap();
        let s = Tensor::randn(&[1, 1, 4], 0.0, 1.0, 10).unwrap();
        let b = Tensor::randn(&[1, 1, 4], 0.0, 1.0, 11).unwrap();
        let g = Tensor::randn(&[1, 5, 4], 0.0, 1.0, 12).unwrap();
        let [y, dx, ds, db] = reference(&g, &x, &s, &b);
        let fused = scale_shift(&x, &s, Some(&b)).unwrap();
        assert_eq!((fused.shape(), bits(&fused)), (y.shape(), bits(&y)));
        let [gx, gs, gb] = scale_shift_backward(&g, &x, &s, [true; 3]).unwrap();
        let (gx, gs, gb) = (gx.unwrap(), gs.unwrap(), gb.unwrap());
        assert_eq!((gx.shape(), bits(&gx)), (&[5, 4][..], bits(&dx)));
        assert_eq!((gs.shape(), bits(&gs)), (ds.shape(), bits(&ds)));
        assert_eq!((gb.shape(), bits(&gb)), (db.shape(), bits(&db)));
        // A transposed (strided) input reads as its contiguous copy.
        let x = Tensor::randn(&[6, 4], 0.0, 1.0, 7)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let s = Tensor::randn(&[6], 0.0, 1.0, 8).unwrap();
        let want = x.contiguous().mul(&s).unwrap();
        assert_eq!(bits(&scale_shift(&x, &s, None).unwrap()), bits(&want));
    }

    /// Sums against a naive f64 reference (an independent check of the
    /// order-preserving loops), and the thread count changes nothing.
    #[test]
    fn sums_match_f64_and_any_thread_count() {
        let (rows, c) = (1000, 64);
        let x = Tensor::randn(&[rows, c], 0.0, 1.0, 1).unwrap();
        let g = Tensor::randn(&[rows, c], 0.0, 1.0, 2).unwrap();
        let s = Tensor::ones(&[c]).unwrap();
        let [_, ds, db] = scale_shift_backward(&g, &x, &s, [false, true, true]).unwrap();
        let (xv, gv) = (x.to_vec(), g.to_vec());
        for j in 0..c {
            let want_s: f64 = (0..rows)
                .map(|r| (gv[r * c + j] * xv[r * c + j]) as f64)
                .sum();
            let want_b: f64 = (0..rows).map(|r| gv[r * c + j] as f64).sum();
            assert!(
                (ds.as_ref().unwrap().to_vec()[j] as f64 - want_s).abs()
                    <= 1e-6 * want_s.abs().max(1.0)
            );
            assert!(
                (db.as_ref().unwrap().to_vec()[j] as f64 - want_b).abs()
                    <= 1e-6 * want_b.abs().max(1.0)
            );
        }
        let big = [300, 600];
        let x = Tensor::randn(&big, 0.0, 1.0, 3).unwrap();
        let g = Tensor::randn(&big, 0.0, 1.0, 4).unwrap();
        let s = Tensor::randn(&[600], 0.0, 1.0, 5).unwrap();
        let run = |n: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            pool.install(|| scale_shift_backward(&g, &x, &s, [true; 3]).unwrap())
                .map(|t| bits(&t.unwrap()))
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn bad_shapes_are_errors_naming_both() {
        let x = Tensor::zeros(&[2, 3]).unwrap();
        let bad = Tensor::zeros(&[2, 1, 3]).unwrap();
        assert!(scale_shift(&x, &bad, None).is_err());
        let err = scale_shift(&x, &Tensor::zeros(&[4]).unwrap(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scale_shift") && err.contains("[2, 3]") && err.contains("[4]"),
            "{err}"
        );
        let err = scale_shift(
            &x,
            &Tensor::zeros(&[3]).unwrap(),
            Some(&Tensor::zeros(&[3, 1]).unwrap()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("shift [3, 1]"), "{err}");
        let err = scale_shift(
            &Tensor::zeros(&[]).unwrap(),
            &Tensor::zeros(&[1]).unwrap(),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("input []"), "{err}");
        let err = scale_shift_backward(
            &Tensor::zeros(&[3, 2]).unwrap(),
            &x,
            &Tensor::zeros(&[3]).unwrap(),
            [true; 3],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
        // Empty inputs are fine: no rows, or no channels.
        assert_eq!(
            scale_shift(
                &Tensor::zeros(&[0, 3]).unwrap(),
                &Tensor::zeros(&[3]).unwrap(),
                None
            )
            .unwrap()
            .shape(),
            [0, 3]
        );
        let [dx, ds, _] = scale_shift_backward(
            &Tensor::zeros(&[0, 3]).unwrap(),
            &Tensor::zeros(&[0, 3]).unwrap(),
            &Tensor::ones(&[3]).unwrap(),
            [true; 3],
        )
        .unwrap();
        assert_eq!(
            (dx.unwrap().shape().to_vec(), ds.unwrap().to_vec()),
            (vec![0, 3], vec![0.0; 3])
        );
    }
}
