//! The AVX-512 GEMM (x86-64 only): BLIS-style blocking around a register-tiled
//! microkernel.
//!
//! Loops, outermost first (`C += A·B` on blocks):
//! 1. `jc`: columns of C in blocks of `NC`;
//! 2. `pc`: the k dimension in blocks of at most `KC` (balanced: `k` is cut
//!    into `ceil(k / KC)` near-equal blocks); B's `kc × nc` block is packed
//!    into `NR`-column panels, once, shared by all threads (who pack its
//!    panels in parallel);
//! 3. `ic`: rows in blocks of `MC`, the unit of parallel work (with the
//!    column panels also cut when there are few row blocks, or one row or
//!    column range per thread when every row block would be cut into a
//!    column part per thread); each task packs its `mc × kc` block of A
//!    into `MR`-row panels in a per-thread buffer (kept in L2), or reads a
//!    row-major A in place when B is narrow; a product on one thread with
//!    few rows and one k block reads a row-major B's full panels in place
//!    instead of packing them (each would serve at most 14 tiles);
//! 4. `jr`, `ir`: `MR × NR` tiles, each one call of the microkernel.
//!
//! The first k block applies the caller's β, later ones accumulate (β = 1).
//! An [`Epilogue`]'s bias is added to the accumulators in registers by the
//! first k block's store (where a bias pre-filled into C would enter); its
//! activation and extra outputs are applied to each tile in L1 right after
//! the last k block's store.
//! Every element's value depends only on `k` (its block cuts) and the kernel,
//! never on which task computes it or whether its A panel was packed, so any
//! thread count gives bit-identical results.
//!
//! # Parameters and measurements
//!
//! Tile `MR × NR = 14 × 32` (28 zmm accumulators, 2 for B, 1 broadcast),
//! `MC = 98`, `KC = 512`, `NC = 2048`; A read in place when `n ≤ 256`. All
//! chosen by sweeps on the target machine (AMD EPYC Zen 4, 2 cores,
//! double-pumped AVX-512; measured FMA peak 117 GFLOP/s per core): 14 × 32
//! beat 12 × 32 by ~3%, KC 512 beat 256 by ~5%, MC between 70 and 140 is
//! within noise, in-place A gains 15% on `8192×49×64` (and loses 15% on
//! 4 KiB-multiple strides, hence the exception).
//!
//! GFLOP/s (`2·m·k·n / t`), row-major, β = 0; medians, best of 3 rounds
//! (the machine is shared); "mm" is `Backend::Portable` (matrixmultiply
//! 0.3.11, avx512 feature), torch is 2.15 `torch.matmul` (MKL) with
//! `set_num_threads`:
//!
//! | m×k×n          | 1 thread: ours | mm   | torch | 2 threads: ours | mm    | torch |
//! |----------------|------:|-----:|------:|------:|------:|------:|
//! | 1568×512×2048  | 105.5 | 81.0 |  95.2 | 205.2 | 155.5 | 151.5 |
//! | 1568×2048×512  | 104.6 | 87.0 | 100.2 | 192.0 | 153.6 | 156.4 |
//! | 4096×196×256   | 107.6 | 87.5 | 100.8 | 196.2 | 151.9 | 153.4 |
//! | 4096×256×196   | 100.2 | 74.5 |  92.3 | 186.2 | 139.4 | 142.7 |
//! | 1024×1024×1024 | 104.9 | 79.1 |  99.5 | 188.1 | 159.1 | 192.3 |
//! | 6272×128×512   |  96.3 | 81.2 |  83.4 | 167.2 | 143.9 | 177.2 |
//! | 6272×512×128   | 104.2 | 78.1 |  85.1 | 198.3 | 146.3 | 165.4 |
//! | 8192×49×64     |  94.3 | 64.7 |  93.7 | 186.4 | 105.8 | 183.0 |
//! | geometric mean | 102.1 | 78.8 |  93.6 | 189.6 | 143.4 | 164.5 |
//!
//! Torch's two-thread figures suffer more from the other load on the
//! machine (on a quiet machine it reached 185–200 on most shapes, so the
//! two-thread comparison is about even). Command:
//! `ALLMLP_NUM_THREADS=1 cargo bench -p allmlp-benches --bench gemm` (and 2),
//! which reports the same figures as `thrpt` (criterion medians; on a quiet
//! machine 104–108 and 205–217 GFLOP/s for ours); torch measured with
//! `torch.matmul(a, b, out=c)`, 5 warm-up calls, median of ≥ 20.

mod kernel;
mod pack;

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::epilogue::{self, Activation, Bias, Epilogue, Extra, RowBias};
use super::fresh::RawOut;
use super::{MatMut, MatRef, PARALLEL_MIN_WORK, work};
use crate::elementwise::{Isa, isa};
use kernel::{Tile, TileBias};
use pack::Src;

