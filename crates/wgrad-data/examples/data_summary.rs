//! Loads a named dataset through the default search order and times one loader epoch.
//!
//! `cargo run -p wgrad-data --release --example data_summary -- fashion-mnist [DIR]`
//! (also `mnist`, `cifar10`, `cifar100`, or `folder ROOT`).

use std::path::PathBuf;
use std::time::Instant;

use wgrad_data::{DataLoader, Dataset, Split, Transform};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("fashion-mnist");
    let dir = args.get(1).map(PathBuf::from);
    let t = Instant::now();
    let loaded: wgrad_data::Result<Dataset> = match name {
        "mnist" => wgrad_data::mnist(dir.as_deref(), Split::Train),
        "fashion-mnist" => wgrad_data::fashion_mnist(dir.as_deref(), Split::Train),
        "cifar10" => wgrad_data::cifar10(dir.as_deref(), Split::Train),
        "cifar100" => wgrad_data::cifar100(
            dir.as_deref(),
            Split::Train,
            wgrad_data::Cifar100Label::Fine,
        ),
        "folder" => match dir {
            Some(d) => wgrad_data::image_folder(d, [32, 32]),
            None => {
                eprintln!("folder needs a ROOT argument");
                std::process::exit(2);
            }
        },
        other => {
            eprintln!("unknown dataset {other}");
            std::process::exit(2);
        }
    };
    let ds = match loaded {
        Ok(ds) => ds,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mean = ds.images().iter().map(|&v| v as f64).sum::<f64>() / ds.images().len() as f64;
    let mut counts = vec![0usize; ds.num_classes()];
    ds.labels().iter().for_each(|&l| counts[l as usize] += 1);
    println!(
        "{name}: {} images {:?}, {} classes, mean pixel {mean:.4}, loaded in {:.2?}",
        ds.len(),
        ds.image_shape(),
        ds.num_classes(),
        t.elapsed()
    );
    println!("per class: {counts:?}");

    let loader = DataLoader::new(ds, 128)
        .shuffle(true)
        .seed(1)
        .drop_last(true)
        .transform(Transform::random_horizontal_flip())
        .transform(Transform::random_crop(2));
    let t = Instant::now();
    let n: usize = loader.epoch(0).map(|b| b.len()).sum();
    println!(
        "one epoch, batch 128, flip + crop(2), prefetch 2: {n} samples in {:.2?}",
        t.elapsed()
    );
}
