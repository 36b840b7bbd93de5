//! [`gemm_sum_nt`]: `C = α·Σᵢ Aᵢ·Bᵢᵀ` over a batch, for operands stored with
//! the shared dimension `k` contiguous in both: the weight gradient of a
//! layer applied per matrix of a batch (Mixer's token mixing:
//! `dW = Σ_images dZ·Xᵀ`).
//!
//! The general kernel wants one operand's rows along `n`, so such a product
//! transposes one operand into panels for every matrix of the batch, runs
//! short (`k` = 128) tiles, and adds the batch's products afterwards. Here
//! the tiles are dot products instead: an `R × S` tile holds `R·S` vectors of
//! 16 lanes, lane `l` accumulating (fused multiply-add) the products at
//! `p ≡ l (mod 16)` of every matrix of the batch in turn, so the operands are
//! read in place, once per tile row or column, and the batch is summed in
//! registers. The batch is walked in chunks whose operands fit in L2, every
//! tile's lanes kept in a scratch buffer between chunks; at the end each
//! tile's lanes are added in a fixed tree and scaled by α.
//!
//! Every path (AVX-512, or the portable loops that define the order: other
//! CPUs and strided operands) computes each element as
//! `α·tree(lanes)`, `lanes[l] = fma(a, b, lanes[l])` over the batch in order
//! and over `p` in blocks of 16 zero-padded at the end, so the bits do not
//! depend on the CPU, the thread count or the chunking.
//!
//! ```
//! use allmlp_tensor_core::gemm::{MatRef, gemm_sum_nt};
//! // Two batch entries of A [1, 2] and B [1, 2]: 1·3 + 2·4 + 5·7 + 6·8 = 94.
//! let (a, b) = ([1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0]);
//! let c = gemm_sum_nt(1.0, 2, MatRef::row_major(&a, 1, 2)?, 2, MatRef::row_major(&b, 1, 2)?, 2)?;
//! assert_eq!(c, [94.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use rayon::prelude::*;

use super::{MatRef, PARALLEL_MIN_WORK, profile, work};
#[cfg(target_arch = "x86_64")]
use crate::elementwise::Isa;
#[cfg(target_arch = "x86_64")]
use crate::vectorized::current;
use crate::{Result, TensorError, threads};

/// Lanes per accumulator.
const LANES: usize = 16;
/// Rows of A per tile.
const R: usize = 4;
/// Rows of B (columns of C) per tile: `R·S = 24` accumulators, `R + S`
/// loads per 16 products.
const S: usize = 6;
/// Floats of A and B per chunk of the batch: 512 KiB, half of one core's
/// L2 here, next to the tiles' scratch accumulators.
const CHUNK_FLOATS: usize = 1 << 17;

/// `C = α·Σ_{i < batch} Aᵢ·Bᵢᵀ` as a new row-major `m × n` matrix, where
/// `Aᵢ [m, k]` starts `i·a_stride` elements after `a` and `Bᵢ [n, k]`
/// `i·b_stride` after `b` (`b` holds the right operand's transpose, as a
/// weight gradient's input does). Fastest with both operands' rows
/// contiguous (`cs = 1`); any strides work.
pub fn gemm_sum_nt(
    alpha: f32,
    batch: usize,
    a: MatRef<'_>,
    a_stride: usize,
    b: MatRef<'_>,
    b_stride: usize,
) -> Result<Vec<f32>> {
    const OP: &str = "gemm_sum_nt";
    if a.cols != b.cols {
        return Err(TensorError::shape(
            OP,
            "A [m, k] and B [n, k] with the same k",
            format!("A = [{}, {}], B = [{}, {}]", a.rows, a.cols, b.rows, b.cols),
        ));
    }
    let (m, n, k) = (a.rows, b.rows, a.cols);
    let len = m.checked_mul(n).ok_or_else(|| TensorError::Overflow {
        op: OP,
        what: format!("an output of {m}×{n}"),
    })?;
    if batch > 0 {
        a.check_batch(OP, "A", batch, a_stride)?;
        b.check_batch(OP, "B", batch, b_stride)?;
    }
    let mut c = vec![0f32; len];
    if batch == 0 || k == 0 || len == 0 {
        return Ok(c);
    }
    let _timer = profile::Timer::start(
        OP,
        batch,
        (m, k, n),
        profile::Layout::of((a.rs, a.cs), (b.cs, b.rs)),
        super::Activation::Identity,
    );
    let job = Job {
        alpha,
        batch,
        a: Operand::of(&a, a_stride),
        b: Operand::of(&b, b_stride),
        n,
        k,
    };
    let groups = m.div_ceil(R);
    let parts = threads::current_threads().min(groups);
    if parts > 1 && work(batch, m, k, n) >= PARALLEL_MIN_WORK {
        // Whole row groups per part, so each part's tiles are the same as
        // on one thread.
        let rows_per_part = groups.div_ceil(parts) * R;
        threads::install(|| {
            c.par_chunks_mut(rows_per_part * n)
                .enumerate()
                .for_each(|(p, out)| job.rows(p * rows_per_part, out))
        });
    } else {
        job.rows(0, &mut c);
    }
    Ok(c)
}

