//! Reductions over axes: sum, mean, max, argmax, variance, and `sum_to` (the
//! backward of broadcasting).
//!
//! The reduced axes are moved last and each output element reduces one
//! contiguous row, accumulating in f64 in index order: results are accurate to
//! the last f32 bit for realistic lengths and never depend on the thread count.

use rayon::prelude::*;

use std::ops::Range;

use crate::error::fmt_shape;
use crate::vectorized::vectorized;
use crate::{Result, Tensor, TensorError, threads};

/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 256;

/// Column sums keeping more than this many columns are split over blocks of
/// this many columns, each summed over all rows in order ...
pub(crate) const COLS: usize = 256;
/// ... and sums keeping at most [`COLS`] columns of more than this many
/// elements over runs of `PAR_MIN / columns` (rounded up) rows, whose partial
/// sums are added in order. Set by the shape alone (never by the thread
/// count); `channel_scale` sums the same way, to give the same bits.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// Indices produced by [`Tensor::argmax`], with the shape of the reduced tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indices {
    /// Shape of the result (the input shape without the reduced axis, or with 1 there).
    pub shape: Vec<usize>,
    /// Row-major indices along the reduced axis.
    pub data: Vec<usize>,
}

/// Normalised, de-duplicated, sorted list of axes; an empty list means all axes.
fn check_axes(op: &'static str, axes: &[usize], rank: usize) -> Result<Vec<usize>> {
    let mut v = if axes.is_empty() {
        (0..rank).collect()
    } else {
        axes.to_vec()
    };
    v.sort_unstable();
    v.dedup();
    if let Some(&axis) = v.iter().find(|&&a| a >= rank) {
        return Err(TensorError::AxisOutOfRange { op, axis, rank });
    }
    Ok(v)
}

/// A view of the input as `[outer, inner]` rows (reduced axes last), and the output shape.
fn rows(
    op: &'static str,
    t: &Tensor,
    axes: &[usize],
    keepdim: bool,
) -> Result<(Tensor, usize, Vec<usize>)> {
    let rank = t.ndim();
    let axes = check_axes(op, axes, rank)?;
    let kept: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
    let order: Vec<usize> = kept.iter().chain(&axes).copied().collect();
    let inner: usize = axes.iter().map(|&a| t.shape()[a]).product();
    let out_shape: Vec<usize> = if keepdim {
        (0..rank)
            .map(|a| if axes.contains(&a) { 1 } else { t.shape()[a] })
            .collect()
    } else {
        kept.iter().map(|&a| t.shape()[a]).collect()
    };
    let moved = t.permute(&order)?.contiguous();
    Ok((moved, inner, out_shape))
}

/// Reduces each row of length `inner` with `f`, in parallel over fixed row blocks.
fn reduce_rows<T: Send + Copy + Default>(
    data: &[f32],
    inner: usize,
    f: impl Fn(&[f32]) -> T + Sync,
) -> Vec<T> {
    let outer = data.len().checked_div(inner).unwrap_or(0);
    let mut out = vec![T::default(); outer];
    if outer * inner <= 1 << 14 || outer == 1 {
        out.iter_mut()
            .zip(data.chunks_exact(inner.max(1)))
            .for_each(|(o, r)| *o = f(r));
    } else {
        threads::install(|| {
            out.par_chunks_mut(ROWS_PER_TASK)
                .enumerate()
                .for_each(|(b, o)| {
                    let start = b * ROWS_PER_TASK * inner;
                    for (i, o) in o.iter_mut().enumerate() {
                        *o = f(&data[start + i * inner..start + (i + 1) * inner]);
                    }
                })
        });
    }
    out
}

