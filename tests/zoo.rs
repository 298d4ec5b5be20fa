//! The ImageNet models of the zoo against their reference parameter counts (Keras's
//! applications, torchvision, or a formula from the paper's table written out here), their
//! Keras layer names, and forward smoke checks on small images where the shapes allow.
//!
//! Building a model allocates and initialises its weights on the device (VGG-16: 553 MB), so
//! each test ends with `dev.sync()`: the queued initialisation must finish before the binary
//! exits (lavapipe's queue thread still running at exit once crashed a test binary).

use wgrad::graph::{no_grad, Var};
use wgrad::models::{
    googlenet, resnet34, resnet50, resnet50_with, se_resnet34, vgg16, xception, xception_with, Top,
};
use wgrad::nn::{predict, Ctx, Layer};
use wgrad::{Device, Tensor};

/// `k×k` convolution from `cin` to `cout` channels, with or without bias.
fn conv(k: usize, cin: usize, cout: usize, bias: bool) -> usize {
    k * k * cin * cout + if bias { cout } else { 0 }
}

/// Runs `model` on one `[1, h, w, c]` image in inference mode and checks the logits.
fn smoke(dev: &Device, model: &mut dyn Layer, input: [usize; 3], classes: usize) {
    let [h, w, c] = input;
    let x = Var::new(Tensor::rand_uniform(dev, &[1, h, w, c], 0.0, 1.0, 7).unwrap());
    let y = no_grad(|| model.forward(&x, &mut Ctx::new(false, 0))).unwrap();
    assert_eq!(y.shape(), &[1, classes]);
    let v = y.value().to_vec::<f32>().unwrap();
    assert!(v.iter().all(|z| z.is_finite()), "{v:?}");
}

#[test]
fn vgg16_matches_keras() {
    let dev = wgrad_testkit::device();
    let mut names = Vec::new();
    for (b, convs) in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] {
        for c in 1..=convs {
            names.push(format!("block{b}_conv{c}"));
        }
        names.push(format!("block{b}_pool"));
    }
    names.extend(["flatten", "fc1", "fc2", "predictions"].map(String::from));
    // Keras: `VGG16(weights=None).count_params()` on 224×224×3 is 138,357,544. Its fc1 kernel
    // (7·7·512 × 4096 f32, 411 MB) is past lavapipe's 128 MiB binding limit: ops on it run in
    // pieces (tests/large_models.rs trains it), so the model builds at its real size.
    let m = vgg16(&dev, [224, 224, 3], 1000).unwrap();
    assert_eq!(m.layer_names(), names);
    assert_eq!(m.output_shape(), &[1000]);
    let (total, stats) = m.param_counts();
    assert_eq!(stats, 0);
    assert_eq!(total, 138_357_544);
    dev.sync().unwrap();
}

#[test]
fn resnet50_matches_keras() {
    let dev = wgrad_testkit::device();
    let m = resnet50(&dev, [224, 224, 3], 1000).unwrap();
    // Keras: 25,636,712 in all, 53,120 of them the batch norms' moving statistics.
    assert_eq!(m.param_counts(), (25_636_712 - 53_120, 53_120));
    let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
    for want in [
        "conv1_conv/kernel",
        "conv1_conv/bias",
        "conv1_bn/gamma",
        "conv2_block1_0_conv/kernel",
        "conv2_block1_1_conv/bias",
        "conv3_block1_0_bn/moving_mean",
        "conv4_block6_3_conv/kernel",
        "conv5_block3_3_bn/moving_variance",
        "predictions/kernel",
        "predictions/bias",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want}");
    }
    // Only the first unit of a stage has a projection shortcut.
    assert!(!names.iter().any(|n| n.starts_with("conv2_block2_0_")));
    dev.sync().unwrap();
}

#[test]
fn resnet50_runs_on_a_small_image() {
    let dev = wgrad_testkit::device();
    let mut m = resnet50(&dev, [32, 32, 3], 7).unwrap();
    smoke(&dev, &mut m, [32, 32, 3], 7);
    dev.sync().unwrap();
}

