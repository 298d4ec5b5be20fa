//! What the training examples share: the data choice (`--data`), the training options, and
//! the loop (SGD with momentum under a cosine schedule, crop + flip augmentation, validation
//! every epoch, resumable checkpoints, a curves PNG).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use wgrad::data::{self, DataLoader, Dataset, Split, Transform};
use wgrad::nn::{FitOptions, GradientSync, Layer, Loss, Optimizer, Schedule, Trainer};
use wgrad::Device;

/// This process alone, or one rank of an MPI job (`--distributed`, under `mpirun`: every rank
/// trains a replica on its own adapter and its share of each epoch; rank 0 prints and writes
/// the checkpoints).
pub struct Cluster {
    #[cfg(feature = "distributed")]
    mpi: Option<wgrad::dist::Mpi>,
}

impl Cluster {
    pub fn new(distributed: bool) -> Result<Cluster, Box<dyn std::error::Error>> {
        #[cfg(feature = "distributed")]
        {
            let mpi = if distributed {
                Some(wgrad::dist::Mpi::init()?)
            } else {
                None
            };
            Ok(Cluster { mpi })
        }
        #[cfg(not(feature = "distributed"))]
        {
            if distributed {
                return Err("--distributed needs MPI support: build with `cargo build --release --features distributed --example <name>` (Open MPI and libclang installed) and launch with `mpirun -np <ranks> target/release/examples/<name> --distributed …`".into());
            }
            Ok(Cluster {})
        }
    }

    /// The adapter of this rank (ranks on one host take its adapters in turn).
    pub fn device(&self) -> Result<Device, Box<dyn std::error::Error>> {
        #[cfg(feature = "distributed")]
        if let Some(mpi) = &self.mpi {
            return Ok(mpi.device()?);
        }
        Ok(Device::new()?)
    }

    /// `(rank, ranks)`; `(0, 1)` alone.
    pub fn rank(&self) -> (usize, usize) {
        #[cfg(feature = "distributed")]
        if let Some(mpi) = &self.mpi {
            return (mpi.rank(), mpi.size());
        }
        (0, 1)
    }

    /// The rank that prints.
    pub fn primary(&self) -> bool {
        self.rank().0 == 0
    }

    /// Broadcasts rank 0's weights into `model` and returns the gradient sync of its trainer
    /// (none alone).
    pub fn attach<M: Layer>(
        &self,
        model: &mut M,
    ) -> Result<Option<Box<dyn GradientSync>>, Box<dyn std::error::Error>> {
        #[cfg(feature = "distributed")]
        if let Some(mpi) = &self.mpi {
            let sync = mpi.data_parallel(model, Default::default())?;
            return Ok(Some(Box::new(sync)));
        }
        let _ = model;
        Ok(None)
    }
}

/// Runs `run` and turns its error into a message and a failing exit status.
pub fn exit(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Training-time augmentation.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Augment {
    /// Random crop after padding by an eighth of the side, and random horizontal flips
    CropFlip,
    /// The random crop only (digits and text must not be mirrored)
    Crop,
    None,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// cifar10 | fashion-mnist | mnist | a directory (CIFAR-10 batches, IDX files, or an
    /// image folder DIR/<class>/*.png|jpg, optionally split into DIR/train and DIR/val)
    #[arg(long, default_value = "cifar10")]
    pub data: String,
    /// Side of the square images the network sees
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Steps per epoch (default: one pass over the training set)
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, value_enum, default_value = "crop-flip")]
    pub augment: Augment,
    /// Peak learning rate of the cosine schedule
    #[arg(long, default_value_t = 0.05)]
    pub lr: f32,
    /// Validate on the first N held-out images only (0: all of them)
    #[arg(long, default_value_t = 2000)]
    pub val_limit: usize,
    /// Full training checkpoint (weights, optimizer state, epoch), written after each epoch
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from --checkpoint (when it exists yet) at the epoch after its last
    #[arg(long, requires = "checkpoint")]
    pub resume: bool,
    /// Save the final weights (safetensors) here, for `classify` or fine-tuning
    #[arg(long)]
    pub save: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to write the PNG of the training curves
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Train as one rank of an MPI job (`mpirun -np N … --distributed`; needs the binary built
    /// with `--features distributed`): each rank trains on its share of every epoch with
    /// --batch-size, so the job's batch is N × --batch-size
    #[arg(long)]
    pub distributed: bool,
}

/// Training and held-out sets named by `--data`, scaled to `size`² with `channels` (3 repeats
/// grey images into RGB, 1 turns colour into luma), and a line saying what was loaded.
pub fn load(
    spec: &str,
    size: usize,
    channels: usize,
    seed: u64,
) -> Result<(Dataset, Dataset, String), data::Error> {
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
        let d = if channels == 3 {
            d.gray_to_rgb()
        } else {
            d.rgb_to_gray()
        };
        if d.image_shape()[..2] == [size, size] {
            d
        } else {
            d.resize(size, size)
        }
    };
    let (train, test) = (fit(train), fit(test));
    println!(
        "{name}: {} training and {} held-out images of {:?}, {} classes",
        train.len(),
        test.len(),
        train.image_shape(),
        train.num_classes()
    );
    Ok((train, test, name))
}

