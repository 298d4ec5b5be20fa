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
//! g.outputs(&[y]);
//! println!("{}", g.summary(8));
//! # Ok(()) }
//! ```

use wgrad_graph::{ops, Var};
use wgrad_tensor::Device;

use crate::summary;
use crate::{Act, Ctx, Error, Layer, Param, Result};

/// A symbolic tensor of a [`Functional`] model: the output of one of its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tap(usize);

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

/// A model as a graph of layers (Keras's functional API). Nodes are added in a topological
/// order by construction: a layer can only read taps that exist.
pub struct Functional {
    device: Device,
    nodes: Vec<Node>,
    inputs: Vec<Tap>,
    outputs: Vec<Tap>,
    seed: u64,
}

impl Functional {
    pub fn new(device: &Device) -> Functional {
        Functional {
            device: device.clone(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            seed: 0,
        }
    }

    /// The seed of the initial weights of layers added afterwards.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn push(&mut self, name: String, op: Op, shape: Vec<usize>) -> Tap {
        self.nodes.push(Node { name, op, shape });
        Tap(self.nodes.len() - 1)
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
        if t.0 >= self.nodes.len() {
            return Err(Error::config(
                "Functional",
                format!("{t:?} is not a tensor of this model"),
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
        let name = summary::layer_name(layer.kind(), self.seen(layer.kind()));
        self.apply_as(name, layer, x)
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

    fn check_name(&self, name: &str) -> Result<()> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(Error::config(
                "Functional",
                format!("a layer named {name:?} is already in the model"),
            ));
        }
        Ok(())
    }

    fn apply_as(&mut self, name: String, mut layer: Box<dyn Layer>, x: Tap) -> Result<Tap> {
        self.check(x)?;
        let seed = crate::layer::splitmix(self.seed ^ (self.nodes.len() as u64 + 1));
        let shape = layer
            .build(&self.device, &self.nodes[x.0].shape.clone(), seed)
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
            .map(|t| self.nodes[t.0].shape.as_slice())
            .collect();
        let shape = merge
            .output_shape(&shapes)
            .map_err(|e| e.in_layer(&name, merge.kind()))?;
        Ok(self.push(name, Op::Merge(merge, xs.to_vec()), shape))
    }

    /// Declares the model's outputs.
    pub fn outputs(&mut self, outs: &[Tap]) {
        self.outputs = outs.to_vec();
    }

    /// The layer named `name` (as `summary()` shows it), e.g. to freeze a pretrained base
    /// (Keras's `model.get_layer(name).trainable = False`).
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut dyn Layer> {
        self.nodes.iter_mut().find_map(|n| match &mut n.op {
            Op::Layer(l, _) if n.name == name => Some(&mut **l as &mut dyn Layer),
            _ => None,
        })
    }

    /// The shape of a tap's samples.
    pub fn shape(&self, t: Tap) -> &[usize] {
        &self.nodes[t.0].shape
    }

    /// (trainable, non-trainable) parameter counts.
    pub fn param_counts(&self) -> (usize, usize) {
        summary::param_counts(&self.params())
    }

    /// Keras's functional `summary()` with a "Connected to" column and the memory columns.
    pub fn summary(&self, batch: usize) -> String {
        self.summary_with_slots(batch, 2)
    }

    /// [`Functional::summary`] with the training-memory estimate for an optimizer keeping
    /// `slots` tensors per weight (see `Sequential::summary_with_slots`).
    pub fn summary_with_slots(&self, batch: usize, slots: usize) -> String {
        let rows: Vec<summary::Row> = self
            .nodes
            .iter()
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
                    .map(|t| self.nodes[t.0].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                summary::Row {
                    label,
                    shape: n.shape.clone(),
                    params,
                    connected: Some(if connected.is_empty() {
                        "-".into()
                    } else {
                        connected
                    }),
                }
            })
            .collect();
        summary::render(
            "functional",
            batch,
            &rows,
            self.param_counts(),
            (self.training_memory_estimate(batch, slots), slots),
        )
    }

    /// Bytes one training step holds at its peak, estimated as for `Sequential`.
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
    /// shapes (see [`Layer::inner_shapes`]) then its output.
    pub fn all_shapes(&self) -> Vec<Vec<usize>> {
        self.shapes(true)
    }

    fn shapes(&self, with_outputs: bool) -> Vec<Vec<usize>> {
        let mut v = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Op::Layer(l, _) = &n.op {
                v.extend(l.inner_shapes());
            }
            let output = self.outputs.iter().any(|t| t.0 == i);
            if !matches!(n.op, Op::Input(_)) && (with_outputs || !output) {
                v.push(n.shape.clone());
            }
        }
        v
    }

