//! Adapter choice, the device, and the command batch every op records into.
//!
//! Ops never submit on their own: each dispatch is appended to one open command encoder, and the
//! batch is submitted only when a value is read back, on an explicit [`Device::sync`], before an
//! upload, or when the batch holds [`MAX_BATCH`] dispatches. Each dispatch's small parameter
//! block goes into a slot of one uniform buffer that is written once per submit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::kernel::{Kernel, Spec};
use crate::memory::{BufferPool, MemoryStats};
use crate::{Error, Result};

/// Dispatches recorded before the batch is submitted on its own.
pub const MAX_BATCH: usize = 512;
thread_local! {
    /// The device whose dispatches this thread only announces (`Device::announce_pipelines`).
    static ANNOUNCING: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Bytes of one dispatch's parameter slot (the common `min_uniform_buffer_offset_alignment`).
const PARAM_SLOT: u64 = 256;

/// How matmul-like kernels are tiled. Chosen from the adapter type, overridable for tests and
/// benchmarks with [`Device::with_strategy`] or `WGRAD_STRATEGY=tiled|blocked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Workgroup-memory tiles with barriers: the right choice on real GPUs.
    Tiled,
    /// Register blocking with no workgroup memory or barriers: 2-3x faster on CPU adapters
    /// (lavapipe), where a barrier costs a thread switch.
    RegisterBlocked,
}

/// What one adapter is, as `Device::adapters` lists it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub driver_info: String,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

/// Submit and readback counts, to prove a training step makes no host round trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dispatches: u64,
    pub submits: u64,
    pub readbacks: u64,
    pub uploads: u64,
    /// Compute pipelines compiled (each kernel variant once per device).
    pub pipelines: u64,
    /// Microseconds spent compiling them (shader modules and pipelines): the cost of a
    /// process's first step that later steps do not pay.
    pub compile_micros: u64,
    /// Pipelines the compile-ahead helper has compiled for this device (CPU adapters; see
    /// [`Device::compiles_ahead`]).
    pub compiled_ahead: u64,
    /// Shapes whose kernel choice this device timed (docs: src/tune.rs); choices read from
    /// the tuning file do not count.
    pub tuned: u64,
}

struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    dispatches: usize,
    /// Upload staging buffers the open encoder copies from; remapped once it is submitted.
    uploads: Vec<wgpu::Buffer>,
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    pub(crate) pool: BufferPool,
    /// Largest window one storage binding may have: the adapter's
    /// `max_storage_buffer_binding_size`, or less when lowered (see
    /// [`Device::set_binding_limit`]). Ops past it split their work.
    binding_limit: AtomicU64,
    pipelines: Mutex<HashMap<(&'static str, &'static str, Spec), wgpu::ComputePipeline>>,
    modules: Mutex<HashMap<(&'static str, Spec), wgpu::ShaderModule>>,
    batch: Mutex<Batch>,
    params_buf: wgpu::Buffer,
    staging: Mutex<Vec<wgpu::Buffer>>,
    /// Mapped upload staging buffers ready to be written (filled back by map callbacks).
    upload_free: Arc<Mutex<Vec<wgpu::Buffer>>>,
    /// Stand-ins bound to optional bindings an entry point declares but a variant never touches.
    dummies: [wgpu::Buffer; 2],
    gpu_error: Arc<Mutex<Option<String>>>,
    /// Why the device was lost, once it is (wgpu's device-lost callback, or `destroy`).
    lost: Arc<Mutex<Option<String>>>,
    dispatches: AtomicU64,
    submits: AtomicU64,
    readbacks: AtomicU64,
    uploads: AtomicU64,
    pipelines_built: AtomicU64,
    compile_micros: AtomicU64,
    /// The helper that compiles new GEMM pipelines on a second core (lavapipe only).
    ahead: Option<crate::ahead::Ahead>,
    /// Kernel choices by measurement, persisted per adapter.
    tuner: crate::tune::Tuner,
    /// Per-kernel wall time when profiling (see [`Device::set_profiling`]).
    profile: Mutex<Option<HashMap<String, KernelTime>>>,
    id: u64,
}

