//! # wgrad-train
//!
//! Keras's `compile` / `fit` for wgrad-nn models: a [`Trainer`] owns a model, its losses and
//! an optimizer and runs `fit` (epochs over a wgrad-data `DataLoader`, with validation,
//! callbacks, a progress bar), `evaluate` and `predict`; [`Trainer::save_checkpoint`] and
//! [`Trainer::load_checkpoint`] resume a run; [`History::plot`] draws the training curves.
//! Kept apart from the layers (as Burn keeps burn-train apart from burn-nn) so that the
//! layers and autodiff build without indicatif, plotters or the data readers.
//!
//! ```no_run
//! use wgrad_nn::{layers::*, Act, Loss, Optimizer, Sequential};
//! use wgrad_train::{FitOptions, Trainer};
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

mod checkpoint;
mod plot;
mod sync;
mod train;

pub use sync::GradientSync;
pub use train::{
    decode_predictions, predict, predict_multi, Callback, Control, EarlyStopping, EpochLog,
    FitOptions, History, ModelCheckpoint, Trainer,
};
