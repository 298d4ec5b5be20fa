//! Squeeze-and-excitation residual networks (Hu et al., 2018): the basic residual unit of
//! [`crate::ResidualUnit`] with its residual branch rescaled channel by channel, by weights
//! computed from the branch's global average, before the skip is added.

use wgrad_graph::Var;
use wgrad_nn::layers::{
    Activation, BatchNormalization, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, Reshape,
};
use wgrad_nn::{Act, Add, Ctx, Error, Functional, Layer, Multiply, Param, Result, Sequential};
use wgrad_tensor::Device;

/// A basic residual unit with squeeze-and-excitation: Conv 3×3/s → BN → ReLU → Conv 3×3 → BN
/// gives the branch `u` (`C` = `filters` channels); GlobalAvgPool → Dense `C/r` ReLU → Dense
/// `C` sigmoid → Reshape `[1, 1, C]` gives per-channel scales that multiply `u`; the skip (the
/// identity, or Conv 1×1/s → BN when the stride or the width changes) is added, then ReLU.
/// Convolutions have no bias (batch norm follows each); the two dense layers have. The
/// reduction ratio `r` is 16 unless set with [`SeResidualUnit::ratio`].
///
/// Inside, the unit is a [`Functional`] graph whose layers are named `conv1`, `bn1`, `conv2`,
/// `bn2`, `se_squeeze`, `se_reduce`, `se_expand`, `se_reshape`, `se_scale`, `skip_conv`,
/// `skip_bn`: its weights are `se_reduce/kernel` and so on.
pub struct SeResidualUnit {
    filters: usize,
    strides: usize,
    ratio: usize,
    graph: Option<Functional>,
}

impl SeResidualUnit {
    pub fn new(filters: usize, strides: usize) -> SeResidualUnit {
        SeResidualUnit {
            filters,
            strides,
            ratio: 16,
            graph: None,
        }
    }

    /// The squeeze-and-excitation reduction ratio `r`: the bottleneck has `filters / r` units.
    pub fn ratio(mut self, r: usize) -> Self {
        self.ratio = r;
        self
    }

    fn built(&self) -> Result<&Functional> {
        self.graph.as_ref().ok_or_else(|| Error::Config {
            layer: "SeResidualUnit".into(),
            reason: "called before build(): add it to a model first".into(),
        })
    }
}

impl Layer for SeResidualUnit {
    fn kind(&self) -> &'static str {
        "SeResidualUnit"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let (f, s, r) = (self.filters, self.strides, self.ratio);
        if r == 0 || f / r == 0 {
            return Err(Error::Config {
                layer: "SeResidualUnit".into(),
                reason: format!("ratio {r} leaves no bottleneck units for {f} filters"),
            });
        }
        let mut g = Functional::new(dev).seed(seed);
        let x = g.input(input);
        let conv1 = Conv2D::new(f, 3).strides(s).same().use_bias(false);
        let u = g.apply_named("conv1", conv1, x)?;
        let u = g.apply_named("bn1", BatchNormalization::new(), u)?;
        let u = g.apply_named("relu1", Activation(Act::Relu), u)?;
        let u = g.apply_named("conv2", Conv2D::new(f, 3).same().use_bias(false), u)?;
        let u = g.apply_named("bn2", BatchNormalization::new(), u)?;
        // Squeeze, excite, scale.
        let z = g.apply_named("se_squeeze", GlobalAvgPool2D::new(), u)?;
        let z = g.apply_named("se_reduce", Dense::new(f / r).activation(Act::Relu), z)?;
        let z = g.apply_named("se_expand", Dense::new(f).activation(Act::Sigmoid), z)?;
        let z = g.apply_named("se_reshape", Reshape::new(&[1, 1, f]), z)?;
        let u = g.merge_named("se_scale", Multiply, &[u, z])?;
        let skip = if s > 1 || input.last() != Some(&f) {
            let conv = Conv2D::new(f, 1).strides(s).same().use_bias(false);
            let k = g.apply_named("skip_conv", conv, x)?;
            g.apply_named("skip_bn", BatchNormalization::new(), k)?
        } else {
            x
        };
        let y = g.merge_named("add", Add, &[u, skip])?;
        let y = g.apply_named("out", Activation(Act::Relu), y)?;
        g.outputs(&[y])?;
        let out = g.shape(y).to_vec();
        self.graph = Some(g);
        Ok(out)
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        self.built()?;
        self.graph.as_mut().expect("checked").forward(x, ctx)
    }

    fn params(&self) -> Vec<&Param> {
        self.graph.as_ref().map_or(Vec::new(), |g| g.params())
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.graph.as_mut().map_or(Vec::new(), |g| g.params_mut())
    }

    fn named_params(&self) -> Vec<(String, &Param)> {
        self.graph.as_ref().map_or(Vec::new(), |g| g.named_params())
    }

    fn describe(&self) -> String {
        format!("{} /{} se 1/{}", self.filters, self.strides, self.ratio)
    }

    fn hints(&self) -> Option<&dyn wgrad_nn::Hints> {
        Some(self)
    }
    fn hints_mut(&mut self) -> Option<&mut dyn wgrad_nn::Hints> {
        Some(self)
    }
}

impl wgrad_nn::Hints for SeResidualUnit {
    fn inner_shapes(&self) -> Vec<Vec<usize>> {
        self.graph.as_ref().map_or(Vec::new(), |g| g.inner_shapes())
    }
}

/// A ResNet of [`SeResidualUnit`]s (r = 16): the ResNet stem (7×7/2 conv 64 without bias, BN,
/// ReLU, 3×3/2 max-pool), `blocks[i]` units of width 64·2^i (the first of each stage after the
/// first with stride 2), global average pooling and a dense head (logits).
pub fn se_resnet(
    dev: &Device,
    input: [usize; 3],
    num_classes: usize,
    blocks: &[usize],
) -> Result<Functional> {
    let mut m = Sequential::new(dev, &input)
        .add(Conv2D::new(64, 7).strides(2).same().use_bias(false))?
        .add(BatchNormalization::new())?
        .add(Activation(Act::Relu))?
        .add(MaxPool2D::new(3).strides(2).same())?;
    let mut prev = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let filters = 64 << stage;
        for _ in 0..n {
            let strides = if filters == prev { 1 } else { 2 };
            m = m.add(SeResidualUnit::new(filters, strides))?;
            prev = filters;
        }
    }
    m.add(GlobalAvgPool2D::new())?
        .add(Flatten::new())?
        .add(Dense::new(num_classes))
        .map(Sequential::into_model)
}

/// SE-ResNet-34: [`crate::resnet34`] with squeeze-and-excitation units, 3 of width 64, 4 of
/// 128, 6 of 256 and 3 of 512, for 224×224×3 (any size from 32×32). With 1000 classes: 21,958,868
/// trainable parameters (ResNet-34's 21,797,672 plus 161,196 in the SE dense layers) and the
/// same 17,024 batch-norm statistics.
pub fn se_resnet34(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    se_resnet(dev, input, num_classes, &[3, 4, 6, 3])
}
