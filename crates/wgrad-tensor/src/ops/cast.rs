//! Dtype conversion (`shaders/cast.wgsl`).

use super::{launch_1d_split, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static CAST: "cast" in "cast.wgsl",
    workgroup 256,
    entries ["main"],
    blocks [CastParams], helpers ["common/half.wgsl"]);

params!("Params" => struct CastParams {
    /// Invocations: output words for MODE 0, output elements otherwise.
    n: u32,
    row: u32,
    /// Input elements.
    total: u32,
    pad: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    (0..7)
        .map(|m| (&CAST, Spec::new().u32("MODE", m)))
        .collect()
}

impl Tensor {
    /// Converts to `dtype`. f32 -> f16 rounds to nearest; float -> integer truncates toward zero.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        use DType::*;
        let mode = match (self.dtype(), dtype) {
            (a, b) if a == b => return Ok(self.clone()),
            (F32, F16) => 0,
            (F16, F32) => 1,
            (F32, I32) => 2,
            (I32, F32) => 3,
            (F32, U32) => 4,
            (U32, F32) => 5,
            (I32, U32) | (U32, I32) => 6,
            (F16, _) => return self.to_dtype(F32)?.to_dtype(dtype),
            (_, F16) => return self.to_dtype(F32)?.to_dtype(F16),
            (from, to) => {
                return Err(Error::invalid(
                    "to_dtype",
                    format!("no conversion from {from} to {to}"),
                ))
            }
        };
        let out = Tensor::uninit(self.device(), "to_dtype", self.shape(), dtype)?;
        let n = self.numel();
        let threads = if mode == 0 { n.div_ceil(2) } else { n };
        let spec = Spec::new().u32("MODE", mode);
        // Bytes each invocation reads and writes: f32 -> f16 packs two elements per word.
        let (src, dst) = match mode {
            0 => (8, 4),
            1 => (2, 4),
            _ => (4, 4),
        };
        launch_1d_split(
            self.device(),
            &CAST,
            "main",
            &spec,
            |row, first, threads| CastParams {
                n: threads as u32,
                row,
                total: (n as u64 - first * src / 4) as u32,
                pad: 0,
            },
            &[Arg::Split(self.bind(), src), Arg::Split(out.bind(), dst)],
            threads as u64,
        )?;
        Ok(out)
    }
}

/// f16 is a storage format, as in Keras's `mixed_float16` policy: f16 tensors, f32 arithmetic.
/// An op given any f16 operand runs its f32 kernels on widened copies, which live only while
/// the op runs, and stores a float result in f16; integer results (masks, indices) stay as
/// they are. So what an autodiff tape keeps between forward and backward is half the size,
/// and every GEMM and reduction still accumulates in f32. Returns `None` when no operand is
/// f16: the caller then runs its f32 path.
pub(crate) fn via_f32(
    operands: &[&Tensor],
    f: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    if !operands.iter().any(|t| t.dtype() == DType::F16) {
        return Ok(None);
    }
    let wide = operands
        .iter()
        .map(|t| t.widened())
        .collect::<Result<Vec<_>>>()?;
    let y = f(&wide)?;
    // The widened copies go back to the pool before the f16 result is allocated.
    drop(wide);
    Ok(Some(y.narrowed()?))
}

impl Tensor {
    /// An f32 copy of f16 storage; any other tensor as it is.
    pub(crate) fn widened(&self) -> Result<Tensor> {
        if self.dtype() == DType::F16 {
            self.to_dtype(DType::F32)
        } else {
            Ok(self.clone())
        }
    }

    /// f16 storage of an f32 result; any other tensor as it is.
    pub(crate) fn narrowed(self) -> Result<Tensor> {
        if self.dtype() == DType::F32 {
            self.to_dtype(DType::F16)
        } else {
            Ok(self)
        }
    }
}

/// True when any operand is stored in f16.
pub(crate) fn any_half(operands: &[&Tensor]) -> bool {
    operands.iter().any(|t| t.dtype() == DType::F16)
}
