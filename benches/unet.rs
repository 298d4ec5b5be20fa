//! One U-Net training step and one inference batch on the default adapter: the zoo's U-Net as
//! `examples/segmentation` trains it (48×48×1 canvases, 3 levels, 8 filters at the first level,
//! 11 pixel classes), batch 32. Run: `cargo bench --bench unet`; `BENCH_PROFILE=1` adds one
//! step with every kernel timed alone, listing the costliest kernels.
//!
//! FLOPs per image, counted from the layer shapes: 41 M multiply-adds ×2 forward; a training
//! step is about three forwards.

mod common;

use common::{adapter_line, median, timed};
use wgrad::models::unet;
use wgrad::nn::{Loss, Optimizer, Trainer};
use wgrad::{Device, Tensor};

const BATCH: usize = 32;
const SIDE: usize = 48;

fn main() {
    let mut c = common::criterion().sample_size(10);
    let dev = Device::new().expect("an adapter");
    let x = Tensor::rand_uniform(&dev, &[BATCH, SIDE, SIDE, 1], 0.0, 1.0, 1).unwrap();
    let labels: Vec<u32> = (0..BATCH * SIDE * SIDE).map(|i| (i % 11) as u32).collect();
    let y = Tensor::from_slice(&dev, &labels, &[BATCH, SIDE, SIDE]).unwrap();
    let mut trainer = Trainer::new(
        unet(&dev, [SIDE, SIDE, 1], 11, 3, 8).unwrap(),
        Optimizer::adam(1e-3),
        Loss::sparse_categorical_crossentropy(true),
    );
    dev.sync().unwrap();

    let mut group = c.benchmark_group("unet");
    group.bench_function("train_step_b32_48x48", |b| {
        b.iter_custom(|iters| {
            timed("train_step", iters, || {
                drop(trainer.train_step(&x, &y).unwrap());
                dev.sync().unwrap();
            })
        })
    });
    group.bench_function("predict_b32_48x48", |b| {
        b.iter_custom(|iters| {
            timed("predict", iters, || {
                drop(trainer.predict(&x, BATCH).unwrap());
                dev.sync().unwrap();
            })
        })
    });
    group.finish();

    println!("\n{}", adapter_line(&dev));
    println!("U-Net (3 levels, 8 filters), 11 classes, batch {BATCH} of {SIDE}x{SIDE}x1");
    println!("{:<14} {:>10} {:>10}", "what", "s", "img/s");
    for name in ["train_step", "predict"] {
        let t = median(name).unwrap_or(f64::NAN);
        println!("{name:<14} {t:>10.3} {:>10.0}", BATCH as f64 / t);
    }
    common::profile_once(&dev, "U-Net train step", || {
        drop(trainer.train_step(&x, &y).unwrap());
    });
    c.final_summary();
}
