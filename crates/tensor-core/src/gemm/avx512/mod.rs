//! The AVX-512 GEMM (x86-64 only): BLIS-style blocking around a register-tiled
//! microkernel.
//!
//! Loops, outermost first (`C += A·B` on blocks):
//! 1. `jc`: columns of C in blocks of `NC`;
//! 2. `pc`: the k dimension in blocks of at most `KC` (balanced: `k` is cut
//!    into `ceil(k / KC)` near-equal blocks); B's `kc × nc` block is packed
//!    into `NR`-column panels;
//! 3. `ic`: rows in blocks of `MC`; A's `mc × kc` block is packed into
//!    `MR`-row panels (kept in L2);
//! 4. `jr`, `ir`: `MR × NR` tiles, each one call of the microkernel.
//!
//! The first k block applies the caller's β, later ones accumulate (β = 1).
//! Every element's value depends only on `k` (its block cuts) and the kernel,
//! never on which rows/columns a thread owns, so any split over threads gives
//! bit-identical results.

mod kernel;
mod pack;

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::{MatMut, MatRef, PARALLEL_MIN_WORK, work};
use kernel::Tile;
use pack::Src;

/// Rows of the microkernel tile.
const MR: usize = 14;
/// Zmm vectors per tile row; the tile has `NR = 16·NV` columns.
const NV: usize = 2;
const NR: usize = 16 * NV;

/// Rows of C per A block (`MC × KC` packed floats, 224 KiB, live in L2).
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

    /// One product, split over the current rayon pool by tiles of C.
    pub(crate) fn gemm_parallel(
        self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        c: MatMut<'_>,
    ) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let threads = rayon::current_num_threads();
        if threads == 1 || work(1, m, k, n) < PARALLEL_MIN_WORK || k == 0 {
            self.gemm_serial(alpha, a, b, beta, c);
            return;
        }
        let parts = split(m, n, threads);
        let job = Job::new(alpha, &a, &b, beta, c);
        parts.into_par_iter().with_max_len(1).for_each(|(r, q)| {
            // SAFETY: `split` returns disjoint row × column ranges inside
            // `m × n`, so tasks write disjoint elements of C (a validated
            // `MatMut` has pairwise distinct elements) and only read A and B.
            unsafe { job.run(self, r, q) };
        });
    }

    /// One product on the current thread.
    pub(crate) fn gemm_serial(
        self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        c: MatMut<'_>,
    ) {
        let (m, n) = (c.rows, c.cols);
        let job = Job::new(alpha, &a, &b, beta, c);
        // SAFETY: the whole of C, which this call borrows exclusively.
        unsafe { job.run(self, (0, m), (0, n)) };
    }
}

/// Cuts `m × n` into at most `threads` row (else column) ranges aligned to
/// the tile size.
fn split(m: usize, n: usize, threads: usize) -> Vec<((usize, usize), (usize, usize))> {
    let (pm, pn) = (m.div_ceil(MR), n.div_ceil(NR));
    let ranges = |panels: usize, size: usize, len: usize| {
        let parts = threads.min(panels);
        (0..parts)
            .map(|t| {
                let lo = (panels * t / parts * size).min(len);
                let hi = (panels * (t + 1) / parts * size).min(len);
                (lo, hi)
            })
            .collect::<Vec<_>>()
    };
    if pm >= 2 * threads || pm >= pn {
        ranges(pm, MR, m).into_iter().map(|r| (r, (0, n))).collect()
    } else {
        ranges(pn, NR, n).into_iter().map(|q| ((0, m), q)).collect()
    }
}

/// A product as raw parts, shareable by the tasks that split it.
struct Job {
    k: usize,
    alpha: f32,
    beta: f32,
    a: Src,
    b: Src,
    c: *mut f32,
    crs: usize,
    ccs: usize,
}

// SAFETY: `Job` is only used by `gemm_parallel`/`gemm_serial`, whose tasks
// read A and B (shared borrows outliving the tasks) and write disjoint
// elements of C (an exclusive borrow outliving the tasks).
unsafe impl Sync for Job {}

impl Job {
    fn new(alpha: f32, a: &MatRef<'_>, b: &MatRef<'_>, beta: f32, c: MatMut<'_>) -> Self {
        Job {
            k: a.cols,
            alpha,
            beta,
            a: Src {
                ptr: a.data.as_ptr(),
                rs: a.rs,
                cs: a.cs,
            },
            b: Src {
                ptr: b.data.as_ptr(),
                rs: b.rs,
                cs: b.cs,
            },
            c: c.data.as_mut_ptr(),
            crs: c.rs,
            ccs: c.cs,
        }
    }

