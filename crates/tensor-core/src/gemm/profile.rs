//! Where GEMM time goes, by shape: an opt-in record of every product's wall
//! time, for finding the slow shapes of a training step or a model.
//!
//! Off by default; then each product pays one relaxed atomic load (and the
//! classification of its operands' layout). [`start`] clears the record and
//! turns it on, [`take`] turns it off and returns one row per distinct (entry
//! point, batch, m, k, n, operand layout, activation), slowest first; the
//! `*_with` entry points count under their plain names, whatever the backend.
//! A call that fails validation counts too (it returns at once). The record
//! is process-wide: products on every thread are counted.
//!
//! ```
//! use allmlp_tensor_core::gemm::{gemm, profile, MatMut, MatRef};
//! profile::start();
//! let (a, b, mut c) = ([1.0; 6], [1.0; 6], [0.0; 4]);
//! gemm(1.0, MatRef::row_major(&a, 2, 3)?, MatRef::row_major(&b, 3, 2)?, 0.0, MatMut::row_major(&mut c, 2, 2)?)?;
//! let rows = profile::take();
//! assert!(rows.iter().any(|r| (r.m, r.k, r.n, r.calls) == (2, 3, 2, 1)));
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```
//!
//! `benches/examples/train_steps.rs` prints this table for a training step
//! when `ALLMLP_GEMM_PROFILE` is set (docs/perf.md).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::Activation;

static ON: AtomicBool = AtomicBool::new(false);
static RECORD: Mutex<Option<HashMap<Key, (usize, f64)>>> = Mutex::new(None);

/// What distinguishes one row of the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    op: &'static str,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    layout: Layout,
    act: Activation,
}

/// One shape's products: how many and how long they took in all.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeTime {
    /// The entry point (`gemm`, `gemm_fused`, `gemm_batched`).
    pub op: &'static str,
    /// Products per call (1 for a single product).
    pub batch: usize,
    /// Rows of C.
    pub m: usize,
    /// The shared dimension.
    pub k: usize,
    /// Columns of C.
    pub n: usize,
    /// How A and B are stored.
    pub layout: Layout,
    /// The epilogue's activation.
    pub act: Activation,
    /// Calls recorded.
    pub calls: usize,
    /// Wall-clock seconds of those calls together.
    pub seconds: f64,
}

/// How the operands of a product are stored: `N` row-major (unit column
/// stride), `T` column-major (a transposed view), `S` any other strides; for
/// A then B, as in BLAS's `transa`/`transb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout(pub [char; 2]);

impl Layout {
    /// The layout of operands with strides `(a_rs, a_cs)` and `(b_rs, b_cs)`.
    pub(super) fn of((a_rs, a_cs): (usize, usize), (b_rs, b_cs): (usize, usize)) -> Layout {
        let one = |rs: usize, cs: usize| match (rs, cs) {
            (_, 1) => 'N',
            (1, _) => 'T',
            _ => 'S',
        };
        Layout([one(a_rs, a_cs), one(b_rs, b_cs)])
    }
}

impl ShapeTime {
    /// Achieved GFLOP/s: `2·batch·m·k·n` per call over the recorded time.
    pub fn gflops(&self) -> f64 {
        let flops = 2.0 * (self.batch * self.m * self.k * self.n * self.calls) as f64;
        flops / self.seconds.max(1e-12) / 1e9
    }
}

impl fmt::Display for ShapeTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.1} ms {:>6} calls {:>7.1} GFLOP/s  {} batch {} {}×{}×{} {}{} {:?}",
            self.seconds * 1e3,
            self.calls,
            self.gflops(),
            self.op,
            self.batch,
            self.m,
            self.k,
            self.n,
            self.layout.0[0],
            self.layout.0[1],
            self.act
        )
    }
}

fn record() -> MutexGuard<'static, Option<HashMap<Key, (usize, f64)>>> {
    // A panic while holding the lock cannot leave the map inconsistent
    // (single inserts and additions), so a poisoned lock is still usable.
    RECORD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Clears the record and starts recording.
