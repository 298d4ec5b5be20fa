//! The first training step of a process against the warm ones: how much of it is compiling
//! kernels (WGSL → SPIR-V in wgpu, then the driver's own compiler: LLVM on lavapipe).
//!
//! ```text
//! cargo run --release --example first_step            # ResNet-34, 32x32, batch 32
//! cargo run --release --example first_step -- --image-size 64 --batch-size 16
//! ```

use std::time::Instant;

use clap::Parser;
use wgrad::models::resnet34;
use wgrad::nn::{Loss, Optimizer, Trainer};
use wgrad::{Device, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Time a process's first ResNet-34 training step against the warm ones")]
struct Args {
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Warm steps to time after the first
    #[arg(long, default_value_t = 3)]
    warm: usize,
    /// Time every dispatch of the first step alone and list the costliest (a kernel's first
    /// dispatch includes the driver compiling it)
    #[arg(long)]
    profile: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let started = Instant::now();
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let (s, b) = (args.image_size, args.batch_size);
    let x = Tensor::rand_uniform(&dev, &[b, s, s, 3], 0.0, 1.0, 1)?;
    let labels: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    let y = Tensor::from_slice(&dev, &labels, &[b])?;
    let mut trainer = Trainer::new(
        resnet34(&dev, [s, s, 3], 10)?,
        Optimizer::sgd(0.01).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    );
    dev.sync()?;
    let built = dev.counters();
    let setup = started.elapsed().as_secs_f64();
    dev.set_profiling(args.profile)?;
    let t = Instant::now();
    drop(trainer.train_step(&x, &y)?);
    dev.sync()?;
    let first = t.elapsed().as_secs_f64();
    if args.profile {
        for (k, time) in dev.profile().iter().take(25) {
            println!("{:>8.3} s {:>4} x  {k}", time.seconds, time.dispatches);
        }
        dev.set_profiling(false)?;
    }
    let after_first = dev.counters();
    let mut warm = Vec::new();
    for _ in 0..args.warm.max(1) {
        let t = Instant::now();
        drop(trainer.train_step(&x, &y)?);
        dev.sync()?;
        warm.push(t.elapsed().as_secs_f64());
    }
    warm.sort_by(f64::total_cmp);
    let median = warm[warm.len() / 2];
    let compile = (after_first.compile_micros - built.compile_micros) as f64 / 1e6;
    println!(
        "ResNet-34 {s}x{s}, batch {b}: setup {setup:.2} s ({} pipelines, {:.2} s compiling); first step {first:.2} s ({} pipelines, {compile:.2} s compiling); warm step {median:.2} s (median of {}); first / warm = {:.1}",
        built.pipelines,
        built.compile_micros as f64 / 1e6,
        after_first.pipelines - built.pipelines,
        warm.len(),
        first / median
    );
    Ok(())
}
