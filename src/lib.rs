pub use wgrad_tensor::*;

pub use wgrad_data as data;
/// Reverse-mode autodiff (`Var`, differentiable ops, `no_grad`).
pub use wgrad_graph as graph;
/// The model zoo: LeNet-5, AlexNet, VGG-16, GoogLeNet, ResNet-18/34/50, Xception, SE-ResNet.
pub use wgrad_models as models;
/// Keras-style layers, models, losses, optimizers and training.
pub use wgrad_nn as nn;
