//! Pooling: max, average and adaptive-average over `[N, C, H, W]`.

use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::pool::{
    adaptive_avg_pool2d as adaptive_kernel, adaptive_avg_pool2d_backward, avg_pool2d as avg_kernel,
    avg_pool2d_backward, max_pool2d as max_kernel, max_pool2d_backward,
};

use crate::{Function, Result, Var};

/// Kernel size, stride and zero padding of a pooling window (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Padding on each side.
    pub padding: (usize, usize),
}

enum Kind {
    Max {
        indices: Vec<usize>,
    },
    Avg {
        p: PoolParams,
        count_include_pad: bool,
    },
    Adaptive,
}

struct Pool {
    kind: Kind,
    x_shape: Vec<usize>,
}

impl Function for Pool {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Max { .. } => "max_pool2d",
            Kind::Avg { .. } => "avg_pool2d",
            Kind::Adaptive => "adaptive_avg_pool2d",
        }
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dx = match &self.kind {
            Kind::Max { indices } => max_pool2d_backward(g, indices, &self.x_shape)?,
            Kind::Avg {
                p,
                count_include_pad,
            } => avg_pool2d_backward(
                g,
                &self.x_shape,
                p.kernel,
                p.stride,
                p.padding,
                *count_include_pad,
            )?,
            Kind::Adaptive => adaptive_avg_pool2d_backward(g, &self.x_shape)?,
        };
        Ok(vec![Some(dx)])
    }
}

/// Max pooling (padding counts as −∞).
pub fn max_pool2d(x: &Var, p: PoolParams) -> Result<Var> {
    let xv = x.value();
    let (y, indices) = max_kernel(&xv, p.kernel, p.stride, p.padding)?;
    Ok(Var::from_op(
        y,
        &[x],
        Pool {
            kind: Kind::Max { indices },
            x_shape: xv.shape().to_vec(),
        },
    ))
}

/// Average pooling; `count_include_pad` as PyTorch (default `true` there).
pub fn avg_pool2d(x: &Var, p: PoolParams, count_include_pad: bool) -> Result<Var> {
    let xv = x.value();
    let y = avg_kernel(&xv, p.kernel, p.stride, p.padding, count_include_pad)?;
    let kind = Kind::Avg {
        p,
        count_include_pad,
    };
    Ok(Var::from_op(
        y,
        &[x],
        Pool {
            kind,
            x_shape: xv.shape().to_vec(),
        },
    ))
}

/// Adaptive average pooling to `out` = (height, width).
pub fn adaptive_avg_pool2d(x: &Var, out: (usize, usize)) -> Result<Var> {
    let xv = x.value();
    let y = adaptive_kernel(&xv, out)?;
    Ok(Var::from_op(
        y,
        &[x],
        Pool {
            kind: Kind::Adaptive,
            x_shape: xv.shape().to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn pooling_gradients() {
        let o = GradcheckOptions::default();
        // Distinct, well-separated values so the max pool's argmax is stable under the FD step.
        let n = 2 * 3 * 7 * 6;
        let vals: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.37) % 11.0 + i as f32 * 0.1)
            .collect();
        let x = Tensor::from_vec(vals, &[2, 3, 7, 6]).unwrap();
        let p = PoolParams {
            kernel: (3, 2),
            stride: (2, 2),
            padding: (1, 1),
        };
        gradcheck(
            "max_pool2d",
            std::slice::from_ref(&x),
            |v| max_pool2d(&v[0], p),
            o,
        )
        .unwrap();
        for include in [true, false] {
            gradcheck(
                "avg_pool2d",
                std::slice::from_ref(&x),
                |v| avg_pool2d(&v[0], p, include),
                o,
            )
            .unwrap();
        }
        gradcheck(
            "adaptive",
            std::slice::from_ref(&x),
            |v| adaptive_avg_pool2d(&v[0], (3, 4)),
            o,
        )
        .unwrap();
        gradcheck("gap", &[x], |v| adaptive_avg_pool2d(&v[0], (1, 1)), o).unwrap();
    }
}
