//! ResNet-50 (He et al., 2015) as Keras's `applications.ResNet50` builds it: bottleneck units,
//! convolutions with bias, batch norm with epsilon 1.001e-5, and Keras's layer names so that
//! Keras's weights map onto it by name.

use wgrad_nn::layers::{Activation, BatchNormalization, Conv2D, MaxPool2D, ZeroPadding2D};
use wgrad_nn::{Act, Add, Functional, Result, Tap};
use wgrad_tensor::Device;

use crate::top::{finish, Top};

/// The batch-norm epsilon of Keras's ResNet family (not Keras's default 1e-3).
const BN_EPSILON: f32 = 1.001e-5;

fn bn() -> BatchNormalization {
    BatchNormalization::new().epsilon(BN_EPSILON)
}

/// Keras's `block1`: 1×1/`stride` → BN → ReLU → 3×3 → BN → ReLU → 1×1 (4·`filters`) → BN,
/// added to a shortcut that is the input, or 1×1/`stride` (4·`filters`) → BN when
/// `conv_shortcut`; ReLU after the sum. The stride sits on the first 1×1 (Keras's "v1").
fn bottleneck(
    g: &mut Functional,
    x: Tap,
    filters: usize,
    stride: usize,
    conv_shortcut: bool,
    name: &str,
) -> Result<Tap> {
    let shortcut = if conv_shortcut {
        let s = g.apply_named(
            &format!("{name}_0_conv"),
            Conv2D::new(4 * filters, 1).strides(stride),
            x,
        )?;
        g.apply_named(&format!("{name}_0_bn"), bn(), s)?
    } else {
        x
    };
    let h = g.apply_named(
        &format!("{name}_1_conv"),
        Conv2D::new(filters, 1).strides(stride),
        x,
    )?;
    let h = g.apply_named(&format!("{name}_1_bn"), bn(), h)?;
    let h = g.apply_named(&format!("{name}_1_relu"), Activation(Act::Relu), h)?;
    let h = g.apply_named(&format!("{name}_2_conv"), Conv2D::new(filters, 3).same(), h)?;
    let h = g.apply_named(&format!("{name}_2_bn"), bn(), h)?;
    let h = g.apply_named(&format!("{name}_2_relu"), Activation(Act::Relu), h)?;
    let h = g.apply_named(&format!("{name}_3_conv"), Conv2D::new(4 * filters, 1), h)?;
    let h = g.apply_named(&format!("{name}_3_bn"), bn(), h)?;
    let y = g.merge_named(&format!("{name}_add"), Add, &[shortcut, h])?;
    g.apply_named(&format!("{name}_out"), Activation(Act::Relu), y)
}

/// Keras's ResNet50 with `include_top=True`: `conv1` (zero-pad 3, 7×7/2 conv 64, BN, ReLU),
/// `pool1` (zero-pad 1, 3×3/2 max-pool), the stages `conv2`…`conv5` of 3, 4, 6 and 3
/// bottleneck units of width 64, 128, 256 and 512 (×4 at their outputs; the first unit of each
/// stage has a projection shortcut, and of `conv3`…`conv5` stride 2), then `avg_pool` (global
/// average) and `predictions` (logits: the loss applies the softmax Keras puts there).
///
/// Made for 224×224×3 (any size from 32×32 works: the head follows a global pool). With 1000
/// classes: 25,636,712 parameters, 53,120 of them batch-norm moving statistics, as Keras
/// counts. Layer names are Keras's: `conv1_conv`, `conv1_bn`, `conv2_block1_0_conv` (the
/// shortcut), `conv2_block1_1_conv` … `conv5_block3_3_bn`, `avg_pool`, `predictions`.
pub fn resnet50(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    resnet50_with(dev, input, Top::Classes(num_classes))
}

/// [`resnet50`] with Keras's `include_top` / `pooling` choice: `Top::Avg` is the base of
/// transfer learning (`include_top=False, pooling="avg"`), the same layers and names up to the
/// last feature map, so pretrained weights import into it by name.
pub fn resnet50_with(dev: &Device, input: [usize; 3], top: Top) -> Result<Functional> {
    let mut g = Functional::new(dev);
    let x = g.input(&input);
    let h = g.apply_named("conv1_pad", ZeroPadding2D::new(3), x)?;
    let h = g.apply_named("conv1_conv", Conv2D::new(64, 7).strides(2), h)?;
    let h = g.apply_named("conv1_bn", bn(), h)?;
    let h = g.apply_named("conv1_relu", Activation(Act::Relu), h)?;
    let h = g.apply_named("pool1_pad", ZeroPadding2D::new(1), h)?;
    let mut h = g.apply_named("pool1_pool", MaxPool2D::new(3).strides(2), h)?;
    for (stage, (filters, units, stride)) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
        .into_iter()
        .enumerate()
    {
        for u in 1..=units {
            let name = format!("conv{}_block{u}", stage + 2);
            h = if u == 1 {
                bottleneck(&mut g, h, filters, stride, true, &name)?
            } else {
                bottleneck(&mut g, h, filters, 1, false, &name)?
            };
        }
    }
    finish(&mut g, h, top)?;
    Ok(g)
}
