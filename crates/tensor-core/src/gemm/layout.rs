//! Strided matrix descriptors, validated once so kernels can trust them.

use crate::{Result, TensorError};

/// A read-only matrix: `rows × cols` elements of `data`, element `(i, j)` at `i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// A writable matrix: like [`MatRef`], and no two elements share a location.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// One past the largest offset a `rows × cols` layout with strides `rs`, `cs` touches (0 if empty).
fn extent(op: &'static str, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)))
        .and_then(|e| e.checked_add(1))
        .ok_or_else(|| TensorError::Overflow {
            op,
            what: format!("the extent of a {rows}×{cols} matrix with strides ({rs}, {cs})"),
        })
}

impl<'a> MatRef<'a> {
    /// A `rows × cols` matrix with element `(i, j)` at `data[i·rs + j·cs]`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        let needed = extent("MatRef::new", rows, cols, rs, cs)?;
        if needed > data.len() {
            return Err(TensorError::BufferTooShort {
                op: "MatRef::new",
                needed,
                len: data.len(),
            });
        }
        Ok(MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        MatRef::new(data, rows, cols, cols, 1)
    }

    /// The transpose: same data, strides swapped, no copy.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(row stride, column stride)` in elements.
    pub fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }

    /// The backing slice (element `(0, 0)` first).
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Element `(i, j)`, or `None` outside the matrix.
    pub fn at(&self, i: usize, j: usize) -> Option<f32> {
        if i >= self.rows || j >= self.cols {
            return None;
        }
        self.data.get(i * self.rs + j * self.cs).copied()
    }

    /// Trusted constructor for layouts derived from a validated one.
    pub(crate) fn new_unchecked(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        debug_assert!(extent("MatRef", rows, cols, rs, cs).is_ok_and(|e| e <= data.len()));
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Checks that `batch` matrices `stride` elements apart fit in the slice.
    pub(crate) fn check_batch(
        &self,
        op: &'static str,
        name: &str,
        batch: usize,
        stride: usize,
    ) -> Result<()> {
        let one = extent(op, self.rows, self.cols, self.rs, self.cs)?;
        let needed = (batch - 1)
            .checked_mul(stride)
            .and_then(|s| s.checked_add(one))
            .ok_or_else(|| TensorError::Overflow {
                op,
                what: format!("the extent of {batch} batched {name} matrices"),
            })?;
        if one > 0 && needed > self.data.len() {
            return Err(TensorError::BufferTooShort {
                op,
                needed,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}

impl<'a> MatMut<'a> {
    /// A writable `rows × cols` matrix; its elements must not overlap.
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self> {
        let needed = extent("MatMut::new", rows, cols, rs, cs)?;
        if needed > data.len() {
            return Err(TensorError::BufferTooShort {
                op: "MatMut::new",
                needed,
                len: data.len(),
            });
        }
        // Sufficient condition for distinct elements: one stride steps over the
        // whole span of the other dimension.
        let distinct = rows <= 1 && (cols <= 1 || cs >= 1)
            || cols <= 1 && rs >= 1
            || cs >= 1 && rs >= cols * cs
            || rs >= 1 && cs >= rows * rs;
        if !distinct {
            return Err(TensorError::arg(
                "MatMut::new",
                format!(
                    "a {rows}×{cols} output with strides ({rs}, {cs}) has overlapping elements"
                ),
            ));
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self> {
        MatMut::new(data, rows, cols, cols, 1)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// A shorter-lived writable view of the same matrix.
    pub fn reborrow(&mut self) -> MatMut<'_> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    pub(crate) fn extent(&self) -> usize {
        extent("MatMut", self.rows, self.cols, self.rs, self.cs).unwrap_or(0)
    }

    pub(crate) fn new_unchecked(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        debug_assert!(extent("MatMut", rows, cols, rs, cs).is_ok_and(|e| e <= data.len()));
        MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Checks that `batch` outputs `stride` elements apart fit and do not overlap.
    pub(crate) fn check_batch(&self, op: &'static str, batch: usize, stride: usize) -> Result<()> {
        let one = self.extent();
        if one == 0 {
            return Ok(());
        }
        if batch > 1 && stride < one {
            return Err(TensorError::arg(
                op,
                format!(
                    "output batch stride {stride} is smaller than one output matrix ({one} elements): outputs would overlap"
                ),
            ));
        }
        let needed = (batch - 1)
            .checked_mul(stride)
            .and_then(|s| s.checked_add(one))
            .ok_or_else(|| TensorError::Overflow {
                op,
                what: format!("the extent of {batch} batched C matrices"),
            })?;
        if needed > self.data.len() {
            return Err(TensorError::BufferTooShort {
                op,
                needed,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}
