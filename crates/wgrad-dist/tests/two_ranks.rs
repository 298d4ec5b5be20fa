//! Two ranks under `mpirun` on the software adapter, against one process.
//!
//! - lockstep: each rank trains on its shard with batch 16; both replicas end bit-identical,
//!   and equal (1e-5 of each tensor's scale) to one process training with batch 32 on the
//!   same samples: averaging the two halves' gradients is the gradient of the whole batch.
//! - batch norm per replica (DDP's default): the trained weights stay identical across
//!   replicas, the moving statistics are each replica's own, and the result differs from the
//!   batch-32 run (each replica normalises with its half's moments).
//! - synchronised batch norm: the job's batch moments on every rank, so 2 x 16 equals the
//!   batch-32 run with an ordinary batch norm, statistics included.
//! - fit: `Trainer::fit` on sharded loaders reports the same (reduced) metrics on both ranks,
//!   and only rank 0 writes the checkpoint; resuming from it continues as an uninterrupted
//!   two-rank run.
//! - a rank that fails, by an error or by SIGKILL, ends the whole job within a bounded time
//!   instead of leaving the other rank waiting in an all-reduce.
//!
//! `harness = false`: this binary is both the parent and, under `mpirun`, the ranks
//! (`WGRAD_DIST_CHILD` names the scenario).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use wgrad_data::{DataLoader, Dataset};
use wgrad_dist::{Mpi, Options, SyncBatchNormalization};
use wgrad_nn::layers::{BatchNormalization, Conv2D, Dense, Flatten};
use wgrad_nn::{Act, Layer, Loss, Optimizer, Sequential};
use wgrad_tensor::{Device, Tensor};
use wgrad_testkit::Rng;
use wgrad_train::{FitOptions, Trainer};

const SAMPLES: usize = 96;
const STEPS: usize = 3;

/// Which normalisation follows the convolution.
#[derive(Clone, Copy, PartialEq)]
enum Norm {
    None,
    PerReplica,
    Synced,
}

fn model(dev: &Device, norm: Norm) -> Sequential {
    let mut m = Sequential::new(dev, &[8, 8, 1])
        .seed(7)
        .add(Conv2D::new(4, 3).same().activation(Act::Relu))
        .unwrap();
    match norm {
        Norm::None => {}
        Norm::PerReplica => m = m.add(BatchNormalization::new()).unwrap(),
        Norm::Synced => m = m.add(SyncBatchNormalization::new()).unwrap(),
    }
    m.add(Flatten::new()).unwrap().add(Dense::new(4)).unwrap()
}

fn trainer(model: Sequential) -> Trainer<Sequential> {
    Trainer::new(
        model,
        Optimizer::sgd(0.1).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(3)
}

/// The fixed samples every run trains on.
fn samples() -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(21);
    let x = rng.vec(SAMPLES * 64, 0.0, 1.0);
    let y = (0..SAMPLES).map(|i| (i * 7 % 4) as u32).collect();
    (x, y)
}

/// The batch of `indices` as device tensors.
fn batch(dev: &Device, indices: &[usize]) -> (Tensor, Tensor) {
    let (x, y) = samples();
    let xs: Vec<f32> = indices
        .iter()
        .flat_map(|&i| x[i * 64..(i + 1) * 64].to_vec())
        .collect();
    let ys: Vec<u32> = indices.iter().map(|&i| y[i]).collect();
    (
        Tensor::from_slice(dev, &xs, &[indices.len(), 8, 8, 1]).unwrap(),
        Tensor::from_slice(dev, &ys, &[indices.len()]).unwrap(),
    )
}

/// Every parameter and state tensor, in the model's order.
fn values(m: &dyn Layer) -> Vec<(String, Vec<f32>)> {
    m.named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value().to_vec::<f32>().unwrap()))
        .collect()
}

fn save(path: &Path, v: &[(String, Vec<f32>)]) {
    let text: Vec<String> = v
        .iter()
        .map(|(n, x)| {
            let bits: Vec<String> = x.iter().map(|f| f.to_bits().to_string()).collect();
            format!("{n} {}", bits.join(" "))
        })
        .collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

fn load(path: &Path) -> Vec<(String, Vec<f32>)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut it = l.split(' ');
            let n = it.next().unwrap().to_string();
            (n, it.map(|b| f32::from_bits(b.parse().unwrap())).collect())
        })
        .collect()
}

