//! [`Sgd`]: stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay,
//! step for step `torch.optim.SGD` (single-tensor path).

use super::state::{Core, Update, check_range, invalid};
use super::{Optimizer, ParamGroup};
use crate::Result;

/// Hyper-parameters of [`Sgd`]; `Default` is torch's (lr 1e-3, no momentum, no weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Momentum factor (≥ 0); 0 keeps no buffer.
    pub momentum: f64,
    /// Dampening of the gradient's contribution to the momentum buffer (≥ 0).
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// L2 penalty added to the gradient, for groups without their own (≥ 0).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Stochastic gradient descent, `torch.optim.SGD`.
///
/// Per parameter with gradient `g` (learning rate `lr = lr · lr_scale` of its group):
/// ```text
/// g ← g + wd·p                                   (wd ≠ 0)
/// b ← g at the first update, else μ·b + (1 − dampening)·g   (μ ≠ 0)
/// g ← g + μ·b if nesterov, else b                (μ ≠ 0)
/// p ← p − lr·g
/// ```
pub struct Sgd {
    core: Core,
    cfg: SgdConfig,
}

impl Sgd {
    /// An SGD optimizer over `groups`; errors on out-of-range hyper-parameters or duplicate names.
    pub fn new(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Sgd> {
        const OP: &str = "SGD::new";
        check_range(OP, "momentum", cfg.momentum, 0.0, None)?;
        check_range(OP, "dampening", cfg.dampening, 0.0, None)?;
        check_range(OP, "weight_decay", cfg.weight_decay, 0.0, None)?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(invalid(
                OP,
                format!(
                    "Nesterov momentum requires a momentum > 0 and zero dampening, got momentum \
                     {} and dampening {}",
                    cfg.momentum, cfg.dampening
                ),
            ));
        }
        let buffers: &'static [&'static str] = if cfg.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        };
        let core = Core::new("SGD", OP, groups, cfg.lr, buffers)?;
        Ok(Sgd { core, cfg })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> SgdConfig {
        SgdConfig {
            lr: self.core.lr,
            ..self.cfg
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        const OP: &str = "SGD::step";
        self.core.check_grads(OP)?;
        let SgdConfig {
            momentum,
            dampening,
            nesterov,
            ..
        } = self.cfg;
        let mom = momentum as f32;
        let keep = (1.0 - dampening) as f32;
        for (group, states) in self.core.groups.iter().zip(&mut self.core.states) {
            let lr = self.core.lr * group.lr_scale;
            let wd = group.weight_decay.unwrap_or(self.cfg.weight_decay);
            let (wd32, neg_lr) = (wd as f32, (-lr) as f32);
            for ((_, var), st) in group.params.iter().zip(states.iter_mut()) {
                let Some(mut u) = Update::take(var) else {
                    continue;
                };
                let first = st.bufs.is_empty();
                if momentum != 0.0 && first {
                    st.bufs.push(vec![0.0; u.value.len()]);
                }
                let g = u.grad.as_slice().expect("Update::take made it contiguous");
                let buf: &mut [f32] = match st.bufs.first_mut() {
                    Some(b) => b,
                    None => &mut [],
                };
                for (i, p) in u.value.iter_mut().enumerate() {
                    let mut d = g[i];
                    if wd != 0.0 {
                        d += wd32 * *p;
                    }
                    if momentum != 0.0 {
                        let b = &mut buf[i];
                        *b = if first { d } else { *b * mom + keep * d };
                        d = if nesterov { d + mom * *b } else { *b };
                    }
                    *p += neg_lr * d;
                }
                st.step += 1;
                u.store(var)?;
            }
        }
        Ok(())
    }

    delegate_to_core!("SGD::set_lr", "SGD::load_state");
}