/// Rows of the microkernel tile.
pub(crate) const MR: usize = 14;
/// Zmm vectors per tile row; the tile has `NR = 16·NV` columns.
const NV: usize = 2;
const NR: usize = 16 * NV;

/// Rows of C per A block (`MC × KC` packed floats, 196 KiB, live in L2).
const MC: usize = 7 * MR;
/// Largest k block; k is cut into `ceil(k / KC)` near-equal blocks.
const KC: usize = 512;
/// Columns of C per B block (`KC × NC` packed floats, 4 MiB, in L3).
const NC: usize = 2048;
/// Largest n for which a row-major A is read in place by the kernel instead
/// of packed (packing would be amortised over few column panels) ...
const DIRECT_MAX_N: usize = 256;
/// ... unless its row stride is a multiple of 4 KiB, where the `MR` rows
/// would all fall into one L1 set.
const DIRECT_BAD_STRIDE: usize = 1024;
/// Largest m for which a row-major B is read in place, with `k ≤ KC`: each
/// panel then serves few tiles, too few to repay its packing.
const B_DIRECT_MAX_M: usize = 2 * MC;
/// Products with more than one k block and fewer row blocks than this many
/// per thread are split into one part per thread ([`Job::run_parts`]).
const PARTS_MAX_ROW_BLOCKS: usize = 4;

/// Proof that the CPU supports AVX-512F: the only way to reach the kernels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// `Some` when the CPU supports AVX-512F (detected once, then cached).
    pub(crate) fn detect() -> Option<Self> {
        static HAS: OnceLock<bool> = OnceLock::new();
        HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
            .then_some(Avx512(()))
    }

    /// One product, split over the current rayon pool.
    pub(crate) fn gemm_parallel(
        self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        c: MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        let job = Job::new(alpha, &a, &b, beta, c, epi);
        // SAFETY: `self` proves AVX-512F; the job was built from validated
        // matrices and epilogue, with C and the extra outputs exclusively
        // borrowed for the call.
        unsafe { job.run(true) }
    }

    /// One product on the current thread.
    pub(crate) fn gemm_serial(
        self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        c: MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        let job = Job::new(alpha, &a, &b, beta, c, epi);
        // SAFETY: as in `gemm_parallel`.
        unsafe { job.run(false) }
    }

    /// `act(α·A·B + bias)` (β = 0, `k ≥ 1`), times `out.mul` elementwise
    /// unless null, into the row-major `m × n` matrices at `out`, which may
    /// be uninitialised memory: every element of C is stored without being
    /// read, and every element of the extra outputs is written by the
    /// epilogue (`finish` is set whenever one is wanted). Parallel inside
    /// over the current pool when `inside`.
    ///
    /// # Safety
    /// `a` and `b` are valid (validated) with `a.cols ≥ 1`, the bias matches
    /// the `m × n` output; `out.c` (and `out.pre`, `out.deriv` unless null)
    /// are valid for writes of `m·n` floats that nothing else accesses
    /// during the call; `out.mul` is null or valid for reads of `m·n` floats.
    pub(crate) unsafe fn gemm_into(
        self,
        alpha: f32,
        (a, b): (MatRef<'_>, Right<'_>),
        out: RawOut,
        bias: Bias<'_>,
        act: Activation,
        inside: bool,
    ) {
        let finish = act != Activation::Identity || !out.pre.is_null() || !out.deriv.is_null();
        let job = Job::raw(alpha, &a, b, 0.0, (out, b.cols(), 1), bias, act, finish);
        // SAFETY: `self` proves AVX-512F; the rest is the caller's contract.
        unsafe { job.run(inside) }
    }
}

/// A product as raw parts, shareable by the tasks that split it, with its
/// block sizes (which depend on the shape only).
struct Job {
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: Src,
    /// B as given (unused when `prepacked` is not null).
    b: Src,
    /// B packed in advance in the layout of [`Panels`], or null.
    prepacked: *const f32,
    c: *mut f32,
    crs: usize,
    ccs: usize,
    /// The epilogue: bias (`n` or `m` floats, added at the first k block),
    /// activation, pre-activation and derivative stores (after the last;
    /// `pre`, `deriv` null when not wanted, else laid out like C).
    bias: TileBias,
    act: Activation,
    pre: *mut f32,
    deriv: *mut f32,
    /// The multiplier applied after the activation, laid out like C, or null:
    /// each row block of C once its tiles are finished, while it is in L2
    /// (its rows read as sequential streams; per tile, the multiplier's 14
    /// scattered row pieces cost more than a separate pass).
    mul: *const f32,
    /// Block sizes: k blocks of at most `kc`, `mc`/`nc` whole panels.
    kc: usize,
    mc: usize,
    nc: usize,
    /// Whether full `MR`-row panels of A are read in place.
    direct: bool,
    /// Whether full `NR`-column panels of a row-major B are read in place by
    /// a product on one thread ([`Job::run_part`]).
    b_direct: bool,
    /// Whether tiles get an activation or extra outputs after the last k block.
    finish: bool,
}

