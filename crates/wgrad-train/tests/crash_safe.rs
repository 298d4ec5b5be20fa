//! Crash safety of training checkpoints, with real processes: a child trains and writes a
//! checkpoint after every step while the parent SIGKILLs it at random moments, 50 times; after
//! each kill the file on disk must load, be the last acknowledged checkpoint or the one being
//! written (never a mixture: its weights equal, bit for bit, a reference run's in this
//! process after exactly its step count), and resuming from it must continue identically. A full disk must be a typed error
//! that leaves the previous checkpoint intact: checked with a file-size limit
//! (RLIMIT_FSIZE, which makes writes fail with EFBIG) always, and on a 1 MiB tmpfs where this
//! machine lets the test mount one.
//!
//! `harness = false`: this binary is both the parent (no arguments) and the child
//! (`WGRAD_CRASH_CHILD` set), so the child is exactly the code under test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wgrad_nn::layers::Dense;
use wgrad_nn::{Error, Layer, Loss, Optimizer, Sequential};
use wgrad_tensor::{Device, Tensor};
use wgrad_testkit::Rng;
use wgrad_train::Trainer;

const KILLS: usize = 50;
/// A child stops on its own after this many checkpoints (the parent kills it long before).
const MAX_SAVES: u64 = 200;

/// 512 → 2048 → 4 with SGD momentum: about 4 MiB of weights and 4 MiB of optimizer slots, so
/// a checkpoint takes long enough to write that kills land inside the write too.
fn trainer(dev: &Device, width: usize) -> Trainer<Sequential> {
    let model = Sequential::new(dev, &[512])
        .seed(5)
        .add(Dense::new(width))
        .unwrap()
        .add(Dense::new(4))
        .unwrap();
    Trainer::new(
        model,
        Optimizer::sgd(1e-2).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(3)
}

fn batch(dev: &Device) -> (Tensor, Tensor) {
    let mut rng = Rng::new(11);
    let x = Tensor::from_slice(dev, &rng.vec(8 * 512, -1.0, 1.0), &[8, 512]).unwrap();
    let y = Tensor::from_slice(dev, &[0u32, 1, 2, 3, 3, 2, 1, 0], &[8]).unwrap();
    (x, y)
}

fn weights(m: &dyn Layer) -> Vec<Vec<f32>> {
    m.params()
        .iter()
        .map(|p| p.value().to_vec::<f32>().unwrap())
        .collect()
}

/// The child: train and checkpoint after every step, acknowledging each save on stdout.
fn child_writer(path: &Path) {
    let dev = Device::new().unwrap();
    let mut t = trainer(&dev, 2048);
    let (x, y) = batch(&dev);
    for _ in 0..MAX_SAVES {
        t.train_step(&x, &y).unwrap();
        t.save_checkpoint(path).unwrap();
        println!("saved {}", t.steps());
    }
}

/// Weights after k steps of the reference run, computed on demand and kept.
struct Reference {
    t: Trainer<Sequential>,
    x: Tensor,
    y: Tensor,
    after: Vec<Vec<Vec<f32>>>,
}

impl Reference {
    fn new(dev: &Device) -> Reference {
        let (x, y) = batch(dev);
        let t = trainer(dev, 2048);
        Reference {
            after: vec![weights(&t.model)],
            t,
            x,
            y,
        }
    }
    fn at(&mut self, k: u64) -> &[Vec<f32>] {
        while self.after.len() as u64 <= k {
            self.t.train_step(&self.x, &self.y).unwrap();
            self.after.push(weights(&self.t.model));
        }
        &self.after[k as usize]
    }
}

fn assert_same(ctx: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{ctx}: parameter count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        wgrad_testkit::close(
            &format!("{ctx}: parameter {i}"),
            g,
            &wgrad_testkit::to_f64(w),
            0.0,
            0.0,
        );
    }
}

