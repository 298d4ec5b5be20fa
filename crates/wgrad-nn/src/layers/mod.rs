//! The built-in layers, Keras's names and defaults.

/// Keras-style builder setters, one line each: `name(arg: Type) => field;` makes
/// `pub fn name(mut self, arg: Type) -> Self` that stores `arg` in `self.field`.
macro_rules! setters {
    ($($(#[$m:meta])* $name:ident($arg:ident: $t:ty) => $($field:ident).+;)*) => {
        $(
            $(#[$m])*
            pub fn $name(mut self, $arg: $t) -> Self {
                self.$($field).+ = $arg;
                self
            }
        )*
    };
}

mod conv;
mod core;
mod norm;
mod pool;
mod separable;
mod spatial;

pub use self::conv::Conv2D;
pub use self::core::{Activation, Dense, Dropout, Flatten, Rescaling, Reshape};
pub use self::norm::{BatchNormalization, LocalResponseNormalization};
pub use self::pool::{AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D};
pub use self::separable::{Conv2DTranspose, DepthwiseConv2D, SeparableConv2D};
pub use self::spatial::{CenterCrop, UpSampling2D, ZeroPadding2D};

use crate::{Error, Initializer, Param, Result};
use wgrad_tensor::Device;

/// A layer's bias of `n` values (initialised as the kernel's fans and `seed` say) when it has
/// one.
pub(crate) fn bias_param(
    dev: &Device,
    on: bool,
    init: Initializer,
    n: usize,
    fans: [usize; 2],
    seed: u64,
) -> Result<Option<Param>> {
    Ok(if on {
        Some(Param::new(
            "bias",
            init.init(dev, &[n], fans[0], fans[1], seed)?,
        ))
    } else {
        None
    })
}

/// Checks a built input shape's rank and returns it as an array.
pub(crate) fn expect_rank<const R: usize>(
    layer: &str,
    shape: &[usize],
    what: &str,
) -> Result<[usize; R]> {
    shape.try_into().map_err(|_| {
        Error::config(
            layer,
            format!("expects {what} (rank {R} without the batch), got input shape {shape:?}"),
        )
    })
}

/// The weights of a built layer, or the error that says it was not built.
pub(crate) fn built<'a, T>(layer: &str, w: &'a Option<T>) -> Result<&'a T> {
    w.as_ref()
        .ok_or_else(|| Error::config(layer, "called before build(): add it to a model first"))
}
