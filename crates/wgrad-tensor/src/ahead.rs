//! Compiling the costly kernels ahead, on a second core (CPU adapters).
//!
//! lavapipe compiles a pipeline's machine code with LLVM when its first dispatch *runs*, on
//! the one thread that executes the queue, so a process's first training step runs its
//! kernels' compiles one after another while the adapter's other threads wait. A 16 x 16
//! register-blocked GEMM takes 1-3 s there. Mesa keeps what it compiles in its disk cache,
//! keyed by the shader, so the same pipeline compiled on a *second* device, by a thread of
//! its own, is a cache hit for the first one.
//!
//! [`Ahead`] is that thread: when the device records the first dispatch of a new GEMM
//! pipeline, the same pipeline goes to the helper, which creates it on its own device and
//! dispatches it once with zeroed parameters (an empty product: every invocation returns at
//! once, after the compile; lavapipe specialises a shader on the uniform values its control
//! flow tests, so for some kernels that variant is not the one the device will run, see
//! `compile`). The helper takes the newest request first:
//! the queue compiles from the step's first kernel on, the helper from its last one back,
//! and where they meet the rest is in the cache. A trainer's first step announces all its
//! pipelines before it runs (`Device::announce_pipelines`; they reach the helper together,
//! every kernel then, not only the GEMMs), so the helper starts on the backward pass while
//! the queue compiles the forward. Nothing the helper does is visible to the device it
//! serves; its errors are dropped. `WGRAD_COMPILE_AHEAD=0` turns it off.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::Duration;

/// Helpers in the middle of a compile, and whether the process has begun to exit.
static BUSY: Mutex<u32> = Mutex::new(0);
static IDLE: Condvar = Condvar::new();
static EXITING: AtomicBool = AtomicBool::new(false);
static AT_EXIT: Once = Once::new();

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

/// Runs when the process exits, before the static destructors of the driver and of LLVM
/// (registered when those libraries loaded, so after this handler in exit's reverse order):
/// a helper still inside LLVM while they run would crash the exit. Waits for the compiles in
/// progress (a few seconds at most), and no new one starts.
extern "C" fn wait_for_helpers() {
    EXITING.store(true, Ordering::SeqCst);
    let busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    let _ = IDLE.wait_timeout_while(busy, Duration::from_secs(60), |n| *n > 0);
}

/// One pipeline to compile: WGSL source, entry point, and the storage bindings (besides the
/// parameter block at binding 0) its entry point uses.
pub(crate) struct Job {
    pub label: &'static str,
    pub source: String,
    pub entry: &'static str,
    pub storage: Vec<u32>,
}

pub(crate) struct Ahead {
    tx: Mutex<mpsc::Sender<Job>>,
    done: Arc<AtomicU64>,
    /// Jobs kept back while a step announces its pipelines (`Ahead::hold`).
    held: Mutex<Option<Vec<Job>>>,
}

/// Entry points worth compiling ahead: those whose LLVM time is seconds, not milliseconds.
pub(crate) fn worth_it(entry: &str) -> bool {
    entry == "gemm_blocked"
}

