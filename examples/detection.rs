//! Object detection with a fully convolutional network and a YOLO-style grid head: canvases
//! of 2–4 MNIST digits at random places and scales, each digit's class and tight box known;
//! the network (3×3 convolutions with batch norm and LeakyReLU, three max-pools: stride 8)
//! ends in a 1×1 convolution giving, per cell, box offsets, objectness and class logits. It
//! trains with YOLO's masked loss; detections are decoded, per-class non-max suppression runs
//! on the device, and COCO AP is computed on held-out canvases. The same weights then run,
//! unchanged, on canvases twice the size (a finer grid of the same cells), as the chapter
//! shows for fully convolutional networks. A PNG shows the predicted boxes.
//!
//! ```text
//! cargo run --release --example detection
//! ```
//! MNIST comes from `--data DIR`, `$WGRAD_DATA`, or is downloaded into `~/.cache/wgrad`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use wgrad::data::{compose, mnist, CanvasOptions, Canvases, DataLoader, Dataset, Split};
use wgrad::nn::coco::{coco_evaluate, CocoMetrics, Detection, GroundTruth};
use wgrad::nn::layers::{Activation, BatchNormalization, Conv2D, MaxPool2D};
use wgrad::nn::{
    predict, Act, Detected, FitOptions, Functional, Layer, Optimizer, Schedule, Trainer, YoloGrid,
};
use wgrad::{Device, NmsOptions, Tensor};

/// Pixels per grid cell: three 2×2 pools.
const STRIDE: usize = 8;

#[derive(Parser, Debug)]
#[command(about = "Train a YOLO-style detector on MNIST canvases; report COCO AP")]
struct Args {
    /// Side of the square training canvases (a multiple of 8)
    #[arg(long, default_value_t = 64)]
    canvas: usize,
    #[arg(long, default_value_t = 2)]
    min_digits: usize,
    #[arg(long, default_value_t = 4)]
    max_digits: usize,
    /// Side of a pasted digit in pixels: from --min-side to --max-side
    #[arg(long, default_value_t = 14)]
    min_side: usize,
    #[arg(long, default_value_t = 24)]
    max_side: usize,
    #[arg(long, default_value_t = 8000)]
    train: usize,
    #[arg(long, default_value_t = 500)]
    test: usize,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (Adam, cosine decay)
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory holding MNIST's IDX files
    #[arg(long)]
    data: Option<PathBuf>,
    /// Predicted boxes on held-out canvases
    #[arg(long, default_value = "target/detection.png")]
    out: PathBuf,
}

fn main() -> std::process::ExitCode {
    common::exit(run(Args::parse()))
}

fn detector(dev: &Device, side: usize, channels: usize) -> wgrad::nn::Result<Functional> {
    let mut g = Functional::new(dev);
    let mut h = g.input(&[side, side, 1]);
    let block = |g: &mut Functional, h, f: usize, name: &str| -> wgrad::nn::Result<_> {
        let h = g.apply_named(name, Conv2D::new(f, 3).same().use_bias(false), h)?;
        let h = g.apply_named(&format!("{name}_bn"), BatchNormalization::new(), h)?;
        g.apply_named(&format!("{name}_leaky"), Activation(Act::LeakyRelu(0.1)), h)
    };
    for (i, f) in [16, 32, 64].into_iter().enumerate() {
        h = block(&mut g, h, f, &format!("c{}", i + 1))?;
        h = g.apply_named(&format!("pool{}", i + 1), MaxPool2D::new(2), h)?;
    }
    h = block(&mut g, h, 64, "c4")?;
    h = block(&mut g, h, 128, "c5")?;
    let y = g.apply_named("grid_head", Conv2D::new(channels, 1), h)?;
    g.outputs(&[y])?;
    Ok(g)
}

fn grid(side: usize, classes: usize) -> YoloGrid {
    YoloGrid::new([side / STRIDE; 2], STRIDE as f32, &[[19.0, 19.0]], classes)
}