/// One operand: element `(i, p)` of batch entry `e` at `ptr + e·bs + i·rs + p·cs`.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    bs: usize,
    rs: usize,
    cs: usize,
}

impl Operand {
    fn of(m: &MatRef<'_>, bs: usize) -> Operand {
        Operand {
            ptr: m.data.as_ptr(),
            bs,
            rs: m.rs,
            cs: m.cs,
        }
    }

    /// Element `(i, p)` of entry `e`.
    ///
    /// # Safety
    /// Inside the validated batch.
    unsafe fn get(self, e: usize, i: usize, p: usize) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { *self.ptr.add(e * self.bs + i * self.rs + p * self.cs) }
    }
}

/// A validated product (the operands' batches checked against their slices).
struct Job {
    alpha: f32,
    batch: usize,
    a: Operand,
    b: Operand,
    n: usize,
    k: usize,
}

// SAFETY: the operands are shared borrows that outlive every task, only read.
unsafe impl Sync for Job {}

impl Job {
    /// Rows `i0 ..` of C into `out` (whole rows, `i0` a multiple of `R`).
    fn rows(&self, i0: usize, out: &mut [f32]) {
        let rows = out.len() / self.n;
        #[cfg(target_arch = "x86_64")]
        if current() == Isa::Avx512 && self.a.cs == 1 && self.b.cs == 1 {
            // SAFETY: `current()` reports AVX-512 only when the CPU has it;
            // rows `i0 .. i0 + rows` are inside A, `out` holds them.
            return unsafe { avx512::rows(self, i0, rows, out) };
        }
        for i in 0..rows {
            for j in 0..self.n {
                let mut lanes = [0f32; LANES];
                for e in 0..self.batch {
                    for p in 0..self.k.div_ceil(LANES) * LANES {
                        let (x, y) = if p < self.k {
                            // SAFETY: `(i0 + i, p)` and `(j, p)` are inside
                            // entry `e` of A and B (`p < k`).
                            unsafe { (self.a.get(e, i0 + i, p), self.b.get(e, j, p)) }
                        } else {
                            (0.0, 0.0)
                        };
                        lanes[p % LANES] = x.mul_add(y, lanes[p % LANES]);
                    }
                }
                out[i * self.n + j] = self.alpha * tree(&lanes);
            }
        }
    }
}