// SAFETY: tasks sharing a `Job` only read A, B and the bias (shared borrows
// outliving the tasks) and write disjoint sets of C's and the
// pre-activation's elements (exclusive borrows outliving the tasks); see
// `Job::run_parallel`.
unsafe impl Sync for Job {}

/// A pointer to packed B, shared read-only by the tasks of one block.
#[derive(Clone, Copy)]
struct Packed(*mut f32);
// SAFETY: written only before the tasks that read it start, and by disjoint
// panels when packed in parallel.
unsafe impl Send for Packed {}
// SAFETY: as for `Send`.
unsafe impl Sync for Packed {}

impl Packed {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

impl Job {
    fn new(
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: MatMut<'_>,
        epi: Epilogue<'_>,
    ) -> Self {
        let finish = epi.has_finish();
        let out = RawOut {
            c: c.data.as_mut_ptr(),
            pre: epi
                .pre_activation
                .map_or(std::ptr::null_mut(), <[f32]>::as_mut_ptr),
            deriv: epi
                .derivative
                .map_or(std::ptr::null_mut(), <[f32]>::as_mut_ptr),
            mul: std::ptr::null(),
        };
        Job::raw(
            alpha,
            a,
            Right::Matrix(*b),
            beta,
            (out, c.rs, c.cs),
            epi.bias,
            epi.act,
            finish,
        )
    }

    /// A job writing C (and the extra outputs, laid out like C) through raw
    /// pointers; `finish` when tiles get an activation or extra outputs.
    #[allow(clippy::too_many_arguments)]
    fn raw(
        alpha: f32,
        a: &MatRef<'_>,
        b: Right<'_>,
        beta: f32,
        (out, crs, ccs): (RawOut, usize, usize),
        bias: Bias<'_>,
        act: Activation,
        finish: bool,
    ) -> Self {
        let (m, k, n) = (a.rows, a.cols, b.cols());
        let (b, prepacked) = match b {
            Right::Matrix(b) => ((b.data.as_ptr(), b.rs, b.cs), std::ptr::null()),
            Right::Packed(p) => ((std::ptr::null(), 0, 0), p.as_ptr()),
        };
        let (kc, nc) = block_sizes(k, n);
        let bias = match bias {
            Bias::None => TileBias::None,
            Bias::PerColumn(b) => TileBias::Col(b.as_ptr()),
            Bias::PerRow(b) => TileBias::Row(b.as_ptr()),
        };
        Job {
            m,
            n,
            k,
            alpha,
            beta,
            a: Src {
                ptr: a.data.as_ptr(),
                rs: a.rs,
                cs: a.cs,
            },
            b: Src {
                ptr: b.0,
                rs: b.1,
                cs: b.2,
            },
            prepacked,
            c: out.c,
            crs,
            ccs,
            bias,
            act,
            pre: out.pre,
            deriv: out.deriv,
            mul: out.mul,
            finish,
            kc,
            // Whole panels only: packing writes full `MR`/`NR`-wide panels.
            mc: MC.div_ceil(MR).min(m.div_ceil(MR)) * MR,
            nc,
            direct: a.cs == 1 && n <= DIRECT_MAX_N && !a.rs.is_multiple_of(DIRECT_BAD_STRIDE),
            b_direct: b.2 == 1
                && m <= B_DIRECT_MAX_M
                && k <= KC
                && !b.1.is_multiple_of(DIRECT_BAD_STRIDE),
        }
    }

    /// Floats of one packed A block and one packed B block.
    fn caps(&self) -> (usize, usize) {
        (self.mc * self.kc, self.nc * self.kc)
    }

    /// The whole product, split over the current pool when `inside` and
    /// worth it, else on this thread.
    ///
    /// # Safety
    /// As for [`Job::run_serial`].
    unsafe fn run(&self, inside: bool) {
        let threads = rayon::current_num_threads();
        if inside && threads > 1 && work(1, self.m, self.k, self.n) >= PARALLEL_MIN_WORK {
            // SAFETY: forwarded contract.
            with_shared_b(|bufs| unsafe { self.run_parallel(bufs, threads) })
        } else {
            // SAFETY: forwarded contract.
            with_buffers(|bufs| unsafe { self.run_serial(bufs) })
        }
    }

