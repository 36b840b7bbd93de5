//! `sum` and `mean` over axes; backward broadcasts the gradient back.

use allmlp_tensor_core::Tensor;

use crate::{Function, Result, Var};

struct Sum {
    input_shape: Vec<usize>,
    kept_shape: Vec<usize>,
    scale: f32,
}

impl Function for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = g
            .reshape(&self.kept_shape)?
            .broadcast_to(&self.input_shape)?;
        Ok(vec![Some(if self.scale == 1.0 {
            g
        } else {
            g.mul_scalar(self.scale)
        })])
    }
}

fn reduce(v: &Var, axes: &[usize], keepdim: bool, mean: bool) -> Result<Var> {
    let x = v.value();
    let kept = x.sum(axes, true)?;
    // An empty input has an empty gradient: its scale does not matter (and 1/0 is avoided).
    let count = x.numel() / kept.numel().max(1);
    let scale = if mean && count > 0 {
        1.0 / count as f32
    } else {
        1.0
    };
    let out = if mean {
        x.mean(axes, keepdim)?
    } else {
        x.sum(axes, keepdim)?
    };
    let f = Sum {
        input_shape: x.shape().to_vec(),
        kept_shape: kept.shape().to_vec(),
        scale,
    };
    Ok(Var::from_op(out, &[v], f))
}

impl Var {
    /// Sum over `axes` (all if empty).
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Var> {
        reduce(self, axes, keepdim, false)
    }

    /// Mean over `axes` (all if empty).
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Var> {
        reduce(self, axes, keepdim, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_tensor_core::Tensor;

    /// The mean of an empty input stays on the graph (it was a constant, so the input never
    /// got a gradient): backward gives the input an empty gradient of its shape.
    #[test]
    fn mean_of_an_empty_input_keeps_its_gradient() {
        let x = crate::Var::parameter(Tensor::zeros(&[0, 3]).unwrap());
        let m = x.mean(&[1], false).unwrap();
        assert_eq!(m.shape(), [0]);
        assert!(m.requires_grad());
        m.sum(&[0], false).unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [0, 3]);
        // Over an empty axis the mean is NaN (torch's), the gradient empty.
        let x = crate::Var::parameter(Tensor::zeros(&[2, 0]).unwrap());
        let m = x.mean(&[1], false).unwrap();
        assert!(m.value().to_vec().iter().all(|v| v.is_nan()));
        m.sum(&[0], false).unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [2, 0]);
    }

    #[test]
    fn sum_and_mean_gradients() {
        let x = Tensor::randn(&[2, 3, 4], 0.0, 1.0, 5)
            .unwrap()
            .permute(&[2, 0, 1])
            .unwrap();
        let o = GradcheckOptions::default();
        gradcheck(
            "sum",
            std::slice::from_ref(&x),
            |v| v[0].sum(&[0, 2], false),
            o,
        )
        .unwrap();
        gradcheck(
            "mean",
            std::slice::from_ref(&x),
            |v| v[0].mean(&[1], true),
            o,
        )
        .unwrap();
        gradcheck("mean_all", &[x], |v| v[0].mean(&[], false), o).unwrap();
    }
}
