//! Mixed precision (Keras's `mixed_float16` with its `LossScaleOptimizer`): a model trains to
//! the f32 run's result, a step keeps about half the activation memory, master weights and
//! optimizer slots stay f32, and the dynamic loss scale halves on overflow (skipping the
//! step) and doubles after its growth steps.

use wgrad_data::{DataLoader, Dataset};
use wgrad_nn::layers::{BatchNormalization, Conv2D, Dense, Flatten, MaxPool2D};
use wgrad_nn::{Act, Ctx, Layer, Loss, LossScale, Optimizer, Sequential};
use wgrad_tensor::{DType, Device, Tensor};
use wgrad_testkit::{device, Rng};
use wgrad_train::{FitOptions, Trainer};

/// `blocks` conv → batch norm → ReLU blocks at full resolution, then a small head.
fn deep(dev: &Device, side: usize, filters: usize, blocks: usize) -> Sequential {
    let mut m = Sequential::new(dev, &[side, side, 1]).seed(6);
    for _ in 0..blocks {
        m = m
            .add(Conv2D::new(filters, 3).same().use_bias(false))
            .unwrap()
            .add(BatchNormalization::new())
            .unwrap()
            .add(wgrad_nn::layers::Activation(Act::Relu))
            .unwrap();
    }
    m.add(MaxPool2D::new(4))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(4))
        .unwrap()
}

fn model(dev: &Device, side: usize, filters: usize) -> Sequential {
    Sequential::new(dev, &[side, side, 1])
        .seed(5)
        .add(Conv2D::new(filters, 3).same().use_bias(false))
        .unwrap()
        .add(BatchNormalization::new())
        .unwrap()
        .add(wgrad_nn::layers::Activation(Act::Relu))
        .unwrap()
        .add(MaxPool2D::new(2))
        .unwrap()
        .add(Conv2D::new(filters, 3).same().activation(Act::Relu))
        .unwrap()
        .add(MaxPool2D::new(2))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(4))
        .unwrap()
}

/// Images whose class is the quadrant holding a bright square: learnable in a few epochs.
fn quadrants(n: usize, side: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = rng.vec(n * side * side, 0.0, 0.3);
    let labels: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    let h = side / 2;
    for (i, &l) in labels.iter().enumerate() {
        let (r0, c0) = ((l as usize / 2) * h, (l as usize % 2) * h);
        for r in r0 + 1..r0 + h - 1 {
            for c in c0 + 1..c0 + h - 1 {
                images[i * side * side + r * side + c] += 0.6;
            }
        }
    }
    Dataset::new(images, [side, side, 1], labels, 4).unwrap()
}

