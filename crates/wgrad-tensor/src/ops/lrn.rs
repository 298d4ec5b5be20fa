//! Local response normalisation across the channels of NHWC f32 tensors, forward and backward
//! (`shaders/lrn.wgsl`).
//!
//! Semantics are TensorFlow's `tf.nn.local_response_normalization`: with `r = depth_radius`,
//!
//! ```text
//! sqr_sum[n, h, w, c] = Σ x[n, h, w, c']²  over c' in [c − r, c + r] ∩ [0, C)
//! out                 = x / (bias + alpha · sqr_sum)^beta
//! ```
//!
//! TensorFlow's `alpha` multiplies the plain sum. PyTorch's `nn.LocalResponseNorm(size, alpha,
//! beta, k)` divides its `alpha` by the window `size` instead (and counts the clipped channels
//! as zeros, which adds nothing to a sum): [`LrnParams::from_torch`] converts.

use super::launch_1d;
use super::image::nhwc;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static LRN: "lrn" in "lrn.wgsl",
    workgroup 64,
    entries ["lrn_forward", "lrn_backward"],
    blocks [LrnBlock]);

// Not `LrnParams`: that is the public type of the op's arguments (below).
params!("Params" => struct LrnBlock {
    n_threads: u32,
    row: u32,
    // Channels.
    c: u32,
    // depth_radius, clamped to c by the launcher (wider windows change nothing).
    radius: u32,
    bias: f32,
    alpha: f32,
    beta: f32,
    pad0: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&LRN, Spec::new())]
}

/// The parameters of a local response normalisation, in TensorFlow's convention. The
/// [`Default`] is TensorFlow's: `depth_radius` 5, `bias` 1, `alpha` 1, `beta` 0.5.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnParams {
    /// Channels on each side of the centre in the window (the window is `2r + 1` wide before
    /// clipping at the first and last channel).
    pub depth_radius: usize,
    /// The additive constant (PyTorch's `k`, the paper's `k`). Must be positive.
    pub bias: f32,
    /// The scale of the sum of squares; not divided by the window size. Must be at least 0.
    pub alpha: f32,
    /// The exponent. Any finite value.
    pub beta: f32,
}

impl Default for LrnParams {
    fn default() -> Self {
        LrnParams {
            depth_radius: 5,
            bias: 1.0,
            alpha: 1.0,
            beta: 0.5,
        }
    }
}

impl LrnParams {
    /// TensorFlow's arguments, in TensorFlow's order.
    pub fn new(depth_radius: usize, bias: f32, alpha: f32, beta: f32) -> LrnParams {
        LrnParams {
            depth_radius,
            bias,
            alpha,
            beta,
        }
    }

    /// PyTorch's `nn.LocalResponseNorm(size, alpha, beta, k)`, which computes
    /// `x / (k + alpha / size · Σ x²)^beta` over a window of `size` channels: `depth_radius =
    /// size / 2`, `alpha / size`, `bias = k`. Only odd sizes have a TensorFlow equivalent (an
    /// even window is not centred: PyTorch takes `size / 2` channels before and `size / 2 − 1`
    /// after), so an even or zero `size` is an error.
    pub fn from_torch(size: usize, alpha: f32, beta: f32, k: f32) -> Result<LrnParams> {
        if size.is_multiple_of(2) {
            return Err(Error::invalid(
                "LrnParams::from_torch",
                format!("size {size} must be odd: an even window is not centred on its channel, which TensorFlow's depth_radius cannot express"),
            ));
        }
        Ok(LrnParams {
            depth_radius: size / 2,
            bias: k,
            alpha: alpha / size as f32,
            beta,
        })
    }

    /// Checks the parameters: `bias > 0` and `alpha >= 0` keep the base of the power positive
    /// (TensorFlow accepts any values and returns NaN or inf where the base is not), and all
    /// three must be finite.
    pub fn check(&self, op: &'static str) -> Result<()> {
        let LrnParams {
            bias, alpha, beta, ..
        } = *self;
        if !(bias.is_finite() && bias > 0.0) {
            return Err(Error::invalid(
                op,
                format!("bias {bias} must be finite and > 0"),
            ));
        }
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::invalid(
                op,
                format!("alpha {alpha} must be finite and >= 0"),
            ));
        }
        if !beta.is_finite() {
            return Err(Error::invalid(op, format!("beta {beta} must be finite")));
        }
        Ok(())
    }

    /// The parameter block of `lrn.wgsl` for `threads` elements of `c` channels (its `row`
    /// is set at launch).
    fn block(&self, threads: usize, c: usize) -> LrnBlock {
        LrnBlock {
            n_threads: threads as u32,
            row: 0,
            c: c as u32,
            // A radius of C or more already covers every channel.
            radius: self.depth_radius.min(c) as u32,
            bias: self.bias,
            alpha: self.alpha,
            beta: self.beta,
            pad0: 0,
        }
    }
}

/// Launches one entry of `lrn.wgsl` over every element of `out`.
fn launch(
    x: &Tensor,
    entry: &'static str,
    p: &LrnParams,
    c: usize,
    out: &Tensor,
    extra: Option<&Tensor>,
) -> Result<()> {
    let threads = out.numel();
    let block = p.block(threads, c);
    let mut buffers = vec![x.bind(), out.bind()];
    buffers.extend(extra.map(|t| t.bind()));
    launch_1d(
        x.device(),
        &LRN,
        entry,
        &Spec::new(),
        |row| LrnBlock { row, ..block },
        &buffers,
        threads as u64,
    )
}

impl Tensor {
    /// Local response normalisation of an NHWC tensor across its channels (TensorFlow's
    /// `tf.nn.local_response_normalization`; see [`LrnParams`] for the formula and the
    /// conversion from PyTorch's convention). The output has the input's shape.
    pub fn lrn(&self, params: LrnParams) -> Result<Tensor> {
        let op = "lrn";
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].lrn(params))? {
            return Ok(y);
        }
        let x = nhwc(op, self)?;
        params.check(op)?;
        let out = Tensor::uninit(self.device(), op, self.shape(), DType::F32)?;
        launch(self, "lrn_forward", &params, x[3], &out, None)?;
        Ok(out)
    }

    /// Gradient of [`lrn`](Tensor::lrn) with respect to its input: `self` is the gradient of
    /// the output, `input` the forward call's input and `params` its parameters. The window
    /// sums are recomputed from `input`, so the forward pass saves nothing else.
    pub fn lrn_backward(&self, input: &Tensor, params: LrnParams) -> Result<Tensor> {
        let op = "lrn_backward";
        if let Some(dx) = super::cast::via_f32(&[self, input], |t| t[0].lrn_backward(&t[1], params))? {
            return Ok(dx);
        }
        let g = nhwc(op, self)?;
        let x = nhwc(op, input)?;
        super::same_device(op, &[self, input])?;
        params.check(op)?;
        if g != x {
            return Err(Error::shape(
                op,
                "gradient must have the input's shape",
                &[self.shape(), input.shape()],
            ));
        }
        let dx = Tensor::uninit(self.device(), op, input.shape(), DType::F32)?;
        launch(input, "lrn_backward", &params, x[3], &dx, Some(self))?;
        Ok(dx)
    }
}
