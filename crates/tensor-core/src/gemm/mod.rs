//! General matrix multiply: `C = α·op(A)·op(B) + β·C`, single and batched.
//!
//! Matrices are described by a slice plus row and column strides (in
//! elements), so a transposed operand is the same slice with its strides
//! swapped ([`MatRef::t`]) and costs no copy. Every layout is validated before
//! any kernel runs: a stride that reaches outside its slice, or an output whose
//! elements overlap, is an error, never undefined behaviour.
//!
//! As in BLAS, when `β == 0` the old contents of `C` are not read (they may be
//! uninitialised garbage or NaN).
//!
//! [`gemm_fused`] and [`gemm_batched_with`] take an [`Epilogue`]:
//! `C = act(α·A·B + β·C + bias)`, the bias (per column or per row) and the
//! activation (GELU exact or tanh, ReLU) applied as each block of C is stored,
//! optionally also storing the pre-activation for the backward pass.
//!
//! [`gemm_fresh`] and [`gemm_batched_fresh_with`] return new output buffers,
//! written without being zero-filled first (`torch.empty` + `out=`);
//! [`gemm_fresh_packed`] takes a right operand packed once ([`PackedB`]).
//!
//! [`profile`] records the wall time of every product by shape, on request.
//!
//! ```
//! use allmlp_tensor_core::gemm::{gemm, MatMut, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
//! let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3×2
//! let mut c = [0.0; 4];
//! gemm(1.0, MatRef::row_major(&a, 2, 3)?, MatRef::row_major(&b, 3, 2)?, 0.0, MatMut::row_major(&mut c, 2, 2)?)?;
//! assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

#[cfg(target_arch = "x86_64")]
mod avx512;
mod epilogue;
mod fresh;
mod layout;
mod packed;
mod portable;
pub mod profile;
mod sum_nt;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_epilogue;
#[cfg(test)]
mod tests_fresh;

pub use epilogue::{Activation, Bias, Epilogue};
pub use fresh::{Fresh, FreshEpilogue, gemm_batched_fresh_with, gemm_fresh, gemm_fresh_packed};
pub use layout::{MatMut, MatRef};
pub use packed::PackedB;
pub use sum_nt::gemm_sum_nt;

use rayon::prelude::*;

use crate::{Result, TensorError, threads};

/// Which implementation runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The fastest available on this CPU.
    Auto,
    /// `matrixmultiply`: portable, used where no hand-written kernel applies.
    Portable,
    /// The hand-written AVX-512 kernel (x86-64 CPUs with AVX-512F only;
    /// requesting it elsewhere is an error).
    Avx512,
}

/// A backend resolved against the running CPU.
#[derive(Clone, Copy)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
}

impl Kernel {
    /// The hand-written kernel for this CPU, if there is one.
    fn native() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        return avx512::Avx512::detect().map(Kernel::Avx512);
        #[cfg(not(target_arch = "x86_64"))]
        return None;
    }

    fn select(op: &'static str, backend: Backend) -> Result<Self> {
        let found = Kernel::native();
        match backend {
            Backend::Portable => Ok(Kernel::Portable),
            Backend::Auto => Ok(found.unwrap_or(Kernel::Portable)),
            Backend::Avx512 => found.ok_or_else(|| {
                TensorError::arg(
                    op,
                    "backend Avx512 requested, but this CPU does not support AVX-512F",
                )
            }),
        }
    }

    /// One product, parallel inside over the current pool.
    fn parallel(
        self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        mut c: MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        if a.cols == 0 {
            portable::scale(beta, c.reborrow());
            return epilogue::apply(c, epi);
        }
        match self {
            Kernel::Portable => portable::gemm_parallel(alpha, a, b, beta, c, epi),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.gemm_parallel(alpha, a, b, beta, c, epi),
        }
    }

    /// One product on the calling thread.
    fn serial(
        self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        mut c: MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        if a.cols == 0 {
            portable::scale(beta, c.reborrow());
            return epilogue::apply(c, epi);
        }
        match self {
            Kernel::Portable => portable::gemm_serial(alpha, a, b, beta, c, epi),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.gemm_serial(alpha, a, b, beta, c, epi),
        }
    }
}

