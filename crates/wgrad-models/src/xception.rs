//! Xception (Chollet, 2017) as Keras's `applications.Xception` builds it: depthwise-separable
//! convolutions without bias, each followed by batch norm, in residual blocks; Keras's layer
//! names so that Keras's weights map onto it by name.

use wgrad_nn::layers::{Activation, BatchNormalization, Conv2D, MaxPool2D, SeparableConv2D};
use wgrad_nn::{Act, Add, Functional, Result, Tap};
use wgrad_tensor::Device;

use crate::top::{finish, Top};

/// Names for the layers Keras leaves unnamed (the shortcut convolutions, their batch norms
/// and the adds): Keras's automatic ones in a fresh session, `conv2d`, `conv2d_1`, ….
#[derive(Default)]
struct Auto {
    conv: usize,
    add: usize,
}

fn numbered(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}_{i}")
    }
}

impl Auto {
    /// The shortcut of an entry or exit block: 1×1/2 conv (no bias) → BN.
    fn shortcut(&mut self, g: &mut Functional, x: Tap, filters: usize) -> Result<Tap> {
        let i = self.conv;
        self.conv += 1;
        let conv = Conv2D::new(filters, 1).strides(2).same().use_bias(false);
        let r = g.apply_named(&numbered("conv2d", i), conv, x)?;
        g.apply_named(
            &numbered("batch_normalization", i),
            BatchNormalization::new(),
            r,
        )
    }

    fn add(&mut self, g: &mut Functional, a: Tap, b: Tap) -> Result<Tap> {
        let i = self.add;
        self.add += 1;
        g.merge_named(&numbered("add", i), Add, &[a, b])
    }
}

/// `{name}` SeparableConv2D 3×3 "same" without bias, then `{name}_bn`.
fn sepconv_bn(g: &mut Functional, x: Tap, filters: usize, name: &str) -> Result<Tap> {
    let sep = SeparableConv2D::new(filters, 3).same().use_bias(false);
    let h = g.apply_named(name, sep, x)?;
    g.apply_named(&format!("{name}_bn"), BatchNormalization::new(), h)
}

fn relu(g: &mut Functional, x: Tap, name: &str) -> Result<Tap> {
    g.apply_named(name, Activation(Act::Relu), x)
}

/// Keras's Xception with `include_top=True`.
///
/// - Entry flow: `block1_conv1` 3×3/2 conv 32 and `block1_conv2` 3×3 conv 64 ("valid", no
///   bias, each with BN and ReLU), then blocks 2–4 (128, 256, 728 filters): two separable
///   convolutions with BN (a ReLU before each, except before block 2's first), a 3×3/2
///   "same" max-pool, plus a 1×1/2 conv + BN shortcut.
/// - Middle flow: blocks 5–12, each three ReLU → separable conv 728 → BN, plus the identity.
/// - Exit flow: block 13 (separable 728 and 1024, max-pool, 1×1/2 conv 1024 + BN shortcut),
///   block 14 (separable 1536 and 2048, each BN + ReLU), `avg_pool` (global average) and
///   `predictions` (logits: the loss applies the softmax Keras puts there).
///
/// Made for 299×299×3 (71×71 at the least; the head follows a global pool). With 1000
/// classes: 22,910,480 parameters (54,528 of them batch-norm moving statistics), as Keras
/// counts. Layer names are Keras's (`block1_conv1`, `block1_conv1_bn`, `block1_conv1_act`,
/// `block2_sepconv1`, `block2_sepconv1_bn`, … `block14_sepconv2_act`, `avg_pool`,
/// `predictions`); Keras leaves the four shortcut convolutions, their batch norms and the
/// adds unnamed, and they get the names Keras gives them in a fresh session (`conv2d` …
/// `conv2d_3`, `batch_normalization` … `batch_normalization_3`, `add` … `add_11`), which an
/// importer should not rely on.
pub fn xception(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    xception_with(dev, input, Top::Classes(num_classes))
}

/// [`xception`] with Keras's `include_top` / `pooling` choice: `Top::Avg` is the base of
/// transfer learning (`include_top=False, pooling="avg"`), the same layers and names up to the
/// last feature map, so pretrained weights import into it by name.
pub fn xception_with(dev: &Device, input: [usize; 3], top: Top) -> Result<Functional> {
    let mut g = Functional::new(dev);
    let mut auto = Auto::default();
    let x = g.input(&input);

    // Entry flow.
    let conv = Conv2D::new(32, 3).strides(2).use_bias(false);
    let h = g.apply_named("block1_conv1", conv, x)?;
    let h = g.apply_named("block1_conv1_bn", BatchNormalization::new(), h)?;
    let h = relu(&mut g, h, "block1_conv1_act")?;
    let h = g.apply_named("block1_conv2", Conv2D::new(64, 3).use_bias(false), h)?;
    let h = g.apply_named("block1_conv2_bn", BatchNormalization::new(), h)?;
    let mut h = relu(&mut g, h, "block1_conv2_act")?;
    for (block, filters) in [(2, 128), (3, 256), (4, 728)] {
        let residual = auto.shortcut(&mut g, h, filters)?;
        let p = format!("block{block}");
        if block > 2 {
            h = relu(&mut g, h, &format!("{p}_sepconv1_act"))?;
        }
        h = sepconv_bn(&mut g, h, filters, &format!("{p}_sepconv1"))?;
        h = relu(&mut g, h, &format!("{p}_sepconv2_act"))?;
        h = sepconv_bn(&mut g, h, filters, &format!("{p}_sepconv2"))?;
        let pool = MaxPool2D::new(3).strides(2).same();
        h = g.apply_named(&format!("{p}_pool"), pool, h)?;
        h = auto.add(&mut g, h, residual)?;
    }

    // Middle flow.
    for block in 5..=12 {
        let residual = h;
        for i in 1..=3 {
            let name = format!("block{block}_sepconv{i}");
            h = relu(&mut g, h, &format!("{name}_act"))?;
            h = sepconv_bn(&mut g, h, 728, &name)?;
        }
        h = auto.add(&mut g, h, residual)?;
    }

    // Exit flow.
    let residual = auto.shortcut(&mut g, h, 1024)?;
    h = relu(&mut g, h, "block13_sepconv1_act")?;
    h = sepconv_bn(&mut g, h, 728, "block13_sepconv1")?;
    h = relu(&mut g, h, "block13_sepconv2_act")?;
    h = sepconv_bn(&mut g, h, 1024, "block13_sepconv2")?;
    let pool = MaxPool2D::new(3).strides(2).same();
    h = g.apply_named("block13_pool", pool, h)?;
    h = auto.add(&mut g, h, residual)?;
    h = sepconv_bn(&mut g, h, 1536, "block14_sepconv1")?;
    h = relu(&mut g, h, "block14_sepconv1_act")?;
    h = sepconv_bn(&mut g, h, 2048, "block14_sepconv2")?;
    h = relu(&mut g, h, "block14_sepconv2_act")?;
    finish(&mut g, h, top)?;
    Ok(g)
}
