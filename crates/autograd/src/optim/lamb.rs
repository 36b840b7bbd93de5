//! [`Lamb`]: layer-wise adaptive moments, step for step timm's `timm.optim.Lamb`
//! (the single-tensor path timm uses for CPU tensors; the ResMLP/DeiT recipe: lr 5e-3, wd 0.2).

use super::state::{Core, Update, check_range, invalid, lerp, norm2};
use super::{Optimizer, OptimizerState, ParamGroup};
use crate::Result;

/// Hyper-parameters of [`Lamb`]; `Default` is timm's `Lamb` defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LambConfig {
    /// Learning rate (≥ 0). timm default 1e-3.
    pub lr: f64,
    /// Divide the moments by `1 − β^t`. timm default true.
    pub bias_correction: bool,
    /// Decay rates of the moment averages, each in [0, 1). timm default (0.9, 0.999).
    pub betas: (f64, f64),
    /// Added to the denominator (≥ 0). timm default 1e-6.
    pub eps: f64,
    /// L2 weight decay added to the update, for groups without their own (≥ 0). timm default 0.01.
    pub weight_decay: f64,
    /// Scale the gradient by `1 − β1` in the first moment (else by 1). timm default true.
    pub grad_averaging: bool,
    /// Divide all gradients by `max(‖g‖_global / max_grad_norm, 1)` before the update (the
    /// gradients stored in the parameters are left alone); `None` disables. timm default 1.0.
    pub max_grad_norm: Option<f64>,
    /// LAMBC: clip the trust ratio at 1. timm default false.
    pub trust_clip: bool,
    /// Apply the trust ratio also to parameters with zero weight decay. timm default false.
    pub always_adapt: bool,
}

impl Default for LambConfig {
    fn default() -> Self {
        LambConfig {
            lr: 1e-3,
            bias_correction: true,
            betas: (0.9, 0.999),
            eps: 1e-6,
            weight_decay: 0.01,
            grad_averaging: true,
            max_grad_norm: Some(1.0),
            trust_clip: false,
            always_adapt: false,
        }
    }
}

impl LambConfig {
    /// The ResMLP/DeiT recipe: timm defaults with lr 5e-3 and weight decay 0.2 (use it with
    /// [`param_groups_weight_decay`](super::param_groups_weight_decay) so norms, biases and
    /// layer scales get no decay — and, with `always_adapt` false, no trust ratio).
    pub fn resmlp() -> LambConfig {
        LambConfig {
            lr: 5e-3,
            weight_decay: 0.2,
            ..LambConfig::default()
        }
    }
}

/// LAMB as implemented by timm (`timm.optim.Lamb`, NVIDIA FusedLAMB behaviour).
///
/// Each step first computes the global gradient norm over every parameter with a gradient and
/// the clip divisor `c = max(‖g‖ / max_grad_norm, 1)`. Then, per group, its step count `t`
/// increases (even if no parameter of the group has a gradient, as in timm), and for each
/// parameter with a gradient (f32, torch's operation order):
/// ```text
/// g ← g / c
/// m ← lerp(m, g, 1 − β1)  (grad_averaging)   or  m ← β1·m + g
/// v ← β2·v + (1 − β2)·g·g
/// u ← (m / bc1) / (√v / √bc2 + eps)          bc = 1 − β^t, or 1 without bias correction
/// u ← u + wd·p                               (wd ≠ 0)
/// u ← u · r, r = ‖p‖ / ‖u‖ (1 if either is 0; min(r, 1) with trust_clip)   (wd ≠ 0 or always_adapt)
/// p ← p − lr·u
/// ```
pub struct Lamb {
    core: Core,
    cfg: LambConfig,
    /// Steps taken by each group (timm keeps one step per group).
    group_steps: Vec<u64>,
}

