//! # wgrad-graph
//!
//! Reverse-mode automatic differentiation over [`wgrad_tensor::Tensor`].
//!
//! A [`Var`] is a tensor plus, when gradients are wanted, a node of the recorded graph. Every
//! differentiable op is one function in [`ops`] that computes its value and records a backward
//! rule beside it — a closure that owns exactly the tensors the rule needs, so they are freed as
//! soon as backward has run it (and intermediate values the rule does not need are freed as soon
//! as the user drops them). Backward rules dispatch through the same tensor kernels as the
//! forward pass: no host round trip inside a step.
//!
//! ```no_run
//! use wgrad_graph::{ops, Var};
//! use wgrad_tensor::{Device, Tensor};
//! # fn main() -> wgrad_tensor::Result<()> {
//! let dev = Device::new()?;
//! let w = Var::param(Tensor::rand_normal(&dev, &[3, 2], 0.0, 0.1, 1)?);
//! let x = Var::new(Tensor::ones(&dev, &[4, 3], wgrad_tensor::DType::F32)?);
//! let loss = ops::mean(&ops::square(&ops::matmul(&x, &w)?)?, &[])?;
//! loss.backward()?;
//! let dw = w.grad().expect("a gradient");
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wgrad_tensor::{DType, Error, Result, Tensor};

pub mod ops;

/// A backward rule: from the gradient of the op's output to the gradients of its inputs (in
/// input order; `None` for inputs that need none). Runs once, then is dropped with what it saved.
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send>;

struct Node {
    /// Creation order: a node's inputs always have smaller ids, so descending ids are a
    /// topological order for backward.
    id: u64,
    op: &'static str,
    backward: Mutex<Option<BackwardFn>>,
    inputs: Vec<Option<Arc<Node>>>,
    /// Leaves (parameters) accumulate their gradient here.
    grad: Mutex<Option<Tensor>>,
    /// A leaf's dtype: its gradient is stored in it (an f32 weight read by f16 activations
    /// gets an f32 gradient, as Keras's master weights under `mixed_float16`).
    dtype: DType,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record backward rules.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous recording state when dropped (see [`no_grad`]).
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Stops recording on this thread until the guard is dropped: inference keeps only the live
/// activations.
pub fn no_grad_guard() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

/// Runs `f` without recording.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = no_grad_guard();
    f()
}

/// A tensor in the autodiff graph.
#[derive(Clone)]
pub struct Var {
    value: Tensor,
    node: Option<Arc<Node>>,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(n) => write!(f, "Var({:?}, {} #{})", self.value, n.op, n.id),
            None => write!(f, "Var({:?}, constant)", self.value),
        }
    }
}

impl Var {
    /// A constant: no gradient flows into it.
    pub fn new(value: Tensor) -> Var {
        Var { value, node: None }
    }

    /// A trainable leaf: `backward` accumulates its gradient, read with [`Var::grad`].
    pub fn param(value: Tensor) -> Var {
        let dtype = value.dtype();
        Var {
            value,
            node: Some(Arc::new(Node {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                op: "param",
                backward: Mutex::new(None),
                inputs: Vec::new(),
                grad: Mutex::new(None),
                dtype,
            })),
        }
    }

