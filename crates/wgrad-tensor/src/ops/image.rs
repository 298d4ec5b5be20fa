//! What the NHWC image kernels (pooling, LRN, upsampling) share: the rank-4 operand check and
//! the channels-per-invocation specialisation.

use crate::kernel::Spec;
use crate::{DType, Error, Result, Tensor};

/// Checks an NHWC f32 operand and returns its shape as [N, H, W, C].
pub(crate) fn nhwc(op: &'static str, t: &Tensor) -> Result<[usize; 4]> {
    t.expect_dtype(op, DType::F32)?;
    nhwc_shape(op, t.shape())
}

pub(crate) fn nhwc_shape(op: &'static str, s: &[usize]) -> Result<[usize; 4]> {
    match *s {
        [n, h, w, c] => Ok([n, h, w, c]),
        _ => Err(Error::shape(op, "expected an NHWC tensor of rank 4", &[s])),
    }
}

/// The specialisation for `v` channels per invocation (1, or 4 when C % 4 == 0: on lavapipe a
/// vec4 load costs about what a scalar load does, so four channels per invocation is ~4x less
/// load work).
pub(crate) fn vector_spec(v: usize) -> Spec {
    if v == 4 {
        Spec::new()
            .u32("V", 4)
            .alias("T", "vec4<f32>")
            .alias("U", "vec4<u32>")
            .line("const LANE: vec4<u32> = vec4<u32>(0u, 1u, 2u, 3u);")
    } else {
        Spec::new()
            .u32("V", 1)
            .alias("T", "f32")
            .alias("U", "u32")
            .line("const LANE: u32 = 0u;")
    }
}

/// Channels per invocation for `c` channels.
pub(crate) fn width(c: usize) -> usize {
    if c.is_multiple_of(4) {
        4
    } else {
        1
    }
}
