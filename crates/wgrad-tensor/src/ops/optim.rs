//! Fused optimizer updates (`shaders/optim.wgsl`): one dispatch per parameter tensor computes
//! the new parameter and the new optimizer slots from the old ones and the gradient.
//!
//! The updates are functional — they return fresh tensors and leave their inputs untouched —
//! so a tensor that a recorded graph or the user still holds never changes under it; the
//! buffer pool makes the fresh outputs as cheap as in-place writes.

use super::{launch_1d_split, same_device, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static OPTIM: "optim" in "optim.wgsl",
    workgroup 256,
    entries [
        "sgd", "sgd_momentum", "rmsprop", "rmsprop_momentum", "rmsprop_centered",
        "rmsprop_centered_momentum", "adam", "nadam"
    ],
    blocks [OptimParams]);

params!("Params" => struct OptimParams {
    /// Elements of `T` (f32 or vec4<f32>).
    n: u32,
    /// Workgroups per grid row (the grid folds into y past 65,535).
    row: u32,
    /// The step's learning rate (Adam: with the bias corrections folded in).
    lr: f32,
    /// lr · weight decay: the parameter is scaled by 1 − decay before the update.
    decay: f32,
    /// SGD: momentum; Adam, RMSprop: beta1 / rho.
    a: f32,
    /// Adam: beta2; RMSprop: momentum.
    b: f32,
    eps: f32,
    /// SGD: Nesterov.
    flag: u32,
    /// Nadam: the weights of the new first moment and of the gradient, and 1 / (1 − β2ᵗ).
    c1: f32,
    c2: f32,
    c3: f32,
    pad: u32,
});

fn spec(vec4: bool) -> Spec {
    Spec::new().alias("T", if vec4 { "vec4<f32>" } else { "f32" })
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&OPTIM, spec(false)), (&OPTIM, spec(true))]
}

/// One update rule and its step's scalars (computed on the host: schedules and Adam's bias
/// corrections never read the device). `decay` is Keras 3's decoupled weight decay for every
/// rule, already multiplied by the learning rate: `w ← w·(1 − decay)` before the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// `w ← w·(1 − decay) − lr·g`.
    Sgd { lr: f32, decay: f32 },
    /// Keras's momentum SGD: `v ← μ·v − lr·g`, `w ← w + v` (Nesterov: `w + μ·v − lr·g`),
    /// `w` decayed first. Slot: velocity.
    SgdMomentum {
        lr: f32,
        momentum: f32,
        nesterov: bool,
        decay: f32,
    },
    /// Keras 3's RMSprop: `s ← ρ·s + (1 − ρ)·g²`, `w ← w·(1 − decay) − lr·g/√(s + ε)`.
    /// `centered` also keeps `ḡ ← ρ·ḡ + (1 − ρ)·g` and divides by `√(s − ḡ² + ε)`; a
    /// `momentum` μ > 0 accumulates the increment, `m ← μ·m + lr·g/√(…)`, `w ← w − m`.
    /// Slots: `s`, then `ḡ` when centered, then `m` when μ > 0.
    RmsProp {
        lr: f32,
        rho: f32,
        epsilon: f32,
        decay: f32,
        momentum: f32,
        centered: bool,
    },
    /// Adam with its bias corrections folded into `lr` (`lr·√(1−β2ᵗ)/(1−β1ᵗ)`); `decay` is
    /// lr·wd with the schedule's (uncorrected) lr, as Keras. Slots: first and second moments.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        decay: f32,
    },
    /// Nadam with the host's coefficients: `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `w ← w·(1 − decay) − lr·(c1·m + c2·g)/(√(c3·v) + ε)`. Slots: first and second moments.
    Nadam {
        lr: f32,
        decay: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        c1: f32,
        c2: f32,
        c3: f32,
    },
}

impl Update {
    /// How many slot tensors (each of the parameter's shape) the rule keeps.
    pub fn slots(&self) -> usize {
        match *self {
            Update::Sgd { .. } => 0,
            Update::SgdMomentum { .. } => 1,
            Update::RmsProp {
                momentum, centered, ..
            } => 1 + centered as usize + (momentum > 0.0) as usize,
            Update::Adam { .. } | Update::Nadam { .. } => 2,
        }
    }

