//! Independent pieces of work run at the same time, each on its own share of
//! the threads.
//!
//! A training step on two cores splits each op over both threads: every GEMM
//! packs operands twice or waits at a barrier, every elementwise op hands half
//! its rows to the other thread. Two halves of the batch run side by side, one
//! per thread, do the same arithmetic with none of that (a Mixer-tiny step at
//! batch 128 on two threads: 9% less wall time, `docs/perf.md`).

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

use super::{build_pool, current_threads, install};

/// The pools pieces run on: `threads` threads shared out over `pools.len()`
/// pools.
struct Shares {
    threads: usize,
    pools: Arc<Vec<ThreadPool>>,
}

/// The pools for `count` shares of `threads` threads (`2 ≤ count ≤ threads`),
/// built on first use and kept while the counts stay the same.
fn shares(threads: usize, count: usize) -> Option<Arc<Vec<ThreadPool>>> {
    static SHARES: Mutex<Option<Shares>> = Mutex::new(None);
    let mut guard = SHARES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_ref()
        && s.threads == threads
        && s.pools.len() == count
    {
        return Some(s.pools.clone());
    }
    let pools: Vec<ThreadPool> = (0..count)
        .map(|j| {
            let n = threads / count + usize::from(j < threads % count);
            build_pool(n, move |i| format!("allmlp-share{j}-{i}")).ok()
        })
        .collect::<Option<_>>()?;
    let pools = Arc::new(pools);
    *guard = Some(Shares {
        threads,
        pools: pools.clone(),
    });
    Some(pools)
}

/// Runs `f(0)`, …, `f(parts − 1)` and returns their results in that order.
///
/// With at least two threads (those kernels called from here would use,
/// [`super::current_threads`]) the pieces run side by side: the threads are
/// shared out over `min(parts, threads)` pools, piece `i` runs on pool
/// `i mod pools`, and kernels inside a piece run on its pool's threads only.
/// With one thread (or one piece) they run one after the other on the kernel
/// pool. Kernels give the same bits for any thread count, so each piece's
/// result does not depend on which way it ran.
///
/// A panic in a piece is resumed here once every piece has finished.
///
/// ```
/// use allmlp_tensor_core::threads::side_by_side;
/// let sums = side_by_side(3, |i| (0..=i as u64 * 10).sum::<u64>());
/// assert_eq!(sums, [0, 55, 210]);
/// ```
pub fn side_by_side<R: Send>(parts: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let threads = current_threads();
    let pools = (parts >= 2 && threads >= 2)
        .then(|| shares(threads, parts.min(threads)))
        .flatten();
    let Some(pools) = pools else {
        // One thread, one piece, or the OS refused the threads.
        return (0..parts).map(|i| install(|| f(i))).collect();
    };
    let count = pools.len();
    let run_share = |j: usize| -> Vec<(usize, R)> {
        pools[j].install(|| (j..parts).step_by(count).map(|i| (i, f(i))).collect())
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let others: Vec<_> = (1..count)
            .map(|j| {
                let run_share = &run_share;
                s.spawn(move || run_share(j))
            })
            .collect();
        let mut done = run_share(0);
        for h in others {
            match h.join() {
                Ok(share) => done.extend(share),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of `n` threads whose workers kernels recognise, as the kernel pool's are.
    fn kernel_pool(n: usize) -> ThreadPool {
        build_pool(n, |i| format!("test-{i}")).unwrap()
    }

    /// Each piece sees its share of the threads (kernels inside use only
    /// those), results come back in piece order, and one thread runs the
    /// pieces in order on the kernel pool.
    #[test]
    fn pieces_run_on_shares_of_the_threads_in_order() {
        let three = kernel_pool(3);
        let seen = three.install(|| {
            assert_eq!(current_threads(), 3);
            side_by_side(4, |i| {
                (
                    i,
                    current_threads(),
                    rayon::current_thread_index().is_some(),
                )
            })
        });
        // Three threads over three pools of one; piece 3 shares pool 0.
        assert_eq!(
            seen,
            [(0, 1, true), (1, 1, true), (2, 1, true), (3, 1, true)]
        );

        let five = kernel_pool(5);
        let seen = five.install(|| side_by_side(2, |i| (i, current_threads())));
        assert_eq!(seen, [(0, 3), (1, 2)]);

        // Installed into a pool of one, the pieces run there, one after the other.
        let one = kernel_pool(1);
        let order = Mutex::new(Vec::new());
        let seen = one.install(|| {
            side_by_side(3, |i| {
                order.lock().unwrap().push(i);
                current_threads()
            })
        });
        assert_eq!(seen, [1, 1, 1]);
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
    }

    /// Pieces really overlap in time: two pieces that each wait for the other
    /// finish (one after the other, they would wait forever).
    #[test]
    fn two_pieces_run_at_the_same_time() {
        let two = kernel_pool(2);
        let barrier = std::sync::Barrier::new(2);
        let out = two.install(|| {
            side_by_side(2, |i| {
                barrier.wait();
                i * 10
            })
        });
        assert_eq!(out, [0, 10]);
    }

    /// A panicking piece panics the caller, after the other piece finished.
    #[test]
    fn a_panic_in_a_piece_reaches_the_caller() {
        let two = kernel_pool(2);
        let finished = std::sync::atomic::AtomicBool::new(false);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            two.install(|| {
                side_by_side(2, |i| {
                    if i == 1 {
                        panic!("piece 1 failed");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    finished.store(true, std::sync::atomic::Ordering::SeqCst);
                })
            })
        }));
        assert!(r.is_err());
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    }
}
