//! The [`Tensor`] type: an n-dimensional f32 array with shared, copy-on-write storage.

use ndarray::{ArcArray, ArrayD, ArrayViewD, IxDyn};

use crate::error::{checked_numel, fmt_shape, try_vec};
use crate::random::Rng;
use crate::{Result, TensorError};

/// An n-dimensional array of `f32`, row-major when contiguous.
///
/// Storage is an [`ndarray::ArcArray`]: cloning a tensor is O(1) (autograd saves
/// activations this way) and writing to a shared tensor copies it first. Shape
/// operations such as [`Tensor::permute`], [`Tensor::transpose`] and
/// [`Tensor::narrow`] return strided views of the same storage without copying;
/// [`Tensor::contiguous`] makes a row-major copy only when one is needed.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    data: ArcArray<f32, IxDyn>,
}

impl Tensor {
    /// Wraps an ndarray array (any layout).
    pub fn from_array(a: ArrayD<f32>) -> Tensor {
        Tensor {
            data: a.into_shared(),
        }
    }

    /// Wraps a shared ndarray array (any layout).
    pub fn from_arc(a: ArcArray<f32, IxDyn>) -> Tensor {
        Tensor { data: a }
    }

    /// A row-major tensor of `shape` holding `data`; the lengths must agree.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let n = checked_numel("from_vec", shape)?;
        if n != data.len() {
            return Err(TensorError::shape(
                "from_vec",
                format!("{n} elements for shape {}", fmt_shape(shape)),
                format!("{} elements", data.len()),
            ));
        }
        let a = ArrayD::from_shape_vec(IxDyn(shape), data)
            .map_err(|e| TensorError::arg("from_vec", e.to_string()))?;
        Ok(Tensor::from_array(a))
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Result<Tensor> {
        let n = checked_numel("full", shape)?;
        let mut v = try_vec("full", shape, n)?;
        v.resize(n, value);
        Tensor::from_vec(v, shape)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Result<Tensor> {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Result<Tensor> {
        Tensor::full(shape, 1.0)
    }

    /// A zero-dimensional tensor holding `v`.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::from_array(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// `[start, start+step, …]` up to but excluding `end`, like `torch.arange`.
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if !(step.is_finite() && step != 0.0 && start.is_finite() && end.is_finite()) {
            return Err(TensorError::arg(
                "arange",
                format!(
                    "need finite start/end and a finite non-zero step, got start={start} end={end} step={step}"
                ),
            ));
        }
        let n = ((end as f64 - start as f64) / step as f64).ceil();
        let n = if n > 0.0 { n as usize } else { 0 };
        let v = (0..n)
            .map(|i| (start as f64 + i as f64 * step as f64) as f32)
            .collect::<Vec<_>>();
        Tensor::from_vec(v, &[n])
    }

    /// Samples from N(mean, std²), determined by `seed` alone.
    pub fn randn(shape: &[usize], mean: f32, std: f32, seed: u64) -> Result<Tensor> {
        let n = checked_numel("randn", shape)?;
        let mut rng = Rng::new(seed);
        let mut v = try_vec("randn", shape, n)?;
        v.extend((0..n).map(|_| (mean as f64 + std as f64 * rng.normal()) as f32));
        Tensor::from_vec(v, shape)
    }

    /// Samples uniformly from `[low, high)`, determined by `seed` alone.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, seed: u64) -> Result<Tensor> {
        if !(low.is_finite() && high.is_finite() && low <= high) {
            return Err(TensorError::arg(
                "rand_uniform",
                format!("need finite low <= high, got [{low}, {high})"),
            ));
        }
        let n = checked_numel("rand_uniform", shape)?;
        let mut rng = Rng::new(seed);
        let mut v = try_vec("rand_uniform", shape, n)?;
        v.extend((0..n).map(|_| low + (high - low) * rng.next_f32()));
        Tensor::from_vec(v, shape)
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.data.ndim()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Element strides (in elements, may be 0 for broadcast views).
    pub fn strides(&self) -> &[isize] {
        self.data.strides()
    }

    /// Size of dimension `axis`, or an error naming `op` if it does not exist.
    pub fn dim(&self, op: &'static str, axis: usize) -> Result<usize> {
        self.shape()
            .get(axis)
            .copied()
            .ok_or(TensorError::AxisOutOfRange {
                op,
                axis,
                rank: self.ndim(),
            })
    }

    /// Whether `other` is a view of the same elements: the same buffer, first
    /// element, shape and strides (a clone, not an equal copy).
    pub fn shares_data(&self, other: &Tensor) -> bool {
        self.data.as_ptr() == other.data.as_ptr()
            && self.data.shape() == other.data.shape()
            && self.data.strides() == other.data.strides()
    }

    /// True when the elements are stored row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        self.data.is_standard_layout()
    }

