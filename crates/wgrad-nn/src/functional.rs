//! `Functional`: a graph of layers with several inputs, branches and joins — ResNet skips,
//! Inception branches, squeeze-and-excitation — as Keras's functional API.
//!
//! ```no_run
//! use wgrad_nn::{layers::*, Act, Add, Functional};
//! # fn main() -> wgrad_nn::Result<()> {
//! let dev = wgrad_tensor::Device::new()?;
//! let mut g = Functional::new(&dev);
//! let x = g.input(&[32, 32, 16]);
//! let h = g.apply(Conv2D::new(16, 3).same().activation(Act::Relu), x)?;
//! let h = g.apply(Conv2D::new(16, 3).same(), h)?;
//! let y = g.merge(Add, &[h, x])?;                 // the residual skip
//! let y = g.apply(Activation(Act::Relu), y)?;
//! g.outputs(&[y])?;
//! println!("{}", g.summary(8));
//! # Ok(()) }
//! ```

use wgrad_graph::{ops, Var};
use wgrad_tensor::Device;

use crate::summary;
use crate::{Act, Ctx, Error, Layer, Param, Result};

/// A symbolic tensor of a [`Functional`] model: the output of one of its nodes. It knows its
/// model, so passing it to another model is an error rather than a wrong connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tap {
    node: usize,
    model: u64,
}

/// Each model's identity, for its taps.
static NEXT_MODEL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A layer that joins several tensors (Keras's merge layers).
pub trait Merge: Send {
    fn kind(&self) -> &'static str;
    /// The output shape for these input shapes (no batch axis), or why they do not fit.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;
    fn forward(&mut self, inputs: &[Var]) -> Result<Var>;
}

/// Elementwise sum of inputs of one shape.
#[derive(Clone, Copy, Debug)]
pub struct Add;

/// Elementwise product with broadcasting (a squeeze-and-excitation scale `[1, 1, C]` times
/// the feature map `[H, W, C]`).
#[derive(Clone, Copy, Debug)]
pub struct Multiply;

/// Joins inputs along an axis of the sample (`-1`, the channels, by default as Keras).
#[derive(Clone, Copy, Debug)]
pub struct Concatenate {
    pub axis: isize,
}

impl Default for Concatenate {
    fn default() -> Self {
        Concatenate { axis: -1 }
    }
}

fn at_least_two(kind: &str, inputs: &[&[usize]]) -> Result<()> {
    if inputs.len() < 2 {
        return Err(Error::config(kind, "joins at least two inputs"));
    }
    Ok(())
}

impl Merge for Add {
    fn kind(&self) -> &'static str {
        "Add"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        at_least_two("Add", inputs)?;
        if inputs.iter().any(|s| *s != inputs[0]) {
            return Err(Error::config(
                "Add",
                format!("inputs must have one shape, got {inputs:?}"),
            ));
        }
        Ok(inputs[0].to_vec())
    }
    fn forward(&mut self, inputs: &[Var]) -> Result<Var> {
        let mut y = inputs[0].clone();
        for x in &inputs[1..] {
            y = ops::add(&y, x)?;
        }
        Ok(y)
    }
}

impl Merge for Multiply {
    fn kind(&self) -> &'static str {
        "Multiply"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        at_least_two("Multiply", inputs)?;
        let rank = inputs[0].len();
        if inputs.iter().any(|s| s.len() != rank) {
            return Err(Error::config(
                "Multiply",
                format!("inputs must have one rank, got {inputs:?}"),
            ));
        }
        (0..rank)
            .map(|d| {
                let big = inputs.iter().map(|s| s[d]).max().unwrap_or(1);
                if inputs.iter().all(|s| s[d] == big || s[d] == 1) {
                    Ok(big)
                } else {
                    Err(Error::config(
                        "Multiply",
                        format!("shapes {inputs:?} do not broadcast"),
                    ))
                }
            })
            .collect()
    }
    fn forward(&mut self, inputs: &[Var]) -> Result<Var> {
        let mut y = inputs[0].clone();
        for x in &inputs[1..] {
            y = ops::mul(&y, x)?;
        }
        Ok(y)
    }
}

