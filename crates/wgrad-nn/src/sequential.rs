//! `Sequential`: a stack of layers, each built for the previous one's output shape.

use wgrad_graph::Var;
use wgrad_tensor::Device;

use crate::summary;
use crate::{Act, Ctx, Error, Layer, Param, Result};

struct Entry {
    name: String,
    layer: Box<dyn Layer>,
    output_shape: Vec<usize>,
}

/// Keras's `Sequential`: layers are built as they are added, so a shape mistake is reported
/// at the `add` that causes it, naming the layer.
///
/// ```no_run
/// use wgrad_nn::{layers::*, Act, Sequential};
/// # fn main() -> wgrad_nn::Result<()> {
/// let dev = wgrad_tensor::Device::new()?;
/// let model = Sequential::new(&dev, &[28, 28, 1])
///     .add(Conv2D::new(64, 3).activation(Act::Relu))?
///     .add(MaxPool2D::new(2))?
///     .add(Flatten::new())?
///     .add(Dense::new(128).activation(Act::Relu))?
///     .add(Dense::new(10))?;
/// println!("{}", model.summary(32));
/// # Ok(()) }
/// ```
pub struct Sequential {
    device: Device,
    input_shape: Vec<usize>,
    layers: Vec<Entry>,
    seed: u64,
}

impl Sequential {
    /// An empty model for samples of `input_shape` (no batch axis), weights seeded with 0.
    pub fn new(device: &Device, input_shape: &[usize]) -> Sequential {
        Sequential {
            device: device.clone(),
            input_shape: input_shape.to_vec(),
            layers: Vec::new(),
            seed: 0,
        }
    }

    /// The seed of the initial weights (layers added afterwards use it).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Appends `layer`, built for the current output shape (Keras's `model.add`, hence the
    /// name that clippy would keep for `std::ops::Add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, layer: impl Layer + 'static) -> Result<Self> {
        self.add_boxed(Box::new(layer))
    }

    pub fn add_boxed(self, layer: Box<dyn Layer>) -> Result<Self> {
        let name = self.unique_name(layer.kind());
        self.add_entry(name, layer)
    }

    /// Appends `layer` under `name` (Keras's `name=` argument), the prefix of its weights in
    /// saved files and in [`crate::import`]; names must be unique within the model.
    pub fn add_named(self, name: &str, layer: impl Layer + 'static) -> Result<Self> {
        if self.layers.iter().any(|e| e.name == name) {
            return Err(Error::config(
                "Sequential",
                format!("a layer named {name:?} is already in the model"),
            ));
        }
        self.add_entry(name.to_string(), Box::new(layer))
    }

    fn add_entry(mut self, name: String, mut layer: Box<dyn Layer>) -> Result<Self> {
        let input = self.output_shape().to_vec();
        let seed = crate::layer::splitmix(self.seed ^ (self.layers.len() as u64 + 1));
        let output_shape = layer
            .build(&self.device, &input, seed)
            .map_err(|e| e.in_layer(&name, layer.kind()))?;
        self.layers.push(Entry {
            name,
            layer,
            output_shape,
        });
        Ok(self)
    }

    fn unique_name(&self, kind: &str) -> String {
        let seen = self
            .layers
            .iter()
            .filter(|e| e.layer.kind() == kind)
            .count();
        crate::summary::layer_name(kind, seen)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The shape of one output sample.
    pub fn output_shape(&self) -> &[usize] {
        self.layers
            .last()
            .map(|e| e.output_shape.as_slice())
            .unwrap_or(&self.input_shape)
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layer named `name` (as `summary()` shows it).
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut dyn Layer> {
        self.layers
            .iter_mut()
            .find(|e| e.name == name)
            .map(|e| &mut *e.layer as &mut dyn Layer)
    }

    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|e| e.name.as_str()).collect()
    }

    /// (trainable, non-trainable) parameter counts.
    pub fn param_counts(&self) -> (usize, usize) {
        summary::param_counts(&self.params())
    }

    /// Keras's `summary()`, plus what Keras lacks: each layer's activation memory for a batch
    /// of `batch`, and an estimate of the memory one training step needs.
    pub fn summary(&self, batch: usize) -> String {
        self.summary_with_slots(batch, 2)
    }

    /// [`Sequential::summary`] with the training-memory estimate for an optimizer keeping
    /// `slots` tensors per weight (`Optimizer::slots_per_param`: SGD 0, with momentum 1,
    /// RMSprop 1, Adam/Nadam 2; `summary` assumes 2).
    pub fn summary_with_slots(&self, batch: usize, slots: usize) -> String {
        let rows: Vec<summary::Row> = self
            .layers
            .iter()
            .map(|e| summary::Row {
                label: summary::label(&e.name, &*e.layer),
                shape: e.output_shape.clone(),
                params: e.layer.params().iter().map(|p| p.numel()).sum(),
                connected: None,
            })
            .collect();
        let est = self.training_memory_estimate(batch, slots);
        summary::render(
            "sequential",
            batch,
            &rows,
            self.param_counts(),
            (est, slots),
        )
    }

    /// Bytes one training step holds at its peak, estimated (see `summary()`), with `slots`
    /// optimizer slots per trainable weight (Adam: 2, SGD with momentum: 1).
    pub fn training_memory_estimate(&self, batch: usize, slots: usize) -> u64 {
        let shapes = self.all_shapes();
        let outs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        summary::training_memory(self.param_counts(), &self.input_shape, &outs, batch, slots)
    }

    /// Every tensor shape the model computes, in order: each layer's inner shapes (see
    /// [`Layer::inner_shapes`]) then its output.
    pub fn all_shapes(&self) -> Vec<Vec<usize>> {
        self.layers
            .iter()
            .flat_map(|e| {
                let mut v = e.layer.inner_shapes();
                v.push(e.output_shape.clone());
                v
            })
            .collect()
    }
}

