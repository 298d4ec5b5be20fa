//! Parity tests of every tensor op except matmul against an independent f64 reference written
//! here with plain loops. One test target, so the device opens once per run.

mod binary;
mod cast;
mod elementwise;
mod errors;
mod fill;
mod layout;
mod random;
mod reduce;
mod softmax;

// The helpers the op modules share, by their short names.
pub use wgrad_testkit::{close, down, numel, strides_of, to_f64, unravel, up};
