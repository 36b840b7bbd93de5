//! [`Adam`] and AdamW (Adam with decoupled weight decay), step for step `torch.optim.Adam` /
//! `torch.optim.AdamW` (single-tensor path, no AMSGrad).

use allmlp_tensor_core::threads;
use rayon::prelude::*;

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

/// Elements per parallel piece of one parameter's update (the update is
/// elementwise, so how it is cut changes no bits).
const CHUNK: usize = 1 << 14;

/// The constants of one parameter's update, applied element by element.
#[derive(Clone, Copy)]
struct Elementwise {
    w1: f32,
    b2: f32,
    c2: f32,
    eps: f32,
    /// `(decoupled, wd, 1 − lr·wd)` when there is weight decay.
    weight_decay: Option<(bool, f32, f32)>,
    neg_step_size: f32,
    bc2_sqrt: f32,
}

impl Elementwise {
    /// Updates `p`, `m` and `v` from `g` (equal lengths), as `torch.optim.Adam(W)`'s
    /// single-tensor path does, element for element.
    fn apply(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let n = p.len();
        // One length for all four, so the loop has no bounds checks and vectorizes.
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let Elementwise {
            w1,
            b2,
            c2,
            eps,
            neg_step_size,
            bc2_sqrt,
            ..
        } = self;
        let step = |p: &mut f32, gi: f32, m: &mut f32, v: &mut f32| {
            *m = lerp(*m, gi, w1);
            *v = *v * b2 + c2 * gi * gi;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p += neg_step_size * *m / denom;
        };
        match self.weight_decay {
            None => {
                for i in 0..n {
                    step(&mut p[i], g[i], &mut m[i], &mut v[i]);
                }
            }
            Some((true, _, decay)) => {
                for i in 0..n {
                    p[i] *= decay;
                    step(&mut p[i], g[i], &mut m[i], &mut v[i]);
                }
            }
            Some((false, wd, _)) => {
                for i in 0..n {
                    let gi = g[i] + wd * p[i];
                    step(&mut p[i], gi, &mut m[i], &mut v[i]);
                }
            }
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
                let k = Elementwise {
                    w1,
                    b2,
                    c2,
                    eps,
                    weight_decay: (wd != 0.0).then_some((decoupled, wd32, decay)),
                    neg_step_size,
                    bc2_sqrt,
                };
                let chunks = u.value.len().div_ceil(CHUNK);
                if chunks > 1 {
                    threads::install(|| {
                        u.value
                            .par_chunks_mut(CHUNK)
                            .zip(g.par_chunks(CHUNK))
                            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                            .for_each(|((p, g), (m, v))| k.apply(p, g, m, v));
                    });
                } else {
                    k.apply(&mut u.value, g, m, v);
                }
                u.store(var)?;
            }
        }
        Ok(())
    }

    delegate_to_core!("Adam::set_lr", "Adam::load_state");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Var;
    use allmlp_tensor_core::{Rng, Tensor};

    /// torch's single-tensor Adam(W) step for one element, written out.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        p: &mut f32,
        g: f32,
        m: &mut f32,
        v: &mut f32,
        t: f64,
        lr: f64,
        wd: f64,
        decoupled: bool,
    ) {
        let (beta1, beta2) = (0.9f64, 0.999f64);
        let mut g = g;
        if decoupled {
            *p *= (1.0 - lr * wd) as f32;
        } else {
            g += wd as f32 * *p;
        }
        *m = lerp(*m, g, (1.0 - beta1) as f32);
        *v = *v * beta2 as f32 + (1.0 - beta2) as f32 * g * g;
        let bc1 = 1.0 - beta1.powf(t);
        let bc2_sqrt = (1.0 - beta2.powf(t)).powf(0.5) as f32;
        *p += (-(lr / bc1)) as f32 * *m / (v.sqrt() / bc2_sqrt + 1e-8);
    }

    /// A parameter of several parallel pieces (and a partial last one) gets
    /// exactly the element-by-element update, Adam and AdamW, over steps.
    #[test]
    fn a_large_parameter_updates_element_by_element() {
        let n = 2 * CHUNK + 1234;
        for decoupled in [true, false] {
            let mut rng = Rng::new(5);
            let init: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let w = Var::parameter(Tensor::from_vec(init.clone(), &[n]).unwrap());
            let cfg = AdamConfig {
                lr: 1e-2,
                weight_decay: 0.1,
                decoupled_weight_decay: decoupled,
                ..AdamConfig::default()
            };
            let mut opt =
                Adam::new(vec![ParamGroup::new(vec![("w".into(), w.clone())])], cfg).unwrap();
            let (mut p, mut m, mut v) = (init, vec![0.0f32; n], vec![0.0f32; n]);
            for step in 1..=3 {
                let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                w.set_grad(Some(Tensor::from_vec(g.clone(), &[n]).unwrap()));
                opt.step().unwrap();
                for i in 0..n {
                    reference(
                        &mut p[i],
                        g[i],
                        &mut m[i],
                        &mut v[i],
                        step as f64,
                        1e-2,
                        0.1,
                        decoupled,
                    );
                }
                let got = w.value().to_vec();
                let same = got.iter().zip(&p).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "decoupled {decoupled}, step {step}");
            }
        }
    }
}