impl Concatenate {
    fn sample_axis(&self, rank: usize) -> Result<usize> {
        let a = if self.axis < 0 {
            self.axis + rank as isize
        } else {
            self.axis
        };
        if a < 0 || a as usize >= rank {
            return Err(Error::config(
                "Concatenate",
                format!("axis {} outside a rank-{rank} sample", self.axis),
            ));
        }
        Ok(a as usize)
    }
}

impl Merge for Concatenate {
    fn kind(&self) -> &'static str {
        "Concatenate"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        at_least_two("Concatenate", inputs)?;
        let a = self.sample_axis(inputs[0].len())?;
        let mut out = inputs[0].to_vec();
        for s in &inputs[1..] {
            let same_rest = s.len() == out.len() && (0..s.len()).all(|d| d == a || s[d] == out[d]);
            if !same_rest {
                return Err(Error::config(
                    "Concatenate",
                    format!(
                        "inputs must match except along axis {}: {inputs:?}",
                        self.axis
                    ),
                ));
            }
            out[a] += s[a];
        }
        Ok(out)
    }
    fn forward(&mut self, inputs: &[Var]) -> Result<Var> {
        // +1: the batch axis in front of the sample's axes.
        let a = self.sample_axis(inputs[0].shape().len() - 1)? + 1;
        let refs: Vec<&Var> = inputs.iter().collect();
        Ok(ops::concat(&refs, a as isize)?)
    }
}

enum Op {
    Input(usize),
    Layer(Box<dyn Layer>, Tap),
    Merge(Box<dyn Merge>, Vec<Tap>),
}

struct Node {
    name: String,
    op: Op,
    shape: Vec<usize>,
}

/// A model as a graph of layers (Keras's functional API), and the one model type of wgrad:
/// [`crate::Sequential`] builds a chain of it, and every zoo constructor returns one. Nodes
/// are added in a topological order by construction: a layer can only read taps that exist.
pub struct Functional {
    device: Device,
    nodes: Vec<Node>,
    inputs: Vec<Tap>,
    outputs: Vec<Tap>,
    seed: u64,
    id: u64,
    /// Built by `Sequential`: a chain, summarised as Keras summarises a `Sequential` (no
    /// input row, no "Connected to" column).
    pub(crate) chain: bool,
}

impl Functional {
    pub fn new(device: &Device) -> Functional {
        Functional {
            device: device.clone(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            seed: 0,
            id: NEXT_MODEL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            chain: false,
        }
    }

    /// The seed of the initial weights of layers added afterwards.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub(crate) fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn push(&mut self, name: String, op: Op, shape: Vec<usize>) -> Tap {
        self.nodes.push(Node { name, op, shape });
        Tap {
            node: self.nodes.len() - 1,
            model: self.id,
        }
    }

    fn seen(&self, kind: &str) -> usize {
        self.nodes
            .iter()
            .filter(|n| match &n.op {
                Op::Input(_) => kind == "InputLayer",
                Op::Layer(l, _) => l.kind() == kind,
                Op::Merge(m, _) => m.kind() == kind,
            })
            .count()
    }

    fn check(&self, t: Tap) -> Result<()> {
        if t.model != self.id || t.node >= self.nodes.len() {
            return Err(Error::config(
                "Functional",
                format!("{t:?} is a tensor of another model: pass taps this model's input() and apply() returned"),
            ));
        }
        Ok(())
    }

    /// A model input for samples of `shape` (no batch axis).
    pub fn input(&mut self, shape: &[usize]) -> Tap {
        let name = summary::layer_name("InputLayer", self.seen("InputLayer"));
        let t = self.push(name, Op::Input(self.inputs.len()), shape.to_vec());
        self.inputs.push(t);
        t
    }

    /// `layer(x)`: builds the layer for `x`'s shape and returns its output.
    pub fn apply(&mut self, layer: impl Layer + 'static, x: Tap) -> Result<Tap> {
        self.apply_boxed(Box::new(layer), x)
    }

    pub fn apply_boxed(&mut self, layer: Box<dyn Layer>, x: Tap) -> Result<Tap> {
        let name = self.auto_name(layer.kind());
        self.apply_as(name, layer, x)
    }

    /// Keras's default name for the next layer of `kind` (`conv2d`, `conv2d_1`…).
    pub(crate) fn auto_name(&self, kind: &str) -> String {
        summary::layer_name(kind, self.seen(kind))
    }

