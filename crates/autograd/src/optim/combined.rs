//! [`Combined`]: several optimizers over disjoint parameters, stepped as one (what torch users
//! write as two optimizers stepped one after the other, e.g. Muon for the hidden matrices and
//! AdamW for the rest).

use std::collections::{HashMap, HashSet};

use super::state::{check_distinct, check_grads, invalid};
use super::{Optimizer, OptimizerState, ParamGroup};
use crate::Result;

/// Named optimizers over disjoint parameters, behaving as one [`Optimizer`].
///
/// `step` checks every gradient's shape first, then steps each part in order; `set_lr` sets
/// every part's learning rate (use a group's `lr_scale` for a part that should run at another
/// rate); `lr` is the first part's. The saved state holds each part's keys prefixed with its
/// label and a slash (`"muon/lr"`, `"adamw/head.weight.exp_avg"`, …).
pub struct Combined {
    parts: Vec<(String, Box<dyn Optimizer>)>,
    /// Every part's groups, in order (for [`Optimizer::param_groups`]).
    groups: Vec<ParamGroup>,
}

impl Combined {
    /// Combines `parts` (label, optimizer); errors when there is no part, a label is repeated,
    /// empty or holds a `/`, or a parameter name appears in two parts.
    pub fn new(parts: Vec<(String, Box<dyn Optimizer>)>) -> Result<Combined> {
        const OP: &str = "Combined::new";
        if parts.is_empty() {
            return Err(invalid(OP, "no optimizer to combine"));
        }
        let mut labels = HashSet::new();
        // Parameter name → label of the part that holds it.
        let mut owner: HashMap<&str, &str> = HashMap::new();
        let mut nodes = HashMap::new();
        for (label, opt) in &parts {
            if label.is_empty() || label.contains('/') || !labels.insert(label.as_str()) {
                return Err(invalid(
                    OP,
                    format!("label `{label}` must be non-empty, unique and without `/`"),
                ));
            }
            for (name, var) in opt.param_groups().iter().flat_map(|g| &g.params) {
                if let Some(other) = owner.insert(name, label) {
                    return Err(invalid(
                        OP,
                        format!("parameter `{name}` is in both `{other}` and `{label}`"),
                    ));
                }
                check_distinct(OP, &mut nodes, name, var)?;
            }
        }
        let groups = parts
            .iter()
            .flat_map(|(_, o)| o.param_groups().iter().cloned())
            .collect();
        Ok(Combined { parts, groups })
    }

    /// The parts, with their labels.
    pub fn parts(&self) -> impl Iterator<Item = (&str, &dyn Optimizer)> {
        self.parts.iter().map(|(l, o)| (l.as_str(), o.as_ref()))
    }
}

impl Optimizer for Combined {
    fn step(&mut self) -> Result<()> {
        // All shapes first, so a bad gradient leaves every part unchanged.
        check_grads("Combined::step", &self.groups)?;
        self.parts.iter_mut().try_for_each(|(_, o)| o.step())
    }

    fn zero_grad(&self) {
        self.parts.iter().for_each(|(_, o)| o.zero_grad());
    }

    fn lr(&self) -> f64 {
        self.parts[0].1.lr()
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        // Every part checks the same value, so the first refusal happens before any change.
        self.parts.iter_mut().try_for_each(|(_, o)| o.set_lr(lr))
    }

    fn param_groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn state(&self) -> OptimizerState {
        let mut out = OptimizerState::default();
        for (label, opt) in &self.parts {
            let s = opt.state();
            let key = |k: String| format!("{label}/{k}");
            out.tensors
                .extend(s.tensors.into_iter().map(|(k, t)| (key(k), t)));
            out.scalars
                .extend(s.scalars.into_iter().map(|(k, v)| (key(k), v)));
        }
        out
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        const OP: &str = "Combined::load_state";
        let part_of = |k: &str| -> Result<usize> {
            k.split_once('/')
                .and_then(|(l, _)| self.parts.iter().position(|(label, _)| label == l))
                .ok_or_else(|| {
                    let prefixes: Vec<String> =
                        self.parts.iter().map(|(l, _)| format!("{l}/")).collect();
                    invalid(
                        OP,
                        format!(
                            "unexpected key `{k}` in the state (keys start with one of: {})",
                            prefixes.join(", ")
                        ),
                    )
                })
        };
        let mut split = vec![OptimizerState::default(); self.parts.len()];
        for (k, t) in &state.tensors {
            let i = part_of(k)?;
            let rest = k[self.parts[i].0.len() + 1..].to_string();
            split[i].tensors.push((rest, t.clone()));
        }
        for (k, v) in &state.scalars {
            let i = part_of(k)?;
            let rest = k[self.parts[i].0.len() + 1..].to_string();
            split[i].scalars.push((rest, *v));
        }
        // Load part by part; if one refuses, put back the parts already loaded.
        let before: Vec<OptimizerState> = self.parts.iter().map(|(_, o)| o.state()).collect();
        for (i, s) in split.iter().enumerate() {
            if let Err(e) = self.parts[i].1.load_state(s) {
                for (j, old) in before.iter().enumerate().take(i) {
                    self.parts[j]
                        .1
                        .load_state(old)
                        .expect("a state the part saved itself loads");
                }
                let label = &self.parts[i].0;
                return Err(invalid(OP, format!("part `{label}`: {e}")));
            }
        }
        Ok(())
    }
}
