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

mod common;

use std::process::ExitCode;

use clap::Parser;
use common::TrainArgs;
use wgrad::models::resnet34;

#[derive(Parser, Debug)]
#[command(about = "Train ResNet-34 on CIFAR-10, (Fashion-)MNIST or an image folder")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
}

fn main() -> ExitCode {
    common::exit(run(Args::parse().train))
}

fn run(args: TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.image_size < 32 {
        return Err("--image-size must be at least 32".into());
    }
    let cluster = common::Cluster::new(args.distributed)?;
    let dev = cluster.device()?;
    let (rank, ranks) = cluster.rank();
    println!("rank {rank} of {ranks}: adapter {}", dev.describe());
    let (train, val, _) = common::load(&args.data, args.image_size, 3, args.seed)?;
    let s = args.image_size;
    let model = resnet34(&dev, [s, s, 3], train.num_classes())?;
    // SGD with momentum keeps one slot per weight.
    if cluster.primary() {
        println!("{}", model.summary_with_slots(args.batch_size, 1));
    }
    common::train(model, train, val, &args, "ResNet34", &cluster)
}
