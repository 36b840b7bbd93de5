//! `conv2d` (stride, padding, groups, optional bias) over tensor-core's kernels.
//!
//! Shapes: `x [N, C, H, W]`, `weight [O, C/groups, kh, kw]`, `bias [O]`,
//! `y [N, O, OH, OW]`. Backward computes only the gradients asked for (the
//! stem's input image needs none).

use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::conv::{
    Conv2dParams, conv2d as conv2d_kernel, conv2d_backward_bias, conv2d_backward_input,
    conv2d_backward_weight,
};

use crate::{Function, Result, Var};

struct Conv2d {
    x: Tensor,
    w: Tensor,
    has_bias: bool,
    params: Conv2dParams,
}

impl Function for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let p = self.params;
        let dx = if needs[0] {
            Some(conv2d_backward_input(g, &self.w, self.x.shape(), p)?)
        } else {
            None
        };
        let dw = if needs[1] {
            Some(conv2d_backward_weight(&self.x, g, self.w.shape(), p)?)
        } else {
            None
        };
        let mut grads = vec![dx, dw];
        if self.has_bias {
            grads.push(if needs[2] {
                Some(conv2d_backward_bias(g)?)
            } else {
                None
            });
        }
        Ok(grads)
    }
}

/// 2-D convolution with PyTorch semantics.
pub fn conv2d(x: &Var, weight: &Var, bias: Option<&Var>, params: Conv2dParams) -> Result<Var> {
    let (xv, wv) = (x.value(), weight.value());
    let bv = bias.map(Var::value);
    let y = conv2d_kernel(&xv, &wv, bv.as_ref(), params)?;
    let f = Conv2d {
        x: xv,
        w: wv,
        has_bias: bias.is_some(),
        params,
    };
    Ok(match bias {
        Some(b) => Var::from_op(y, &[x, weight, b], f),
        None => Var::from_op(y, &[x, weight], f),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn conv_gradients_plain_strided_and_grouped() {
        let o = GradcheckOptions::default();
        // Non-contiguous input (stored NHWC), stride 2, padding 1, bias.
        let x = Tensor::randn(&[2, 5, 6, 4], 0.0, 1.0, 1)
            .unwrap()
            .permute(&[0, 3, 1, 2])
            .unwrap();
        let w = Tensor::randn(&[3, 4, 3, 3], 0.0, 0.5, 2).unwrap();
        let b = Tensor::randn(&[3], 0.0, 1.0, 3).unwrap();
        let p = Conv2dParams::square(2, 1, 1);
        gradcheck(
            "conv2d",
            &[x.clone(), w, b],
            |v| conv2d(&v[0], &v[1], Some(&v[2]), p),
            o,
        )
        .unwrap();
        // Grouped (g = 2), 5×5 kernel with padding 2 on 4×6 (h ≠ w), no bias.
        let wg = Tensor::randn(&[4, 2, 5, 5], 0.0, 0.3, 4).unwrap();
        let pg = Conv2dParams::square(1, 2, 2);
        gradcheck(
            "conv2d_grouped",
            &[x, wg],
            |v| conv2d(&v[0], &v[1], None, pg),
            o,
        )
        .unwrap();
        // RepMLP FC3: grouped 1×1 on a 1×1 input.
        let xf = Tensor::randn(&[3, 8, 1, 1], 0.0, 1.0, 5).unwrap();
        let wf = Tensor::randn(&[8, 2, 1, 1], 0.0, 1.0, 6).unwrap();
        let pf = Conv2dParams::square(1, 0, 4);
        gradcheck(
            "conv2d_fc3",
            &[xf, wf],
            |v| conv2d(&v[0], &v[1], None, pf),
            o,
        )
        .unwrap();
    }
}
