//! Fast row-major copies of strided tensors (what `Tensor::contiguous` does).
//!
//! ndarray's generic element-by-element iteration over `IxDyn` layouts is slow
//! (a dynamic index per element). Here dimensions are first merged where the
//! layout allows, then the copy runs as plain row copies when the innermost
//! source stride is 1, or as a cache-tiled 2-D transpose when it is not (the
//! permuted token/channel layouts of the all-MLP models). Work is split over
//! fixed-size outer blocks, so the result never depends on the thread count
//! (it is a copy: exact in any case).

use rayon::prelude::*;

use crate::threads;

/// Side of the square tiles of the transposing copy.
const TILE: usize = 16;
/// Elements per parallel task, roughly.
const TASK: usize = 1 << 15;

/// Merges adjacent dimensions that are contiguous with each other in the source
/// (`stride[i] == stride[i+1]·shape[i+1]`) and drops size-1 dimensions.
fn merge(shape: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut d: Vec<usize> = Vec::new();
    let mut s: Vec<usize> = Vec::new();
    for (&n, &st) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        match (d.last_mut(), s.last_mut()) {
            (Some(pd), Some(ps)) if *ps == st * n => {
                *pd *= n;
                *ps = st;
            }
            _ => {
                d.push(n);
                s.push(st);
            }
        }
    }
    if d.is_empty() {
        d.push(1);
        s.push(1);
    }
    (d, s)
}

/// Source offset of outer index `o` over dimensions `dims` with `strides`.
fn offset(mut o: usize, dims: &[usize], strides: &[usize]) -> usize {
    let mut off = 0;
    for (&n, &st) in dims.iter().zip(strides).rev() {
        off += (o % n) * st;
        o /= n;
    }
    off
}

/// Copies the `shape`/`strides` layout of `src` (offsets from `src[0]`, all
/// strides non-negative and in bounds) into row-major `out`.
pub(crate) fn copy_to_row_major(src: &[f32], shape: &[usize], strides: &[usize], out: &mut [f32]) {
    let (d, s) = merge(shape, strides);
    let n = d.len();
    let inner = d[n - 1];
    if s[n - 1] == 1 || n == 1 {
        // Row copies (or a strided gather along a single dimension).
        let (outer_d, outer_s) = (&d[..n - 1], &s[..n - 1]);
        let step = s[n - 1];
        let rows_per_task = (TASK / inner.max(1)).max(1);
        let body = |(t, chunk): (usize, &mut [f32])| {
            for (r, row) in chunk.chunks_mut(inner).enumerate() {
                let base = offset(t * rows_per_task + r, outer_d, outer_s);
                if step == 1 {
                    row.copy_from_slice(&src[base..base + inner]);
                } else {
                    row.iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v = src[base + i * step]);
                }
            }
        };
        if out.len() > TASK {
            threads::install(|| {
                out.par_chunks_mut(rows_per_task * inner)
                    .enumerate()
                    .for_each(body)
            });
        } else {
            out.chunks_mut(rows_per_task * inner)
                .enumerate()
                .for_each(body);
        }
        return;
    }
    // The innermost source stride is not 1: transpose the plane formed by the
    // last dimension and the dimension with the smallest source stride.
    let j = (0..n - 1).min_by_key(|&i| s[i]).expect("n >= 2");
    let (rows, cols) = (d[j], inner); // plane: a along j, b along the last dim
    let (sa, sb) = (s[j], s[n - 1]);
    let out_sa: usize = d[j + 1..].iter().product(); // output stride of dim j
    let outer_dims: Vec<usize> = (0..n - 1).filter(|&i| i != j).collect();
    let od: Vec<usize> = outer_dims.iter().map(|&i| d[i]).collect();
    let os: Vec<usize> = outer_dims.iter().map(|&i| s[i]).collect();
    // Output offset of an outer index: row-major over all dims with j and last fixed at 0.
    let out_strides: Vec<usize> = (0..n).map(|i| d[i + 1..].iter().product()).collect();
    let oos: Vec<usize> = outer_dims.iter().map(|&i| out_strides[i]).collect();
    let planes: usize = od.iter().product();
    let plane = |p: usize, out_base: *mut f32| {
        let src_base = offset(p, &od, &os);
        let dst_base = offset(p, &od, &oos);
        for a0 in (0..rows).step_by(TILE) {
            for b0 in (0..cols).step_by(TILE) {
                for a in a0..(a0 + TILE).min(rows) {
                    for b in b0..(b0 + TILE).min(cols) {
                        let v = src[src_base + a * sa + b * sb];
                        // SAFETY: `dst_base + a·out_sa + b` < out.len() (row-major
                        // offset of an in-range index), and distinct planes `p`
                        // write disjoint offsets, so tasks never alias.
                        unsafe { *out_base.add(dst_base + a * out_sa + b) = v };
                    }
                }
            }
        }
    };
    let out_ptr = SendPtr(out.as_mut_ptr());
    if out.len() > TASK && planes > 1 {
        threads::install(|| {
            (0..planes)
                .into_par_iter()
                .for_each(|p| plane(p, out_ptr.get()))
        });
    } else {
        (0..planes).for_each(|p| plane(p, out_ptr.get()));
    }
}

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: tasks write disjoint elements through it (see `plane`), and the
// buffer outlives the parallel section that uses it.
unsafe impl Send for SendPtr {}
// SAFETY: as above; no task reads through the pointer.
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    fn reference(t: &Tensor) -> Vec<f32> {
        t.view().iter().copied().collect()
    }

    #[test]
    fn permutations_slices_and_broadcasts_copy_exactly() {
        let base = Tensor::randn(&[3, 5, 7, 11], 0.0, 1.0, 1).unwrap();
        let perms: [[usize; 4]; 6] = [
            [0, 1, 3, 2],
            [3, 2, 1, 0],
            [0, 2, 1, 3],
            [1, 0, 3, 2],
            [2, 3, 0, 1],
            [0, 3, 1, 2],
        ];
        for p in perms {
            let t = base.permute(&p).unwrap();
            assert_eq!(t.contiguous().to_vec(), reference(&t), "perm {p:?}");
        }
        // Narrowed (not one memory block) and size-1 dims.
        let n = base
            .narrow(2, 1, 5)
            .unwrap()
            .permute(&[0, 3, 2, 1])
            .unwrap();
        assert_eq!(n.contiguous().to_vec(), reference(&n));
        let u = base.narrow(0, 1, 1).unwrap().transpose(1, 3).unwrap();
        assert_eq!(u.contiguous().to_vec(), reference(&u));
        // Large enough for the parallel paths, 1 vs 2 threads.
        let big = Tensor::randn(&[64, 49, 128], 0.0, 1.0, 2)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        crate::set_num_threads(1).unwrap();
        let one = big.contiguous();
        crate::set_num_threads(2).unwrap();
        assert_eq!(one, big.contiguous());
        assert_eq!(one.to_vec(), reference(&big));
        let rows = Tensor::randn(&[300, 200], 0.0, 1.0, 3)
            .unwrap()
            .narrow(1, 3, 150)
            .unwrap();
        assert_eq!(rows.contiguous().to_vec(), reference(&rows));
    }
}
