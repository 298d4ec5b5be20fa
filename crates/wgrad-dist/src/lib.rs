//! # wgrad-dist
//!
//! Data-parallel training on MPI, as Horovod and PyTorch's DDP do it: one process (rank) per
//! adapter, each holding a replica of the model. Rank 0's initial weights are broadcast;
//! every rank trains on its own share of each epoch ([`DataLoader::shard`]); after each
//! backward pass the gradients are averaged with MPI all-reduce, so every replica takes the
//! same optimizer step and stays identical.
//!
//! ```text
//!  rank 0: forward ─ backward ─────────────────────┐        ┌─ optimizer ─ ...
//!            (last layers' gradients first)        │ finish │
//!             ├─ bucket 0 ready → Iallreduce ──────┤  wait  │
//!             ├─ bucket 1 ready → Iallreduce ──────┤  ÷ p   │
//!             └─ bucket 2 ready → Iallreduce ──────┘        │
//!  rank 1: the same, on its own shard; the all-reduces pair up across ranks
//! ```
//!
//! Gradients are grouped into buckets (25 MB by default) in reverse layer order; a bucket's
//! non-blocking all-reduce starts as soon as its last gradient is final, while the backward
//! pass goes on through the earlier layers, and the optimizer waits only at the end
//! ([`Overlap`] measures how much of the communication that hides). Batch-norm statistics
//! stay per replica, as in DDP, unless the model uses [`SyncBatchNormalization`], whose
//! batch moments are the whole job's.
//!
//! ```no_run
//! use wgrad_dist::Mpi;
//! let mpi = Mpi::init()?;
//! let dev = mpi.device()?; // one adapter per rank on a host
//! # let model: wgrad_nn::Functional = todo!();
//! # let (optimizer, loss): (wgrad_nn::Optimizer, wgrad_nn::Loss) = todo!();
//! let mut model = model;
//! let sync = mpi.data_parallel(&mut model, Default::default())?; // broadcasts rank 0's weights
//! let trainer = wgrad_train::Trainer::new(model, optimizer, loss).distributed(Box::new(sync));
//! # Ok::<(), wgrad_nn::Error>(())
//! ```
//!
//! [`DataLoader::shard`]: wgrad_data::DataLoader::shard

use std::os::raw::{c_int, c_void};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod sync_bn;

pub use sync_bn::{all_reduce_sum, SyncBatchNormalization};

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use wgrad_nn::{Error, Layer, Result};
use wgrad_tensor::{Device, Tensor};
use wgrad_train::GradientSync;

/// The MPI environment of this process: its rank among `size` ranks, and which of its host's
/// ranks it is (to pick an adapter). Finalises MPI when the last handle goes. Not `Send`:
/// MPI is initialised for calls from one thread, the one that made it.
#[derive(Clone)]
pub struct Mpi {
    inner: Rc<Universe>,
}

struct Universe {
    /// Dropped last: MPI_Finalize.
    _universe: mpi::environment::Universe,
    world: SimpleCommunicator,
    local_rank: usize,
    local_size: usize,
}

