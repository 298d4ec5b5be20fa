pub use wgrad_tensor::*;

pub use wgrad_data as data;
/// Reverse-mode autodiff (`Var`, differentiable ops, `no_grad`).
pub use wgrad_graph as graph;
