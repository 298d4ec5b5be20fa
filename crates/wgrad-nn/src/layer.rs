//! The [`Layer`] trait every layer (and every user's custom layer) implements, and the
//! per-call context a forward pass gets.

use wgrad_graph::Var;
use wgrad_tensor::Device;

use crate::{Param, Result};

/// What a forward pass needs besides its input.
pub struct Ctx {
    /// Training mode: dropout drops, batch norm uses batch statistics and updates its moving
    /// averages. Off for `evaluate` and `predict`.
    pub training: bool,
    /// Let the model graph fuse neighbouring layers: in inference without a graph, a layer
    /// applies the next layers' per-channel affine map and activation in its own write-out
    /// (batch norm folded into the convolution before it); in training too, a ReLU whose only
    /// reader is a max pool moves past it (the two commute, so the ReLU and its gradient run
    /// on the pooled tensor, with the same values). On by default; off gives the
    /// layer-by-layer reference.
    pub fold: bool,
    seed: u64,
    calls: u64,
}

impl Ctx {
    /// A context for one step; `seed` makes the step's random draws (dropout masks)
    /// reproducible.
    pub fn new(training: bool, seed: u64) -> Ctx {
        Ctx {
            training,
            fold: true,
            seed,
            calls: 0,
        }
    }

    /// A fresh seed for each random draw of this step.
    pub fn next_seed(&mut self) -> u64 {
        self.calls += 1;
        splitmix(self.seed ^ splitmix(self.calls))
    }
}

/// SplitMix64's finaliser: decorrelates nearby seeds.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A layer: built once for an input shape, then called on batches.
///
/// Shapes exclude the batch axis (`[28, 28, 1]` for an MNIST image), as in Keras's
/// `summary()`. A custom layer implements four methods: `build` creates its sublayers and
/// weights, `forward` composes graph ops (or other layers' `forward`), and `params` /
/// `params_mut` list the weights (sublayers' weights included, under prefixed names). The
/// rest have defaults: `kind` is the type's name, and the optional [`Hints`] (inference fusion,
/// inner shapes for memory estimates) are for the built-in layers.
pub trait Layer: Send {
    /// Keras's class name (`Conv2D`, `Dense`…), for `summary()`; by default the Rust type's
    /// name without its path and generic arguments.
    fn kind(&self) -> &'static str {
        let full = std::any::type_name::<Self>();
        let plain = full.split('<').next().unwrap_or(full);
        plain.rsplit("::").next().unwrap_or(plain)
    }

    /// Creates the weights for inputs of `input_shape` and returns the output shape. `seed`
    /// makes the initial weights reproducible.
    fn build(&mut self, dev: &Device, input_shape: &[usize], seed: u64) -> Result<Vec<usize>>;

    /// The layer applied to a batch `[N, ...input_shape]`.
    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var>;

    /// Several inputs to several outputs (functional models); every other layer maps its one
    /// input to one output.
    fn forward_multi(&mut self, inputs: &[Var], ctx: &mut Ctx) -> Result<Vec<Var>> {
        match inputs {
            [x] => Ok(vec![self.forward(x, ctx)?]),
            _ => Err(crate::Error::Input {
                what: "forward_multi",
                reason: format!("{} takes one input, {} given", self.kind(), inputs.len()),
            }),
        }
    }

    /// The layer's weights and state, in a fixed order.
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    /// One line of configuration for `summary()` (kernel size, strides…), if any.
    fn describe(&self) -> String {
        String::new()
    }

    /// What the layer can tell or do for the model graph beyond its forward pass (inference
    /// fusion, inner tensor shapes): a layer opts in by implementing [`Hints`] and returning
    /// `Some(self)` here and from [`Layer::hints_mut`]. A custom layer needs neither.
    fn hints(&self) -> Option<&dyn Hints> {
        None
    }

    fn hints_mut(&mut self) -> Option<&mut dyn Hints> {
        None
    }

    /// Every weight under a name unique in the layer (`kernel`; a container prefixes its
    /// sublayers' names: `conv2d/kernel`), in the order of `params`.
    fn named_params(&self) -> Vec<(String, &Param)> {
        self.params()
            .into_iter()
            .map(|p| (p.name().to_string(), p))
            .collect()
    }

    /// Freezes (`false`) or unfreezes every weight of the layer; state stays untrainable.
    fn freeze(&mut self, trainable: bool) {
        for p in self.params_mut() {
            p.set_trainable(trainable);
        }
    }
}

/// Optional capabilities of a layer, for the model graph's inference fusion and memory
/// estimate (see [`Layer::hints`]); every method has a "cannot" default.
pub trait Hints {
    /// In inference, the per-channel map `x·scale + shift` this layer computes (batch norm),
    /// as `(scale, shift)`, so the layer before it can apply it in its write-out.
    fn channel_affine(&self) -> Option<Result<(wgrad_tensor::Tensor, wgrad_tensor::Tensor)>> {
        None
    }