impl Mpi {
    /// Initialises MPI (a process started without `mpirun` is a job of one rank).
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::config("Mpi", "MPI is already initialised in this process"))?;
        let world = universe.world();
        let local = world.split_shared(world.rank());
        let (local_rank, local_size) = (local.rank() as usize, local.size() as usize);
        Ok(Mpi {
            inner: Rc::new(Universe {
                world,
                local_rank,
                local_size,
                _universe: universe,
            }),
        })
    }

    pub fn rank(&self) -> usize {
        self.inner.world.rank() as usize
    }

    pub fn size(&self) -> usize {
        self.inner.world.size() as usize
    }

    /// This rank's position among the ranks on its host.
    pub fn local_rank(&self) -> usize {
        self.inner.local_rank
    }

    /// Ranks on this host.
    pub fn local_size(&self) -> usize {
        self.inner.local_size
    }

    /// The adapter of this rank: ranks on one host take the host's best adapters in turn
    /// (local rank `i` opens the `i`-th, wrapping when there are fewer adapters than ranks,
    /// as on a machine with one software adapter).
    pub fn device(&self) -> Result<Device> {
        Ok(Device::open_nth(self.local_rank())?)
    }

    /// Broadcasts rank 0's weights and state tensors (batch-norm statistics) to every rank,
    /// and returns the gradient sync for [`Trainer::distributed`].
    ///
    /// [`Trainer::distributed`]: wgrad_train::Trainer::distributed
    pub fn data_parallel<M: Layer>(&self, model: &mut M, options: Options) -> Result<DataParallel> {
        if options.bucket_bytes == 0 {
            return Err(Error::config(
                "DataParallel",
                "bucket_bytes must be positive",
            ));
        }
        let device = model
            .params()
            .first()
            .map(|p| p.value().device().clone())
            .ok_or_else(|| Error::config("DataParallel", "the model has no parameters"))?;
        let options = Options {
            overlap: Some(options.overlap.unwrap_or(!device.is_cpu())),
            ..options
        };
        let mut dp = DataParallel {
            mpi: self.clone(),
            device,
            options,
            buckets: Vec::new(),
            slot_of: Vec::new(),
            stats: Arc::new(Mutex::new(Overlap::default())),
            step_start: None,
        };
        for p in model.params_mut() {
            let mut v = p.value().to_f32_vec()?;
            dp.broadcast(&mut v)?;
            if self.rank() != 0 {
                let t = Tensor::from_slice(p.value().device(), &v, p.shape())?;
                p.set(t.to_dtype(p.value().dtype())?);
            }
        }
        Ok(dp)
    }

    /// Sums `values` over the ranks, in place (blocking).
    pub fn all_sum(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.inner.world.all_reduce_into(
            &send[..],
            values,
            mpi::collective::SystemOperation::sum(),
        );
    }

    /// Waits until every rank gets here.
    pub fn barrier(&self) {
        self.inner.world.barrier();
    }

    /// Reports `error` as this rank's and ends the whole job: MPI_Abort makes `mpirun` stop
    /// every other rank at once, instead of leaving them waiting in a collective for a rank
    /// that will never come.
    pub fn abort(&self, error: &dyn std::fmt::Display) -> ! {
        eprintln!(
            "rank {} of {} failed: {error}; stopping every rank",
            self.rank(),
            self.size()
        );
        self.inner.world.abort(1)
    }
}

/// Options of [`Mpi::data_parallel`].
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Gradient bytes per all-reduce bucket (PyTorch DDP's default: 25 MB).
    pub bucket_bytes: usize,
    /// Start each bucket's all-reduce while the backward pass goes on (`Some(true)`), or
    /// reduce every bucket after it (`Some(false)`). `None` (the default): overlap on GPUs,
    /// not on CPU adapters, where reading a bucket's gradients mid-backward stalls the
    /// software rasteriser for longer than the communication it hides (measured in
    /// docs/performance.md: 2 ranks of lavapipe, 96 % of the bytes reduced during backward,
    /// steps 9 % slower).
    pub overlap: Option<bool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bucket_bytes: 25 << 20,
            overlap: None,
        }
    }
}

/// Where the communication time of the steps so far went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overlap {
    /// Steps measured.
    pub steps: u64,
    /// Gradient bytes each rank sent into all-reduces.
    pub bytes: u64,
    /// Of those, the bytes whose all-reduce had completed when the backward pass (and the
    /// copies) ended: communication fully hidden behind it.
    pub reduced_during_backward: u64,
    /// Seconds from the start of each step's backward pass to the end of its last
    /// all-reduce.
    pub backward_and_reduce: f64,
    /// Seconds the step spent in all-reduces after its backward pass and copies had
    /// finished: the communication not hidden behind the backward pass. Without overlap,
    /// this is all of it.
    pub exposed: f64,
    /// Seconds spent copying gradients off and onto the device around the all-reduces
    /// (reading a gradient also waits for the device to compute it).
    pub copies: f64,
}

/// One bucket: a run of parameters (in reverse model order) reduced by one all-reduce.
struct Bucket {
    /// (parameter shape, element offset in the bucket) per member.
    members: Vec<(Vec<usize>, usize)>,
    len: usize,
    grads: Vec<Option<Tensor>>,
    missing: usize,
    send: Vec<f32>,
    recv: Vec<f32>,
    request: ffi::MPI_Request,
    started: bool,
    /// The all-reduce has completed (seen by `progress`).
    done: bool,
}

