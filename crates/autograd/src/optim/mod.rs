//! Optimizers, gradient clipping and learning-rate schedules.
//!
//! - [`Sgd`] (momentum, dampening, Nesterov, weight decay), [`Adam`] and AdamW
//!   ([`Adam::adamw`] / [`AdamConfig::adamw`]) match `torch.optim`; [`Lamb`] matches timm's
//!   `timm.optim.Lamb` with its defaults ([`LambConfig::resmlp`] is the ResMLP/DeiT recipe);
//!   [`Muon`] matches `torch.optim.Muon` (with its Newton–Schulz iteration in f32) for 2-D
//!   weight matrices, and [`Combined`] steps it together with AdamW for the other parameters.
//!   Each reproduces the reference's formula order and f32 rounding (scalars such as bias
//!   corrections are computed in f64, as Python does), so results agree with torch/timm to ~1e-7
//!   relative (tests/optim_parity.rs, against fixtures from `tools/fixtures/optim.py`).
//! - Parameters come in [`ParamGroup`]s of named [`Var`](crate::Var)s, each group with its own
//!   learning-rate scale and optional weight decay. [`param_groups_weight_decay`] builds timm's
//!   split: no decay for parameters with ≤ 1 dimension, names ending in `.bias`, or names
//!   matching a no-weight-decay pattern.
//! - All implement [`Optimizer`]: `step` updates every parameter that has a gradient (one pass
//!   over its elements; parameters without a gradient are skipped, as in torch), `zero_grad`,
//!   `lr`/`set_lr`, and `state`/`load_state` to save and restore moments and step counts
//!   exactly ([`OptimizerState`]).
//! - [`clip_grad_norm`] is `torch.nn.utils.clip_grad_norm_`; [`Schedule`] gives per-step
//!   learning rates (linear warm-up, then cosine, linear or step decay).
//!
//! Errors are [`AutogradError::InvalidArgument`](crate::AutogradError::InvalidArgument) naming
//! the optimizer: out-of-range hyper-parameters at construction, duplicate parameter names, a
//! gradient whose shape differs from its parameter's, and a state with a missing, unexpected or
//! wrongly shaped key. NaN gradients are not checked (the trainer does).
//!
//! ```
//! use allmlp_autograd::Var;
//! use allmlp_autograd::optim::{
//!     Lamb, LambConfig, Optimizer, Schedule, clip_grad_norm, param_groups_weight_decay,
//! };
//! use allmlp_autograd::tensor_core::Tensor;
//!
//! let w = Var::parameter(Tensor::from_vec(vec![1.0, -2.0, 0.5, 3.0], &[2, 2])?);
//! let b = Var::parameter(Tensor::zeros(&[2])?);
//! let named = vec![("fc.weight".to_string(), w.clone()), ("fc.bias".to_string(), b.clone())];
//! // fc.bias (1-d) gets no weight decay, fc.weight gets 0.2.
//! let groups = param_groups_weight_decay(named, 0.2, &["*.alpha"]);
//! let mut opt = Lamb::new(groups, LambConfig::resmlp())?;
//! let schedule = Schedule::warmup_cosine(5e-3, 2, 10, 1e-5)?.with_warmup_start(1e-6)?;
//!
//! for step in 0..10 {
//!     opt.set_lr(schedule.lr_at(step))?;
//!     opt.zero_grad();
//!     // Stand-in for `loss.backward()`: d(Σ w²)/dw = 2w, and a constant bias gradient.
//!     w.set_grad(Some(w.value().mul_scalar(2.0)));
//!     b.set_grad(Some(Tensor::ones(&[2])?));
//!     let _norm = clip_grad_norm([&w, &b], 1.0)?;
//!     opt.step()?;
//! }
//! // Save, restore into a fresh optimizer, continue exactly.
//! let saved = opt.state();
//! let named = vec![("fc.weight".to_string(), w.clone()), ("fc.bias".to_string(), b.clone())];
//! let mut resumed = Lamb::new(param_groups_weight_decay(named, 0.2, &[]), LambConfig::resmlp())?;
//! resumed.load_state(&saved)?;
//! assert_eq!(resumed.lr(), opt.lr());
//! // The loss Σw² went down, and the bias moved against its gradient.
//! assert!(w.value().powf(2.0).sum_all() < 14.25);
//! assert!(b.value().to_vec().iter().all(|&x| x < 0.0));
//! # Ok::<(), allmlp_autograd::AutogradError>(())
//! ```

/// The [`Optimizer`] methods an optimizer forwards to its `core` field (`state::Core`):
/// `zero_grad`, `lr`, `set_lr` (errors named `$set_lr`) and `param_groups`; with a second
/// argument also `state` and `load_state` (errors named `$load`) for optimizers without
/// state beyond the per-parameter buffers and steps.
macro_rules! delegate_to_core {
    ($set_lr:literal) => {
        fn zero_grad(&self) {
            self.core.zero_grad();
        }

        fn lr(&self) -> f64 {
            self.core.lr
        }

        fn set_lr(&mut self, lr: f64) -> $crate::Result<()> {
            self.core.set_lr($set_lr, lr)
        }

        fn param_groups(&self) -> &[$crate::optim::ParamGroup] {
            &self.core.groups
        }
    };
    ($set_lr:literal, $load:literal) => {
        delegate_to_core!($set_lr);

        fn state(&self) -> $crate::optim::OptimizerState {
            self.core.save(Vec::new())
        }

        fn load_state(&mut self, state: &$crate::optim::OptimizerState) -> $crate::Result<()> {
            self.core.load($load, state, &[]).map(|_| ())
        }
    };
}

mod adam;
mod clip;
mod combined;
mod lamb;
mod muon;
mod param_group;
mod schedule;
mod sgd;
mod state;

pub use adam::{Adam, AdamConfig};
pub use clip::clip_grad_norm;
pub use combined::Combined;
pub use lamb::{Lamb, LambConfig};
pub use muon::{Muon, MuonConfig, MuonLrAdjust, orthogonalize};
pub use param_group::{ParamGroup, glob_match, param_groups_weight_decay};
pub use schedule::{Decay, Schedule};
pub use sgd::{Sgd, SgdConfig};
pub use state::OptimizerState;

use crate::Result;

/// What every optimizer does.
pub trait Optimizer {
    /// Updates every parameter that has a gradient from its gradient and the optimizer state.
    fn step(&mut self) -> Result<()>;

    /// Clears the gradients of all parameters (torch's `zero_grad(set_to_none=True)`).
    fn zero_grad(&self);

    /// The learning rate (each group uses it times its `lr_scale`).
    fn lr(&self) -> f64;

    /// Sets the learning rate (from a [`Schedule`]); errors on a negative or non-finite value.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// The parameter groups, as given at construction.
    fn param_groups(&self) -> &[ParamGroup];

    /// The state needed to resume training exactly (learning rate, moments, step counts).
    fn state(&self) -> OptimizerState;

    /// Restores a state saved by [`Optimizer::state`] from an optimizer of the same kind over
    /// parameters with the same names and shapes. Nothing changes when it returns an error.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
}