/// One rank of a scenario.
fn rank_main(scenario: &str, dir: &Path) {
    let mpi = Mpi::init().unwrap();
    let (rank, size) = (mpi.rank(), mpi.size());
    assert_eq!(size, 2);
    let dev = mpi.device().unwrap();
    let norm = match scenario {
        "bn" => Norm::PerReplica,
        "syncbn" => Norm::Synced,
        _ => Norm::None,
    };
    let bn = norm == Norm::PerReplica;
    let mut m = model(&dev, norm);
    // Small buckets, so the model's six tensors take several all-reduces; the overlapped
    // path (all-reduces started during backward) everywhere but the batch-norm run, which
    // takes the one that reduces after backward.
    let options = Options {
        bucket_bytes: 256,
        overlap: Some(!bn),
    };
    let sync = mpi.data_parallel(&mut m, options);
    let sync = sync.unwrap();
    let overlap = sync.overlap_handle();
    let mut t = trainer(m).distributed(Box::new(sync));
    match scenario {
        "lockstep" | "bn" | "syncbn" | "error" | "kill" => {
            // Rank r's shard of the samples in order: positions r, r + 2, r + 4, ...
            let shard: Vec<usize> = (rank..SAMPLES).step_by(size).collect();
            for s in 0..STEPS {
                if s == 1 && rank == 1 && scenario == "error" {
                    mpi.abort(&"a step failed on purpose (the test's error case)");
                }
                if s == 1 && rank == 1 && scenario == "kill" {
                    // SIGKILL: no handler, no MPI_Abort; mpirun must notice.
                    unsafe { libc_kill() };
                }
                let (x, y) = batch(&dev, &shard[16 * s..16 * (s + 1)]);
                t.train_step(&x, &y).unwrap();
            }
            let o = *overlap.lock().unwrap();
            assert_eq!(o.steps, STEPS as u64);
            assert!(o.bytes > 0 && o.backward_and_reduce > 0.0);
            save(&dir.join(format!("rank{rank}.txt")), &values(&t.model));
        }
        "fit" | "fit1" | "resume" => {
            let (x, y) = samples();
            let data = Dataset::new(x, [8, 8, 1], y, 4).unwrap();
            let loader = DataLoader::new(data, 8)
                .shuffle(true)
                .seed(4)
                .shard(rank, size);
            let ckpt = dir.join("run.safetensors");
            let epochs = if scenario == "fit1" { 1 } else { 2 };
            let mut opts = FitOptions::epochs(epochs).verbose(false);
            if scenario != "fit" {
                opts = opts.backup(&ckpt);
            }
            let h = t.fit(&loader, opts).unwrap();
            let losses: Vec<f32> = h.epochs.iter().map(|e| e.loss).collect();
            std::fs::write(dir.join(format!("loss{rank}.txt")), format!("{losses:?}")).unwrap();
            save(
                &dir.join(format!("{scenario}{rank}.txt")),
                &values(&t.model),
            );
        }
        other => panic!("unknown scenario {other}"),
    }
    mpi.barrier();
}

/// Raises SIGKILL on this process.
unsafe fn libc_kill() {
    extern "C" {
        fn getpid() -> i32;
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(getpid(), 9);
}

fn mpirun(scenario: &str, dir: &Path) -> (Output, Duration) {
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let out = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe"])
        .args([
            "-x",
            "WGRAD_DIST_CHILD",
            "-x",
            "WGRAD_DIST_DIR",
            "-x",
            "LP_NUM_THREADS",
        ])
        .arg(exe)
        .env("WGRAD_DIST_CHILD", scenario)
        .env("WGRAD_DIST_DIR", dir)
        // One lavapipe thread per rank: two ranks share the two cores.
        .env("LP_NUM_THREADS", "1")
        // CI runs as root; Open MPI refuses that unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("mpirun: {e}: install Open MPI (openmpi-bin; `cargo xtask test` does)")
        });
    (out, start.elapsed())
}

