//! [`OptimizerState`] (what an optimizer saves to resume training) and the bookkeeping every
//! optimizer shares: its parameter groups, per-parameter buffers and step counts, checks.

use std::collections::{HashMap, HashSet};

use allmlp_tensor_core::Tensor;

use super::ParamGroup;
use crate::{AutogradError, Result, Var};

/// An optimizer's saved state: named tensors (moments, momentum buffers) and named scalars
/// (learning rate, step counts).
///
/// Keys follow torch's state names, prefixed with the parameter's name:
/// `"{param}.exp_avg"`, `"{param}.exp_avg_sq"`, `"{param}.momentum_buffer"`, `"{param}.step"`
/// (the number of updates that parameter received), plus `"lr"` and, for LAMB, the per-group
/// step `"group.{i}.step"`. A parameter that has not been updated yet has a step of 0 and no
/// tensors. Loading restores everything bit for bit, so `k` steps, save, load into a fresh
/// optimizer, `n − k` steps gives the same parameters as `n` steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// Named state tensors.
    pub tensors: Vec<(String, Tensor)>,
    /// Named scalars (step counts are exact integers in f64).
    pub scalars: Vec<(String, f64)>,
}

impl OptimizerState {
    /// The tensor saved under `key`.
    pub fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// The scalar saved under `key`.
    pub fn scalar(&self, key: &str) -> Option<f64> {
        self.scalars.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Per-parameter state: how many updates it received and its buffers (empty until the first).
#[derive(Clone, Debug, Default)]
pub(crate) struct ParamState {
    pub step: u64,
    pub bufs: Vec<Vec<f32>>,
}

/// Groups, learning rate and per-parameter state shared by all optimizers.
pub(crate) struct Core {
    /// Name of the optimizer ("SGD", "Adam", …) for error messages.
    pub name: &'static str,
    pub groups: Vec<ParamGroup>,
    /// `states[g][i]` belongs to `groups[g].params[i]`.
    pub states: Vec<Vec<ParamState>>,
    pub lr: f64,
    /// Names of the buffers each updated parameter holds, in `ParamState::bufs` order.
    pub buffers: &'static [&'static str],
}

pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> AutogradError {
    AutogradError::InvalidArgument {
        op,
        msg: msg.into(),
    }
}

/// Checks `lo <= v` (and `v < hi` when `hi` is given), rejecting NaN and infinities.
pub(crate) fn check_range(
    op: &'static str,
    what: &str,
    v: f64,
    lo: f64,
    hi: Option<f64>,
) -> Result<()> {
    let ok = v.is_finite() && v >= lo && hi.is_none_or(|h| v < h);
    if ok {
        Ok(())
    } else {
        let range = match hi {
            Some(h) => format!("in [{lo}, {h})"),
            None => format!(">= {lo} and finite"),
        };
        Err(invalid(op, format!("{what} must be {range}, got {v}")))
    }
}

/// Checks every gradient's shape in `groups` before a step changes anything, so a bad one
/// leaves all parameters and state as they were.
pub(crate) fn check_grads(op: &'static str, groups: &[ParamGroup]) -> Result<()> {
    for (pname, var) in groups.iter().flat_map(|g| &g.params) {
        if let Some(g) = var.grad() {
            let shape = var.shape();
            if g.shape() != shape.as_slice() {
                return Err(invalid(
                    op,
                    format!(
                        "gradient of `{pname}` has shape {:?}, the parameter has {shape:?}",
                        g.shape()
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Core {
    pub fn new(
        name: &'static str,
        op: &'static str,
        groups: Vec<ParamGroup>,
        lr: f64,
        buffers: &'static [&'static str],
    ) -> Result<Core> {
        check_range(op, "learning rate", lr, 0.0, None)?;
        let mut seen = HashSet::new();
        let mut nodes = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            check_range(
                op,
                &format!("group {g} lr_scale"),
                group.lr_scale,
                0.0,
                None,
            )?;
            if let Some(wd) = group.weight_decay {
                check_range(op, &format!("group {g} weight_decay"), wd, 0.0, None)?;
            }
            for (pname, var) in &group.params {
                if !seen.insert(pname.as_str()) {
                    return Err(invalid(
                        op,
                        format!("parameter name `{pname}` appears more than once"),
                    ));
                }
                check_distinct(op, &mut nodes, pname, var)?;
            }
        }
        let states = groups
            .iter()
            .map(|g| vec![ParamState::default(); g.params.len()])
            .collect();
        Ok(Core {
            name,
            groups,
            states,
            lr,
            buffers,
        })
    }

    pub fn set_lr(&mut self, op: &'static str, lr: f64) -> Result<()> {
        check_range(op, "learning rate", lr, 0.0, None)?;
        self.lr = lr;
        Ok(())
    }

    /// Checks every gradient's shape before a step changes anything ([`check_grads`]).
    pub fn check_grads(&self, op: &'static str) -> Result<()> {
        check_grads(op, &self.groups)
    }

    pub fn zero_grad(&self) {
        for g in &self.groups {
            for (_, v) in &g.params {
                v.zero_grad();
            }
        }
    }

    /// The state: `lr`, then per parameter its step and (if updated) buffers, then `extra`.
    pub fn save(&self, extra: Vec<(String, f64)>) -> OptimizerState {
        let mut out = OptimizerState::default();
        out.scalars.push(("lr".to_string(), self.lr));
        for (group, states) in self.groups.iter().zip(&self.states) {
            for ((pname, var), st) in group.params.iter().zip(states) {
                out.scalars.push((format!("{pname}.step"), st.step as f64));
                let shape = var.shape();
                for (bname, buf) in self.buffers.iter().zip(&st.bufs) {
                    let t = Tensor::from_vec(buf.clone(), &shape)
                        .expect("buffers have the parameter's shape");
                    out.tensors.push((format!("{pname}.{bname}"), t));
                }
            }
        }
        out.scalars.extend(extra);
        out
    }

    /// Loads `state` (checked completely before anything changes) and returns the values of the
    /// `extra` step-count keys (non-negative integers), in order.
    pub fn load(
        &mut self,
        op: &'static str,
        state: &OptimizerState,
        extra_steps: &[String],
    ) -> Result<Vec<u64>> {
        let scalars: HashMap<&str, f64> = state
            .scalars
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        let tensors: HashMap<&str, &Tensor> =
            state.tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        if scalars.len() != state.scalars.len() || tensors.len() != state.tensors.len() {
            return Err(invalid(op, "the state has duplicate keys"));
        }
        let mut used_s: HashSet<String> = HashSet::new();
        let mut used_t: HashSet<String> = HashSet::new();
        let scalar = |key: &str, used: &mut HashSet<String>| -> Result<f64> {
            let v = scalars
                .get(key)
                .ok_or_else(|| invalid(op, format!("missing scalar `{key}` in the state")))?;
            used.insert(key.to_string());
            Ok(*v)
        };
        let step_of = |key: &str, v: f64| -> Result<u64> {
            if v >= 0.0 && v.fract() == 0.0 && v <= 2f64.powi(53) {
                Ok(v as u64)
            } else {
                Err(invalid(
                    op,
                    format!("`{key}` must be a non-negative integer, got {v}"),
                ))
            }
        };
        let lr = scalar("lr", &mut used_s)?;
        check_range(op, "saved learning rate `lr`", lr, 0.0, None)?;
        let mut new_states = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let mut gs = Vec::with_capacity(group.params.len());
            for (pname, var) in &group.params {
                let key = format!("{pname}.step");
                let step = step_of(&key, scalar(&key, &mut used_s)?)?;
                let shape = var.shape();
                let mut bufs = Vec::new();
                if step > 0 {
                    for bname in self.buffers {
                        let key = format!("{pname}.{bname}");
                        let t = tensors.get(key.as_str()).ok_or_else(|| {
                            invalid(
                                op,
                                format!(
                                    "missing tensor `{key}` in the state (parameter `{pname}` has \
                                     step {step}, shape {shape:?})"
                                ),
                            )
                        })?;
                        if t.shape() != shape.as_slice() {
                            return Err(invalid(
                                op,
                                format!(
                                    "`{key}` has shape {:?}, parameter `{pname}` has shape {shape:?}",
                                    t.shape()
                                ),
                            ));
                        }
                        used_t.insert(key.clone());
                        bufs.push(t.to_vec());
                    }
                } else if let Some(key) = self
                    .buffers
                    .iter()
                    .map(|b| format!("{pname}.{b}"))
                    .find(|k| tensors.contains_key(k.as_str()))
                {
                    return Err(invalid(
                        op,
                        format!(
                            "`{pname}.step` is 0 but the state holds `{key}`: a parameter that \
                             has not been stepped has no buffers (a corrupt or hand-edited state)"
                        ),
                    ));
                }
                gs.push(ParamState { step, bufs });
            }
            new_states.push(gs);
        }
        let mut extra_vals = Vec::with_capacity(extra_steps.len());
        for key in extra_steps {
            let v = scalar(key, &mut used_s)?;
            extra_vals.push(step_of(key, v)?);
        }
        let unexpected = state
            .scalars
            .iter()
            .map(|(k, _)| k)
            .chain(state.tensors.iter().map(|(k, _)| k))
            .find(|k| !used_s.contains(k.as_str()) && !used_t.contains(k.as_str()));
        if let Some(k) = unexpected {
            return Err(invalid(
                op,
                format!(
                    "unexpected key `{k}` in the state (no such parameter or buffer in this {})",
                    self.name
                ),
            ));
        }
        self.lr = lr;
        self.states = new_states;
        Ok(extra_vals)
    }
}

/// Records `var` under `name` in `nodes` (node id → first name); an error when the same
/// parameter was already recorded under another name, which would update it twice per step
/// (torch: "some parameters appear in more than one parameter group").
pub(crate) fn check_distinct<'a>(
    op: &'static str,
    nodes: &mut HashMap<u64, &'a str>,
    name: &'a str,
    var: &Var,
) -> Result<()> {
    match nodes.insert(var.node_id(), name) {
        Some(first) => Err(invalid(
            op,
            format!(
                "`{name}` and `{first}` are the same parameter (one tensor under two names); \
                 it would be updated twice per step"
            ),
        )),
        None => Ok(()),
    }
}

/// One parameter's update inputs: its value as a row-major `Vec`, its gradient (contiguous).
pub(crate) struct Update {
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Tensor,
}

impl Update {
    /// The parameter's value and gradient, or `None` when it has no gradient (torch skips it).
    /// The step checked every gradient's shape first ([`check_grads`]).
    pub fn take(var: &Var) -> Option<Update> {
        let grad = var.grad()?;
        let value = var.value();
        Some(Update {
            shape: value.shape().to_vec(),
            value: value.into_vec(),
            grad: grad.contiguous(),
        })
    }

    /// Writes the new value back into `var`.
    pub fn store(self, var: &Var) -> Result<()> {
        var.set_value(Tensor::from_vec(self.value, &self.shape)?)
    }
}

/// `torch.lerp(a, b, w)` for a scalar weight, in torch's two-branch form.
#[inline]
pub(crate) fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

/// The 2-norm of `xs`, accumulated in f64 and rounded to f32. That is torch's f32 norm to the
/// ulp for ordinary magnitudes; where torch's f32 sum of squares overflows (elements beyond
/// ≈ 1.8e19) or underflows (below ≈ 1e-23) this one stays finite and nonzero.
pub(crate) fn norm2(xs: &[f32]) -> f32 {
    xs.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32
}
