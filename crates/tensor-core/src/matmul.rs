//! `Tensor::matmul`: PyTorch's `torch.matmul` over [`crate::gemm`].
//!
//! Operands are read through their strides: a transposed or permuted operand
//! (any layout whose last two dimensions are strided over one memory block) is
//! passed to the GEMM as is, without a copy. Batch dimensions broadcast; a
//! broadcast operand (e.g. a weight shared by every image) gets batch stride 0.

use crate::error::{checked_numel, fmt_shape};
use crate::gemm::{Backend, FreshEpilogue, MatRef, gemm_batched_fresh_with};
use crate::shape_ops::broadcast_shapes;
use crate::{Result, Tensor, TensorError};

/// An operand as GEMM sees it: memory block, matrix strides, one batch stride.
struct Operand {
    holder: Tensor,
    rs: usize,
    cs: usize,
    batch_stride: usize,
}

impl Operand {
    /// Describes `t` (rank ≥ 2) broadcast to `batch` as `(slice, rs, cs, batch stride)`,
    /// copying only when its layout cannot be described that way.
    fn new(t: &Tensor, batch: &[usize]) -> Operand {
        if let Some(op) = Self::strided(t, batch) {
            return op;
        }
        let c = t.contiguous();
        Self::strided(&c, batch).unwrap_or_else(|| {
            // A contiguous operand with a partially broadcast batch: materialise it.
            let r = c.ndim();
            let mut full = batch.to_vec();
            full.extend_from_slice(&c.shape()[r - 2..]);
            let b = c
                .broadcast_to(&full)
                .expect("batch shape was broadcast from this operand");
            Self::strided(&b, batch).expect("a contiguous tensor of the full batch shape collapses")
        })
    }

    fn strided(t: &Tensor, batch: &[usize]) -> Option<Operand> {
        let strides = t.strides();
        if strides.iter().any(|&s| s < 0) || t.array().as_slice_memory_order().is_none() {
            return None;
        }
        let r = t.ndim();
        let (rs, cs) = (strides[r - 2] as usize, strides[r - 1] as usize);
        // Batch strides aligned to `batch` (0 where broadcast), then collapsed to one.
        let own = &t.shape()[..r - 2];
        let pad = batch.len() - own.len();
        let bstr: Vec<usize> = (0..batch.len())
            .map(|i| {
                if i < pad || own[i - pad] == 1 {
                    0
                } else {
                    strides[i - pad] as usize
                }
            })
            .collect();
        let mut stride = None;
        let mut expect = 0usize;
        for i in (0..batch.len()).rev() {
            if batch[i] == 1 {
                continue;
            }
            match stride {
                None => {
                    stride = Some(bstr[i]);
                    expect = bstr[i] * batch[i];
                }
                Some(s) if s == 0 && bstr[i] == 0 => {}
                Some(_) if bstr[i] == expect => expect *= batch[i],
                _ => return None,
            }
        }
        Some(Operand {
            holder: t.clone(),
            rs,
            cs,
            batch_stride: stride.unwrap_or(0),
        })
    }

    fn data(&self) -> &[f32] {
        self.holder
            .array()
            .as_slice_memory_order()
            .expect("checked in Operand::strided")
    }
}

