//! # wgrad-models
//!
//! The CNNs of the book chapters, each a plain function over public wgrad-nn layers, so a
//! user can copy one and change it. Every model takes its input shape and `num_classes`, and
//! its parameter count equals the reference implementation's (checked in `tests/models.rs`).
//!
//! So far: LeNet-5 and the residual networks (the seeds' [`ResidualUnit`], ResNet-18/34).

mod lenet;
mod resnet;

pub use lenet::lenet5;
pub use resnet::{resnet18, resnet34, ResidualUnit};