    /// The whole product on this thread.
    ///
    /// # Safety
    /// AVX-512F is available; the job comes from validated matrices whose C
    /// nobody else accesses during the call.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run_serial(&self, bufs: &mut Buffers) {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // SAFETY: C's elements are valid (validated) and ours.
            unsafe { scale(m, n, self.beta, self.c, self.crs, self.ccs) };
            return;
        }
        // SAFETY: forwarded contract; all of C.
        unsafe { self.run_part(bufs, (0, m), (0, n)) }
    }

    /// Rows `i0 .. i1` and columns `j0 .. j1` of the product (`i0` a multiple
    /// of `MR`, `j0` of `NR`, `i1 ≤ m`, `j1 ≤ n`), all of k, on this thread,
    /// with its own packing buffers.
    ///
    /// # Safety
    /// As for [`Job::run_serial`], with `m, n, k > 0`; nobody else accesses
    /// this part of C meanwhile.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run_part(
        &self,
        bufs: &mut Buffers,
        (i0, i1): (usize, usize),
        (j0, j1): (usize, usize),
    ) {
        let k = self.k;
        let (acap, bcap) = self.caps();
        let abuf = grow(&mut bufs.a, acap);
        let bbuf = grow(&mut bufs.b, bcap);
        for jc in (j0..j1).step_by(self.nc) {
            let nc = self.nc.min(j1 - jc);
            for pc in (0..k).step_by(self.kc) {
                let kc = self.kc.min(k - pc);
                let bp = if self.prepacked.is_null() {
                    // In-place B: only a last partial panel is packed.
                    let from = if self.b_direct { nc / NR * NR } else { 0 };
                    if from < nc {
                        // SAFETY: the block is inside B; `bbuf` holds `bcap` floats.
                        unsafe { self.pack_b(jc, nc, pc, kc, from, nc - from, bbuf, bcap) };
                    }
                    bbuf.cast_const()
                } else {
                    // SAFETY: prepacked parts start at column 0 (`run_parallel`).
                    unsafe { self.packed_block(jc, pc) }
                };
                for ic in (i0..i1).step_by(self.mc) {
                    let mc = self.mc.min(i1 - ic);
                    // SAFETY: the block is inside A and C; B's block is packed,
                    // or read in place but for its packed partial panel.
                    unsafe {
                        let b = (bp, self.b_direct && self.prepacked.is_null());
                        self.block(abuf, acap, b, (ic, mc), (jc, nc), (pc, kc), (0, nc))
                    };
                }
            }
        }
    }

    /// The product split into tasks of `MC` rows (and, when those are too
    /// few to keep `threads` busy, of column panels), scheduled by rayon; or,
    /// for few row blocks and a long k (a weight gradient `Xᵀ·dY`) or so
    /// few that each would be cut into a column part per thread (a layer at
    /// batch 1), into one row or column range per thread ([`Job::run_parts`]).
    ///
    /// # Safety
    /// As for [`Job::run_serial`].
    unsafe fn run_parallel(&self, bufs: &mut Buffers, threads: usize) {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 || k == 0 {
            // SAFETY: forwarded contract (k = 0 only scales C).
            return unsafe { self.run_serial(bufs) };
        }
        let row_blocks = m.div_ceil(self.mc);
        if k > self.kc && row_blocks < PARTS_MAX_ROW_BLOCKS * threads {
            // Each part packs the operand the parts share again: cut the
            // product along the other one's long side.
            // Prepacked B: nothing to repack, so always by rows.
            let packed = !self.prepacked.is_null();
            let by_rows = (m > n || packed) && m.div_ceil(MR) >= threads;
            if by_rows || (n >= threads * NR && !packed) {
                // SAFETY: forwarded contract.
                return unsafe { self.run_parts(threads, by_rows) };
            }
        }
        // Row blocks so few that the tasks below would cut each one into a
        // column part per thread (`col_parts ≥ threads`), so pack every A
        // block once per thread anyway: one column range per thread packs
        // no more A, packs its own B panels without waiting for the others,
        // and divides the tiles evenly (three blocks of 98, 98 and 60 rows
        // in two column halves are tasks of unequal size). With B packed in
        // advance, one row range per thread packs each A block only once.
        if (2 * threads).div_ceil(row_blocks) >= threads {
            if self.prepacked.is_null() && n >= threads * NR {
                // SAFETY: forwarded contract.
                return unsafe { self.run_parts(threads, false) };
            }
            if !self.prepacked.is_null() && m.div_ceil(MR) >= threads {
                // SAFETY: forwarded contract.
                return unsafe { self.run_parts(threads, true) };
            }
        }
        let (acap, bcap) = self.caps();
        let bbuf = Packed(grow(&mut bufs.b, bcap));
        for jc in (0..n).step_by(self.nc) {
            let nc = self.nc.min(n - jc);
            let panels = nc.div_ceil(NR);
            let col_parts = (2 * threads).div_ceil(row_blocks).clamp(1, panels);
            for pc in (0..k).step_by(self.kc) {
                let kc = self.kc.min(k - pc);
                let bp = if self.prepacked.is_null() {
                    bbuf
                } else {
                    // SAFETY: block `(jc, pc)` of the prepacked B.
                    Packed(unsafe { self.packed_block(jc, pc) }.cast_mut())
                };
                let pack = |q: usize| {
                    // SAFETY: panel `q` is inside the block and inside
                    // `bbuf`; tasks pack disjoint panels.
                    unsafe {
                        self.pack_b(
                            jc,
                            nc,
                            pc,
                            kc,
                            q * NR,
                            NR.min(nc - q * NR),
                            bbuf.get(),
                            bcap,
                        )
                    };
                };
                if self.prepacked.is_null() {
                    (0..panels).into_par_iter().with_min_len(4).for_each(pack);
                }
                (0..row_blocks * col_parts)
                    .into_par_iter()
                    .with_max_len(1)
                    .for_each(|task| {
                        let (ib, part) = (task / col_parts, task % col_parts);
                        let ic = ib * self.mc;
                        let mc = self.mc.min(m - ic);
                        let q0 = panels * part / col_parts * NR;
                        let q1 = (panels * (part + 1) / col_parts * NR).min(nc);
                        with_buffers(|own| {
                            let abuf = grow(&mut own.a, acap);
                            // SAFETY: tasks cover disjoint (row block, panel
                            // range) pairs of C, so they write disjoint
                            // elements; B's block was packed above (the
                            // parallel packing finished before this loop).
                            unsafe {
                                self.block(
                                    abuf,
                                    acap,
                                    (bp.get(), false),
                                    (ic, mc),
                                    (jc, nc),
                                    (pc, kc),
                                    (q0, q1),
                                )
                            }
                        });
                    });
            }
        }
    }

    /// One task per thread, each computing a range of whole row panels
    /// (`by_rows`) or column panels over all of k with its own packed A and
    /// B. The row-block split packs each k block's B once for all tasks, so
    /// its tasks wait for each other at every k block; with few row blocks
    /// and many k blocks those waits, not the arithmetic, set the pace. Here
    /// each task packs the whole of the operand the parts share (B for row
    /// parts, `k·n` floats; A for column parts, `m·k`), small beside its
    /// `m·k·n/threads` multiply-adds, and never waits.
    ///
    /// # Safety
    /// As for [`Job::run_serial`], with `m, n, k > 0`.
    unsafe fn run_parts(&self, threads: usize, by_rows: bool) {
        let (len, unit) = if by_rows { (self.m, MR) } else { (self.n, NR) };
        let panels = len.div_ceil(unit);
        let parts = threads.min(panels);
        (0..parts).into_par_iter().with_max_len(1).for_each(|part| {
            let start = panels * part / parts * unit;
            let end = (panels * (part + 1) / parts * unit).min(len);
            let (rows, cols) = if by_rows {
                ((start, end), (0, self.n))
            } else {
                ((0, self.m), (start, end))
            };
            // SAFETY: parts cover disjoint row (or column) ranges of C, of
            // whole panels, so starting at multiples of `MR` (`NR`); each
            // task has its own buffers.
            with_buffers(|own| unsafe { self.run_part(own, rows, cols) });
        });
    }

    /// The prepacked B block of columns from `jc` and rows from `pc`
    /// (multiples of `nc` and `kc`).
    ///
    /// # Safety
    /// `self.prepacked` is a [`Panels`] of this product's B.
    unsafe fn packed_block(&self, jc: usize, pc: usize) -> *const f32 {
        let kblocks = self.k.div_ceil(self.kc);
        let at = (jc / self.nc * kblocks + pc / self.kc) * self.nc * self.kc;
        // SAFETY: block `(jc / nc, pc / kc)` of the panels (see `Panels`).
        unsafe { self.prepacked.add(at) }
    }

    /// Packs columns `j0 .. j0 + cols` (`j0` a multiple of `NR`) of B's
    /// `kc × nc` block at `(pc, jc)` into `bbuf`.
    ///
    /// # Safety
    /// AVX-512F; the block is inside B; `bbuf` holds `bcap ≥ nc·kc` floats,
    /// 64-byte aligned, and nobody else accesses those panels meanwhile.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pack_b(
        &self,
        jc: usize,
        nc: usize,
        pc: usize,
        kc: usize,
        j0: usize,
        cols: usize,
        bbuf: *mut f32,
        bcap: usize,
    ) {
        debug_assert!(j0.is_multiple_of(NR) && j0 + cols <= nc);
        // SAFETY: `(pc, jc + j0)` is inside B; panels from `j0` on start
        // at `j0·kc` (a multiple of 16 floats, so aligned) in `bbuf`.
        unsafe {
            let src = self.b.at(pc, jc + j0);
            pack::pack_b::<NV>(kc, cols, src, bbuf.add(j0 * kc), bcap - j0 * kc)
        };
    }

    /// Tiles of rows `ic .. ic + mc` and columns `jc + q0 .. jc + q1` of C
    /// for the k block `pc .. pc + kc`, B's block being packed in `bbuf`.
    ///
    /// # Safety
    /// AVX-512F; the ranges are inside the matrices; `q0` is a multiple of
    /// `NR`; `abuf` holds `acap ≥ mc·kc` floats; nobody else accesses these
    /// elements of C or `abuf` meanwhile.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        abuf: *mut f32,
        acap: usize,
        (bbuf, b_in_place): (*const f32, bool),
        (ic, mc): (usize, usize),
        (jc, _nc): (usize, usize),
        (pc, kc): (usize, usize),
        (q0, q1): (usize, usize),
    ) {
        let (first, last) = (pc == 0, pc + kc == self.k);
        let beta = if first { self.beta } else { 1.0 };
        let finish = last && self.finish;
        // SAFETY: `(ic, pc)` is inside A and the `mc × kc` block too.
        let a_blk = unsafe { self.a.at(ic, pc) };
        // In-place A: full panels read from A, a partial last one packed
        // (zero padding).
        let packed_from = if self.direct { mc / MR * MR } else { 0 };
        // SAFETY: rows `packed_from .. mc` of the block, packed to the start
        // of `abuf`.
        unsafe {
            let rows = a_blk.at(packed_from, 0);
            pack::pack_a::<MR>(mc - packed_from, kc, rows, abuf, acap)
        };
        for jr in (q0..q1).step_by(NR) {
            for ir in (0..mc).step_by(MR) {
                let (i0, j0) = (ic + ir, jc + jr);
                let offset = i0 * self.crs + j0 * self.ccs;
                let t = Tile {
                    // SAFETY: `(i0, j0)` is inside C.
                    c: unsafe { self.c.add(offset) },
                    rs: self.crs,
                    cs: self.ccs,
                    rows: MR.min(mc - ir),
                    cols: NR.min(q1 - jr),
                    alpha: self.alpha,
                    beta,
                    bias: match self.bias {
                        // SAFETY: a column bias has `n > j0` floats.
                        TileBias::Col(b) if first => TileBias::Col(unsafe { b.add(j0) }),
                        // SAFETY: a row bias has `m > i0` floats.
                        TileBias::Row(b) if first => TileBias::Row(unsafe { b.add(i0) }),
                        _ => TileBias::None,
                    },
                };
                // SAFETY: rows `ir .. ir + MR` of the A block (read in place,
                // all inside A) or their packed panel; panel `jr / NR` of
                // packed B, `kc` deep, or a full panel of B in place (rows
                // `pc .. pc + kc`, columns `j0 .. j0 + NR`, all inside B);
                // the tile's valid part is inside C.
                unsafe {
                    let bp = if b_in_place && t.cols == NR {
                        PanelB::InPlace(self.b.at(pc, j0).ptr, self.b.rs)
                    } else {
                        PanelB::Packed(bbuf.add(jr * kc))
                    };
                    if ir < packed_from {
                        let ap = a_blk.at(ir, 0).ptr;
                        run_tile::<true>(kc, ap, self.a.rs, bp, t);
                    } else {
                        let ap = abuf.add((ir - packed_from) * kc);
                        run_tile::<false>(kc, ap, 0, bp, t);
                    }
                }
                if finish {
                    // SAFETY: the tile just stored, ours alone; the extra
                    // outputs (when not null) are laid out like C.
                    unsafe { self.finish_tile(&t, offset) };
                }
            }
        }
        if last && !self.mul.is_null() {
            // SAFETY: the block's rows and columns are inside C, finished
            // above and ours alone; the multiplier is laid out like C.
            unsafe { self.multiply_block((ic, mc), (jc + q0, jc + q1)) };
        }
    }

    /// `C ⊙= M` on rows `i0 .. i0 + rows`, columns `j0 .. j1` of C.
    ///
    /// # Safety
    /// AVX-512F; the block is inside C, ours alone; `self.mul` is laid out
    /// like C.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn multiply_block(&self, (i0, rows): (usize, usize), (j0, j1): (usize, usize)) {
        for i in i0..i0 + rows {
            let at = i * self.crs + j0 * self.ccs;
            if self.ccs == 1 {
                // SAFETY: row `i`'s columns `j0 .. j1` of C and of the
                // multiplier, contiguous; C's ours alone.
                let (c, m) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(self.c.add(at), j1 - j0),
                        std::slice::from_raw_parts(self.mul.add(at), j1 - j0),
                    )
                };
                c.iter_mut().zip(m).for_each(|(c, &m)| *c *= m);
            } else {
                for j in 0..j1 - j0 {
                    // SAFETY: element `(i, j0 + j)` of C and the multiplier.
                    unsafe { *self.c.add(at + j * self.ccs) *= *self.mul.add(at + j * self.ccs) };
                }
            }
        }
    }
}

