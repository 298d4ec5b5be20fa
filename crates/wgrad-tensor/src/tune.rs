//! Kernel choices made by measurement, per adapter.
//!
//! Where the best variant of a kernel differs between machines (how many K slices a split-K
//! product should run depends on how many cores or compute units the adapter has), the first
//! use of a shape times a small candidate set and keeps the winner in
//! `~/.cache/wgrad/tune.json` (`$WGRAD_CACHE_DIR/tune.json` when set), keyed by adapter,
//! driver and CPU: a software adapter's speed is its CPU's. Later processes on the same
//! machine read the choice instead of timing again. The candidates differ in run-time
//! parameters only, never in pipelines, so tuning costs a few runs of the product, not a
//! compile (the first step's budget is compile time). `WGRAD_TUNE=0` turns timing off:
//! every choice is then the built-in heuristic.
//!
//! The file is rewritten whole through a temporary file and a rename, so it is never left
//! half-written; an unreadable one is reported once and replaced.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::{Device, Result};

/// Timed runs per candidate (after one untimed run); the median counts.
const REPS: usize = 3;

pub(crate) struct Tuner {
    enabled: bool,
    path: Option<PathBuf>,
    device_key: String,
    /// This device's entries, loaded at first use.
    entries: Mutex<Option<Map<String, Value>>>,
    tunings: AtomicU64,
}

/// Where the tuning file lives: `$WGRAD_CACHE_DIR`, else `$XDG_CACHE_HOME/wgrad`, else
/// `~/.cache/wgrad`.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    let env = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    env("WGRAD_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wgrad")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("wgrad")))
}

fn cpu_model() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} threads")
}

impl Tuner {
    pub(crate) fn new(info: &wgpu::AdapterInfo) -> Tuner {
        let enabled = !matches!(
            std::env::var("WGRAD_TUNE").as_deref(),
            Ok("0") | Ok("false") | Ok("off")
        );
        Tuner {
            enabled,
            path: cache_dir().map(|d| d.join("tune.json")),
            device_key: format!(
                "{} | {:?} | {} {} | {}",
                info.name,
                info.backend,
                info.driver,
                info.driver_info,
                cpu_model()
            ),
            entries: Mutex::new(None),
            tunings: AtomicU64::new(0),
        }
    }

    /// Shapes timed by this device so far (choices read from the file do not count).
    pub(crate) fn tunings(&self) -> u64 {
        self.tunings.load(Ordering::Relaxed)
    }

    /// The whole file, or an empty table when it is missing or unreadable.
    fn read_file(&self) -> Map<String, Value> {
        let Some(path) = &self.path else {
            return Map::new();
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Map::new();
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => m,
            _ => {
                eprintln!(
                    "wgrad: ignoring {} (not a tuning table); it will be rewritten",
                    path.display()
                );
                Map::new()
            }
        }
    }

    fn lookup(&self, what: &str) -> Option<u32> {
        let mut entries = self.entries.lock().unwrap();
        let e = entries.get_or_insert_with(|| match self.read_file().remove(&self.device_key) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        });
        e.get(what)?.get("choice")?.as_u64().map(|v| v as u32)
    }

    fn store(&self, what: &str, record: Value) {
        self.entries
            .lock()
            .unwrap()
            .get_or_insert_with(Map::new)
            .insert(what.to_string(), record.clone());
        let Some(path) = &self.path else { return };
        // Re-read so that entries other devices or processes wrote meanwhile are kept.
        let mut all = self.read_file();
        let dev = all
            .entry(self.device_key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !dev.is_object() {
            *dev = Value::Object(Map::new());
        }
        dev.as_object_mut()
            .expect("an object")
            .insert(what.to_string(), record);
        let write = || -> std::io::Result<()> {
            let dir = path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".tune.json.{}.tmp", std::process::id()));
            let text =
                serde_json::to_string_pretty(&Value::Object(all)).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            eprintln!("wgrad: could not save {}: {e}", path.display());
        }
    }

    /// The candidate of `candidates` that runs fastest for `what` (a shape class), by the
    /// table when it has an entry, else by timing `run` for each; `default` when tuning is
    /// off. `run` must compute the same result for every candidate.
    pub(crate) fn choose(
        &self,
        dev: &Device,
        what: &str,
        default: u32,
        candidates: &[u32],
        mut run: impl FnMut(u32) -> Result<()>,
    ) -> Result<u32> {
        // Announced dispatches run nothing, so there is nothing to time.
        if !self.enabled || candidates.len() < 2 || dev.announcing() {
            return Ok(default);
        }
        if let Some(v) = self.lookup(what).filter(|v| candidates.contains(v)) {
            return Ok(v);
        }
        // Earlier work must not count against the first candidate.
        dev.sync()?;
        let mut best = (f64::INFINITY, default);
        let mut times = Map::new();
        for &c in candidates {
            run(c)?;
            dev.sync()?;
            let mut t: Vec<f64> = (0..REPS)
                .map(|_| {
                    let start = Instant::now();
                    run(c)?;
                    dev.sync()?;
                    Ok(start.elapsed().as_secs_f64())
                })
                .collect::<Result<_>>()?;
            t.sort_by(f64::total_cmp);
            let median = t[REPS / 2];
            times.insert(c.to_string(), Value::from((median * 1e6).round() / 1e3));
            if median < best.0 {
                best = (median, c);
            }
        }
        self.tunings.fetch_add(1, Ordering::Relaxed);
        let mut record = Map::new();
        record.insert("choice".into(), Value::from(best.1));
        record.insert("default".into(), Value::from(default));
        record.insert("ms".into(), Value::Object(times));
        self.store(what, Value::Object(record));
        Ok(best.1)
    }
}