    /// `layer(x)` under `name` (Keras's `name=`): the prefix of the layer's weights in saved
    /// files and in [`crate::import`]; names must be unique within the model.
    pub fn apply_named(&mut self, name: &str, layer: impl Layer + 'static, x: Tap) -> Result<Tap> {
        self.check_name(name)?;
        self.apply_as(name.to_string(), Box::new(layer), x)
    }

    /// [`Functional::merge`] under `name`.
    pub fn merge_named(
        &mut self,
        name: &str,
        merge: impl Merge + 'static,
        xs: &[Tap],
    ) -> Result<Tap> {
        self.check_name(name)?;
        self.merge_as(name.to_string(), Box::new(merge), xs)
    }

    pub(crate) fn check_name(&self, name: &str) -> Result<()> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(Error::config(
                "Functional",
                format!(
                    "a layer named {name:?} is already in the model: give each layer its own name"
                ),
            ));
        }
        Ok(())
    }

    fn apply_as(&mut self, name: String, layer: Box<dyn Layer>, x: Tap) -> Result<Tap> {
        let salt = self.nodes.len() as u64 + 1;
        self.apply_salted(name, layer, x, salt)
    }

    /// `layer(x)` with its weights seeded from the model's seed and `salt` (`Sequential`
    /// salts by layer count, as it always has, so its models keep their initial weights).
    pub(crate) fn apply_salted(
        &mut self,
        name: String,
        mut layer: Box<dyn Layer>,
        x: Tap,
        salt: u64,
    ) -> Result<Tap> {
        self.check(x)?;
        let seed = crate::layer::splitmix(self.seed ^ salt);
        let shape = layer
            .build(&self.device, &self.nodes[x.node].shape.clone(), seed)
            .map_err(|e| e.in_layer(&name, layer.kind()))?;
        Ok(self.push(name, Op::Layer(layer, x), shape))
    }

    /// `merge([a, b, …])`: joins several taps.
    pub fn merge(&mut self, merge: impl Merge + 'static, xs: &[Tap]) -> Result<Tap> {
        let name = summary::layer_name(merge.kind(), self.seen(merge.kind()));
        self.merge_as(name, Box::new(merge), xs)
    }

    fn merge_as(&mut self, name: String, merge: Box<dyn Merge>, xs: &[Tap]) -> Result<Tap> {
        for &x in xs {
            self.check(x)?;
        }
        let shapes: Vec<&[usize]> = xs
            .iter()
            .map(|t| self.nodes[t.node].shape.as_slice())
            .collect();
        let shape = merge
            .output_shape(&shapes)
            .map_err(|e| e.in_layer(&name, merge.kind()))?;
        Ok(self.push(name, Op::Merge(merge, xs.to_vec()), shape))
    }

    /// Declares the model's outputs (Keras's `Model(inputs, outputs)`) and checks the graph
    /// then, not at the first `forward`: at least one output, every tap of this model, every
    /// input and every layer on a path to an output.
    pub fn outputs(&mut self, outs: &[Tap]) -> Result<()> {
        if outs.is_empty() {
            return Err(Error::config(
                "Functional",
                "a model needs at least one output",
            ));
        }
        for &t in outs {
            self.check(t)?;
        }
        let mut needed = vec![false; self.nodes.len()];
        for t in outs {
            needed[t.node] = true;
        }
        for j in (0..self.nodes.len()).rev() {
            if needed[j] {
                for t in self.reads(j) {
                    needed[t.node] = true;
                }
            }
        }
        if let Some(j) = (0..self.nodes.len()).find(|&j| !needed[j]) {
            let what = if matches!(self.nodes[j].op, Op::Input(_)) {
                "input"
            } else {
                "layer"
            };
            return Err(Error::config(
                "Functional",
                format!(
                    "{what} {:?} reaches none of the outputs: connect it or leave it out",
                    self.nodes[j].name
                ),
            ));
        }
        self.outputs = outs.to_vec();
        Ok(())
    }

    /// Sets the outputs of a graph known to be connected (a chain's last layer).
    pub(crate) fn set_outputs_unchecked(&mut self, outs: &[Tap]) {
        self.outputs = outs.to_vec();
    }

    /// The taps node `j` reads.
    fn reads(&self, j: usize) -> Vec<Tap> {
        match &self.nodes[j].op {
            Op::Input(_) => Vec::new(),
            Op::Layer(_, t) => vec![*t],
            Op::Merge(_, ts) => ts.clone(),
        }
    }

    /// The names of the model's layers (merges included, inputs not), in order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| !matches!(n.op, Op::Input(_)))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// The shapes of one sample of each input.
    pub fn input_shapes(&self) -> Vec<&[usize]> {
        self.inputs.iter().map(|t| self.shape(*t)).collect()
    }

    /// The shape of one sample of the (first) output; empty before outputs are declared.
    pub fn output_shape(&self) -> &[usize] {
        self.outputs.first().map_or(&[], |t| self.shape(*t))
    }

    /// The number of layers (merges included, inputs not).
    pub fn len(&self) -> usize {
        self.layer_names().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shapes of one sample of each output.
    pub fn output_shapes(&self) -> Vec<&[usize]> {
        self.outputs.iter().map(|t| self.shape(*t)).collect()
    }

    /// The layer named `name` (as `summary()` shows it), e.g. to freeze a pretrained base
    /// (Keras's `model.get_layer(name).trainable = False`).
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut dyn Layer> {
        self.nodes.iter_mut().find_map(|n| match &mut n.op {
            Op::Layer(l, _) if n.name == name => Some(&mut **l as &mut dyn Layer),
            _ => None,
        })
    }

    /// The shape of a tap's samples. Panics when `t` belongs to another model (as indexing
    /// a slice out of bounds does): taps are only made by this model's builders.
    pub fn shape(&self, t: Tap) -> &[usize] {
        assert!(t.model == self.id, "{t:?} is not a tensor of this model");
        &self.nodes[t.node].shape
    }

    /// (trainable, non-trainable) parameter counts.
    pub fn param_counts(&self) -> (usize, usize) {
        summary::param_counts(&self.params())
    }

    /// Keras's `summary()`: each layer's output shape, parameters and activation memory for
    /// a batch of `batch` (plus a "Connected to" column for a graph that is not a chain), and
    /// an estimate of the memory one training step needs, assuming 2 optimizer slots.
    pub fn summary(&self, batch: usize) -> String {
        self.summary_with_slots(batch, 2)
    }

    /// [`Functional::summary`] with the training-memory estimate for an optimizer keeping
    /// `slots` tensors per weight (`Optimizer::slots_per_param`: SGD 0, with momentum 1,
    /// RMSprop 1, Adam/Nadam 2).
    pub fn summary_with_slots(&self, batch: usize, slots: usize) -> String {
        let rows: Vec<summary::Row> = self
            .nodes
            .iter()
            .filter(|n| !(self.chain && matches!(n.op, Op::Input(_))))
            .map(|n| {
                let (label, params, from) = match &n.op {
                    Op::Input(_) => (format!("{} (InputLayer)", n.name), 0, vec![]),
                    Op::Layer(l, t) => (
                        summary::label(&n.name, &**l),
                        l.params().iter().map(|p| p.numel()).sum(),
                        vec![*t],
                    ),
                    Op::Merge(m, ts) => (format!("{} ({})", n.name, m.kind()), 0, ts.clone()),
                };
                let connected = from
                    .iter()
                    .map(|t| self.nodes[t.node].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                summary::Row {
                    label,
                    shape: n.shape.clone(),
                    params,
                    connected: (!self.chain).then(|| {
                        if connected.is_empty() {
                            "-".into()
                        } else {
                            connected
                        }
                    }),
                }
            })
            .collect();
        summary::render(
            if self.chain {
                "sequential"
            } else {
                "functional"
            },
            batch,
            &rows,
            self.param_counts(),
            (self.training_memory_estimate(batch, slots), slots),
        )
    }

    /// Bytes one training step holds at its peak, estimated (see `summary()`), with `slots`
    /// optimizer slots per trainable weight (Adam: 2, SGD with momentum: 1).
    pub fn training_memory_estimate(&self, batch: usize, slots: usize) -> u64 {
        let input: usize = self
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Input(_)))
            .map(|n| n.shape.iter().product::<usize>())
            .sum();
        let shapes = self.all_shapes();
        let outs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        summary::training_memory(self.param_counts(), &[input], &outs, batch, slots)
    }

    /// Every tensor shape the graph computes (inputs excluded), in order: each layer's inner
    /// shapes (see [`crate::Hints::inner_shapes`]) then its output.
    pub fn all_shapes(&self) -> Vec<Vec<usize>> {
        self.shapes(true)
    }

    fn shapes(&self, with_outputs: bool) -> Vec<Vec<usize>> {
        let mut v = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Op::Layer(l, _) = &n.op {
                v.extend(l.hints().map_or(Vec::new(), |h| h.inner_shapes()));
            }
            let output = self.outputs.iter().any(|t| t.node == i);
            if !matches!(n.op, Op::Input(_)) && (with_outputs || !output) {
                v.push(n.shape.clone());
            }
        }
        v
    }

    /// For each node, the nodes that read it.
    fn readers(&self) -> Vec<Vec<usize>> {
        let mut readers = vec![Vec::new(); self.nodes.len()];
        for j in 0..self.nodes.len() {
            for t in self.reads(j) {
                readers[t.node].push(j);
            }
        }
        readers
    }

    /// For each node that can take the batch norm reading it (and an activation reading that)
    /// into its write-out at inference: `(batch-norm node, activation node)`. Only chains whose
    /// inner tensors nobody else reads, and that are not outputs, qualify.
    fn fold_plan(&self) -> Vec<Option<(usize, Option<usize>)>> {
        let n = self.nodes.len();
        let readers = self.readers();
        let sole = |j: usize| {
            (readers[j].len() == 1 && !self.outputs.iter().any(|o| o.node == j))
                .then(|| readers[j][0])
        };
        let layer = |j: usize| match &self.nodes[j].op {
            Op::Layer(l, _) => Some(&**l),
            _ => None,
        };
        (0..n)
            .map(|j| {
                layer(j)?;
                let bn = sole(j)?;
                layer(bn)?.hints()?.channel_affine()?.ok()?;
                let act = sole(bn).filter(|&k| {
                    layer(k)
                        .and_then(|l| l.hints()?.as_activation())
                        .is_some_and(|a| a != Act::Softmax)
                });
                Some((bn, act))
            })
            .collect()
    }

    /// For each node, the max pool that is its sole reader when the node ends in a ReLU that
    /// can move past the pool (they commute): a Conv2D with `activation="relu"` then runs
    /// without it, an `Activation("relu")` layer is skipped, and the pool applies the ReLU to
    /// its output, so the ReLU and its gradient touch a quarter of the values (2×2 pools).
    fn relu_pool_plan(&self) -> Vec<Option<usize>> {
        let n = self.nodes.len();
        let readers = self.readers();
        let hints = |j: usize| match &self.nodes[j].op {
            Op::Layer(l, _) => l.hints(),
            _ => None,
        };
        (0..n)
            .map(|j| {
                let h = hints(j)?;
                let relu = h.own_activation().or_else(|| h.as_activation()) == Some(Act::Relu);
                let [k] = readers[j][..] else { return None };
                let pool = hints(k).is_some_and(|p| p.commutes_with_relu());
                let output = self.outputs.iter().any(|o| o.node == j);
                (relu && pool && !output).then_some(k)
            })
            .collect()
    }

    /// Node `j` (ending in a ReLU) and the max pool `k` after it as `k(relu(x))` with the ReLU
    /// moved past the pool (see [`Functional::relu_pool_plan`]); `None` when a layer declines.
    fn forward_relu_pool(
        &mut self,
        j: usize,
        k: usize,
        ctx: &mut Ctx,
        values: &[Option<Var>],
    ) -> Result<Option<Var>> {
        let Op::Layer(layer, t) = &mut self.nodes[j].op else {
            return Ok(None);
        };
        let x = values[t.node]
            .clone()
            .expect("a reader runs after its input");
        let Some(h) = layer.hints_mut() else {
            return Ok(None);
        };
        let pre = if h.as_activation().is_some() {
            x
        } else {
            match h.forward_with_activation(&x, ctx, Act::Linear) {
                Some(y) => y?,
                None => return Ok(None),
            }
        };
        let Op::Layer(pool, _) = &mut self.nodes[k].op else {
            return Ok(None);
        };
        pool.hints_mut()
            .and_then(|h| h.forward_after_relu(&pre, ctx))
            .transpose()
    }

    /// Node `j` run with the batch norm `bn` folded in, then `act` and a residual (a skip
    /// connection added before the activation); `None` when the layer cannot fuse them.
    fn forward_folded(
        &mut self,
        j: usize,
        bn: usize,
        act: Act,
        residual: Option<&wgrad_tensor::Tensor>,
        values: &[Option<Var>],
    ) -> Result<Option<Var>> {
        let Op::Layer(l, _) = &self.nodes[bn].op else {
            return Ok(None);
        };
        let Some(affine) = l.hints().and_then(|h| h.channel_affine()) else {
            return Ok(None);
        };
        let (scale, shift) = affine?;
        let Op::Layer(layer, t) = &mut self.nodes[j].op else {
            return Ok(None);
        };
        let x = values[t.node]
            .clone()
            .expect("a reader runs after its input");
        let Some(hints) = layer.hints_mut() else {
            return Ok(None);
        };
        hints
            .forward_fused(&x, &scale, &shift, act, residual)
            .transpose()
    }

    /// The activation node `k` applies, when it is an activation layer.
    fn activation_of(&self, k: usize) -> Option<Act> {
        match &self.nodes[k].op {
            Op::Layer(l, _) => l.hints()?.as_activation(),
            _ => None,
        }
    }

    /// `act(self(x) + residual)`, the end of a residual block. At inference the residual and
    /// the activation go into the write-out of the last convolution, with the batch norm
    /// after it, when the model (one input, one output) ends in such a pair; otherwise they
    /// run as their own ops.
    pub fn forward_residual(
        &mut self,
        x: &Var,
        ctx: &mut Ctx,
        residual: &Var,
        act: Act,
    ) -> Result<Var> {
        self.one_output("forward_residual")?;
        let mut out = self.run(std::slice::from_ref(x), ctx, Some((residual, act)))?;
        Ok(out.remove(0))
    }

    fn one_output(&self, what: &str) -> Result<()> {
        if self.outputs.len() != 1 {
            return Err(Error::config(
                "Functional",
                format!(
                    "{what}() needs one output, the model has {} (use forward_multi)",
                    self.outputs.len()
                ),
            ));
        }
        Ok(())
    }

    /// Runs the graph on one batch per input; returns one batch per output. With a `tail`
    /// (one output), returns `act(output + residual)`. Each node's value is dropped right
    /// after its last reader has run, so inference keeps only live tensors.
    fn run(
        &mut self,
        inputs: &[Var],
        ctx: &mut Ctx,
        tail: Option<(&Var, Act)>,
    ) -> Result<Vec<Var>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input {
                what: "Functional",
                reason: format!(
                    "{} input batches for a model with {} inputs",
                    inputs.len(),
                    self.inputs.len()
                ),
            });
        }
        if self.outputs.is_empty() {
            return Err(Error::config(
                "Functional",
                "no outputs declared (call outputs())",
            ));
        }
        let n = self.nodes.len();
        let mut last_use = vec![0usize; n];
        for j in 0..n {
            for t in self.reads(j) {
                last_use[t.node] = j;
            }
        }
        for t in &self.outputs {
            last_use[t.node] = usize::MAX;
        }
        let fold = !ctx.training && ctx.fold && !wgrad_graph::is_grad_enabled();
        let plan = if fold {
            self.fold_plan()
        } else {
            vec![None; n]
        };
        let relu_pool = if ctx.fold {
            self.relu_pool_plan()
        } else {
            vec![None; n]
        };
        let mut tail_done = false;
        let mut skip = vec![false; n];
        let mut values: Vec<Option<Var>> = vec![None; n];
        for j in 0..n {
            if skip[j] {
                continue;
            }
            // Node j with the batch norm after it (and its activation, or the residual tail
            // when the batch norm is the output) in one write-out.
            if let Some((bn, act)) = plan[j] {
                let residual_tail = tail.filter(|_| act.is_none() && self.outputs[0].node == bn);
                let (a, residual) = match residual_tail {
                    Some((r, a)) => (a, Some(r.value())),
                    None => (
                        act.and_then(|k| self.activation_of(k))
                            .unwrap_or(Act::Linear),
                        None,
                    ),
                };
                if let Some(y) = self.forward_folded(j, bn, a, residual, &values)? {
                    tail_done = residual.is_some();
                    values[act.unwrap_or(bn)] = Some(y);
                    skip[bn] = true;
                    if let Some(k) = act {
                        skip[k] = true;
                    }
                    for (k, v) in values.iter_mut().enumerate().take(j + 1) {
                        if last_use[k] == j {
                            *v = None;
                        }
                    }
                    continue;
                }
            }
            if let Some(k) = relu_pool[j] {
                if let Some(y) = self.forward_relu_pool(j, k, ctx, &values)? {
                    values[k] = Some(y);
                    skip[k] = true;
                    for (i, v) in values.iter_mut().enumerate().take(j + 1) {
                        if last_use[i] == j {
                            *v = None;
                        }
                    }
                    continue;
                }
            }
            let value = {
                let get = |t: &Tap| {
                    values[t.node]
                        .clone()
                        .expect("a reader runs after its input")
                };
                let expected = &self.nodes[j].shape.clone();
                match &mut self.nodes[j].op {
                    Op::Input(i) => {
                        let x = &inputs[*i];
                        if x.shape().get(1..) != Some(expected.as_slice()) {
                            return Err(Error::Input {
                                what: "Functional",
                                reason: format!(
                                    "input {} has shape {:?}, the model expects [N, {}]",
                                    i,
                                    x.shape(),
                                    expected
                                        .iter()
                                        .map(|d| d.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            });
                        }
                        x.clone()
                    }
                    Op::Layer(layer, t) => {
                        let x = get(t);
                        layer.forward(&x, ctx)?
                    }
                    Op::Merge(m, ts) => {
                        let xs: Vec<Var> = ts.iter().map(get).collect();
                        m.forward(&xs)?
                    }
                }
            };
            values[j] = Some(value);
            for (k, v) in values.iter_mut().enumerate().take(j + 1) {
                if last_use[k] == j {
                    *v = None;
                }
            }
        }
        let mut outs: Vec<Var> = self
            .outputs
            .iter()
            .map(|t| values[t.node].clone().expect("outputs are kept"))
            .collect();
        if let (Some((residual, act)), false) = (tail, tail_done) {
            outs[0] = ops::activation(&ops::add(&outs[0], residual)?, act)?;
        }
        Ok(outs)
    }

    fn layers(&self) -> impl Iterator<Item = (&str, &dyn Layer)> {
        self.nodes.iter().filter_map(|n| match &n.op {
            Op::Layer(l, _) => Some((n.name.as_str(), &**l)),
            _ => None,
        })
    }
}