impl Job {
    /// Stores the extra outputs (if wanted) and applies the activation to a
    /// tile of C stored after its last k block, while it is in L1.
    ///
    /// # Safety
    /// `t` is a valid tile of C (its elements ours alone) at `offset` in C;
    /// `self.pre` and `self.deriv` are null or laid out like C, their tile
    /// elements ours alone.
    unsafe fn finish_tile(&self, t: &Tile, offset: usize) {
        // SAFETY: an output laid out like C contains the tile.
        let at = |p: *mut f32| (!p.is_null()).then(|| unsafe { p.add(offset) });
        let (pre, deriv) = (at(self.pre), at(self.deriv));
        if t.cs == 1 && t.cols == NR && matches!(isa(), Isa::Avx512) {
            let null = std::ptr::null_mut();
            // SAFETY: `isa()` detected the CPU features the epilogue's
            // AVX-512 loops are compiled for (as `epilogue::finish_row`
            // does); the tile's rows hold `NR` contiguous elements of C and
            // of the extra outputs, ours alone.
            unsafe {
                let out = (pre.unwrap_or(null), deriv.unwrap_or(null));
                epilogue::finish_tile_avx512::<NR>(self.act, (t.c, t.rs, t.rows), out)
            };
            return;
        }
        for i in 0..t.rows {
            if t.cs == 1 {
                // SAFETY: row `i < rows` of the tile: `cols` contiguous
                // elements of C (and of the extra outputs), not aliased.
                // The extra outputs may be uninitialised (a fresh product's):
                // only slots of them, written, never read.
                unsafe {
                    let slots = |p: *mut f32| {
                        std::slice::from_raw_parts_mut(p.add(i * t.rs).cast(), t.cols)
                    };
                    let extra = Extra {
                        pre: pre.map(slots),
                        deriv: deriv.map(slots),
                    };
                    let row = std::slice::from_raw_parts_mut(t.c.add(i * t.rs), t.cols);
                    epilogue::finish_row(self.act, row, extra, RowBias::None);
                }
                continue;
            }
            for j in 0..t.cols {
                let at = i * t.rs + j * t.cs;
                // SAFETY: `(i, j)` is a valid element of the tile (and of the
                // extra outputs').
                unsafe {
                    let z = *t.c.add(at);
                    if let Some(p) = pre {
                        *p.add(at) = z;
                    }
                    if let Some(d) = deriv {
                        *d.add(at) = self.act.derivative(z);
                    }
                    *t.c.add(at) = self.act.apply(z);
                }
            }
        }
    }
}

