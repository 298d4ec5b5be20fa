//! `summary()`'s training-memory estimate against the buffer pool's measured peak over one
//! real training step of ResNet-34 (batch 2, 224×224×3: what lavapipe runs in seconds).

use wgrad::models::resnet34;
use wgrad::nn::{Loss, Optimizer, Trainer};
use wgrad::Tensor;

#[test]
fn resnet34_training_memory_estimate_is_within_25_percent_of_the_measured_peak() {
    let dev = wgrad_testkit::device();
    let batch = 2;
    let model = resnet34(&dev, [224, 224, 3], 10).unwrap();
    // SGD with momentum keeps one slot per weight.
    let estimate = model.training_memory_estimate(batch, 1);
    let full = model.training_memory_estimate(32, 1);
    println!("estimate at batch 32: {:.1} MiB", full as f64 / 1048576.0);
    let mut trainer = Trainer::new(
        model,
        Optimizer::sgd(0.01).momentum(0.9),
        Loss::sparse_categorical_crossentropy(true),
    );
    let x = Tensor::rand_uniform(&dev, &[batch, 224, 224, 3], 0.0, 1.0, 1).unwrap();
    let y = Tensor::from_slice(&dev, &[3u32, 7], &[batch]).unwrap();
    dev.sync().unwrap();
    dev.reset_peak_memory();
    // The first step also creates the momentum slots; the second is the steady state.
    for _ in 0..2 {
        drop(trainer.train_step(&x, &y).unwrap());
        dev.sync().unwrap();
    }
    let peak = dev.memory_stats().peak;
    let ratio = estimate as f64 / peak as f64;
    println!(
        "estimate {:.1} MiB, measured peak {:.1} MiB, ratio {ratio:.3}",
        estimate as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    assert!((0.75..=1.25).contains(&ratio), "estimate/peak = {ratio:.3}");
}
