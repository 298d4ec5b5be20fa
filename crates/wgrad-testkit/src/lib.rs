//! # wgrad-testkit
//!
//! What every wgrad test target shares, written once: the device under test ([`device`]),
//! reproducible host data ([`Rng`]), the tolerance rule ([`close`]), the finite-difference
//! gradient check ([`grad`]), f64 reference implementations ([`reference`]) and the reader
//! for the TensorFlow/Keras oracle files ([`oracle`]). It shares no code with the crates it
//! checks beyond their public API, so a reference cannot inherit a bug from the kernel.
//!
//! It is a dev-dependency only (`publish = false`); the kernel crates' own test targets
//! (`cargo test -p wgrad-tensor`) and the facade's model tests both use it.

mod close;
pub mod grad;
mod host;
pub mod oracle;
pub mod reference;

pub use close::{assert_close, close, close_scalar, is_dtype, is_invalid, is_shape};
pub use grad::{
    central_differences, check_conv2d_gradients, check_gradient, check_gradient_batched,
    projection, Fd,
};
pub use host::{down, numel, strides_of, to_f64, unravel, up};
pub use reference::*;

use wgrad_tensor::{Device, Strategy};

/// The device every test runs on: `WGRAD_ADAPTER` / `WGPU_BACKEND` select it, as for users.
pub fn device() -> Device {
    wgrad_tensor::default_device()
        .expect("tests need an adapter: run `cargo xtask test`, which installs the software one")
}

/// The device under test with each matmul-like strategy, so both pass the same checks.
pub fn strategies() -> [Device; 2] {
    let d = device();
    [
        d.with_strategy(Strategy::Tiled),
        d.with_strategy(Strategy::RegisterBlocked),
    ]
}

/// SplitMix64: reproducible host data independent of the device's generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}
