//! Transfer learning, as the chapter does it: pretrain a convolutional base on one task
//! (Fashion-MNIST, all 60,000 labelled images), save it, then reuse it on a *different* task
//! with few labels (MNIST digits, 1,000 labelled images): phase 1 trains a new head on the
//! frozen base (its batch norms in inference mode, as Keras's frozen layers), phase 2
//! unfreezes everything and fine-tunes with a fresh optimizer at a low learning rate. The same
//! network trained from scratch on the same 1,000 labels for the same number of steps is the
//! baseline; all three are scored on MNIST's 10,000 test images.
//!
//! ```text
//! cargo run --release --example transfer
//! ```
//! The data sets come from `$WGRAD_DATA`, Debian's packages, or are downloaded.

mod common;

use std::path::PathBuf;

use clap::Parser;
use wgrad::data::{fashion_mnist, mnist, DataLoader, Split};
use wgrad::nn::layers::{
    Activation, BatchNormalization, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D,
};
use wgrad::nn::{
    load_weights, save_weights, Act, FitOptions, Functional, Layer, Loss, Optimizer, Trainer,
};
use wgrad::Device;

#[derive(Parser, Debug)]
#[command(
    about = "Pretrain on Fashion-MNIST, transfer to MNIST with few labels, compare with scratch"
)]
struct Args {
    /// Fashion-MNIST images to pretrain on (of 60,000)
    #[arg(long, default_value_t = 20000)]
    pretrain: usize,
    /// Several epochs: after one, the batch norms' moving statistics still lag the weights
    #[arg(long, default_value_t = 3)]
    pretrain_epochs: usize,
    /// Learning rate of the fine-tuning phase (the head's phase and scratch use 1e-3)
    #[arg(long, default_value_t = 3e-4)]
    finetune_lr: f32,
    /// Labelled MNIST images of the new task
    #[arg(long, default_value_t = 1000)]
    labels: usize,
    /// Epochs of each transfer phase (the scratch baseline gets both phases' steps)
    #[arg(long, default_value_t = 10)]
    phase_epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// End the base with a global average instead of flattening its last map
    #[arg(long)]
    avg: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the pretrained base's weights are saved
    #[arg(long, default_value = "target/fashion-base.safetensors")]
    base: PathBuf,
}

fn main() -> std::process::ExitCode {
    common::exit(run(Args::parse()))
}

/// Three conv → batch norm → ReLU blocks, then the 7×7×128 map flattened (`flatten`) or
/// averaged (`avg`, Keras's `pooling="avg"`). A global average keeps which textures occur but
/// not where: enough for clothes, too little for digits from a frozen clothes base.
fn base(dev: &Device, seed: u64, avg: bool) -> wgrad::nn::Result<Functional> {
    let mut g = Functional::new(dev).seed(seed);
    let mut h = g.input(&[28, 28, 1]);
    for (i, f) in [32, 64, 128].into_iter().enumerate() {
        let n = i + 1;
        h = g.apply_named(
            &format!("conv{n}"),
            Conv2D::new(f, 3).same().use_bias(false),
            h,
        )?;
        h = g.apply_named(&format!("bn{n}"), BatchNormalization::new(), h)?;
        h = g.apply_named(&format!("relu{n}"), Activation(Act::Relu), h)?;
        if n < 3 {
            h = g.apply_named(&format!("pool{n}"), MaxPool2D::new(2), h)?;
        }
    }
    let y = if avg {
        g.apply_named("avg_pool", GlobalAvgPool2D::new(), h)?
    } else {
        g.apply_named("flatten", Flatten::new(), h)?
    };
    g.outputs(&[y])?;
    Ok(g)
}