/// The [`GradientSync`] of a data-parallel job on MPI (see the crate documentation).
pub struct DataParallel {
    mpi: Mpi,
    /// The replica's device, where the averaged gradients go.
    device: Device,
    options: Options,
    buckets: Vec<Bucket>,
    /// (graph id, bucket, member) of each trainable parameter of the current step.
    slot_of: Vec<(u64, usize, usize)>,
    stats: Arc<Mutex<Overlap>>,
    step_start: Option<Instant>,
}

impl DataParallel {
    /// Communication figures of the steps so far.
    pub fn overlap(&self) -> Overlap {
        *self.stats.lock().unwrap()
    }

    /// A handle that reads [`DataParallel::overlap`] after the sync has moved into a
    /// trainer.
    pub fn overlap_handle(&self) -> Arc<Mutex<Overlap>> {
        self.stats.clone()
    }

    fn world(&self) -> &SimpleCommunicator {
        &self.mpi.inner.world
    }

    /// Copies bucket `b`'s gradients off the device (zeros for those that got none) and
    /// starts its all-reduce.
    fn start(&mut self, b: usize) -> Result<()> {
        self.copy_out(b)?;
        self.launch(b)
    }

    /// Bucket `b`'s gradients into its send buffer. Reading a gradient waits for the device
    /// to compute it, so this time includes that part of the backward pass.
    fn copy_out(&mut self, b: usize) -> Result<()> {
        let t = Instant::now();
        if self.buckets.iter().any(|b| b.started) {
            // Keep the started all-reduces moving while the device finishes these gradients.
            let dev = self.device.clone();
            dev.sync_with(std::time::Duration::from_micros(200), || self.progress())?;
        }
        let bucket = &mut self.buckets[b];
        for (j, (shape, offset)) in bucket.members.iter().enumerate() {
            let n: usize = shape.iter().product();
            let dst = &mut bucket.send[*offset..*offset + n];
            match bucket.grads[j].take() {
                Some(g) => dst.copy_from_slice(&g.to_f32_vec()?),
                None => dst.fill(0.0),
            }
        }
        self.stats.lock().unwrap().copies += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Starts bucket `b`'s non-blocking all-reduce.
    fn launch(&mut self, b: usize) -> Result<()> {
        let bucket = &mut self.buckets[b];
        // SAFETY: `send` and `recv` belong to the bucket and are neither moved, resized nor
        // touched until `finish` completes this request; every rank starts the same buckets in
        // the same order with the same lengths (the parameters are the same on every rank).
        let rc = unsafe {
            ffi::MPI_Iallreduce(
                bucket.send.as_ptr() as *const c_void,
                bucket.recv.as_mut_ptr() as *mut c_void,
                bucket.len as c_int,
                ffi::RSMPI_FLOAT,
                ffi::RSMPI_SUM,
                self.mpi.inner.world.as_raw(),
                &mut bucket.request,
            )
        };
        if rc != 0 {
            return Err(Error::config(
                "DataParallel",
                format!("MPI_Iallreduce failed ({rc})"),
            ));
        }
        bucket.started = true;
        self.stats.lock().unwrap().bytes += 4 * bucket.len as u64;
        Ok(())
    }

    /// Lets MPI move started all-reduces along (MPI progresses non-blocking collectives
    /// inside MPI calls).
    fn progress(&mut self) {
        for b in self.buckets.iter_mut().filter(|b| b.started && !b.done) {
            let mut done: c_int = 0;
            // SAFETY: a request started by `launch` and not yet completed (a completed one
            // becomes MPI_REQUEST_NULL, which `finish`'s MPI_Wait returns at once for).
            unsafe { ffi::MPI_Test(&mut b.request, &mut done, ffi::RSMPI_STATUS_IGNORE) };
            b.done = done != 0;
        }
    }

    fn layout(&mut self, params: &[(u64, &Tensor)]) -> Result<()> {
        let shapes: Vec<Vec<usize>> = params
            .iter()
            .rev()
            .map(|(_, t)| t.shape().to_vec())
            .collect();
        let same = self
            .buckets
            .iter()
            .flat_map(|b| b.members.iter().map(|(s, _)| s))
            .eq(shapes.iter());
        if !same {
            self.buckets.clear();
            let mut members = Vec::new();
            let mut len = 0;
            for (i, s) in shapes.iter().enumerate() {
                let n: usize = s.iter().product();
                members.push((s.clone(), len));
                len += n;
                if 4 * len >= self.options.bucket_bytes || i + 1 == shapes.len() {
                    self.buckets.push(Bucket {
                        grads: vec![None; members.len()],
                        missing: members.len(),
                        members: std::mem::take(&mut members),
                        len,
                        send: vec![0.0; len],
                        recv: vec![0.0; len],
                        // SAFETY: reading a constant the MPI library exports.
                        request: unsafe { ffi::RSMPI_REQUEST_NULL },
                        started: false,
                        done: false,
                    });
                    len = 0;
                }
            }
        }
        // This step's graph ids (parameters get new ones every step) onto the same slots.
        self.slot_of.clear();
        let mut k = 0;
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            bucket.missing = bucket.members.len();
            bucket.started = false;
            bucket.done = false;
            for j in 0..bucket.members.len() {
                bucket.grads[j] = None;
                let (id, _) = params[params.len() - 1 - k];
                self.slot_of.push((id, b, j));
                k += 1;
            }
        }
        Ok(())
    }
}

