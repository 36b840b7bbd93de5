//! `AvgPool2d`: the mean over each `kh×kw` window of an `[N, C, H, W]` input,
//! PyTorch's `nn.AvgPool2d` (`ceil_mode=False`, no `divisor_override`).
//!
//! Output `[N, C, OH, OW]` with `OH = ⌊(H + 2·ph − kh)/sh⌋ + 1`; padding is zeros
//! and at most half the kernel. With `count_include_pad` (PyTorch's default,
//! `true`) every window divides by `kh·kw`; without, by the number of real input
//! cells it covers. No parameters.
//!
//! ```
//! use allmlp_layers::{AvgPool2d, Ctx, Module};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let x = Var::constant(Tensor::ones(&[1, 1, 2, 2])?);
//! let pool = AvgPool2d::new(3, 1, 1)?;
//! // The corner window holds 4 ones and 5 padded zeros.
//! assert_eq!(pool.forward(&x, &Ctx::eval())?.value().to_vec()[0], 4.0 / 9.0);
//! let pool = pool.with_count_include_pad(false);
//! assert_eq!(pool.forward(&x, &Ctx::eval())?.value().to_vec()[0], 1.0);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::{PoolParams, avg_pool2d};
use allmlp_autograd::{Result, Var};

use crate::max_pool2d::{check_rank4, check_window};
use crate::module::{Ctx, Module, Visitor};

/// 2-D average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Kernel, stride and padding (height, width).
    pub params: PoolParams,
    /// Whether padded cells count in the divisor.
    pub count_include_pad: bool,
}

impl AvgPool2d {
    /// A square `kernel×kernel` window moved by `stride`, with `padding` on
    /// every side and `count_include_pad = true` (`nn.AvgPool2d(kernel, stride, padding)`).
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Result<AvgPool2d> {
        let params = PoolParams {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
        };
        AvgPool2d::from_params(params, true)
    }

    /// Any window; kernel and stride at least 1, padding at most half the kernel.
    pub fn from_params(params: PoolParams, count_include_pad: bool) -> Result<AvgPool2d> {
        check_window("AvgPool2d", params)?;
        Ok(AvgPool2d {
            params,
            count_include_pad,
        })
    }

    /// The same window with `count_include_pad` set.
    pub fn with_count_include_pad(self, count_include_pad: bool) -> AvgPool2d {
        AvgPool2d {
            count_include_pad,
            ..self
        }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        check_rank4("AvgPool2d", x)?;
        avg_pool2d(x, self.params, self.count_include_pad)
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn avg_pool_layer_values_gradcheck_and_errors() {
        let x = Tensor::randn(&[2, 3, 5, 4], 0.0, 1.0, 6).unwrap();
        let v = x.to_vec();
        for include in [true, false] {
            let pool = AvgPool2d::new(3, 2, 1)
                .unwrap()
                .with_count_include_pad(include);
            let y = pool
                .forward(&Var::constant(x.clone()), &Ctx::eval())
                .unwrap();
            assert_eq!(y.shape(), [2, 3, 3, 2]);
            // Output (0, 0, 0, 0): rows 0..2, columns 0..2 of plane 0; 5 of 9 cells are padding.
            let sum: f64 = [0, 1, 4, 5].iter().map(|&i| v[i] as f64).sum();
            let want = sum / if include { 9.0 } else { 4.0 };
            assert!((y.value().to_vec()[0] as f64 - want).abs() < 1e-6);
            gradcheck(
                "AvgPool2d",
                std::slice::from_ref(&x),
                |v| pool.forward(&v[0], &Ctx::eval()),
                GradcheckOptions::default(),
            )
            .unwrap();
        }
        let e = AvgPool2d::new(2, 2, 2).unwrap_err().to_string();
        assert!(e.contains("AvgPool2d"), "{e}");
        let flat = Var::constant(Tensor::zeros(&[5, 4]).unwrap());
        let pool = AvgPool2d::new(2, 2, 0).unwrap();
        let e = pool.forward(&flat, &Ctx::eval()).unwrap_err().to_string();
        assert!(e.contains("AvgPool2d") && e.contains("[5, 4]"), "{e}");
    }
}
