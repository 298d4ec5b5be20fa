//! Trains the seeds' ResNet-34 (7×7/2 conv, BN, ReLU, 3×3/2 max-pool, residual units
//! [64]×3 + [128]×4 + [256]×6 + [512]×3, global average pool, Dense) on the default adapter,
//! with SGD (momentum 0.9) under a cosine learning-rate schedule, random crop + flip
//! augmentation, validation after every epoch, and resumable checkpoints.
//!
//! ```text
//! # CIFAR-10 (binary version, extracted cifar-10-batches-bin/) on a GPU, 32×32:
//! cargo run --release --example resnet34 -- --data ~/data/cifar-10-batches-bin --epochs 30
//! # A short run on the software adapter: 3 × 100 steps on Fashion-MNIST scaled to 32×32×3
//! cargo run --release --example resnet34 -- --data fashion-mnist --steps 100 --epochs 3
//! # Interrupt it, then continue from the last finished epoch:
//! cargo run --release --example resnet34 -- --data fashion-mnist --steps 100 --epochs 3 \
//!     --checkpoint target/resnet34.ckpt --resume
//! ```
//!
//! `--data` is `cifar10`, `fashion-mnist` or `mnist` (searched as the data readers do:
//! `$WGRAD_DATA`, Debian's package, the cache), or a directory: CIFAR-10's binary batches,
//! the four IDX files of an MNIST-like set, or an image folder (`DIR/<class>/*.png|jpg`, or
//! `DIR/train/<class>/…` with `DIR/val/<class>/…`; without `val/` a tenth is held out).
//! Grey images are repeated into three channels; every image is scaled to `--image-size`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use wgrad::data::{self, DataLoader, Dataset, Split, Transform};
use wgrad::models::resnet34;
use wgrad::nn::{FitOptions, Loss, Optimizer, Schedule, Trainer};
use wgrad::Device;

#[derive(Parser, Debug)]
#[command(about = "Train ResNet-34 on CIFAR-10, (Fashion-)MNIST or an image folder")]
struct Args {
    /// cifar10 | fashion-mnist | mnist | a directory (see the example's documentation)
    #[arg(long, default_value = "cifar10")]
    data: String,
    /// Side of the square images the network sees (32 for CIFAR-style, 224 for ImageNet-style)
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Steps per epoch (default: one pass over the training set)
    #[arg(long)]
    steps: Option<usize>,
    /// Peak learning rate of the cosine schedule
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Validate on the first N held-out images only (0: all of them)
    #[arg(long, default_value_t = 2000)]
    val_limit: usize,
    /// Full training checkpoint (weights, optimizer state, epoch), written after each epoch
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from --checkpoint (when it exists yet) at the epoch after its last
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Save the final weights (safetensors) here, for `classify` or fine-tuning
    #[arg(long)]
    save: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to write the PNG of the training curves
    #[arg(long, default_value = "target/resnet34-curves.png")]
    plot: PathBuf,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Training and held-out sets named by `--data`.
fn load(spec: &str, size: usize, seed: u64) -> Result<(Dataset, Dataset, String), data::Error> {
    let idx_files = |d: &Path| {
        ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]
            .iter()
            .any(|f| d.join(f).is_file())
    };
    let pair = |f: &dyn Fn(Split) -> Result<Dataset, data::Error>| -> Result<_, data::Error> {
        Ok((f(Split::Train)?, f(Split::Test)?))
    };
    let (train, test, name) = match spec {
        "cifar10" => {
            let (a, b) = pair(&|s| data::cifar10(None, s))?;
            (a, b, "CIFAR-10".to_string())
        }
        "fashion-mnist" => {
            let (a, b) = pair(&|s| data::fashion_mnist(None, s))?;
            (a, b, "Fashion-MNIST".to_string())
        }
        "mnist" => {
            let (a, b) = pair(&|s| data::mnist(None, s))?;
            (a, b, "MNIST".to_string())
        }
        dir => {
            let d = Path::new(dir);
            if d.join("data_batch_1.bin").is_file() {
                let (a, b) = pair(&|s| data::cifar10(Some(d), s))?;
                (a, b, format!("CIFAR-10 ({dir})"))
            } else if idx_files(d) {
                let (a, b) = pair(&|s| data::mnist(Some(d), s))?;
                (a, b, format!("IDX images ({dir})"))
            } else if d.join("train").is_dir() && d.join("val").is_dir() {
                let a = data::image_folder(d.join("train"), [size, size])?;
                let b = data::image_folder(d.join("val"), [size, size])?;
                (a, b, format!("image folder {dir}"))
            } else {
                let all = data::image_folder(d, [size, size])?;
                let (a, b) = all.split(0.9, seed);
                (a, b, format!("image folder {dir} (a tenth held out)"))
            }
        }
    };
    let fit = |d: Dataset| {
        let d = d.gray_to_rgb();
        if d.image_shape()[..2] == [size, size] {
            d
        } else {
            d.resize(size, size)
        }
    };
    Ok((fit(train), fit(test), name))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.image_size < 32 || args.batch_size == 0 || args.epochs == 0 {
        return Err(
            "--image-size must be at least 32 and --batch-size, --epochs at least 1".into(),
        );
    }
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let (train, mut val, name) = load(&args.data, args.image_size, args.seed)?;
    if args.val_limit > 0 && val.len() > args.val_limit {
        val = val.take(args.val_limit);
    }
    let classes = train.num_classes();
    println!(
        "{name}: {} training and {} validation images of {:?}, {classes} classes",
        train.len(),
        val.len(),
        train.image_shape()
    );
    let s = args.image_size;
    let model = resnet34(&dev, [s, s, 3], classes)?;
    println!("{}", model.summary(args.batch_size));

