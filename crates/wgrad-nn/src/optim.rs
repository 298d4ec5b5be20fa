//! Optimizers and learning-rate schedules. Each step runs one fused update kernel per
//! parameter tensor ([`wgrad_tensor::Update`]); every step-dependent scalar is computed here on
//! the host, so a step never waits for the device.

use std::collections::HashMap;

use wgrad_tensor::{DType, Tensor, Update};

use crate::{Error, Param, Result};

/// A learning rate as a function of the step (Keras's `LearningRateSchedule`s).
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant(f32),
    /// `initial · rate^(step / decay_steps)` (the exponent floored when `staircase`).
    ExponentialDecay {
        initial: f32,
        decay_steps: u64,
        rate: f32,
        staircase: bool,
    },
    /// `initial / (1 + rate · step / decay_steps)`: Keras's legacy `decay=` argument is
    /// `InverseTimeDecay { decay_steps: 1, rate: decay }`.
    InverseTimeDecay {
        initial: f32,
        decay_steps: u64,
        rate: f32,
    },
    /// `values[i]` while `step < boundaries[i]`, `values.last()` after the last boundary.
    PiecewiseConstant {
        boundaries: Vec<u64>,
        values: Vec<f32>,
    },
    /// Cosine from `initial` to `initial · alpha` over `decay_steps`, then flat.
    CosineDecay {
        initial: f32,
        decay_steps: u64,
        alpha: f32,
    },
}

impl Schedule {
    /// The learning rate at `step` (0 for the first update).
    pub fn at(&self, step: u64) -> f32 {
        match self {
            Schedule::Constant(lr) => *lr,
            Schedule::ExponentialDecay {
                initial,
                decay_steps,
                rate,
                staircase,
            } => {
                let mut e = step as f64 / (*decay_steps).max(1) as f64;
                if *staircase {
                    e = e.floor();
                }
                (*initial as f64 * (*rate as f64).powf(e)) as f32
            }
            Schedule::InverseTimeDecay {
                initial,
                decay_steps,
                rate,
            } => initial / (1.0 + rate * step as f32 / (*decay_steps).max(1) as f32),
            Schedule::PiecewiseConstant { boundaries, values } => {
                let i = boundaries.iter().take_while(|&&b| step >= b).count();
                values[i.min(values.len() - 1)]
            }
            Schedule::CosineDecay {
                initial,
                decay_steps,
                alpha,
            } => {
                let t = (step.min(*decay_steps) as f64) / (*decay_steps).max(1) as f64;
                let c = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
                (*initial as f64 * ((1.0 - *alpha as f64) * c + *alpha as f64)) as f32
            }
        }
    }
}

impl From<f32> for Schedule {
    fn from(lr: f32) -> Schedule {
        Schedule::Constant(lr)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Sgd {
        momentum: f32,
        nesterov: bool,
    },
    RmsProp {
        rho: f32,
        epsilon: f32,
        momentum: f32,
        centered: bool,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        decoupled: bool,
    },
    Nadam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

/// Keras's gradient clipping, applied before weight decay and the update, with Keras's
/// precedence: `clipnorm` (each gradient to that L2 norm), else `global_clipnorm` (all of them
/// together), else `clipvalue` (elementwise). Computed on the device: no step reads a norm back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Clip {
    norm: Option<f32>,
    global_norm: Option<f32>,
    value: Option<f32>,
}

/// Keras's `use_ema`: a moving average of every trainable weight, `a ← m·a + (1 − m)·w` after
/// each step, copied into the weights every `overwrite_every` steps and at the end of `fit`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ema {
    momentum: f32,
    overwrite_every: Option<u64>,
}