    /// The row-major data, if the tensor is contiguous.
    pub fn as_slice(&self) -> Option<&[f32]> {
        self.data.as_slice()
    }

    /// A row-major tensor with the same values: O(1) if already contiguous.
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let strides = self.data.strides();
        let (Some(mem), true) = (
            self.data.as_slice_memory_order(),
            strides.iter().all(|&s| s >= 0),
        ) else {
            return Tensor::from_array(self.data.as_standard_layout().into_owned());
        };
        // With non-negative strides the first element is the lowest address.
        let strides: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
        let mut out = vec![0.0f32; self.numel()];
        crate::strided_copy::copy_to_row_major(mem, self.shape(), &strides, &mut out);
        Tensor::from_vec(out, self.shape()).expect("same element count")
    }

    /// The elements in row-major order.
    pub fn to_vec(&self) -> Vec<f32> {
        match self.as_slice() {
            Some(s) => s.to_vec(),
            None => self.data.iter().copied().collect(),
        }
    }

    /// The elements in row-major order, without copying when uniquely owned and contiguous.
    pub fn into_vec(self) -> Vec<f32> {
        if self.is_contiguous() {
            let n = self.numel();
            let (mut v, offset) = self.data.into_owned().into_raw_vec_and_offset();
            v.drain(..offset.unwrap_or(0));
            v.truncate(n);
            v
        } else {
            self.to_vec()
        }
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(TensorError::shape(
                "item",
                "a tensor with one element",
                fmt_shape(self.shape()),
            ));
        }
        Ok(*self.data.iter().next().expect("one element"))
    }

    /// The element at `index`, checked.
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        if index.len() != self.ndim() || index.iter().zip(self.shape()).any(|(&i, &d)| i >= d) {
            return Err(TensorError::arg(
                "get",
                format!(
                    "index {index:?} is out of bounds for shape {}",
                    fmt_shape(self.shape())
                ),
            ));
        }
        Ok(self.data[IxDyn(index)])
    }

    /// A read-only ndarray view (any layout).
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        self.data.view()
    }

    /// The underlying shared array.
    pub fn array(&self) -> &ArcArray<f32, IxDyn> {
        &self.data
    }

    /// Consumes the tensor into its shared array.
    pub fn into_arc(self) -> ArcArray<f32, IxDyn> {
        self.data
    }

    /// Mutable access to the array; copies first if the storage is shared.
    pub fn array_mut(&mut self) -> &mut ArcArray<f32, IxDyn> {
        &mut self.data
    }

    /// Checks that the shape equals `expected`, naming `op` in the error.
    pub fn expect_shape(&self, op: &'static str, expected: &[usize]) -> Result<()> {
        if self.shape() != expected {
            return Err(TensorError::shape(
                op,
                fmt_shape(expected),
                fmt_shape(self.shape()),
            ));
        }
        Ok(())
    }

    /// Checks that the rank equals `rank`, naming `op` and the layout it wants.
    pub fn expect_rank(&self, op: &'static str, rank: usize, layout: &str) -> Result<()> {
        if self.ndim() != rank {
            return Err(TensorError::shape(
                op,
                format!("a {rank}-d tensor ({layout})"),
                format!("shape {}", fmt_shape(self.shape())),
            ));
        }
        Ok(())
    }

    /// True when every element is finite.
    pub fn all_finite(&self) -> bool {
        self.first_non_finite().is_none()
    }

    /// The first NaN or infinity in row-major order, as (flat index, value); `None` when every
    /// element is finite. Reads a strided tensor in place.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, &v)| (i, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is row-major also for a strided view (read in place).
    #[test]
    fn first_non_finite_is_in_row_major_order() {
        let mut v: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(
            Tensor::from_vec(v.clone(), &[2, 3])
                .unwrap()
                .first_non_finite(),
            None
        );
        v[1] = f32::INFINITY; // (0, 1) of [2, 3]: (1, 0) of its [3, 2] transpose, flat index 2
        v[5] = f32::NAN;
        let t = Tensor::from_vec(v, &[2, 3]).unwrap();
        assert_eq!(t.first_non_finite(), Some((1, f32::INFINITY)));
        let (i, x) = t.transpose(0, 1).unwrap().first_non_finite().unwrap();
        assert_eq!((i, x), (2, f32::INFINITY));
    }

    #[test]
    fn constructors_check_shapes() {
        let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.get(&[1, 2]).unwrap(), 5.0);
        let e = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert!(
            e.to_string().contains("from_vec") && e.to_string().contains("6 elements"),
            "{e}"
        );
        assert!(Tensor::zeros(&[usize::MAX, 3]).is_err());
        // 2^62 elements fit usize but not one allocation of f32 (Rust would panic with
        // "capacity overflow"): an error naming the op.
        for e in [
            Tensor::zeros(&[1 << 55, 128]).unwrap_err(),
            Tensor::randn(&[1 << 31, 1 << 31], 0.0, 1.0, 0).unwrap_err(),
        ] {
            assert!(e.to_string().contains("(as f32)"), "{e}");
        }
        // 4 PiB fits one allocation's limit but no machine's address space: the allocator
        // refuses it, and the constructors return an error instead of aborting.
        for e in [
            Tensor::zeros(&[1 << 40, 1 << 10]).unwrap_err(),
            Tensor::randn(&[1 << 50], 0.0, 1.0, 0).unwrap_err(),
            Tensor::rand_uniform(&[1 << 50], 0.0, 1.0, 0).unwrap_err(),
        ] {
            assert!(matches!(e, TensorError::OutOfMemory { .. }), "{e:?}");
            assert!(e.to_string().contains("cannot allocate"), "{e}");
        }
        assert!(t.get(&[2, 0]).is_err());
        assert!(t.item().is_err());
        assert_eq!(Tensor::scalar(3.0).item().unwrap(), 3.0);
    }

    #[test]
    fn arange_matches_torch_lengths() {
        assert_eq!(
            Tensor::arange(0.0, 5.0, 1.0).unwrap().to_vec(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(Tensor::arange(1.0, 2.0, 0.3).unwrap().numel(), 4);
        assert_eq!(
            Tensor::arange(5.0, 0.0, -2.0).unwrap().to_vec(),
            vec![5.0, 3.0, 1.0]
        );
        assert_eq!(Tensor::arange(0.0, -1.0, 1.0).unwrap().numel(), 0);
        assert!(Tensor::arange(0.0, 1.0, 0.0).is_err());
    }

    #[test]
    fn random_is_deterministic_and_seed_dependent() {
        let a = Tensor::randn(&[4, 5], 0.0, 1.0, 3).unwrap();
        let b = Tensor::randn(&[4, 5], 0.0, 1.0, 3).unwrap();
        let c = Tensor::randn(&[4, 5], 0.0, 1.0, 4).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let u = Tensor::rand_uniform(&[1000], -2.0, 3.0, 1).unwrap();
        assert!(u.to_vec().iter().all(|&v| (-2.0..3.0).contains(&v)));
        assert!(Tensor::rand_uniform(&[2], 1.0, 0.0, 1).is_err());
    }

    #[test]
    fn into_vec_after_narrow_keeps_only_the_view() {
        let t = Tensor::arange(0.0, 6.0, 1.0).unwrap();
        let mut a = t.into_arc();
        a.slice_axis_inplace(ndarray::Axis(0), ndarray::Slice::from(2..5));
        assert_eq!(Tensor::from_arc(a).into_vec(), vec![2.0, 3.0, 4.0]);
    }
}