fn trainer(dev: &Device, mixed: bool) -> Trainer<Sequential> {
    let t = Trainer::new(
        model(dev, 16, 8),
        Optimizer::adam(3e-3),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(3);
    if mixed {
        t.mixed_precision()
    } else {
        t
    }
}

#[test]
fn mixed_precision_trains_as_f32_does() {
    let dev = device();
    let train = DataLoader::new(quadrants(256, 16, 1), 32)
        .shuffle(true)
        .seed(2);
    let test = DataLoader::new(quadrants(128, 16, 7), 64);
    let mut results = Vec::new();
    for mixed in [false, true] {
        let mut t = trainer(&dev, mixed);
        t.fit(&train, FitOptions::epochs(4).verbose(false)).unwrap();
        let log = t.evaluate(&test).unwrap();
        // Master weights and optimizer state stay f32.
        for p in t.model.params() {
            assert_eq!(p.value().dtype(), DType::F32, "{}", p.name());
        }
        let pred = t.predict(
            &Tensor::zeros(&dev, &[2, 16, 16, 1], DType::F32).unwrap(),
            2,
        );
        assert_eq!(pred.unwrap().dtype(), DType::F32, "predict returns f32");
        if mixed {
            let ls = t.loss_scale_state().expect("a loss scale");
            assert_eq!(ls.skipped_steps(), 0, "no overflow at 2^15 on this model");
            assert_eq!(ls.scale(), 32768.0);
        }
        results.push((log.loss, log.accuracy.unwrap()));
    }
    let ((l32, a32), (l16, a16)) = (results[0], results[1]);
    eprintln!("f32: loss {l32:.4} accuracy {a32:.4}; mixed: loss {l16:.4} accuracy {a16:.4}");
    assert!(a32 > 0.9, "the f32 run learns the task ({a32})");
    assert!((a16 - a32).abs() <= 0.02, "accuracy {a16} vs f32 {a32}");
    assert!(
        (l16 - l32).abs() <= 0.1 * l32.max(0.05),
        "loss {l16} vs f32 {l32}"
    );
}

#[test]
fn a_mixed_step_keeps_half_the_activation_memory() {
    let dev = device();
    let data = quadrants(32, 32, 4);
    let x = Tensor::from_slice(&dev, data.images(), &[32, 32, 32, 1]).unwrap();
    let y = Tensor::from_slice(&dev, data.labels(), &[32]).unwrap();
    let mut peaks = Vec::new();
    for mixed in [false, true] {
        let mut t = Trainer::new(
            deep(&dev, 32, 16, 8),
            Optimizer::sgd(0.01),
            Loss::sparse_categorical_crossentropy(true),
        );
        if mixed {
            t = t.mixed_precision();
        }
        // The first step creates the optimizer's state; the second is the steady one.
        t.train_step(&x, &y).unwrap();
        dev.sync().unwrap();
        let base = dev.memory_stats().in_use;
        // What the recorded graph keeps for backward: every activation the rules saved.
        let input = if mixed {
            x.to_dtype(DType::F16).unwrap()
        } else {
            x.clone()
        };
        let out = t
            .model
            .forward(&wgrad_graph::Var::new(input), &mut Ctx::new(true, 1))
            .unwrap();
        dev.sync().unwrap();
        let tape = dev.memory_stats().in_use - base;
        drop(out);
        dev.sync().unwrap();
        dev.reset_peak_memory();
        t.train_step(&x, &y).unwrap();
        dev.sync().unwrap();
        peaks.push((tape, dev.memory_stats().peak - base));
    }
    let tape = peaks[1].0 as f64 / peaks[0].0 as f64;
    let step = peaks[1].1 as f64 / peaks[0].1 as f64;
    eprintln!(
        "activations kept for backward: f32 {} KiB, mixed {} KiB ({tape:.2}); step peak above the weights: f32 {} KiB, mixed {} KiB ({step:.2})",
        peaks[0].0 / 1024,
        peaks[1].0 / 1024,
        peaks[0].1 / 1024,
        peaks[1].1 / 1024
    );
    assert!(
        tape <= 0.52,
        "mixed activations are {tape:.2} of the f32 ones"
    );
    // The step's peak also holds the op being run, whose f32 working copies are transient.
    assert!(step < 0.7, "mixed step peak is {step:.2} of the f32 one");
}

#[test]
fn the_loss_scale_halves_on_overflow_and_grows_after_its_steps() {
    let dev = device();
    let data = quadrants(32, 16, 5);
    let x = Tensor::from_slice(&dev, data.images(), &[32, 16, 16, 1]).unwrap();
    let y = Tensor::from_slice(&dev, data.labels(), &[32]).unwrap();
    // 2^40 overflows every f16 gradient; the scale must come down until steps apply.
    let mut t = Trainer::new(
        model(&dev, 16, 8),
        Optimizer::sgd(0.05),
        Loss::sparse_categorical_crossentropy(true),
    )
    .loss_scale(LossScale::new(2f32.powi(40), 3).unwrap());
    // Trainable weights only: batch norm's moving statistics move in the forward pass, as
    // Keras's do, whether or not the step is applied.
    let weights = |t: &Trainer<Sequential>| -> Vec<Vec<f32>> {
        t.model
            .params()
            .iter()
            .filter(|p| p.trainable())
            .map(|p| p.value().to_vec::<f32>().unwrap())
            .collect()
    };
    // The host's model of Keras's rule, fed with what each step did.
    let (mut scale, mut good) = (2f32.powi(40), 0);
    let mut applied = 0;
    for step in 0..40 {
        let before = weights(&t);
        let skipped = t.loss_scale_state().unwrap().skipped_steps();
        t.train_step(&x, &y).unwrap();
        let ls = t.loss_scale_state().unwrap();
        let overflowed = ls.skipped_steps() > skipped;
        let after = weights(&t);
        if overflowed {
            assert!(
                before == after,
                "step {step} overflowed and must not move a weight"
            );
            scale /= 2.0;
            good = 0;
        } else {
            assert!(before != after, "step {step} applied");
            applied += 1;
            good += 1;
            if good == 3 {
                scale *= 2.0;
                good = 0;
            }
        }
        assert_eq!(ls.scale(), scale, "step {step}");
    }
    let ls = t.loss_scale_state().unwrap();
    eprintln!(
        "{} of 40 steps skipped, scale now 2^{}",
        ls.skipped_steps(),
        ls.scale().log2()
    );
    assert!(ls.skipped_steps() >= 10, "2^40 must overflow for a while");
    assert!(applied >= 10, "then steps apply");
    // Growing every 3 steps keeps hitting overflow again: more skips after the first run.
    assert!(ls.scale() < 2f32.powi(40));
    assert!(LossScale::new(0.0, 3).is_err() && LossScale::new(2.0, 0).is_err());
    // The scale is optimizer state: a checkpoint carries it to the resumed run.
    let dir = std::env::temp_dir().join(format!("wgrad-mixed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt.safetensors");
    t.save_checkpoint(&path).unwrap();
    let mut resumed = Trainer::new(
        model(&dev, 16, 8),
        Optimizer::sgd(0.05),
        Loss::sparse_categorical_crossentropy(true),
    )
    .mixed_precision();
    resumed.load_checkpoint(&path).unwrap();
    assert_eq!(resumed.loss_scale_state(), t.loss_scale_state());
    std::fs::remove_dir_all(&dir).unwrap();
}
