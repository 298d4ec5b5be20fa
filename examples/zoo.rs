//! Trains any model of the zoo with the same loop as `examples/resnet34` (SGD with momentum
//! under a cosine schedule, crop + flip, validation each epoch, `--checkpoint`/`--resume`).
//!
//! ```text
//! cargo run --release --example zoo -- --model lenet5 --data mnist --augment none --epochs 2
//! cargo run --release --example zoo -- --model se-resnet34 --data cifar10 --epochs 30
//! cargo run --release --example zoo -- --model xception --data DIR --image-size 299
//! ```
//!
//! Smallest image sides: 32 for most (global pooling before the head), 67 for AlexNet
//! (227 is the paper's), 71 for Xception. VGG-16 (224) and AlexNet (227) train at full size on
//! every adapter, lavapipe included: their large dense kernels are processed in pieces of at
//! most one binding. LeNet-5 keeps grey images grey.

mod common;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use common::TrainArgs;
use wgrad::models;
use wgrad::nn::Functional;
use wgrad::Device;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    Lenet5,
    Alexnet,
    Vgg16,
    Googlenet,
    Resnet18,
    Resnet34,
    Resnet50,
    Xception,
    SeResnet34,
}

#[derive(Parser, Debug)]
#[command(about = "Train a model of the zoo on CIFAR-10, (Fashion-)MNIST or an image folder")]
struct Args {
    #[arg(long, value_enum)]
    model: Model,
    #[command(flatten)]
    train: TrainArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::exit(run(args.model, args.train))
}

/// The model, built for `input` and `classes`: every zoo constructor returns the one model
/// type.
fn build(
    dev: &Device,
    which: Model,
    input: [usize; 3],
    classes: usize,
) -> wgrad::nn::Result<Functional> {
    use Model::*;
    match which {
        Lenet5 => models::lenet5(dev, input, classes),
        Alexnet => models::alexnet(dev, input, classes),
        Vgg16 => models::vgg16(dev, input, classes),
        Googlenet => models::googlenet(dev, input, classes),
        Resnet18 => models::resnet18(dev, input, classes),
        Resnet34 => models::resnet34(dev, input, classes),
        Resnet50 => models::resnet50(dev, input, classes),
        Xception => models::xception(dev, input, classes),
        SeResnet34 => models::se_resnet34(dev, input, classes),
    }
}

fn run(which: Model, args: TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = common::Cluster::new(args.distributed)?;
    let dev = cluster.device()?;
    let (rank, ranks) = cluster.rank();
    println!("rank {rank} of {ranks}: adapter {}", dev.describe());
    let channels = if matches!(which, Model::Lenet5) { 1 } else { 3 };
    // LeNet-5 was drawn for one channel: colour images are turned into luma for it.
    let (train, val, _) = common::load(&args.data, args.image_size, channels, args.seed)?;
    let s = args.image_size;
    let model = build(&dev, which, [s, s, channels], train.num_classes())?;
    if cluster.primary() {
        println!("{}", model.summary_with_slots(args.batch_size, 1));
    }
    let title = format!("{which:?}");
    common::train(model, train, val, &args, &title, &cluster)
}