fn ok(scenario: &str, dir: &Path) {
    let (out, took) = mpirun(scenario, dir);
    assert!(
        out.status.success(),
        "{scenario}: mpirun failed ({}) after {took:?}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("two_ranks: {scenario} in {:.1} s", took.as_secs_f64());
}

/// Largest difference relative to each tensor's largest magnitude.
fn worst(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (f32, String) {
    assert_eq!(a.len(), b.len());
    let mut w = (0f32, String::new());
    for ((n, x), (_, y)) in a.iter().zip(b) {
        let scale = y.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        let d = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
        if d > w.0 {
            w = (d, n.clone());
        }
    }
    w
}

/// One process, batch 32: the two ranks' step-s batches together.
fn single(norm: Norm) -> Vec<(String, Vec<f32>)> {
    let dev = wgrad_testkit::device();
    let mut t = trainer(model(&dev, norm));
    for s in 0..STEPS {
        let idx: Vec<usize> = (32 * s..32 * (s + 1)).collect();
        let (x, y) = batch(&dev, &idx);
        t.train_step(&x, &y).unwrap();
    }
    values(&t.model)
}

fn main() {
    if let Ok(scenario) = std::env::var("WGRAD_DIST_CHILD") {
        let dir = PathBuf::from(std::env::var("WGRAD_DIST_DIR").unwrap());
        rank_main(&scenario, &dir);
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgrad-two-ranks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Lockstep without batch norm: the replicas agree bit for bit, and equal batch 32.
    ok("lockstep", &dir);
    let (r0, r1) = (load(&dir.join("rank0.txt")), load(&dir.join("rank1.txt")));
    assert_eq!(r0, r1, "the replicas diverged");
    let (d, name) = worst(&r0, &single(Norm::None));
    println!("two_ranks: 2 x batch 16 vs 1 x batch 32: worst {d:e} ({name})");
    assert!(d <= 1e-5, "{name}: {d}");

    // Per-replica batch norm: weights identical, statistics each replica's own.
    ok("bn", &dir);
    let (b0, b1) = (load(&dir.join("rank0.txt")), load(&dir.join("rank1.txt")));
    assert!(
        b0.iter().any(|(n, _)| n.contains("moving")),
        "the model keeps moving statistics"
    );
    for ((n, x), (_, y)) in b0.iter().zip(&b1) {
        if n.contains("moving") {
            assert_ne!(x, y, "{n}: each replica keeps its own statistics");
        } else {
            assert_eq!(x, y, "{n}: trained weights stay identical");
        }
    }
    let (d, name) = worst(&b0, &single(Norm::PerReplica));
    println!("two_ranks: per-replica batch norm vs batch 32: {d:e} ({name})");
    assert!(
        d > 1e-4,
        "per-replica statistics cannot equal one batch of 32"
    );

    // Synchronised batch norm: the job's batch moments, so 2 x 16 trains as 1 x 32 with an
    // ordinary batch norm, moving statistics included.
    ok("syncbn", &dir);
    let (s0, s1) = (load(&dir.join("rank0.txt")), load(&dir.join("rank1.txt")));
    assert_eq!(s0, s1, "replicas identical, statistics included");
    let (d, name) = worst(&s0, &single(Norm::PerReplica));
    println!(
        "two_ranks: synchronised batch norm, 2 x batch 16 vs 1 x batch 32: worst {d:e} ({name})"
    );
    assert!(d <= 1e-5, "{name}: {d}");

    // fit: reduced metrics on both ranks; a checkpoint from rank 0; resume continues exactly.
    ok("fit", &dir);
    assert_eq!(
        std::fs::read_to_string(dir.join("loss0.txt")).unwrap(),
        std::fs::read_to_string(dir.join("loss1.txt")).unwrap(),
        "both ranks report the loss over all samples"
    );
    let (f0, f1) = (load(&dir.join("fit0.txt")), load(&dir.join("fit1.txt")));
    assert_eq!(f0, f1);
    ok("fit1", &dir);
    assert!(
        dir.join("run.safetensors").is_file(),
        "rank 0 wrote the checkpoint"
    );
    ok("resume", &dir);
    let (s0, s1) = (
        load(&dir.join("resume0.txt")),
        load(&dir.join("resume1.txt")),
    );
    assert_eq!(s0, s1, "every rank resumed");
    assert_eq!(s0, f0, "1 epoch + resume = 2 epochs");

    // A failing rank ends the job: by MPI_Abort after an error, and when killed outright.
    for scenario in ["error", "kill"] {
        let (out, took) = mpirun(scenario, &dir);
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "two_ranks: {scenario}: job ended in {:.1} s ({})",
            took.as_secs_f64(),
            out.status
        );
        assert!(!out.status.success(), "{scenario}: the job must fail");
        assert!(took < Duration::from_secs(120), "{scenario}: took {took:?}");
        if scenario == "error" {
            assert!(err.contains("rank 1 of 2 failed"), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
