//! Batch normalisation whose batch moments are those of the whole job's batch: PyTorch's
//! `SyncBatchNorm`. Each rank sums its part of the batch (Σx and Σx² per channel); one
//! all-reduce makes them the job's; mean and (biased) variance follow, and the moving
//! statistics are updated from them, identically on every rank. The all-reduce is a
//! differentiable op (its gradient is the all-reduce of the output gradient), so the
//! backward pass sums the gradient terms over the ranks too, and two ranks at batch 16
//! train as one process at batch 32 would with an ordinary batch norm.

use std::os::raw::{c_int, c_void};

use mpi::ffi;
use wgrad_graph::{ops, Var};
use wgrad_nn::layers::BatchNormalization;
use wgrad_nn::{Ctx, Error, Layer, Param, Result};
use wgrad_tensor::{
    batch_norm_update_moving, Device, Tensor, UnaryOp, KERAS_EPSILON, KERAS_MOMENTUM,
};

/// Sums `values` over every rank of MPI_COMM_WORLD, in place.
fn world_sum<T: Copy>(values: &mut [T], datatype: ffi::MPI_Datatype) -> Result<()> {
    let mut initialised: c_int = 0;
    // SAFETY: MPI_Initialized may be called at any time.
    unsafe { ffi::MPI_Initialized(&mut initialised) };
    if initialised == 0 {
        return Err(Error::config(
            "SyncBatchNormalization",
            "MPI is not initialised: call wgrad_dist::Mpi::init() first",
        ));
    }
    let send = values.to_vec();
    // SAFETY: a blocking all-reduce from `send` into `values`, both alive for the call and
    // `len` elements of `datatype`; every rank makes the same calls in the same order (the
    // same model, the same graph).
    let rc = unsafe {
        ffi::MPI_Allreduce(
            send.as_ptr() as *const c_void,
            values.as_mut_ptr() as *mut c_void,
            values.len() as c_int,
            datatype,
            ffi::RSMPI_SUM,
            ffi::RSMPI_COMM_WORLD,
        )
    };
    if rc != 0 {
        return Err(Error::config(
            "all_reduce_sum",
            format!("MPI_Allreduce failed ({rc})"),
        ));
    }
    Ok(())
}

fn all_reduce_tensor(t: &Tensor) -> wgrad_tensor::Result<Tensor> {
    let mut v = t.to_vec::<f32>()?;
    // SAFETY: reading a constant the MPI library exports.
    world_sum(&mut v, unsafe { ffi::RSMPI_FLOAT }).map_err(|e| {
        wgrad_tensor::Error::InvalidArgument {
            op: "all_reduce_sum",
            reason: e.to_string(),
        }
    })?;
    Tensor::from_slice(t.device(), &v, t.shape())
}

/// `x` summed over every rank (f32), as a differentiable op: each rank's output depends on
/// every rank's input, so the gradient is the sum of the ranks' output gradients.
pub fn all_reduce_sum(x: &Var) -> Result<Var> {
    let y = all_reduce_tensor(x.value())?;
    Ok(Var::from_op("all_reduce_sum", y, &[x], |g| {
        Ok(vec![Some(all_reduce_tensor(g)?)])
    }))
}

/// Keras's `BatchNormalization` over the last axis, with the batch moments of every rank's
/// batch together while training (see the module documentation). It wraps the ordinary layer,
/// whose weights, statistics, names (`gamma`, `beta`, `moving_mean`, `moving_variance`) and
/// inference path it keeps, so weights move between the two; only the training forward
/// differs.
pub struct SyncBatchNormalization {
    inner: BatchNormalization,
    momentum: f32,
    epsilon: f32,
}

impl Default for SyncBatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncBatchNormalization {
    pub fn new() -> Self {
        SyncBatchNormalization {
            inner: BatchNormalization::new(),
            momentum: KERAS_MOMENTUM,
            epsilon: KERAS_EPSILON,
        }
    }

    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self.inner = self.inner.momentum(m);
        self
    }

    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self.inner = self.inner.epsilon(e);
        self
    }
}

impl Layer for SyncBatchNormalization {
    fn kind(&self) -> &'static str {
        "SyncBatchNormalization"
    }

    fn build(&mut self, dev: &Device, input: &[usize], seed: u64) -> Result<Vec<usize>> {
        self.inner.build(dev, input, seed)
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let trainable = self.inner.params().first().is_some_and(|g| g.trainable());
        if !(ctx.training && trainable) {
            // Inference (or frozen, as Keras): the moving statistics, as the ordinary layer.
            return self.inner.forward(x, ctx);
        }
        let [gamma, beta, mm, mv] = self
            .inner
            .params_mut()
            .try_into()
            .map_err(|_| Error::config("SyncBatchNormalization", "used before build"))?;
        let c = *x.shape().last().expect("built with a channel axis");
        let axes: Vec<isize> = (0..x.shape().len() as isize - 1).collect();
        let mut count = [(x.value().numel() / c.max(1)) as f64];
        // SAFETY: reading a constant the MPI library exports.
        world_sum(&mut count, unsafe { ffi::RSMPI_DOUBLE })?;
        let n = count[0] as f32;
        // Σx and Σx² per channel of this rank, then of the job: one all-reduce for both.
        let sums = ops::concat(
            &[&ops::sum(x, &axes)?, &ops::sum(&ops::square(x)?, &axes)?],
            0,
        )?;
        let total = all_reduce_sum(&sums)?;
        let mean = ops::mul_scalar(&ops::slice(&total, 0, 0, c)?, 1.0 / n)?;
        let mean_sq = ops::mul_scalar(&ops::slice(&total, 0, c, 2 * c)?, 1.0 / n)?;
        let var = ops::sub(&mean_sq, &ops::square(&mean)?)?;
        let inv = ops::unary(&ops::add_scalar(&var, self.epsilon)?, UnaryOp::Rsqrt)?;
        let y = ops::add(
            &ops::mul(&ops::sub(x, &mean)?, &ops::mul(&inv, gamma.var())?)?,
            beta.var(),
        )?;
        let (m, v) = batch_norm_update_moving(
            mm.value(),
            mv.value(),
            mean.value(),
            var.value(),
            self.momentum,
        )?;
        mm.set(m);
        mv.set(v);
        Ok(y)
    }

    fn params(&self) -> Vec<&Param> {
        self.inner.params()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.inner.params_mut()
    }
}