fn targets(c: &Canvases, g: &YoloGrid) -> Result<Dataset, Box<dyn std::error::Error>> {
    let mut t = Vec::new();
    for objs in &c.objects {
        let o: Vec<(u32, [f32; 4])> = objs.iter().map(|p| (p.class, p.bbox)).collect();
        t.extend(g.encode(&o)?);
    }
    let [sh, sw] = g.grid;
    // The loss reads the encoded grid only; the label is a placeholder the loader needs.
    let ds = Dataset::new(c.images.clone(), c.shape, vec![0; c.len()], 1)?;
    Ok(ds.with_targets(t, &[sh, sw, 3 * g.channels()])?)
}

/// COCO's boxes are (x, y, width, height).
fn xywh(b: [f32; 4]) -> [f64; 4] {
    let [y0, x0, y1, x1] = b.map(|v| v as f64);
    [x0, y0, x1 - x0, y1 - y0]
}

fn evaluate(c: &Canvases, found: &[Vec<Detected>]) -> CocoMetrics {
    let gts: Vec<GroundTruth> = c
        .objects
        .iter()
        .enumerate()
        .flat_map(|(i, objs)| {
            objs.iter().map(move |p| GroundTruth {
                image: i as u64,
                class: p.class as u64,
                bbox: xywh(p.bbox),
            })
        })
        .collect();
    let dets: Vec<Detection> = found
        .iter()
        .enumerate()
        .flat_map(|(i, ds)| {
            ds.iter().map(move |d| Detection {
                image: i as u64,
                class: d.class as u64,
                bbox: xywh(d.bbox),
                score: d.score as f64,
            })
        })
        .collect();
    coco_evaluate(&gts, &dets, 100)
}