/// The rows an `m`-row product computes on this CPU: `m` rounded up to the
/// kernel's row tile (14 with AVX-512), the last tile padded with zeros. A
/// caller free to compute a product or its transpose (a weight gradient
/// `dW` or `dWᵀ`: the same bits either way, each element the same sum) can
/// pick the orientation that pads less.
pub fn padded_rows(m: usize) -> usize {
    match Kernel::native() {
        #[cfg(target_arch = "x86_64")]
        Some(Kernel::Avx512(_)) => m.div_ceil(avx512::MR) * avx512::MR,
        _ => m,
    }
}

/// `C = α·A·B + β·C` for one matrix, on the kernel thread pool.
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) -> Result<()> {
    gemm_with(Backend::Auto, alpha, a, b, beta, c)
}

/// [`gemm`] with an explicit [`Backend`] (benchmarks compare them).
pub fn gemm_with(
    backend: Backend,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<()> {
    let none = Epilogue::default();
    run(
        "gemm",
        backend,
        1,
        alpha,
        (a, 0),
        (b, 0),
        beta,
        (c, 0),
        none,
    )
}

/// `C = act(α·A·B + β·C + bias)` for one matrix, the bias and activation
/// applied as each block of C is stored (see [`Epilogue`]).
pub fn gemm_fused(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
) -> Result<()> {
    let (op, backend) = ("gemm_fused", Backend::Auto);
    run(
        op,
        backend,
        1,
        alpha,
        (a, 0),
        (b, 0),
        beta,
        (c, 0),
        epilogue,
    )
}

/// `C[i] = α·A[i]·B[i] + β·C[i]` for `i < batch`.
///
/// `a`, `b` and `c` describe the first matrix of each batch; matrix `i` starts
/// `i·stride` elements further on. A stride of 0 reuses one matrix for every
/// batch entry (a shared weight: Mixer's token-mixing `W·X` per image). `c`'s
/// stride must keep the outputs disjoint.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched(
    batch: usize,
    alpha: f32,
    a: MatRef<'_>,
    a_stride: usize,
    b: MatRef<'_>,
    b_stride: usize,
    beta: f32,
    c: MatMut<'_>,
    c_stride: usize,
) -> Result<()> {
    gemm_batched_with(
        Backend::Auto,
        batch,
        alpha,
        a,
        a_stride,
        b,
        b_stride,
        beta,
        c,
        c_stride,
        Epilogue::default(),
    )
}

/// The general entry point: [`gemm_batched`] with an explicit [`Backend`] and
/// an [`Epilogue`], `C[i] = act(α·A[i]·B[i] + β·C[i] + bias)` (one bias shared
/// by the batch; the pre-activation slice laid out like C's).
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched_with(
    backend: Backend,
    batch: usize,
    alpha: f32,
    a: MatRef<'_>,
    a_stride: usize,
    b: MatRef<'_>,
    b_stride: usize,
    beta: f32,
    c: MatMut<'_>,
    c_stride: usize,
    epilogue: Epilogue<'_>,
) -> Result<()> {
    let op = "gemm_batched";
    let (a, b, c) = ((a, a_stride), (b, b_stride), (c, c_stride));
    run(op, backend, batch, alpha, a, b, beta, c, epilogue)
}

