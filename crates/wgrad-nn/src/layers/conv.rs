//! `Conv2D`: the 2-D convolution layer (NHWC input, HWIO kernel).

use wgrad_graph::{ops, Var};
use wgrad_tensor::geometry_2d;
use wgrad_tensor::{Conv2dOptions, ConvEpilogue, Device, Padding, Tensor};

use super::{bias_param, built, expect_rank};
use crate::{Act, Ctx, Error, Initializer, Layer, Param, Result, WeightLayout};

/// Keras's `Conv2D(filters, kernel_size, strides, padding, dilation_rate, groups, activation,
/// use_bias, kernel_initializer, bias_initializer)`. ReLU and leaky ReLU are fused into the
/// convolution's write-out.
#[derive(Debug)]
pub struct Conv2D {
    filters: usize,
    kernel_size: [usize; 2],
    opts: Conv2dOptions,
    act: Act,
    use_bias: bool,
    kernel_init: Initializer,
    bias_init: Initializer,
    kernel: Option<Param>,
    bias: Option<Param>,
    /// Inference folding: (scale, shift, own bias) and the write-out bias made of them.
    folded: Option<([Option<Tensor>; 3], Tensor)>,
}

impl Conv2D {
    /// `filters` output channels, a square `kernel_size` window; stride 1, valid padding.
    pub fn new(filters: usize, kernel_size: usize) -> Conv2D {
        Conv2D {
            filters,
            kernel_size: [kernel_size; 2],
            opts: Conv2dOptions::default(),
            act: Act::Linear,
            use_bias: true,
            kernel_init: Initializer::GlorotUniform,
            bias_init: Initializer::Zeros,
            kernel: None,
            bias: None,
            folded: None,
        }
    }

    pub fn kernel_size(mut self, kh: usize, kw: usize) -> Self {
        self.kernel_size = [kh, kw];
        self
    }
    pub fn strides(mut self, s: usize) -> Self {
        self.opts.stride = [s, s];
        self
    }
    pub fn strides_hw(mut self, sh: usize, sw: usize) -> Self {
        self.opts.stride = [sh, sw];
        self
    }
    setters! {
        padding(p: Padding) => opts.padding;
    }
    pub fn same(self) -> Self {
        self.padding(Padding::Same)
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.opts.dilation = [d, d];
        self
    }
    setters! {
        groups(g: usize) => opts.groups;
        activation(a: Act) => act;
        use_bias(on: bool) => use_bias;
        kernel_initializer(i: Initializer) => kernel_init;
        bias_initializer(i: Initializer) => bias_init;
    }
}

impl Layer for Conv2D {
    fn kind(&self) -> &'static str {
        "Conv2D"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let [h, w, c] = expect_rank::<3>("Conv2D", input, "[H, W, C] images")?;
        let g = self.opts.groups;
        if g == 0 || !c.is_multiple_of(g) || !self.filters.is_multiple_of(g) {
            return Err(Error::config(
                "Conv2D",
                format!(
                    "groups = {g} must divide the input channels ({c}) and filters ({})",
                    self.filters
                ),
            ));
        }
        let [kh, kw] = self.kernel_size;
        let geo = geometry_2d(
            "Conv2D",
            [h, w],
            self.kernel_size,
            self.opts.stride,
            self.opts.dilation,
            self.opts.padding,
        )?;
        let shape = [kh, kw, c / g, self.filters];
        let fan_in = kh * kw * c / g;
        let fan_out = kh * kw * self.filters / g;
        self.kernel = Some(
            Param::new(
                "kernel",
                self.kernel_init.init(dev, &shape, fan_in, fan_out, seed)?,
            )
            .with_layout(WeightLayout::Conv),
        );
        self.bias = bias_param(
            dev,
            self.use_bias,
            self.bias_init,
            self.filters,
            [fan_in, fan_out],
            seed ^ 1,
        )?;
        Ok(vec![geo[0].output, geo[1].output, self.filters])
    }

    fn forward(&mut self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        let k = built("Conv2D", &self.kernel)?;
        let b = self.bias.as_ref().map(|b| b.var());
        Ok(ops::conv2d(x, k.var(), b, self.act, self.opts)?)
    }

    fn params(&self) -> Vec<&Param> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }

    fn describe(&self) -> String {
        let [kh, kw] = self.kernel_size;
        let mut s = format!("{kh}x{kw}");
        if self.opts.stride != [1, 1] {
            s += &format!("/{}", self.opts.stride[0]);
        }
        if self.opts.padding == Padding::Same {
            s += " same";
        }
        if self.act != Act::Linear {
            s += &format!(" {}", self.act.name());
        }
        s
    }

    fn hints(&self) -> Option<&dyn crate::Hints> {
        Some(self)
    }
    fn hints_mut(&mut self) -> Option<&mut dyn crate::Hints> {
        Some(self)
    }
}

impl crate::Hints for Conv2D {
    fn own_activation(&self) -> Option<Act> {
        Some(self.act)
    }

    fn forward_with_activation(&mut self, x: &Var, _: &mut Ctx, act: Act) -> Option<Result<Var>> {
        let run = || {
            let k = built("Conv2D", &self.kernel)?;
            let b = self.bias.as_ref().map(|b| b.var());
            Ok(ops::conv2d(x, k.var(), b, act, self.opts)?)
        };
        Some(run())
    }

    fn forward_fused(
        &mut self,
        x: &Var,
        scale: &Tensor,
        shift: &Tensor,
        act: Act,
        residual: Option<&Tensor>,
    ) -> Option<Result<Var>> {
        // A nonlinearity of this layer's own comes before the affine map: nothing to fold.
        let a = act;
        if self.act != Act::Linear || self.kernel.is_none() {
            return None;
        }
        // act((x∗k + b)·scale + shift) = act(x∗k·scale + (b·scale + shift)); the combined
        // bias is kept until scale, shift or b is replaced.
        let from = [
            Some(scale.clone()),
            Some(shift.clone()),
            self.bias.as_ref().map(|b| b.value().clone()),
        ];
        let same = |a: &[Option<Tensor>; 3]| {
            a.iter().zip(&from).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => x.shares_buffer(y),
                (None, None) => true,
                _ => false,
            })
        };
        let cached = self
            .folded
            .as_ref()
            .filter(|(src, _)| same(src))
            .map(|(_, b)| b.clone());
        let bias = match (cached, &self.bias) {
            (Some(b), _) => Ok(b),
            (None, Some(b)) => b.value().mul(scale).and_then(|t| t.add(shift)),
            (None, None) => Ok(shift.clone()),
        };
        let bias = match bias {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        self.folded = Some((from, bias.clone()));
        let epi = ConvEpilogue {
            bias: Some(&bias),
            scale: Some(scale),
            activation: a,
            residual,
        };
        let k = self.kernel.as_ref().expect("checked").value();
        Some(
            x.value()
                .conv2d_fused(k, &epi, self.opts)
                .map(Var::new)
                .map_err(Into::into),
        )
    }
}
