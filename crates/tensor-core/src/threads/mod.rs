//! The thread pool every parallel kernel runs on.
//!
//! The size comes from [`set_num_threads`], else from the `ALLMLP_NUM_THREADS`
//! environment variable, else the number of available cores. Kernels never use
//! rayon's global pool, so an application's own rayon work is not disturbed and
//! the count can be changed at any time (a new pool is built).
//!
//! Every kernel splits its work at boundaries that do not depend on the thread
//! count, so results are bit-identical for 1 and N threads.
//!
//! [`side_by_side`] runs independent pieces of work (the two halves of a
//! training batch) at the same time, each on its own share of the threads:
//! kernels called inside a piece run on that share's pool.

mod side_by_side;

pub use side_by_side::side_by_side;

use std::cell::Cell;
use std::sync::{Arc, OnceLock, RwLock};

use rayon::ThreadPool;

use crate::{Result, TensorError};

/// Environment variable read once, on first use, for the default thread count.
pub const NUM_THREADS_ENV: &str = "ALLMLP_NUM_THREADS";

fn slot() -> &'static RwLock<Option<Arc<ThreadPool>>> {
    static POOL: OnceLock<RwLock<Option<Arc<ThreadPool>>>> = OnceLock::new();
    POOL.get_or_init(|| RwLock::new(None))
}

/// The thread count `ALLMLP_NUM_THREADS` asks for: `None` when it is unset, an error naming
/// the variable and its value when it is not a whole number in `1..=`[`max_threads`]. The
/// pool itself ignores such a value and uses every core; programs call this first to report
/// it.
pub fn threads_from_env() -> Result<Option<usize>> {
    let Some(v) = std::env::var_os(NUM_THREADS_ENV) else {
        return Ok(None);
    };
    let v = v.to_string_lossy();
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => check_count("threads", &format!("{NUM_THREADS_ENV}={v:?}"), n).map(Some),
        _ => Err(TensorError::arg(
            "threads",
            format!("{NUM_THREADS_ENV}={v:?} must be a whole number of threads ≥ 1 (or unset)"),
        )),
    }
}

/// The cores this process may run on (1 when the OS cannot say).
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The largest thread count accepted: four threads per core, and never fewer than 64.
///
/// More threads than that cannot make a kernel faster, and starting them is not free: a pool
/// of 100,000 threads takes minutes to build.
pub fn max_threads() -> usize {
    (4 * cores()).max(64)
}

/// `n` when it is at most [`max_threads`], else an error naming `what` (where `n` came from).
fn check_count(op: &'static str, what: &str, n: usize) -> Result<usize> {
    let max = max_threads();
    if n > max {
        return Err(TensorError::arg(
            op,
            format!(
                "{what} must be at most {max} here (4 threads per core, {} cores, and never \
                 less than 64), got {n}",
                cores()
            ),
        ));
    }
    Ok(n)
}

fn default_threads() -> usize {
    threads_from_env().ok().flatten().unwrap_or_else(cores)
}

thread_local! {
    /// Whether this thread is a worker of a pool built here (the kernel pool
    /// or a [`side_by_side`] share).
    static KERNEL_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// True on a worker of a pool built here, where kernels stay on that pool.
fn on_kernel_thread() -> bool {
    KERNEL_THREAD.with(Cell::get)
}

/// A pool of `n` threads named by `name`, whose workers kernels recognise.
fn build_pool(
    n: usize,
    name: impl Fn(usize) -> String + 'static,
) -> std::result::Result<ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(name)
        .start_handler(|_| KERNEL_THREAD.with(|k| k.set(true)))
        .build()
}

fn build(n: usize) -> Result<Arc<ThreadPool>> {
    build_pool(n, |i| format!("allmlp-{i}"))
        .map(Arc::new)
        .map_err(|e| TensorError::arg("set_num_threads", format!("cannot start {n} threads: {e}")))
}

/// The pool kernels run on, created on first use.
pub fn pool() -> Arc<ThreadPool> {
    if let Some(p) = slot().read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return p.clone();
    }
    let mut guard = slot().write().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    let n = default_threads();
    // Falling back to one thread keeps kernels usable if the OS refuses threads.
    let p = build(n)
        .or_else(|_| build(1))
        .expect("a one-thread pool can always be built");
    *guard = Some(p.clone());
    p
}

/// Sets the number of threads kernels use from now on. `n` must be at least 1 and at most
/// [`max_threads`].
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(TensorError::arg(
            "set_num_threads",
            "thread count must be at least 1, got 0",
        ));
    }
    check_count("set_num_threads", "thread count", n)?;
    let p = build(n)?;
    *slot().write().unwrap_or_else(|e| e.into_inner()) = Some(p);
    Ok(())
}

/// The number of threads kernels currently use.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// The number of threads kernels called from here use: the kernel pool's,
/// or inside a [`side_by_side`] piece, that piece's share.
pub fn current_threads() -> usize {
    if on_kernel_thread() {
        rayon::current_num_threads()
    } else {
        num_threads()
    }
}

/// Runs `f` inside the kernel pool, so rayon calls in `f` use it; on a worker
/// of a pool built here (inside [`side_by_side`], or an op nested in
/// another), `f` runs right here, on that pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if on_kernel_thread() {
        return f();
    }
    let p = pool();
    p.install(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count above the limit is refused before any thread starts, naming the limit; the
    /// limit itself is accepted (4 per core, at least 64).
    #[test]
    fn thread_counts_above_the_limit_are_refused() {
        let max = max_threads();
        assert!(max >= 64 && max >= 4 * cores());
        let e = set_num_threads(max + 1).unwrap_err().to_string();
        assert!(
            e.contains(&format!("at most {max} here")) && e.contains(&format!("got {}", max + 1)),
            "{e}"
        );
        assert_eq!(
            check_count("threads", "x", max).unwrap(),
            max,
            "the limit itself is allowed"
        );
        let e = check_count("threads", "ALLMLP_NUM_THREADS=\"100000\"", 100_000)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("threads: "), "{e}");
        assert!(
            e.contains("ALLMLP_NUM_THREADS=\"100000\" must be at most"),
            "{e}"
        );
    }
}
