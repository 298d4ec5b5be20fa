//! VGG-16 at 224×224 and AlexNet at 227×227 train. Their first dense kernels (VGG's fc1:
//! 25,088 × 4,096 floats, 411 MB; AlexNet's fc6: 9,216 × 4,096, 151 MB) are past the
//! 128 MiB that lavapipe and browsers bind at once, so every op that touches them (the
//! Glorot initialisation, the forward product, both gradients, the optimizer update) runs in
//! pieces. The device here is held to that 128 MiB whatever the adapter binds, so a GPU
//! with a larger limit takes the same split paths.

use wgrad::models::{alexnet, vgg16};
use wgrad::nn::layers::{Conv2D, Dense, Flatten, MaxPool2D};
use wgrad::nn::{Act, Layer, Loss, Optimizer, Sequential, Trainer};
use wgrad::{Device, Tensor};

const LIMIT: u64 = 128 << 20;

fn device() -> Device {
    let d = Device::new().unwrap();
    d.set_binding_limit(Some(LIMIT));
    d
}

/// Runs `steps` SGD steps on one fixed batch of random images and labels; returns the
/// losses and the largest change of the named kernel.
fn train<M: Layer>(
    dev: &Device,
    model: M,
    kernel: &str,
    input: [usize; 3],
    steps: usize,
) -> (Vec<f32>, f32) {
    let batch = 2;
    let weight = |m: &M| {
        m.named_params()
            .into_iter()
            .find(|(n, _)| n.contains(kernel))
            .map(|(_, p)| p.value().clone())
            .unwrap_or_else(|| panic!("no parameter named {kernel}"))
    };
    let before = weight(&model);
    assert!(
        before.size_in_bytes() > LIMIT,
        "{kernel} must be past the limit"
    );
    let mut trainer = Trainer::new(
        model,
        Optimizer::sgd(0.02),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(3);
    let shape = [batch, input[0], input[1], input[2]];
    let x = Tensor::rand_uniform(dev, &shape, 0.0, 1.0, 1).unwrap();
    let y = Tensor::from_slice(dev, &[3u32, 917], &[batch]).unwrap();
    let losses: Vec<f32> = (0..steps)
        .map(|_| trainer.train_step(&x, &y).unwrap().0.to_scalar().unwrap())
        .collect();
    let after = weight(&trainer.model);
    let change = after
        .sub(&before)
        .unwrap()
        .abs()
        .unwrap()
        .max(&[], false)
        .unwrap()
        .to_scalar()
        .unwrap();
    (losses, change)
}

/// A 1,000-class model starts near chance (ln 1000 = 6.91), learns the fixed batch, and
/// moves the split kernel by a finite, non-zero amount.
fn check(name: &str, losses: &[f32], change: f32, strictly: bool) {
    println!("{name}: losses {losses:?}, largest kernel change {change:e}");
    assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
    assert!(
        (losses[0] - 1000f32.ln()).abs() < 1.5,
        "{name}: first loss {} is not near ln(1000)",
        losses[0]
    );
    let last = *losses.last().unwrap();
    assert!(last < losses[0] - 0.05, "{name} did not learn: {losses:?}");
    if strictly {
        assert!(losses.windows(2).all(|w| w[1] < w[0]), "{name}: {losses:?}");
    }
    assert!(change.is_finite() && change > 0.0, "{name}: {change}");
}

#[test]
fn vgg16_at_224_trains() {
    let dev = device();
    let model = vgg16(&dev, [224, 224, 3], 1000).unwrap();
    // Keras: `VGG16(weights=None).count_params()`.
    assert_eq!(model.param_counts(), (138_357_544, 0));
    let (losses, change) = train(&dev, model, "fc1", [224, 224, 3], 4);
    check("VGG-16 224", &losses, change, true);
}

#[test]
fn alexnet_at_227_trains() {
    let dev = device();
    let model = alexnet(&dev, [227, 227, 3], 1000).unwrap();
    assert_eq!(model.param_counts(), (62_378_344, 0));
    // Dropout draws new masks each step, so the losses fall overall, not step by step.
    let (losses, change) = train(&dev, model, "dense", [227, 227, 3], 5);
    check("AlexNet 227", &losses, change, false);
}

/// The same training on a device whose binding limit is lowered to 128 KiB (so the dense
/// kernel, its gradient, the Adam slots, the global-norm clipping's reductions and the
/// EMA copies all run in pieces) and on the device under test, where everything fits one
/// binding: the step losses and final weights agree to float rounding.
#[test]
fn training_in_pieces_matches_training_whole() {
    let run = |dev: &Device| {
        let model = Sequential::new(dev, &[12, 12, 3])
            .add(Conv2D::new(8, 3).same().activation(Act::Relu))
            .unwrap()
            .add(MaxPool2D::new(2))
            .unwrap()
            .add(Flatten::new())
            .unwrap()
            .add(Dense::new(160).activation(Act::Relu))
            .unwrap()
            .add(Dense::new(10))
            .unwrap()
            .into_model();
        let big = model
            .named_params()
            .iter()
            .filter(|(_, p)| p.value().size_in_bytes() > 128 << 10)
            .count();
        let mut t = Trainer::new(
            model,
            Optimizer::adam(0.01).global_clipnorm(1.0).use_ema(0.9),
            Loss::sparse_categorical_crossentropy(true),
        )
        .seed(5);
        let x = Tensor::rand_uniform(dev, &[8, 12, 12, 3], 0.0, 1.0, 2).unwrap();
        let labels: Vec<u32> = (0..8).map(|i| (i * 3 % 10) as u32).collect();
        let y = Tensor::from_slice(dev, &labels, &[8]).unwrap();
        let losses: Vec<f32> = (0..4)
            .map(|_| t.train_step(&x, &y).unwrap().0.to_scalar().unwrap())
            .collect();
        let weights: Vec<(String, Vec<f32>)> = t
            .model
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.value().to_vec::<f32>().unwrap()))
            .collect();
        (big, losses, weights)
    };
    let lowered = Device::new().unwrap();
    lowered.set_binding_limit(Some(128 << 10));
    let (big, split_losses, split_weights) = run(&lowered);
    assert_eq!(big, 1, "the first dense kernel (288 x 160) is past 128 KiB");
    let (_, losses, weights) = run(&wgrad_testkit::device());
    assert!(losses[3] < losses[0], "{losses:?}");
    for (a, b) in split_losses.iter().zip(&losses) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs(),
            "{split_losses:?} vs {losses:?}"
        );
    }
    for ((name, a), (_, b)) in split_weights.iter().zip(&weights) {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-4 * scale, "{name}: {worst} of {scale}");
    }
}
