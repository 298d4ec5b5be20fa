//! One ResNet-34 training step and one inference batch on the default adapter: the seeds'
//! ResNet-34 with a 10-class head on 32×32×3 images, batch 32 (CIFAR-sized). Run:
//! `cargo bench --bench resnet`.
//!
//! A training step is forward + loss + backward + SGD-momentum update + `sync()` on a fixed
//! batch already on the device; inference is `predict` (no graph, batch norm in inference
//! mode) on the same batch. `BENCH_PROFILE=1` adds one step with every kernel timed alone
//! (see `Device::set_profiling`), listing the costliest kernels. Issue 5's yardstick: Burn 0.22's wgpu backend takes 3.97 s for
//! this training step on the same lavapipe.

mod common;

use common::{adapter_line, median, timed};
use wgrad::models::resnet34;
use wgrad::nn::{Loss, Optimizer, Trainer};
use wgrad::{Device, Tensor};

const BATCH: usize = 32;

fn main() {
    let mut c = common::criterion().sample_size(10);
    let dev = Device::new().expect("an adapter");
    let x = Tensor::rand_uniform(&dev, &[BATCH, 32, 32, 3], 0.0, 1.0, 1).unwrap();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 10).collect();
    let y = Tensor::from_slice(&dev, &labels, &[BATCH]).unwrap();
    let mut trainer = Trainer::new(
        resnet34(&dev, [32, 32, 3], 10).unwrap(),
        Optimizer::sgd(0.01).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    );
    dev.sync().unwrap();

    let mut group = c.benchmark_group("resnet34");
    group.bench_function("train_step_b32_32x32", |b| {
        b.iter_custom(|iters| {
            timed("train_step", iters, || {
                drop(trainer.train_step(&x, &y).unwrap());
                dev.sync().unwrap();
            })
        })
    });
    group.bench_function("predict_b32_32x32", |b| {
        b.iter_custom(|iters| {
            timed("predict", iters, || {
                drop(trainer.predict(&x, BATCH).unwrap());
                dev.sync().unwrap();
            })
        })
    });
    group.finish();

    println!("\n{}", adapter_line(&dev));
    println!("ResNet-34, 10 classes, batch {BATCH} of 32x32x3 (median of samples)");
    println!("{:<14} {:>10} {:>10}", "what", "s", "img/s");
    for name in ["train_step", "predict"] {
        let t = median(name).unwrap_or(f64::NAN);
        println!("{name:<14} {t:>10.3} {:>10.0}", BATCH as f64 / t);
    }
    common::profile_once(&dev, "ResNet-34 train step", || {
        drop(trainer.train_step(&x, &y).unwrap());
    });
    c.final_summary();
}
