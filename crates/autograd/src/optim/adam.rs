//! [`Adam`] and AdamW (Adam with decoupled weight decay), step for step `torch.optim.Adam` /
//! `torch.optim.AdamW` (single-tensor path, no AMSGrad).

use super::state::{Core, Update, check_range, lerp};
use super::{Optimizer, ParamGroup};
use crate::Result;

/// Hyper-parameters of [`Adam`]. `Default` is torch's Adam; [`AdamConfig::adamw`] is torch's AdamW.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Decay rates of the first and second moment averages, each in [0, 1).
    pub betas: (f64, f64),
    /// Added to the denominator (≥ 0).
    pub eps: f64,
    /// Weight decay for groups without their own (≥ 0).
    pub weight_decay: f64,
    /// AdamW: decay the parameter directly (`p ← p·(1 − lr·wd)`) instead of adding `wd·p` to
    /// the gradient.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// torch's AdamW defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2, decoupled.
    pub fn adamw() -> AdamConfig {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled_weight_decay: true,
            ..AdamConfig::default()
        }
    }
}

/// Adam (or AdamW with [`AdamConfig::decoupled_weight_decay`]).
///
/// Per parameter with gradient `g`, at its `t`-th update (group learning rate `lr`), in torch's
/// order and f32 rounding, with the scalars computed in f64 as Python does:
/// ```text
/// p ← p·(1 − lr·wd)        (AdamW)          g ← g + wd·p        (Adam, wd ≠ 0)
/// m ← lerp(m, g, 1 − β1)                    v ← v·β2 + (1 − β2)·g·g
/// bc1 = 1 − β1^t, bc2 = 1 − β2^t, step_size = lr / bc1
/// p ← p + (−step_size)·m / (√v / √bc2 + eps)
/// ```
pub struct Adam {
    core: Core,
    cfg: AdamConfig,
}

impl Adam {
    /// Adam or AdamW (by `cfg.decoupled_weight_decay`) over `groups`; errors on out-of-range
    /// hyper-parameters or duplicate parameter names.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Result<Adam> {
        let (name, op) = if cfg.decoupled_weight_decay {
            ("AdamW", "AdamW::new")
        } else {
            ("Adam", "Adam::new")
        };
        check_range(op, "beta1", cfg.betas.0, 0.0, Some(1.0))?;
        check_range(op, "beta2", cfg.betas.1, 0.0, Some(1.0))?;
        check_range(op, "eps", cfg.eps, 0.0, None)?;
        check_range(op, "weight_decay", cfg.weight_decay, 0.0, None)?;
        let core = Core::new(name, op, groups, cfg.lr, &["exp_avg", "exp_avg_sq"])?;
        Ok(Adam { core, cfg })
    }

    /// AdamW over `groups`: `cfg` with decoupled weight decay switched on.
    pub fn adamw(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Result<Adam> {
        Adam::new(
            groups,
            AdamConfig {
                decoupled_weight_decay: true,
                ..cfg
            },
        )
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> AdamConfig {
        AdamConfig {
            lr: self.core.lr,
            ..self.cfg
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let op = if self.cfg.decoupled_weight_decay {
            "AdamW::step"
        } else {
            "Adam::step"
        };
        self.core.check_grads(op)?;
        let (beta1, beta2) = self.cfg.betas;
        let (w1, b2, c2) = ((1.0 - beta1) as f32, beta2 as f32, (1.0 - beta2) as f32);
        let eps = self.cfg.eps as f32;
        for (group, states) in self.core.groups.iter().zip(&mut self.core.states) {
            let lr = self.core.lr * group.lr_scale;
            let wd = group.weight_decay.unwrap_or(self.cfg.weight_decay);
            let decoupled = self.cfg.decoupled_weight_decay;
            let (wd32, decay) = (wd as f32, (1.0 - lr * wd) as f32);
            for ((_, var), st) in group.params.iter().zip(states.iter_mut()) {
                let Some(mut u) = Update::take(var) else {
                    continue;
                };
                if st.bufs.is_empty() {
                    st.bufs = vec![vec![0.0; u.value.len()]; 2];
                }
                st.step += 1;
                let t = st.step as f64;
                let bc1 = 1.0 - beta1.powf(t);
                let bc2 = 1.0 - beta2.powf(t);
                let neg_step_size = (-(lr / bc1)) as f32;
                let bc2_sqrt = bc2.powf(0.5) as f32;
                let g = u.grad.as_slice().expect("Update::take made it contiguous");
                let [m, v] = st.bufs.as_mut_slice() else {
                    unreachable!("Adam keeps two buffers")
                };
                for (i, p) in u.value.iter_mut().enumerate() {
                    let mut gi = g[i];
                    if wd != 0.0 {
                        if decoupled {
                            *p *= decay;
                        } else {
                            gi += wd32 * *p;
                        }
                    }
                    m[i] = lerp(m[i], gi, w1);
                    v[i] = v[i] * b2 + c2 * gi * gi;
                    let denom = v[i].sqrt() / bc2_sqrt + eps;
                    *p += neg_step_size * m[i] / denom;
                }
                u.store(var)?;
            }
        }
        Ok(())
    }

    delegate_to_core!("Adam::set_lr", "Adam::load_state");
}
