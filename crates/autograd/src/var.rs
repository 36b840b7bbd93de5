//! [`Var`]: a tensor that remembers how it was made, and `backward`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use allmlp_tensor_core::Tensor;

use crate::{AutogradError, Function, LeafGrads, Result, grad_mode};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A node of the graph: a value, its gradient, and the op that made it.
///
/// Cloning a `Var` is O(1) and shares the node. Creation ids increase, and an
/// op's output is always created after its inputs, so sorting by id gives a
/// topological order without a separate pass.
#[derive(Clone)]
pub struct Var(Arc<Node>);

struct Node {
    id: u64,
    value: RwLock<Tensor>,
    grad: Mutex<Option<Tensor>>,
    requires_grad: bool,
    /// Name of the op that made this node; `None` for leaves.
    op_name: Option<&'static str>,
    /// The op's saved state and inputs; taken (and dropped) by backward.
    creator: Mutex<Option<Creator>>,
}

struct Creator {
    function: Box<dyn Function>,
    inputs: Vec<Var>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Var {
    fn make(
        value: Tensor,
        requires_grad: bool,
        op_name: Option<&'static str>,
        creator: Option<Creator>,
    ) -> Var {
        Var(Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            value: RwLock::new(value),
            grad: Mutex::new(None),
            requires_grad,
            op_name,
            creator: Mutex::new(creator),
        }))
    }

    /// A constant: no gradient flows into it.
    pub fn constant(value: Tensor) -> Var {
        Var::make(value, false, None, None)
    }

    /// A trainable leaf: backward accumulates its gradient.
    pub fn parameter(value: Tensor) -> Var {
        Var::make(value, true, None, None)
    }

    /// The output of an op. Records `function` and `inputs` when gradients are
    /// enabled and some input requires them; otherwise returns a constant.
    pub fn from_op(value: Tensor, inputs: &[&Var], function: impl Function + 'static) -> Var {
        if grad_mode::is_grad_enabled() && inputs.iter().any(|v| v.requires_grad()) {
            let name = function.name();
            let creator = Creator {
                function: Box::new(function),
                inputs: inputs.iter().map(|&v| v.clone()).collect(),
            };
            Var::make(value, true, Some(name), Some(creator))
        } else {
            Var::constant(value)
        }
    }

    /// True when this op output or leaf takes part in differentiation.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// True for parameters and constants (not made by an op).
    pub fn is_leaf(&self) -> bool {
        self.0.op_name.is_none()
    }

    /// The node's creation id: equal for two handles exactly when they share one node (clones
    /// of one parameter), distinct for every other variable.
    pub(crate) fn node_id(&self) -> u64 {
        self.0.id
    }

    /// The value (an O(1) clone of the tensor).
    pub fn value(&self) -> Tensor {
        self.0
            .value
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.0
            .value
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .shape()
            .to_vec()
    }

    /// Replaces the value of a leaf (optimizers, loading weights). The shape must not change.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        let mut v = self.0.value.write().unwrap_or_else(|e| e.into_inner());
        if v.shape() != value.shape() {
            return Err(AutogradError::InvalidArgument {
                op: "set_value",
                msg: format!(
                    "new value has shape {:?}, the variable has {:?}",
                    value.shape(),
                    v.shape()
                ),
            });
        }
        *v = value;
        Ok(())
    }

    /// The accumulated gradient, if backward has reached this leaf.
    pub fn grad(&self) -> Option<Tensor> {
        lock(&self.0.grad).clone()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *lock(&self.0.grad) = None;
    }

    /// Sets the gradient (optimizer tests, gradient clipping).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *lock(&self.0.grad) = grad;
    }

    /// The same value cut off from the graph.
    pub fn detach(&self) -> Var {
        Var::constant(self.value())
    }

    /// Back-propagates from a one-element output (a loss).
    pub fn backward(&self) -> Result<()> {
        let shape = self.shape();
        if shape.iter().product::<usize>() != 1 {
            return Err(AutogradError::NotScalar { shape });
        }
        self.backward_with(Tensor::ones(&shape)?)
    }

    /// Back-propagates `grad` (the gradient of some scalar with respect to this value).
    ///
    /// Gradients accumulate into every leaf that requires them. Each op's saved
    /// state is dropped as soon as its backward has run, so a graph can be
    /// differentiated once; a second call returns [`AutogradError::GraphFreed`].
    pub fn backward_with(&self, grad: Tensor) -> Result<()> {
        self.propagate(grad, &mut |leaf, g| leaf.accumulate(g))
    }

    /// [`Var::backward_with`] that returns the leaves' gradients instead of
    /// adding them to the leaves: to combine several backward passes in an
    /// order of one's choosing (the parts of a batch that ran side by side),
    /// then [`LeafGrads::accumulate`] them.
    ///
    /// ```
    /// use allmlp_autograd::Var;
    /// use allmlp_autograd::tensor_core::Tensor;
    /// let w = Var::parameter(Tensor::from_vec(vec![2.0], &[1])?);
    /// let y = w.mul(&w)?.sum(&[0], false)?; // w², two uses of w
    /// let grads = y.backward_collect(Tensor::scalar(1.0))?;
    /// assert_eq!(grads.get(&w).unwrap().to_vec(), [4.0]);
    /// assert!(w.grad().is_none()); // not added yet
    /// grads.accumulate()?;
    /// assert_eq!(w.grad().unwrap().to_vec(), [4.0]);
    /// # Ok::<(), allmlp_autograd::AutogradError>(())
    /// ```
    pub fn backward_collect(&self, grad: Tensor) -> Result<LeafGrads> {
        let mut grads = LeafGrads::default();
        self.propagate(grad, &mut |leaf, g| grads.add_one(leaf, g))?;
        Ok(grads)
    }

    /// Back-propagates `grad`, handing each leaf's gradient to `leaf` (once per
    /// use of the leaf, in the order backward reaches them).
    fn propagate(
        &self,
        grad: Tensor,
        leaf: &mut dyn FnMut(&Var, Tensor) -> Result<()>,
    ) -> Result<()> {
        if !self.requires_grad() {
            return Err(AutogradError::NoGradient);
        }
        let shape = self.shape();
        if grad.shape() != shape.as_slice() {
            return Err(AutogradError::BadGradient {
                op: "backward_with",
                expected: format!("a gradient of shape {shape:?}"),
                got: format!("shape {:?}", grad.shape()),
            });
        }
        let order = self.graph_nodes()?;
        let mut pending: HashMap<u64, Tensor> = HashMap::new();
        if self.is_leaf() {
            return leaf(self, grad);
        }
        pending.insert(self.0.id, grad);
        for node in order {
            let Some(grad) = pending.remove(&node.0.id) else {
                continue;
            };
            let creator = lock(&node.0.creator).take();
            let Some(Creator { function, inputs }) = creator else {
                return Err(AutogradError::GraphFreed {
                    op: node.0.op_name.unwrap_or("?"),
                });
            };
            let needs: Vec<bool> = inputs.iter().map(Var::requires_grad).collect();
            let grads = function.backward(&grad, &needs)?;
            drop(grad);
            if grads.len() != inputs.len() {
                return Err(AutogradError::BadGradient {
                    op: function.name(),
                    expected: format!("{} gradients", inputs.len()),
                    got: format!("{}", grads.len()),
                });
            }
            drop(function);
            for (input, g) in inputs.iter().zip(grads) {
                let Some(g) = g else { continue };
                if !input.requires_grad() {
                    continue;
                }
                let want = input.shape();
                if g.shape() != want.as_slice() {
                    return Err(AutogradError::BadGradient {
                        op: node.0.op_name.unwrap_or("?"),
                        expected: format!("input gradient of shape {want:?}"),
                        got: format!("shape {:?}", g.shape()),
                    });
                }
                if input.is_leaf() {
                    leaf(input, g)?;
                } else {
                    match pending.remove(&input.0.id) {
                        Some(prev) => pending.insert(input.0.id, prev.add(&g)?),
                        None => pending.insert(input.0.id, g),
                    };
                }
            }
        }
        Ok(())
    }

    /// Adds `g` to this leaf's gradient.
    pub(crate) fn accumulate(&self, g: Tensor) -> Result<()> {
        let mut slot = lock(&self.0.grad);
        *slot = Some(match slot.take() {
            Some(prev) => prev.add(&g)?,
            None => g,
        });
        Ok(())
    }

    /// The node's creation id (unique, increasing).
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// Every op node reachable from `self`, newest first (a reverse topological order).
    fn graph_nodes(&self) -> Result<Vec<Var>> {
        let mut seen = HashSet::new();
        let mut stack = vec![self.clone()];
        let mut nodes = Vec::new();
        while let Some(v) = stack.pop() {
            if v.is_leaf() || !seen.insert(v.0.id) {
                continue;
            }
            let creator = lock(&v.0.creator);
            let Some(c) = creator.as_ref() else {
                return Err(AutogradError::GraphFreed {
                    op: v.0.op_name.unwrap_or("?"),
                });
            };
            stack.extend(c.inputs.iter().filter(|i| i.requires_grad()).cloned());
            drop(creator);
            nodes.push(v);
        }
        nodes.sort_by_key(|v| std::cmp::Reverse(v.0.id));
        Ok(nodes)
    }
}

impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Var")
            .field("shape", &self.shape())
            .field("requires_grad", &self.requires_grad())
            .field("op", &self.0.op_name)
            .finish()
    }
}
