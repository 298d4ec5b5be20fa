//! DepthwiseConv2D, SeparableConv2D and Conv2DTranspose: the convolutions of Xception and of
//! decoders, with Keras's weight names and layouts.

use wgrad_graph::{ops, Var};
use wgrad_tensor::geometry_2d;
use wgrad_tensor::transpose_output_shape;
use wgrad_tensor::{Conv2dOptions, Device, Padding, Tensor};

use super::{bias_param, built, expect_rank};
use crate::{Act, Ctx, Initializer, Layer, Param, Result, WeightLayout};

/// Window options every convolution layer here shares, with Keras's defaults.
#[derive(Clone, Copy, Debug)]
struct Window {
    kernel: [usize; 2],
    opts: Conv2dOptions,
}

impl Window {
    fn new(k: usize) -> Window {
        Window {
            kernel: [k, k],
            opts: Conv2dOptions::default(),
        }
    }

    /// What a depthwise layer builds from its `[H, W, C]` input: the output extents and a
    /// Glorot-uniform depthwise kernel `(kh, kw, C, M)` (fan-in kh·kw, fan-out kh·kw·M, as
    /// Keras counts them). Sets `groups` to C, which makes the convolution depthwise.
    fn build_depthwise(
        &mut self,
        kind: &'static str,
        dev: &Device,
        input: &[usize],
        m: usize,
        seed: u64,
    ) -> Result<([usize; 3], Tensor)> {
        let [h, w, c] = expect_rank::<3>(kind, input, "[H, W, C] images")?;
        let [kh, kw] = self.kernel;
        let o = &self.opts;
        let geo = geometry_2d(kind, [h, w], self.kernel, o.stride, o.dilation, o.padding)?;
        let k =
            Initializer::GlorotUniform.init(dev, &[kh, kw, c, m], kh * kw, kh * kw * m, seed)?;
        self.opts.groups = c;
        Ok(([geo[0].output, geo[1].output, c], k))
    }
}

/// A zero-initialised bias of `n` values when the layer has one (Keras's default here).
fn zero_bias(dev: &Device, on: bool, n: usize) -> Result<Option<Param>> {
    bias_param(dev, on, Initializer::Zeros, n, [1, 1], 0)
}

macro_rules! window_setters {
    () => {
        pub fn strides(mut self, s: usize) -> Self {
            self.w.opts.stride = [s, s];
            self
        }
        pub fn same(self) -> Self {
            self.padding(Padding::Same)
        }
        pub fn dilation(mut self, d: usize) -> Self {
            self.w.opts.dilation = [d, d];
            self
        }
        setters! {
            activation(a: Act) => act;
            use_bias(on: bool) => use_bias;
            padding(p: Padding) => w.opts.padding;
        }
    };
}

/// Keras's `DepthwiseConv2D(kernel_size, depth_multiplier)`: each input channel convolved
/// with its own `depth_multiplier` filters. The kernel has Keras's shape `(kh, kw, C, M)`;
/// output channel `c·M + m` — exactly a grouped convolution with `C` groups, whose HWIO
/// filter `(kh, kw, 1, C·M)` is the same memory, so the kernel is passed as a reshaped view.
#[derive(Debug)]
pub struct DepthwiseConv2D {
    w: Window,
    multiplier: usize,
    act: Act,
    use_bias: bool,
    kernel: Option<Param>,
    bias: Option<Param>,
}

impl DepthwiseConv2D {
    pub fn new(kernel_size: usize) -> DepthwiseConv2D {
        DepthwiseConv2D {
            w: Window::new(kernel_size),
            multiplier: 1,
            act: Act::Linear,
            use_bias: true,
            kernel: None,
            bias: None,
        }
    }
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.multiplier = m;
        self
    }
    window_setters!();
}

impl Layer for DepthwiseConv2D {
    fn kind(&self) -> &'static str {
        "DepthwiseConv2D"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let m = self.multiplier.max(1);
        let ([oh, ow, c], k) = self
            .w
            .build_depthwise("DepthwiseConv2D", dev, input, m, seed)?;
        self.kernel = Some(Param::new("kernel", k).with_layout(WeightLayout::Depthwise));
        self.bias = zero_bias(dev, self.use_bias, c * m)?;
        Ok(vec![oh, ow, c * m])
    }

    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let k = built("DepthwiseConv2D", &self.kernel)?;
        let s = k.shape();
        let hwio = ops::reshape(k.var(), &[s[0], s[1], 1, s[2] * s[3]])?;
        Ok(ops::conv2d(
            x,
            &hwio,
            self.bias.as_ref().map(|b| b.var()),
            self.act,
            self.w.opts,
        )?)
    }

    fn params(&self) -> Vec<&Param> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }
}