fn detect(
    model: &mut dyn Layer,
    c: &Canvases,
    g: &YoloGrid,
) -> Result<Vec<Vec<Detected>>, Box<dyn std::error::Error>> {
    let dev = model.params()[0].value().device().clone();
    let [h, w, ch] = c.shape;
    let x = Tensor::from_slice(&dev, &c.images, &[c.len(), h, w, ch])?;
    let out = predict(model, &x, 50)?;
    let opts = NmsOptions::new(100)
        .iou_threshold(0.5)
        .score_threshold(0.01);
    Ok(g.detect(&out, opts)?)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !args.canvas.is_multiple_of(STRIDE)
        || args.train == 0
        || args.test == 0
        || args.batch_size == 0
    {
        return Err(
            "--canvas must be a multiple of 8; --train, --test, --batch-size at least 1".into(),
        );
    }
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let side = args.canvas;
    let layout = |side: usize, objects: (usize, usize), seed| {
        CanvasOptions::new([side, side], objects, (args.min_side, args.max_side)).seed(seed)
    };
    let digits = (args.min_digits, args.max_digits);
    let train = compose(
        &mnist(args.data.as_deref(), Split::Train)?,
        args.train,
        &layout(side, digits, args.seed),
    )?;
    let test_digits = mnist(args.data.as_deref(), Split::Test)?;
    let test = compose(
        &test_digits,
        args.test,
        &layout(side, digits, args.seed + 1),
    )?;
    // Twice the side, four times the area: four times the digits.
    let big_side = 2 * side;
    let big = compose(
        &test_digits,
        args.test.min(200),
        &layout(
            big_side,
            (4 * args.min_digits, 4 * args.max_digits),
            args.seed + 2,
        ),
    )?;
    let count = |c: &Canvases| c.objects.iter().map(Vec::len).sum::<usize>();
    println!(
        "{} training canvases ({} digits), {} held-out ({} digits) of {side}×{side}; {} held-out of {big_side}×{big_side} ({} digits)",
        train.len(),
        count(&train),
        test.len(),
        count(&test),
        big.len(),
        count(&big)
    );
    let g = grid(side, train.classes);
    let model = detector(&dev, side, g.channels())?;
    println!("{}", model.summary(args.batch_size));
    let loader = DataLoader::new(targets(&train, &g)?, args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .drop_last(true);
    let val = DataLoader::new(targets(&test, &g)?, 50);
    let schedule = Schedule::CosineDecay {
        initial: args.lr,
        decay_steps: (loader.num_batches() * args.epochs) as u64,
        alpha: 0.05,
    };
    let mut trainer = Trainer::new(model, Optimizer::adam(schedule), g.loss()).seed(args.seed);
    let start = Instant::now();
    let history = trainer.fit(&loader, FitOptions::epochs(args.epochs).validation(&val))?;
    let seconds = start.elapsed().as_secs_f64();
    let rate = history.mean_images_per_second();
    println!(
        "{} epoch(s) in {seconds:.1}s, training at {rate:.1} img/s",
        history.epochs.len()
    );

    let t0 = Instant::now();
    let found = detect(&mut trainer.model, &test, &g)?;
    let secs = t0.elapsed().as_secs_f64();
    let m = evaluate(&test, &found);
    println!(
        "held-out {side}×{side}: AP@.5 {:.4}, AP@[.5:.95] {:.4}, AP@.75 {:.4}, AR@100 {:.4} ({:.1} ms per canvas: network, decoding and NMS)",
        m.ap50,
        m.ap,
        m.ap75,
        m.ar,
        1e3 * secs / test.len() as f64
    );

    // The same weights on larger canvases: only the input size and the grid differ.
    let big_grid = grid(big_side, train.classes);
    let mut wide = detector(&dev, big_side, g.channels())?;
    for (dst, src) in wide.params_mut().into_iter().zip(trainer.model.params()) {
        dst.set(src.value().clone());
    }
    let found_big = detect(&mut wide, &big, &big_grid)?;
    let mb = evaluate(&big, &found_big);
    println!(
        "held-out {big_side}×{big_side}, same weights: AP@.5 {:.4}, AP@[.5:.95] {:.4}, AR@100 {:.4}",
        mb.ap50, mb.ap, mb.ar
    );
    draw(&args.out, &test, &found, &big, &found_big)?;
    println!("predicted boxes written to {}", args.out.display());
    Ok(())
}

/// Four small canvases and one large one in a row, boxes above 0.3 drawn in class colours.
fn draw(
    path: &std::path::Path,
    small: &Canvases,
    found: &[Vec<Detected>],
    big: &Canvases,
    found_big: &[Vec<Detected>],
) -> Result<(), Box<dyn std::error::Error>> {
    let s = small.shape[0];
    let b = big.shape[0];
    let shown = small.len().min(4);
    let (w, h) = (shown * (s + 2) + b, b);
    let mut rgb = vec![255u8; w * h * 3];
    let mut paste = |img: &[f32], side: usize, x0: usize, dets: &[Detected]| {
        for y in 0..side {
            for x in 0..side {
                let v = (img[y * side + x].clamp(0.0, 1.0) * 255.0) as u8;
                rgb[(y * w + x0 + x) * 3..][..3].copy_from_slice(&[v; 3]);
            }
        }
        for d in dets.iter().filter(|d| d.score > 0.3) {
            let c = common::class_colour(d.class + 1);
            let [y0, x0b, y1, x1] = d.bbox.map(|v| (v.round().max(0.0) as usize).min(side - 1));
            for x in x0b..=x1 {
                for y in [y0, y1] {
                    rgb[(y * w + x0 + x) * 3..][..3].copy_from_slice(&c);
                }
            }
            for y in y0..=y1 {
                for x in [x0b, x1] {
                    rgb[(y * w + x0 + x) * 3..][..3].copy_from_slice(&c);
                }
            }
        }
    };
    for (i, dets) in found.iter().take(shown).enumerate() {
        paste(small.image(i), s, i * (s + 2), dets);
    }
    paste(big.image(0), b, shown * (s + 2), &found_big[0]);
    common::save_png(path, rgb, w as u32, h as u32)
}
