//! The optimizer and learning-rate schedule a [`Recipe`] asks for.

use allmlp_autograd::optim::{
    Adam, AdamConfig, Decay, Lamb, LambConfig, Optimizer, ParamGroup, Schedule, Sgd, SgdConfig,
};

use super::recipe::{OptimizerKind, Recipe, ScheduleKind};
use crate::commands::CliResult;

/// The recipe's optimizer over `groups`.
pub fn build_optimizer(r: &Recipe, groups: Vec<ParamGroup>) -> CliResult<Box<dyn Optimizer>> {
    Ok(match r.optimizer {
        OptimizerKind::Adamw => Box::new(Adam::adamw(
            groups,
            AdamConfig {
                lr: r.lr,
                weight_decay: r.weight_decay,
                ..AdamConfig::adamw()
            },
        )?),
        OptimizerKind::Sgd => Box::new(Sgd::new(
            groups,
            SgdConfig {
                lr: r.lr,
                momentum: 0.9,
                nesterov: true,
                weight_decay: r.weight_decay,
                ..SgdConfig::default()
            },
        )?),
        OptimizerKind::Lamb => Box::new(Lamb::new(
            groups,
            LambConfig {
                lr: r.lr,
                weight_decay: r.weight_decay,
                ..LambConfig::default()
            },
        )?),
    })
}

/// The recipe's schedule over `total_steps`: a linear warm-up from 0 ([`Recipe::warmup`]),
/// then cosine or linear decay to 0, or ×0.1 after each third of the rest.
pub fn build_schedule(r: &Recipe, total_steps: u64) -> CliResult<Schedule> {
    let warmup = r.warmup(total_steps);
    let decay = match r.schedule {
        ScheduleKind::Cosine => Decay::Cosine {
            total_steps,
            min_lr: 0.0,
        },
        ScheduleKind::Linear => Decay::Linear {
            total_steps,
            min_lr: 0.0,
        },
        ScheduleKind::Step => Decay::Step {
            step_size: ((total_steps - warmup) / 3).max(1),
            gamma: 0.1,
        },
    };
    Ok(Schedule::new(r.lr, warmup, decay)?)
}