/// Keras's `include_top=False` with `pooling=None | "avg" | "max"`: the same base (same
/// weights for the same seed), ending at the last feature map or its global average or
/// maximum; the classifier's parameters are all that differ.
#[test]
fn bases_without_their_top() {
    let dev = wgrad_testkit::device();
    let full = resnet50(&dev, [64, 64, 3], 1000).unwrap();
    let mut map = resnet50_with(&dev, [64, 64, 3], Top::FeatureMap).unwrap();
    let mut avg = resnet50_with(&dev, [64, 64, 3], Top::Avg).unwrap();
    let mut max = resnet50_with(&dev, [64, 64, 3], Top::Max).unwrap();
    let head = 2048 * 1000 + 1000;
    assert_eq!(avg.param_counts().0, full.param_counts().0 - head);
    assert_eq!(map.param_counts(), avg.param_counts());
    let names: Vec<String> = avg.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n.starts_with("predictions")));
    let x = Tensor::rand_uniform(&dev, &[2, 64, 64, 3], 0.0, 1.0, 3).unwrap();
    let fm = predict(&mut map, &x, 2).unwrap();
    assert_eq!(fm.shape(), &[2, 2, 2, 2048]);
    let v = fm.to_vec::<f32>().unwrap();
    let (mut mean, mut most) = (vec![0f64; 2 * 2048], vec![f64::MIN; 2 * 2048]);
    for n in 0..2 {
        for p in 0..4 {
            for c in 0..2048 {
                let e = v[(n * 4 + p) * 2048 + c] as f64;
                mean[n * 2048 + c] += e / 4.0;
                most[n * 2048 + c] = most[n * 2048 + c].max(e);
            }
        }
    }
    let a = predict(&mut avg, &x, 2).unwrap();
    assert_eq!(a.shape(), &[2, 2048]);
    wgrad_testkit::assert_close(&a.to_vec::<f32>().unwrap(), &mean, 1e-5, 1e-6);
    let m = predict(&mut max, &x, 2).unwrap();
    wgrad_testkit::assert_close(&m.to_vec::<f32>().unwrap(), &most, 1e-6, 1e-7);
    let base = xception_with(&dev, [71, 71, 3], Top::Avg).unwrap();
    let xfull = xception(&dev, [71, 71, 3], 4).unwrap();
    assert_eq!(
        base.param_counts().0,
        xfull.param_counts().0 - (2048 * 4 + 4)
    );
    dev.sync().unwrap();
}

#[test]
fn xception_matches_keras() {
    let dev = wgrad_testkit::device();
    let m = xception(&dev, [299, 299, 3], 1000).unwrap();
    // Keras: 22,910,480 in all; 54,528 = 2 × 27,264 batch-norm channels of moving statistics.
    assert_eq!(m.param_counts(), (22_910_480 - 54_528, 54_528));
    let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
    for want in [
        "block1_conv1/kernel",
        "block1_conv1_bn/beta",
        "block2_sepconv1/depthwise_kernel",
        "block2_sepconv1/pointwise_kernel",
        "block12_sepconv3_bn/moving_mean",
        "block14_sepconv2/pointwise_kernel",
        "conv2d_3/kernel",
        "predictions/bias",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want}");
    }
    // Keras's Xception has no bias but in the head.
    let biases: Vec<&String> = names.iter().filter(|n| n.ends_with("/bias")).collect();
    assert_eq!(biases, ["predictions/bias"]);
    dev.sync().unwrap();
}

#[test]
fn xception_runs_on_its_smallest_image() {
    let dev = wgrad_testkit::device();
    let mut m = xception(&dev, [71, 71, 3], 4).unwrap();
    smoke(&dev, &mut m, [71, 71, 3], 4);
    dev.sync().unwrap();
}

#[test]
fn googlenet_matches_table_1() {
    let dev = wgrad_testkit::device();
    let m = googlenet(&dev, [224, 224, 3], 1000).unwrap();
    // Table 1 of Szegedy et al. (2014), the inception rows: input channels, #1×1,
    // #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
    let table: [(usize, usize, usize, usize, usize, usize, usize); 9] = [
        (192, 64, 96, 128, 16, 32, 32),     // 3a → 256
        (256, 128, 128, 192, 32, 96, 64),   // 3b → 480
        (480, 192, 96, 208, 16, 48, 64),    // 4a → 512
        (512, 160, 112, 224, 24, 64, 64),   // 4b → 512
        (512, 128, 128, 256, 24, 64, 64),   // 4c → 512
        (512, 112, 144, 288, 32, 64, 64),   // 4d → 528
        (528, 256, 160, 320, 32, 128, 128), // 4e → 832
        (832, 256, 160, 320, 32, 128, 128), // 5a → 832
        (832, 384, 192, 384, 48, 128, 128), // 5b → 1024
    ];
    let count = |bias: bool| {
        // conv 7×7/2 64; conv 3×3 (1×1 reduce 64, then 192); the linear layer 1024 → 1000.
        let mut n = conv(7, 3, 64, bias) + conv(1, 64, 64, bias) + conv(3, 64, 192, bias);
        for (cin, c1, r3, c3, r5, c5, pp) in table {
            n += conv(1, cin, c1, bias)
                + conv(1, cin, r3, bias)
                + conv(3, r3, c3, bias)
                + conv(1, cin, r5, bias)
                + conv(5, r5, c5, bias)
                + conv(1, cin, pp, bias);
        }
        n + 1024 * 1000 + if bias { 1000 } else { 0 }
    };
    let (with_bias, weights) = (count(true), count(false));
    assert_eq!(m.param_counts(), (with_bias, 0));
    assert_eq!((with_bias, weights), (6_998_552, 6_990_272));
    // The paper's "~6.8M" does not hold within 2 % as a decimal count: 6,998,552 is 2.9 %
    // above it. The figure is the sum of Table 1's params column (2.7K + 112K + 159K + 380K +
    // 364K + 437K + 463K + 580K + 840K + 1072K + 1388K + 1000K = 6797.7K), which counts weights
    // (no biases) in units of K = 1024 — 3a's 163,328 weights are its "159K", the conv 3×3's
    // 114,688 its "112K", the linear layer's 1,024,000 its "1000K" — and a few of whose rows
    // the filter numbers do not give (conv 7×7: 9,408 weights = 9.2K, not 2.7K; 4c: 497.5K,
    // not 463K; 5a: 1018K, not 1072K). In the column's own units the count is within 2 %.
    let column_k = 2.7
        + 112.0
        + 159.0
        + 380.0
        + 364.0
        + 437.0
        + 463.0
        + 580.0
        + 840.0
        + 1072.0
        + 1388.0
        + 1000.0;
    let ours_k = weights as f64 / 1024.0;
    assert!(
        (ours_k - column_k).abs() / column_k < 0.02,
        "{ours_k}K vs {column_k}K"
    );
    assert!((with_bias as f64 - 6.8e6) / 6.8e6 > 0.02, "see above");
    dev.sync().unwrap();
}

