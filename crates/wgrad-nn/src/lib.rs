//! # wgrad-nn
//!
//! Keras's layer API over wgrad's autodiff graph: [`Layer`]s (Conv2D, Dense, pooling, batch
//! norm, dropout…), [`Sequential`] models with `summary()`, [`Loss`]es, [`Optimizer`]s whose
//! updates are fused device kernels, and a [`Trainer`] with `fit`/`evaluate`/`predict`,
//! callbacks, a progress bar and safetensors checkpoints.
//!
//! ```no_run
//! use wgrad_nn::{layers::*, Act, FitOptions, Loss, Optimizer, Sequential, Trainer};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = wgrad_tensor::Device::new()?;
//! let model = Sequential::new(&dev, &[28, 28, 1])
//!     .add(Conv2D::new(64, 3).activation(Act::Relu))?
//!     .add(MaxPool2D::new(2))?
//!     .add(Flatten::new())?
//!     .add(Dense::new(128).activation(Act::Relu))?
//!     .add(Dense::new(10))?;
//! let mut trainer = Trainer::new(model, Optimizer::adam(1e-3), Loss::sparse_categorical_crossentropy(true));
//! let train = wgrad_data::DataLoader::new(wgrad_data::fashion_mnist(None, wgrad_data::Split::Train)?, 64);
//! let history = trainer.fit(&train, FitOptions::epochs(3))?;
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
mod optim;
mod param;
mod plot;
mod sequential;
mod summary;
mod train;
pub mod yolo;

pub use checkpoint::{load_weights, save_weights};
pub use error::{Error, Result};
pub use functional::{Add, Concatenate, Functional, Merge, Multiply, Tap};
pub use import::{import_weights, Framework, Import};
pub use layer::{Act, Ctx, Hints, Layer};
pub use loss::Loss;
pub use metrics::{BoxIou, MeanIou};
pub use optim::{Optimizer, Schedule};
pub use param::{Initializer, Param, WeightLayout};
pub use sequential::Sequential;
pub use train::{
    decode_predictions, predict, predict_multi, Callback, Control, EarlyStopping, EpochLog,
    FitOptions, History, ModelCheckpoint, Trainer,
};
pub use yolo::{Detected, YoloGrid};
