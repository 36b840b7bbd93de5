//! The optimizer and learning-rate schedule a [`Recipe`] asks for.

use allmlp_autograd::Var;
use allmlp_autograd::optim::{
    Adam, AdamConfig, Combined, Decay, Lamb, LambConfig, Muon, MuonConfig, MuonLrAdjust, Optimizer,
    ParamGroup, Schedule, Sgd, SgdConfig, param_groups_weight_decay,
};

use super::recipe::{OptimizerKind, Recipe, ScheduleKind};
use crate::commands::{CliError, CliResult};

/// The recipe's optimizer over the model's `named` parameters. Weight decay goes to every
/// parameter except biases, 1-D tensors and names matching `no_decay` (timm's split).
pub fn build_optimizer(
    r: &Recipe,
    named: Vec<Named>,
    no_decay: &[&str],
) -> CliResult<Box<dyn Optimizer>> {
    let groups = |named| param_groups_weight_decay(named, r.weight_decay, no_decay);
    Ok(match r.optimizer {
        OptimizerKind::Adamw => Box::new(adamw(r, groups(named))?),
        OptimizerKind::Muon => {
            let (matrices, rest) = hidden_matrices(named);
            if matrices.is_empty() {
                return Err(CliError(format!(
                    "--optimizer muon: {} has no 2-D weight matrix besides its classifier \
                     (Muon takes only those); use adamw",
                    r.model
                )));
            }
            let muon = Muon::new(
                vec![ParamGroup::new(matrices)],
                MuonConfig {
                    lr: r.lr,
                    weight_decay: r.weight_decay,
                    adjust_lr: MuonLrAdjust::MatchRmsAdamw,
                    ..MuonConfig::default()
                },
            )?;
            Box::new(Combined::new(vec![
                ("muon".to_string(), Box::new(muon)),
                ("adamw".to_string(), Box::new(adamw(r, groups(rest))?)),
            ])?)
        }
        OptimizerKind::Sgd => Box::new(Sgd::new(
            groups(named),
            SgdConfig {
                lr: r.lr,
                momentum: 0.9,
                nesterov: true,
                weight_decay: r.weight_decay,
                ..SgdConfig::default()
            },
        )?),
        OptimizerKind::Lamb => Box::new(Lamb::new(
            groups(named),
            LambConfig {
                lr: r.lr,
                weight_decay: r.weight_decay,
                ..LambConfig::default()
            },
        )?),
    })
}

/// AdamW at the recipe's learning rate and weight decay over `groups`.
fn adamw(r: &Recipe, groups: Vec<ParamGroup>) -> allmlp_autograd::Result<Adam> {
    Adam::adamw(
        groups,
        AdamConfig {
            lr: r.lr,
            weight_decay: r.weight_decay,
            ..AdamConfig::adamw()
        },
    )
}

/// A parameter and its name.
type Named = (String, Var);

/// Splits `named` into the weight matrices Muon takes (every 2-D parameter but the classifier,
/// the model's last 2-D one) and the rest, each in model order.
fn hidden_matrices(named: Vec<Named>) -> (Vec<Named>, Vec<Named>) {
    let classifier = named.iter().rposition(|(_, v)| v.shape().len() == 2);
    let (mut matrices, mut rest) = (Vec::new(), Vec::new());
    for (i, p) in named.into_iter().enumerate() {
        if p.1.shape().len() == 2 && Some(i) != classifier {
            matrices.push(p);
        } else {
            rest.push(p);
        }
    }
    (matrices, rest)
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
            // Rounded up, so the rest splits into at most three stages: two decays, never a
            // third in the last steps when the rest is not a multiple of 3.
            step_size: (total_steps - warmup).div_ceil(3).max(1),
            gamma: 0.1,
        },
    };
    Ok(Schedule::new(r.lr, warmup, decay)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::recipe::{Recipe, ScheduleKind};
    use allmlp_autograd::tensor_core::Tensor;

    fn named(shapes: &[(&str, &[usize])]) -> Vec<(String, Var)> {
        shapes
            .iter()
            .map(|(n, s)| (n.to_string(), Var::parameter(Tensor::zeros(s).unwrap())))
            .collect()
    }

    /// `--schedule step`: ×0.1 after each third of the steps after the warm-up, so the last
    /// step runs at 1% of the base rate whatever the step count (101 steps with 25 of warm-up
    /// used to decay a third time in the last step).
    #[test]
    fn step_decay_decays_exactly_twice() {
        let mut r = Recipe::default_for("mixer_tiny", "fashion-mnist");
        r.schedule = ScheduleKind::Step;
        for total in [3u64, 4, 10, 100, 101, 102, 103, 938] {
            let s = build_schedule(&r, total).unwrap();
            let warmup = r.warmup(total);
            let lrs: Vec<f64> = (warmup..total).map(|t| s.lr_at(t)).collect();
            let ratio = lrs[lrs.len() - 1] / r.lr;
            assert!((ratio - 0.01).abs() < 1e-12, "{total}: last/base {ratio}");
            let decays = lrs.windows(2).filter(|w| w[1] < w[0]).count();
            assert_eq!(decays, 2, "{total} steps");
            // Each of the three stages holds a third of the rest, up to rounding.
            let first = lrs
                .iter()
                .filter(|&&l| (l / r.lr - 1.0).abs() < 1e-12)
                .count() as u64;
            assert_eq!(first, (total - warmup).div_ceil(3), "{total} steps");
        }
    }

    #[test]
    fn muon_takes_the_block_matrices_and_leaves_the_classifier() {
        let ps = named(&[
            ("stem.proj.weight", &[8, 1, 4, 4]),
            ("stem.proj.bias", &[8]),
            ("blocks.0.fc1.weight", &[16, 8]),
            ("blocks.0.fc1.bias", &[16]),
            ("blocks.0.fc2.weight", &[8, 16]),
            ("head.weight", &[10, 8]),
            ("head.bias", &[10]),
        ]);
        let (m, rest) = hidden_matrices(ps);
        let names = |v: &[(String, Var)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&m), ["blocks.0.fc1.weight", "blocks.0.fc2.weight"]);
        assert_eq!(
            names(&rest),
            [
                "stem.proj.weight",
                "stem.proj.bias",
                "blocks.0.fc1.bias",
                "head.weight",
                "head.bias"
            ]
        );
    }

    #[test]
    fn muon_without_block_matrices_is_refused() {
        let r = Recipe {
            optimizer: OptimizerKind::Muon,
            ..Recipe::default_for("convnet", "fashion-mnist")
        };
        let ps = named(&[("conv.weight", &[8, 1, 3, 3]), ("head.weight", &[10, 8])]);
        let e = build_optimizer(&r, ps, &[]).err().unwrap().0;
        assert!(
            e.contains("--optimizer muon: convnet has no 2-D weight matrix"),
            "{e}"
        );
    }
}
