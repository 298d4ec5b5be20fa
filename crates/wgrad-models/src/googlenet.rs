//! GoogLeNet (Inception v1; Szegedy et al., "Going deeper with convolutions", 2014, Table 1):
//! inception modules of parallel branches joined along the channels.

use wgrad_nn::layers::{Conv2D, Dense, Dropout, GlobalAvgPool2D, MaxPool2D};
use wgrad_nn::{Act, Concatenate, Functional, Result, Tap};
use wgrad_tensor::Device;

/// The filter numbers of one inception module, as the columns of the paper's Table 1.
#[derive(Clone, Copy, Debug)]
struct Module {
    name: &'static str,
    /// "#1×1"
    c1: usize,
    /// "#3×3 reduce", "#3×3"
    r3: usize,
    c3: usize,
    /// "#5×5 reduce", "#5×5"
    r5: usize,
    c5: usize,
    /// "pool proj"
    pool: usize,
}

const fn module(
    name: &'static str,
    c1: usize,
    r3: usize,
    c3: usize,
    r5: usize,
    c5: usize,
    pool: usize,
) -> Module {
    Module {
        name,
        c1,
        r3,
        c3,
        r5,
        c5,
        pool,
    }
}

/// A ReLU convolution with bias, "same" padding.
fn conv(filters: usize, k: usize) -> Conv2D {
    Conv2D::new(filters, k).same().activation(Act::Relu)
}

/// The 3×3/2 "same" max-pool between the stages.
fn pool() -> MaxPool2D {
    MaxPool2D::new(3).strides(2).same()
}

/// An inception module: 1×1 | 1×1 → 3×3 | 1×1 → 5×5 | 3×3/1 max-pool → 1×1, concatenated
/// along the channels in that order (`c1 + c3 + c5 + pool` output channels).
fn inception(g: &mut Functional, x: Tap, m: Module) -> Result<Tap> {
    let n = |branch: &str| format!("inception_{}_{branch}", m.name);
    let b1 = g.apply_named(&n("1x1"), conv(m.c1, 1), x)?;
    let b3 = g.apply_named(&n("3x3_reduce"), conv(m.r3, 1), x)?;
    let b3 = g.apply_named(&n("3x3"), conv(m.c3, 3), b3)?;
    let b5 = g.apply_named(&n("5x5_reduce"), conv(m.r5, 1), x)?;
    let b5 = g.apply_named(&n("5x5"), conv(m.c5, 5), b5)?;
    let bp = g.apply_named(&n("pool"), MaxPool2D::new(3).strides(1).same(), x)?;
    let bp = g.apply_named(&n("pool_proj"), conv(m.pool, 1), bp)?;
    g.merge_named(&n("output"), Concatenate::default(), &[b1, b3, b5, bp])
}

/// GoogLeNet as in Table 1 of Szegedy et al. (2014), without the two auxiliary classifiers:
/// 7×7/2 conv 64 → 3×3/2 max-pool → 1×1 conv 64 → 3×3 conv 192 → 3×3/2 max-pool → inception
/// 3a, 3b → max-pool → 4a–4e → max-pool → 5a, 5b → average pool → dropout 40 % → linear
/// `num_classes` (logits: the loss applies the softmax). Every convolution has a bias and a
/// ReLU, and "same" padding, which gives the table's sizes (112, 56, 28, 14, 7) on 224×224×3.
///
/// Differences from the paper: the local response normalisation after the first pool and
/// after the 3×3 conv is omitted (it has no parameters); the 7×7/1 average pool is a global
/// average pool (the same on 224×224, and it lets small images through, from 32×32).
///
/// Parameters with 1000 classes: 6,998,552 (6,990,272 weights and 8,280 biases). The paper's
/// "~6.8M" is the sum of its Table 1 column, which counts weights in units of 1024 and has a
/// few rows that the filter numbers do not reproduce (`tests/zoo.rs` works it out).
///
/// Layers are named after BVLC Caffe's GoogLeNet with `/` as `_`: `conv1_7x7_s2`,
/// `inception_3a_1x1`, `inception_3a_3x3_reduce`, …, `inception_3a_pool_proj`,
/// `inception_3a_output`, `loss3_classifier`.
pub fn googlenet(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    let mut g = Functional::new(dev);
    let x = g.input(&input);
    let h = g.apply_named("conv1_7x7_s2", conv(64, 7).strides(2), x)?;
    let h = g.apply_named("pool1_3x3_s2", pool(), h)?;
    let h = g.apply_named("conv2_3x3_reduce", conv(64, 1), h)?;
    let h = g.apply_named("conv2_3x3", conv(192, 3), h)?;
    let mut h = g.apply_named("pool2_3x3_s2", pool(), h)?;
    let stages: [(&[Module], Option<&str>); 3] = [
        (
            &[
                module("3a", 64, 96, 128, 16, 32, 32),
                module("3b", 128, 128, 192, 32, 96, 64),
            ],
            Some("pool3_3x3_s2"),
        ),
        (
            &[
                module("4a", 192, 96, 208, 16, 48, 64),
                module("4b", 160, 112, 224, 24, 64, 64),
                module("4c", 128, 128, 256, 24, 64, 64),
                module("4d", 112, 144, 288, 32, 64, 64),
                module("4e", 256, 160, 320, 32, 128, 128),
            ],
            Some("pool4_3x3_s2"),
        ),
        (
            &[
                module("5a", 256, 160, 320, 32, 128, 128),
                module("5b", 384, 192, 384, 48, 128, 128),
            ],
            None,
        ),
    ];
    for (modules, pool_name) in stages {
        for &m in modules {
            h = inception(&mut g, h, m)?;
        }
        if let Some(p) = pool_name {
            h = g.apply_named(p, pool(), h)?;
        }
    }
    let h = g.apply_named("pool5_7x7_s1", GlobalAvgPool2D::new(), h)?;
    let h = g.apply_named("pool5_drop_7x7_s1", Dropout::new(0.4), h)?;
    let y = g.apply_named("loss3_classifier", Dense::new(num_classes), h)?;
    g.outputs(&[y])?;
    Ok(g)
}
