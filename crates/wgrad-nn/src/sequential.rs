//! `Sequential`: Keras's chain builder over the one model graph, [`Functional`]. Each added
//! layer reads the previous one's output and is built for its shape at once.

use std::ops::Deref;

use wgrad_graph::Var;
use wgrad_tensor::Device;

use crate::functional::Tap;
use crate::{Act, Ctx, Functional, Layer, Result};

/// Keras's `Sequential`: layers are built as they are added, so a shape mistake is reported
/// at the `add` that causes it, naming the layer. It is a [`Functional`] model under
/// construction (it derefs to one for `summary()`, shapes and parameter counts);
/// [`Sequential::into_model`] hands the graph over.
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
    graph: Functional,
    last: Tap,
}

impl Sequential {
    /// An empty model for samples of `input_shape` (no batch axis), weights seeded with 0.
    pub fn new(device: &Device, input_shape: &[usize]) -> Sequential {
        let mut graph = Functional::new(device);
        graph.chain = true;
        let last = graph.input(input_shape);
        graph.set_outputs_unchecked(&[last]);
        Sequential { graph, last }
    }

    /// The seed of the initial weights (layers added afterwards use it).
    pub fn seed(mut self, seed: u64) -> Self {
        self.graph.set_seed(seed);
        self
    }

    /// Appends `layer`, built for the current output shape (Keras's `model.add`, hence the
    /// name that clippy would keep for `std::ops::Add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, layer: impl Layer + 'static) -> Result<Self> {
        self.add_boxed(Box::new(layer))
    }

    pub fn add_boxed(self, layer: Box<dyn Layer>) -> Result<Self> {
        let name = self.graph.auto_name(layer.kind());
        self.push(name, layer)
    }

    /// Appends `layer` under `name` (Keras's `name=` argument), the prefix of its weights in
    /// saved files and in [`crate::import`]; names must be unique within the model.
    pub fn add_named(self, name: &str, layer: impl Layer + 'static) -> Result<Self> {
        self.graph.check_name(name)?;
        self.push(name.to_string(), Box::new(layer))
    }

    fn push(mut self, name: String, layer: Box<dyn Layer>) -> Result<Self> {
        // Salted by the layer's position in the chain (the input node not counted), so a
        // model's initial weights stay what they were before Sequential became a graph.
        let salt = self.graph.len() as u64 + 1;
        self.last = self.graph.apply_salted(name, layer, self.last, salt)?;
        self.graph.set_outputs_unchecked(&[self.last]);
        Ok(self)
    }

    /// The finished model graph.
    pub fn into_model(self) -> Functional {
        self.graph
    }

    pub fn input_shape(&self) -> &[usize] {
        self.graph.input_shapes()[0]
    }

    /// The layer named `name` (as `summary()` shows it).
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut dyn Layer> {
        self.graph.layer_mut(name)
    }

    /// See [`Functional::forward_residual`].
    pub fn forward_residual(
        &mut self,
        x: &Var,
        ctx: &mut Ctx,
        residual: &Var,
        act: Act,
    ) -> Result<Var> {
        self.graph.forward_residual(x, ctx, residual, act)
    }
}

impl Deref for Sequential {
    type Target = Functional;

    fn deref(&self) -> &Functional {
        &self.graph
    }
}

impl From<Sequential> for Functional {
    fn from(s: Sequential) -> Functional {
        s.graph
    }
}

crate::layer::delegate_layer!(Sequential, |s| s.graph);
