//! Constant fills and ranges (`shaders/fill.wgsl`).

use super::{launch_1d_split, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Device, Error, Result, Tensor};

kernel!(pub static FILL: "fill" in "fill.wgsl",
    workgroup 256,
    entries ["full", "arange_f32", "arange_i32"],
    blocks [FillParams]);

params!("Params" => struct FillParams {
    n: u32,
    row: u32,
    // full: the pattern; arange: the start (f32 or i32 bits).
    word: u32,
    // arange: the step (f32 or i32 bits).
    step: u32,
    // arange: the index of this piece's first element (a tensor past the binding limit is
    // filled in pieces).
    base: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&FILL, Spec::new())]
}

fn fill_words(
    device: &Device,
    op: &'static str,
    shape: &[usize],
    dtype: DType,
    entry: &'static str,
    word: u32,
    step: u32,
) -> Result<Tensor> {
    let t = Tensor::uninit(device, op, shape, dtype)?;
    let words = t.size_in_bytes() / 4;
    launch_1d_split(
        device,
        &FILL,
        entry,
        &Spec::new(),
        |row, first, words| FillParams {
            n: words as u32,
            row,
            word,
            step,
            base: first as u32,
            ..Default::default()
        },
        &[Arg::Split(t.bind(), 4)],
        words,
    )?;
    Ok(t)
}

impl Tensor {
    /// A tensor of `shape` with every element `value` (converted to `dtype`).
    pub fn full(device: &Device, shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        let word = match dtype {
            DType::F32 => (value as f32).to_bits(),
            DType::F16 => {
                let h = half::f16::from_f64(value).to_bits() as u32;
                h | (h << 16)
            }
            DType::I32 => (value as i32) as u32,
            DType::U32 => value as u32,
        };
        fill_words(device, "full", shape, dtype, "full", word, 0)
    }

    pub fn zeros(device: &Device, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(device, shape, 0.0, dtype)
    }

    pub fn ones(device: &Device, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(device, shape, 1.0, dtype)
    }

    /// A tensor of the same shape, dtype and device as `self`, filled with zeros.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.device(), self.shape(), self.dtype())
    }

    /// A tensor of the same shape, dtype and device as `self`, filled with ones.
    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::ones(self.device(), self.shape(), self.dtype())
    }

    /// `start, start + step, ...` below `stop` (f32), as NumPy's `arange`.
    pub fn arange(device: &Device, start: f32, stop: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !stop.is_finite() {
            return Err(Error::invalid("arange", format!("start {start}, stop {stop}, step {step}: need finite values and a non-zero step")));
        }
        let n = ((stop - start) / step).ceil().max(0.0) as usize;
        fill_words(
            device,
            "arange",
            &[n],
            DType::F32,
            "arange_f32",
            start.to_bits(),
            step.to_bits(),
        )
    }

    /// `start, start + step, ...` below `stop` (i32).
    pub fn arange_i32(device: &Device, start: i32, stop: i32, step: i32) -> Result<Tensor> {
        if step == 0 {
            return Err(Error::invalid("arange_i32", "step must not be zero"));
        }
        let n = ((stop as i64 - start as i64) as f64 / step as f64)
            .ceil()
            .max(0.0) as usize;
        fill_words(
            device,
            "arange_i32",
            &[n],
            DType::I32,
            "arange_i32",
            start as u32,
            step as u32,
        )
    }
}