impl Sequential {
    /// Layer `i` with the batch norm after it (and the activation after that) folded into its
    /// write-out, when they fit: the output and how many layers it covered.
    fn fused_step(&mut self, i: usize, end: usize, h: &Var) -> Option<(Result<Var>, usize)> {
        let layers = &self.layers[..end];
        let affine = layers.get(i + 1)?.layer.channel_affine()?;
        let (scale, shift) = match affine {
            Ok(a) => a,
            Err(e) => return Some((Err(e), 2)),
        };
        let act = layers.get(i + 2).and_then(|e| e.layer.as_activation());
        let (act, used) = match act {
            Some(a) if a != Act::Softmax => (a, 3),
            _ => (Act::Linear, 2),
        };
        let out = self.layers[i]
            .layer
            .forward_fused(h, &scale, &shift, act, None)?;
        Some((out, used))
    }
}

impl Sequential {
    /// `act(self(x) + residual)`, the end of a residual block. At inference the residual and
    /// the activation go into the write-out of the last convolution, with the batch norm
    /// after it, when the model ends in such a pair; otherwise they run as their own ops.
    pub fn forward_residual(
        &mut self,
        x: &Var,
        ctx: &mut Ctx,
        residual: &Var,
        act: Act,
    ) -> Result<Var> {
        let n = self.layers.len();
        let fold = !ctx.training && ctx.fold && !wgrad_graph::is_grad_enabled();
        if fold && n >= 2 {
            if let Some(affine) = self.layers[n - 1].layer.channel_affine() {
                let (scale, shift) = affine?;
                let h = self.run(x.clone(), ctx, n - 2)?;
                let last = &mut self.layers[n - 2].layer;
                if let Some(y) = last.forward_fused(&h, &scale, &shift, act, Some(residual.value()))
                {
                    return y;
                }
                let h = self.layers[n - 2].layer.forward(&h, ctx)?;
                let h = self.layers[n - 1].layer.forward(&h, ctx)?;
                return act.apply(&wgrad_graph::ops::add(&h, residual)?);
            }
        }
        let h = self.forward(x, ctx)?;
        act.apply(&wgrad_graph::ops::add(&h, residual)?)
    }

    /// The first `end` layers on `x`, folding batch norms at inference.
    fn run(&mut self, x: Var, ctx: &mut Ctx, end: usize) -> Result<Var> {
        let fold = !ctx.training && ctx.fold && !wgrad_graph::is_grad_enabled();
        let mut h = x;
        let mut i = 0;
        while i < end {
            if fold {
                if let Some((next, used)) = self.fused_step(i, end, &h) {
                    h = next?;
                    i += used;
                    continue;
                }
            }
            h = self.layers[i].layer.forward(&h, ctx)?;
            i += 1;
        }
        Ok(h)
    }
}

impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn inner_shapes(&self) -> Vec<Vec<usize>> {
        let mut v = self.all_shapes();
        v.pop();
        v
    }

    /// A Sequential is built layer by layer as it is made; nesting it checks the shape.
    fn build(&mut self, _: &Device, input_shape: &[usize], _: u64) -> Result<Vec<usize>> {
        if input_shape != self.input_shape.as_slice() {
            return Err(Error::config(
                "Sequential",
                format!(
                    "was built for inputs {:?}, not {input_shape:?}",
                    self.input_shape
                ),
            ));
        }
        Ok(self.output_shape().to_vec())
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        if &x.shape()[1.min(x.shape().len())..] != self.input_shape.as_slice() {
            return Err(Error::Input {
                what: "Sequential",
                reason: format!(
                    "batch of shape {:?} does not fit the model's input [N, {}]",
                    x.shape(),
                    self.input_shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        self.run(x.clone(), ctx, self.layers.len())
    }

    fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|e| e.layer.params()).collect()
    }

    /// Every weight as `layer/weight` (Keras's path style), in a fixed order.
    fn named_params(&self) -> Vec<(String, &Param)> {
        self.layers
            .iter()
            .flat_map(|e| {
                e.layer
                    .named_params()
                    .into_iter()
                    .map(move |(n, p)| (format!("{}/{n}", e.name), p))
            })
            .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|e| e.layer.params_mut())
            .collect()
    }
}
