//! Model weights: a named tensor that is either trained, frozen, or layer state (batch-norm
//! moving statistics), and the initializers that fill them.

use wgrad_graph::Var;
use wgrad_tensor::{Device, Tensor};

use crate::Result;

/// One weight tensor of a layer.
///
/// A trainable weight is a leaf of the autodiff graph ([`Var::param`]), so `backward` leaves
/// its gradient on it; a frozen weight or a state tensor is a constant. Updating the value
/// (an optimizer step, loading weights) makes a fresh leaf, which also forgets the gradient.
#[derive(Clone, Debug)]
pub struct Param {
    name: String,
    var: Var,
    trainable: bool,
    state: bool,
    layout: WeightLayout,
}

/// What a weight's axes mean, so importers can convert another framework's layout (see
/// [`crate::import`]). wgrad keeps Keras's layouts, so Keras files load as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightLayout {
    /// Same layout everywhere (biases, batch-norm vectors, custom weights).
    #[default]
    Plain,
    /// `[in, out]` (PyTorch `Linear`: `[out, in]`).
    Dense,
    /// `[KH, KW, in/groups, out]` (PyTorch `Conv2d`: `[out, in/groups, KH, KW]`).
    Conv,
    /// `[KH, KW, out, in]` (PyTorch `ConvTranspose2d`: `[in, out, KH, KW]`).
    ConvTranspose,
    /// `[KH, KW, C, multiplier]` (PyTorch depthwise `Conv2d`: `[C·multiplier, 1, KH, KW]`).
    Depthwise,
}

impl Param {
    /// A weight the optimizer trains.
    pub fn new(name: impl Into<String>, value: Tensor) -> Param {
        Param {
            name: name.into(),
            var: Var::param(value),
            trainable: true,
            state: false,
            layout: WeightLayout::Plain,
        }
    }

    /// Declares what the weight's axes mean (for importers); `Plain` by default.
    pub fn with_layout(mut self, layout: WeightLayout) -> Param {
        self.layout = layout;
        self
    }

    pub fn layout(&self) -> WeightLayout {
        self.layout
    }

    /// Layer state that the layer itself updates (never trained, never has a gradient).
    pub fn state(name: impl Into<String>, value: Tensor) -> Param {
        Param {
            name: name.into(),
            var: Var::new(value),
            trainable: false,
            state: true,
            layout: WeightLayout::Plain,
        }
    }

    /// The weight's name inside its layer (`kernel`, `bias`, `gamma`, `moving_mean`…).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value as a graph variable, for a layer's forward pass.
    pub fn var(&self) -> &Var {
        &self.var
    }

    pub fn value(&self) -> &Tensor {
        self.var.value()
    }

    pub fn shape(&self) -> &[usize] {
        self.var.shape()
    }

    pub fn numel(&self) -> usize {
        self.var.value().numel()
    }

    /// Whether the optimizer updates this weight.
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// Whether this is layer state rather than a weight (it stays untrainable when unfrozen).
    pub fn is_state(&self) -> bool {
        self.state
    }

    /// Freezes (`false`) or unfreezes (`true`) a weight; state tensors stay untrainable.
    pub fn set_trainable(&mut self, on: bool) {
        let on = on && !self.state;
        if on != self.trainable {
            self.trainable = on;
            self.set(self.value().clone());
        }
    }

    /// Replaces the value (and forgets any gradient).
    pub fn set(&mut self, value: Tensor) {
        self.var = if self.trainable {
            Var::param(value)
        } else {
            Var::new(value)
        };
    }

    /// The gradient the last `backward` left, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.var.grad()
    }

    /// Replaces the gradient the optimizer will read (data-parallel training puts the
    /// replicas' average here). No effect on an untrainable tensor.
    pub fn set_grad(&self, grad: Tensor) {
        self.var.set_grad(grad)
    }
}

/// How a layer fills its weights when it is built (Keras's names and formulas).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f32),
    /// U(−√(6/(fan_in+fan_out)), +√(6/(fan_in+fan_out))): Keras's default for kernels.
    GlorotUniform,
    /// N(0, 2/(fan_in+fan_out)).
    GlorotNormal,
    /// N(0, 2/fan_in): for ReLU networks.
    HeNormal,
    /// U(−√(6/fan_in), +√(6/fan_in)).
    HeUniform,
    /// N(0, 1/fan_in): for SELU networks.
    LecunNormal,
    Uniform(f32, f32),
    Normal(f32, f32),
}

impl Initializer {
    /// A tensor of `shape` whose fans are `fan_in`, `fan_out`, drawn on the device from `seed`.
    pub fn init(
        self,
        dev: &Device,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        seed: u64,
    ) -> Result<Tensor> {
        use wgrad_tensor::DType::F32;
        let (fi, fo) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
        let t = match self {
            Initializer::Zeros => Tensor::zeros(dev, shape, F32)?,
            Initializer::Ones => Tensor::ones(dev, shape, F32)?,
            Initializer::Constant(v) => Tensor::full(dev, shape, v as f64, F32)?,
            Initializer::GlorotUniform => {
                let l = (6.0 / (fi + fo)).sqrt();
                Tensor::rand_uniform(dev, shape, -l, l, seed)?
            }
            Initializer::GlorotNormal => {
                Tensor::rand_normal(dev, shape, 0.0, (2.0 / (fi + fo)).sqrt(), seed)?
            }
            Initializer::HeNormal => Tensor::rand_normal(dev, shape, 0.0, (2.0 / fi).sqrt(), seed)?,
            Initializer::HeUniform => {
                let l = (6.0 / fi).sqrt();
                Tensor::rand_uniform(dev, shape, -l, l, seed)?
            }
            Initializer::LecunNormal => {
                Tensor::rand_normal(dev, shape, 0.0, (1.0 / fi).sqrt(), seed)?
            }
            Initializer::Uniform(lo, hi) => Tensor::rand_uniform(dev, shape, lo, hi, seed)?,
            Initializer::Normal(mean, std) => Tensor::rand_normal(dev, shape, mean, std, seed)?,
        };
        Ok(t)
    }
}