/// Trains `model` on `train` as the options say, validating on `val`; prints the result and
/// writes the curves to `--plot` (default `target/<title>-curves.png`).
pub fn train<M: Layer>(
    mut model: M,
    train: Dataset,
    mut val: Dataset,
    args: &TrainArgs,
    title: &str,
    cluster: &Cluster,
) -> Result<(), Box<dyn std::error::Error>> {
    if args.batch_size == 0 || args.epochs == 0 {
        return Err("--batch-size and --epochs must be at least 1".into());
    }
    if args.val_limit > 0 && val.len() > args.val_limit {
        val = val.take(args.val_limit);
    }
    let side = train.image_shape()[0];
    // Pad-and-crop by an eighth of the side (4 pixels at 32²) and mirror: the CIFAR recipe.
    let (rank, ranks) = cluster.rank();
    let mut train = DataLoader::new(train, args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .drop_last(true)
        .shard(rank, ranks);
    if matches!(args.augment, Augment::CropFlip | Augment::Crop) {
        train = train.transform(Transform::random_crop(side / 8));
    }
    if matches!(args.augment, Augment::CropFlip) {
        train = train.transform(Transform::random_horizontal_flip());
    }
    let val = DataLoader::new(val, 100);
    let steps = args
        .steps
        .unwrap_or(train.num_batches())
        .min(train.num_batches());
    let schedule = Schedule::CosineDecay {
        initial: args.lr,
        decay_steps: (steps * args.epochs) as u64,
        alpha: 0.01,
    };
    let sync = cluster.attach(&mut model)?;
    let mut trainer = Trainer::new(
        model,
        Optimizer::sgd(schedule).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(args.seed);
    if let Some(sync) = sync {
        trainer = trainer.distributed(sync);
    }
    let say = |line: String| {
        if cluster.primary() {
            println!("{line}");
        }
    };
    let mut opts = FitOptions::epochs(args.epochs)
        .steps_per_epoch(steps)
        .validation(&val);
    if let Some(path) = &args.checkpoint {
        if path.is_file() && !args.resume {
            return Err(format!(
                "{} exists: pass --resume to continue from it, or remove it",
                path.display()
            )
            .into());
        }
        // fit restores the checkpoint when it exists and rewrites it after every epoch.
        opts = opts.backup(path);
    }
    say(format!(
        "{} epochs of {steps} steps (batch {}{}), SGD momentum 0.9, cosine lr from {}",
        args.epochs,
        args.batch_size,
        if ranks > 1 {
            format!(" on each of {ranks} ranks")
        } else {
            String::new()
        },
        args.lr
    ));
    let start = Instant::now();
    let history = trainer.fit(&train, opts)?;
    let seconds = start.elapsed().as_secs_f64();
    let Some(last) = history.epochs.last() else {
        say(format!(
            "nothing to do: the checkpoint already has {} epochs",
            args.epochs
        ));
        return Ok(());
    };
    // Each rank's images/s; the job trains `ranks` times as many.
    let rate = history.mean_images_per_second() * ranks as f64;
    say(format!(
        "validation accuracy {:.2}% (loss {:.4}) after {} steps; {} epoch(s) in {seconds:.1}s, \
         training at {rate:.1} img/s",
        100.0 * last.val_accuracy.unwrap_or(0.0),
        last.val_loss.unwrap_or(f32::NAN),
        trainer.steps(),
        history.epochs.len(),
    ));
    if !cluster.primary() {
        return Ok(());
    }
    let plot = args
        .plot
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/{}-curves.png", title.to_lowercase())));
    history.save_plot(&plot, title)?;
    println!("training curves written to {}", plot.display());
    if let Some(path) = &args.save {
        wgrad::nn::save_weights(&trainer.model, path)?;
        println!("weights saved to {}", path.display());
    }
    Ok(())
}

/// Writes an RGB image as a PNG through a temporary file renamed into place, so an
/// interrupted run never leaves half a picture.
pub fn save_png(
    path: &Path,
    rgb: Vec<u8>,
    w: u32,
    h: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or("image buffer of the wrong size")?;
    let tmp = path.with_extension("png.partial");
    img.save_with_format(&tmp, image::ImageFormat::Png)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A distinct colour per class, class 0 (background) black.
pub fn class_colour(class: u32) -> [u8; 3] {
    const P: [[u8; 3]; 12] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 190],
        [0, 128, 128],
    ];
    P[class as usize % P.len()]
}