pub fn start() {
    *record() = Some(HashMap::new());
    ON.store(true, Ordering::Relaxed);
}

/// Stops recording and returns the rows, slowest first.
pub fn take() -> Vec<ShapeTime> {
    ON.store(false, Ordering::Relaxed);
    let map = record().take().unwrap_or_default();
    let mut rows: Vec<ShapeTime> = map
        .into_iter()
        .map(|(k, (calls, seconds))| ShapeTime {
            op: k.op,
            batch: k.batch,
            m: k.m,
            k: k.k,
            n: k.n,
            layout: k.layout,
            act: k.act,
            calls,
            seconds,
        })
        .collect();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    rows
}

/// Times one call from [`Timer::start`] until it is dropped, when recording.
pub(super) struct Timer(Option<(Instant, Key)>);

impl Timer {
    /// Starts timing a call (nothing when not recording).
    pub(super) fn start(
        op: &'static str,
        batch: usize,
        (m, k, n): (usize, usize, usize),
        layout: Layout,
        act: Activation,
    ) -> Timer {
        let key = Key {
            op,
            batch,
            m,
            k,
            n,
            layout,
            act,
        };
        Timer(ON.load(Ordering::Relaxed).then(|| (Instant::now(), key)))
    }
}

impl Drop for Timer {
    /// Adds the call to the record.
    fn drop(&mut self) {
        let Some((t0, key)) = self.0 else { return };
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(map) = record().as_mut() {
            let e = map.entry(key).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += seconds;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{MatMut, MatRef, gemm, gemm_batched};

    #[test]
    fn counts_each_shape_and_stops_after_take() {
        // Shapes no other test uses: the record is process-wide and other
        // tests run at the same time.
        let a = vec![0.5f32; 13 * 17 * 3];
        let b = vec![0.25f32; 17 * 19 * 3];
        let mut c = vec![0f32; 13 * 19 * 3];
        let run = |c: &mut [f32]| {
            let am = MatRef::row_major(&a[..13 * 17], 13, 17).unwrap();
            let bm = MatRef::row_major(&b[..17 * 19], 17, 19).unwrap();
            gemm(
                1.0,
                am,
                bm,
                0.0,
                MatMut::row_major(&mut c[..13 * 19], 13, 19).unwrap(),
            )
            .unwrap();
            let am = MatRef::row_major(&a, 13, 17).unwrap();
            let bm = MatRef::row_major(&b, 17, 19).unwrap();
            let cm = MatMut::row_major(c, 13, 19).unwrap();
            gemm_batched(3, 1.0, am, 13 * 17, bm, 17 * 19, 0.0, cm, 13 * 19).unwrap();
        };
        start();
        run(&mut c);
        run(&mut c);
        let rows = take();
        let find = |op: &str, batch: usize| {
            rows.iter()
                .find(|r| {
                    (r.op, r.batch, r.m, r.k, r.n) == (op, batch, 13, 17, 19)
                        && (r.layout, r.act) == (Layout(['N', 'N']), Activation::Identity)
                })
                .unwrap_or_else(|| panic!("no {op} batch {batch} row in {rows:?}"))
        };
        let (single, batched) = (find("gemm", 1), find("gemm_batched", 3));
        assert_eq!((single.calls, batched.calls), (2, 2));
        assert!(single.seconds > 0.0 && single.gflops() > 0.0);
        assert_eq!(
            (single.act, single.layout),
            (Activation::Identity, Layout(['N', 'N']))
        );
        assert_eq!(Layout::of((1, 13), (19, 1)), Layout(['T', 'N']));
        assert_eq!(Layout::of((4, 2), (1, 1)), Layout(['S', 'N']));
        assert!(rows.windows(2).all(|w| w[0].seconds >= w[1].seconds));
        assert!(single.to_string().contains("13×17×19"), "{single}");
        // Off again: products are not timed until the next `start`.
        let off = Timer::start(
            "gemm",
            1,
            (1, 1, 1),
            Layout(['N', 'N']),
            Activation::Identity,
        );
        assert!(off.0.is_none());
        assert!(take().is_empty());
    }
}