/// Sums of a contiguous tensor over `axes` without moving data, when the
/// merged layout is `[outer, mid, inner]` with `outer` and `inner` reduced and
/// `mid` kept (either reduced part may be absent). `None` for other patterns.
///
/// Row sums over `inner` (contiguous), then column sums over `outer`, both in
/// f64 and in index order, split over fixed blocks of `mid` (or of `outer`
/// when `mid` is small): exact to f32 rounding and independent of the
/// thread count.
fn sum_outer_inner(t: &Tensor, axes: &[usize]) -> Option<Vec<f64>> {
    let data = t.as_slice()?;
    let shape = t.shape();
    let reduced = |a: usize| axes.contains(&a);
    // Sizes of the [outer (reduced), mid (kept), inner (reduced)] runs.
    let (mut outer, mut mid, mut inner) = (1usize, 1usize, 1usize);
    let mut phase = 0; // 0: outer reduced run, 1: kept run, 2: inner reduced run
    for (a, &d) in shape.iter().enumerate() {
        let r = reduced(a);
        if d == 1 {
            continue;
        }
        match (phase, r) {
            (0, true) => outer *= d,
            (0, false) | (1, false) => {
                phase = 1;
                mid *= d;
            }
            (1, true) | (2, true) => {
                phase = 2;
                inner *= d;
            }
            _ => return None,
        }
    }
    // Columns `j0..j0 + acc.len()`: for each outer index in `outers`
    // (ascending) add the row sums over `inner`; rows are read contiguously,
    // and each column's accumulation order is fixed, so the split into
    // blocks changes nothing. Compiled for the CPU's vector width (the same
    // bits on every path).
    let block = |outers: Range<usize>, j0: usize, acc: &mut [f64]| {
        vectorized(
            #[inline(always)]
            || {
                let n = acc.len();
                let row = |o: usize| &data[(o * mid + j0) * inner..][..n];
                let mut outers = outers;
                if inner == 1 {
                    // Eight rows per pass over `acc`, each column still summed in
                    // row order: the same bits as one row at a time, with an eighth
                    // of the loads and stores of the f64 accumulators.
                    while outers.len() >= 8 {
                        let rows: [&[f32]; 8] = std::array::from_fn(|r| row(outers.start + r));
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = rows.iter().fold(*a, |s, r| s + r[j] as f64);
                        }
                        outers.start += 8;
                    }
                }
                for o in outers {
                    if inner == 1 {
                        acc.iter_mut()
                            .zip(row(o))
                            .for_each(|(a, &v)| *a += v as f64);
                    } else {
                        let base = (o * mid + j0) * inner;
                        for (k, a) in acc.iter_mut().enumerate() {
                            *a += sum64(&data[base + k * inner..base + (k + 1) * inner]);
                        }
                    }
                }
            },
        )
    };
    let mut out = vec![0f64; mid];
    if data.len() > PAR_MIN && mid > COLS {
        threads::install(|| {
            out.par_chunks_mut(COLS)
                .enumerate()
                .for_each(|(b, acc)| block(0..outer, b * COLS, acc))
        });
    } else if data.len() > PAR_MIN && outer > 1 {
        // Few columns (a bias gradient of 128 features): partial sums over
        // fixed runs of outer indices (set by the shape alone, so the same
        // bits on any thread count), added in order.
        let run = PAR_MIN.div_ceil(mid * inner);
        let parts: Vec<Vec<f64>> = threads::install(|| {
            (0..outer.div_ceil(run))
                .into_par_iter()
                .map(|r| {
                    let mut acc = vec![0f64; mid];
                    block(r * run..outer.min((r + 1) * run), 0, &mut acc);
                    acc
                })
                .collect()
        });
        for part in parts {
            out.iter_mut().zip(part).for_each(|(o, p)| *o += p);
        }
    } else {
        block(0..outer, 0, &mut out);
    }
    Some(out)
}

/// Sum in f64 over eight interleaved lanes combined in a fixed order: the
/// same result on every run and thread count, and it vectorizes.
#[inline(always)]
fn sum64(r: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = r.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        lanes.iter_mut().zip(c).for_each(|(l, &v)| *l += v as f64);
    }
    let head = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    head + tail.iter().map(|&v| v as f64).sum::<f64>()
}