    // Pad-and-crop by an eighth of the side (4 pixels at 32²) and mirror: the CIFAR recipe.
    let train = DataLoader::new(train, args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .drop_last(true)
        .transform(Transform::random_crop(s / 8))
        .transform(Transform::random_horizontal_flip());
    let val = DataLoader::new(val, 100);
    let steps = args
        .steps
        .unwrap_or(train.num_batches())
        .min(train.num_batches());
    let total = (steps * args.epochs) as u64;
    let schedule = Schedule::CosineDecay {
        initial: args.lr,
        decay_steps: total,
        alpha: 0.01,
    };
    let mut trainer = Trainer::new(
        model,
        Optimizer::sgd(schedule).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(args.seed);
    let mut opts = FitOptions::epochs(args.epochs)
        .steps_per_epoch(steps)
        .validation(&val);
    match (&args.checkpoint, args.resume) {
        // fit restores the checkpoint when it exists and rewrites it after every epoch.
        (Some(path), true) => opts = opts.backup(path),
        (Some(path), false) => {
            if path.is_file() {
                return Err(format!(
                    "{} exists: pass --resume to continue from it, or remove it",
                    path.display()
                )
                .into());
            }
            opts = opts.backup(path);
        }
        (None, _) => {}
    }
    println!(
        "{} epochs of {steps} steps (batch {}), SGD momentum 0.9, cosine lr from {}",
        args.epochs, args.batch_size, args.lr
    );

    let start = Instant::now();
    let history = trainer.fit(&train, opts)?;
    let seconds = start.elapsed().as_secs_f64();
    if history.epochs.is_empty() {
        println!(
            "nothing to do: the checkpoint already has {} epochs",
            args.epochs
        );
        return Ok(());
    }
    let rate = history
        .epochs
        .iter()
        .map(|e| e.images_per_second)
        .sum::<f64>()
        / history.epochs.len() as f64;
    let last = history.epochs.last().expect("non-empty");
    println!(
        "validation accuracy {:.2}% (loss {:.4}) after {} steps; {} epoch(s) in {seconds:.1}s, \
         training at {rate:.1} img/s",
        100.0 * last.val_accuracy.unwrap_or(0.0),
        last.val_loss.unwrap_or(f32::NAN),
        trainer.steps(),
        history.epochs.len(),
    );
    history.save_plot(&args.plot, "ResNet-34")?;
    println!("training curves written to {}", args.plot.display());
    if let Some(path) = &args.save {
        wgrad::nn::save_weights(&trainer.model, path)?;
        println!("weights saved to {}", path.display());
    }
    Ok(())
}