/// An optimizer: a rule, a learning-rate schedule, weight decay, gradient clipping, an optional
/// weight average, and per-parameter slots (velocity, moments) created at the first step.
#[derive(Debug)]
pub struct Optimizer {
    rule: Rule,
    lr: Schedule,
    /// tf.keras 2's legacy `decay=`: the rate is divided by 1 + decay · iterations.
    legacy_decay: f32,
    weight_decay: f32,
    clip: Clip,
    ema: Option<Ema>,
    iterations: u64,
    /// Slots by the parameter's position in the model's parameter list.
    slots: HashMap<usize, Vec<Tensor>>,
    /// Nadam: the product of the momentum schedule over the steps taken (1 before the first).
    momentum_product: f64,
}

impl Optimizer {
    fn with(rule: Rule, lr: impl Into<Schedule>) -> Optimizer {
        Optimizer {
            rule,
            lr: lr.into(),
            legacy_decay: 0.0,
            weight_decay: 0.0,
            clip: Clip::default(),
            ema: None,
            iterations: 0,
            slots: HashMap::new(),
            momentum_product: 1.0,
        }
    }

    /// Plain SGD (add `.momentum(0.9)`, `.nesterov(true)` as Keras's arguments).
    pub fn sgd(lr: impl Into<Schedule>) -> Optimizer {
        Self::with(
            Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            lr,
        )
    }

    /// RMSprop with Keras's defaults: rho 0.9, epsilon 1e-7.
    pub fn rmsprop(lr: impl Into<Schedule>) -> Optimizer {
        Self::with(
            Rule::RmsProp {
                rho: 0.9,
                epsilon: 1e-7,
                momentum: 0.0,
                centered: false,
            },
            lr,
        )
    }

