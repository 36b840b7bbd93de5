//! LayerNorm and BatchNorm with fused tensor-core kernels.
//!
//! LayerNorm normalises the last dimension (`x [.., C]`, weight/bias `[C]`).
//! BatchNorm normalises per channel (dimension 1) of `[N, C]`, `[N, C, L]` or
//! `[N, C, H, W]`: in training with batch statistics (updating the running
//! statistics, unbiased variance, PyTorch's momentum convention), in
//! evaluation with the running statistics.

use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::norm::{
    batch_norm_backward, batch_norm_eval, batch_norm_eval_backward, batch_norm_train,
    layer_norm as ln_kernel, layer_norm_backward,
};

use crate::{Function, Result, Var};

/// Which of weight/bias exist, and so which inputs follow `x`.
fn inputs<'a>(x: &'a Var, weight: Option<&'a Var>, bias: Option<&'a Var>) -> Vec<&'a Var> {
    std::iter::once(x).chain(weight).chain(bias).collect()
}

fn grads(dx: Tensor, dw: Tensor, db: Tensor, has_w: bool, has_b: bool) -> Vec<Option<Tensor>> {
    let mut g = vec![Some(dx)];
    if has_w {
        g.push(Some(dw));
    }
    if has_b {
        g.push(Some(db));
    }
    g
}

struct LayerNorm {
    x: Tensor,
    weight: Option<Tensor>,
    has_bias: bool,
    mean: Tensor,
    rstd: Tensor,
}

impl Function for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let r = layer_norm_backward(g, &self.x, &self.mean, &self.rstd, self.weight.as_ref())?;
        Ok(grads(
            r.dx,
            r.dweight,
            r.dbias,
            self.weight.is_some(),
            self.has_bias,
        ))
    }
}

/// LayerNorm over the last dimension with `eps` (timm's Mixer uses 1e-6).
pub fn layer_norm(x: &Var, weight: Option<&Var>, bias: Option<&Var>, eps: f32) -> Result<Var> {
    let xv = x.value();
    let (wv, bv) = (weight.map(Var::value), bias.map(Var::value));
    let out = ln_kernel(&xv, wv.as_ref(), bv.as_ref(), eps)?;
    let f = LayerNorm {
        x: xv,
        weight: wv,
        has_bias: bias.is_some(),
        mean: out.mean,
        rstd: out.rstd,
    };
    Ok(Var::from_op(out.y, &inputs(x, weight, bias), f))
}

/// Running statistics of a BatchNorm layer (its buffers).
#[derive(Debug)]
pub struct RunningStats<'a> {
    /// `running_mean [C]`.
    pub mean: &'a mut Tensor,
    /// `running_var [C]` (unbiased).
    pub var: &'a mut Tensor,
}

enum BnSaved {
    Train { mean: Tensor, invstd: Tensor },
    Eval { mean: Tensor, var: Tensor, eps: f32 },
}

struct BatchNorm {
    x: Tensor,
    weight: Option<Tensor>,
    has_bias: bool,
    saved: BnSaved,
}

impl Function for BatchNorm {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let w = self.weight.as_ref();
        let r = match &self.saved {
            BnSaved::Train { mean, invstd } => batch_norm_backward(g, &self.x, mean, invstd, w)?,
            BnSaved::Eval { mean, var, eps } => {
                batch_norm_eval_backward(g, &self.x, mean, var, w, *eps)?
            }
        };
        Ok(grads(
            r.dx,
            r.dweight,
            r.dbias,
            self.weight.is_some(),
            self.has_bias,
        ))
    }
}