/// Validates a (batched) product, then runs it on the calling thread or the
/// pool depending on its size.
#[allow(clippy::too_many_arguments)]
fn run(
    op: &'static str,
    backend: Backend,
    batch: usize,
    alpha: f32,
    (a, a_stride): (MatRef<'_>, usize),
    (b, b_stride): (MatRef<'_>, usize),
    beta: f32,
    (c, c_stride): (MatMut<'_>, usize),
    epi: Epilogue<'_>,
) -> Result<()> {
    let _timer = profile::Timer::start(
        op,
        batch,
        (a.rows, a.cols, b.cols),
        profile::Layout::of((a.rs, a.cs), (b.rs, b.cs)),
        epi.act,
    );
    check_dims(op, &a, (b.rows, b.cols), (c.rows, c.cols))?;
    if batch == 0 {
        return Ok(());
    }
    a.check_batch(op, "A", batch, a_stride)?;
    b.check_batch(op, "B", batch, b_stride)?;
    c.check_batch(op, batch, c_stride)?;
    let (m, k, n) = (c.rows, a.cols, c.cols);
    let extent = c.extent();
    let total = if extent == 0 {
        0
    } else {
        (batch - 1) * c_stride + extent
    };
    epi.check(op, m, n, total)?;
    let kernel = Kernel::select(op, backend)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let items: Vec<_> = if batch == 1 {
        vec![(a, b, c, epi)]
    } else {
        let (ars, acs, brs, bcs, crs, ccs) = (a.rs, a.cs, b.rs, b.cs, c.rs, c.cs);
        let epis = epi.split(batch, c_stride, extent);
        c.data
            .chunks_mut(c_stride)
            .take(batch)
            .zip(epis)
            .enumerate()
            .map(|(i, (chunk, e))| {
                let len = extent.min(chunk.len());
                let ai = MatRef::new_unchecked(tail(a.data, i * a_stride), m, k, ars, acs);
                let bi = MatRef::new_unchecked(tail(b.data, i * b_stride), k, n, brs, bcs);
                let ci = MatMut::new_unchecked(&mut chunk[..len], m, n, crs, ccs);
                (ai, bi, ci, e)
            })
            .collect()
    };
    dispatch(items, work(batch, m, k, n), |(ai, bi, ci, e), inside| {
        if inside {
            kernel.parallel(alpha, ai, bi, beta, ci, e)
        } else {
            kernel.serial(alpha, ai, bi, beta, ci, e)
        }
    });
    Ok(())
}

/// Runs the products of a batch (`work` multiply-adds in all): on the calling
/// thread when small; else on the pool, each product parallel inside
/// (`each(item, true)`) when there are too few to share out, or whole
/// products shared out (`each(item, false)`).
fn dispatch<T: Send>(items: Vec<T>, work: usize, each: impl Fn(T, bool) + Sync + Send) {
    if work < PARALLEL_MIN_WORK {
        // Not worth a trip to the pool: the same kernel, same bits, here.
        items.into_iter().for_each(|it| each(it, false));
        return;
    }
    threads::install(|| {
        if items.len() < 2 * rayon::current_num_threads() {
            items.into_iter().for_each(|it| each(it, true));
        } else {
            items.into_par_iter().for_each(|it| each(it, false));
        }
    });
}

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Multiply-adds of `batch` products `m × k` by `k × n` (saturating).
fn work(batch: usize, m: usize, k: usize, n: usize) -> usize {
    batch.saturating_mul(m).saturating_mul(k).saturating_mul(n)
}

/// `data[offset..]`, empty past the end (an empty matrix may sit anywhere).
fn tail(data: &[f32], offset: usize) -> &[f32] {
    data.get(offset..).unwrap_or(&[])
}

fn check_dims(
    op: &'static str,
    a: &MatRef<'_>,
    (b_rows, b_cols): (usize, usize),
    (c_rows, c_cols): (usize, usize),
) -> Result<()> {
    if a.cols != b_rows || c_rows != a.rows || c_cols != b_cols {
        return Err(TensorError::shape(
            op,
            format!(
                "A [m, k], B [k, n], C [m, n] with A = [{}, {}] (so C = [{}, n] and B = [{}, n])",
                a.rows, a.cols, a.rows, a.cols
            ),
            format!("B = [{b_rows}, {b_cols}], C = [{c_rows}, {c_cols}]"),
        ));
    }
    Ok(())
}