/// `base` with a new 10-class head: Keras's `Model(inputs, Dense(10)(base(inputs)))`.
fn with_head(dev: &Device, base: Functional, head: &str) -> wgrad::nn::Result<Functional> {
    let mut g = Functional::new(dev);
    let x = g.input(&[28, 28, 1]);
    let h = g.apply_named("base", base, x)?;
    let y = g.apply_named(head, Dense::new(10), h)?;
    g.outputs(&[y])?;
    Ok(g)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.labels == 0 || args.batch_size == 0 || args.phase_epochs == 0 {
        return Err("--labels, --batch-size and --phase-epochs must be at least 1".into());
    }
    let dev = Device::new()?;
    println!("adapter: {}", dev.describe());
    let loss = || Loss::sparse_categorical_crossentropy(true);

    // Pretraining on the source task.
    let source = fashion_mnist(None, Split::Train)?.take(args.pretrain);
    println!(
        "pretraining the base on {} Fashion-MNIST images",
        source.len()
    );
    let model = with_head(&dev, base(&dev, args.seed, args.avg)?, "fashion_head")?;
    let mut t = Trainer::new(model, Optimizer::adam(1e-3), loss()).seed(args.seed);
    let loader = DataLoader::new(source, args.batch_size)
        .shuffle(true)
        .seed(args.seed);
    t.fit(&loader, FitOptions::epochs(args.pretrain_epochs))?;
    let fashion_test = DataLoader::new(fashion_mnist(None, Split::Test)?, 500);
    let src = t.evaluate(&fashion_test)?;
    println!(
        "source task: Fashion-MNIST test accuracy {:.2}%",
        100.0 * src.accuracy.unwrap_or(0.0)
    );
    let trained_base = t.model.layer_mut("base").ok_or("no base layer")?;
    save_weights(&*trained_base, &args.base)?;
    println!("base saved to {}", args.base.display());

    // The new task, with few labels.
    let few = mnist(None, Split::Train)?.take(args.labels);
    let test = DataLoader::new(mnist(None, Split::Test)?, 500);
    let train = DataLoader::new(few, args.batch_size)
        .shuffle(true)
        .seed(args.seed + 1);
    let steps = 2 * args.phase_epochs * train.num_batches();
    println!(
        "new task: MNIST with {} labels; {} steps per phase, {steps} in all",
        args.labels,
        steps / 2
    );
    let quiet = |e: usize| FitOptions::epochs(e).verbose(false);

    // Phase 1: the pretrained base frozen, a new head.
    let mut pretrained = base(&dev, args.seed + 7, args.avg)?;
    load_weights(&mut pretrained, &args.base)?;
    pretrained.freeze(false);
    let model = with_head(&dev, pretrained, "mnist_head")?;
    let (trainable, frozen) = model.param_counts();
    println!("phase 1: {trainable} trainable parameters (the head), {frozen} frozen or state");
    let mut t = Trainer::new(model, Optimizer::adam(1e-3), loss()).seed(args.seed);
    t.fit(&train, quiet(args.phase_epochs))?;
    let phase1 = t.evaluate(&test)?.accuracy.unwrap_or(0.0);
    println!(
        "after phase 1 (frozen base): MNIST test accuracy {:.2}%",
        100.0 * phase1
    );

    // Phase 2: everything trainable, a fresh optimizer at a lower rate.
    let mut model = t.model;
    model.layer_mut("base").ok_or("no base layer")?.freeze(true);
    let mut t = Trainer::new(model, Optimizer::adam(args.finetune_lr), loss()).seed(args.seed);
    t.fit(&train, quiet(args.phase_epochs))?;
    let phase2 = t.evaluate(&test)?.accuracy.unwrap_or(0.0);
    println!(
        "after phase 2 (unfrozen, lr {}): MNIST test accuracy {:.2}%",
        args.finetune_lr,
        100.0 * phase2
    );

    // The baseline: the same network from scratch, same labels, same number of steps.
    let model = with_head(&dev, base(&dev, args.seed + 7, args.avg)?, "mnist_head")?;
    let mut t = Trainer::new(model, Optimizer::adam(1e-3), loss()).seed(args.seed);
    t.fit(&train, quiet(2 * args.phase_epochs))?;
    let scratch = t.evaluate(&test)?.accuracy.unwrap_or(0.0);
    println!(
        "from scratch, {steps} steps: MNIST test accuracy {:.2}%",
        100.0 * scratch
    );
    println!(
        "transfer gain over scratch: {:+.2} points (phase 1 {:+.2})",
        100.0 * (phase2 - scratch),
        100.0 * (phase1 - scratch)
    );
    Ok(())
}
