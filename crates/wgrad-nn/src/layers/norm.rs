//! Normalisation layers: `BatchNormalization` over the channel (last) axis, and AlexNet's
//! `LocalResponseNormalization` across neighbouring channels.

use wgrad_graph::{ops, Var};
use wgrad_tensor::{batch_norm_update_moving, DType, Device, LrnParams, Tensor};
use wgrad_tensor::{KERAS_EPSILON, KERAS_MOMENTUM};

use super::{built, expect_rank};
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
    /// The last inference affine map and the four tensors it came from: predict reuses it
    /// for every batch until a weight or statistic is replaced.
    folded: std::sync::Mutex<Option<([Tensor; 4], Tensor, Tensor)>>,
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
            folded: std::sync::Mutex::new(None),
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
        // Keras (since TF 2.0): a frozen batch norm runs in inference mode even while the
        // model trains — moving statistics used, not updated — so fine-tuning a pretrained
        // base does not wreck the statistics it learnt.
        if ctx.training && gamma.trainable() {
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

    fn hints(&self) -> Option<&dyn crate::Hints> {
        Some(self)
    }
    fn hints_mut(&mut self) -> Option<&mut dyn crate::Hints> {
        Some(self)
    }
}

impl crate::Hints for BatchNormalization {
    fn channel_affine(&self) -> Option<Result<(Tensor, Tensor)>> {
        let (g, b) = (self.gamma.as_ref()?, self.beta.as_ref()?);
        let (m, v) = (self.moving_mean.as_ref()?, self.moving_variance.as_ref()?);
        let from = [g.value(), b.value(), m.value(), v.value()];
        let mut cache = self.folded.lock().unwrap();
        if let Some((src, scale, shift)) = cache.as_ref() {
            if src.iter().zip(from).all(|(a, b)| a.shares_buffer(b)) {
                return Some(Ok((scale.clone(), shift.clone())));
            }
        }
        let run = || -> Result<(Tensor, Tensor)> {
            // scale = γ/√(σ²+ε), shift = β − μ·scale.
            let scale = v
                .value()
                .add_scalar(self.epsilon)?
                .rsqrt()?
                .mul(g.value())?;
            let shift = b.value().sub(&m.value().mul(&scale)?)?;
            Ok((scale, shift))
        };
        let out = run();
        if let Ok((scale, shift)) = &out {
            *cache = Some((from.map(Tensor::clone), scale.clone(), shift.clone()));
        }
        Some(out)
    }
}

/// Local response normalisation across channels (AlexNet, 2012), as TensorFlow's
/// `tf.nn.local_response_normalization` computes it on `[H, W, C]` images:
/// `x / (bias + alpha · Σ x²)^beta`, the sum over the channels within `depth_radius` of each
/// channel. Keras has no such layer; books wrap the TensorFlow function in a `Lambda`. The
/// defaults are TensorFlow's (`depth_radius` 5, `bias` 1, `alpha` 1, `beta` 0.5); AlexNet's
/// are `LocalResponseNormalization::new().depth_radius(2).bias(2.0).alpha(1e-4).beta(0.75)`.
///
/// TensorFlow's `alpha` scales the plain sum; PyTorch's `nn.LocalResponseNorm` divides its
/// `alpha` by the window size: build from PyTorch's arguments with
/// [`from_torch`](LocalResponseNormalization::from_torch). No weights.
#[derive(Debug, Default)]
pub struct LocalResponseNormalization {
    params: LrnParams,
}

impl LocalResponseNormalization {
    /// TensorFlow's defaults.
    pub fn new() -> LocalResponseNormalization {
        LocalResponseNormalization {
            params: LrnParams::default(),
        }
    }

    /// All four parameters at once, in TensorFlow's convention.
    pub fn with_params(params: LrnParams) -> LocalResponseNormalization {
        LocalResponseNormalization { params }
    }

    /// PyTorch's `nn.LocalResponseNorm(size, alpha, beta, k)`: the same function with
    /// `depth_radius = size / 2` and `alpha / size`. `size` must be odd (see
    /// [`LrnParams::from_torch`]).
    pub fn from_torch(size: usize, alpha: f32, beta: f32, k: f32) -> Result<Self> {
        Ok(Self::with_params(LrnParams::from_torch(
            size, alpha, beta, k,
        )?))
    }

    pub fn depth_radius(mut self, r: usize) -> Self {
        self.params.depth_radius = r;
        self
    }
    pub fn bias(mut self, b: f32) -> Self {
        self.params.bias = b;
        self
    }
    pub fn alpha(mut self, a: f32) -> Self {
        self.params.alpha = a;
        self
    }
    pub fn beta(mut self, b: f32) -> Self {
        self.params.beta = b;
        self
    }

    /// The parameters in TensorFlow's convention.
    pub fn params(&self) -> LrnParams {
        self.params
    }
}

impl Layer for LocalResponseNormalization {
    fn kind(&self) -> &'static str {
        "LocalResponseNormalization"
    }

    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let kind = self.kind();
        expect_rank::<3>(kind, input, "[H, W, C] images")?;
        self.params
            .check("LocalResponseNormalization")
            .map_err(|e| Error::config(kind, e.to_string()))?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        Ok(ops::lrn(x, self.params)?)
    }

    fn describe(&self) -> String {
        let p = self.params;
        format!(
            "r={} bias={} alpha={} beta={}",
            p.depth_radius, p.bias, p.alpha, p.beta
        )
    }
}
