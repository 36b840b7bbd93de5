//! Softmax, log-softmax and cross-entropy (label smoothing, soft targets).

use allmlp_tensor_core::Tensor;
use allmlp_tensor_core::loss::{
    Targets, cross_entropy as ce_kernel, cross_entropy_backward, log_softmax as log_softmax_kernel,
    log_softmax_backward, softmax as softmax_kernel, softmax_backward,
};

use crate::{Function, Result, Var};

struct Softmax {
    y: Tensor,
    axis: usize,
    log: bool,
}

impl Function for Softmax {
    fn name(&self) -> &'static str {
        if self.log { "log_softmax" } else { "softmax" }
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dx = if self.log {
            log_softmax_backward(g, &self.y, self.axis)?
        } else {
            softmax_backward(g, &self.y, self.axis)?
        };
        Ok(vec![Some(dx)])
    }
}

impl Var {
    /// Softmax along `axis`.
    pub fn softmax(&self, axis: usize) -> Result<Var> {
        let y = softmax_kernel(&self.value(), axis)?;
        Ok(Var::from_op(
            y.clone(),
            &[self],
            Softmax {
                y,
                axis,
                log: false,
            },
        ))
    }

    /// Log-softmax along `axis`.
    pub fn log_softmax(&self, axis: usize) -> Result<Var> {
        let y = log_softmax_kernel(&self.value(), axis)?;
        Ok(Var::from_op(
            y.clone(),
            &[self],
            Softmax { y, axis, log: true },
        ))
    }
}

/// Owned targets saved for backward.
enum SavedTargets {
    Classes(Vec<usize>),
    Soft(Tensor),
}

impl SavedTargets {
    fn as_targets(&self) -> Targets<'_> {
        match self {
            SavedTargets::Classes(c) => Targets::Classes(c),
            SavedTargets::Soft(t) => Targets::Soft(t),
        }
    }
}

struct CrossEntropy {
    logits: Tensor,
    targets: SavedTargets,
    smoothing: f32,
}

impl Function for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let d = cross_entropy_backward(
            &self.logits,
            self.targets.as_targets(),
            self.smoothing,
            g.item()?,
        )?;
        Ok(vec![Some(d)])
    }
}

/// Mean cross-entropy of `logits [N, K]` against class indices or soft
/// (mixup) targets, with label smoothing `ε` as `torch.nn.functional.cross_entropy`.
pub fn cross_entropy(logits: &Var, targets: Targets<'_>, label_smoothing: f32) -> Result<Var> {
    let lv = logits.value();
    let loss = ce_kernel(&lv, targets, label_smoothing)?;
    let saved = match targets {
        Targets::Classes(c) => SavedTargets::Classes(c.to_vec()),
        Targets::Soft(t) => SavedTargets::Soft(t.clone()),
    };
    let f = CrossEntropy {
        logits: lv,
        targets: saved,
        smoothing: label_smoothing,
    };
    Ok(Var::from_op(Tensor::scalar(loss), &[logits], f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn softmax_and_cross_entropy_gradients() {
        let x = Tensor::randn(&[4, 6], 0.0, 2.0, 1)
            .unwrap()
            .transpose(0, 1)
            .unwrap(); // [6, 4]
        let o = GradcheckOptions::default();
        gradcheck("softmax", std::slice::from_ref(&x), |v| v[0].softmax(0), o).unwrap();
        gradcheck(
            "log_softmax",
            std::slice::from_ref(&x),
            |v| v[0].log_softmax(1),
            o,
        )
        .unwrap();
        let classes = [0usize, 3, 2, 1, 3, 0];
        for eps in [0.0, 0.1] {
            gradcheck(
                "ce",
                std::slice::from_ref(&x),
                |v| cross_entropy(&v[0], Targets::Classes(&classes), eps),
                o,
            )
            .unwrap();
        }
        let soft = Tensor::rand_uniform(&[6, 4], 0.1, 1.0, 2).unwrap();
        let soft = soft.div(&soft.sum(&[1], true).unwrap()).unwrap();
        gradcheck(
            "ce_soft",
            &[x],
            |v| cross_entropy(&v[0], Targets::Soft(&soft), 0.1),
            o,
        )
        .unwrap();
    }
}
