//! Shape ops: reshape, permute, transpose, narrow, concat. Backward applies the inverse.

use allmlp_tensor_core::Tensor;

use crate::{Function, Result, Var};

enum Kind {
    Reshape {
        input_shape: Vec<usize>,
    },
    Permute {
        inverse: Vec<usize>,
    },
    Narrow {
        input_shape: Vec<usize>,
        axis: usize,
        start: usize,
    },
    Concat {
        axis: usize,
        sizes: Vec<usize>,
    },
}

struct Shape(Kind);

impl Function for Shape {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Reshape { .. } => "reshape",
            Kind::Permute { .. } => "permute",
            Kind::Narrow { .. } => "narrow",
            Kind::Concat { .. } => "concat",
        }
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(match &self.0 {
            Kind::Reshape { input_shape } => vec![Some(g.reshape(input_shape)?)],
            Kind::Permute { inverse } => vec![Some(g.permute(inverse)?.contiguous())],
            Kind::Narrow {
                input_shape,
                axis,
                start,
            } => {
                let mut before = input_shape.clone();
                before[*axis] = *start;
                let mut after = input_shape.clone();
                after[*axis] = input_shape[*axis] - start - g.shape()[*axis];
                let parts = [Tensor::zeros(&before)?, g.clone(), Tensor::zeros(&after)?];
                vec![Some(Tensor::concat(
                    &parts.iter().collect::<Vec<_>>(),
                    *axis,
                )?)]
            }
            Kind::Concat { axis, sizes } => {
                let mut start = 0;
                let mut out = Vec::with_capacity(sizes.len());
                for (&len, &need) in sizes.iter().zip(needs) {
                    out.push(if need {
                        Some(g.narrow(*axis, start, len)?.contiguous())
                    } else {
                        None
                    });
                    start += len;
                }
                out
            }
        })
    }
}

impl Var {
    /// Same elements, new shape.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let x = self.value();
        let out = x.reshape(shape)?;
        Ok(Var::from_op(
            out,
            &[self],
            Shape(Kind::Reshape {
                input_shape: x.shape().to_vec(),
            }),
        ))
    }

    /// Reorders dimensions (a strided view of the value).
    pub fn permute(&self, axes: &[usize]) -> Result<Var> {
        let out = self.value().permute(axes)?;
        let mut inverse = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        Ok(Var::from_op(out, &[self], Shape(Kind::Permute { inverse })))
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Var> {
        let mut axes: Vec<usize> = (0..self.value().ndim()).collect();
        if a >= axes.len() || b >= axes.len() {
            self.value().transpose(a, b)?; // produces the error
        }
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// `len` elements from `start` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Var> {
        let x = self.value();
        let out = x.narrow(axis, start, len)?;
        let f = Shape(Kind::Narrow {
            input_shape: x.shape().to_vec(),
            axis,
            start,
        });
        Ok(Var::from_op(out, &[self], f))
    }

    /// Joins variables along `axis`.
    pub fn concat(vars: &[&Var], axis: usize) -> Result<Var> {
        let values: Vec<Tensor> = vars.iter().map(|v| v.value()).collect();
        let out = Tensor::concat(&values.iter().collect::<Vec<_>>(), axis)?;
        let sizes = values.iter().map(|v| v.shape()[axis]).collect();
        Ok(Var::from_op(out, vars, Shape(Kind::Concat { axis, sizes })))
    }
}

#[cfg(test)]
mod tests {
    use crate::Var;
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_tensor_core::Tensor;

    #[test]
    fn shape_op_gradients() {
        let x = Tensor::randn(&[2, 3, 4], 0.0, 1.0, 6).unwrap();
        let y = Tensor::randn(&[2, 2, 4], 0.0, 1.0, 7).unwrap();
        let o = GradcheckOptions::default();
        gradcheck(
            "reshape",
            std::slice::from_ref(&x),
            |v| v[0].permute(&[2, 0, 1])?.reshape(&[8, 3]),
            o,
        )
        .unwrap();
        gradcheck(
            "transpose",
            std::slice::from_ref(&x),
            |v| v[0].transpose(0, 2)?.mul(&v[0].transpose(0, 2)?),
            o,
        )
        .unwrap();
        gradcheck(
            "narrow",
            std::slice::from_ref(&x),
            |v| v[0].narrow(1, 1, 2),
            o,
        )
        .unwrap();
        gradcheck("concat", &[x, y], |v| Var::concat(&[&v[0], &v[1]], 1), o).unwrap();
    }
}