/// Time spent in one kernel variant while profiling: how many dispatches, and their summed
/// wall time from submit to completion.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTime {
    pub dispatches: u64,
    pub seconds: f64,
}

/// The last handle of a device waits for the work it submitted, so a program (or a test) that
/// drops its device, or returns, while the adapter still runs never needs a sync of its own
/// and never tears wgpu down under a running queue. Recorded, unsubmitted work is dropped:
/// nothing can read its results any more.
impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }
}

/// A GPU (or software adapter) with its queue, buffer pool and kernel cache. Cheap to clone.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<Inner>,
    strategy: Strategy,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Device({} on {:?}, {:?})",
            self.inner.info.name, self.inner.info.backend, self.strategy
        )
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// A fresh instance per device (the GL backend's EGL context belongs to its instance and
/// cannot be current in two threads), which is never destroyed: a process that made and
/// dropped its own devices died with SIGSEGV or SIGABRT after `main` returned when their
/// instances had been destroyed before the exit, lavapipe's exit handlers then running over
/// torn-down driver state (tests/compile_ahead.rs under load: 2 to 4 runs in 16; a core dump
/// showed the crash in an exit handler). An instance is a few kilobytes; its adapters and
/// devices are still released with their handles.
fn instance() -> wgpu::Instance {
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    std::mem::forget(inst.clone());
    inst
}

fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn summary(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    AdapterSummary {
        name: info.name,
        backend: info.backend,
        device_type: info.device_type,
        driver: info.driver,
        driver_info: info.driver_info,
        limits: a.limits(),
        features: a.features(),
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A size from the environment variable `name`: bytes, or a number with a `K`, `M` or `G`
/// suffix (powers of 1024). A value that is not a size is reported and ignored.
fn size_from_env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let parsed = parse_bytes(&v);
    if parsed.is_none() {
        eprintln!("wgrad: {name}={v:?} is not a size (e.g. 512M, 2G, 1048576); ignored");
    }
    parsed
}

fn memory_limit_from_env() -> Option<u64> {
    size_from_env("WGRAD_MEMORY_LIMIT")
}

pub(crate) fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_uppercase()),
        _ => (v, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return None,
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl Device {
    /// Every adapter wgpu finds on the native backends (`WGPU_BACKEND` narrows them).
    pub fn adapters() -> Vec<AdapterSummary> {
        let inst = instance();
        pollster::block_on(inst.enumerate_adapters(backends()))
            .iter()
            .map(summary)
            .collect()
    }

    /// Opens the best adapter: discrete > integrated > virtual > CPU, native backends before GL.
    /// `WGRAD_ADAPTER` keeps only adapters whose name contains it (case-insensitive).
    pub fn new() -> Result<Device> {
        let filter = std::env::var("WGRAD_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        Self::open(filter.as_deref())
    }

    /// Opens the `n`-th of the equally best adapters (the kind [`Device::new`] would pick),
    /// wrapping past the last: how the ranks of a data-parallel job on one host take one GPU
    /// each (and share the only one there is, such as a software adapter). `WGRAD_ADAPTER`
    /// narrows the candidates as for [`Device::new`].
    pub fn open_nth(n: usize) -> Result<Device> {
        let filter = std::env::var("WGRAD_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_lowercase());
        let inst = instance();
        let mut adapters = pollster::block_on(inst.enumerate_adapters(backends()));
        if let Some(f) = &filter {
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(f));
        }
        let kind = |a: &wgpu::Adapter| {
            let i = a.get_info();
            (type_rank(i.device_type), i.backend == wgpu::Backend::Gl)
        };
        adapters.sort_by_key(kind);
        let Some(best) = adapters.first().map(kind) else {
            return Self::open(filter.as_deref());
        };
        adapters.retain(|a| kind(a) == best);
        let k = n % adapters.len();
        Self::from_adapter(adapters.swap_remove(k))
    }

    /// Opens the best adapter whose name contains `name_filter`.
    pub fn open(name_filter: Option<&str>) -> Result<Device> {
        let inst = instance();
        let mut adapters = pollster::block_on(inst.enumerate_adapters(backends()));
        let found: Vec<String> = adapters
            .iter()
            .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().backend))
            .collect();
        if let Some(f) = name_filter {
            let f = f.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&f));
        }
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (type_rank(i.device_type), i.backend == wgpu::Backend::Gl)
        });
        let Some(adapter) = adapters.into_iter().next() else {
            let detail = match (name_filter, found.is_empty()) {
                (_, true) => String::new(),
                (Some(f), false) => format!(
                    " matching WGRAD_ADAPTER={f:?} (found: {})",
                    found.join(", ")
                ),
                (None, false) => format!(" (found: {})", found.join(", ")),
            };
            return Err(Error::NoAdapter { detail });
        };
        Self::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Device> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let wanted =
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        // Validation errors surface as `Error::Gpu` at the next sync point instead of a panic.
        let gpu_error = Arc::new(Mutex::new(None::<String>));
        let sink = gpu_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            lost_sink
                .lock()
                .unwrap()
                .get_or_insert_with(|| format!("{reason:?}: {message}"));
        });
        let slot = PARAM_SLOT.max(limits.min_uniform_buffer_offset_alignment as u64);
        let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad params"),
            size: slot * MAX_BATCH as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 256,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let dummies = [
            dummy("wgrad unused binding 0"),
            dummy("wgrad unused binding 1"),
        ];
        let strategy = match std::env::var("WGRAD_STRATEGY").as_deref() {
            Ok("tiled") => Strategy::Tiled,
            Ok("blocked") => Strategy::RegisterBlocked,
            _ if info.device_type == wgpu::DeviceType::Cpu => Strategy::RegisterBlocked,
            _ => Strategy::Tiled,
        };
        let binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_buffer = limits.max_buffer_size;
        let ahead = crate::ahead::Ahead::start(&adapter, features, &limits);
        let tuner = crate::tune::Tuner::new(&info);
        Ok(Device {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                features,
                pool: {
                    let pool = BufferPool::new(max_buffer);
                    pool.set_memory_limit(memory_limit_from_env());
                    pool
                },
                binding_limit: AtomicU64::new(binding_limit),
                pipelines: Mutex::new(HashMap::new()),
                modules: Mutex::new(HashMap::new()),
                batch: Mutex::new(Batch {
                    encoder: None,
                    params: Vec::new(),
                    dispatches: 0,
                    uploads: Vec::new(),
                }),
                params_buf,
                staging: Mutex::new(Vec::new()),
                upload_free: Arc::new(Mutex::new(Vec::new())),
                dummies,
                gpu_error,
                lost,
                dispatches: AtomicU64::new(0),
                submits: AtomicU64::new(0),
                readbacks: AtomicU64::new(0),
                uploads: AtomicU64::new(0),
                pipelines_built: AtomicU64::new(0),
                compile_micros: AtomicU64::new(0),
                ahead,
                tuner,
                profile: Mutex::new(
                    std::env::var_os("WGRAD_PROFILE")
                        .filter(|v| !v.is_empty() && v != "0")
                        .map(|_| HashMap::new()),
                ),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            }),
            strategy,
        }
        .with_binding_limit_from_env())
    }

    fn with_binding_limit_from_env(self) -> Device {
        if let Some(bytes) = size_from_env("WGRAD_BINDING_LIMIT") {
            self.set_binding_limit(Some(bytes));
        }
        self
    }

    /// The same device, launching matmul-like kernels with `strategy`.
    pub fn with_strategy(&self, strategy: Strategy) -> Device {
        Device {
            inner: self.inner.clone(),
            strategy,
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }

    /// True for software adapters such as lavapipe.
    pub fn is_cpu(&self) -> bool {
        self.inner.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A short description for messages: adapter name and backend.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, device #{})",
            self.inner.info.name, self.inner.info.backend, self.inner.id
        )
    }

    /// Largest byte size one tensor may have on this adapter: its `max_buffer_size`. Tensors
    /// past [`Device::binding_limit`] are processed in pieces (see docs/large-tensors.md).
    pub fn max_tensor_bytes(&self) -> u64 {
        self.inner.limits.max_buffer_size
    }

    /// Most bytes one kernel binding covers: the adapter's `max_storage_buffer_binding_size`
    /// (lavapipe and browsers: 128 MiB) unless lowered with [`Device::set_binding_limit`].
    /// Ops on larger tensors split their work into windows of at most this size.
    pub fn binding_limit(&self) -> u64 {
        self.inner.binding_limit.load(Ordering::Relaxed)
    }

    /// Lowers the binding limit below the adapter's (`None` restores the adapter's), so that
    /// small tensors take the paths large ones take: CI checks every split path this way
    /// against the unsplit results. Also set at start-up by `WGRAD_BINDING_LIMIT` (`1M`).
    /// The value is rounded down to a multiple of 4 KiB and is at least 4 KiB.
    pub fn set_binding_limit(&self, bytes: Option<u64>) {
        let adapter = self
            .inner
            .limits
            .max_storage_buffer_binding_size
            .min(self.inner.limits.max_buffer_size);
        let v = bytes.map_or(adapter, |b| (b / 4096 * 4096).clamp(4096, adapter));
        self.inner.binding_limit.store(v, Ordering::Relaxed);
    }

    /// The alignment of a binding's offset into its buffer.
    pub(crate) fn binding_alignment(&self) -> u64 {
        (self.inner.limits.min_storage_buffer_offset_alignment as u64).max(16)
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.inner.pool.stats()
    }

    pub fn reset_peak_memory(&self) {
        self.inner.pool.reset_peak()
    }

    /// Releases the pool's cached buffers.
    pub fn clear_cache(&self) {
        self.inner.pool.clear()
    }

    /// Whether new GEMM pipelines are also compiled ahead on a second core: on lavapipe, with
    /// two cores or more and Mesa's shader cache on, unless `WGRAD_COMPILE_AHEAD=0`. lavapipe
    /// compiles a pipeline when its first dispatch runs, one after another on its queue's
    /// thread; the helper compiles the same pipelines on a device of its own, newest first,
    /// and Mesa's disk cache hands its results to this device (src/ahead.rs).
    pub fn compiles_ahead(&self) -> bool {
        self.inner.ahead.is_some()
    }

    /// Runs `f` (a training step, say) with every dispatch reduced to creating its pipeline
    /// and, where the device [compiles ahead](Device::compiles_ahead), handing it to the
    /// helper: nothing is recorded or run, so every tensor `f` computes holds garbage and
    /// the caller must put back any state `f` replaced. lavapipe compiles each pipeline at
    /// its first dispatch, and a step's later kernels (the backward pass's) would otherwise
    /// reach the helper only once the queue has reached them; announced together, the
    /// helper compiles the later ones while the queue compiles the first. Only this thread's
    /// dispatches are announced: other threads' run as usual meanwhile.
    pub fn announce_pipelines<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Reset<'a>(&'a Inner, Option<u64>);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                ANNOUNCING.with(|a| a.set(self.1));
                if let Some(a) = &self.0.ahead {
                    a.release();
                }
            }
        }
        if let Some(a) = &self.inner.ahead {
            a.hold();
        }
        let outer = ANNOUNCING.with(|a| a.replace(Some(self.inner.id)));
        let _reset = Reset(&self.inner, outer);
        f()
    }

    /// Whether this thread's dispatches on this device only announce their pipelines now
    /// ([`Device::announce_pipelines`]).
    pub(crate) fn announcing(&self) -> bool {
        ANNOUNCING.with(|a| a.get() == Some(self.inner.id))
    }

    pub(crate) fn tuner(&self) -> &crate::tune::Tuner {
        &self.inner.tuner
    }

    pub fn counters(&self) -> Counters {
        let i = &self.inner;
        Counters {
            dispatches: i.dispatches.load(Ordering::Relaxed),
            submits: i.submits.load(Ordering::Relaxed),
            readbacks: i.readbacks.load(Ordering::Relaxed),
            uploads: i.uploads.load(Ordering::Relaxed),
            pipelines: i.pipelines_built.load(Ordering::Relaxed),
            compile_micros: i.compile_micros.load(Ordering::Relaxed),
            compiled_ahead: i.ahead.as_ref().map_or(0, |a| a.compiled()),
            tuned: i.tuner.tunings(),
        }
    }

    fn take_gpu_error(&self) -> Result<()> {
        // After a loss, wgpu's errors only echo it; the loss is what the user must hear.
        self.check_lost()?;
        match self.inner.gpu_error.lock().unwrap().take() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Turns per-kernel profiling on (clearing earlier figures) or off. While on, every
    /// dispatch is submitted alone and waited for, so the figures are each kernel's own wall
    /// time, at the price of losing batching (a step runs slower than unprofiled). Also
    /// switched on at start-up by `WGRAD_PROFILE=1`.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        self.sync()?;
        *self.inner.profile.lock().unwrap() = on.then(HashMap::new);
        Ok(())
    }

    /// The profile so far: `(kernel::entry [workgroups], time)`, costliest first.
    pub fn profile(&self) -> Vec<(String, KernelTime)> {
        let mut v: Vec<(String, KernelTime)> = self
            .inner
            .profile
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        v.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        v
    }

    /// [`Device::sync`] that calls `idle` while the adapter works, at most every
    /// `period`, instead of blocking in the driver: data-parallel training keeps MPI's
    /// non-blocking all-reduces moving this way (MPI progresses them only inside MPI calls)
    /// while the device computes the next gradients.
    pub fn sync_with(&self, period: std::time::Duration, mut idle: impl FnMut()) -> Result<()> {
        self.flush();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        self.inner
            .queue
            .on_submitted_work_done(move || flag.store(true, Ordering::Release));
        loop {
            self.inner
                .device
                .poll(wgpu::PollType::Poll)
                .map_err(|e| Error::Gpu(e.to_string()))?;
            if done.load(Ordering::Acquire) {
                break;
            }
            idle();
            std::thread::sleep(period);
        }
        self.take_gpu_error()
    }

    /// Submits the open batch without waiting for it.
    pub fn flush(&self) {
        let mut b = self.inner.batch.lock().unwrap();
        self.submit_locked(&mut b);
    }

    fn submit_locked(&self, b: &mut Batch) {
        if let Some(enc) = b.encoder.take() {
            if !b.params.is_empty() {
                self.inner
                    .queue
                    .write_buffer(&self.inner.params_buf, 0, &b.params);
            }
            self.inner.queue.submit([enc.finish()]);
            self.inner.submits.fetch_add(1, Ordering::Relaxed);
            b.params.clear();
            b.dispatches = 0;
            // Each staging buffer becomes writable again once the GPU has copied from it.
            for staging in b.uploads.drain(..) {
                let free = self.inner.upload_free.clone();
                let again = staging.clone();
                staging.map_async(wgpu::MapMode::Write, .., move |r| {
                    if r.is_ok() {
                        free.lock().unwrap().push(again);
                    }
                });
            }
        }
    }

    /// Submits the open batch and waits until the adapter has run everything recorded so far.
    pub fn sync(&self) -> Result<()> {
        self.flush();
        self.wait()?;
        self.take_gpu_error()
    }

    fn wait(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    pub(crate) fn alloc(
        &self,
        op: &'static str,
        shape: &[usize],
        dtype: crate::DType,
        bytes: u64,
    ) -> Result<wgpu::Buffer> {
        let limit = self.max_tensor_bytes();
        if bytes > limit {
            return Err(Error::TooLarge { op, bytes, limit });
        }
        self.check_lost()?;
        self.inner
            .pool
            .get(&self.inner.device, bytes)
            .map_err(|e| Error::OutOfMemory {
                op,
                shape: shape.to_vec(),
                dtype,
                bytes: e.size,
                in_use: e.in_use,
                limit: e.limit,
            })
    }

    /// Caps the bytes this device's tensors may hold (live plus cached), below what the
    /// adapter has: past it, creating a tensor returns [`Error::OutOfMemory`] as running out
    /// of adapter memory does. For sharing a GPU, and for testing what a program does when
    /// memory runs out. `None` lifts the cap. Also set at start-up by `WGRAD_MEMORY_LIMIT`
    /// (bytes, or with a `K`, `M` or `G` suffix: `512M`).
    pub fn set_memory_limit(&self, bytes: Option<u64>) {
        self.inner.pool.set_memory_limit(bytes);
    }

    /// The cap set by [`Device::set_memory_limit`].
    pub fn memory_limit(&self) -> Option<u64> {
        self.inner.pool.memory_limit()
    }

    /// Destroys the device now, as a driver reset would: its memory is freed and every later
    /// operation on it returns [`Error::DeviceLost`]. (WebGPU's `GPUDevice.destroy`.)
    pub fn destroy(&self) {
        self.inner.device.destroy();
        self.inner
            .lost
            .lock()
            .unwrap()
            .get_or_insert_with(|| "destroyed by Device::destroy".to_string());
    }

    fn check_lost(&self) -> Result<()> {
        match self.inner.lost.lock().unwrap().as_ref() {
            Some(reason) => Err(Error::DeviceLost {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Writes `data` at the start of `buffer`: the bytes go into a mapped staging buffer and a
    /// copy is recorded in the open batch. Recording (rather than `queue.write_buffer`, which
    /// runs before every unsubmitted command) keeps the write in order with the dispatches
    /// around it, so a pooled buffer that a pending dispatch still reads is never overwritten
    /// early, and no flush is needed. Staging buffers are reused: no fresh pages to fault in.
    pub(crate) fn upload(&self, buffer: &wgpu::Buffer, data: &[u8]) -> Result<()> {
        let size = (data.len() as u64).div_ceil(4) * 4;
        if size == 0 {
            return Ok(());
        }
        // Collect staging buffers whose remap has completed.
        let _ = self.inner.device.poll(wgpu::PollType::Poll);
        let reused = {
            let mut free = self.inner.upload_free.lock().unwrap();
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, s)| s.size() >= size)
                .min_by_key(|(_, s)| s.size())
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        };
        let staging = reused.unwrap_or_else(|| {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad upload"),
                size: crate::memory::bucket(size, u64::MAX),
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            })
        });
        {
            let mut view = staging
                .get_mapped_range_mut(0..size)
                .map_err(|e| Error::Gpu(e.to_string()))?;
            if data.len() as u64 == size {
                view.copy_from_slice(data);
            } else {
                // Only odd-length f16 data: pad its last word.
                let mut padded = data.to_vec();
                padded.resize(size as usize, 0);
                view.copy_from_slice(&padded);
            }
        }
        staging.unmap();
        let mut b = self.inner.batch.lock().unwrap();
        let enc = self.encoder_locked(&mut b);
        enc.copy_buffer_to_buffer(&staging, 0, buffer, 0, size);
        b.uploads.push(staging);
        self.inner.uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `len` elements from `offset` bytes into `buffer` to the host, through a reused
    /// staging buffer, straight into the returned Vec. A buffer copy has no binding limit.
    pub(crate) fn download<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        let size = bytes.div_ceil(4) * 4;
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = {
            let mut cache = self.inner.staging.lock().unwrap();
            let best = cache
                .iter()
                .enumerate()
                .filter(|(_, s)| s.size() >= size)
                .min_by_key(|(_, s)| s.size())
                .map(|(i, _)| i);
            match best {
                Some(i) => cache.swap_remove(i),
                None => self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad readback"),
                    size: crate::memory::bucket(size, u64::MAX),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            }
        };
        {
            let mut b = self.inner.batch.lock().unwrap();
            let enc = self.encoder_locked(&mut b);
            enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
            self.submit_locked(&mut b);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        self.take_gpu_error()?;
        rx.recv()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let out = {
            let view = staging
                .get_mapped_range(0..size)
                .map_err(|e| Error::Gpu(e.to_string()))?;
            let src = &view[..bytes as usize];
            match bytemuck::try_cast_slice::<u8, T>(src) {
                Ok(s) => s.to_vec(),
                Err(_) => bytemuck::pod_collect_to_vec(src),
            }
        };
        staging.unmap();
        self.inner.staging.lock().unwrap().push(staging);
        self.inner.readbacks.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    fn encoder_locked<'a>(&self, b: &'a mut Batch) -> &'a mut wgpu::CommandEncoder {
        b.encoder.get_or_insert_with(|| {
            self.inner
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgrad batch"),
                })
        })
    }

    fn pipeline(
        &self,
        kernel: &'static Kernel,
        entry: &'static str,
        spec: &Spec,
    ) -> (wgpu::ComputePipeline, bool) {
        let key = (kernel.name, entry, spec.clone());
        if let Some(p) = self.inner.pipelines.lock().unwrap().get(&key) {
            return (p.clone(), false);
        }
        let started = std::time::Instant::now();
        let module = {
            let mut modules = self.inner.modules.lock().unwrap();
            modules
                .entry((kernel.name, spec.clone()))
                .or_insert_with(|| {
                    self.inner
                        .device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(kernel.name),
                            source: wgpu::ShaderSource::Wgsl(kernel.source_with(spec).into()),
                        })
                })
                .clone()
        };
        let p = self
            .inner
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    // Kernels that stage tiles in workgroup memory write every cell before reading it.
                    zero_initialize_workgroup_memory: false,
                    ..Default::default()
                },
                cache: None,
            });
        self.inner
            .compile_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.inner.pipelines_built.fetch_add(1, Ordering::Relaxed);
        self.inner.pipelines.lock().unwrap().insert(key, p.clone());
        (p, true)
    }

    /// A small buffer for a binding the chosen variant never reads or writes (`i` in 0..2, so
    /// two such bindings of one dispatch get distinct buffers).
    pub(crate) fn dummy(&self, i: usize) -> View<'_> {
        View::whole(&self.inner.dummies[i])
    }

    /// Records one dispatch: `params` (a parameter block's bytes) at binding 0 as a uniform, then `buffers`
    /// as storage bindings 1, 2, ... in order. A window past the binding limit is refused
    /// here, whatever op asked: [`Error::Unsplit`] names the kernel, and no invalid bind
    /// group ever reaches wgpu.
    pub(crate) fn dispatch(&self, d: Dispatch<'_>) -> Result<()> {
        if d.workgroups.contains(&0) {
            return Ok(());
        }
        let limit = self.binding_limit();
        if let Some(v) = d.buffers.iter().find(|v| v.size > limit) {
            return Err(Error::Unsplit {
                op: d.kernel.name,
                bytes: v.size,
                limit,
            });
        }
        debug_assert!(
            d.params.len() <= PARAM_SLOT as usize,
            "{}: params too long",
            d.kernel.name
        );
        let profiling = self.inner.profile.lock().unwrap().is_some();
        if profiling {
            // Earlier work must not count against this kernel.
            self.flush();
            let _ = self.wait();
        }
        let (pipeline, new) = self.pipeline(d.kernel, d.entry, d.spec);
        if let Some(ahead) = self.inner.ahead.as_ref().filter(|_| new) {
            // Announced, every kernel goes: the helper takes them newest first, so the
            // queue meets the step's first kernels (and compiles them itself) while the
            // helper does the backward pass's and the optimizer's.
            if crate::ahead::worth_it(d.entry) || self.announcing() {
                ahead.send(crate::ahead::Job {
                    label: d.kernel.name,
                    source: d.kernel.source_with(d.spec),
                    entry: d.entry,
                    storage: (0..d.buffers.len())
                        .map(|i| d.bindings.map_or(i as u32 + 1, |b| b[i]))
                        .collect(),
                });
            }
        }
        if self.announcing() {
            return Ok(());
        }
        let mut b = self.inner.batch.lock().unwrap();
        if b.dispatches >= MAX_BATCH {
            self.submit_locked(&mut b);
        }
        let slot = PARAM_SLOT.max(self.inner.limits.min_uniform_buffer_offset_alignment as u64);
        let offset = b.dispatches as u64 * slot;
        b.params.resize(offset as usize, 0);
        b.params.extend_from_slice(d.params);
        let param_bytes = (d.params.len() as u64).div_ceil(16).max(1) * 16;
        b.params.resize((offset + param_bytes) as usize, 0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.inner.params_buf,
                offset,
                size: wgpu::BufferSize::new(param_bytes),
            }),
        }];
        for (i, v) in d.buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: d.bindings.map_or(i as u32 + 1, |b| b[i]),
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: v.buffer,
                    offset: v.offset,
                    size: wgpu::BufferSize::new(v.size),
                }),
            });
        }
        let bind_group = self
            .inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(d.kernel.name),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        b.dispatches += 1;
        let enc = self.encoder_locked(&mut b);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(d.kernel.name),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
        self.inner.dispatches.fetch_add(1, Ordering::Relaxed);
        if profiling {
            let t = std::time::Instant::now();
            self.submit_locked(&mut b);
            drop(b);
            let _ = self.wait();
            let key = format!("{}::{} {:?}", d.kernel.name, d.entry, d.workgroups);
            let mut p = self.inner.profile.lock().unwrap();
            if let Some(p) = p.as_mut() {
                let e = p.entry(key).or_default();
                e.dispatches += 1;
                e.seconds += t.elapsed().as_secs_f64();
            }
        }
        Ok(())
    }

    /// Workgroup counts for `groups` workgroups on a 1-D problem, folded into a second grid
    /// dimension past the 65,535 per-dimension limit. Returns the grid and the number of
    /// workgroups per grid row (kernels rebuild the linear index from it).
    pub(crate) fn grid_1d(&self, groups: u64) -> Result<([u32; 3], u32)> {
        let max = self.inner.limits.max_compute_workgroups_per_dimension as u64;
        if groups <= max {
            return Ok(([groups as u32, 1, 1], groups.max(1) as u32));
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(Error::invalid(
                "dispatch",
                format!("{groups} workgroups exceed the adapter's grid"),
            ));
        }
        let x = groups.div_ceil(y);
        Ok(([x as u32, y as u32, 1], x as u32))
    }
}