/// Keras's `SeparableConv2D(filters, kernel_size)`: a depthwise convolution
/// (`depthwise_kernel`, `(kh, kw, C, M)`) then a 1×1 convolution (`pointwise_kernel`,
/// `(1, 1, C·M, filters)`) with the bias and activation fused into the second.
#[derive(Debug)]
pub struct SeparableConv2D {
    filters: usize,
    w: Window,
    multiplier: usize,
    act: Act,
    use_bias: bool,
    depthwise: Option<Param>,
    pointwise: Option<Param>,
    bias: Option<Param>,
}

impl SeparableConv2D {
    pub fn new(filters: usize, kernel_size: usize) -> SeparableConv2D {
        SeparableConv2D {
            filters,
            w: Window::new(kernel_size),
            multiplier: 1,
            act: Act::Linear,
            use_bias: true,
            depthwise: None,
            pointwise: None,
            bias: None,
        }
    }
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.multiplier = m;
        self
    }
    window_setters!();
}

impl Layer for SeparableConv2D {
    fn kind(&self) -> &'static str {
        "SeparableConv2D"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let m = self.multiplier.max(1);
        let ([oh, ow, c], dw) = self
            .w
            .build_depthwise("SeparableConv2D", dev, input, m, seed)?;
        let pw = Initializer::GlorotUniform.init(
            dev,
            &[1, 1, c * m, self.filters],
            c * m,
            self.filters,
            seed ^ 2,
        )?;
        self.depthwise =
            Some(Param::new("depthwise_kernel", dw).with_layout(WeightLayout::Depthwise));
        self.pointwise = Some(Param::new("pointwise_kernel", pw).with_layout(WeightLayout::Conv));
        self.bias = zero_bias(dev, self.use_bias, self.filters)?;
        Ok(vec![oh, ow, self.filters])
    }

    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let dk = built("SeparableConv2D", &self.depthwise)?;
        let pk = built("SeparableConv2D", &self.pointwise)?;
        let s = dk.shape();
        let hwio = ops::reshape(dk.var(), &[s[0], s[1], 1, s[2] * s[3]])?;
        let d = ops::conv2d(x, &hwio, None, Act::Linear, self.w.opts)?;
        Ok(ops::conv2d(
            &d,
            pk.var(),
            self.bias.as_ref().map(|b| b.var()),
            self.act,
            Conv2dOptions::default(),
        )?)
    }

    fn params(&self) -> Vec<&Param> {
        [&self.depthwise, &self.pointwise, &self.bias]
            .into_iter()
            .flatten()
            .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        [&mut self.depthwise, &mut self.pointwise, &mut self.bias]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Keras's `Conv2DTranspose(filters, kernel_size, strides, padding, output_padding)`: kernel
/// `(kh, kw, filters, C)` as TensorFlow stores it; output `H·s` with `same` padding.
#[derive(Debug)]
pub struct Conv2DTranspose {
    filters: usize,
    w: Window,
    output_padding: [usize; 2],
    act: Act,
    use_bias: bool,
    kernel: Option<Param>,
    bias: Option<Param>,
}

impl Conv2DTranspose {
    pub fn new(filters: usize, kernel_size: usize) -> Conv2DTranspose {
        Conv2DTranspose {
            filters,
            w: Window::new(kernel_size),
            output_padding: [0, 0],
            act: Act::Linear,
            use_bias: true,
            kernel: None,
            bias: None,
        }
    }
    pub fn output_padding(mut self, ph: usize, pw: usize) -> Self {
        self.output_padding = [ph, pw];
        self
    }
    window_setters!();
}

impl Layer for Conv2DTranspose {
    fn kind(&self) -> &'static str {
        "Conv2DTranspose"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let [h, w, c] = expect_rank::<3>("Conv2DTranspose", input, "[H, W, C] images")?;
        let [kh, kw] = self.w.kernel;
        let shape = [kh, kw, self.filters, c];
        let out = transpose_output_shape(
            "Conv2DTranspose",
            &[1, h, w, c],
            &shape,
            self.w.opts,
            self.output_padding,
        )?;
        let k = Initializer::GlorotUniform.init(
            dev,
            &shape,
            kh * kw * self.filters,
            kh * kw * c,
            seed,
        )?;
        self.kernel = Some(Param::new("kernel", k).with_layout(WeightLayout::ConvTranspose));
        self.bias = zero_bias(dev, self.use_bias, self.filters)?;
        Ok(out[1..].to_vec())
    }

    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let k = built("Conv2DTranspose", &self.kernel)?;
        let b = self.bias.as_ref().map(|b| b.var());
        let y = ops::conv2d_transpose(x, k.var(), b, self.w.opts, self.output_padding)?;
        Ok(ops::activation(&y, self.act)?)
    }

    fn params(&self) -> Vec<&Param> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }
}
