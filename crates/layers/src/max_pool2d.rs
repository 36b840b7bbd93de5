//! `MaxPool2d`: the maximum over each `kh×kw` window of an `[N, C, H, W]`
//! input, PyTorch's `nn.MaxPool2d` (dilation 1, `ceil_mode=False`).
//!
//! Output `[N, C, OH, OW]` with `OH = ⌊(H + 2·ph − kh)/sh⌋ + 1` (likewise `OW`);
//! padding counts as −∞ and must be at most half the kernel, as in PyTorch. The
//! gradient flows to the (first) maximal element of each window. No parameters.
//!
//! ```
//! use allmlp_layers::{Ctx, MaxPool2d, Module};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let pool = MaxPool2d::new(3, 2, 1)?; // ResNet's stem pool
//! let x = Var::constant(Tensor::arange(0.0, 32.0, 1.0)?.reshape(&[1, 2, 4, 4])?);
//! let y = pool.forward(&x, &Ctx::eval())?.value();
//! assert_eq!(y.shape(), &[1, 2, 2, 2]);
//! assert_eq!(y.to_vec(), [5.0, 7.0, 13.0, 15.0, 21.0, 23.0, 29.0, 31.0]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::{PoolParams, max_pool2d};
use allmlp_autograd::tensor_core::TensorError;
use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor};

/// 2-D max pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Kernel, stride and padding (height, width).
    pub params: PoolParams,
}

impl MaxPool2d {
    /// A square `kernel×kernel` window moved by `stride`, with `padding` on
    /// every side (`nn.MaxPool2d(kernel, stride, padding)`).
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Result<MaxPool2d> {
        MaxPool2d::from_params(PoolParams {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
        })
    }

    /// Any window; kernel and stride at least 1, padding at most half the kernel.
    pub fn from_params(params: PoolParams) -> Result<MaxPool2d> {
        check_window("MaxPool2d", params)?;
        Ok(MaxPool2d { params })
    }
}

/// Err unless kernel and stride are ≥ 1 and padding ≤ kernel/2 (PyTorch's rule).
pub(crate) fn check_window(op: &'static str, p: PoolParams) -> Result<()> {
    let ((kh, kw), (sh, sw), (ph, pw)) = (p.kernel, p.stride, p.padding);
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || ph > kh / 2 || pw > kw / 2 {
        return Err(TensorError::arg(
            op,
            format!(
                "need kernel and stride >= 1 and padding <= kernel/2, got kernel {:?}, stride {:?}, padding {:?}",
                p.kernel, p.stride, p.padding
            ),
        )
        .into());
    }
    Ok(())
}

/// Err naming `op` unless `x` is `[N, C, H, W]`.
pub(crate) fn check_rank4(op: &'static str, x: &Var) -> Result<()> {
    let shape = x.shape();
    if shape.len() != 4 {
        return Err(TensorError::shape(op, "input [N, C, H, W]", format!("{shape:?}")).into());
    }
    Ok(())
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        check_rank4("MaxPool2d", x)?;
        max_pool2d(x, self.params)
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::{Rng, Tensor};

    /// `[1, 2, 5, 6]` holding a shuffle of distinct values 0.5 apart, so no window
    /// has a tie and a finite-difference step (≤ 0.15) never changes an argmax.
    fn distinct_input() -> Tensor {
        let mut v: Vec<f32> = (0..60).map(|i| i as f32 * 0.5 - 15.0).collect();
        let mut rng = Rng::new(9);
        for i in (1..v.len()).rev() {
            v.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Tensor::from_vec(v, &[1, 2, 5, 6]).unwrap()
    }

    #[test]
    fn max_pool_layer_gradcheck_and_errors() {
        let x = distinct_input();
        let pool = MaxPool2d::new(3, 2, 1).unwrap();
        let y = pool
            .forward(&Var::constant(x.clone()), &Ctx::eval())
            .unwrap();
        assert_eq!(y.shape(), [1, 2, 3, 3]);
        // Output (0, 0) covers rows 0..2, columns 0..2 of plane 0 (the padding never wins).
        let want = [0, 1, 6, 7]
            .map(|i| x.to_vec()[i])
            .into_iter()
            .fold(f32::MIN, f32::max);
        assert_eq!(y.value().to_vec()[0], want);
        gradcheck(
            "MaxPool2d",
            &[x],
            |v| pool.forward(&v[0], &Ctx::eval()),
            GradcheckOptions::default(),
        )
        .unwrap();
        for (k, s, p) in [(0, 1, 0), (2, 0, 0), (3, 1, 2)] {
            let e = MaxPool2d::new(k, s, p).unwrap_err().to_string();
            assert!(e.contains("MaxPool2d"), "{e}");
        }
        let flat = Var::constant(Tensor::zeros(&[2, 5, 6]).unwrap());
        let e = pool.forward(&flat, &Ctx::eval()).unwrap_err().to_string();
        assert!(e.contains("MaxPool2d") && e.contains("[2, 5, 6]"), "{e}");
    }
}
