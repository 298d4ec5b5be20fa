//! `Sequential`: a stack of layers, each built for the previous one's output shape.

use std::fmt::Write;

use wgrad_graph::Var;
use wgrad_tensor::Device;

use crate::{Ctx, Error, Layer, Param, Result};

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

    pub fn add_boxed(mut self, mut layer: Box<dyn Layer>) -> Result<Self> {
        let name = self.unique_name(layer.kind());
        let input = self.output_shape().to_vec();
        let seed = crate::layer::splitmix(self.seed ^ (self.layers.len() as u64 + 1));
        let output_shape = layer
            .build(&self.device, &input, seed)
            .map_err(|e| match e {
                Error::Config { reason, .. } => {
                    Error::config(format!("{name} ({})", layer.kind()), reason)
                }
                Error::Tensor(t) => {
                    Error::config(format!("{name} ({})", layer.kind()), t.to_string())
                }
                other => other,
            })?;
        self.layers.push(Entry {
            name,
            layer,
            output_shape,
        });
        Ok(self)
    }

    /// Keras's naming: the class name in snake case, `_1`, `_2`… for repeats.
    fn unique_name(&self, kind: &str) -> String {
        let mut base = String::new();
        for (i, ch) in kind.chars().enumerate() {
            let prev_lower = i > 0 && kind.as_bytes()[i - 1].is_ascii_lowercase();
            if ch.is_ascii_uppercase() && prev_lower {
                base.push('_');
            }
            base.push(ch.to_ascii_lowercase());
        }
        let n = self
            .layers
            .iter()
            .filter(|e| e.layer.kind() == kind)
            .count();
        if n == 0 {
            base
        } else {
            format!("{base}_{n}")
        }
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
        let mut c = (0, 0);
        for p in self.params() {
            if p.trainable() {
                c.0 += p.numel();
            } else {
                c.1 += p.numel();
            }
        }
        c
    }

    /// Keras's `summary()`, plus what Keras lacks: each layer's activation memory for a batch
    /// of `batch`, and an estimate of the memory one training step needs.
    pub fn summary(&self, batch: usize) -> String {
        let mut s = String::new();
        let rule = "─".repeat(92);
        let _ = writeln!(
            s,
            "Model: \"sequential\"  (batch {batch} for the memory columns)"
        );
        let _ = writeln!(s, "{rule}");
        let _ = writeln!(
            s,
            "{:<34}{:<24}{:>12}  {:>18}",
            "Layer (type)", "Output Shape", "Param #", "Activations"
        );
        let _ = writeln!(s, "{rule}");
        let mut act_bytes = 0u64;
        for e in &self.layers {
            let shape = format!(
                "(None, {})",
                e.output_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let params: usize = e.layer.params().iter().map(|p| p.numel()).sum();
            let bytes = 4 * batch as u64 * e.output_shape.iter().product::<usize>() as u64;
            act_bytes += bytes;
            let mut label = format!("{} ({})", e.name, e.layer.kind());
            let d = e.layer.describe();
            if !d.is_empty() {
                label = format!("{label} {d}");
            }
            let _ = writeln!(
                s,
                "{:<34}{:<24}{:>12}  {:>18}",
                truncate(&label, 33),
                shape,
                group(params),
                human(bytes)
            );
        }
        let _ = writeln!(s, "{rule}");
        let (tr, non) = self.param_counts();
        let _ = writeln!(
            s,
            "Total params: {} ({})",
            group(tr + non),
            human(4 * (tr + non) as u64)
        );
        let _ = writeln!(
            s,
            "Trainable params: {} ({})",
            group(tr),
            human(4 * tr as u64)
        );
        let _ = writeln!(
            s,
            "Non-trainable params: {} ({})",
            group(non),
            human(4 * non as u64)
        );
        let _ = writeln!(s, "Activations, batch {batch}: {}", human(act_bytes));
        let est = self.training_memory_estimate(batch, 2);
        let _ = writeln!(
            s,
            "Estimated training memory, batch {batch}: {} (weights, gradients, 2 optimizer slots, saved activations and their gradients)",
            human(est)
        );
        s
    }

    /// Bytes one training step holds at its peak, estimated: weights, their gradients and
    /// `slots` optimizer slots per trainable weight, every layer's output for the batch (kept
    /// for backward) and, at the peak of backward, gradients of the same size as the largest
    /// two activations.
    pub fn training_memory_estimate(&self, batch: usize, slots: usize) -> u64 {
        let (tr, non) = self.param_counts();
        let weights = 4 * (tr + non) as u64 + 4 * tr as u64 * (1 + slots as u64);
        let mut acts: Vec<u64> = self
            .layers
            .iter()
            .map(|e| 4 * batch as u64 * e.output_shape.iter().product::<usize>() as u64)
            .collect();
        let input = 4 * batch as u64 * self.input_shape.iter().product::<usize>() as u64;
        let saved: u64 = acts.iter().sum::<u64>() + input;
        acts.sort_unstable_by(|a, b| b.cmp(a));
        let grads: u64 = acts.iter().take(2).sum();
        weights + saved + grads
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in KiB/MiB/GiB.
pub(crate) fn human(b: u64) -> String {
    let f = b as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1 << 20) as f64 {
        format!("{:.2} MiB", f / (1 << 20) as f64)
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "Sequential"
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
        let mut h = x.clone();
        for e in &mut self.layers {
            h = e.layer.forward(&h, ctx)?;
        }
        Ok(h)
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
                    .params()
                    .into_iter()
                    .map(move |p| (format!("{}/{}", e.name, p.name()), p))
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
