//! A ResNet-34 training step in f32 and under mixed precision (Keras's `mixed_float16`: f16
//! activations, f32 arithmetic and master weights, dynamic loss scaling): the activations a
//! forward pass keeps for backward, the buffer pool's peak over a whole step (above the
//! weights and optimizer state: the weights' gradients are part of it, and stay f32), and
//! the step's time.
//!
//! ```text
//! cargo run --release --example mixed_precision                 # 32x32, batch 32
//! cargo run --release --example mixed_precision -- --image-size 64 --batch-size 16
//! ```

use std::time::Instant;

use clap::Parser;
use wgrad::graph::Var;
use wgrad::models::resnet34;
use wgrad::nn::{Ctx, Layer, Loss, Optimizer, Trainer};
use wgrad::{DType, Device, Tensor};

#[derive(Parser, Debug)]
#[command(about = "ResNet-34 step memory and time, f32 against mixed precision")]
struct Args {
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Timed steps per precision, after two untimed ones (kernels compile, slots appear)
    #[arg(long, default_value_t = 3)]
    steps: usize,
}

struct Run {
    /// Bytes the recorded graph holds after the forward pass.
    tape: u64,
    peak: u64,
    step: f64,
}

fn measure(dev: &Device, args: &Args, mixed: bool) -> Result<Run, Box<dyn std::error::Error>> {
    let (s, b) = (args.image_size, args.batch_size);
    let x = Tensor::rand_uniform(dev, &[b, s, s, 3], 0.0, 1.0, 1)?;
    let labels: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    let y = Tensor::from_slice(dev, &labels, &[b])?;
    let mut t = Trainer::new(
        resnet34(dev, [s, s, 3], 10)?,
        Optimizer::sgd(0.01).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    );
    if mixed {
        t = t.mixed_precision();
    }
    // Two steps, and under mixed precision until steps apply: the loss scale starts at 2^15
    // and halves on every step whose gradients overflow f16 (those steps skip the update).
    let mut warmup = 0;
    loop {
        let skipped = t.loss_scale_state().map(|s| s.skipped_steps());
        drop(t.train_step(&x, &y)?);
        warmup += 1;
        let now = t.loss_scale_state().map(|s| s.skipped_steps());
        if warmup >= 2 && now == skipped {
            break;
        }
        if warmup > 40 {
            return Err("the loss scale never settled".into());
        }
    }
    if let Some(s) = t.loss_scale_state() {
        println!(
            "mixed: {} of the first {warmup} steps overflowed; loss scale now {}",
            s.skipped_steps(),
            s.scale()
        );
    }
    dev.sync()?;
    // What stays between steps: weights, momentum slots, the batch.
    let resident = dev.memory_stats().in_use;
    let stored = if mixed {
        x.to_dtype(DType::F16)?
    } else {
        x.clone()
    };
    let tape = {
        let out = t.model.forward(&Var::new(stored), &mut Ctx::new(true, 1))?;
        dev.sync()?;
        let held = dev.memory_stats().in_use - resident;
        drop(out);
        held
    };
    dev.sync()?;
    dev.reset_peak_memory();
    let mut times = Vec::new();
    for _ in 0..args.steps.max(1) {
        let start = Instant::now();
        drop(t.train_step(&x, &y)?);
        dev.sync()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(Run {
        tape,
        peak: dev.memory_stats().peak - resident,
        step: times[times.len() / 2],
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let f32_run = measure(&dev, &args, false)?;
    let mixed = measure(&dev, &args, true)?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "ResNet-34 {0}x{0}, batch {1}: activations kept for backward f32 {8:.1} MiB, mixed {9:.1} MiB ({10:.2}x); step peak above weights and slots f32 {2:.1} MiB, mixed {3:.1} MiB ({4:.2}x); step f32 {5:.3} s, mixed {6:.3} s ({7:.2}x)",
        args.image_size,
        args.batch_size,
        mib(f32_run.peak),
        mib(mixed.peak),
        mixed.peak as f64 / f32_run.peak as f64,
        f32_run.step,
        mixed.step,
        mixed.step / f32_run.step,
        mib(f32_run.tape),
        mib(mixed.tape),
        mixed.tape as f64 / f32_run.tape as f64,
    );
    Ok(())
}