/// `C = β·C` (β = 0 writes zeros without reading).
///
/// # Safety
/// Elements `(i, j)`, `i < m`, `j < n` at `c + i·rs + j·cs` are writable.
unsafe fn scale(m: usize, n: usize, beta: f32, c: *mut f32, rs: usize, cs: usize) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: a valid element, as the caller promises.
            unsafe {
                let p = c.add(i * rs + j * cs);
                *p = if beta == 0.0 { 0.0 } else { beta * *p };
            }
        }
    }
}

/// The k and n blocks of a product with these `k` and `n`: k cut into
/// `ceil(k / KC)` near-equal blocks, n into blocks of `NC` (whole panels).
fn block_sizes(k: usize, n: usize) -> (usize, usize) {
    let kc = k.div_ceil(k.div_ceil(KC).max(1)).max(1);
    let nc = NC.div_ceil(NR).min(n.div_ceil(NR)) * NR;
    (kc, nc)
}

/// A `k × n` right operand packed once, every `kc × nc` block as `Job`
/// packs it for a product (`pack::pack_b`), block `(jb, pb)` at
/// `(jb·⌈k/kc⌉ + pb)·nc·kc`: reused by every product with it, such as a
/// layer's weight over many inference calls.
pub(crate) struct Panels {
    data: Vec<Line>,
    k: usize,
    n: usize,
}

