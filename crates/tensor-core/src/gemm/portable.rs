//! The portable path: `matrixmultiply`, split over threads by rows of C.
//!
//! An [`Epilogue`] is applied to each block of `ROW_BLOCK` rows right after
//! matrixmultiply has stored it (still in L2), not in a pass over all of C.

use rayon::prelude::*;

use super::epilogue::{self, Epilogue};
use super::{MatMut, MatRef};

/// Rows of C per parallel task (and per epilogue block); fixed, so results do
/// not depend on thread count.
const ROW_BLOCK: usize = 64;

/// One product on the current thread (`k ≥ 1`).
pub(crate) fn gemm_serial(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    mut epi: Epilogue<'_>,
) {
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if epi.is_noop() {
        return sgemm(alpha, a, b, beta, c);
    }
    let (rs, cs) = (c.rs, c.cs);
    for r0 in (0..m).step_by(ROW_BLOCK) {
        let rows = ROW_BLOCK.min(m - r0);
        // Row `r0` and the rows after it start at offset `r0·rs`: any layout.
        let ai = MatRef::new_unchecked(&a.data[r0 * a.rs..], rows, a.cols, a.rs, a.cs);
        let mut ci = MatMut::new_unchecked(&mut c.data[r0 * rs..], rows, n, rs, cs);
        sgemm(alpha, ai, b, beta, ci.reborrow());
        epilogue::apply(ci, epi.sub(r0, r0 * rs));
    }
}

/// matrixmultiply's `C = α·A·B + β·C`.
fn sgemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // SAFETY: `MatRef`/`MatMut` were validated so that every offset
    // `i·rs + j·cs` (i < rows, j < cols) lies inside their slices, and `MatMut`
    // elements are pairwise distinct; strides fit in isize because they index
    // a slice. matrixmultiply reads/writes exactly those offsets and does not
    // read C when beta == 0.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.data.as_mut_ptr(),
            c.rs as isize,
            c.cs as isize,
        );
    }
}

/// `C = β·C` (β = 0 overwrites with zeros, as BLAS does).
pub(crate) fn scale(beta: f32, c: MatMut<'_>) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let v = &mut c.data[i * c.rs + j * c.cs];
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
    }
}

/// One product, split into row blocks of C that run in parallel.
pub(crate) fn gemm_parallel(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let (m, n) = (c.rows, c.cols);
    // Row blocks are disjoint slices only for row-major-ish C (rs ≥ cols·cs).
    let splittable = m > ROW_BLOCK && c.cs >= 1 && c.rs >= n * c.cs;
    if !splittable || (m * n * a.cols) < (1 << 18) {
        gemm_serial(alpha, a, b, beta, c, epi);
        return;
    }
    let (rs, cs) = (c.rs, c.cs);
    let block_len = ROW_BLOCK * rs;
    let end = ((m - 1) * rs + (n - 1) * cs + 1).min(c.data.len());
    // One epilogue per row block: the pre-activation cut like C.
    let epis = epi.split(m.div_ceil(ROW_BLOCK), block_len, block_len);
    c.data[..end]
        .par_chunks_mut(block_len)
        .zip(epis)
        .enumerate()
        .for_each(|(bi, (chunk, mut e))| {
            let r0 = bi * ROW_BLOCK;
            let rows = ROW_BLOCK.min(m - r0);
            let ai = MatRef::new_unchecked(&a.data[r0 * a.rs..], rows, a.cols, a.rs, a.cs);
            let ci = MatMut::new_unchecked(chunk, rows, n, rs, cs);
            gemm_serial(alpha, ai, b, beta, ci, e.sub(r0, 0));
        });
}
