//! AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as the book builds it in one tower: the
//! paper's layers without the split across two GPUs (so conv2, conv4 and conv5 see all the
//! channels of the layer below, not half of them).

use wgrad_nn::layers::{Conv2D, Dense, Dropout, Flatten, LocalResponseNormalization, MaxPool2D};
use wgrad_nn::{Act, Functional, Result, Sequential};
use wgrad_tensor::Device;

/// The paper's response normalisation: k = 2, n = 5 (depth radius 2), alpha = 1e-4, beta =
/// 0.75, with alpha scaling the plain sum (TensorFlow's convention, as the paper writes it).
fn lrn() -> LocalResponseNormalization {
    LocalResponseNormalization::new()
        .depth_radius(2)
        .bias(2.0)
        .alpha(1e-4)
        .beta(0.75)
}

/// Conv 96 11×11/4 valid ReLU → LRN → MaxPool 3/2 → Conv 256 5×5 same ReLU → LRN → MaxPool 3/2
/// → Conv 384 3×3 → Conv 384 3×3 → Conv 256 3×3 (same, ReLU) → MaxPool 3/2 → Flatten →
/// Dense 4096 ReLU → Dropout 0.5 → Dense 4096 ReLU → Dropout 0.5 → Dense `num_classes`
/// (logits: pair it with a from-logits cross-entropy).
///
/// The paper's input is 227×227×3 (55×55 after conv1, 6×6×256 = 9,216 features before the
/// dense layers): 62,378,344 parameters for 1,000 classes. fc6's kernel is then one tensor of
/// 9,216 × 4,096 floats (151 MB), past the 128 MiB that lavapipe and browsers bind at once:
/// the ops on it run in pieces (see `Device::binding_limit`), so the model trains at 227×227
/// there too. Smaller images down to 67×67 still give valid shapes (and a smaller fc6).
pub fn alexnet(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    let conv = |f, k| Conv2D::new(f, k).same().activation(Act::Relu);
    let pool = || MaxPool2D::new(3).strides(2);
    Sequential::new(dev, &input)
        .add(Conv2D::new(96, 11).strides(4).activation(Act::Relu))?
        .add(lrn())?
        .add(pool())?
        .add(conv(256, 5))?
        .add(lrn())?
        .add(pool())?
        .add(conv(384, 3))?
        .add(conv(384, 3))?
        .add(conv(256, 3))?
        .add(pool())?
        .add(Flatten::new())?
        .add(Dense::new(4096).activation(Act::Relu))?
        .add(Dropout::new(0.5))?
        .add(Dense::new(4096).activation(Act::Relu))?
        .add(Dropout::new(0.5))?
        .add(Dense::new(num_classes))
        .map(Sequential::into_model)
}
