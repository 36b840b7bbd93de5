//! [`Schedule`]: per-step learning rates — linear warm-up, then constant, cosine, linear or
//! step decay — with the formulas of timm's schedulers (`warmup_prefix=True`).

use super::state::{check_range, invalid};
use crate::Result;

/// What follows the warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    /// Stay at the base learning rate.
    Constant,
    /// Half-cosine from the base rate to `min_lr`, reached at `total_steps` (timm
    /// `CosineLRScheduler`); `min_lr` afterwards.
    Cosine {
        /// Step at which `min_lr` is reached (warm-up included).
        total_steps: u64,
        /// Final learning rate.
        min_lr: f64,
    },
    /// Straight line from the base rate to `min_lr` at `total_steps` (timm `PolyLRScheduler` with
    /// power 1); `min_lr` afterwards.
    Linear {
        /// Step at which `min_lr` is reached (warm-up included).
        total_steps: u64,
        /// Final learning rate.
        min_lr: f64,
    },
    /// Multiply by `gamma` every `step_size` steps after the warm-up (torch `StepLR`, timm
    /// `StepLRScheduler`).
    Step {
        /// Steps between decays (> 0).
        step_size: u64,
        /// Factor applied at each decay (> 0).
        gamma: f64,
    },
}

/// A learning rate per optimizer step, counted from 0.
///
/// For `step < warmup_steps` the rate rises linearly from `warmup_start_lr` (0 unless set with
/// [`Schedule::with_warmup_start`]): `start + step · (base − start) / warmup_steps`, so step 0
/// uses `start` and step `warmup_steps` is the first at `base_lr`. After the warm-up, with
/// `t = step − warmup_steps` and `T = total_steps − warmup_steps`:
/// cosine `min + ½(base − min)(1 + cos(π t / T))`, linear `min + (base − min)(1 − t / T)`,
/// step `base · γ^⌊t / step_size⌋`; cosine and linear stay at `min_lr` from `total_steps` on.
/// These are timm's formulas (`warmup_prefix=True`, `t_initial = T`), evaluated in the same
/// order in f64.
///
/// ```
/// use allmlp_autograd::optim::Schedule;
/// let s = Schedule::warmup_cosine(5e-3, 5, 105, 1e-5)?;
/// assert_eq!(s.lr_at(0), 0.0);
/// assert!((s.lr_at(1) - 1e-3).abs() < 1e-15);
/// assert_eq!(s.lr_at(5), 5e-3);
/// assert!((s.lr_at(55) - (1e-5 + 0.5 * (5e-3 - 1e-5))).abs() < 1e-15);
/// assert_eq!(s.lr_at(105), 1e-5);
/// # Ok::<(), allmlp_autograd::AutogradError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Learning rate at the end of the warm-up.
    pub base_lr: f64,
    /// Length of the linear warm-up (0: none).
    pub warmup_steps: u64,
    /// Learning rate at step 0 of the warm-up.
    pub warmup_start_lr: f64,
    /// What follows the warm-up.
    pub decay: Decay,
}

const OP: &str = "Schedule";

impl Schedule {
    /// A constant learning rate.
    pub fn constant(lr: f64) -> Result<Schedule> {
        Schedule::new(lr, 0, Decay::Constant)
    }

    /// Linear warm-up over `warmup_steps`, then cosine decay to `min_lr` at `total_steps`.
    pub fn warmup_cosine(
        base_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
        min_lr: f64,
    ) -> Result<Schedule> {
        Schedule::new(
            base_lr,
            warmup_steps,
            Decay::Cosine {
                total_steps,
                min_lr,
            },
        )
    }

    /// Linear warm-up over `warmup_steps`, then linear decay to `min_lr` at `total_steps`.
    pub fn warmup_linear(
        base_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
        min_lr: f64,
    ) -> Result<Schedule> {
        Schedule::new(
            base_lr,
            warmup_steps,
            Decay::Linear {
                total_steps,
                min_lr,
            },
        )
    }

    /// `base_lr · gamma^⌊step / step_size⌋` (add a warm-up with [`Schedule::new`]).
    pub fn step_decay(base_lr: f64, step_size: u64, gamma: f64) -> Result<Schedule> {
        Schedule::new(base_lr, 0, Decay::Step { step_size, gamma })
    }

    /// Any warm-up and decay; errors on negative or non-finite rates, a cosine/linear
    /// `total_steps` not after the warm-up, `min_lr > base_lr`, a zero `step_size` or a
    /// non-positive `gamma`.
    pub fn new(base_lr: f64, warmup_steps: u64, decay: Decay) -> Result<Schedule> {
        check_range(OP, "base_lr", base_lr, 0.0, None)?;
        match decay {
            Decay::Constant => {}
            Decay::Cosine {
                total_steps,
                min_lr,
            }
            | Decay::Linear {
                total_steps,
                min_lr,
            } => {
                check_range(OP, "min_lr", min_lr, 0.0, None)?;
                if min_lr > base_lr {
                    return Err(invalid(
                        OP,
                        format!("min_lr {min_lr} is above base_lr {base_lr}"),
                    ));
                }
                if total_steps <= warmup_steps {
                    return Err(invalid(
                        OP,
                        format!(
                            "total_steps ({total_steps}) must be greater than warmup_steps \
                             ({warmup_steps})"
                        ),
                    ));
                }
            }
            Decay::Step { step_size, gamma } => {
                if step_size == 0 {
                    return Err(invalid(OP, "step_size must be > 0, got 0"));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(invalid(
                        OP,
                        format!("gamma must be > 0 and finite, got {gamma}"),
                    ));
                }
            }
        }
        Ok(Schedule {
            base_lr,
            warmup_steps,
            warmup_start_lr: 0.0,
            decay,
        })
    }

    /// Starts the warm-up at `lr` instead of 0 (DeiT/ResMLP use 1e-6).
    pub fn with_warmup_start(mut self, lr: f64) -> Result<Schedule> {
        check_range(OP, "warmup_start_lr", lr, 0.0, None)?;
        self.warmup_start_lr = lr;
        Ok(self)
    }

    /// The learning rate for optimizer step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            let slope = (self.base_lr - self.warmup_start_lr) / self.warmup_steps as f64;
            return self.warmup_start_lr + step as f64 * slope;
        }
        let t = (step - self.warmup_steps) as f64;
        match self.decay {
            Decay::Constant => self.base_lr,
            Decay::Cosine {
                total_steps,
                min_lr,
            } => {
                let period = (total_steps - self.warmup_steps) as f64;
                if t >= period {
                    min_lr
                } else {
                    min_lr
                        + 0.5
                            * (self.base_lr - min_lr)
                            * (1.0 + (std::f64::consts::PI * t / period).cos())
                }
            }
            Decay::Linear {
                total_steps,
                min_lr,
            } => {
                let period = (total_steps - self.warmup_steps) as f64;
                if t >= period {
                    min_lr
                } else {
                    min_lr + (self.base_lr - min_lr) * (1.0 - t / period)
                }
            }
            Decay::Step { step_size, gamma } => {
                let k = (step - self.warmup_steps) / step_size;
                self.base_lr * gamma.powf(k as f64)
            }
        }
    }
}