/// BatchNorm (1d or 2d). Training uses batch statistics and updates `running`
/// (if given) with `momentum`; evaluation uses `running`, which is then required.
pub fn batch_norm(
    x: &Var,
    weight: Option<&Var>,
    bias: Option<&Var>,
    running: Option<RunningStats<'_>>,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<Var> {
    let xv = x.value();
    let (wv, bv) = (weight.map(Var::value), bias.map(Var::value));
    let (y, saved) = if training {
        let (rm, rv) = match running {
            Some(r) => (Some(r.mean), Some(r.var)),
            None => (None, None),
        };
        let out = batch_norm_train(&xv, wv.as_ref(), bv.as_ref(), rm, rv, momentum, eps)?;
        (
            out.y,
            BnSaved::Train {
                mean: out.mean,
                invstd: out.invstd,
            },
        )
    } else {
        let r = running.ok_or_else(|| crate::AutogradError::InvalidArgument {
            op: "batch_norm",
            msg: "evaluation mode needs running statistics (track_running_stats=False is not supported)".into(),
        })?;
        let y = batch_norm_eval(&xv, wv.as_ref(), bv.as_ref(), r.mean, r.var, eps)?;
        (
            y,
            BnSaved::Eval {
                mean: r.mean.clone(),
                var: r.var.clone(),
                eps,
            },
        )
    };
    let f = BatchNorm {
        x: xv,
        weight: wv,
        has_bias: bias.is_some(),
        saved,
    };
    Ok(Var::from_op(y, &inputs(x, weight, bias), f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn layer_norm_gradients() {
        let x = Tensor::randn(&[2, 5, 7], 0.5, 2.0, 1)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let w = Tensor::randn(&[7], 1.0, 0.5, 2).unwrap();
        let b = Tensor::randn(&[7], 0.0, 0.5, 3).unwrap();
        let o = GradcheckOptions::default();
        gradcheck(
            "layer_norm",
            &[x.clone(), w, b],
            |v| layer_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-6),
            o,
        )
        .unwrap();
        gradcheck(
            "layer_norm_plain",
            &[x],
            |v| layer_norm(&v[0], None, None, 1e-5),
            o,
        )
        .unwrap();
    }

    #[test]
    fn batch_norm_gradients_train_and_eval() {
        let x = Tensor::randn(&[3, 4, 2, 3], 0.3, 1.5, 4).unwrap();
        let w = Tensor::randn(&[4], 1.0, 0.3, 5).unwrap();
        let b = Tensor::randn(&[4], 0.0, 0.3, 6).unwrap();
        let o = GradcheckOptions::default();
        let rm = Tensor::randn(&[4], 0.0, 1.0, 7).unwrap();
        let rv = Tensor::rand_uniform(&[4], 0.5, 2.0, 8).unwrap();
        gradcheck(
            "batch_norm_train",
            &[x.clone(), w.clone(), b.clone()],
            |v| batch_norm(&v[0], Some(&v[1]), Some(&v[2]), None, true, 0.1, 1e-5),
            o,
        )
        .unwrap();
        gradcheck(
            "batch_norm_eval",
            &[x.clone(), w, b],
            |v| {
                let (mut m, mut r) = (rm.clone(), rv.clone());
                let stats = RunningStats {
                    mean: &mut m,
                    var: &mut r,
                };
                batch_norm(
                    &v[0],
                    Some(&v[1]),
                    Some(&v[2]),
                    Some(stats),
                    false,
                    0.1,
                    1e-5,
                )
            },
            o,
        )
        .unwrap();
        // BatchNorm1d on [N, C], training updates the running statistics.
        let x1 = Tensor::randn(&[6, 3], 0.0, 1.0, 9).unwrap();
        let (mut m, mut r) = (Tensor::zeros(&[3]).unwrap(), Tensor::ones(&[3]).unwrap());
        let stats = RunningStats {
            mean: &mut m,
            var: &mut r,
        };
        batch_norm(
            &Var::parameter(x1.clone()),
            None,
            None,
            Some(stats),
            true,
            0.1,
            1e-5,
        )
        .unwrap();
        let want = x1.mean(&[0], false).unwrap().mul_scalar(0.1);
        for (a, e) in m.to_vec().iter().zip(want.to_vec()) {
            assert!((a - e).abs() < 1e-6);
        }
        assert!(batch_norm(&Var::parameter(x1), None, None, None, false, 0.1, 1e-5).is_err());
    }
}
