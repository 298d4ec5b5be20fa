//! Batch normalisation over the last (channel) axis (`shaders/batch_norm.wgsl`): NHWC
//! activations, or [N, C] after a Dense layer; any rank >= 1, statistics over every axis but the
//! last.
//!
//! Training mode computes the batch mean and the biased variance (divided by the count, as
//! Keras) in two passes over the data, each shifted by the channel's first value so that data
//! far from zero (an offset of 1000) keeps f32 precision. Everything stays on the device: a
//! training step records 5–7 small dispatches and never waits.

use super::{launch_1d, same_device};
use crate::device::Device;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::shape::numel;
use crate::{DType, Error, Result, Tensor};

kernel!(pub static BATCH_NORM: "batch_norm" in "batch_norm.wgsl",
    workgroup 64,
    entries ["stats", "finish", "channel", "normalize", "backward_dx"],
    blocks [BatchNormParams]);

// The [M, C] view of the input, channels in units of T.
params!("Params" => struct BatchNormParams {
    rows: u32,
    cv: u32,
    /// Strided partial results (stats, finish) or row blocks (normalize, backward_dx).
    splits: u32,
    /// Invocations.
    threads: u32,
    /// Workgroups per grid row (the grid folds into y past 65,535).
    row: u32,
    pad: u32,
    /// Scale (stats, finish), epsilon or momentum (channel), 1/M (backward_dx).
    f0: f32,
    /// 1 - momentum (the running-statistics update).
    f1: f32,
});

/// Keras's default momentum of `BatchNormalization` (moving = moving·0.99 + batch·0.01).
pub const KERAS_MOMENTUM: f32 = 0.99;
/// Keras's default epsilon of `BatchNormalization`.
pub const KERAS_EPSILON: f32 = 1e-3;

/// What `stats` sums (the shader's MODE).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stat {
    /// sum(x - x0): the shifted mean.
    Mean = 0,
    /// sum(((x - x0) - centre)²): the variance.
    Var = 1,
    /// sum(dy) and sum(dy·(x - mean)): the backward sums, two planes.
    Grad = 2,
}

/// Per-channel ops of the `channel` entry point (the shader's OP).
#[derive(Clone, Copy)]
enum ChannelOp {
    Mean = 0,
    InvStd = 1,
    GradGamma = 2,
    GradBeta = 3,
    Ema = 4,
}

/// The one specialisation shape of the file: every entry point is compiled with all constants
/// defined; those an entry point does not read are left at 0/false so that equal specs share a
/// pipeline.
fn spec(vec4: bool, mode: u32, op: u32, shift: bool) -> Spec {
    Spec::new()
        .alias("T", if vec4 { "vec4<f32>" } else { "f32" })
        .u32("MODE", mode)
        .u32("OP", op)
        .bool("SHIFT", shift)
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for vec4 in [false, true] {
        // stats modes (mode 0 with op 0 also serves finish and channel op 0)
        for mode in 0..3 {
            v.push((&BATCH_NORM, spec(vec4, mode, 0, false)));
        }
        for op in 1..5 {
            v.push((&BATCH_NORM, spec(vec4, 0, op, false)));
        }
        v.push((&BATCH_NORM, spec(vec4, 0, 0, true)));
    }
    v
}

/// Invocations a split statistics pass aims for (enough to fill a GPU; lavapipe needs far fewer).
const TARGET_INVOCATIONS: usize = 1 << 14;
/// Rows per invocation below which a statistics pass is not split further.
const MIN_ROWS_PER_SPLIT: usize = 64;
/// Most splits, so that `finish` (one sequential loop per channel) stays short.
const MAX_SPLITS: usize = 1024;
/// Rows each invocation of `normalize` / `backward_dx` handles (per-channel values are loaded
/// once per invocation, so this amortises them).
const ROWS_PER_INVOCATION: usize = 8;

/// The [M, C] view of a batch-norm input: rows, channels, and whether channels go by vec4.
#[derive(Clone, Copy)]
struct View {
    rows: usize,
    c: usize,
    vec4: bool,
}

impl View {
    fn cv(&self) -> usize {
        if self.vec4 {
            self.c / 4
        } else {
            self.c
        }
    }
}

/// Validates `x` (f32, rank >= 1) and returns its [M, C] view.
fn view_of(op: &'static str, x: &Tensor) -> Result<View> {
    x.expect_dtype(op, DType::F32)?;
    let shape = x.shape();
    let Some((&c, lead)) = shape.split_last() else {
        return Err(Error::shape(
            op,
            "needs rank >= 1: channels are the last axis",
            &[shape],
        ));
    };
    Ok(View {
        rows: numel(lead),
        c,
        vec4: c % 4 == 0 && c > 0,
    })
}