    fn entry(&self) -> &'static str {
        match *self {
            Update::Sgd { .. } => "sgd",
            Update::SgdMomentum { .. } => "sgd_momentum",
            Update::RmsProp {
                momentum, centered, ..
            } => match (centered, momentum > 0.0) {
                (false, false) => "rmsprop",
                (false, true) => "rmsprop_momentum",
                (true, false) => "rmsprop_centered",
                (true, true) => "rmsprop_centered_momentum",
            },
            Update::Adam { .. } => "adam",
            Update::Nadam { .. } => "nadam",
        }
    }

    /// The shader's parameter block for `lanes` elements (its `row` is set at launch).
    fn block(&self, lanes: u32) -> OptimParams {
        let (mut c1, mut c2, mut c3) = (0.0f32, 0.0f32, 0.0f32);
        let (lr, decay, a, b, eps, flag) = match *self {
            Update::Sgd { lr, decay } => (lr, decay, 0.0, 0.0, 0.0, 0),
            Update::SgdMomentum {
                lr,
                momentum,
                nesterov,
                decay,
            } => (lr, decay, momentum, 0.0, 0.0, nesterov as u32),
            Update::RmsProp {
                lr,
                rho,
                epsilon,
                decay,
                momentum,
                ..
            } => (lr, decay, rho, momentum, epsilon, 0),
            Update::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                decay,
            } => (lr, decay, beta1, beta2, epsilon, 0),
            Update::Nadam {
                lr,
                beta1,
                beta2,
                epsilon,
                c1: k1,
                c2: k2,
                c3: k3,
                decay,
            } => {
                (c1, c2, c3) = (k1, k2, k3);
                (lr, decay, beta1, beta2, epsilon, 0)
            }
        };
        OptimParams {
            n: lanes,
            row: 0,
            lr,
            decay,
            a,
            b,
            eps,
            flag,
            c1,
            c2,
            c3,
            pad: 0,
        }
    }
}

impl Tensor {
    /// Applies `update` to this parameter with gradient `grad` and the rule's `slots` (as
    /// many as [`Update::slots`], each of the parameter's shape; zeros before the first
    /// step). Returns the new parameter and the new slots.
    pub fn optimizer_update(
        &self,
        grad: &Tensor,
        slots: &[&Tensor],
        update: Update,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let op = "optimizer_update";
        let mut all = vec![self, grad];
        all.extend_from_slice(slots);
        same_device(op, &all)?;
        for t in &all {
            t.expect_dtype(op, DType::F32)?;
            if t.shape() != self.shape() {
                let shapes: Vec<&[usize]> = all.iter().map(|t| t.shape()).collect();
                return Err(Error::shape(
                    op,
                    "parameter, gradient and optimizer slots must have one shape",
                    &shapes,
                ));
            }
        }
        if slots.len() != update.slots() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} takes {} slot tensor(s), {} given",
                    update.entry(),
                    update.slots(),
                    slots.len()
                ),
            ));
        }
        let dev = self.device();
        let out = Tensor::uninit(dev, op, self.shape(), DType::F32)?;
        let new_slots = slots
            .iter()
            .map(|_| Tensor::uninit(dev, op, self.shape(), DType::F32))
            .collect::<Result<Vec<_>>>()?;
        let n = self.numel() as u64;
        let vec4 = n.is_multiple_of(4);
        let lanes = if vec4 { n / 4 } else { n };
        let block = update.block(lanes as u32);
        // Bindings follow the shader: param, grad, param_out, then (slot, slot_out) pairs.
        let lane = if vec4 { 16 } else { 4 };
        let mut buffers = vec![self, grad, &out];
        for (s, o) in slots.iter().zip(&new_slots) {
            buffers.push(s);
            buffers.push(o);
        }
        let buffers: Vec<Arg<'_>> = buffers.iter().map(|t| Arg::Split(t.bind(), lane)).collect();
        launch_1d_split(
            dev,
            &OPTIM,
            update.entry(),
            &spec(vec4),
            |row, _, lanes| OptimParams {
                row,
                n: lanes as u32,
                ..block
            },
            &buffers,
            lanes,
        )?;
        Ok((out, new_slots))
    }
}