impl GradientSync for DataParallel {
    fn begin(&mut self, params: &[(u64, &Tensor)]) -> Result<()> {
        self.layout(params)?;
        self.step_start = Some(Instant::now());
        Ok(())
    }

    fn ready(&mut self, id: u64, grad: &Tensor) -> Result<()> {
        let Some(&(_, b, j)) = self.slot_of.iter().find(|(i, _, _)| *i == id) else {
            return Ok(()); // not a trainable parameter of this step (an input, a frozen one)
        };
        let bucket = &mut self.buckets[b];
        if bucket.grads[j].replace(grad.clone()).is_none() {
            bucket.missing -= 1;
        }
        if bucket.missing == 0 && self.options.overlap == Some(true) {
            self.start(b)?;
        }
        self.progress();
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<(u64, Tensor)>> {
        // What the backward pass has already hidden: all-reduces complete by its end.
        self.progress();
        let early: usize = self.buckets.iter().filter(|b| b.done).map(|b| b.len).sum();
        self.stats.lock().unwrap().reduced_during_backward += 4 * early as u64;
        // Buckets not started yet (all of them without overlap): copy every one off the
        // device first, so that what follows is communication only.
        let pending: Vec<usize> = (0..self.buckets.len())
            .filter(|&b| !self.buckets[b].started)
            .collect();
        for &b in &pending {
            self.copy_out(b)?;
        }
        let wait_start = Instant::now();
        for &b in &pending {
            self.launch(b)?;
        }
        for bucket in &mut self.buckets {
            // SAFETY: completes the request `start` began on this bucket's buffers.
            unsafe { ffi::MPI_Wait(&mut bucket.request, ffi::RSMPI_STATUS_IGNORE) };
            bucket.started = false;
        }
        let reduced = Instant::now();
        let t = Instant::now();
        let p = self.mpi.size() as f32;
        let mut out = Vec::with_capacity(self.slot_of.len());
        for &(id, b, j) in &self.slot_of {
            let bucket = &self.buckets[b];
            let (shape, offset) = &bucket.members[j];
            let n: usize = shape.iter().product();
            let avg: Vec<f32> = bucket.recv[*offset..*offset + n]
                .iter()
                .map(|v| v / p)
                .collect();
            out.push((id, Tensor::from_slice(&self.device, &avg, shape)?));
        }
        let mut s = self.stats.lock().unwrap();
        s.steps += 1;
        s.copies += t.elapsed().as_secs_f64();
        s.exposed += (reduced - wait_start).as_secs_f64();
        s.backward_and_reduce += self
            .step_start
            .map_or(0.0, |t0| (reduced - t0).as_secs_f64());
        Ok(out)
    }

    fn all_sum(&mut self, values: &mut [f64]) -> Result<()> {
        self.mpi.all_sum(values);
        Ok(())
    }

    fn broadcast(&mut self, values: &mut [f32]) -> Result<()> {
        self.world().process_at_rank(0).broadcast_into(values);
        Ok(())
    }

    fn is_primary(&self) -> bool {
        self.mpi.rank() == 0
    }
}
