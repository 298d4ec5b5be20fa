//! 2-D upsampling of NHWC f32 tensors by integer factors, forward and backward
//! (`shaders/upsample.wgsl`).

use super::launch_1d;
use super::image::{nhwc, nhwc_shape, vector_spec, width};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static UPSAMPLE: "upsample" in "upsample.wgsl",
    workgroup 64,
    entries ["nearest_fwd", "nearest_bwd", "bilinear_fwd", "bilinear_bwd"],
    blocks [UpsampleParams]);

params!("Params" => struct UpsampleParams {
    n_threads: u32,
    row: u32,
    // Input height, width, and channels / V.
    h: u32,
    w: u32,
    c4: u32,
    // Factors.
    fh: u32,
    fw: u32,
    pad: u32,
});

/// How [`Tensor::upsample2d`] fills the new pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Upsample {
    /// Repeat each pixel (Keras `UpSampling2D` default).
    #[default]
    Nearest,
    /// Bilinear with half-pixel centres: output d reads source (d + 0.5) / factor - 0.5,
    /// clamped at the edges (Keras `UpSampling2D(interpolation="bilinear")`, `tf.image.resize`,
    /// PyTorch `align_corners=False`).
    Bilinear,
}

/// The same specialisations as pooling: V = 1 or 4 channels per invocation.
pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&UPSAMPLE, vector_spec(1)), (&UPSAMPLE, vector_spec(4))]
}

fn check_factor(op: &'static str, factor: [usize; 2]) -> Result<()> {
    if factor.contains(&0) {
        return Err(Error::invalid(
            op,
            format!("factors {factor:?} must be at least 1"),
        ));
    }
    Ok(())
}

/// Launches `entry` over `threads` vectors of the channels of an input of shape `x`.
fn launch(
    t: &Tensor,
    entry: &'static str,
    x: [usize; 4],
    factor: [usize; 2],
    threads: usize,
    buffers: &[crate::device::View<'_>],
) -> Result<()> {
    let v = width(x[3]);
    launch_1d(
        t.device(),
        &UPSAMPLE,
        entry,
        &vector_spec(v),
        |row| UpsampleParams {
            n_threads: threads as u32,
            row,
            h: x[1] as u32,
            w: x[2] as u32,
            c4: (x[3] / v) as u32,
            fh: factor[0] as u32,
            fw: factor[1] as u32,
            pad: 0,
        },
        buffers,
        threads as u64,
    )
}

impl Tensor {
    /// Upsamples an NHWC tensor by `factor` = [height, width]: [N, H, W, C] ->
    /// [N, H * fh, W * fw, C].
    pub fn upsample2d(&self, factor: [usize; 2], mode: Upsample) -> Result<Tensor> {
        let op = "upsample2d";
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].upsample2d(factor, mode))? {
            return Ok(y);
        }
        let x = nhwc(op, self)?;
        check_factor(op, factor)?;
        let out_shape = [x[0], x[1] * factor[0], x[2] * factor[1], x[3]];
        let out = Tensor::uninit(self.device(), op, &out_shape, DType::F32)?;
        let entry = match mode {
            Upsample::Nearest => "nearest_fwd",
            Upsample::Bilinear => "bilinear_fwd",
        };
        let threads = out.numel() / width(x[3]);
        launch(
            self,
            entry,
            x,
            factor,
            threads,
            &[self.bind(), out.bind()],
        )?;
        Ok(out)
    }

    /// Gradient of [`upsample2d`](Tensor::upsample2d) with respect to its input: `self` is the
    /// gradient of the output; each input cell sums the gradients of the outputs that read it,
    /// weighted as the forward pass weighted it.
    pub fn upsample2d_backward(
        &self,
        input_shape: &[usize],
        factor: [usize; 2],
        mode: Upsample,
    ) -> Result<Tensor> {
        let op = "upsample2d_backward";
        if let Some(dx) = super::cast::via_f32(&[self], |t| {
            t[0].upsample2d_backward(input_shape, factor, mode)
        })? {
            return Ok(dx);
        }
        let g = nhwc(op, self)?;
        let x = nhwc_shape(op, input_shape)?;
        check_factor(op, factor)?;
        let want = [x[0], x[1] * factor[0], x[2] * factor[1], x[3]];
        if g != want {
            return Err(Error::shape(
                op,
                format!("gradient shape must be the forward output's {want:?}"),
                &[&g, input_shape],
            ));
        }
        let dx = Tensor::uninit(self.device(), op, input_shape, DType::F32)?;
        let entry = match mode {
            Upsample::Nearest => "nearest_bwd",
            Upsample::Bilinear => "bilinear_bwd",
        };
        let threads = dx.numel() / width(x[3]);
        launch(
            self,
            entry,
            x,
            factor,
            threads,
            &[self.bind(), dx.bind()],
        )?;
        Ok(dx)
    }
}
