//! Loads a ResNet-34 saved by `examples/resnet34 --save` and prints the three most likely
//! classes of each image file, as Keras's `decode_predictions` does.
//!
//! ```text
//! cargo run --release --example resnet34 -- --data fashion-mnist --steps 100 --epochs 3 \
//!     --save target/resnet34.safetensors
//! cargo run --release --example classify -- --weights target/resnet34.safetensors \
//!     --labels fashion-mnist examples/data/flower.jpg shirt.png
//! ```
//!
//! `--labels` names the classes: `cifar10`, `fashion-mnist`, `mnist`, or a text file with one
//! name per line (its line count sets the number of classes). Images are scaled to
//! `--image-size` and to [0, 1], as the training example feeds them; inference folds every
//! batch norm into the convolution before it.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use wgrad::data::{cifar, idx};
use wgrad::models::resnet34;
use wgrad::nn::{decode_predictions, load_weights, predict};
use wgrad::{Device, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Top-3 classes of image files under a saved ResNet-34")]
struct Args {
    /// Weights written by `resnet34 --save`
    #[arg(long)]
    weights: PathBuf,
    /// cifar10 | fashion-mnist | mnist | a file with one class name per line
    #[arg(long, default_value = "cifar10")]
    labels: String,
    /// The side the model was trained at
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// How many classes to print per image
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// PNG or JPEG files
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

fn main() -> ExitCode {
    common::exit(run(Args::parse()))
}

fn class_names(spec: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Ok(match spec {
        "cifar10" => owned(&cifar::CIFAR10_CLASSES),
        "fashion-mnist" => owned(idx::FASHION_MNIST.class_names),
        "mnist" => owned(idx::MNIST.class_names),
        file => {
            let names = wgrad::data::download::read_class_names(std::path::Path::new(file))?;
            if names.len() < 2 {
                return Err(format!("{file}: needs at least two class names, one per line").into());
            }
            names
        }
    })
}

/// One image as HWC f32 in [0, 1] at `size`×`size`, RGB.
fn load_image(path: &PathBuf, size: usize) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = img
        .resize_exact(
            size as u32,
            size as u32,
            image::imageops::FilterType::Triangle,
        )
        .to_rgb8();
    Ok(img.as_raw().iter().map(|&b| b as f32 / 255.0).collect())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let names = class_names(&args.labels)?;
    let dev = Device::new()?;
    let s = args.image_size;
    let mut model = resnet34(&dev, [s, s, 3], names.len())?;
    load_weights(&mut model, &args.weights)?;
    let mut pixels = Vec::with_capacity(args.images.len() * s * s * 3);
    for p in &args.images {
        pixels.extend(load_image(p, s)?);
    }
    let x = Tensor::from_slice(&dev, &pixels, &[args.images.len(), s, s, 3])?;
    // The model ends in logits; softmax turns them into the probabilities printed.
    let probs = predict(&mut model, &x, 16)?.softmax(-1)?;
    let top = decode_predictions(&probs, args.top, &names)?;
    for (path, best) in args.images.iter().zip(top) {
        println!("{}:", path.display());
        for (rank, (_, name, p)) in best.iter().enumerate() {
            println!("  {}. {name:<14} {:5.1}%", rank + 1, 100.0 * p);
        }
    }
    Ok(())
}
