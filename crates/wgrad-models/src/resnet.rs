//! Residual networks with basic residual units, as the seeds write them in Keras: a 7×7/2
//! convolution, batch norm, ReLU and a 3×3/2 max-pool, then residual units, global average
//! pooling and a dense head.
//!
//! The same networks in torchvision's conventions ([`resnet34_pytorch`]) differ only where
//! the frameworks do: symmetric padding (TensorFlow's "same" puts the odd pixel of a strided
//! window at the bottom/right, PyTorch pads both sides alike) and batch-norm epsilon 1e-5.
//! With [`torchvision_resnet_name`] as the importer's `rename`, a torchvision state dict
//! (converted to safetensors) loads into them.

use wgrad_graph::Var;
use wgrad_nn::layers::{
    Activation, BatchNormalization, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D,
};
use wgrad_nn::{Act, Ctx, Error, Functional, Layer, Param, Result, Sequential};
use wgrad_tensor::{Device, Padding};

/// Which framework's padding and batch-norm conventions a ResNet follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Convention {
    /// TensorFlow/Keras: "same" padding, epsilon 1e-3 (the seeds' code).
    #[default]
    Keras,
    /// PyTorch/torchvision: symmetric padding of k/2, epsilon 1e-5, momentum 0.9 (PyTorch's
    /// `momentum=0.1` counts the other way).
    PyTorch,
}

impl Convention {
    /// A k×k convolution's padding at stride `s`, as "same" is meant in this convention.
    fn pad(self, k: usize) -> Padding {
        match self {
            Convention::Keras => Padding::Same,
            Convention::PyTorch => {
                let p = k / 2;
                Padding::Explicit {
                    top: p,
                    bottom: p,
                    left: p,
                    right: p,
                }
            }
        }
    }

    fn batch_norm(self) -> BatchNormalization {
        match self {
            Convention::Keras => BatchNormalization::new(),
            Convention::PyTorch => BatchNormalization::new().epsilon(1e-5).momentum(0.9),
        }
    }
}

/// The seeds' `ResidualUnit(filters, strides)`: Conv 3×3/s → BN → ReLU → Conv 3×3 → BN, plus a
/// skip that is the identity, or Conv 1×1/s → BN when the stride or the width changes; ReLU
/// after the sum. Convolutions have no bias (batch norm follows each).
pub struct ResidualUnit {
    filters: usize,
    strides: usize,
    convention: Convention,
    main: Option<Sequential>,
    skip: Option<Sequential>,
}

impl ResidualUnit {
    pub fn new(filters: usize, strides: usize) -> ResidualUnit {
        ResidualUnit {
            filters,
            strides,
            convention: Convention::Keras,
            main: None,
            skip: None,
        }
    }

    /// Padding and batch norm as in `convention` (Keras by default).
    pub fn convention(mut self, c: Convention) -> Self {
        self.convention = c;
        self
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

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        let (f, s, c) = (self.filters, self.strides, self.convention);
        let main = Sequential::new(dev, input)
            .seed(seed)
            .add(
                Conv2D::new(f, 3)
                    .strides(s)
                    .padding(c.pad(3))
                    .use_bias(false),
            )?
            .add(c.batch_norm())?
            .add(Activation(Act::Relu))?
            .add(Conv2D::new(f, 3).padding(c.pad(3)).use_bias(false))?
            .add(c.batch_norm())?;
        let out = main.output_shape().to_vec();
        self.main = Some(main);
        self.skip = if s > 1 || input.last() != Some(&f) {
            Some(
                Sequential::new(dev, input)
                    .seed(seed ^ 0x5eed)
                    .add(
                        Conv2D::new(f, 1)
                            .strides(s)
                            .padding(c.pad(1))
                            .use_bias(false),
                    )?
                    .add(c.batch_norm())?,
            )
        } else {
            None
        };
        Ok(out)
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        self.built()?;
        let main = self.main.as_mut().expect("checked");
        if ctx.training || wgrad_graph::is_grad_enabled() {
            // Main branch first: the order the backward pass frees its tensors in.
            let z = main.forward(x, ctx)?;
            let skip = match &mut self.skip {
                Some(s) => s.forward(x, ctx)?,
                None => x.clone(),
            };
            return Ok(wgrad_graph::ops::relu(&wgrad_graph::ops::add(&z, &skip)?)?);
        }
        // Inference: the skip first, so that the sum and the ReLU happen in the write-out of
        // the main branch's last convolution.
        let skip = match &mut self.skip {
            Some(s) => s.forward(x, ctx)?,
            None => x.clone(),
        };
        main.forward_residual(x, ctx, &skip, Act::Relu)
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

    fn hints(&self) -> Option<&dyn wgrad_nn::Hints> {
        Some(self)
    }
    fn hints_mut(&mut self) -> Option<&mut dyn wgrad_nn::Hints> {
        Some(self)
    }
}

impl wgrad_nn::Hints for ResidualUnit {
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
}

/// A ResNet of basic units: `blocks[i]` units of width 64·2^i, the first of each stage after
/// the first with stride 2.
fn resnet(
    dev: &Device,
    input: [usize; 3],
    num_classes: usize,
    blocks: &[usize],
    c: Convention,
) -> Result<Functional> {
    let mut m = Sequential::new(dev, &input)
        .add(
            Conv2D::new(64, 7)
                .strides(2)
                .padding(c.pad(7))
                .use_bias(false),
        )?
        .add(c.batch_norm())?
        .add(Activation(Act::Relu))?
        .add(MaxPool2D::new(3).strides(2).padding(c.pad(3)))?;
    let mut prev = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let filters = 64 << stage;
        for _ in 0..n {
            let strides = if filters == prev { 1 } else { 2 };
            m = m.add(ResidualUnit::new(filters, strides).convention(c))?;
            prev = filters;
        }
    }
    m.add(GlobalAvgPool2D::new())?
        .add(Flatten::new())?
        .add(Dense::new(num_classes))
        .map(Sequential::into_model)
}