impl Tensor {
    fn reduce_with(
        &self,
        op: &'static str,
        axes: &[usize],
        keepdim: bool,
        empty_ok: bool,
        f: impl Fn(&[f32]) -> f32 + Sync,
    ) -> Result<Tensor> {
        let (moved, inner, out_shape) = rows(op, self, axes, keepdim)?;
        if inner == 0 && !empty_ok {
            return Err(TensorError::shape(
                op,
                "a non-empty reduced extent",
                fmt_shape(self.shape()),
            ));
        }
        let data = moved.as_slice().expect("contiguous");
        let out = if inner == 0 {
            vec![f(&[]); out_shape.iter().product()]
        } else {
            reduce_rows(data, inner, f)
        };
        Tensor::from_vec(out, &out_shape)
    }

    /// Sum over `axes` (all axes if empty).
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.sum_or_mean("sum", axes, keepdim, false)
    }

    /// Mean over `axes` (all axes if empty).
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.sum_or_mean("mean", axes, keepdim, true)
    }

    fn sum_or_mean(
        &self,
        op: &'static str,
        axes: &[usize],
        keepdim: bool,
        mean: bool,
    ) -> Result<Tensor> {
        let checked = check_axes(op, axes, self.ndim())?;
        let count: usize = checked.iter().map(|&a| self.shape()[a]).product();
        if count > 0
            && let Some(sums) = sum_outer_inner(self, &checked)
        {
            let kept = |a: &usize| !checked.contains(a);
            let shape: Vec<usize> = if keepdim {
                (0..self.ndim())
                    .map(|a| if kept(&a) { self.shape()[a] } else { 1 })
                    .collect()
            } else {
                (0..self.ndim())
                    .filter(kept)
                    .map(|a| self.shape()[a])
                    .collect()
            };
            let scale = if mean { 1.0 / count as f64 } else { 1.0 };
            return Tensor::from_vec(sums.iter().map(|&v| (v * scale) as f32).collect(), &shape);
        }
        if mean {
            // Over an empty extent: 0/0 = NaN, as torch's `mean` gives.
            self.reduce_with(op, axes, keepdim, true, |r| {
                (sum64(r) / r.len() as f64) as f32
            })
        } else {
            self.reduce_with(op, axes, keepdim, true, |r| sum64(r) as f32)
        }
    }

    /// Maximum over `axes` (NaN wins, as in PyTorch).
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_with("max", axes, keepdim, false, |r| {
            r.iter().fold(
                f32::NEG_INFINITY,
                |m, &v| if m.is_nan() || v <= m { m } else { v },
            )
        })
    }

    /// Variance over `axes` with `correction` (1 = unbiased, 0 = population), two-pass in f64.
    pub fn var(&self, axes: &[usize], correction: usize, keepdim: bool) -> Result<Tensor> {
        // Over an empty extent, or no more elements than `correction`: NaN, as torch's `var`.
        self.reduce_with("var", axes, keepdim, true, |r| {
            let n = r.len() as f64;
            let mean = sum64(r) / n;
            let ss: f64 = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
            let denom = n - correction as f64;
            if denom <= 0.0 {
                f32::NAN
            } else {
                (ss / denom) as f32
            }
        })
    }

    /// Sum of all elements.
    pub fn sum_all(&self) -> f32 {
        let x = self.contiguous();
        sum64(x.as_slice().expect("contiguous")) as f32
    }

    /// Index of the maximum along `axis` (first one on ties; NaN counts as maximal).
    pub fn argmax(&self, axis: usize, keepdim: bool) -> Result<Indices> {
        let (moved, inner, shape) = rows("argmax", self, &[axis], keepdim)?;
        if inner == 0 {
            return Err(TensorError::shape(
                "argmax",
                "a non-empty reduced axis",
                fmt_shape(self.shape()),
            ));
        }
        let data = reduce_rows(moved.as_slice().expect("contiguous"), inner, |r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if r[best].is_nan() {
                    break;
                }
                if v > r[best] || v.is_nan() {
                    best = i;
                }
            }
            best
        });
        Ok(Indices { shape, data })
    }

    /// Sums a broadcast result back to `shape` (the gradient of broadcasting to `self.shape()`).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        let extra = self.ndim().checked_sub(shape.len());
        let fits = extra.is_some_and(|extra| {
            shape
                .iter()
                .enumerate()
                .all(|(i, &d)| d == 1 || d == self.shape()[i + extra])
        });
        if !fits {
            return Err(TensorError::shape(
                "sum_to",
                format!("a shape that broadcasts to {}", fmt_shape(self.shape())),
                fmt_shape(shape),
            ));
        }
        let extra = extra.unwrap_or(0);
        let axes: Vec<usize> = (0..self.ndim())
            .filter(|&a| a < extra || (shape[a - extra] == 1 && self.shape()[a] != 1))
            .collect();
        if axes.is_empty() {
            return self.reshape(shape);
        }
        self.sum(&axes, true)?.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 accumulation makes the kernels exact to f32 rounding: compare with
    /// 1e-6 relative (well inside the 1e-4 budget for reductions).
    const RTOL: f64 = 1e-6;

    fn naive(t: &Tensor, axis: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let s = t.shape();
        let (outer, n, inner): (usize, usize, usize) = (
            s[..axis].iter().product(),
            s[axis],
            s[axis + 1..].iter().product(),
        );
        let mut out = Vec::new();
        for o in 0..outer {
            for i in 0..inner {
                let col: Vec<f64> = (0..n)
                    .map(|k| {
                        let mut idx = vec![];
                        let mut rem = o;
                        for &d in s[..axis].iter().rev() {
                            idx.push(rem % d);
                            rem /= d;
                        }
                        idx.reverse();
                        idx.push(k);
                        let mut rem = i;
                        let mut tail = vec![];
                        for &d in s[axis + 1..].iter().rev() {
                            tail.push(rem % d);
                            rem /= d;
                        }
                        tail.reverse();
                        idx.extend(tail);
                        t.get(&idx).unwrap() as f64
                    })
                    .collect();
                out.push(f(&col));
            }
        }
        out
    }

    fn assert_close(got: &Tensor, want: &[f64]) {
        for (g, w) in got.to_vec().iter().zip(want) {
            assert!((*g as f64 - w).abs() <= RTOL * w.abs() + 1e-6, "{g} vs {w}");
        }
        assert_eq!(got.numel(), want.len());
    }

    #[test]
    fn single_axis_reductions_on_strided_input() {
        // [3, 1, 7, 5] made non-contiguous by a permute.
        let t = Tensor::randn(&[5, 3, 7, 1], 1.0, 2.0, 3)
            .unwrap()
            .permute(&[1, 3, 2, 0])
            .unwrap();
        for axis in 0..4 {
            let mean = |c: &[f64]| c.iter().sum::<f64>() / c.len() as f64;
            assert_close(
                &t.sum(&[axis], false).unwrap(),
                &naive(&t, axis, |c| c.iter().sum()),
            );
            assert_close(&t.mean(&[axis], true).unwrap(), &naive(&t, axis, mean));
            assert_close(
                &t.max(&[axis], false).unwrap(),
                &naive(&t, axis, |c| c.iter().cloned().fold(f64::MIN, f64::max)),
            );
            if t.shape()[axis] > 1 {
                let var = |c: &[f64]| {
                    let m = mean(c);
                    c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (c.len() - 1) as f64
                };
                assert_close(&t.var(&[axis], 1, false).unwrap(), &naive(&t, axis, var));
            }
            let am = t.argmax(axis, false).unwrap();
            let want = naive(&t, axis, |c| {
                c.iter()
                    .enumerate()
                    .fold(0, |b, (i, v)| if *v > c[b] { i } else { b }) as f64
            });
            assert_eq!(am.data.iter().map(|&v| v as f64).collect::<Vec<_>>(), want);
        }
        assert_eq!(t.sum(&[1, 2], true).unwrap().shape(), &[3, 1, 1, 5]);
        assert_eq!(t.mean(&[], false).unwrap().shape(), &[] as &[usize]);
    }

    #[test]
    fn long_sums_stay_accurate_and_thread_independent() {
        let t = Tensor::rand_uniform(&[3, 100_003], 0.0, 1.0, 8).unwrap();
        crate::set_num_threads(1).unwrap();
        let a = t.sum(&[1], false).unwrap();
        crate::set_num_threads(2).unwrap();
        let b = t.sum(&[1], false).unwrap();
        assert_eq!(a, b);
        let want = naive(&t, 1, |c| c.iter().sum());
        assert_close(&a, &want);
        let big = Tensor::rand_uniform(&[5000, 7], 0.0, 1.0, 9).unwrap();
        assert_close(
            &big.sum(&[1], false).unwrap(),
            &naive(&big, 1, |c| c.iter().sum()),
        );
        assert!(
            ((big.sum_all() as f64)
                - naive(&big.reshape(&[35000]).unwrap(), 0, |c| c.iter().sum())[0])
                .abs()
                < 1e-2
        );
    }

    /// The column and row sums compiled for the CPU's vector width give
    /// the same bits as the base (SSE2) build: a bias gradient's
    /// `[rows, 128]` (few columns, runs of rows in parallel), many columns,
    /// and sums over a trailing axis.
    #[test]
    fn vector_and_base_paths_give_the_same_bits() {
        use crate::vectorized::tests::on_both_paths;
        let bits = |t: Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let bias_grad = Tensor::randn(&[3139, 128], 0.0, 1.0, 31).unwrap();
        let wide = Tensor::randn(&[13, 3000], 0.0, 1.0, 32).unwrap();
        let three = Tensor::randn(&[9, 40, 131], 0.0, 1.0, 33).unwrap();
        on_both_paths(|| {
            [
                bits(bias_grad.sum(&[0], false).unwrap()),
                bits(wide.sum(&[0], false).unwrap()),
                bits(three.sum(&[0, 2], false).unwrap()),
                bits(three.sum(&[2], false).unwrap()),
            ]
        });
    }

    #[test]
    fn contiguous_sums_over_leading_and_trailing_axes_match_naive() {
        // Contiguous input takes the copy-free [outer, mid, inner] path for
        // these patterns (and the general path for [1]); all must agree with
        // plain f64 loops.
        let t = Tensor::randn(&[5, 7, 3], 0.5, 2.0, 21).unwrap();
        let at = |i: usize, j: usize, k: usize| t.get(&[i, j, k]).unwrap() as f64;
        let cases: [(&[usize], Vec<f64>); 7] = [
            (
                &[0],
                (0..21)
                    .map(|jk| (0..5).map(|i| at(i, jk / 3, jk % 3)).sum())
                    .collect(),
            ),
            (
                &[2],
                (0..35)
                    .map(|ij| (0..3).map(|k| at(ij / 7, ij % 7, k)).sum())
                    .collect(),
            ),
            (
                &[0, 2],
                (0..7)
                    .map(|j| (0..15).map(|ik| at(ik / 3, j, ik % 3)).sum())
                    .collect(),
            ),
            (
                &[0, 1],
                (0..3)
                    .map(|k| (0..35).map(|ij| at(ij / 7, ij % 7, k)).sum())
                    .collect(),
            ),
            (
                &[1, 2],
                (0..5)
                    .map(|i| (0..21).map(|jk| at(i, jk / 3, jk % 3)).sum())
                    .collect(),
            ),
            (
                &[1],
                (0..15)
                    .map(|ik| (0..7).map(|j| at(ik / 3, j, ik % 3)).sum())
                    .collect(),
            ),
            (
                &[],
                vec![(0..105).map(|n| at(n / 21, (n / 3) % 7, n % 3)).sum()],
            ),
        ];
        for (axes, want) in cases {
            assert_close(&t.sum(axes, false).unwrap(), &want);
            let n = if axes.is_empty() {
                105
            } else {
                axes.iter().map(|&a| t.shape()[a]).product()
            };
            let mean: Vec<f64> = want.iter().map(|v| v / n as f64).collect();
            assert_close(&t.mean(axes, true).unwrap(), &mean);
        }
        // Parallel column sums: thread-count independent.
        let big = Tensor::randn(&[300, 401], 0.0, 1.0, 22).unwrap();
        crate::set_num_threads(1).unwrap();
        let one = big.sum(&[0], false).unwrap();
        crate::set_num_threads(2).unwrap();
        assert_eq!(one, big.sum(&[0], false).unwrap());
        assert_close(&one, &naive(&big, 0, |c| c.iter().sum()));
        // Serial column sums (eight rows per pass, then the rest) add each
        // column in row order: exactly the f64 sum in index order, rounded.
        let odd = Tensor::randn(&[13, 40], 0.0, 1.0, 25).unwrap();
        let exact: Vec<f32> = naive(&odd, 0, |c| c.iter().sum())
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_eq!(odd.sum(&[0], false).unwrap().to_vec(), exact);
        // Few kept columns: runs of outer indices summed in parallel.
        let narrow = Tensor::randn(&[700, 96], 0.0, 1.0, 23).unwrap();
        let deep = Tensor::randn(&[40, 6, 300], 0.0, 1.0, 24).unwrap();
        let mut by_threads = Vec::new();
        for threads in [1, 2, 3] {
            crate::set_num_threads(threads).unwrap();
            let sums = [narrow.sum(&[0], false), deep.sum(&[0, 2], false)];
            by_threads.push(sums.map(Result::unwrap));
        }
        crate::set_num_threads(2).unwrap();
        assert!(by_threads.iter().all(|s| *s == by_threads[0]));
        assert_close(&by_threads[0][0], &naive(&narrow, 0, |c| c.iter().sum()));
        let want: Vec<f64> = (0..6)
            .map(|j| {
                let at = |i: usize, k: usize| deep.get(&[i, j, k]).unwrap() as f64;
                (0..40)
                    .flat_map(|i| (0..300).map(move |k| (i, k)))
                    .map(|(i, k)| at(i, k))
                    .sum()
            })
            .collect();
        assert_close(&by_threads[0][1], &want);
    }

    #[test]
    fn sum_to_inverts_broadcast() {
        let g = Tensor::randn(&[2, 3, 4], 0.0, 1.0, 1).unwrap();
        let s = g.sum_to(&[3, 1]).unwrap();
        assert_eq!(s.shape(), &[3, 1]);
        for j in 0..3 {
            let mut want = 0.0f64;
            for i in 0..2 {
                for k in 0..4 {
                    want += g.get(&[i, j, k]).unwrap() as f64;
                }
            }
            assert!((s.get(&[j, 0]).unwrap() as f64 - want).abs() < 1e-5);
        }
        assert_eq!(g.sum_to(&[2, 3, 4]).unwrap(), g);
        assert!(g.sum_to(&[2, 4]).is_err());
        assert!(g.sum_to(&[1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn errors_and_edge_cases() {
        let t = Tensor::zeros(&[2, 0]).unwrap();
        assert_eq!(t.sum(&[1], false).unwrap().to_vec(), vec![0.0, 0.0]);
        // Mean and variance over an empty extent are NaN (torch's), max an error (torch's).
        let nan = |r: Result<Tensor>| r.unwrap().to_vec().iter().all(|v| v.is_nan());
        assert!(nan(t.mean(&[1], false)) && nan(t.var(&[1], 0, false)));
        assert!(nan(Tensor::zeros(&[0]).unwrap().mean(&[], false)));
        assert_eq!(t.mean(&[0], false).unwrap().shape(), [0]);
        assert!(
            t.max(&[1], false)
                .unwrap_err()
                .to_string()
                .starts_with("max:")
        );
        assert!(t.argmax(1, false).is_err());
        let e = Tensor::zeros(&[2]).unwrap().sum(&[1], false).unwrap_err();
        assert!(matches!(
            e,
            TensorError::AxisOutOfRange {
                op: "sum",
                axis: 1,
                rank: 1
            }
        ));
        let n = Tensor::from_vec(vec![1.0, f32::NAN, 3.0], &[3]).unwrap();
        assert!(n.max(&[0], false).unwrap().item().unwrap().is_nan());
        assert_eq!(n.argmax(0, false).unwrap().data, vec![1]);
        assert!(
            Tensor::ones(&[1])
                .unwrap()
                .var(&[0], 1, false)
                .unwrap()
                .item()
                .unwrap()
                .is_nan()
        );
    }
}