/// What one storage binding covers: `size` bytes of `buffer` from `offset` (a multiple of
/// the adapter's storage offset alignment). A tensor binds its own bytes
/// ([`Tensor::bind`](crate::Tensor)); ops past the binding limit bind windows of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> View<'a> {
    pub(crate) fn whole(buffer: &'a wgpu::Buffer) -> Self {
        View {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }

    /// `len` bytes from `start` bytes into this view, rounded up to a whole word and kept
    /// inside the buffer (a binding's size is a multiple of 4; kernels bound-check by count).
    pub(crate) fn window(&self, start: u64, len: u64) -> Self {
        let offset = self.offset + start;
        View {
            buffer: self.buffer,
            offset,
            size: len
                .div_ceil(16)
                .saturating_mul(16)
                .min(self.buffer.size() - offset),
        }
    }
}

/// One kernel launch.
pub(crate) struct Dispatch<'a> {
    pub kernel: &'static Kernel,
    pub entry: &'static str,
    pub spec: &'a Spec,
    /// The bytes of the kernel's parameter block (`bytemuck::bytes_of` of a [`Block`]).
    ///
    /// [`Block`]: crate::kernel::Block
    pub params: &'a [u8],
    pub buffers: &'a [View<'a>],
    /// The binding of each buffer; `None`: 1, 2, 3… in order. An entry's automatic layout
    /// holds only the bindings it uses, so a family whose entries use different subsets of
    /// one file's bindings names them.
    pub bindings: Option<&'a [u32]>,
    pub workgroups: [u32; 3],
}

static DEFAULT: OnceLock<std::result::Result<Device, String>> = OnceLock::new();

/// The process-wide default device ([`Device::new`] on first use), shared by everything that
/// does not name one.
pub fn default_device() -> Result<Device> {
    DEFAULT
        .get_or_init(|| Device::new().map_err(|e| e.to_string()))
        .clone()
        .map_err(|detail| Error::NoAdapter {
            detail: format!(": {detail}"),
        })
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn memory_limits_read_as_bytes_with_binary_suffixes() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("2g"), Some(2 << 30));
        assert_eq!(parse_bytes(" 64 K "), Some(64 << 10));
        assert_eq!(parse_bytes("12B"), Some(12));
        for bad in ["", "M", "1.5G", "-1", "3T", "lots"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }
}