fn kill_at_random_moments(root: &Path) {
    let dev = wgrad_testkit::device();
    let mut reference = Reference::new(&dev);
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(2024);
    let (mut mid_write, mut acknowledged_total) = (0, 0);
    // The time one step + checkpoint takes, measured on the first child; kills then land
    // anywhere within the next few saves.
    let mut save_time = Duration::from_millis(50);
    for kill in 0..KILLS {
        let dir = root.join(format!("kill{kill}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ckpt.safetensors");
        let mut child = Command::new(&exe)
            .env("WGRAD_CRASH_CHILD", format!("write:{}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for the first acknowledged save (the device is up), then for two more to time
        // a save, then kill after a random fraction of a few saves.
        let first = lines
            .next()
            .expect("the child acknowledges a save")
            .unwrap();
        assert_eq!(first, "saved 1", "kill {kill}");
        if kill == 0 {
            let t0 = Instant::now();
            lines.next().unwrap().unwrap();
            lines.next().unwrap().unwrap();
            save_time = t0.elapsed() / 2;
        }
        let wait = save_time.mul_f32(rng.uniform(0.0, 3.0));
        // The pipe is read on another thread so the child never blocks on a full pipe, and
        // every acknowledgement is known once the child is dead.
        let reader = std::thread::spawn(move || {
            lines
                .map_while(|l| l.ok())
                .filter_map(|l| l.strip_prefix("saved ").and_then(|k| k.parse::<u64>().ok()))
                .last()
        });
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acked = reader
            .join()
            .unwrap()
            .unwrap_or(if kill == 0 { 3 } else { 1 });
        acknowledged_total += acked;
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n.to_string_lossy().contains(".tmp-")
            })
            .count();
        if leftovers > 0 {
            mid_write += 1;
        }
        // The file loads, and is the last acknowledged checkpoint or the next one.
        let mut t = trainer(&dev, 2048);
        t.load_checkpoint(&path)
            .unwrap_or_else(|e| panic!("kill {kill}: the checkpoint does not load: {e}"));
        let k = t.steps();
        assert!(
            k == acked || k == acked + 1,
            "kill {kill}: the file holds step {k}, the child had acknowledged {acked}"
        );
        assert_eq!(t.optimizer.iterations(), k, "kill {kill}: optimizer state");
        assert_same(
            &format!("kill {kill}, step {k}"),
            &weights(&t.model),
            reference.at(k),
        );
        // Resuming continues as the uninterrupted run does.
        let (x, y) = batch(&dev);
        t.train_step(&x, &y).unwrap();
        t.train_step(&x, &y).unwrap();
        assert_same(
            &format!("kill {kill}, resumed to step {}", k + 2),
            &weights(&t.model),
            reference.at(k + 2),
        );
    }
    println!(
        "crash_safe: {KILLS} kills, {acknowledged_total} checkpoints acknowledged, {mid_write} kills \
         inside a write (a temporary file left beside the checkpoint); every file loaded and \
         resumed identically"
    );
    assert!(
        mid_write >= 3,
        "only {mid_write} of {KILLS} kills landed inside a write: the test does not exercise \
         the atomic rename"
    );
}

/// Writes a small checkpoint, then fails to write a large one over it; the small one must
/// stay intact and the failure must be a typed I/O error naming the file.
fn full_disk_keeps_the_previous(path: &Path, what: &str) {
    let dev = Device::new().unwrap();
    let (x, y) = batch(&dev);
    let mut small = trainer(&dev, 8);
    small.train_step(&x, &y).unwrap();
    small.save_checkpoint(path).unwrap();
    let before = weights(&small.model);
    let mut big = trainer(&dev, 2048);
    big.train_step(&x, &y).unwrap();
    match big.save_checkpoint(path) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path, "{what}: the error names the file"),
        other => panic!("{what}: expected Error::Io, got {other:?}"),
    }
    let mut back = trainer(&dev, 8);
    back.load_checkpoint(path)
        .unwrap_or_else(|e| panic!("{what}: the previous checkpoint is damaged: {e}"));
    assert_eq!(back.steps(), 1, "{what}");
    assert_same(what, &weights(&back.model), &before);
    let dir = path.parent().unwrap();
    let stray: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(stray.is_empty(), "{what}: a failed write left {stray:?}");
}

/// The child of the file-size-limit check: run under `ulimit -f` with SIGXFSZ ignored.
fn child_full(path: &Path) {
    full_disk_keeps_the_previous(path, "file-size limit (EFBIG)");
    println!("full-disk check passed");
}

fn file_size_limit(root: &Path) {
    let dir = root.join("fsize");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    let exe = std::env::current_exe().unwrap();
    // ulimit -f counts 512- or 1024-byte blocks by shell; 1,000 blocks lie between the small
    // checkpoint (~70 KB) and the large one (~8 MB) either way. An ignored signal stays
    // ignored across exec, so the write fails with EFBIG instead of killing the child.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1000 && exec \"$0\"")
        .arg(&exe)
        .env("WGRAD_CRASH_CHILD", format!("full:{}", path.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("full-disk check passed"),
        "file-size-limit child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same check on a real full file system, where this machine lets root mount a tmpfs.
fn small_tmpfs(root: &Path) -> bool {
    let mnt = root.join("tmpfs");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        return false;
    }
    let result = std::panic::catch_unwind(|| {
        full_disk_keeps_the_previous(&mnt.join("ckpt.safetensors"), "1 MiB tmpfs (ENOSPC)")
    });
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    true
}

fn main() {
    if let Ok(mode) = std::env::var("WGRAD_CRASH_CHILD") {
        match mode.split_once(':') {
            Some(("write", p)) => child_writer(Path::new(p)),
            Some(("full", p)) => child_full(Path::new(p)),
            _ => panic!("unknown child mode {mode:?}"),
        }
        return;
    }
    let root: PathBuf = std::env::temp_dir().join(format!("wgrad-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let t0 = Instant::now();
    kill_at_random_moments(&root);
    file_size_limit(&root);
    let tmpfs = small_tmpfs(&root);
    println!(
        "crash_safe: full disk checked with a file-size limit{} ({:.1} s)",
        if tmpfs {
            " and on a 1 MiB tmpfs"
        } else {
            " (this machine does not let the test mount a tmpfs)"
        },
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&root);
}
