//! Fashion-MNIST: the course's first CNN (Conv 64 3×3 → MaxPool 2 → Flatten → Dense 128 →
//! Dense 10), or Géron's deeper CNN with `--model geron`, trained on the default adapter.
//!
//! ```text
//! cargo run --release --example fashion_mnist                  # 2 epochs, prints test accuracy
//! cargo run --release --example fashion_mnist -- --model geron --epochs 1
//! ```
//! The data comes from `--data DIR`, `$WGRAD_DATA`, or Debian's package
//! (`apt-get install dataset-fashion-mnist`, which `cargo xtask demo` runs when it is missing).

mod common;

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use wgrad::data::{fashion_mnist, DataLoader, Split};
use wgrad::models::{fashion_course, geron_fashion};
use wgrad::nn::{FitOptions, Functional, Loss, Optimizer, Trainer};
use wgrad::Device;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    /// Conv 64 3x3 → MaxPool 2 → Flatten → Dense 128 → Dense 10 (~11 MFLOP per training image)
    Course,
    /// Géron's CNN: Conv 64 7x7 → pool → 2×Conv 128 → pool → 2×Conv 256 → pool → Dense 128 →
    /// Dropout → Dense 64 → Dropout → Dense 10 (~0.5 GFLOP per training image)
    Geron,
}

#[derive(Parser, Debug)]
#[command(about = "Train a CNN on Fashion-MNIST and report test accuracy")]
struct Args {
    #[arg(long, value_enum, default_value = "course")]
    model: Model,
    /// Two by default so the README's main job stays under 5 minutes on the slowest 2-core
    /// machine measured (AMD EPYC, lavapipe: about 125 s an epoch); 3 reach 90.2 %
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Train on the first N training images only (quick runs)
    #[arg(long)]
    limit: Option<usize>,
    /// Directory holding the four IDX files
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Keras's `mixed_float16`: f16 activations, f32 arithmetic and weights, loss scaling
    #[arg(long)]
    mixed_precision: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Save the trained weights (safetensors) here
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    /// Where to write the PNG of the training curves
    #[arg(long, default_value = "target/fashion_mnist-curves.png")]
    plot: std::path::PathBuf,
}

const TITLE: &str = "Fashion-MNIST";

fn main() -> ExitCode {
    common::exit(run(Args::parse()))
}

fn build(dev: &Device, which: Model, seed: u64) -> wgrad::nn::Result<Functional> {
    match which {
        Model::Course => fashion_course(dev, 10, seed),
        Model::Geron => geron_fashion(dev, 10, seed),
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.epochs == 0 || args.batch_size == 0 || args.limit == Some(0) {
        return Err("--epochs, --batch-size and --limit must be at least 1".into());
    }
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let mut train = fashion_mnist(args.data.as_deref(), Split::Train)?;
    if let Some(n) = args.limit {
        train = train.take(n);
    }
    let test = fashion_mnist(args.data.as_deref(), Split::Test)?;
    println!(
        "Fashion-MNIST: {} training, {} test images",
        train.len(),
        test.len()
    );
    let model = build(&dev, args.model, args.seed)?;
    println!("{}", model.summary(args.batch_size));
    let train = DataLoader::new(train, args.batch_size)
        .shuffle(true)
        .seed(args.seed);
    let test = DataLoader::new(test, 500);
    // Logits out, so the loss uses the stable log-softmax form.
    let mut trainer = Trainer::new(
        model,
        Optimizer::adam(args.lr),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(args.seed);
    if args.mixed_precision {
        trainer = trainer.mixed_precision();
        println!("mixed precision: f16 activations, f32 weights, dynamic loss scale");
    }
    let start = Instant::now();
    // The test set doubles as validation data, as in the course.
    let history = trainer.fit(&train, FitOptions::epochs(args.epochs).validation(&test))?;
    let train_time = start.elapsed().as_secs_f64();
    let eval = trainer.evaluate(&test)?;
    let rate = history.mean_images_per_second();
    println!(
        "test accuracy: {:.2}% (loss {:.4}) after {} epoch(s); training {:.1}s at {:.0} img/s",
        100.0 * eval.accuracy.unwrap_or(0.0),
        eval.loss,
        history.epochs.len(),
        train_time,
        rate
    );
    if let Some(s) = trainer.loss_scale_state() {
        println!(
            "loss scale {} ({} of {} steps skipped on overflow)",
            s.scale(),
            s.skipped_steps(),
            trainer.steps()
        );
    }
    history.save_plot(&args.plot, TITLE)?;
    println!("training curves written to {}", args.plot.display());
    if let Some(path) = &args.save {
        wgrad::nn::save_weights(&trainer.model, path)?;
        println!("weights saved to {}", path.display());
    }
    Ok(())
}
