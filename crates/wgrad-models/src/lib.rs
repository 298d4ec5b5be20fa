//! # wgrad-models
//!
//! The CNNs of the book chapters, each a plain function over public wgrad-nn layers, so a
//! user can copy one and change it. Every model takes its input shape and `num_classes`, and
//! its parameter count equals the reference implementation's (checked in `tests/models.rs`).
//!
//! So far: the first chapters' small CNNs ([`fashion_course`], [`chollet_mnist`],
//! [`geron_fashion`]), LeNet-5 and the residual networks (the seeds' [`ResidualUnit`],
//! ResNet-18/34).

mod lenet;
mod resnet;
mod small;

pub use lenet::lenet5;
pub use resnet::{resnet18, resnet34, ResidualUnit};
pub use small::{chollet_mnist, fashion_course, geron_fashion};