impl Layer for Functional {
    fn kind(&self) -> &'static str {
        if self.chain {
            "Sequential"
        } else {
            "Functional"
        }
    }

    /// A functional model is built node by node; nesting one checks its single input.
    fn build(&mut self, _: &Device, input_shape: &[usize], _: u64) -> Result<Vec<usize>> {
        match (self.inputs.as_slice(), self.outputs.as_slice()) {
            ([i], [o]) if self.nodes[i.node].shape == input_shape => {
                Ok(self.nodes[o.node].shape.clone())
            }
            _ => Err(Error::config(
                "Functional",
                format!("nested use needs one input of shape {input_shape:?} and one output"),
            )),
        }
    }

    /// The single-input, single-output case (what `Trainer` uses).
    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        self.one_output("forward")?;
        Ok(self.run(std::slice::from_ref(x), ctx, None)?.remove(0))
    }

    fn forward_multi(&mut self, inputs: &[Var], ctx: &mut Ctx) -> Result<Vec<Var>> {
        self.run(inputs, ctx, None)
    }

    fn params(&self) -> Vec<&Param> {
        self.layers().flat_map(|(_, l)| l.params()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.nodes
            .iter_mut()
            .flat_map(|n| match &mut n.op {
                Op::Layer(l, _) => l.params_mut(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn named_params(&self) -> Vec<(String, &Param)> {
        self.layers()
            .flat_map(|(name, l)| {
                l.named_params()
                    .into_iter()
                    .map(move |(p, v)| (format!("{name}/{p}"), v))
            })
            .collect()
    }

    fn hints(&self) -> Option<&dyn crate::Hints> {
        Some(self)
    }
    fn hints_mut(&mut self) -> Option<&mut dyn crate::Hints> {
        Some(self)
    }
}

impl crate::Hints for Functional {
    fn inner_shapes(&self) -> Vec<Vec<usize>> {
        self.shapes(false)
    }
}
