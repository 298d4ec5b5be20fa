//! # wgrad-models
//!
//! The CNNs of the book chapters, each a plain function over public wgrad-nn layers, so a
//! user can copy one and change it. Every model takes its input shape and `num_classes`, and
//! its parameter count equals the reference implementation's (checked in `tests/models.rs`
//! and `tests/zoo.rs`).
//!
//! So far: the first chapters' small CNNs ([`fashion_course`], [`chollet_mnist`],
//! [`geron_fashion`]), LeNet-5 and the residual networks (the seeds' [`ResidualUnit`],
//! ResNet-18/34); the ImageNet classics with Keras's layer names, [`vgg16`], [`resnet50`] and
//! [`xception`]; [`googlenet`] (Inception v1) and the squeeze-and-excitation ResNets
//! ([`SeResidualUnit`], [`se_resnet`], [`se_resnet34`]); for segmentation, [`unet`].

mod alexnet;
mod googlenet;
mod lenet;
mod resnet;
mod resnet50;
mod senet;
mod small;
mod top;
mod unet;
mod vgg;
mod xception;

pub use alexnet::alexnet;
pub use googlenet::googlenet;
pub use lenet::lenet5;
pub use resnet::{
    resnet18, resnet18_pytorch, resnet34, resnet34_pytorch, torchvision_resnet_name, Convention,
    ResidualUnit, RESNET18_BLOCKS, RESNET34_BLOCKS,
};
pub use resnet50::{resnet50, resnet50_with};
pub use senet::{se_resnet, se_resnet34, SeResidualUnit};
pub use small::{chollet_mnist, fashion_course, geron_fashion};
pub use top::Top;
pub use unet::{unet, UNet};
pub use vgg::vgg16;
pub use xception::{xception, xception_with};
