//! VGG-16 (Simonyan & Zisserman, 2014, configuration D) as Keras's `applications.VGG16` builds
//! it, with Keras's layer names so that Keras's weights map onto it by name.

use wgrad_nn::layers::{Conv2D, Dense, Flatten, MaxPool2D};
use wgrad_nn::{Act, Functional, Result, Sequential};
use wgrad_tensor::Device;

/// Keras's VGG16 with `include_top=True`: five blocks of 3×3 "same" ReLU convolutions with
/// bias (64×2, 128×2, 256×3, 512×3, 512×3), each closed by a 2×2/2 max-pool, then `flatten`,
/// `fc1` 4096 ReLU, `fc2` 4096 ReLU and `predictions` (logits: the loss applies the softmax
/// that Keras puts in this layer). Made for 224×224×3 inputs (the flatten width, and so `fc1`,
/// depends on the size); with 1000 classes it has 138,357,544 parameters, as Keras counts.
/// At 224×224 `fc1`'s kernel alone is 7·7·512 × 4096 floats (411 MB), one tensor past the
/// 128 MiB that lavapipe and browsers bind at once: the ops on it (initialisation, the dense
/// products and their gradients, the optimizer update) run in pieces (see
/// `Device::binding_limit`), so the model trains at its real size there too.
///
/// Layers are named as in Keras: `block1_conv1` … `block5_conv3`, `block1_pool` …
/// `block5_pool`, `flatten`, `fc1`, `fc2`, `predictions`.
pub fn vgg16(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    let mut m = Sequential::new(dev, &input);
    for (block, (filters, convs)) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let b = block + 1;
        for c in 1..=convs {
            m = m.add_named(
                &format!("block{b}_conv{c}"),
                Conv2D::new(filters, 3).same().activation(Act::Relu),
            )?;
        }
        m = m.add_named(&format!("block{b}_pool"), MaxPool2D::new(2))?;
    }
    m.add_named("flatten", Flatten::new())?
        .add_named("fc1", Dense::new(4096).activation(Act::Relu))?
        .add_named("fc2", Dense::new(4096).activation(Act::Relu))?
        .add_named("predictions", Dense::new(num_classes))
        .map(Sequential::into_model)
}