    /// The result of an op: records `backward` when recording is on and any input needs a
    /// gradient; otherwise a constant.
    pub fn from_op(
        op: &'static str,
        value: Tensor,
        inputs: &[&Var],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    ) -> Var {
        if !is_grad_enabled() || inputs.iter().all(|v| v.node.is_none()) {
            return Var::new(value);
        }
        let dtype = value.dtype();
        Var {
            value,
            node: Some(Arc::new(Node {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                op,
                backward: Mutex::new(Some(Box::new(backward))),
                inputs: inputs.iter().map(|v| v.node.clone()).collect(),
                grad: Mutex::new(None),
                dtype,
            })),
        }
    }

    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn into_value(self) -> Tensor {
        self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// True when gradients flow into this value.
    pub fn requires_grad(&self) -> bool {
        self.node.is_some()
    }

    /// The same value, cut from the graph.
    pub fn detach(&self) -> Var {
        Var::new(self.value.clone())
    }

    /// The accumulated gradient of a leaf made with [`Var::param`].
    pub fn grad(&self) -> Option<Tensor> {
        self.node
            .as_ref()
            .and_then(|n| n.grad.lock().unwrap().clone())
    }

    /// Replaces a leaf's gradient: what data-parallel training does with the gradient
    /// averaged over the replicas before the optimizer reads it. No effect on a constant.
    pub fn set_grad(&self, grad: Tensor) {
        if let Some(n) = &self.node {
            *n.grad.lock().unwrap() = Some(grad);
        }
    }

    /// The identity of this value's graph node (`None` for a constant): the key under which
    /// [`Var::backward_observed`] reports a leaf's gradient.
    pub fn id(&self) -> Option<u64> {
        self.node.as_ref().map(|n| n.id)
    }

    /// Forgets the accumulated gradient (before the next step).
    pub fn zero_grad(&self) {
        if let Some(n) = &self.node {
            *n.grad.lock().unwrap() = None;
        }
    }

    /// Backpropagates from this scalar (a one-element tensor): gradient 1.
    pub fn backward(&self) -> Result<()> {
        if self.value.numel() != 1 {
            return Err(Error::InvalidArgument {
                op: "backward",
                reason: format!("backward() starts from a scalar; this value has shape {:?} (use backward_with)", self.shape()),
            });
        }
        let seed = Tensor::ones(self.value.device(), self.shape(), wgrad_tensor::DType::F32)?;
        self.backward_with(seed)
    }

    /// Backpropagates `grad`, the gradient of some scalar with respect to this value. Each
    /// recorded rule runs once and is then dropped with the tensors it saved; running backward
    /// twice through the same graph is an error.
    pub fn backward_with(&self, grad: Tensor) -> Result<()> {
        self.backward_inner(grad, &mut |_, _| Ok(()))
    }

    /// [`Var::backward`], calling `on_leaf(id, gradient)` as soon as a leaf's gradient is
    /// final: every rule that feeds it has run. Leaves come in the reverse of the order they
    /// were made (a model's last layer first), which is what lets data-parallel training
    /// start reducing the last layers' gradients while the backward pass goes on.
    pub fn backward_observed(
        &self,
        on_leaf: &mut dyn FnMut(u64, &Tensor) -> Result<()>,
    ) -> Result<()> {
        if self.value.numel() != 1 {
            return Err(Error::InvalidArgument {
                op: "backward",
                reason: format!("backward() starts from a scalar; this value has shape {:?} (use backward_with)", self.shape()),
            });
        }
        let seed = Tensor::ones(self.value.device(), self.shape(), wgrad_tensor::DType::F32)?;
        self.backward_inner(seed, on_leaf)
    }

    fn backward_inner(
        &self,
        grad: Tensor,
        on_leaf: &mut dyn FnMut(u64, &Tensor) -> Result<()>,
    ) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::Shape {
                op: "backward",
                reason: "the seed gradient must have the value's shape".into(),
                shapes: vec![grad.shape().to_vec(), self.shape().to_vec()],
            });
        }
        let Some(root) = self.node.clone() else {
            return Ok(());
        };
        // Every node reachable from the root, visited once.
        let mut nodes: HashMap<u64, Arc<Node>> = HashMap::new();
        let mut stack = vec![root.clone()];
        while let Some(n) = stack.pop() {
            if nodes.contains_key(&n.id) {
                continue;
            }
            for i in n.inputs.iter().flatten() {
                stack.push(i.clone());
            }
            nodes.insert(n.id, n);
        }
        let mut order: Vec<u64> = nodes.keys().copied().collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        // How many recorded rules still feed each node: a leaf's gradient is final when the
        // last one has run, long before the leaf's own (low) id comes up in `order`.
        let mut feeders: HashMap<u64, usize> = HashMap::new();
        for n in nodes.values() {
            for i in n.inputs.iter().flatten() {
                *feeders.entry(i.id).or_default() += 1;
            }
        }
        let mut pending: HashMap<u64, Tensor> = HashMap::new();
        pending.insert(root.id, grad);
        // Adds `g` into a leaf's gradient and reports the total.
        let mut settle = |node: &Node, g: Tensor| -> Result<()> {
            let g = g.to_dtype(node.dtype)?;
            let total = {
                let mut slot = node.grad.lock().unwrap();
                let total = match slot.take() {
                    Some(prev) => prev.add(&g)?,
                    None => g,
                };
                *slot = Some(total.clone());
                total
            };
            on_leaf(node.id, &total)
        };
        for id in order {
            let node = &nodes[&id];
            let Some(g) = pending.remove(&id) else {
                continue;
            };
            let rule = node.backward.lock().unwrap().take();
            match rule {
                None if node.inputs.is_empty() => settle(node, g)?,
                None => {
                    return Err(Error::InvalidArgument {
                        op: "backward",
                        reason: format!(
                            "the graph through {} #{} was already backpropagated; record it again",
                            node.op, node.id
                        ),
                    })
                }
                Some(rule) => {
                    let grads = rule(&g)?;
                    for (input, gi) in node.inputs.iter().zip(grads) {
                        let Some(input) = input else {
                            continue;
                        };
                        let left = feeders.get_mut(&input.id).expect("counted above");
                        *left -= 1;
                        if let Some(gi) = gi {
                            let acc = match pending.remove(&input.id) {
                                Some(prev) => prev.add(&gi)?,
                                None => gi,
                            };
                            pending.insert(input.id, acc);
                        }
                        let is_leaf =
                            input.inputs.is_empty() && input.backward.lock().unwrap().is_none();
                        if *left == 0 && is_leaf {
                            if let Some(total) = pending.remove(&input.id) {
                                settle(input, total)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
