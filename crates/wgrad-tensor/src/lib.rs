//! # wgrad-tensor
//!
//! GPU tensors for wgrad: adapter choice ([`Device`]), the size-bucketed buffer pool, the WGSL
//! kernel cache, command batching, and the op launchers. Every kernel is a WGSL compute shader
//! in the workspace's `shaders/` folder, run through wgpu on Vulkan, Metal, DX12, GL or a
//! software adapter.
//!
//! ```no_run
//! use wgrad_tensor::{Device, Tensor};
//! let dev = Device::new()?;
//! let a = Tensor::from_slice(&dev, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = a.matmul(&a)?.relu()?;
//! assert_eq!(b.to_vec::<f32>()?, vec![7.0, 10.0, 15.0, 22.0]);
//! # Ok::<(), wgrad_tensor::Error>(())
//! ```

mod activation;
mod ahead;
mod device;
mod dtype;
mod error;
mod kernel;
mod memory;
mod ops;
#[cfg(test)]
mod shader_check;
pub mod shape;
mod tensor;
mod tune;

pub use activation::Activation;
pub use device::{
    default_device, AdapterSummary, Counters, Device, KernelTime, Strategy, MAX_BATCH,
};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use memory::MemoryStats;
pub use ops::batch_norm::{
    batch_norm_update_moving, BatchNormTrain, KERAS_EPSILON, KERAS_MOMENTUM,
};
pub use ops::binary::BinaryOp;
pub use ops::conv::{transpose_output_shape, Conv2dOptions, ConvEpilogue};
pub use ops::lrn::LrnParams;
pub use ops::matmul::MatmulOptions;
pub use ops::nms::{NmsOptions, Selection};
pub use ops::optim::Update;
pub use ops::reduce::ReduceOp;
pub use ops::resize::{Preprocess, ResizeMethod};
pub use ops::unary::UnaryOp;
pub use ops::upsample::Upsample;
pub use ops::window::{axis_geometry, geometry_2d, AxisGeometry, Padding};
pub use tensor::Tensor;

/// Re-exported so users can name adapter types and limits without a direct wgpu dependency.
pub use wgpu;
