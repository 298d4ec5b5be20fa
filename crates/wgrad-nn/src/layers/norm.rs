//! `BatchNormalization` over the channel (last) axis.

use wgrad_graph::{ops, Var};
use wgrad_tensor::ops::batch_norm::{KERAS_EPSILON, KERAS_MOMENTUM};
use wgrad_tensor::{batch_norm_update_moving, DType, Device, Tensor};

use super::built;
use crate::{Ctx, Error, Layer, Param, Result};

/// Keras's `BatchNormalization` (momentum 0.99, epsilon 1e-3 by default). Training uses the
/// batch's mean and biased variance and moves the moving statistics toward them; inference
/// uses the moving statistics. gamma/beta are trained; the moving statistics are state.
#[derive(Debug)]
pub struct BatchNormalization {
    momentum: f32,
    epsilon: f32,
    gamma: Option<Param>,
    beta: Option<Param>,
    moving_mean: Option<Param>,
    moving_variance: Option<Param>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormalization {
    pub fn new() -> BatchNormalization {
        BatchNormalization {
            momentum: KERAS_MOMENTUM,
            epsilon: KERAS_EPSILON,
            gamma: None,
            beta: None,
            moving_mean: None,
            moving_variance: None,
        }
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
}

impl Layer for BatchNormalization {
    fn kind(&self) -> &'static str {
        "BatchNormalization"
    }

    fn build(&mut self, dev: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let Some(&c) = input.last() else {
            return Err(Error::config(
                "BatchNormalization",
                "needs inputs with a channel axis",
            ));
        };
        if !(0.0..=1.0).contains(&self.momentum) || self.epsilon <= 0.0 {
            return Err(Error::config(
                "BatchNormalization",
                format!(
                    "momentum {} must be in [0, 1] and epsilon {} > 0",
                    self.momentum, self.epsilon
                ),
            ));
        }
        let ones = || Tensor::ones(dev, &[c], DType::F32);
        let zeros = || Tensor::zeros(dev, &[c], DType::F32);
        self.gamma = Some(Param::new("gamma", ones()?));
        self.beta = Some(Param::new("beta", zeros()?));
        self.moving_mean = Some(Param::state("moving_mean", zeros()?));
        self.moving_variance = Some(Param::state("moving_variance", ones()?));
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let name = "BatchNormalization";
        let (gamma, beta) = (built(name, &self.gamma)?, built(name, &self.beta)?);
        if ctx.training {
            let (y, mean, var) = ops::batch_norm_train(x, gamma.var(), beta.var(), self.epsilon)?;
            let mm = self.moving_mean.as_mut().expect("built with gamma");
            let mv = self.moving_variance.as_mut().expect("built with gamma");
            let (m, v) =
                batch_norm_update_moving(mm.value(), mv.value(), &mean, &var, self.momentum)?;
            mm.set(m);
            mv.set(v);
            Ok(y)
        } else {
            let (mm, mv) = (
                built(name, &self.moving_mean)?,
                built(name, &self.moving_variance)?,
            );
            // Inference is an affine map per channel. Under no_grad (evaluate, predict) one
            // kernel computes it; when a caller differentiates through an inference-mode
            // layer (fine-tuning a frozen backbone) the same map is composed from graph ops
            // so gradients reach the input, gamma and beta.
            let wants_grad = wgrad_graph::is_grad_enabled()
                && (x.requires_grad() || gamma.var().requires_grad() || beta.var().requires_grad());
            if !wants_grad {
                return Ok(Var::new(x.value().batch_norm_infer(
                    gamma.value(),
                    beta.value(),
                    mm.value(),
                    mv.value(),
                    self.epsilon,
                )?));
            }
            // scale = γ / √(σ² + ε); y = (x − μ)·scale + β.
            let inv = Var::new(mv.value().add_scalar(self.epsilon)?.rsqrt()?);
            let scale = ops::mul(gamma.var(), &inv)?;
            let centred = ops::sub(x, &Var::new(mm.value().clone()))?;
            Ok(ops::add(&ops::mul(&centred, &scale)?, beta.var())?)
        }
    }

    fn params(&self) -> Vec<&Param> {
        [
            &self.gamma,
            &self.beta,
            &self.moving_mean,
            &self.moving_variance,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        [
            &mut self.gamma,
            &mut self.beta,
            &mut self.moving_mean,
            &mut self.moving_variance,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
