//! The small CNNs the first chapters train on MNIST and Fashion-MNIST (28×28×1 inputs).
//! Each returns logits unless noted; pair them with a from-logits cross-entropy.

use wgrad_nn::layers::{Conv2D, Dense, Dropout, Flatten, MaxPool2D};
use wgrad_nn::{Act, Functional, Result, Sequential};
use wgrad_tensor::Device;

/// The course's first CNN: Conv 64 3×3 ReLU → MaxPool 2 → Flatten → Dense 128 ReLU → Dense
/// `num_classes` (1,386,506 parameters for 10 classes).
pub fn fashion_course(dev: &Device, num_classes: usize, seed: u64) -> Result<Functional> {
    Sequential::new(dev, &[28, 28, 1])
        .seed(seed)
        .add(Conv2D::new(64, 3).activation(Act::Relu))?
        .add(MaxPool2D::new(2))?
        .add(Flatten::new())?
        .add(Dense::new(128).activation(Act::Relu))?
        .add(Dense::new(num_classes))
        .map(Sequential::into_model)
}

/// Chollet's MNIST convnet (Deep Learning with Python, 1st ed.): Conv 32 → MaxPool → Conv 64 →
/// MaxPool → Conv 64 → Flatten → Dense 64 → Dense `num_classes` (93,322 parameters), with a
/// softmax output when `softmax` (the book's form, for a loss on probabilities).
pub fn chollet_mnist(
    dev: &Device,
    num_classes: usize,
    softmax: bool,
    seed: u64,
) -> Result<Functional> {
    let head = if softmax { Act::Softmax } else { Act::Linear };
    Sequential::new(dev, &[28, 28, 1])
        .seed(seed)
        .add(Conv2D::new(32, 3).activation(Act::Relu))?
        .add(MaxPool2D::new(2))?
        .add(Conv2D::new(64, 3).activation(Act::Relu))?
        .add(MaxPool2D::new(2))?
        .add(Conv2D::new(64, 3).activation(Act::Relu))?
        .add(Flatten::new())?
        .add(Dense::new(64).activation(Act::Relu))?
        .add(Dense::new(num_classes).activation(head))
        .map(Sequential::into_model)
}

/// Géron's Fashion-MNIST CNN (Hands-On ML, ch. 14): Conv 64 7×7 → MaxPool → 2 × Conv 128 →
/// MaxPool → 2 × Conv 256 → MaxPool → Flatten → Dense 128 → Dropout 0.5 → Dense 64 →
/// Dropout 0.5 → Dense `num_classes`, "same" padding and ReLU throughout.
pub fn geron_fashion(dev: &Device, num_classes: usize, seed: u64) -> Result<Functional> {
    let conv = |f, k| Conv2D::new(f, k).same().activation(Act::Relu);
    Sequential::new(dev, &[28, 28, 1])
        .seed(seed)
        .add(conv(64, 7))?
        .add(MaxPool2D::new(2))?
        .add(conv(128, 3))?
        .add(conv(128, 3))?
        .add(MaxPool2D::new(2))?
        .add(conv(256, 3))?
        .add(conv(256, 3))?
        .add(MaxPool2D::new(2))?
        .add(Flatten::new())?
        .add(Dense::new(128).activation(Act::Relu))?
        .add(Dropout::new(0.5))?
        .add(Dense::new(64).activation(Act::Relu))?
        .add(Dropout::new(0.5))?
        .add(Dense::new(num_classes))
        .map(Sequential::into_model)
}