#[test]
fn googlenet_runs_on_a_small_image() {
    let dev = wgrad_testkit::device();
    let mut m = googlenet(&dev, [32, 32, 3], 10).unwrap();
    smoke(&dev, &mut m, [32, 32, 3], 10);
    dev.sync().unwrap();
}

/// ResNet-34's units: (width, count).
const RESNET34: [(usize, usize); 4] = [(64, 3), (128, 4), (256, 6), (512, 3)];

#[test]
fn resnet34_matches_torchvision() {
    let dev = wgrad_testkit::device();
    let m = resnet34(&dev, [224, 224, 3], 1000).unwrap();
    // torchvision's `resnet34()` has 21,797,672 parameters: weights and BN gamma/beta (its BN
    // statistics are buffers). Its convolutions have no bias, as here.
    let (trainable, stats) = m.param_counts();
    assert_eq!(trainable, 21_797_672);
    // Moving mean and variance of every BN: the stem's, two per unit, one per projection.
    let bn_channels: usize =
        64 + RESNET34.iter().map(|&(c, n)| 2 * c * n).sum::<usize>() + 128 + 256 + 512;
    assert_eq!(stats, 2 * bn_channels);
    assert_eq!(stats, 17_024);
    dev.sync().unwrap();
}

#[test]
fn se_resnet34_adds_the_excitation_dense_layers() {
    let dev = wgrad_testkit::device();
    let m = se_resnet34(&dev, [224, 224, 3], 1000).unwrap();
    // Per unit of width C (r = 16): Dense C → C/16 (kernel + bias), Dense C/16 → C (kernel +
    // bias), on top of ResNet-34's 21,797,672 trainable parameters (torchvision's count).
    let se: usize = RESNET34
        .iter()
        .map(|&(c, n)| n * (c * c / 16 + c / 16 + c / 16 * c + c))
        .sum();
    assert_eq!(se, 161_196);
    assert_eq!(m.param_counts(), (21_797_672 + se, 17_024));
    let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(
        names
            .iter()
            .any(|n| n == "se_residual_unit_15/se_expand/kernel"),
        "{names:?}"
    );
    assert!(names
        .iter()
        .any(|n| n == "se_residual_unit_3/skip_conv/kernel"));
    dev.sync().unwrap();
}

#[test]
fn se_resnet34_runs_forward_and_backward_on_a_small_image() {
    let dev = wgrad_testkit::device();
    let mut m = se_resnet34(&dev, [32, 32, 3], 10).unwrap();
    assert_eq!(m.output_shape(), &[10]);
    smoke(&dev, &mut m, [32, 32, 3], 10);
    // One training step's gradients reach every trainable weight, the SE layers' included.
    let x = Var::new(Tensor::rand_uniform(&dev, &[2, 32, 32, 3], 0.0, 1.0, 3).unwrap());
    let y = m.forward(&x, &mut Ctx::new(true, 1)).unwrap();
    wgrad::graph::ops::mean(&wgrad::graph::ops::square(&y).unwrap(), &[])
        .unwrap()
        .backward()
        .unwrap();
    let missing: Vec<String> = m
        .named_params()
        .into_iter()
        .filter(|(_, p)| p.trainable() && p.grad().is_none())
        .map(|(n, _)| n)
        .collect();
    assert!(missing.is_empty(), "no gradient for {missing:?}");
    dev.sync().unwrap();
}
