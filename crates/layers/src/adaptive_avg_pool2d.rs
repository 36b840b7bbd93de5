//! `AdaptiveAvgPool2d`: average pooling of an `[N, C, H, W]` input to a fixed
//! `[N, C, OH, OW]`, PyTorch's `nn.AdaptiveAvgPool2d`.
//!
//! Output cell `i` averages input rows `⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉` (likewise
//! columns), so windows may overlap when `OH` does not divide `H`; `(1, 1)` is
//! global average pooling. No parameters.
//!
//! ```
//! use allmlp_layers::{AdaptiveAvgPool2d, Ctx, Module};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let gap = AdaptiveAvgPool2d::new((1, 1))?;
//! let x = Var::constant(Tensor::arange(0.0, 8.0, 1.0)?.reshape(&[1, 2, 2, 2])?);
//! assert_eq!(gap.forward(&x, &Ctx::eval())?.value().to_vec(), [1.5, 5.5]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use allmlp_autograd::ops::adaptive_avg_pool2d;
use allmlp_autograd::tensor_core::TensorError;
use allmlp_autograd::{Result, Var};

use crate::max_pool2d::check_rank4;
use crate::module::{Ctx, Module, Visitor};

/// Adaptive 2-D average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    /// `(OH, OW)`.
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// Pools to `output_size = (OH, OW)`, both at least 1.
    pub fn new(output_size: (usize, usize)) -> Result<AdaptiveAvgPool2d> {
        if output_size.0 == 0 || output_size.1 == 0 {
            return Err(TensorError::arg(
                "AdaptiveAvgPool2d",
                format!("output size must be at least (1, 1), got {output_size:?}"),
            )
            .into());
        }
        Ok(AdaptiveAvgPool2d { output_size })
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
        check_rank4("AdaptiveAvgPool2d", x)?;
        adaptive_avg_pool2d(x, self.output_size)
    }

    fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    #[test]
    fn adaptive_pool_layer_values_gradcheck_and_errors() {
        let x = Tensor::randn(&[2, 3, 5, 7], 0.0, 1.0, 8).unwrap();
        let pool = AdaptiveAvgPool2d::new((2, 3)).unwrap();
        let y = pool
            .forward(&Var::constant(x.clone()), &Ctx::eval())
            .unwrap()
            .value();
        assert_eq!(y.shape(), [2, 3, 2, 3]);
        // Cell (0, 0, 1, 1): rows ⌊5/2⌋=2 .. ⌈10/2⌉=5, columns ⌊7/3⌋=2 .. ⌈14/3⌉=5.
        let v = x.to_vec();
        let sum: f64 = (2..5)
            .flat_map(|r| (2..5).map(move |c| r * 7 + c))
            .map(|i| v[i] as f64)
            .sum();
        assert!((y.to_vec()[4] as f64 - sum / 9.0).abs() < 1e-6);
        gradcheck(
            "AdaptiveAvgPool2d",
            &[x],
            |v| pool.forward(&v[0], &Ctx::eval()),
            GradcheckOptions::default(),
        )
        .unwrap();
        let e = AdaptiveAvgPool2d::new((0, 1)).unwrap_err().to_string();
        assert!(e.contains("AdaptiveAvgPool2d"), "{e}");
        let flat = Var::constant(Tensor::zeros(&[3, 5, 7]).unwrap());
        let e = pool.forward(&flat, &Ctx::eval()).unwrap_err().to_string();
        assert!(
            e.contains("AdaptiveAvgPool2d") && e.contains("[3, 5, 7]"),
            "{e}"
        );
    }
}
