//! Semantic segmentation with a U-Net: every pixel of a canvas of MNIST digits is labelled
//! background or the class of the digit it belongs to (11 classes), the masks derived from the
//! digits' own pixels. The zoo's U-Net (encoder, bottleneck, `Conv2DTranspose` up-sampling,
//! `Concatenate` skips, per-pixel logits) trains with per-pixel sparse cross-entropy; the
//! held-out canvases are scored by mean IoU over all 11 classes on the device, and a PNG shows
//! image / true mask / predicted mask side by side.
//!
//! ```text
//! cargo run --release --example segmentation
//! cargo run --release --example segmentation -- --train 8000 --epochs 6
//! ```
//! MNIST comes from `--data DIR`, `$WGRAD_DATA`, or is downloaded into `~/.cache/wgrad`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use wgrad::data::{compose, mnist, CanvasOptions, DataLoader, Split};
use wgrad::models::UNet;
use wgrad::nn::{FitOptions, Loss, MeanIou, Optimizer, Schedule, Trainer};
use wgrad::{Device, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Train a U-Net to label every pixel of MNIST canvases; report mean IoU")]
struct Args {
    /// Side of the square canvases (a multiple of 2^levels)
    #[arg(long, default_value_t = 40)]
    canvas: usize,
    /// Side of a pasted digit in pixels: from --min-side to --max-side
    #[arg(long, default_value_t = 14)]
    min_side: usize,
    #[arg(long, default_value_t = 22)]
    max_side: usize,
    /// Digits per canvas: at least one, at most this many
    #[arg(long, default_value_t = 3)]
    max_digits: usize,
    /// Training canvases
    #[arg(long, default_value_t = 6000)]
    train: usize,
    /// Held-out canvases (built from MNIST's test digits)
    #[arg(long, default_value_t = 500)]
    test: usize,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// U-Net depth (pooling steps)
    #[arg(long, default_value_t = 3)]
    levels: usize,
    /// Channels per level and at the bottleneck, comma-separated (levels + 1 numbers)
    #[arg(long, value_delimiter = ',', default_value = "8,16,48,96")]
    widths: Vec<usize>,
    /// Peak learning rate (Adam, cosine decay)
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Class weight of the background in the loss (each digit class weighs 1): the digits
    /// cover a few percent of the pixels, and unweighted they are learnt last
    #[arg(long, default_value_t = 0.1)]
    background_weight: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory holding MNIST's IDX files
    #[arg(long)]
    data: Option<PathBuf>,
    /// Image / true mask / predicted mask of a few held-out canvases
    #[arg(long, default_value = "target/segmentation.png")]
    out: PathBuf,
}

fn main() -> std::process::ExitCode {
    common::exit(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.max_digits == 0 || args.train == 0 || args.test == 0 || args.batch_size == 0 {
        return Err("--max-digits, --train, --test and --batch-size must be at least 1".into());
    }
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let side = args.canvas;
    let layout = |seed| {
        CanvasOptions::new(
            [side, side],
            (1, args.max_digits),
            (args.min_side, args.max_side),
        )
        .seed(seed)
    };
    let digits = mnist(args.data.as_deref(), Split::Train)?;
    let train = compose(&digits, args.train, &layout(args.seed))?;
    let test_digits = mnist(args.data.as_deref(), Split::Test)?;
    let test = compose(&test_digits, args.test, &layout(args.seed + 1))?;
    let classes = train.classes + 1;
    let objects: usize = train.objects.iter().map(Vec::len).sum();
    println!(
        "{} training canvases ({objects} digits) and {} held-out canvases of {side}×{side}, {classes} pixel classes (0 = background)",
        train.len(),
        test.len()
    );
    let model = UNet::new(args.levels, args.widths[0])
        .widths(&args.widths)
        .build(&dev, [side, side, 1], classes)?;
    println!("{}", model.summary(args.batch_size));
    let loader = DataLoader::new(train.mask_dataset()?, args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .drop_last(true);
    let val = DataLoader::new(test.mask_dataset()?, 50);
    let steps = loader.num_batches() * args.epochs;
    let schedule = Schedule::CosineDecay {
        initial: args.lr,
        decay_steps: steps as u64,
        alpha: 0.05,
    };
    let mut trainer = Trainer::new(
        model,
        Optimizer::adam(schedule),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(args.seed);
    if args.background_weight != 1.0 {
        let mut w = vec![1.0; classes];
        w[0] = args.background_weight;
        trainer = trainer.class_weight(&w);
    }
    let start = Instant::now();
    let history = trainer.fit(&loader, FitOptions::epochs(args.epochs).validation(&val))?;
    let seconds = start.elapsed().as_secs_f64();
    let rate = history.mean_images_per_second();

    // Mean IoU on the held-out canvases, the confusion matrix summed on the device.
    let mut miou = MeanIou::new(&dev, classes)?;
    let n = test.len();
    let x = Tensor::from_slice(&dev, &test.images, &[n, side, side, 1])?;
    let scores = trainer.predict(&x, 50)?;
    let labels = Tensor::from_slice(&dev, &test.masks, &[n, side, side])?;
    miou.update(&scores, &labels)?;
    let per_class = miou.per_class()?;
    let mean = miou.result()?;
    let last = history.epochs.last().ok_or("no epoch ran")?;
    println!(
        "held-out mean IoU {mean:.4} over {} classes (background {:.4}); pixel accuracy {:.2}%; \
         {} epoch(s) in {seconds:.1}s, training at {rate:.1} img/s",
        per_class.iter().flatten().count(),
        per_class[0].unwrap_or(0.0),
        100.0 * last.val_accuracy.unwrap_or(0.0),
        history.epochs.len()
    );
    let ious: Vec<String> = per_class
        .iter()
        .enumerate()
        .skip(1)
        .map(|(c, v)| format!("{}:{}", c - 1, v.map_or("-".into(), |v| format!("{v:.3}"))))
        .collect();
    println!("per-digit IoU {}", ious.join(" "));

    // A picture of the first few held-out canvases: image | true mask | predicted mask.
    let shown = n.min(6);
    let predicted = scores
        .slice(0, 0, shown)?
        .argmax(-1, false)?
        .to_vec::<u32>()?;
    let (w, h) = (3 * side + 4, shown * (side + 2));
    let mut rgb = vec![255u8; w * h * 3];
    for i in 0..shown {
        let img = test.image(i);
        let truth = test.mask(i);
        let pred = &predicted[i * side * side..(i + 1) * side * side];
        for y in 0..side {
            for x in 0..side {
                let p = y * side + x;
                let grey = (img[p].clamp(0.0, 1.0) * 255.0) as u8;
                let cells = [
                    [grey; 3],
                    common::class_colour(truth[p]),
                    common::class_colour(pred[p]),
                ];
                for (k, c) in cells.iter().enumerate() {
                    let (yy, xx) = (i * (side + 2) + y, k * (side + 2) + x);
                    rgb[(yy * w + xx) * 3..][..3].copy_from_slice(c);
                }
            }
        }
    }
    common::save_png(&args.out, rgb, w as u32, h as u32)?;
    println!(
        "image / true mask / predicted mask written to {}",
        args.out.display()
    );
    Ok(())
}
