//! LeNet-5 (LeCun et al., 1998) as the book builds it in Keras: tanh activations and average
//! pooling, 32×32 inputs (MNIST padded by 2).

use wgrad_nn::layers::{AvgPool2D, Conv2D, Dense, Flatten};
use wgrad_nn::{Act, Functional, Result, Sequential};
use wgrad_tensor::Device;

/// C1 6@5×5 → S2 avg 2 → C3 16@5×5 → S4 avg 2 → C5 120@5×5 → F6 84 → output (softmax logits
/// left to the loss): 61,706 parameters for 10 classes on 32×32×1.
pub fn lenet5(dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
    Sequential::new(dev, &input)
        .add(Conv2D::new(6, 5).activation(Act::Tanh))?
        .add(AvgPool2D::new(2))?
        .add(Conv2D::new(16, 5).activation(Act::Tanh))?
        .add(AvgPool2D::new(2))?
        .add(Conv2D::new(120, 5).activation(Act::Tanh))?
        .add(Flatten::new())?
        .add(Dense::new(84).activation(Act::Tanh))?
        .add(Dense::new(num_classes))
        .map(Sequential::into_model)
}
