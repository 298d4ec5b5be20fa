//! Residual networks with basic residual units, as the seeds write them in Keras: a 7×7/2
//! convolution, batch norm, ReLU and a 3×3/2 max-pool, then residual units, global average
//! pooling and a dense head.

use wgrad_graph::{ops, Var};
use wgrad_nn::layers::{
    Activation, BatchNormalization, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D,
};
use wgrad_nn::{Act, Ctx, Error, Layer, Param, Result, Sequential};
use wgrad_tensor::Device;

/// The seeds' `ResidualUnit(filters, strides)`: Conv 3×3/s → BN → ReLU → Conv 3×3 → BN, plus a
/// skip that is the identity, or Conv 1×1/s → BN when the stride or the width changes; ReLU
/// after the sum. Convolutions have no bias (batch norm follows each).
pub struct ResidualUnit {
    filters: usize,
    strides: usize,
    main: Option<Sequential>,
    skip: Option<Sequential>,
}

impl ResidualUnit {
    pub fn new(filters: usize, strides: usize) -> ResidualUnit {
        ResidualUnit {
            filters,
            strides,
            main: None,
            skip: None,
        }
    }

    fn built(&self) -> Result<&Sequential> {
        self.main.as_ref().ok_or_else(|| Error::Config {
            layer: "ResidualUnit".into(),
            reason: "called before build(): add it to a model first".into(),
        })
    }
}

impl Layer for ResidualUnit {
    fn kind(&self) -> &'static str {
        "ResidualUnit"
    }

    /// Both branches' tensors and their sum (the ReLU of the sum is the unit's output).
    fn inner_shapes(&self) -> Vec<Vec<usize>> {
        let mut v: Vec<Vec<usize>> = [&self.main, &self.skip]
            .into_iter()
            .flatten()
            .flat_map(|m| m.all_shapes())
            .collect();
        if let Some(out) = v.last().cloned() {
            v.push(out);
        }
        v
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let (f, s) = (self.filters, self.strides);
        let main = Sequential::new(dev, input)
            .seed(seed)
            .add(Conv2D::new(f, 3).strides(s).same().use_bias(false))?
            .add(BatchNormalization::new())?
            .add(Activation(Act::Relu))?
            .add(Conv2D::new(f, 3).same().use_bias(false))?
            .add(BatchNormalization::new())?;
        let out = main.output_shape().to_vec();
        self.main = Some(main);
        self.skip = if s > 1 || input.last() != Some(&f) {
            Some(
                Sequential::new(dev, input)
                    .seed(seed ^ 0x5eed)
                    .add(Conv2D::new(f, 1).strides(s).same().use_bias(false))?
                    .add(BatchNormalization::new())?,
            )
        } else {
            None
        };
        Ok(out)
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        self.built()?;
        let z = self.main.as_mut().expect("checked").forward(x, ctx)?;
        let skip = match &mut self.skip {
            Some(s) => s.forward(x, ctx)?,
            None => x.clone(),
        };
        Ok(ops::relu(&ops::add(&z, &skip)?)?)
    }

    fn params(&self) -> Vec<&Param> {
        let mut p = self.main.as_ref().map_or(Vec::new(), |m| m.params());
        p.extend(self.skip.iter().flat_map(|s| s.params()));
        p
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut p = self.main.as_mut().map_or(Vec::new(), |m| m.params_mut());
        p.extend(self.skip.iter_mut().flat_map(|s| s.params_mut()));
        p
    }

    fn named_params(&self) -> Vec<(String, &Param)> {
        let mut p = Vec::new();
        for (tag, m) in [("main", self.main.as_ref()), ("skip", self.skip.as_ref())] {
            for (n, v) in m.map_or(Vec::new(), |m| m.named_params()) {
                p.push((format!("{tag}/{n}"), v));
            }
        }
        p
    }

    fn describe(&self) -> String {
        format!("{} /{}", self.filters, self.strides)
    }
}

/// A ResNet of basic units: `blocks[i]` units of width 64·2^i, the first of each stage after
/// the first with stride 2.
fn resnet(
    dev: &Device,
    input: [usize; 3],
    num_classes: usize,
    blocks: &[usize],
) -> Result<Sequential> {
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
            m = m.add(ResidualUnit::new(filters, strides))?;
            prev = filters;
        }
    }
    m.add(GlobalAvgPool2D::new())?
        .add(Flatten::new())?
        .add(Dense::new(num_classes))
}

/// The seeds' ResNet-34: units [64]×3 + [128]×4 + [256]×6 + [512]×3; with 10 classes,
/// 21,306,826 parameters (21,289,802 trainable + 17,024 batch-norm statistics), as Keras
/// counts it. The head outputs logits (softmax in the loss).
pub fn resnet34(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Sequential> {
    resnet(dev, input, num_classes, &[3, 4, 6, 3])
}

/// ResNet-18: units [64]×2 + [128]×2 + [256]×2 + [512]×2.
pub fn resnet18(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Sequential> {
    resnet(dev, input, num_classes, &[2, 2, 2, 2])
}
