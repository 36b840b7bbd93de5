//! Shape operations: reshape, permute/transpose, narrow, concat, broadcast, squeeze.
//!
//! Permutes, transposes and narrows are strided views of the same storage (no
//! copy); reshape copies only when the input is not contiguous.

use ndarray::{ArrayViewD, Axis, IxDyn, Slice};

use crate::error::{checked_numel, fmt_shape};
use crate::{Result, Tensor, TensorError};

/// The shape two shapes broadcast to under NumPy/PyTorch rules.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(TensorError::shape(
                    op,
                    "shapes that broadcast (each dimension equal, or 1)",
                    format!("{} and {}", fmt_shape(a), fmt_shape(b)),
                ));
            }
        };
    }
    Ok(out)
}

impl Tensor {
    /// The same elements in row-major order with a new shape (copies only if non-contiguous).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = checked_numel("reshape", shape)?;
        if n != self.numel() {
            return Err(TensorError::shape(
                "reshape",
                format!(
                    "a shape with {} elements (input {})",
                    self.numel(),
                    fmt_shape(self.shape())
                ),
                format!("{} ({n} elements)", fmt_shape(shape)),
            ));
        }
        let a = self.contiguous().into_arc();
        a.into_shape_with_order(IxDyn(shape))
            .map(Tensor::from_arc)
            .map_err(|e| TensorError::arg("reshape", e.to_string()))
    }

    /// Collapses dimensions `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor> {
        if start > end || end >= self.ndim() {
            return Err(TensorError::arg(
                "flatten",
                format!(
                    "need start <= end < rank {}, got start={start} end={end}",
                    self.ndim()
                ),
            ));
        }
        let s = self.shape();
        let mut shape = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(&shape)
    }

    /// Reorders dimensions: output dimension `i` is input dimension `axes[i]` (a strided view).
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        let rank = self.ndim();
        let mut seen = vec![false; rank];
        let valid = axes.len() == rank
            && axes
                .iter()
                .all(|&a| a < rank && !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(TensorError::shape(
                "permute",
                format!("a permutation of 0..{rank}"),
                format!("{axes:?}"),
            ));
        }
        Ok(Tensor::from_arc(
            self.array().clone().permuted_axes(IxDyn(axes)),
        ))
    }

    /// Swaps dimensions `a` and `b` (a strided view).
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let rank = self.ndim();
        for axis in [a, b] {
            if axis >= rank {
                return Err(TensorError::AxisOutOfRange {
                    op: "transpose",
                    axis,
                    rank,
                });
            }
        }
        let mut arr = self.array().clone();
        arr.swap_axes(a, b);
        Ok(Tensor::from_arc(arr))
    }

    /// Elements `start..start+len` along `axis` (a strided view).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let size = self.dim("narrow", axis)?;
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(TensorError::arg(
                "narrow",
                format!("range {start}..{start}+{len} is outside dimension {axis} of size {size}"),
            ));
        }
        let mut arr = self.array().clone();
        arr.slice_axis_inplace(Axis(axis), Slice::from(start..start + len));
        Ok(Tensor::from_arc(arr))
    }

    /// Inserts a dimension of size 1 at `axis` (`axis <= rank`).
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.ndim() {
            return Err(TensorError::AxisOutOfRange {
                op: "unsqueeze",
                axis,
                rank: self.ndim(),
            });
        }
        Ok(Tensor::from_arc(
            self.array().clone().insert_axis(Axis(axis)),
        ))
    }

    /// Removes dimension `axis`, which must have size 1.
    pub fn squeeze(&self, axis: usize) -> Result<Tensor> {
        let size = self.dim("squeeze", axis)?;
        if size != 1 {
            return Err(TensorError::shape(
                "squeeze",
                format!("dimension {axis} of size 1"),
                format!("size {size} (shape {})", fmt_shape(self.shape())),
            ));
        }
        Ok(Tensor::from_arc(
            self.array().clone().index_axis_move(Axis(axis), 0),
        ))
    }

    /// A copy expanded to `shape` by broadcasting (NumPy rules).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_array(
            self.broadcast_view("broadcast_to", shape)?.to_owned(),
        ))
    }

    /// A zero-copy broadcast view, for kernels that read through strides.
    pub fn broadcast_view(&self, op: &'static str, shape: &[usize]) -> Result<ArrayViewD<'_, f32>> {
        let target = broadcast_shapes(op, self.shape(), shape)?;
        if target != shape {
            return Err(TensorError::shape(
                op,
                format!("a shape that broadcasts to {}", fmt_shape(shape)),
                fmt_shape(self.shape()),
            ));
        }
        self.array()
            .broadcast(IxDyn(shape))
            .ok_or_else(|| TensorError::shape(op, fmt_shape(shape), fmt_shape(self.shape())))
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    pub fn concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| TensorError::arg("concat", "need at least one tensor, got none"))?;
        let rank = first.ndim();
        if axis >= rank {
            return Err(TensorError::AxisOutOfRange {
                op: "concat",
                axis,
                rank,
            });
        }
        for (i, t) in tensors.iter().enumerate() {
            let same = t.ndim() == rank
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(d, (a, b))| d == axis || a == b);
            if !same {
                return Err(TensorError::shape(
                    "concat",
                    format!(
                        "shapes equal to {} except along axis {axis}",
                        fmt_shape(first.shape())
                    ),
                    format!("tensor {i} with shape {}", fmt_shape(t.shape())),
                ));
            }
        }
        let views: Vec<_> = tensors.iter().map(|t| t.view()).collect();
        ndarray::concatenate(Axis(axis), &views)
            .map(Tensor::from_array)
            .map_err(|e| TensorError::arg("concat", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec((0..n).map(|v| v as f32).collect(), shape).unwrap()
    }

    #[test]
    fn permute_is_a_view_and_matches_index_math() {
        let t = seq(&[2, 3, 4]);
        let p = t.permute(&[2, 0, 1]).unwrap();
        assert_eq!(p.shape(), &[4, 2, 3]);
        assert!(!p.is_contiguous());
        for i in 0..4 {
            for j in 0..2 {
                for k in 0..3 {
                    assert_eq!(p.get(&[i, j, k]).unwrap(), (j * 12 + k * 4 + i) as f32);
                }
            }
        }
        let r = p.reshape(&[8, 3]).unwrap();
        assert!(r.is_contiguous());
        assert_eq!(r.get(&[1, 2]).unwrap(), p.get(&[0, 1, 2]).unwrap());
        assert!(t.permute(&[0, 0, 1]).is_err());
        assert!(t.permute(&[0, 1]).is_err());
    }

    #[test]
    fn transpose_narrow_squeeze() {
        let t = seq(&[3, 5]);
        let tt = t.transpose(0, 1).unwrap();
        assert_eq!(tt.get(&[4, 2]).unwrap(), 14.0);
        let n = t.narrow(1, 1, 3).unwrap();
        assert_eq!(n.shape(), &[3, 3]);
        assert_eq!(n.to_vec(), vec![1., 2., 3., 6., 7., 8., 11., 12., 13.]);
        assert!(t.narrow(1, 3, 3).is_err());
        assert!(t.narrow(2, 0, 1).is_err());
        assert!(t.transpose(0, 2).is_err());
        let u = t.unsqueeze(1).unwrap();
        assert_eq!(u.shape(), &[3, 1, 5]);
        assert_eq!(u.squeeze(1).unwrap(), t);
        let e = t.squeeze(0).unwrap_err().to_string();
        assert!(e.contains("squeeze") && e.contains("size 3"), "{e}");
        assert_eq!(t.flatten(0, 1).unwrap().shape(), &[15]);
    }

    #[test]
    fn reshape_errors_name_both_shapes() {
        let e = seq(&[2, 3]).reshape(&[4, 2]).unwrap_err().to_string();
        assert!(
            e.contains("reshape") && e.contains("[2, 3]") && e.contains("[4, 2]"),
            "{e}"
        );
    }

    #[test]
    fn concat_along_each_axis() {
        let a = seq(&[2, 3]);
        let b = seq(&[2, 2]).transpose(0, 1).unwrap(); // non-contiguous [2, 2]
        let c = Tensor::concat(&[&a, &b], 1).unwrap();
        assert_eq!(c.shape(), &[2, 5]);
        assert_eq!(c.to_vec(), vec![0., 1., 2., 0., 2., 3., 4., 5., 1., 3.]);
        let d = Tensor::concat(&[&a, &a], 0).unwrap();
        assert_eq!(d.narrow(0, 2, 2).unwrap(), a);
        assert!(Tensor::concat(&[&a, &b], 0).is_err());
        assert!(Tensor::concat(&[], 0).is_err());
        assert!(Tensor::concat(&[&a], 2).is_err());
    }

    #[test]
    fn broadcasting_rules() {
        assert_eq!(
            broadcast_shapes("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert_eq!(broadcast_shapes("t", &[], &[2]).unwrap(), vec![2]);
        let e = broadcast_shapes("add", &[3, 2], &[3])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("add") && e.contains("[3, 2]") && e.contains("[3]"),
            "{e}"
        );
        let b = seq(&[3, 1]).broadcast_to(&[2, 3, 4]).unwrap();
        assert_eq!(b.get(&[1, 2, 3]).unwrap(), 2.0);
        assert!(seq(&[3]).broadcast_to(&[3, 2]).is_err());
    }
}