impl Ahead {
    /// A helper for `adapter` when it is lavapipe (compiles at dispatch, has Mesa's disk
    /// cache), the machine has a second core, and neither `WGRAD_COMPILE_AHEAD=0` nor
    /// `MESA_SHADER_CACHE_DISABLE` says otherwise.
    pub(crate) fn start(
        adapter: &wgpu::Adapter,
        features: wgpu::Features,
        limits: &wgpu::Limits,
    ) -> Option<Ahead> {
        let info = adapter.get_info();
        let off = |var: &str| {
            std::env::var(var)
                .map(|v| matches!(v.as_str(), "0" | "false" | "off"))
                .unwrap_or(false)
        };
        let on = |var: &str| {
            std::env::var(var)
                .map(|v| matches!(v.as_str(), "1" | "true" | "on"))
                .unwrap_or(false)
        };
        let lavapipe = info.backend == wgpu::Backend::Vulkan
            && info.device_type == wgpu::DeviceType::Cpu
            && info.driver.to_lowercase().contains("llvmpipe");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if !lavapipe || cores < 2 || off("WGRAD_COMPILE_AHEAD") || on("MESA_SHADER_CACHE_DISABLE") {
            return None;
        }
        AT_EXIT.call_once(|| {
            // SAFETY: `atexit` is the C library's, and the handler is a plain `extern "C"` fn
            // that touches only statics.
            unsafe {
                atexit(wait_for_helpers);
            }
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        let adapter = adapter.clone();
        let limits = limits.clone();
        std::thread::Builder::new()
            .name("wgrad-compile-ahead".into())
            .spawn(move || run(adapter, features, limits, rx, counter))
            .ok()?;
        Some(Ahead {
            tx: Mutex::new(tx),
            done,
            held: Mutex::new(None),
        })
    }

    pub(crate) fn send(&self, job: Job) {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push(job);
            return;
        }
        // A helper that has stopped (its device failed) just stops helping.
        let _ = self.tx.lock().unwrap().send(job);
    }

    /// Keeps jobs back until [`Ahead::release`]: a step that announces its pipelines
    /// (`Device::announce_pipelines`) hands them over together, so that the helper, which
    /// takes the newest first, starts on the step's last kernels while the device's queue
    /// compiles its first ones.
    pub(crate) fn hold(&self) {
        self.held.lock().unwrap().get_or_insert_with(Vec::new);
    }

    pub(crate) fn release(&self) {
        let held = self.held.lock().unwrap().take();
        let tx = self.tx.lock().unwrap();
        for job in held.into_iter().flatten() {
            let _ = tx.send(job);
        }
    }

    /// Pipelines the helper has compiled so far.
    pub(crate) fn compiled(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

fn run(
    adapter: wgpu::Adapter,
    features: wgpu::Features,
    limits: wgpu::Limits,
    rx: mpsc::Receiver<Job>,
    done: Arc<AtomicU64>,
) {
    // Waits for the first job, so a device that never runs a GEMM costs an idle thread only.
    let Ok(first) = rx.recv() else { return };
    // Every call into the driver happens inside `busy`, so an exit never runs under one.
    let Ok((device, queue, params)) = busy(|| {
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("wgrad compile-ahead"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            }))?;
        device.on_uncaptured_error(Arc::new(|_| {}));
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad compile-ahead params"),
            size: 256,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        Ok::<_, wgpu::RequestDeviceError>((device, queue, params))
    }) else {
        return;
    };
    let mut storage: Vec<wgpu::Buffer> = Vec::new();
    let mut pending = vec![first];
    loop {
        while let Ok(j) = rx.try_recv() {
            pending.push(j);
        }
        let Some(job) = pending.pop().filter(|_| !EXITING.load(Ordering::SeqCst)) else {
            if EXITING.load(Ordering::SeqCst) {
                park_forever();
            }
            match rx.recv() {
                Ok(j) => {
                    pending.push(j);
                    continue;
                }
                // The device it served is gone. Releasing this one calls into the driver
                // too, so it counts as busy: the process may be exiting meanwhile.
                Err(_) => {
                    busy(move || drop((storage, params, queue, device)));
                    return;
                }
            }
        };
        busy(|| compile(&device, &queue, &params, &mut storage, job));
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `f` (a call into the driver) unless the process is exiting, counted as busy so that
/// the exit waits for it; once the exit has begun the thread never touches the driver again.
fn busy<T>(f: impl FnOnce() -> T) -> T {
    {
        let mut n = BUSY.lock().unwrap();
        if EXITING.load(Ordering::SeqCst) {
            drop(n);
            park_forever();
        }
        *n += 1;
    }
    let out = f();
    *BUSY.lock().unwrap() -= 1;
    IDLE.notify_all();
    out
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Creates `job`'s pipeline on the helper's device and dispatches it once, empty.
fn compile(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    params: &wgpu::Buffer,
    storage: &mut Vec<wgpu::Buffer>,
    job: Job,
) {
    // One buffer per binding: a buffer may not be bound read-only and read-write at once.
    while storage.len() < job.storage.len() {
        storage.push(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad compile-ahead binding"),
            size: 1024,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        }));
    }
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(job.label),
        source: wgpu::ShaderSource::Wgsl(job.source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(job.label),
        layout: None,
        module: &module,
        entry_point: Some(job.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            zero_initialize_workgroup_memory: false,
            ..Default::default()
        },
        cache: None,
    });
    // Zeroed parameters: an empty product, every invocation returns at once. lavapipe
    // specialises a shader on the uniform values its control flow tests, so for some kernels
    // (the forward GEMM) this compiles a cheap variant of no use to the real dispatches;
    // passing the real parameters made the helper's compiles useful but crashed LLVM at
    // process exit in tests/clean_exit.rs (docs/kernels.md), so they stay zero.
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: params.as_entire_binding(),
    }];
    for (b, buf) in job.storage.iter().zip(storage.iter()) {
        entries.push(wgpu::BindGroupEntry {
            binding: *b,
            resource: buf.as_entire_binding(),
        });
    }
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(job.label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    queue.submit([enc.finish()]);
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
}