    /// Adam with Keras's defaults: beta1 0.9, beta2 0.999, epsilon 1e-7. With
    /// `.weight_decay(wd)` it is AdamW, as in Keras 3.
    pub fn adam(lr: impl Into<Schedule>) -> Optimizer {
        Self::with(
            Rule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-7,
                decoupled: false,
            },
            lr,
        )
    }

    /// AdamW: Adam with decoupled weight decay (Keras's default 0.004).
    pub fn adamw(lr: impl Into<Schedule>, weight_decay: f32) -> Optimizer {
        let mut o = Self::with(
            Rule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-7,
                decoupled: true,
            },
            lr,
        );
        o.weight_decay = weight_decay;
        o
    }

    /// Nadam (Adam with Nesterov momentum, Keras's momentum schedule) with Keras's defaults:
    /// beta1 0.9, beta2 0.999, epsilon 1e-7.
    pub fn nadam(lr: impl Into<Schedule>) -> Optimizer {
        Self::with(
            Rule::Nadam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-7,
            },
            lr,
        )
    }

    /// SGD's momentum, or RMSprop's (Keras's `momentum=`: the increment accumulates).
    pub fn momentum(mut self, m: f32) -> Self {
        if let Rule::Sgd { momentum, .. } | Rule::RmsProp { momentum, .. } = &mut self.rule {
            *momentum = m;
        }
        self
    }

    /// RMSprop's `centered=True`: divides by the gradient's running variance instead of its
    /// running second moment (one more slot).
    pub fn centered(mut self, on: bool) -> Self {
        if let Rule::RmsProp { centered, .. } = &mut self.rule {
            *centered = on;
        }
        self
    }

    pub fn nesterov(mut self, on: bool) -> Self {
        if let Rule::Sgd { nesterov, .. } = &mut self.rule {
            *nesterov = on;
        }
        self
    }

    /// RMSprop's rho or Adam's beta2 stay at their defaults unless set here.
    pub fn betas(mut self, b1: f32, b2: f32) -> Self {
        if let Rule::Adam { beta1, beta2, .. } | Rule::Nadam { beta1, beta2, .. } = &mut self.rule {
            (*beta1, *beta2) = (b1, b2);
        }
        self
    }

    pub fn rho(mut self, r: f32) -> Self {
        if let Rule::RmsProp { rho, .. } = &mut self.rule {
            *rho = r;
        }
        self
    }

    pub fn epsilon(mut self, e: f32) -> Self {
        match &mut self.rule {
            Rule::RmsProp { epsilon, .. }
            | Rule::Adam { epsilon, .. }
            | Rule::Nadam { epsilon, .. } => *epsilon = e,
            Rule::Sgd { .. } => {}
        }
        self
    }

    /// Keras 3's `weight_decay`, for every rule: decoupled, `w ← w − lr·wd·w` before each
    /// update (not an L2 term in the loss or the gradient).
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }

    /// Keras's `clipnorm`: each gradient scaled by `c / max(‖g‖, c)`.
    pub fn clipnorm(mut self, c: f32) -> Self {
        self.clip.norm = Some(c);
        self
    }

    /// Keras's `global_clipnorm`: every gradient scaled by `c / max(‖(g₁, g₂, …)‖, c)`.
    /// Exclusive with `clipnorm`, as in Keras (the first step says so).
    pub fn global_clipnorm(mut self, c: f32) -> Self {
        self.clip.global_norm = Some(c);
        self
    }

    /// Keras's `clipvalue`: each gradient element clipped to `[-v, v]`.
    pub fn clipvalue(mut self, v: f32) -> Self {
        self.clip.value = Some(v);
        self
    }

    /// Keras's `use_ema=True, ema_momentum=momentum` (Keras's default momentum: 0.99).
    pub fn use_ema(mut self, momentum: f32) -> Self {
        let overwrite_every = self.ema.and_then(|e| e.overwrite_every);
        self.ema = Some(Ema {
            momentum,
            overwrite_every,
        });
        self
    }

    /// Keras's `ema_overwrite_frequency`: the weights take their moving average every `n`
    /// steps (0: only at the end of `fit`). Turns the average on at Keras's 0.99 if it is off.
    pub fn ema_overwrite_frequency(mut self, n: u64) -> Self {
        let momentum = self.ema.map_or(0.99, |e| e.momentum);
        self.ema = Some(Ema {
            momentum,
            overwrite_every: (n > 0).then_some(n),
        });
        self
    }

    pub fn schedule(mut self, s: Schedule) -> Self {
        self.lr = s;
        self
    }

    /// Updates taken so far.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// The learning rate the next step uses.
    pub fn learning_rate(&self) -> f32 {
        let lr = self.lr.at(self.iterations);
        if self.legacy_decay == 0.0 {
            return lr;
        }
        (lr as f64 / (1.0 + self.legacy_decay as f64 * self.iterations as f64)) as f32
    }

    /// tf.keras 2's legacy `decay=` argument, as the chapter's `SGD(lr=0.2, momentum=0.9,
    /// decay=0.01)`: the learning rate (of the schedule, if any) divided by
    /// 1 + decay · iterations.
    pub fn decay(mut self, decay: f32) -> Self {
        self.legacy_decay = decay;
        self
    }

    pub fn name(&self) -> &'static str {
        match self.rule {
            Rule::Sgd { .. } => "SGD",
            Rule::RmsProp { .. } => "RMSprop",
            Rule::Adam {
                decoupled: false, ..
            } => "Adam",
            Rule::Adam {
                decoupled: true, ..
            } => "AdamW",
            Rule::Nadam { .. } => "Nadam",
        }
    }

    fn update(&self) -> Update {
        let lr = self.learning_rate();
        // Keras 3 decays every rule's weights the same way, decoupled and before the update:
        // w ← w − lr·wd·w, with the schedule's learning rate.
        let wd = self.weight_decay;
        match self.rule {
            Rule::Sgd { momentum: 0.0, .. } => Update::Sgd { lr, decay: lr * wd },
            Rule::Sgd { momentum, nesterov } => Update::SgdMomentum {
                lr,
                momentum,
                nesterov,
                decay: lr * wd,
            },
            Rule::RmsProp {
                rho,
                epsilon,
                momentum,
                centered,
            } => Update::RmsProp {
                lr,
                rho,
                epsilon,
                decay: lr * wd,
                momentum,
                centered,
            },
            Rule::Adam {
                beta1,
                beta2,
                epsilon,
                ..
            } => {
                let t = (self.iterations + 1) as f64;
                let (b1, b2) = (beta1 as f64, beta2 as f64);
                let lr_t = lr as f64 * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
                Update::Adam {
                    lr: lr_t as f32,
                    beta1,
                    beta2,
                    epsilon,
                    decay: lr * wd,
                }
            }
            Rule::Nadam {
                beta1,
                beta2,
                epsilon,
            } => {
                // Keras 3's schedule: u_t = β1·(1 − ½·0.96ᵗ) for t from 1, and the running
                // products of the u's up to t and t + 1.
                let t = self.iterations + 1;
                let b1 = beta1 as f64;
                let (u_t, u_next) = (nadam_u(t, b1), nadam_u(t + 1, b1));
                let prod_t = self.momentum_product * u_t;
                let prod_next = prod_t * u_next;
                Update::Nadam {
                    lr,
                    decay: lr * wd,
                    beta1,
                    beta2,
                    epsilon,
                    c1: (u_next / (1.0 - prod_next)) as f32,
                    c2: ((1.0 - u_t) / (1.0 - prod_t)) as f32,
                    c3: (1.0 / (1.0 - (beta2 as f64).powf(t as f64))) as f32,
                }
            }
        }
    }

    /// One update of every trainable parameter that has a gradient (`params` in the model's
    /// fixed order); the gradients are consumed with the old leaves. With `use_ema`, every
    /// trainable parameter's moving average follows, as Keras's `apply` does after the update.
    pub fn step(&mut self, params: Vec<&mut Param>) -> Result<()> {
        if let Some(e) = self.ema.filter(|e| !(0.0..=1.0).contains(&e.momentum)) {
            return Err(Error::config(
                self.name(),
                format!("ema_momentum must lie in [0, 1], got {}", e.momentum),
            ));
        }
        let update = self.update();
        let mut trainable: Vec<(usize, &mut Param)> = params
            .into_iter()
            .enumerate()
            .filter(|(_, p)| p.trainable())
            .collect();
        let (with_grad, grads): (Vec<usize>, Vec<Tensor>) = trainable
            .iter()
            .enumerate()
            .filter_map(|(k, (_, p))| p.grad().map(|g| (k, g)))
            .unzip();
        let grads = self.clip_gradients(grads)?;
        for (k, g) in with_grad.into_iter().zip(grads) {
            let (i, p) = &mut trainable[k];
            let mut slots = self.take_slots(*i, p)?;
            // The moving average rides last in the slot list (so checkpoints carry it).
            let average = self.ema.and_then(|_| slots.pop());
            let refs: Vec<&Tensor> = slots.iter().collect();
            let (new, mut new_slots) = p.value().optimizer_update(&g, &refs, update)?;
            p.set(new);
            new_slots.extend(average);
            if !new_slots.is_empty() {
                self.slots.insert(*i, new_slots);
            }
        }
        if let Some(ema) = self.ema {
            // Keras: the first step's momentum is 0, so the average starts at the weights.
            let m = if self.iterations == 0 {
                0.0
            } else {
                ema.momentum
            };
            let overwrite = ema
                .overwrite_every
                .is_some_and(|n| (self.iterations + 1).is_multiple_of(n));
            for (i, p) in trainable.iter_mut() {
                let mut slots = self.take_slots(*i, p)?;
                let old = slots.pop().expect("an EMA slot");
                let average = old.mul_scalar(m)?.add(&p.value().mul_scalar(1.0 - m)?)?;
                if overwrite {
                    p.set(average.clone());
                }
                slots.push(average);
                self.slots.insert(*i, slots);
            }
        }
        self.iterations += 1;
        if let Rule::Nadam { beta1, .. } = self.rule {
            self.momentum_product *= nadam_u(self.iterations, beta1 as f64);
        }
        Ok(())
    }

    /// Parameter `i`'s slots, zeros (Keras's initial slots and average) before its first step.
    fn take_slots(&mut self, i: usize, p: &Param) -> Result<Vec<Tensor>> {
        match self.slots.remove(&i) {
            Some(s) => Ok(s),
            None => Ok((0..self.slots_per_param())
                .map(|_| Tensor::zeros(p.value().device(), p.shape(), DType::F32))
                .collect::<wgrad_tensor::Result<Vec<_>>>()?),
        }
    }

    /// Keras's `finalize_variable_values`: with `use_ema`, every trainable parameter takes its
    /// moving average (`Trainer::fit` calls this after its last epoch, as Keras's `fit` does).
    pub fn finalize_variable_values(&self, params: Vec<&mut Param>) {
        if self.ema.is_none() {
            return;
        }
        for (i, p) in params.into_iter().enumerate() {
            if let Some(average) = self.slots.get(&i).and_then(|s| s.last()) {
                if p.trainable() {
                    p.set(average.clone());
                }
            }
        }
    }

    /// Keras's `_clip_gradients`: the same precedence and formulas, as device ops.
    fn clip_gradients(&self, grads: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let positive = |name: &str, v: Option<f32>| -> Result<Option<f32>> {
            match v {
                Some(c) if !(c > 0.0 && c.is_finite()) => Err(Error::config(
                    self.name(),
                    format!("{name} must be a positive finite number, got {c}"),
                )),
                _ => Ok(v),
            }
        };
        let (norm, global, value) = (
            positive("clipnorm", self.clip.norm)?,
            positive("global_clipnorm", self.clip.global_norm)?,
            positive("clipvalue", self.clip.value)?,
        );
        if norm.is_some() && global.is_some() {
            return Err(Error::config(
                self.name(),
                "only one of clipnorm and global_clipnorm can be set (as in Keras)",
            ));
        }
        // g · c / max(n, c) with n² summed on the device: a no-op below the threshold.
        let scale_to = |sum_sq: Tensor, c: f32| -> Result<Tensor> {
            Ok(sum_sq.sqrt()?.maximum_scalar(c)?.recip()?.mul_scalar(c)?)
        };
        if let Some(c) = norm {
            return grads
                .into_iter()
                .map(|g| Ok(g.mul(&scale_to(g.square()?.sum(&[], false)?, c)?)?))
                .collect();
        }
        if let Some(c) = global {
            let mut total: Option<Tensor> = None;
            for g in &grads {
                let s = g.square()?.sum(&[], false)?;
                total = Some(match total {
                    Some(t) => t.add(&s)?,
                    None => s,
                });
            }
            let Some(total) = total else {
                return Ok(grads);
            };
            let scale = scale_to(total, c)?;
            return grads.iter().map(|g| Ok(g.mul(&scale)?)).collect();
        }
        if let Some(v) = value {
            return grads.iter().map(|g| Ok(g.clip(-v, v)?)).collect();
        }
        Ok(grads)
    }

    /// The optimizer's state: each parameter's slots (moments, momentum buffers) by the
    /// parameter's index in the model's `params()` order (for checkpoints).
    pub fn slots(&self) -> &HashMap<usize, Vec<Tensor>> {
        &self.slots
    }

    /// Restores the step count and slots [`Optimizer::slots`] returned (a checkpoint's).
    pub fn restore(&mut self, iterations: u64, slots: HashMap<usize, Vec<Tensor>>) {
        self.iterations = iterations;
        self.slots = slots;
        // The schedule's product is a function of the step count alone.
        if let Rule::Nadam { beta1, .. } = self.rule {
            self.momentum_product = (1..=iterations).map(|t| nadam_u(t, beta1 as f64)).product();
        }
    }

    /// How many slot tensors each parameter keeps under this rule (for memory estimates).
    pub fn slots_per_param(&self) -> usize {
        self.update().slots() + self.ema.is_some() as usize
    }
}

/// Nadam's momentum at step `t` (from 1), Keras 3's `β1·(1 − ½·0.96ᵗ)`. (Keras 2 and TF 1
/// had 0.96^(0.004·t), a schedule 250 times slower; Keras 3's trajectories need this one.)
fn nadam_u(t: u64, b1: f64) -> f64 {
    b1 * (1.0 - 0.5 * 0.96f64.powf(t as f64))
}
