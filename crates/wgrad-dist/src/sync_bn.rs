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
use wgrad_nn::{Ctx, Error, Layer, Param, Result};
use wgrad_tensor::{
    batch_norm_update_moving, DType, Device, Tensor, UnaryOp, KERAS_EPSILON, KERAS_MOMENTUM,
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
/// batch together while training (see the module documentation). Inference uses the moving
/// statistics, as the ordinary layer does. Its parameters and names are the ordinary
/// layer's (`gamma`, `beta`, `moving_mean`, `moving_variance`), so weights move between them.
pub struct SyncBatchNormalization {
    momentum: f32,
    epsilon: f32,
    gamma: Option<Param>,
    beta: Option<Param>,
    moving_mean: Option<Param>,
    moving_variance: Option<Param>,
}

impl Default for SyncBatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncBatchNormalization {
    pub fn new() -> Self {
        SyncBatchNormalization {
            momentum: KERAS_MOMENTUM,
            epsilon: KERAS_EPSILON,
            gamma: None,
            beta: None,
            moving_mean: None,
            moving_variance: None,
        }
    }

    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }

    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
}

fn built(p: &Option<Param>) -> Result<&Param> {
    p.as_ref()
        .ok_or_else(|| Error::config("SyncBatchNormalization", "used before build"))
}

impl Layer for SyncBatchNormalization {
    fn kind(&self) -> &'static str {
        "SyncBatchNormalization"
    }

    fn build(&mut self, dev: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let Some(&c) = input.last() else {
            return Err(Error::config(
                self.kind(),
                "needs inputs with a channel axis",
            ));
        };
        if !(0.0..=1.0).contains(&self.momentum) || self.epsilon <= 0.0 {
            return Err(Error::config(
                self.kind(),
                format!(
                    "momentum {} must be in [0, 1] and epsilon {} > 0",
                    self.momentum, self.epsilon
                ),
            ));
        }
        let ones = || Tensor::ones(dev, &[c], DType::F32);
        let zeros = || Tensor::zeros(dev, &[c], DType::F32);
        self.gamma = Some(Param::new("gamma", ones()?));
        self.beta = Some(Param::new("beta", zeros()?));
        self.moving_mean = Some(Param::state("moving_mean", zeros()?));
        self.moving_variance = Some(Param::state("moving_variance", ones()?));
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let (gamma, beta) = (built(&self.gamma)?, built(&self.beta)?);
        let c = *x.shape().last().expect("built with a channel axis");
        if !(ctx.training && gamma.trainable()) {
            let (mm, mv) = (built(&self.moving_mean)?, built(&self.moving_variance)?);
            let inv = Var::new(mv.value().add_scalar(self.epsilon)?.rsqrt()?);
            let scale = ops::mul(gamma.var(), &inv)?;
            let centred = ops::sub(x, &Var::new(mm.value().clone()))?;
            return Ok(ops::add(&ops::mul(&centred, &scale)?, beta.var())?);
        }
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
        let mm = self.moving_mean.as_mut().expect("built with gamma");
        let mv = self.moving_variance.as_mut().expect("built with gamma");
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
        [
            &self.gamma,
            &self.beta,
            &self.moving_mean,
            &self.moving_variance,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        [
            &mut self.gamma,
            &mut self.beta,
            &mut self.moving_mean,
            &mut self.moving_variance,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
