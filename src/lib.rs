pub use wgrad_tensor::*;

pub use wgrad_data as data;
/// Reverse-mode autodiff (`Var`, differentiable ops, `no_grad`).
pub use wgrad_graph as graph;
/// Keras-style layers, models, losses, optimizers and training.
pub use wgrad_nn as nn;