    /// `C[rows, cols] = α·A[rows, :]·B[:, cols] + β·C[rows, cols]`.
    ///
    /// # Safety
    /// The ranges lie inside C's shape, and no other thread touches those
    /// elements of C during the call.
    unsafe fn run(&self, _cpu: Avx512, rows: (usize, usize), cols: (usize, usize)) {
        let (m, n, k) = (rows.1 - rows.0, cols.1 - cols.0, self.k);
        if m == 0 || n == 0 {
            return;
        }
        // SAFETY: `_cpu` proves AVX-512F; C's range was validated and, for
        // k ≥ 1, so were A and B (every element `(i, j)` of each matrix lies
        // inside its slice). With k = 0, A and B are not touched at all.
        unsafe {
            let c = self.c.add(rows.0 * self.crs + cols.0 * self.ccs);
            if k == 0 {
                scale(m, n, self.beta, c, self.crs, self.ccs);
            } else {
                let a = self.a.at(rows.0, 0);
                let b = self.b.at(0, cols.0);
                with_buffers(|bufs| blocked(bufs, m, n, k, self, a, b, c));
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

/// Cache-line aligned storage for packed panels.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

#[derive(Default)]
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
}

fn grow(v: &mut Vec<Line>, floats: usize) -> *mut f32 {
    let lines = floats.div_ceil(16);
    if v.len() < lines {
        v.resize(lines, Line([0.0; 16]));
    }
    v.as_mut_ptr().cast()
}

/// Runs `f` with this thread's packing buffers (reused across calls).
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    thread_local! {
        static BUFS: RefCell<Buffers> = RefCell::new(Buffers::default());
    }
    let mut f = Some(f);
    let reused = BUFS.with(|b| {
        b.try_borrow_mut()
            .ok()
            .map(|mut bufs| (f.take().expect("called once"))(&mut bufs))
    });
    // A re-entrant call (not made by this module, but cheap to allow) gets
    // fresh buffers instead of panicking.
    reused.unwrap_or_else(|| (f.take().expect("called once"))(&mut Buffers::default()))
}

/// The blocked product on one thread: `C = α·A·B + β·C`, `k ≥ 1`.
///
/// # Safety
/// AVX-512F is available; elements `(i, p)` of `a`, `(p, j)` of `b` are
/// readable and `(i, j)` of `c` writable and unaliased, for `i < m`, `p < k`,
/// `j < n`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    bufs: &mut Buffers,
    m: usize,
    n: usize,
    k: usize,
    job: &Job,
    a: Src,
    b: Src,
    c: *mut f32,
) {
    let kc_max = k.div_ceil(k.div_ceil(KC));
    // Whole panels only: packing writes full `MR`/`NR`-wide panels.
    let mc_max = MC.div_ceil(MR).min(m.div_ceil(MR)) * MR;
    let nc_max = NC.div_ceil(NR).min(n.div_ceil(NR)) * NR;
    // Row-major A feeds the kernel unpacked when B is narrow; a partial last
    // panel is still packed (zero padding).
    let direct = a.cs == 1 && n <= DIRECT_MAX_N && !a.rs.is_multiple_of(DIRECT_BAD_STRIDE);
    let (acap, bcap) = (mc_max * kc_max, nc_max * kc_max);
    let abuf = grow(&mut bufs.a, acap);
    let bbuf = grow(&mut bufs.b, bcap);
    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            let beta = if pc == 0 { job.beta } else { 1.0 };
            // SAFETY: `(pc, jc)` is inside B and the `kc × nc` block too;
            // `bbuf` is aligned and holds `nc_max·kc_max ≥ ceil(nc/NR)·NR·kc`.
            unsafe { pack::pack_b::<NV>(kc, nc, b.at(pc, jc), bbuf, bcap) };
            for ic in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - ic);
                // SAFETY: `(ic, pc)` is inside A and the `mc × kc` block too.
                let a_blk = unsafe { a.at(ic, pc) };
                let packed_from = if direct { mc / MR * MR } else { 0 };
                // SAFETY: rows `packed_from .. mc` of the block, packed to
                // the start of `abuf` (`mc_max·kc_max` floats).
                unsafe {
                    let rows = a_blk.at(packed_from, 0);
                    pack::pack_a::<MR>(mc - packed_from, kc, rows, abuf, acap)
                };
                for jr in (0..nc).step_by(NR) {
                    for ir in (0..mc).step_by(MR) {
                        let t = Tile {
                            // SAFETY: `(ic + ir, jc + jr)` is inside C.
                            c: unsafe { c.add((ic + ir) * job.crs + (jc + jr) * job.ccs) },
                            rs: job.crs,
                            cs: job.ccs,
                            rows: MR.min(mc - ir),
                            cols: NR.min(nc - jr),
                            alpha: job.alpha,
                            beta,
                        };
                        // SAFETY: rows `ir .. ir + MR` of the A block (read in
                        // place, all inside A) or their packed panel; panel
                        // `jr / NR` of packed B, `kc` deep; the tile's valid
                        // part is inside the caller's C block.
                        unsafe {
                            let bp = bbuf.add(jr * kc);
                            if ir < packed_from {
                                let ap = a_blk.at(ir, 0).ptr;
                                run_tile::<true>(kc, ap, a.rs, bp, t);
                            } else {
                                let ap = abuf.add((ir - packed_from) * kc);
                                run_tile::<false>(kc, ap, 0, bp, t);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs the kernel for one tile, narrowed to one vector for edge tiles of at
/// most 16 columns (whose B panel `pack_b` packs 16 wide).
///
/// # Safety
/// As for [`kernel::tile`].
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn run_tile<const DIRECT: bool>(
    kc: usize,
    a: *const f32,
    ars: usize,
    b: *const f32,
    t: Tile,
) {
    // SAFETY: forwarded contract; a ≤ 16-column panel is packed 16 wide.
    unsafe {
        if t.cols <= 16 {
            kernel::tile::<MR, 1, DIRECT>(kc, a, ars, b, t)
        } else {
            kernel::tile::<MR, NV, DIRECT>(kc, a, ars, b, t)
        }
    }
}
