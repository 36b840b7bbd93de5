//! The [`Module`] trait, the forward context ([`Ctx`]), buffers and the
//! visitor that gives every parameter and buffer its PyTorch `state_dict` name.

use std::sync::{Mutex, MutexGuard};

use allmlp_autograd::tensor_core::{Rng, Tensor, threads};
use allmlp_autograd::{Result, Var, no_grad};

/// How a forward pass runs: training (batch statistics, dropout, a tape) or
/// evaluation (running statistics, no dropout).
///
/// `Ctx::train(seed)` and `Ctx::eval()` play the role of PyTorch's
/// `model.train()` / `model.eval()`, without hidden state in the modules: the
/// same model can serve evaluation on one thread while another trains a copy.
#[derive(Debug)]
pub struct Ctx {
    training: bool,
    rng: Mutex<Rng>,
}

impl Ctx {
    /// Training mode; dropout and drop-path masks come from `seed`, drawn in
    /// forward order, so a step is reproducible for any thread count.
    pub fn train(seed: u64) -> Ctx {
        Ctx {
            training: true,
            rng: Mutex::new(Rng::new(seed)),
        }
    }

    /// Evaluation mode.
    pub fn eval() -> Ctx {
        Ctx {
            training: false,
            rng: Mutex::new(Rng::new(0)),
        }
    }

    /// True in training mode.
    pub fn training(&self) -> bool {
        self.training
    }

    /// The random stream for masks.
    pub fn rng(&self) -> MutexGuard<'_, Rng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A non-trainable tensor saved in the state dict (BatchNorm's running
/// statistics, `num_batches_tracked`). Updated in place during training.
#[derive(Debug)]
pub struct Buffer(Mutex<Tensor>);

impl Buffer {
    /// A buffer holding `t`.
    pub fn new(t: Tensor) -> Buffer {
        Buffer(Mutex::new(t))
    }

    /// The current value (an O(1) clone).
    pub fn get(&self) -> Tensor {
        self.lock().clone()
    }

    /// Locks the value for an in-place update.
    pub fn lock(&self) -> MutexGuard<'_, Tensor> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the value.
    pub fn set(&self, t: Tensor) {
        *self.lock() = t;
    }
}

/// Receives each parameter and buffer with its full dotted name.
pub trait Visitor {
    /// A trainable parameter.
    fn param(&mut self, name: &str, p: &Var);
    /// A buffer.
    fn buffer(&mut self, name: &str, b: &Buffer);
}

/// `prefix.name`, or `name` at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// `shape[i]`, or 0 when the shape has no dimension `i`: what a layer's size
/// accessors report for a malformed parameter a caller put in its public fields,
/// which the forward then refuses with a shape error instead of a panic.
pub(crate) fn dim_or_zero(shape: &[usize], i: usize) -> usize {
    shape.get(i).copied().unwrap_or(0)
}

/// A layer or a composition of layers.
pub trait Module: Send + Sync {
    /// The forward pass in the mode `ctx` says.
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var>;

    /// Calls `v` for every parameter and buffer, names prefixed by `prefix`
    /// exactly as PyTorch's `state_dict()` names them.
    fn visit(&self, prefix: &str, v: &mut dyn Visitor);
}

/// A boxed module is a module (so `Vec<Box<dyn Module>>` works with [`visit_list`](crate::visit_list)).
impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        (**self).forward(x, ctx)
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        (**self).visit(prefix, v)
    }
}

/// Evaluation-mode forward on a plain tensor, with no tape.
///
/// The whole forward runs inside the kernel pool ([`threads::install`]), so
/// each parallel kernel starts on a pool thread rather than waking the pool
/// from outside and sleeping until it is done: at batch 1, where a forward is
/// hundreds of short parallel regions, that hand-off was about a tenth of the
/// latency (`docs/perf.md`). Grad mode is switched off on the thread that
/// runs the forward; the caller's own mode is untouched.
pub fn infer(m: &dyn Module, x: &Tensor) -> Result<Tensor> {
    threads::install(|| {
        no_grad(|| {
            m.forward(&Var::constant(x.clone()), &Ctx::eval())
                .map(|y| y.value())
        })
    })
}

struct Collect<'a> {
    params: Option<&'a mut Vec<(String, Var)>>,
    buffers: Option<&'a mut Vec<(String, Tensor)>>,
}

impl Visitor for Collect<'_> {
    fn param(&mut self, name: &str, p: &Var) {
        if let Some(v) = self.params.as_mut() {
            v.push((name.to_string(), p.clone()));
        }
    }
    fn buffer(&mut self, name: &str, b: &Buffer) {
        if let Some(v) = self.buffers.as_mut() {
            v.push((name.to_string(), b.get()));
        }
    }
}

/// Every parameter with its name, in registration order.
pub fn named_parameters(m: &dyn Module) -> Vec<(String, Var)> {
    let mut params = Vec::new();
    m.visit(
        "",
        &mut Collect {
            params: Some(&mut params),
            buffers: None,
        },
    );
    params
}

/// Every buffer's current value with its name.
pub fn named_buffers(m: &dyn Module) -> Vec<(String, Tensor)> {
    let mut buffers = Vec::new();
    m.visit(
        "",
        &mut Collect {
            params: None,
            buffers: Some(&mut buffers),
        },
    );
    buffers
}

/// Number of trainable scalars.
pub fn num_parameters(m: &dyn Module) -> usize {
    named_parameters(m)
        .iter()
        .map(|(_, p)| p.value().numel())
        .sum()
}

/// Clears every parameter's gradient.
pub fn zero_grad(m: &dyn Module) {
    named_parameters(m).iter().for_each(|(_, p)| p.zero_grad());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Linear;
    use allmlp_autograd::is_grad_enabled;

    /// Records the grad mode its forward saw and where it ran.
    struct Probe {
        saw: Mutex<Option<(bool, Option<usize>)>>,
    }

    impl Module for Probe {
        fn forward(&self, x: &Var, _ctx: &Ctx) -> Result<Var> {
            let where_ = threads::pool().current_thread_index();
            *self.saw.lock().unwrap() = Some((is_grad_enabled(), where_));
            Ok(x.clone())
        }
        fn visit(&self, _prefix: &str, _v: &mut dyn Visitor) {}
    }

    #[test]
    fn infer_runs_on_a_pool_thread_without_a_tape_and_leaves_the_callers_mode() {
        let probe = Probe {
            saw: Mutex::new(None),
        };
        let x = Tensor::from_vec(vec![1.0, 2.0], &[1, 2]).unwrap();
        assert!(is_grad_enabled());
        let y = infer(&probe, &x).unwrap();
        assert_eq!(y.to_vec(), x.to_vec());
        let (grad, thread) = probe.saw.lock().unwrap().take().unwrap();
        assert!(!grad, "the forward must run with recording off");
        assert!(thread.is_some(), "the forward must run on a pool thread");
        assert!(is_grad_enabled(), "the caller's grad mode must be restored");
    }

    #[test]
    fn infer_gives_the_same_bits_from_outside_and_inside_the_pool() {
        let lin = Linear::new(37, 19, true, 5).unwrap();
        let x = Tensor::randn(&[3, 37], 0.0, 1.0, 8).unwrap();
        let reference = no_grad(|| lin.forward(&Var::constant(x.clone()), &Ctx::eval()))
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(infer(&lin, &x).unwrap().to_vec(), reference);
        let nested = threads::install(|| infer(&lin, &x)).unwrap();
        assert_eq!(nested.to_vec(), reference);
    }
}
