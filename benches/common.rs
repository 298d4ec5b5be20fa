//! Shared bench plumbing: every bench times with `iter_custom`, keeps each sample's time per
//! iteration, and prints a median table at the end, so figures can be quoted as ratios that
//! survive a busy machine.
#![allow(dead_code)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;

static SAMPLES: Mutex<Vec<(String, Vec<f64>)>> = Mutex::new(Vec::new());

/// A criterion config for slow (software adapter) kernels: few samples, short warm-up.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args()
}

/// Times `iters` runs of `f` and records the per-iteration time under `name`.
pub fn timed(name: &str, iters: u64, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let d = t.elapsed();
    let mut s = SAMPLES.lock().unwrap();
    let per = d.as_secs_f64() / iters as f64;
    match s.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => v.push(per),
        None => s.push((name.to_string(), vec![per])),
    }
    d
}

/// Median seconds per iteration recorded under `name`.
pub fn median(name: &str) -> Option<f64> {
    let s = SAMPLES.lock().unwrap();
    let (_, v) = s.iter().find(|(n, _)| n == name)?;
    let mut v = v.clone();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some(v[v.len() / 2])
}

/// The adapter line every summary starts with.
pub fn adapter_line(dev: &wgrad::Device) -> String {
    let i = dev.info();
    format!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        i.name, i.backend, i.device_type, i.driver, i.driver_info
    )
}

/// With `BENCH_PROFILE=1`, runs `f` once with every kernel timed alone
/// (`Device::set_profiling`) and prints the costliest kernels: where `name`'s time goes.
pub fn profile_once(dev: &wgrad::Device, name: &str, mut f: impl FnMut()) {
    if std::env::var_os("BENCH_PROFILE").is_none() {
        return;
    }
    dev.set_profiling(true).unwrap();
    f();
    dev.sync().unwrap();
    let prof = dev.profile();
    dev.set_profiling(false).unwrap();
    let total: f64 = prof.iter().map(|(_, t)| t.seconds).sum();
    println!(
        "\nprofiled {name}: {:.1} ms in kernels; costliest:",
        total * 1e3
    );
    for (k, t) in prof.iter().take(25) {
        println!("{:>8.2} ms {:>4}x  {k}", t.seconds * 1e3, t.dispatches);
    }
}