/// The seeds' ResNet-34: units [64]×3 + [128]×4 + [256]×6 + [512]×3; with 10 classes,
/// 21,306,826 parameters (21,289,802 trainable + 17,024 batch-norm statistics), as Keras
/// counts it. The head outputs logits (softmax in the loss).
pub fn resnet34(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    resnet(dev, input, num_classes, &RESNET34_BLOCKS, Convention::Keras)
}

/// Units per stage of ResNet-34.
pub const RESNET34_BLOCKS: [usize; 4] = [3, 4, 6, 3];
/// Units per stage of ResNet-18.
pub const RESNET18_BLOCKS: [usize; 4] = [2, 2, 2, 2];

/// ResNet-34 in torchvision's conventions (see the module docs): with 1000 classes at
/// 224×224×3, 21,797,672 parameters as torchvision counts them (weights and batch-norm
/// γ/β; the 17,024 running statistics are buffers there).
pub fn resnet34_pytorch(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    resnet(
        dev,
        input,
        num_classes,
        &RESNET34_BLOCKS,
        Convention::PyTorch,
    )
}

/// ResNet-18 in torchvision's conventions.
pub fn resnet18_pytorch(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    resnet(
        dev,
        input,
        num_classes,
        &RESNET18_BLOCKS,
        Convention::PyTorch,
    )
}

/// torchvision's state-dict name for a weight of these ResNets (`blocks`: units per stage),
/// for [`wgrad_nn::Import::rename`]: `conv2d/kernel` → `conv1.weight`,
/// `residual_unit_4/main/batch_normalization_1/moving_variance` → `layer2.1.bn2.running_var`,
/// `residual_unit_3/skip/conv2d/kernel` → `layer2.0.downsample.0.weight`, `dense/bias` →
/// `fc.bias`. Names it does not know are returned in PyTorch's default form.
pub fn torchvision_resnet_name(blocks: &[usize], name: &str) -> String {
    let (path, weight) = name.rsplit_once('/').unwrap_or(("", name));
    let weight = wgrad_nn::import::pytorch_weight(weight);
    let parts: Vec<&str> = path.split('/').collect();
    let module = match parts.as_slice() {
        ["conv2d"] => "conv1".to_string(),
        ["batch_normalization"] => "bn1".to_string(),
        ["dense"] => "fc".to_string(),
        [unit, branch, layer] if unit.starts_with("residual_unit") => {
            let i: usize = unit
                .strip_prefix("residual_unit")
                .and_then(|n| n.strip_prefix('_'))
                .map_or(Some(0), |n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let (mut stage, mut first) = (0, 0);
            while stage < blocks.len() && i >= first + blocks[stage] {
                first += blocks[stage];
                stage += 1;
            }
            let sub = match (*branch, *layer) {
                ("main", "conv2d") => "conv1",
                ("main", "batch_normalization") => "bn1",
                ("main", "conv2d_1") => "conv2",
                ("main", "batch_normalization_1") => "bn2",
                ("skip", "conv2d") => "downsample.0",
                ("skip", "batch_normalization") => "downsample.1",
                _ => return wgrad_nn::import::pytorch_name(name),
            };
            format!("layer{}.{}.{sub}", stage + 1, i - first)
        }
        _ => return wgrad_nn::import::pytorch_name(name),
    };
    format!("{module}.{weight}")
}

/// ResNet-18: units [64]×2 + [128]×2 + [256]×2 + [512]×2.
pub fn resnet18(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    resnet(dev, input, num_classes, &RESNET18_BLOCKS, Convention::Keras)
}