impl Panels {
    /// Packs `b` (`k, n ≥ 1`).
    pub(crate) fn new(_: Avx512, b: MatRef<'_>) -> Panels {
        let (k, n) = (b.rows, b.cols);
        let (kc, nc) = block_sizes(k, n);
        let kblocks = k.div_ceil(kc);
        let block = nc * kc;
        let mut data = vec![Line([0.0; 16]); (n.div_ceil(nc) * kblocks * block).div_ceil(16)];
        let dst: *mut f32 = data.as_mut_ptr().cast();
        let src = Src {
            ptr: b.data.as_ptr(),
            rs: b.rs,
            cs: b.cs,
        };
        for (jb, jc) in (0..n).step_by(nc).enumerate() {
            for (pb, pc) in (0..k).step_by(kc).enumerate() {
                // SAFETY: `Avx512` proves the CPU feature; the block is
                // inside B (validated `MatRef`) and its `nc·kc` floats inside
                // `data`, at a multiple of 16 floats (`nc` is of `NR`).
                unsafe {
                    let out = dst.add((jb * kblocks + pb) * block);
                    let (ncb, kcb) = (nc.min(n - jc), kc.min(k - pc));
                    pack::pack_b::<NV>(kcb, ncb, src.at(pc, jc), out, block);
                }
            }
        }
        Panels { data, k, n }
    }

