//! Seeded random tensors generated on the device (`shaders/random.wgsl`, Philox4x32-10).
//! Element i depends only on the seed and i, so results are reproducible on every adapter and
//! need no upload.

use super::{launch_1d_split, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Device, Error, Result, Tensor};

kernel!(pub static RANDOM: "random" in "random.wgsl",
    workgroup 64,
    entries ["main"],
    blocks [RandomParams]);

params!("Params" => struct RandomParams {
    /// Output elements.
    n: u32,
    /// Workgroups per grid row (the grid folds into y past 65,535).
    row: u32,
    /// The seed's low and high words: Philox's key.
    key0: u32,
    key1: u32,
    /// Low and high (uniform) or mean and standard deviation (normal).
    p0: f32,
    p1: f32,
    /// The first block of four of this piece (a tensor past the binding limit is filled in
    /// pieces; a block's values depend on its global index only).
    base: u32,
    pad: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![
        (&RANDOM, Spec::new().bool("NORMAL", false)),
        (&RANDOM, Spec::new().bool("NORMAL", true)),
    ]
}

fn random(
    device: &Device,
    op: &'static str,
    shape: &[usize],
    seed: u64,
    normal: bool,
    p0: f32,
    p1: f32,
) -> Result<Tensor> {
    if !p0.is_finite() || !p1.is_finite() {
        return Err(Error::invalid(
            op,
            format!("parameters {p0}, {p1} must be finite"),
        ));
    }
    let out = Tensor::uninit(device, op, shape, DType::F32)?;
    let n = out.numel();
    let spec = Spec::new().bool("NORMAL", normal);
    launch_1d_split(
        device,
        &RANDOM,
        "main",
        &spec,
        |row, first, blocks| RandomParams {
            n: (4 * blocks).min(n as u64 - 4 * first) as u32,
            row,
            key0: seed as u32,
            key1: (seed >> 32) as u32,
            p0,
            p1,
            base: first as u32,
            pad: 0,
        },
        &[Arg::Split(out.bind(), 16)],
        n.div_ceil(4) as u64,
    )?;
    Ok(out)
}

impl Tensor {
    /// Uniform values in `[low, high)`.
    pub fn rand_uniform(
        device: &Device,
        shape: &[usize],
        low: f32,
        high: f32,
        seed: u64,
    ) -> Result<Tensor> {
        if low > high {
            return Err(Error::invalid(
                "rand_uniform",
                format!("low {low} is above high {high}"),
            ));
        }
        random(device, "rand_uniform", shape, seed, false, low, high)
    }

    /// Normal values with `mean` and standard deviation `std` (Box-Muller).
    pub fn rand_normal(
        device: &Device,
        shape: &[usize],
        mean: f32,
        std: f32,
        seed: u64,
    ) -> Result<Tensor> {
        if std < 0.0 {
            return Err(Error::invalid(
                "rand_normal",
                format!("std {std} is negative"),
            ));
        }
        random(device, "rand_normal", shape, seed, true, mean, std)
    }
}
