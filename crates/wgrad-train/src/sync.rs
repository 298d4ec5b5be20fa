//! The seam between the training loop and data-parallel training: a [`GradientSync`] sees
//! each parameter's gradient as the backward pass finishes it, hands back the replicas'
//! average before the optimizer runs, and reduces the loop's metrics. `wgrad-dist`
//! implements it on MPI; without one, [`Trainer`](crate::Trainer) trains on one adapter.

use wgrad_nn::Result;
use wgrad_tensor::Tensor;

/// What data-parallel training needs from each step of the loop.
pub trait GradientSync {
    /// Before a step's backward pass: the trainable parameters as `(graph id, value)`, in
    /// the order the model lists them. The same on every replica.
    fn begin(&mut self, params: &[(u64, &Tensor)]) -> Result<()>;

    /// A parameter's gradient is final (the backward pass calls this last layer first).
    /// An implementation may start reducing it at once, while the backward pass goes on.
    fn ready(&mut self, id: u64, grad: &Tensor) -> Result<()>;

    /// After the backward pass: the gradient every parameter is to be stepped with (the
    /// average over the replicas), by graph id. Parameters that got no gradient here are
    /// reduced as zeros, so that replicas never disagree on what they send.
    fn finish(&mut self) -> Result<Vec<(u64, Tensor)>>;

    /// Sums `values` element-wise over the replicas, in place (metrics, sample counts).
    fn all_sum(&mut self, values: &mut [f64]) -> Result<()>;

    /// Broadcasts `values` from the primary replica to every other, in place.
    fn broadcast(&mut self, values: &mut [f32]) -> Result<()>;

    /// The replica that prints, writes checkpoints and keeps the history (rank 0).
    fn is_primary(&self) -> bool;
}