impl Tensor {
    /// Matrix product with `torch.matmul` semantics for operands of rank ≥ 1.
    ///
    /// `[.., m, k] × [.., k, n] → [.., m, n]` with broadcast batch dimensions; a
    /// 1-D left operand is a row vector and a 1-D right operand a column
    /// vector, their dimension removed from the result.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        const OP: &str = "matmul";
        if self.ndim() == 0 || rhs.ndim() == 0 {
            return Err(TensorError::shape(
                OP,
                "operands of rank ≥ 1",
                format!("{} and {}", fmt_shape(self.shape()), fmt_shape(rhs.shape())),
            ));
        }
        let a = if self.ndim() == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if rhs.ndim() == 1 {
            rhs.unsqueeze(1)?
        } else {
            rhs.clone()
        };
        let (ra, rb) = (a.ndim(), b.ndim());
        let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
        let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        if k != k2 {
            return Err(TensorError::shape(
                OP,
                format!("right operand with {k} rows to match the left operand's {k} columns"),
                format!("{} × {}", fmt_shape(self.shape()), fmt_shape(rhs.shape())),
            ));
        }
        let batch =
            broadcast_shapes(OP, &a.shape()[..ra - 2], &b.shape()[..rb - 2]).map_err(|_| {
                TensorError::shape(
                    OP,
                    "batch dimensions (all but the last two) that broadcast",
                    format!("{} × {}", fmt_shape(self.shape()), fmt_shape(rhs.shape())),
                )
            })?;
        let nb = checked_numel(OP, &batch)?;
        // The output and, at worst (a partially broadcast batch is materialised), each operand.
        for dims in [[nb, m, n], [nb, m, k], [nb, k, n]] {
            checked_numel(OP, &dims)?;
        }
        let out = if nb > 0 && m > 0 && n > 0 {
            let oa = Operand::new(&a, &batch);
            let ob = Operand::new(&b, &batch);
            let am = MatRef::new(oa.data(), m, k, oa.rs, oa.cs)?;
            let bm = MatRef::new(ob.data(), k, n, ob.rs, ob.cs)?;
            let (sa, sb) = (oa.batch_stride, ob.batch_stride);
            let plain = FreshEpilogue::default();
            gemm_batched_fresh_with(Backend::Auto, nb, 1.0, am, sa, bm, sb, plain)?.c
        } else {
            Vec::new()
        };
        let mut shape = batch;
        if self.ndim() > 1 {
            shape.push(m);
        }
        if rhs.ndim() > 1 {
            shape.push(n);
        }
        Tensor::from_vec(out, &shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty product over a batch too large to materialise is empty, not a panic; a
    /// non-empty one that large is an error.
    #[test]
    fn huge_broadcast_batches_are_empty_or_errors() {
        let a = Tensor::zeros(&[3, 1, 1, 1]).unwrap();
        let b = Tensor::zeros(&[1, 1 << 62, 1, 0]).unwrap();
        let e = a.matmul(&b).unwrap_err().to_string();
        assert!(e.contains("matmul"), "{e}");
        let b = Tensor::zeros(&[1, 1 << 40, 1, 0]).unwrap();
        assert_eq!(a.matmul(&b).unwrap().shape(), [3, 1 << 40, 1, 0]);
    }

    fn naive(a: &Tensor, b: &Tensor) -> Vec<f64> {
        // a: [B, m, k], b: [B, k, n] after explicit broadcasting by the caller.
        let (nb, m, k, n) = (a.shape()[0], a.shape()[1], a.shape()[2], b.shape()[2]);
        let mut out = vec![];
        for z in 0..nb {
            for i in 0..m {
                for j in 0..n {
                    out.push(
                        (0..k)
                            .map(|p| {
                                a.get(&[z, i, p]).unwrap() as f64
                                    * b.get(&[z, p, j]).unwrap() as f64
                            })
                            .sum(),
                    );
                }
            }
        }
        out
    }

    /// GEMM tolerance: f32 products summed over k terms; error ≤ k·ε·Σ|a||b|,
    /// so 1e-5 relative to the scale of the operands is generous for k ≤ 1000.
    fn assert_close(got: &Tensor, want: &[f64], scale: f64) {
        assert_eq!(got.numel(), want.len());
        for (g, w) in got.to_vec().iter().zip(want) {
            assert!((*g as f64 - w).abs() <= 1e-5 * scale, "{g} vs {w}");
        }
    }

    #[test]
    fn transposed_and_broadcast_operands() {
        // x: [3, 5, 7] as a permuted view; w: [7, 4] shared (stride 0) from a transposed [4, 7].
        let x = Tensor::randn(&[5, 3, 7], 0.0, 1.0, 1)
            .unwrap()
            .permute(&[1, 0, 2])
            .unwrap();
        let w = Tensor::randn(&[4, 7], 0.0, 1.0, 2)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let y = x.matmul(&w).unwrap();
        assert_eq!(y.shape(), &[3, 5, 4]);
        let wb = w.unsqueeze(0).unwrap().broadcast_to(&[3, 7, 4]).unwrap();
        assert_close(&y, &naive(&x, &wb), 7.0);
        // Left-multiplication by a shared weight: W [4, 5] · X[b] [5, 7].
        let wl = Tensor::randn(&[4, 5], 0.0, 1.0, 3).unwrap();
        let z = wl.matmul(&x).unwrap();
        let wlb = wl.unsqueeze(0).unwrap().broadcast_to(&[3, 4, 5]).unwrap();
        assert_close(&z, &naive(&wlb, &x), 5.0);
    }

    #[test]
    fn partial_batch_broadcast_and_vectors() {
        let a = Tensor::randn(&[2, 1, 3, 4], 0.0, 1.0, 4).unwrap();
        let b = Tensor::randn(&[5, 4, 2], 0.0, 1.0, 5).unwrap();
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.shape(), &[2, 5, 3, 2]);
        let ab = a
            .broadcast_to(&[2, 5, 3, 4])
            .unwrap()
            .reshape(&[10, 3, 4])
            .unwrap();
        let bb = b
            .broadcast_to(&[2, 5, 4, 2])
            .unwrap()
            .reshape(&[10, 4, 2])
            .unwrap();
        assert_close(&c, &naive(&ab, &bb), 4.0);
        let v = Tensor::randn(&[4], 0.0, 1.0, 6).unwrap();
        let m = Tensor::randn(&[4, 3], 0.0, 1.0, 7).unwrap();
        assert_eq!(v.matmul(&m).unwrap().shape(), &[3]);
        assert_eq!(m.transpose(0, 1).unwrap().matmul(&v).unwrap().shape(), &[3]);
        assert_eq!(v.matmul(&v).unwrap().shape(), &[] as &[usize]);
        let d = v.matmul(&v).unwrap().item().unwrap() as f64;
        let want: f64 = v.to_vec().iter().map(|&x| (x as f64).powi(2)).sum();
        assert!((d - want).abs() < 1e-5 * want);
    }

    #[test]
    fn sliced_operand_and_errors() {
        let big = Tensor::randn(&[6, 9], 0.0, 1.0, 8).unwrap();
        let a = big.narrow(1, 2, 5).unwrap(); // [6, 5], not one memory block
        let b = Tensor::randn(&[5, 3], 0.0, 1.0, 9).unwrap();
        let c = a.matmul(&b).unwrap();
        let a3 = a.unsqueeze(0).unwrap();
        assert_close(&c, &naive(&a3, &b.unsqueeze(0).unwrap()), 5.0);
        let e = a.matmul(&a).unwrap_err().to_string();
        assert!(e.starts_with("matmul:") && e.contains("[6, 5]"), "{e}");
        assert!(Tensor::scalar(1.0).matmul(&a).is_err());
        let e = Tensor::zeros(&[2, 3, 4])
            .unwrap()
            .matmul(&Tensor::zeros(&[3, 4, 5]).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("[2, 3, 4]"), "{e}");
        assert_eq!(
            Tensor::zeros(&[0, 3])
                .unwrap()
                .matmul(&b.narrow(0, 0, 3).unwrap())
                .unwrap()
                .shape(),
            &[0, 3]
        );
    }
}
