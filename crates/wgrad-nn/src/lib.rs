//! # wgrad-nn
//!
//! Keras's layer API over wgrad's autodiff graph: [`Layer`]s (Conv2D, Dense, pooling, batch
//! norm, dropout…), one model graph ([`Functional`], with [`Sequential`] as its chain builder)
//! with `summary()`, [`Loss`]es, [`Optimizer`]s whose updates are fused device kernels,
//! metrics, and safetensors weights. Training loops (`Trainer`, `fit`, callbacks, progress
//! bars, plots) are the wgrad-train crate, so a user who wants only layers and autodiff does
//! not compile them.
//!
//! ```no_run
//! use wgrad_graph::Var;
//! use wgrad_nn::{layers::*, Act, Ctx, Layer, Sequential};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = wgrad_tensor::Device::new()?;
//! let mut model = Sequential::new(&dev, &[28, 28, 1])
//!     .add(Conv2D::new(64, 3).activation(Act::Relu))?
//!     .add(MaxPool2D::new(2))?
//!     .add(Flatten::new())?
//!     .add(Dense::new(10))?;
//! print!("{}", model.summary(64));
//! let x = Var::new(wgrad_tensor::Tensor::zeros(&dev, &[8, 28, 28, 1], wgrad_tensor::DType::F32)?);
//! let logits = model.forward(&x, &mut Ctx::new(false, 0))?;
//! # Ok(()) }
//! ```

pub mod checkpoint;
pub mod coco;
mod error;
mod functional;
pub mod import;
mod layer;
pub mod layers;
mod loss;
pub mod metrics;
mod mixed;
mod optim;
mod param;
mod sequential;
mod summary;
pub mod yolo;

pub use checkpoint::{load_weights, save_weights};
pub use error::{Error, Result};
pub use functional::{Add, Concatenate, Functional, Merge, Multiply, Tap};
pub use import::{import_weights, Framework, Import};
pub use layer::{splitmix, Act, Ctx, Hints, Layer};
pub use loss::Loss;
pub use metrics::{BoxIou, MeanIou};
pub use mixed::LossScale;
pub use optim::{Optimizer, Schedule};
pub use param::{Initializer, Param, WeightLayout};
pub use sequential::Sequential;
pub use yolo::{Detected, YoloGrid};