impl Lamb {
    /// LAMB over `groups`; errors on out-of-range hyper-parameters or duplicate names.
    pub fn new(groups: Vec<ParamGroup>, cfg: LambConfig) -> Result<Lamb> {
        const OP: &str = "Lamb::new";
        check_range(OP, "beta1", cfg.betas.0, 0.0, Some(1.0))?;
        check_range(OP, "beta2", cfg.betas.1, 0.0, Some(1.0))?;
        check_range(OP, "eps", cfg.eps, 0.0, None)?;
        check_range(OP, "weight_decay", cfg.weight_decay, 0.0, None)?;
        if let Some(m) = cfg.max_grad_norm
            && !(m.is_finite() && m > 0.0)
        {
            return Err(invalid(
                OP,
                format!("max_grad_norm must be > 0 and finite (or None), got {m}"),
            ));
        }
        let core = Core::new("Lamb", OP, groups, cfg.lr, &["exp_avg", "exp_avg_sq"])?;
        let group_steps = vec![0; core.groups.len()];
        Ok(Lamb {
            core,
            cfg,
            group_steps,
        })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> LambConfig {
        LambConfig {
            lr: self.core.lr,
            ..self.cfg
        }
    }

    /// timm's `_get_clip_grad_norm`: `max(‖(‖g₁‖, ‖g₂‖, …)‖ / max_grad_norm, 1)` in f32, over
    /// every parameter with a gradient (NaN when the norm is, as in timm); `None` when disabled
    /// or no parameter has one.
    fn clip_divisor(&self) -> Option<f32> {
        let max_norm = self.cfg.max_grad_norm?;
        let norms: Vec<f32> = self
            .core
            .groups
            .iter()
            .flat_map(|g| &g.params)
            .filter_map(|(_, v)| v.grad())
            .map(|g| norm2(g.contiguous().as_slice().expect("contiguous")))
            .collect();
        if norms.is_empty() {
            return None;
        }
        // timm's `clamp_(min=1.0)` keeps a NaN, as `clamp` does (`max` would drop it): one NaN
        // gradient makes every update NaN.
        Some((norm2(&norms) / max_norm as f32).clamp(1.0, f32::INFINITY))
    }
}

impl Optimizer for Lamb {
    fn step(&mut self) -> Result<()> {
        const OP: &str = "Lamb::step";
        self.core.check_grads(OP)?;
        let clip = self.clip_divisor();
        let cfg = self.cfg;
        let (beta1, beta2) = cfg.betas;
        let beta3 = if cfg.grad_averaging { 1.0 - beta1 } else { 1.0 };
        let use_lerp = beta3 == 1.0 - beta1;
        let (b1, b2, b3, c2) = (
            beta1 as f32,
            beta2 as f32,
            beta3 as f32,
            (1.0 - beta2) as f32,
        );
        let eps = cfg.eps as f32;
        let groups = self.core.groups.iter().zip(&mut self.core.states);
        for ((group, states), gstep) in groups.zip(&mut self.group_steps) {
            *gstep += 1;
            if group.params.iter().all(|(_, v)| v.grad().is_none()) {
                continue;
            }
            let (bc1, bc2) = if cfg.bias_correction {
                let t = *gstep as f64;
                (1.0 - beta1.powf(t), 1.0 - beta2.powf(t))
            } else {
                (1.0, 1.0)
            };
            let (bc1, bc2_sqrt) = (bc1 as f32, bc2.powf(0.5) as f32);
            let lr = self.core.lr * group.lr_scale;
            let wd = group.weight_decay.unwrap_or(cfg.weight_decay);
            let (wd32, neg_lr) = (wd as f32, (-lr) as f32);
            for ((_, var), st) in group.params.iter().zip(states.iter_mut()) {
                let Some(mut u) = Update::take(var) else {
                    continue;
                };
                if st.bufs.is_empty() {
                    st.bufs = vec![vec![0.0; u.value.len()]; 2];
                }
                st.step += 1;
                let g = u.grad.as_slice().expect("Update::take made it contiguous");
                let [m, v] = st.bufs.as_mut_slice() else {
                    unreachable!("Lamb keeps two buffers")
                };
                // Pass 1: moments and the raw update (kept for its norm).
                let mut upd = vec![0.0f32; g.len()];
                for (i, ui) in upd.iter_mut().enumerate() {
                    let gi = match clip {
                        Some(c) => g[i] / c,
                        None => g[i],
                    };
                    m[i] = if use_lerp {
                        lerp(m[i], gi, b3)
                    } else {
                        m[i] * b1 + b3 * gi
                    };
                    v[i] = v[i] * b2 + c2 * gi * gi;
                    let denom = v[i].sqrt() / bc2_sqrt + eps;
                    let mut x = m[i] / bc1 / denom;
                    if wd != 0.0 {
                        x += wd32 * u.value[i];
                    }
                    *ui = x;
                }
                // Pass 2: layer-wise trust ratio and the parameter update.
                let ratio = if wd != 0.0 || cfg.always_adapt {
                    let (w_norm, u_norm) = (norm2(&u.value), norm2(&upd));
                    let r = if w_norm > 0.0 && u_norm > 0.0 {
                        w_norm / u_norm
                    } else {
                        1.0
                    };
                    Some(if cfg.trust_clip { r.min(1.0) } else { r })
                } else {
                    None
                };
                for (p, &x) in u.value.iter_mut().zip(&upd) {
                    let x = match ratio {
                        Some(r) => x * r,
                        None => x,
                    };
                    *p += neg_lr * x;
                }
                u.store(var)?;
            }
        }
        Ok(())
    }

    delegate_to_core!("Lamb::set_lr");

    fn state(&self) -> OptimizerState {
        let extra = self
            .group_steps
            .iter()
            .enumerate()
            .map(|(i, &s)| (format!("group.{i}.step"), s as f64))
            .collect();
        self.core.save(extra)
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let keys: Vec<String> = (0..self.group_steps.len())
            .map(|i| format!("group.{i}.step"))
            .collect();
        self.group_steps = self.core.load("Lamb::load_state", state, &keys)?;
        Ok(())
    }
}
