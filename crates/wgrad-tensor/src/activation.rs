//! The activations, one enum for the kernels' write-outs, the elementwise ops and the layers
//! (wgrad-nn names it `Act`, beside the Keras `Activation` layer). The elementwise formulas
//! live once, in `shaders/common/activations.wgsl`.

use crate::ops::unary::UnaryOp;
use crate::{Result, Tensor};

/// A layer's or kernel's activation: Keras's `activation=` strings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// The identity (Keras's `"linear"`).
    #[default]
    Linear,
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Selu,
    Gelu,
    Sigmoid,
    Tanh,
    Softplus,
    /// Softmax over the last axis: not elementwise, so it never fuses into a write-out.
    Softmax,
}

impl Activation {
    /// Every activation with sample parameters (for variant enumeration and tests).
    pub const ALL: [Activation; 10] = [
        Activation::Linear,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Elu(1.0),
        Activation::Selu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softplus,
        Activation::Softmax,
    ];

    /// Keras's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Elu(_) => "elu",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
            Activation::Softmax => "softmax",
        }
    }

    /// The negative slope `act_linear` in `shaders/common/activations.wgsl` applies, for
    /// activations fused into a write-out (piecewise linear: one multiply-select per value);
    /// `None` for the others, which run as their own pass after it.
    pub fn fused_slope(self) -> Option<f32> {
        match self {
            Activation::Linear => Some(1.0),
            Activation::Relu => Some(0.0),
            Activation::LeakyRelu(a) => Some(a),
            _ => None,
        }
    }

    /// The shader's name for an elementwise non-identity activation (`act_<name>`,
    /// `d_<name>`) and its parameter; `None` for the identity and softmax.
    pub(crate) fn wgsl(self) -> Option<(&'static str, f32)> {
        Some(match self {
            Activation::Linear | Activation::Softmax => return None,
            Activation::LeakyRelu(a) | Activation::Elu(a) => (self.name(), a),
            other => (other.name(), 0.0),
        })
    }
}

impl Tensor {
    /// `act(self)`: the identity returns the tensor, softmax runs over the last axis, the
    /// rest are one elementwise pass.
    pub fn activation(&self, act: Activation) -> Result<Tensor> {
        match act {
            Activation::Linear => Ok(self.clone()),
            Activation::Softmax => self.softmax(-1),
            a => self.unary(UnaryOp::Act(a)),
        }
    }

    /// The gradient through `y = act(x)` of the output gradient `self`: `x` is the input,
    /// `y` the output.
    pub fn activation_backward(&self, act: Activation, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        match act {
            Activation::Linear => Ok(self.clone()),
            // dL/dx = y · (g − Σ g·y) along the softmax axis.
            Activation::Softmax => {
                let dot = self.mul(y)?.sum(&[-1], true)?;
                self.sub(&dot)?.mul(y)
            }
            a => self.unary_backward(UnaryOp::Act(a), x, y),
        }
    }
}
