pub use wgrad_tensor::*;

pub use wgrad_data as data;
/// Reverse-mode autodiff (`Var`, differentiable ops, `no_grad`).
pub use wgrad_graph as graph;
/// The model zoo: LeNet-5, AlexNet, VGG-16, GoogLeNet, ResNet-18/34/50, Xception, SE-ResNet.
pub use wgrad_models as models;
/// Keras-style layers, models, losses, optimizers, metrics, and (from wgrad-train) training:
/// one namespace, as Keras has it.
pub mod nn {
    pub use wgrad_nn::*;
    pub use wgrad_train::*;
}
/// Data-parallel training on MPI (the `distributed` feature).
#[cfg(feature = "distributed")]
pub use wgrad_dist as dist;
/// Training loops alone: `Trainer`, `fit`, callbacks, checkpoints, plots (also in [`nn`]).
pub use wgrad_train as train;
