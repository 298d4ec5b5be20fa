//! Communication figures of data-parallel training, run under MPI:
//!
//! ```text
//! cargo build --release -p wgrad-dist --example dist_bench
//! mpirun -np 2 target/release/examples/dist_bench
//! ```
//!
//! 1. All-reduce bandwidth for gradient-sized buffers (1–64 MB of f32): the time of one
//!    blocking MPI all-reduce, as algorithm bandwidth (bytes / time) and bus bandwidth
//!    (2·(p−1)/p · bytes / time, what a ring moves per rank).
//! 2. Overlap: a CNN's training steps with each bucket's all-reduce started during the
//!    backward pass, and with every bucket reduced after it; the communication left exposed
//!    in each case gives the share the overlap hides.

use std::time::Instant;

use wgrad_dist::{Mpi, Options};
use wgrad_nn::layers::{Conv2D, Dense, Flatten, MaxPool2D};
use wgrad_nn::{Act, Loss, Optimizer, Sequential};
use wgrad_tensor::Tensor;
use wgrad_train::Trainer;

fn main() {
    let mpi = Mpi::init().expect("MPI");
    if let Err(e) = run(&mpi) {
        mpi.abort(&e);
    }
}

fn run(mpi: &Mpi) -> wgrad_nn::Result<()> {
    let (rank, p) = (mpi.rank(), mpi.size());
    let say = |s: String| {
        if rank == 0 {
            println!("{s}");
        }
    };
    say(format!("dist_bench: {p} ranks"));
    say("| buffer | all-reduce | algorithm bandwidth | bus bandwidth |".into());
    say("|---|---|---|---|".into());
    for mb in [1usize, 4, 16, 64] {
        let n = (mb << 20) / 4;
        let mut v = vec![rank as f64; n / 2];
        // f64 pairs stand in for f32 pairs: the bytes are what count.
        mpi.all_sum(&mut v);
        mpi.barrier();
        let reps = 10;
        let t = Instant::now();
        for _ in 0..reps {
            mpi.all_sum(&mut v);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        let bytes = (mb << 20) as f64;
        say(format!(
            "| {mb} MB | {:.2} ms | {:.0} MB/s | {:.0} MB/s |",
            s * 1e3,
            bytes / s / 1e6,
            2.0 * (p - 1) as f64 / p as f64 * bytes / s / 1e6
        ));
    }

    let dev = mpi.device()?;
    say(format!("adapter: {}", dev.describe()));
    let batch = 16;
    let x = Tensor::rand_uniform(&dev, &[batch, 32, 32, 3], 0.0, 1.0, 1 + rank as u64)?;
    let labels: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
    let y = Tensor::from_slice(&dev, &labels, &[batch])?;
    let mut exposed = [0.0; 2];
    for (k, overlap) in [true, false].into_iter().enumerate() {
        let mut model = Sequential::new(&dev, &[32, 32, 3])
            .seed(1)
            .add(Conv2D::new(32, 3).same().activation(Act::Relu))?
            .add(Conv2D::new(64, 3).same().activation(Act::Relu))?
            .add(MaxPool2D::new(2))?
            .add(Conv2D::new(128, 3).same().activation(Act::Relu))?
            .add(MaxPool2D::new(2))?
            .add(Flatten::new())?
            .add(Dense::new(256).activation(Act::Relu))?
            .add(Dense::new(10))?;
        let options = Options {
            bucket_bytes: 1 << 20,
            overlap: Some(overlap),
        };
        let sync = mpi.data_parallel(&mut model, options)?;
        let stats = sync.overlap_handle();
        let mut t = Trainer::new(
            model,
            Optimizer::sgd(0.01).momentum(0.9),
            Loss::sparse_categorical_crossentropy(true),
        )
        .distributed(Box::new(sync));
        for _ in 0..2 {
            t.train_step(&x, &y)?;
        }
        dev.sync()?;
        *stats.lock().unwrap() = Default::default();
        let steps = 8;
        let start = Instant::now();
        for _ in 0..steps {
            t.train_step(&x, &y)?;
            dev.sync()?;
        }
        let step = start.elapsed().as_secs_f64() / steps as f64;
        let s = *stats.lock().unwrap();
        let mut sums = [
            s.exposed,
            s.backward_and_reduce,
            s.copies,
            s.bytes as f64,
            s.reduced_during_backward as f64,
        ];
        mpi.all_sum(&mut sums);
        let per = |v: f64| v / (p as f64 * s.steps as f64);
        exposed[k] = per(sums[0]);
        say(format!(
            "overlap {overlap}: step {:.1} ms, backward + reduce {:.1} ms, exposed communication {:.2} ms, device copies {:.2} ms, {:.1} MB per step, {:.0} % of it reduced before backward ended",
            step * 1e3,
            per(sums[1]) * 1e3,
            per(sums[0]) * 1e3,
            per(sums[2]) * 1e3,
            per(sums[3]) / 1e6,
            100.0 * sums[4] / sums[3].max(1.0),
        ));
    }
    say(format!(
        "exposed communication with overlap: {:.0} % of that without",
        100.0 * exposed[0] / exposed[1].max(1e-12)
    ));
    mpi.barrier();
    Ok(())
}
