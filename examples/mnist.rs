//! MNIST with Chollet's first convnet (Deep Learning with Python, 1st ed., 5.1): Conv 32 →
//! MaxPool → Conv 64 → MaxPool → Conv 64 → Flatten → Dense 64 → Dense 10 softmax (93,322
//! parameters), RMSprop, batch 64, 5 epochs. The book's figure is 99.27 % test accuracy.
//!
//! ```text
//! cargo run --release --example mnist -- --data ../shared/data/mnist
//! ```
//! The data comes from `--data DIR`, `$WGRAD_DATA`, or `$WGRAD_DATA/mnist` (the four IDX
//! files, gzipped or not).

mod common;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use wgrad::data::{mnist, DataLoader, Split};
use wgrad::models::chollet_mnist;
use wgrad::nn::{Control, EpochLog, FitOptions, Loss, Optimizer, Trainer};
use wgrad::Device;

#[derive(Parser, Debug)]
#[command(about = "Train Chollet's MNIST convnet and report test accuracy")]
struct Args {
    #[arg(long, default_value_t = 5)]
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
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop once training accuracy passes this fraction (the seeds' callback)
    #[arg(long)]
    stop_at: Option<f32>,
    /// Save the trained weights (safetensors) here
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    /// Where to write the PNG of the training curves
    #[arg(long, default_value = "target/mnist-curves.png")]
    plot: std::path::PathBuf,
}

const TITLE: &str = "MNIST, Chollet's convnet";

fn main() -> ExitCode {
    common::exit(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let mut train = mnist(args.data.as_deref(), Split::Train)?;
    if let Some(n) = args.limit {
        train = train.take(n);
    }
    let test = mnist(args.data.as_deref(), Split::Test)?;
    println!(
        "MNIST: {} training, {} test images",
        train.len(),
        test.len()
    );
    let model = chollet_mnist(&dev, 10, true, args.seed)?;
    println!("{}", model.summary(args.batch_size));
    let train = DataLoader::new(train, args.batch_size)
        .shuffle(true)
        .seed(args.seed);
    let test = DataLoader::new(test, 500);
    // Softmax output and the loss on probabilities, as the book writes it.
    let mut trainer = Trainer::new(
        model,
        Optimizer::rmsprop(args.lr),
        Loss::sparse_categorical_crossentropy(false),
    )
    .seed(args.seed);
    let threshold = args.stop_at;
    let mut stop = move |log: &EpochLog| match (threshold, log.accuracy) {
        (Some(t), Some(a)) if a >= t => {
            println!("reached {:.1}% training accuracy, stopping", 100.0 * a);
            Control::Stop
        }
        _ => Control::Continue,
    };
    let start = Instant::now();
    let history = trainer.fit(
        &train,
        FitOptions::epochs(args.epochs)
            .validation(&test)
            .callback(&mut stop),
    )?;
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
    history.save_plot(&args.plot, TITLE)?;
    println!("training curves written to {}", args.plot.display());
    if let Some(path) = &args.save {
        wgrad::nn::save_weights(&trainer.model, path)?;
        println!("weights saved to {}", path.display());
    }
    Ok(())
}