    /// `(k, n)`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    fn as_ptr(&self) -> *const f32 {
        self.data.as_ptr().cast()
    }
}

/// The right operand of a product: packed per call, or in advance.
#[derive(Clone, Copy)]
pub(crate) enum Right<'a> {
    Matrix(MatRef<'a>),
    Packed(&'a Panels),
}

impl Right<'_> {
    fn cols(&self) -> usize {
        match self {
            Right::Matrix(b) => b.cols,
            Right::Packed(p) => p.n,
        }
    }
}

/// Cache-line aligned storage for packed panels.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

#[derive(Default)]
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
}

/// At least `floats` floats of `v`, 64-byte aligned (grown, never shrunk).
fn grow(v: &mut Vec<Line>, floats: usize) -> *mut f32 {
    let lines = floats.div_ceil(16);
    if v.len() < lines {
        v.resize(lines, Line([0.0; 16]));
    }
    v.as_mut_ptr().cast()
}

thread_local! {
    /// Per-thread packing buffers of serial products and parallel tasks.
    static BUFS: RefCell<Buffers> = RefCell::new(Buffers::default());
    /// The B block a parallel product shares among its tasks (held by the
    /// thread that drives it, while its tasks use `BUFS`).
    static SHARED: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with this thread's task buffers (reused across calls).
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    borrow(&BUFS, f)
}

/// Runs `f` with this thread's shared-B buffers (reused across calls).
fn with_shared_b<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    borrow(&SHARED, f)
}

fn borrow<R>(
    key: &'static std::thread::LocalKey<RefCell<Buffers>>,
    f: impl FnOnce(&mut Buffers) -> R,
) -> R {
    let mut f = Some(f);
    let reused = key.with(|b| {
        b.try_borrow_mut()
            .ok()
            .map(|mut bufs| (f.take().expect("called once"))(&mut bufs))
    });
    // Already borrowed: this thread is waiting inside another product and
    // picked up this one (rayon work stealing). Fresh buffers, no panic.
    reused.unwrap_or_else(|| (f.take().expect("called once"))(&mut Buffers::default()))
}

/// Runs the kernel for one tile, narrowed to one vector for edge tiles of at
/// most 16 columns (whose B panel `pack_b` packs 16 wide).
///
/// # Safety
/// As for [`kernel::tile`].
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn run_tile<const DIRECT: bool>(kc: usize, a: *const f32, ars: usize, b: PanelB, t: Tile) {
    // SAFETY: forwarded contract; a ≤ 16-column packed panel is 16 wide.
    unsafe {
        match b {
            PanelB::Packed(p) if t.cols <= 16 => {
                kernel::tile::<MR, 1, DIRECT>(kc, a, ars, (p, 16), t)
            }
            PanelB::Packed(p) => kernel::tile::<MR, NV, DIRECT>(kc, a, ars, (p, NR), t),
            PanelB::InPlace(p, rs) => kernel::tile::<MR, NV, DIRECT>(kc, a, ars, (p, rs), t),
        }
    }
}

/// Where a tile's `kc × NR` panel of B is read.
#[derive(Clone, Copy)]
enum PanelB {
    /// Packed: `p·NR + j` (`p·16 + j` for a last panel of at most 16 columns).
    Packed(*const f32),
    /// A full panel of a row-major B read in place: `p·rs + j`.
    InPlace(*const f32, usize),
}