    /// The activation this layer applies, when that is all it does.
    fn as_activation(&self) -> Option<Act> {
        None
    }

    /// Inference without a graph: `act(self(x)·scale + shift + residual)` in one pass,
    /// `scale` and `shift` per output channel, `residual` (a skip connection) of the output's
    /// shape. `None` when the layer cannot fuse them (the caller then runs the layers one after
    /// the other).
    fn forward_fused(
        &mut self,
        _x: &Var,
        _scale: &wgrad_tensor::Tensor,
        _shift: &wgrad_tensor::Tensor,
        _act: Act,
        _residual: Option<&wgrad_tensor::Tensor>,
    ) -> Option<Result<Var>> {
        None
    }

    /// The activation this layer applies to its own result (Conv2D's `activation=`), when
    /// [`Hints::forward_with_activation`] can run the layer with another one.
    fn own_activation(&self) -> Option<Act> {
        None
    }

    /// The layer's forward pass with `act` in place of its own activation.
    fn forward_with_activation(
        &mut self,
        _x: &Var,
        _ctx: &mut Ctx,
        _act: Act,
    ) -> Option<Result<Var>> {
        None
    }

    /// Whether [`Hints::forward_after_relu`] can compute this layer of `relu(x)` from `x`.
    fn commutes_with_relu(&self) -> bool {
        false
    }

    /// This layer applied to `relu(x)`, computed from `x`: a max pool pools first and applies
    /// the ReLU to its smaller output (max and ReLU commute).
    fn forward_after_relu(&mut self, _x: &Var, _ctx: &mut Ctx) -> Option<Result<Var>> {
        None
    }

    /// Per-sample shapes of the tensors a composite layer computes inside besides its output
    /// (a residual unit's convolutions and batch norms), so that memory estimates count what
    /// training keeps alive for the backward pass. Plain layers have none.
    fn inner_shapes(&self) -> Vec<Vec<usize>> {
        Vec::new()
    }
}

/// A layer's activation (Keras's `activation=` strings): the tensor kernels' one
/// [`wgrad_tensor::Activation`], under a short name beside the [`Activation`] layer.
///
/// [`Activation`]: crate::layers::Activation
pub use wgrad_tensor::Activation as Act;

/// `impl Layer for $ty` by handing every method to the layer `$inner` (an expression of
/// `$s`, the receiver), so that wrappers forward the whole trait, optional hooks included.
macro_rules! delegate_layer {
    ($ty:ty, |$s:ident| $inner:expr) => {
        impl $crate::Layer for $ty {
            fn kind(&self) -> &'static str {
                let $s = self;
                $inner.kind()
            }
            fn build(
                &mut self,
                dev: &wgrad_tensor::Device,
                input_shape: &[usize],
                seed: u64,
            ) -> $crate::Result<Vec<usize>> {
                let $s = self;
                $inner.build(dev, input_shape, seed)
            }
            fn forward(
                &mut self,
                x: &wgrad_graph::Var,
                ctx: &mut $crate::Ctx,
            ) -> $crate::Result<wgrad_graph::Var> {
                let $s = self;
                $inner.forward(x, ctx)
            }
            fn forward_multi(
                &mut self,
                inputs: &[wgrad_graph::Var],
                ctx: &mut $crate::Ctx,
            ) -> $crate::Result<Vec<wgrad_graph::Var>> {
                let $s = self;
                $inner.forward_multi(inputs, ctx)
            }
            fn params(&self) -> Vec<&$crate::Param> {
                let $s = self;
                $inner.params()
            }
            fn params_mut(&mut self) -> Vec<&mut $crate::Param> {
                let $s = self;
                $inner.params_mut()
            }
            fn describe(&self) -> String {
                let $s = self;
                $inner.describe()
            }
            fn hints(&self) -> Option<&dyn $crate::Hints> {
                let $s = self;
                $inner.hints()
            }
            fn hints_mut(&mut self) -> Option<&mut dyn $crate::Hints> {
                let $s = self;
                $inner.hints_mut()
            }
            fn named_params(&self) -> Vec<(String, &$crate::Param)> {
                let $s = self;
                $inner.named_params()
            }
            fn freeze(&mut self, trainable: bool) {
                let $s = self;
                $inner.freeze(trainable)
            }
        }
    };
}
pub(crate) use delegate_layer;

// A boxed layer is a layer: models chosen at run time (`Box<dyn Layer>`) train like any.
delegate_layer!(Box<dyn Layer>, |s| (**s));
