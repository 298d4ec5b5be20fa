//! Classification and localization, as the chapter does it: one MNIST digit per canvas, at a
//! random place and scale; a two-head functional model predicts the digit's class (softmax)
//! and its box (4 numbers in [0, 1]: top, left, bottom, right over the canvas side), trained
//! with the chapter's weighted losses, 0.8 × sparse cross-entropy + 0.2 × MSE, from one
//! loader (`fit` feeds the class head the labels and the box head the float targets). The
//! held-out canvases are scored by class accuracy and by mean IoU of predicted and true boxes,
//! computed on the device.
//!
//! ```text
//! cargo run --release --example localization
//! ```
//! MNIST comes from `--data DIR`, `$WGRAD_DATA`, or is downloaded into `~/.cache/wgrad`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use wgrad::data::{compose, mnist, CanvasOptions, Canvases, DataLoader, Dataset, Split};
use wgrad::nn::layers::{Conv2D, Dense, Flatten, MaxPool2D};
use wgrad::nn::{
    predict_multi, Act, BoxIou, FitOptions, Functional, Loss, Optimizer, Schedule, Trainer,
};
use wgrad::{Device, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Train a class + box model on MNIST canvases; report accuracy and mean IoU")]
struct Args {
    /// Side of the square canvases
    #[arg(long, default_value_t = 56)]
    canvas: usize,
    /// Side of the pasted digit in pixels: from --min-side to --max-side
    #[arg(long, default_value_t = 16)]
    min_side: usize,
    #[arg(long, default_value_t = 36)]
    max_side: usize,
    #[arg(long, default_value_t = 12000)]
    train: usize,
    #[arg(long, default_value_t = 1000)]
    test: usize,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (Adam, cosine decay)
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Loss weights of the class and box heads (the chapter's 0.8 and 0.2)
    #[arg(long, default_value_t = 0.8)]
    class_weight: f32,
    #[arg(long, default_value_t = 0.2)]
    box_weight: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory holding MNIST's IDX files
    #[arg(long)]
    data: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    common::exit(run(Args::parse()))
}

/// One digit per canvas: its class is the label, its box (over the side) the float target.
fn dataset(c: &Canvases, side: usize) -> Result<Dataset, wgrad::data::Error> {
    let labels: Vec<u32> = c.objects.iter().map(|o| o[0].class).collect();
    let boxes: Vec<f32> = c
        .objects
        .iter()
        .flat_map(|o| o[0].bbox.map(|v| v / side as f32))
        .collect();
    Dataset::new(c.images.clone(), c.shape, labels, c.classes)?.with_targets(boxes, &[4])
}

fn model(dev: &Device, side: usize, classes: usize) -> wgrad::nn::Result<Functional> {
    let mut g = Functional::new(dev);
    let x = g.input(&[side, side, 1]);
    let mut h = x;
    for (i, f) in [16, 32, 64].into_iter().enumerate() {
        h = g.apply_named(
            &format!("conv{}", i + 1),
            Conv2D::new(f, 3).same().activation(Act::Relu),
            h,
        )?;
        h = g.apply_named(&format!("pool{}", i + 1), MaxPool2D::new(2), h)?;
    }
    h = g.apply_named("conv4", Conv2D::new(64, 3).same().activation(Act::Relu), h)?;
    // Flatten, not a global pool: the box needs to know where the features are.
    let flat = g.apply_named("flatten", Flatten::new(), h)?;
    let fc = g.apply_named("fc", Dense::new(128).activation(Act::Relu), flat)?;
    let class = g.apply_named(
        "class_head",
        Dense::new(classes).activation(Act::Softmax),
        fc,
    )?;
    // The box gets a hidden layer of its own: sharing `fc` let the cross-entropy (0.8 of the
    // loss, gradients tens of times the box MSE's) decide every shared weight, while Adam
    // scales each weight's step by its own gradient history, so a separate branch learns at
    // its own pace under the chapter's 0.8 / 0.2 weights.
    let box_fc = g.apply_named("box_fc", Dense::new(128).activation(Act::Relu), flat)?;
    let boxes = g.apply_named("box_head", Dense::new(4).activation(Act::Sigmoid), box_fc)?;
    g.outputs(&[class, boxes])?;
    Ok(g)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.train == 0 || args.test == 0 || args.batch_size == 0 || args.epochs == 0 {
        return Err("--train, --test, --batch-size and --epochs must be at least 1".into());
    }
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let side = args.canvas;
    let layout =
        |seed| CanvasOptions::new([side, side], (1, 1), (args.min_side, args.max_side)).seed(seed);
    let train = compose(
        &mnist(args.data.as_deref(), Split::Train)?,
        args.train,
        &layout(args.seed),
    )?;
    let test = compose(
        &mnist(args.data.as_deref(), Split::Test)?,
        args.test,
        &layout(args.seed + 1),
    )?;
    println!(
        "{} training and {} held-out canvases of {side}×{side}, one digit of {}–{} px each",
        train.len(),
        test.len(),
        args.min_side,
        args.max_side
    );
    let net = model(&dev, side, train.classes)?;
    println!("{}", net.summary(args.batch_size));
    let loader = DataLoader::new(dataset(&train, side)?, args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .drop_last(true);
    let val = DataLoader::new(dataset(&test, side)?, 100);
    let schedule = Schedule::CosineDecay {
        initial: args.lr,
        decay_steps: (loader.num_batches() * args.epochs) as u64,
        alpha: 0.05,
    };
    let mut trainer = Trainer::multi_output(
        net,
        Optimizer::adam(schedule),
        vec![
            (
                Loss::sparse_categorical_crossentropy(false),
                args.class_weight,
            ),
            (Loss::MeanSquaredError, args.box_weight),
        ],
    )
    .seed(args.seed);
    let start = Instant::now();
    let history = trainer.fit(&loader, FitOptions::epochs(args.epochs).validation(&val))?;
    let seconds = start.elapsed().as_secs_f64();
    let rate = history.mean_images_per_second();

    let held = dataset(&test, side)?;
    let n = held.len();
    let x = Tensor::from_slice(&dev, held.images(), &[n, side, side, 1])?;
    let outs = predict_multi(&mut trainer.model, &x, 100)?;
    let truth = Tensor::from_slice(&dev, held.targets(), &[n, 4])?;
    let mut iou = BoxIou::new(&dev)?;
    let per_box = iou.update(&outs[1], &truth)?.to_vec::<f32>()?;
    let classes = outs[0].argmax(-1, false)?.to_vec::<u32>()?;
    let correct = classes
        .iter()
        .zip(held.labels())
        .filter(|(a, b)| a == b)
        .count();
    let hit50 = per_box.iter().filter(|&&v| v >= 0.5).count();
    println!(
        "held-out class accuracy {:.2}%, mean box IoU {:.4} ({:.1}% of boxes at IoU ≥ 0.5); \
         {} epoch(s) in {seconds:.1}s, training at {rate:.1} img/s",
        100.0 * correct as f64 / n as f64,
        iou.result()?,
        100.0 * hit50 as f64 / n as f64,
        history.epochs.len()
    );
    Ok(())
}