/// Checks that a per-channel operand is an f32 tensor of shape [C] on `x`'s device.
fn per_channel(op: &'static str, x: &Tensor, t: &Tensor, what: &str, c: usize) -> Result<()> {
    same_device(op, &[x, t])?;
    t.expect_dtype(op, DType::F32)?;
    if t.shape() != [c] {
        return Err(Error::shape(
            op,
            format!("{what} must have shape [{c}] (the input's last axis)"),
            &[x.shape(), t.shape()],
        ));
    }
    Ok(())
}

fn check_epsilon(op: &'static str, epsilon: f32) -> Result<()> {
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(Error::invalid(
            op,
            format!("epsilon must be finite and >= 0, got {epsilon}"),
        ));
    }
    Ok(())
}

/// One dispatch of `entry`; `splits` is the block's splits or row blocks.
#[allow(clippy::too_many_arguments)]
fn launch(
    device: &Device,
    entry: &'static str,
    spec: &Spec,
    v: View,
    splits: usize,
    threads: usize,
    f0: f32,
    f1: f32,
    buffers: &[crate::device::View<'_>],
) -> Result<()> {
    launch_1d(
        device,
        &BATCH_NORM,
        entry,
        spec,
        |row| BatchNormParams {
            rows: v.rows as u32,
            cv: v.cv() as u32,
            splits: splits as u32,
            threads: threads as u32,
            row,
            pad: 0,
            f0,
            f1,
        },
        buffers,
        threads as u64,
    )
}

/// How many strided partial results a statistics pass over `v.rows` rows uses.
fn splits_for(v: View) -> usize {
    if v.rows <= MIN_ROWS_PER_SPLIT {
        return 1;
    }
    (TARGET_INVOCATIONS / v.cv().max(1)).clamp(1, (v.rows / MIN_ROWS_PER_SPLIT).min(MAX_SPLITS))
}

/// Row blocks for `normalize` / `backward_dx`.
fn row_blocks(v: View) -> usize {
    v.rows.div_ceil(ROWS_PER_INVOCATION).max(1)
}

/// Per-channel statistics of `x` (`stat`), scaled by `scale`: [C] (or [2, C] for `Stat::Grad`).
/// `a` and `b` are the optional `in_a` / `in_b` operands of the stats pass.
fn statistic(
    x: &Tensor,
    v: View,
    stat: Stat,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let device = x.device();
    let planes = if stat == Stat::Grad { 2 } else { 1 };
    let s = splits_for(v);
    let sp = spec(v.vec4, stat as u32, 0, false);
    let out_shape = if planes == 2 { vec![2, v.c] } else { vec![v.c] };
    let a_buf = a.map_or(device.dummy(0), |t| t.bind());
    let b_buf = b.map_or(device.dummy(1), |t| t.bind());
    if s == 1 {
        let out = Tensor::uninit(device, "batch_norm", &out_shape, DType::F32)?;
        launch(
            device,
            "stats",
            &sp,
            v,
            1,
            v.cv(),
            scale,
            0.0,
            &[x.bind(), out.bind(), a_buf, b_buf],
        )?;
        return Ok(out);
    }
    let partial = Tensor::uninit(device, "batch_norm", &[planes * s * v.c], DType::F32)?;
    launch(
        device,
        "stats",
        &sp,
        v,
        s,
        s * v.cv(),
        1.0,
        0.0,
        &[x.bind(), partial.bind(), a_buf, b_buf],
    )?;
    let out = Tensor::uninit(device, "batch_norm", &out_shape, DType::F32)?;
    launch(
        device,
        "finish",
        &spec(v.vec4, 0, 0, false),
        v,
        s,
        planes * v.cv(),
        scale,
        0.0,
        &[partial.bind(), out.bind()],
    )?;
    Ok(out)
}

/// One `channel` dispatch producing a [C] tensor on `a`'s device; `x`, `a`, `b` fill slots 1,
/// 3 and 4.
fn channel(
    v: View,
    op: ChannelOp,
    x: Option<&Tensor>,
    a: &Tensor,
    b: Option<&Tensor>,
    f0: f32,
    f1: f32,
) -> Result<Tensor> {
    let device = a.device();
    let out = Tensor::uninit(device, "batch_norm", &[v.c], DType::F32)?;
    launch(
        device,
        "channel",
        &spec(v.vec4, 0, op as u32, false),
        v,
        1,
        v.cv(),
        f0,
        f1,
        &[
            x.map_or(device.dummy(0), |t| t.bind()),
            out.bind(),
            a.bind(),
            b.map_or(device.dummy(1), |t| t.bind()),
        ],
    )?;
    Ok(out)
}

/// y = ((x - x0) - centre)·inv_std·gamma + beta, x0 = x's first row when `shift`.
fn normalize(
    x: &Tensor,
    v: View,
    shift: bool,
    centre: &Tensor,
    inv_std: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<Tensor> {
    let device = x.device();
    let out = Tensor::uninit(device, "batch_norm", x.shape(), DType::F32)?;
    let blocks = row_blocks(v);
    launch(
        device,
        "normalize",
        &spec(v.vec4, 0, 0, shift),
        v,
        blocks,
        blocks * v.cv(),
        0.0,
        0.0,
        &[
            x.bind(),
            out.bind(),
            centre.bind(),
            inv_std.bind(),
            gamma.bind(),
            beta.bind(),
        ],
    )?;
    Ok(out)
}

/// The results of a training-mode batch normalisation.
#[derive(Clone, Debug)]
pub struct BatchNormTrain {
    /// The normalised, scaled and shifted input (its shape).
    pub output: Tensor,
    /// Batch mean per channel, [C].
    pub mean: Tensor,
    /// Biased batch variance per channel (divided by the count, not count - 1), [C].
    pub variance: Tensor,
    /// 1 / sqrt(variance + epsilon), [C]: saved for [`Tensor::batch_norm_backward`].
    pub inv_std: Tensor,
}

impl Tensor {
    /// Training-mode batch normalisation over the last axis: statistics over every other axis,
    /// `output = (x - mean) / sqrt(variance + epsilon) * gamma + beta`. `gamma` and `beta` have
    /// shape [C]. The variance is biased (divided by the count), as Keras's batch statistics.
    pub fn batch_norm_train(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        epsilon: f32,
    ) -> Result<BatchNormTrain> {
        let op = "batch_norm_train";
        // f16 storage: statistics in f32 (they feed the f32 moving averages), output in f16.
        if super::cast::any_half(&[self, gamma, beta]) {
            let bn = self
                .widened()?
                .batch_norm_train(&gamma.widened()?, &beta.widened()?, epsilon)?;
            return Ok(BatchNormTrain {
                output: bn.output.narrowed()?,
                ..bn
            });
        }
        let v = view_of(op, self)?;
        per_channel(op, self, gamma, "gamma", v.c)?;
        per_channel(op, self, beta, "beta", v.c)?;
        check_epsilon(op, epsilon)?;
        if v.rows == 0 {
            return Err(Error::shape(
                op,
                "batch statistics of an empty batch",
                &[self.shape()],
            ));
        }
        let inv_count = 1.0 / v.rows as f32;
        // Mean of (x - x0), x0 being each channel's first value: the `centre`.
        let centre = statistic(self, v, Stat::Mean, None, None, inv_count)?;
        let mean = channel(v, ChannelOp::Mean, Some(self), &centre, None, 0.0, 0.0)?;
        let variance = statistic(self, v, Stat::Var, Some(&centre), None, inv_count)?;
        let inv_std = channel(v, ChannelOp::InvStd, None, &variance, None, epsilon, 0.0)?;
        let output = normalize(self, v, true, &centre, &inv_std, gamma, beta)?;
        Ok(BatchNormTrain {
            output,
            mean,
            variance,
            inv_std,
        })
    }

    /// Inference-mode batch normalisation with the moving statistics:
    /// `(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta`; every operand but
    /// `self` has shape [C].
    pub fn batch_norm_infer(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        moving_mean: &Tensor,
        moving_variance: &Tensor,
        epsilon: f32,
    ) -> Result<Tensor> {
        let op = "batch_norm_infer";
        let operands = [self, gamma, beta, moving_mean, moving_variance];
        if let Some(y) = super::cast::via_f32(&operands, |t| {
            t[0].batch_norm_infer(&t[1], &t[2], &t[3], &t[4], epsilon)
        })? {
            return Ok(y);
        }
        let v = view_of(op, self)?;
        per_channel(op, self, gamma, "gamma", v.c)?;
        per_channel(op, self, beta, "beta", v.c)?;
        per_channel(op, self, moving_mean, "moving_mean", v.c)?;
        per_channel(op, self, moving_variance, "moving_variance", v.c)?;
        check_epsilon(op, epsilon)?;
        let inv_std = channel(
            v,
            ChannelOp::InvStd,
            None,
            moving_variance,
            None,
            epsilon,
            0.0,
        )?;
        normalize(self, v, false, moving_mean, &inv_std, gamma, beta)
    }

    /// Training-mode backward pass; `self` is the gradient of the output, `mean` and `inv_std`
    /// those of [`BatchNormTrain`]. Returns (grad_input, grad_gamma, grad_beta):
    /// `grad_input = gamma·inv_std/M · (M·dy - sum(dy) - xhat·sum(dy·xhat))`,
    /// `grad_gamma = sum(dy·xhat)`, `grad_beta = sum(dy)`, with xhat = (x - mean)·inv_std and
    /// sums over every axis but the last (M values per channel).
    pub fn batch_norm_backward(
        &self,
        input: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        inv_std: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let op = "batch_norm_backward";
        // f16 storage: the input's gradient in f16, gamma's and beta's in f32 (their weights').
        if super::cast::any_half(&[self, input, gamma, mean, inv_std]) {
            let (dx, dgamma, dbeta) = self.widened()?.batch_norm_backward(
                &input.widened()?,
                &gamma.widened()?,
                &mean.widened()?,
                &inv_std.widened()?,
            )?;
            return Ok((dx.narrowed()?, dgamma, dbeta));
        }
        let v = view_of(op, input)?;
        same_device(op, &[input, self])?;
        self.expect_dtype(op, DType::F32)?;
        if self.shape() != input.shape() {
            return Err(Error::shape(
                op,
                "dy (self) must have the input's shape",
                &[self.shape(), input.shape()],
            ));
        }
        per_channel(op, input, gamma, "gamma", v.c)?;
        per_channel(op, input, mean, "mean", v.c)?;
        per_channel(op, input, inv_std, "inv_std", v.c)?;
        let device = input.device();
        // [2, C]: sum(dy), sum(dy·(x - mean)).
        let sums = statistic(input, v, Stat::Grad, Some(mean), Some(self), 1.0)?;
        let grad_gamma = channel(
            v,
            ChannelOp::GradGamma,
            None,
            &sums,
            Some(inv_std),
            0.0,
            0.0,
        )?;
        let grad_beta = channel(v, ChannelOp::GradBeta, None, &sums, None, 0.0, 0.0)?;
        let grad_input = Tensor::uninit(device, op, input.shape(), DType::F32)?;
        let blocks = row_blocks(v);
        launch(
            device,
            "backward_dx",
            &spec(v.vec4, 0, 0, false),
            v,
            blocks,
            blocks * v.cv(),
            1.0 / v.rows.max(1) as f32,
            0.0,
            &[
                input.bind(),
                grad_input.bind(),
                mean.bind(),
                self.bind(),
                inv_std.bind(),
                gamma.bind(),
                sums.bind(),
            ],
        )?;
        Ok((grad_input, grad_gamma, grad_beta))
    }
}

/// Keras's moving-statistics update, returning (new moving_mean, new moving_variance):
/// `moving = moving·momentum + batch·(1 - momentum)` for both ([`KERAS_MOMENTUM`] is Keras's
/// default). As Keras 3, the moving variance is updated with the *biased* batch variance
/// ([`BatchNormTrain::variance`]), not the unbiased count/(count - 1) correction.
pub fn batch_norm_update_moving(
    moving_mean: &Tensor,
    moving_variance: &Tensor,
    batch_mean: &Tensor,
    batch_variance: &Tensor,
    momentum: f32,
) -> Result<(Tensor, Tensor)> {
    let op = "batch_norm_update_moving";
    moving_mean.expect_dtype(op, DType::F32)?;
    let c = match moving_mean.shape() {
        &[c] => c,
        s => {
            return Err(Error::shape(
                op,
                "moving statistics must have rank 1 ([C])",
                &[s],
            ))
        }
    };
    per_channel(op, moving_mean, moving_variance, "moving_variance", c)?;
    per_channel(op, moving_mean, batch_mean, "batch_mean", c)?;
    per_channel(op, moving_mean, batch_variance, "batch_variance", c)?;
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::invalid(
            op,
            format!("momentum must lie in [0, 1], got {momentum}"),
        ));
    }
    let v = View {
        rows: 1,
        c,
        vec4: c % 4 == 0 && c > 0,
    };
    let ema = |moving: &Tensor, batch: &Tensor| {
        channel(
            v,
            ChannelOp::Ema,
            Some(moving),
            batch,
            None,
            momentum,
            1.0 - momentum,
        )
    };
    Ok((
        ema(moving_mean, batch_mean)?,
        ema(moving_variance, batch_variance)?,
    ))
}