/// The lanes added pairwise: halves, then quarters, eighths, the last two.
fn tree(l: &[f32; LANES]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|i| l[i] + l[i + 8]);
    let q: [f32; 4] = std::array::from_fn(|i| h[i] + h[i + 4]);
    let e: [f32; 2] = std::array::from_fn(|i| q[i] + q[i + 2]);
    e[0] + e[1]
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_storeu_ps,
    };

    use super::{CHUNK_FLOATS, Job, LANES, R, S, tree};

    /// [`Job::rows`] with AVX-512: rows `i0 .. i0 + rows` of C into `out`.
    ///
    /// # Safety
    /// AVX-512F; both operands have unit column stride; the rows are
    /// inside A and `out` holds `rows·n` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(job: &Job, i0: usize, rows: usize, out: &mut [f32]) {
        let (n, k) = (job.n, job.k);
        let (groups, cols) = (rows.div_ceil(R), n.div_ceil(S));
        let per_entry = (rows + n) * k;
        let chunk = (CHUNK_FLOATS / per_entry.max(1)).max(1);
        // Each tile's R·S accumulators between chunks.
        let mut lanes = vec![0f32; groups * cols * R * S * LANES];
        for e0 in (0..job.batch).step_by(chunk) {
            let entries = e0..job.batch.min(e0 + chunk);
            for g in 0..groups {
                // Rows past the end repeat the last one; their sums are dropped.
                let a: [*const f32; R] = std::array::from_fn(|r| {
                    let i = i0 + (g * R + r).min(rows - 1);
                    job.a.ptr.wrapping_add(i * job.a.rs)
                });
                for s0 in 0..cols {
                    let b: [*const f32; S] = std::array::from_fn(|s| {
                        let j = (s0 * S + s).min(n - 1);
                        job.b.ptr.wrapping_add(j * job.b.rs)
                    });
                    let at = (g * cols + s0) * R * S * LANES;
                    let tile = &mut lanes[at..at + R * S * LANES];
                    // SAFETY: the tile's rows are inside every entry of the
                    // chunk (validated batch), reads of `k` floats each;
                    // `tile` holds its R·S accumulators.
                    unsafe { chunk_tile(job, entries.clone(), (a, b), tile) };
                }
            }
        }
        for g in 0..groups {
            for s0 in 0..cols {
                let at = (g * cols + s0) * R * S * LANES;
                for r in 0..R.min(rows - g * R) {
                    for s in 0..S.min(n - s0 * S) {
                        let l = at + (r * S + s) * LANES;
                        let acc: &[f32; LANES] = lanes[l..l + LANES].try_into().expect("16 lanes");
                        out[(g * R + r) * n + s0 * S + s] = job.alpha * tree(acc);
                    }
                }
            }
        }
    }

    /// Adds the products of entries `entries` to one tile's accumulators.
    ///
    /// # Safety
    /// AVX-512F; the `R` rows of A at `a` and `S` rows of B at `b` (entry 0's)
    /// hold `k` readable floats in every entry of the range; `tile` holds
    /// `R·S·16` floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn chunk_tile(
        job: &Job,
        entries: std::ops::Range<usize>,
        (a, b): ([*const f32; R], [*const f32; S]),
        tile: &mut [f32],
    ) {
        let k = job.k;
        let full = k / LANES * LANES;
        let tail = crate::lanes::first(k - full);
        let mut acc: [__m512; R * S] = std::array::from_fn(|q| {
            // SAFETY: accumulator `q` is floats `16q .. 16q + 16` of `tile`.
            unsafe { _mm512_loadu_ps(tile.as_ptr().add(q * LANES)) }
        });
        for e in entries {
            let (ao, bo) = (e * job.a.bs, e * job.b.bs);
            let mut step = |p: usize, mask: u16| {
                // SAFETY: columns `p .. p + 16` (masked to `< k`) of the
                // tile's rows of entry `e`.
                let av: [__m512; R] = std::array::from_fn(|r| unsafe {
                    _mm512_maskz_loadu_ps(mask, a[r].add(ao + p))
                });
                for (s, &bs) in b.iter().enumerate() {
                    // SAFETY: as above, for B.
                    let bv = unsafe { _mm512_maskz_loadu_ps(mask, bs.add(bo + p)) };
                    for (r, &x) in av.iter().enumerate() {
                        acc[r * S + s] = _mm512_fmadd_ps(x, bv, acc[r * S + s]);
                    }
                }
            };
            for p in (0..full).step_by(LANES) {
                step(p, u16::MAX);
            }
            if full < k {
                step(full, tail);
            }
        }
        for (q, v) in acc.iter().enumerate() {
            // SAFETY: accumulator `q`'s floats of `tile`.
            unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(q * LANES), *v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use crate::vectorized::tests::on_both_paths;

    fn randv(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect()
    }

    /// Against the sum in f64 (close: f32 lanes), the same bits on the
    /// AVX-512 and portable paths and on 1, 2 or 3 threads, for tails of
    /// k, m and n, one and many chunks, strided operands, and the token
    /// mixing weight gradient's shape.
    #[test]
    fn sums_of_products_match_f64_on_every_path() {
        let mut rng = Rng::new(31);
        // (batch, m, n, k, B transposed in memory)
        let cases = [
            (1, 1, 1, 1, false),
            (3, 5, 7, 17, false),
            (2, 4, 6, 16, false),
            (64, 64, 49, 128, false),
            (300, 9, 13, 40, false), // many chunks
            (4, 10, 3, 33, true),    // B with k strided: the portable loops
        ];
        for (batch, m, n, k, bt) in cases {
            let av = randv(&mut rng, batch * m * k);
            let bv = randv(&mut rng, batch * n * k);
            let a = MatRef::row_major(&av, m, k).unwrap();
            // B's entries [n, k], stored row-major or as the transpose of a [k, n].
            let b = if bt {
                MatRef::row_major(&bv, k, n).unwrap().t()
            } else {
                MatRef::row_major(&bv, n, k).unwrap()
            };
            let got = on_both_paths(|| {
                let runs: Vec<Vec<u32>> = [1, 2, 3]
                    .iter()
                    .map(|&t| {
                        crate::set_num_threads(t).unwrap();
                        let c = gemm_sum_nt(0.5, batch, a, m * k, b, n * k).unwrap();
                        c.iter().map(|x| x.to_bits()).collect()
                    })
                    .collect();
                crate::set_num_threads(2).unwrap();
                assert!(runs.windows(2).all(|w| w[0] == w[1]), "{batch}×{m}×{n}×{k}");
                runs[0].clone()
            });
            for i in 0..m {
                for j in 0..n {
                    let mut want = 0f64;
                    let mut scale = 0f64;
                    for e in 0..batch {
                        for p in 0..k {
                            let x = av[e * m * k + i * k + p] as f64;
                            let y = if bt {
                                bv[e * n * k + p * n + j]
                            } else {
                                bv[e * n * k + j * k + p]
                            } as f64;
                            want += x * y;
                            scale += (x * y).abs();
                        }
                    }
                    let g = f32::from_bits(got[i * n + j]) as f64;
                    assert!(
                        (g - 0.5 * want).abs() <= 1e-5 * scale.max(1.0),
                        "{batch}×{m}×{n}×{k} ({i}, {j}): {g} vs {}",
                        0.5 * want
                    );
                }
            }
        }
    }

    #[test]
    fn empty_and_bad_products() {
        let v = vec![1.0; 12];
        let a = MatRef::row_major(&v, 2, 3).unwrap();
        let b = MatRef::row_major(&v, 4, 3).unwrap();
        assert_eq!(gemm_sum_nt(1.0, 0, a, 6, b, 12).unwrap(), vec![0.0; 8]);
        assert_eq!(gemm_sum_nt(2.0, 1, a, 6, b, 12).unwrap(), vec![6.0; 8]);
        let e = gemm_sum_nt(1.0, 1, a, 6, MatRef::row_major(&v, 3, 4).unwrap(), 12).unwrap_err();
        assert!(
            e.to_string().contains("same k") && e.to_string().contains("[3, 4]"),
            "{e}"
        );
        // Two entries of A 6 apart need 12 floats, fine; three need 18.
        let e = gemm_sum_nt(1.0, 3, a, 6, b, 0).unwrap_err();
        assert!(e.to_string().contains("18"), "{e}");
    }
}