    /// For each node that can take the batch norm reading it (and an activation reading that)
    /// into its write-out at inference: `(batch-norm node, activation node)`. Only chains whose
    /// inner tensors nobody else reads, and that are not outputs, qualify.
    fn fold_plan(&self) -> Vec<Option<(usize, Option<usize>)>> {
        let n = self.nodes.len();
        let mut readers = vec![Vec::new(); n];
        for (j, node) in self.nodes.iter().enumerate() {
            match &node.op {
                Op::Input(_) => {}
                Op::Layer(_, t) => readers[t.0].push(j),
                Op::Merge(_, ts) => ts.iter().for_each(|t| readers[t.0].push(j)),
            }
        }
        let sole = |j: usize| {
            (readers[j].len() == 1 && !self.outputs.iter().any(|o| o.0 == j)).then(|| readers[j][0])
        };
        let layer = |j: usize| match &self.nodes[j].op {
            Op::Layer(l, _) => Some(&**l),
            _ => None,
        };
        (0..n)
            .map(|j| {
                layer(j)?;
                let bn = sole(j)?;
                layer(bn)?.channel_affine()?.ok()?;
                let act = sole(bn).filter(|&k| {
                    layer(k)
                        .and_then(|l| l.as_activation())
                        .is_some_and(|a| a != Act::Softmax)
                });
                Some((bn, act))
            })
            .collect()
    }

    /// Node `j` run with the batch norm `bn` (and activation `act`) folded in; `None` when
    /// the layer cannot fuse them.
    fn forward_folded(
        &mut self,
        j: usize,
        bn: usize,
        act: Option<usize>,
        values: &[Option<Var>],
    ) -> Result<Option<Var>> {
        let Op::Layer(l, _) = &self.nodes[bn].op else {
            return Ok(None);
        };
        let Some(affine) = l.channel_affine() else {
            return Ok(None);
        };
        let (scale, shift) = affine?;
        let a = act
            .and_then(|k| match &self.nodes[k].op {
                Op::Layer(l, _) => l.as_activation(),
                _ => None,
            })
            .unwrap_or(Act::Linear);
        let Op::Layer(layer, t) = &mut self.nodes[j].op else {
            return Ok(None);
        };
        let x = values[t.0].clone().expect("a reader runs after its input");
        layer.forward_fused(&x, &scale, &shift, a, None).transpose()
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
        "Functional"
    }

    fn inner_shapes(&self) -> Vec<Vec<usize>> {
        self.shapes(false)
    }

    /// A functional model is built node by node; nesting one checks its single input.
    fn build(&mut self, _: &Device, input_shape: &[usize], _: u64) -> Result<Vec<usize>> {
        match (self.inputs.as_slice(), self.outputs.as_slice()) {
            ([i], [o]) if self.nodes[i.0].shape == input_shape => Ok(self.nodes[o.0].shape.clone()),
            _ => Err(Error::config(
                "Functional",
                format!("nested use needs one input of shape {input_shape:?} and one output"),
            )),
        }
    }

    /// The single-input, single-output case (what `Trainer` uses).
    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        if self.outputs.len() != 1 {
            return Err(Error::config(
                "Functional",
                format!(
                    "forward() needs one output, the model has {} (use forward_multi)",
                    self.outputs.len()
                ),
            ));
        }
        Ok(self.forward_multi(std::slice::from_ref(x), ctx)?.remove(0))
    }

    /// Runs the graph on one batch per input; returns one batch per output. Each node's value
    /// is dropped right after its last reader has run, so inference keeps only live tensors.
    fn forward_multi(&mut self, inputs: &[Var], ctx: &mut Ctx) -> Result<Vec<Var>> {
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
        for (j, node) in self.nodes.iter().enumerate() {
            match &node.op {
                Op::Input(_) => {}
                Op::Layer(_, t) => last_use[t.0] = j,
                Op::Merge(_, ts) => ts.iter().for_each(|t| last_use[t.0] = j),
            }
        }
        for t in &self.outputs {
            last_use[t.0] = usize::MAX;
        }
        let fold = !ctx.training && ctx.fold && !wgrad_graph::is_grad_enabled();
        let plan = if fold {
            self.fold_plan()
        } else {
            vec![None; n]
        };
        let mut skip = vec![false; n];
        let mut values: Vec<Option<Var>> = vec![None; n];
        for j in 0..n {
            if skip[j] {
                continue;
            }
            // Node j with the batch norm after it (and its activation) in one write-out.
            if let Some((bn, act)) = plan[j] {
                if let Some(y) = self.forward_folded(j, bn, act, &values)? {
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
            let value = {
                let get = |t: &Tap| values[t.0].clone().expect("a reader runs after its input");
                let expected = &self.nodes[j].shape.clone();
                match &mut self.nodes[j].op {
                    Op::Input(i) => {
                        let x = &inputs[*i];
                        if x.shape().get(1..) != Some(expected.as_slice()) {
                            return Err(Error::Input {
                                what: "Functional",
                                reason: format!(
                                    "input {} has shape {:?}, the model expects [N, {:?}]",
                                    i,
                                    x.shape(),
                                    expected
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
        Ok(self
            .outputs
            .iter()
            .map(|t| values[t.0].clone().expect("outputs are kept"))
            .collect())
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
}
