//! Dense, shape and elementwise layers.

use wgrad_graph::{ops, Var};
use wgrad_tensor::Device;

use super::{bias_param, built, expect_rank};
use crate::{Act, Ctx, Error, Initializer, Layer, Param, Result, WeightLayout};

/// Keras's `Dense(units, activation, use_bias)` on `[N, in]` inputs; ReLU and leaky ReLU are
/// fused into the matmul's write-out.
#[derive(Debug)]
pub struct Dense {
    units: usize,
    act: Act,
    use_bias: bool,
    kernel_init: Initializer,
    bias_init: Initializer,
    kernel: Option<Param>,
    bias: Option<Param>,
}

impl Dense {
    pub fn new(units: usize) -> Dense {
        Dense {
            units,
            act: Act::Linear,
            use_bias: true,
            kernel_init: Initializer::GlorotUniform,
            bias_init: Initializer::Zeros,
            kernel: None,
            bias: None,
        }
    }
    setters! {
        activation(a: Act) => act;
        use_bias(on: bool) => use_bias;
        kernel_initializer(i: Initializer) => kernel_init;
        bias_initializer(i: Initializer) => bias_init;
    }
}

impl Layer for Dense {
    fn kind(&self) -> &'static str {
        "Dense"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let [n_in] = expect_rank::<1>("Dense", input, "flat features (add Flatten first)")?;
        let w = self
            .kernel_init
            .init(dev, &[n_in, self.units], n_in, self.units, seed)?;
        self.kernel = Some(Param::new("kernel", w).with_layout(WeightLayout::Dense));
        self.bias = bias_param(
            dev,
            self.use_bias,
            self.bias_init,
            self.units,
            [n_in, self.units],
            seed ^ 1,
        )?;
        Ok(vec![self.units])
    }

    fn forward(&mut self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        let k = built("Dense", &self.kernel)?;
        let b = self.bias.as_ref().map(|b| b.var());
        Ok(ops::dense(x, k.var(), b, self.act)?)
    }

    fn params(&self) -> Vec<&Param> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }

    fn describe(&self) -> String {
        if self.act == Act::Linear {
            String::new()
        } else {
            self.act.name().into()
        }
    }
}

/// Flattens each sample to one axis (a view: no copy).
#[derive(Debug, Default)]
pub struct Flatten;

impl Flatten {
    pub fn new() -> Flatten {
        Flatten
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let n = x.shape().first().copied().unwrap_or(1);
        let rest = x.value().numel() / n.max(1);
        Ok(ops::reshape(x, &[n, rest])?)
    }
}

/// Reshapes each sample to `target` (its element count must match).
#[derive(Debug)]
pub struct Reshape {
    target: Vec<usize>,
}

impl Reshape {
    pub fn new(target: &[usize]) -> Reshape {
        Reshape {
            target: target.to_vec(),
        }
    }
}

impl Layer for Reshape {
    fn kind(&self) -> &'static str {
        "Reshape"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let (a, b) = (
            input.iter().product::<usize>(),
            self.target.iter().product::<usize>(),
        );
        if a != b {
            return Err(Error::config(
                "Reshape",
                format!(
                    "cannot reshape {input:?} ({a} values) to {:?} ({b}): the target must hold the same number of values",
                    self.target
                ),
            ));
        }
        Ok(self.target.clone())
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let mut s = vec![x.shape()[0]];
        s.extend(&self.target);
        Ok(ops::reshape(x, &s)?)
    }
}

/// An activation on its own.
#[derive(Debug)]
pub struct Activation(pub Act);

impl Layer for Activation {
    fn kind(&self) -> &'static str {
        "Activation"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        Ok(ops::activation(x, self.0)?)
    }
    fn describe(&self) -> String {
        self.0.name().into()
    }

    fn hints(&self) -> Option<&dyn crate::Hints> {
        Some(self)
    }
    fn hints_mut(&mut self) -> Option<&mut dyn crate::Hints> {
        Some(self)
    }
}

impl crate::Hints for Activation {
    fn as_activation(&self) -> Option<Act> {
        Some(self.0)
    }
}

/// `x · scale + offset` (Keras's `Rescaling`, e.g. `1/255` for 8-bit images).
#[derive(Debug)]
pub struct Rescaling {
    scale: f32,
    offset: f32,
}

impl Rescaling {
    pub fn new(scale: f32, offset: f32) -> Rescaling {
        Rescaling { scale, offset }
    }
}

impl Layer for Rescaling {
    fn kind(&self) -> &'static str {
        "Rescaling"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        Ok(ops::unary(
            x,
            wgrad_tensor::UnaryOp::Affine(self.scale, self.offset),
        )?)
    }
}

/// Inverted dropout: in training, zeroes each value with probability `rate` and scales the
/// rest by 1/(1 − rate); the identity at inference. Masks come from the step's seed.
#[derive(Debug)]
pub struct Dropout {
    rate: f32,
}

impl Dropout {
    pub fn new(rate: f32) -> Dropout {
        Dropout { rate }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::config(
                "Dropout",
                format!("rate {} must be in [0, 1)", self.rate),
            ));
        }
        Ok(input.to_vec())
    }
    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        if !ctx.training {
            return Ok(x.clone());
        }
        Ok(ops::dropout(x, self.rate, ctx.next_seed())?)
    }
    fn describe(&self) -> String {
        format!("rate {}", self.rate)
    }
}
