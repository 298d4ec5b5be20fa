//! Running out of memory, and losing the device, are errors a training run survives.
//!
//! - A tensor past the device's memory limit is `Error::OutOfMemory` naming the op, the
//!   shape, the bytes and the limit; the pool gives back its cached buffers before refusing;
//!   the device stays usable.
//! - `fit` with a batch too large for the memory returns that error (and says where it
//!   stopped); the checkpoint it wrote before is untouched; a smaller batch then trains in the
//!   same process, resuming from that checkpoint.
//! - A device lost in the middle of a step (a layer destroys it during its forward pass) is
//!   `Error::DeviceLost`, not a panic; a new device, the same model and the checkpoint carry on.
//!
//! The limit is `Device::set_memory_limit`, which every allocation passes through as it does
//! the adapter's own out-of-memory answer (on lavapipe the adapter's memory is the host's, too
//! large to exhaust in a test). Each test opens a device of its own: the limit is per device.

use std::path::PathBuf;

use wgrad_data::{DataLoader, Dataset};
use wgrad_graph::{ops, Var};
use wgrad_nn::layers::{Conv2D, Dense, Flatten, MaxPool2D};
use wgrad_nn::{Act, Ctx, Layer, Loss, Optimizer, Sequential};
use wgrad_tensor::{DType, Device, Error as TensorError, Tensor};
use wgrad_testkit::Rng;
use wgrad_train::{FitOptions, Trainer};

fn device() -> Device {
    Device::new().expect("an adapter (cargo xtask test installs lavapipe)")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-oom-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_tensor_past_the_limit_is_an_error_naming_it_and_the_device_goes_on() {
    let dev = device();
    dev.set_memory_limit(Some(1 << 20));
    assert_eq!(dev.memory_limit(), Some(1 << 20));
    let base = dev.memory_stats().in_use;

    let err = Tensor::zeros(&dev, &[512, 1024], DType::F32).unwrap_err();
    match &err {
        TensorError::OutOfMemory {
            shape,
            bytes,
            limit,
            dtype,
            ..
        } => {
            assert_eq!(shape, &[512, 1024]);
            assert_eq!(*bytes, 2 << 20);
            assert_eq!(*limit, Some(1 << 20));
            assert_eq!(*dtype, DType::F32);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let msg = err.to_string();
    for words in [
        "[512, 1024]",
        "2097152 bytes",
        "memory limit is 1048576",
        "smaller batch",
    ] {
        assert!(msg.contains(words), "{msg:?} lacks {words:?}");
    }

    // Three tensors fill most of the limit; freed, they wait in the pool's cache. A tensor of
    // another size only fits when the pool gives the cache back, which it does.
    let held: Vec<Tensor> = (0..3)
        .map(|_| Tensor::zeros(&dev, &[75_000], DType::F32).unwrap())
        .collect();
    assert!(Tensor::zeros(&dev, &[100_000], DType::F32).is_err());
    drop(held);
    assert!(dev.memory_stats().cached > 0);
    let big = Tensor::full(&dev, &[180_000], 2.5, DType::F32).unwrap();
    assert_eq!(big.to_vec::<f32>().unwrap()[179_999], 2.5);
    assert!(dev.memory_stats().in_use + dev.memory_stats().cached <= 1 << 20);
    drop(big);
    assert_eq!(dev.memory_stats().in_use, base);

    dev.set_memory_limit(None);
    let t = Tensor::full(&dev, &[512, 1024], 1.0, DType::F32).unwrap();
    assert_eq!(
        t.sum(&[], false).unwrap().to_vec::<f32>().unwrap(),
        vec![524_288.0]
    );
}

fn model(dev: &Device) -> Sequential {
    model_with(dev, None)
}

/// The test model, with `inner` (if any) between its convolution and its pooling.
fn model_with(dev: &Device, inner: Option<LoseDevice>) -> Sequential {
    let m = Sequential::new(dev, &[16, 16, 3])
        .seed(3)
        .add(Conv2D::new(16, 3).same().activation(Act::Relu))
        .unwrap();
    let m = match inner {
        Some(layer) => m.add(layer).unwrap(),
        None => m,
    };
    m.add(MaxPool2D::new(2))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(4))
        .unwrap()
}

fn trainer(dev: &Device) -> Trainer<Sequential> {
    trainer_of(model(dev))
}

fn trainer_of(model: Sequential) -> Trainer<Sequential> {
    Trainer::new(
        model,
        Optimizer::adam(1e-3),
        Loss::sparse_categorical_crossentropy(true),
    )
}

fn data() -> Dataset {
    let mut rng = Rng::new(5);
    let n = 256;
    let images = rng.vec(n * 16 * 16 * 3, 0.0, 1.0);
    let labels = (0..n).map(|i| (i % 4) as u32).collect();
    Dataset::new(images, [16, 16, 3], labels, 4).unwrap()
}

/// The pool's peak while training `steps` steps of `batch` from a fresh trainer.
fn peak(dev: &Device, batch: usize) -> u64 {
    let mut t = trainer(dev);
    dev.reset_peak_memory();
    let loader = DataLoader::new(data(), batch);
    t.fit(
        &loader,
        FitOptions::epochs(1).steps_per_epoch(2).verbose(false),
    )
    .unwrap();
    dev.sync().unwrap();
    dev.memory_stats().peak
}

#[test]
fn a_batch_too_large_fails_cleanly_and_a_smaller_one_then_trains() {
    let dev = device();
    let (small, large) = (peak(&dev, 8), peak(&dev, 128));
    assert!(
        large > 3 * small,
        "peaks: batch 8 {small}, batch 128 {large}"
    );
    let dir = scratch("batch");
    let backup = dir.join("run.safetensors");

    let mut t = trainer(&dev);
    let small_loader = DataLoader::new(data(), 8);
    t.fit(
        &small_loader,
        FitOptions::epochs(1)
            .steps_per_epoch(4)
            .backup(&backup)
            .verbose(false),
    )
    .unwrap();
    let saved = std::fs::read(&backup).unwrap();

    // A limit between the two: batch 128 cannot run, batch 8 can.
    let limit = (small + large) / 2;
    dev.set_memory_limit(Some(limit));
    let large_loader = DataLoader::new(data(), 128);
    let err = t
        .fit(
            &large_loader,
            FitOptions::epochs(2).backup(&backup).verbose(true),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            wgrad_nn::Error::Tensor(TensorError::OutOfMemory { limit: Some(l), .. }) if l == limit
        ),
        "expected OutOfMemory, got {err:?}"
    );
    assert!(err.to_string().contains("smaller batch"), "{err}");
    assert_eq!(
        std::fs::read(&backup).unwrap(),
        saved,
        "the checkpoint changed"
    );

    // Same process, same device, same limit: batch 8 resumes from the checkpoint and trains.
    dev.reset_peak_memory();
    let h = t
        .fit(
            &small_loader,
            FitOptions::epochs(2)
                .steps_per_epoch(4)
                .backup(&backup)
                .verbose(false),
        )
        .unwrap();
    assert_eq!(h.epochs.len(), 1, "resumed at epoch 2");
    assert!(h.epochs[0].loss.is_finite());
    assert_eq!(t.epochs_done(), 2);
    assert!(dev.memory_stats().peak <= limit);
    let _ = std::fs::remove_dir_all(dir);
}

/// Passes its input through; on its `at`-th forward pass it destroys the device first, as a
/// driver reset in the middle of a step would.
struct LoseDevice {
    dev: Device,
    calls: usize,
    at: usize,
}

impl Layer for LoseDevice {
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> wgrad_nn::Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: &Var, _: &mut Ctx) -> wgrad_nn::Result<Var> {
        self.calls += 1;
        if self.calls == self.at {
            self.dev.destroy();
        }
        Ok(ops::mul_scalar(x, 1.0)?)
    }
}

#[test]
fn a_device_lost_mid_step_is_an_error_and_a_new_device_resumes_from_the_checkpoint() {
    let dev = device();
    let dir = scratch("lost");
    let backup = dir.join("run.safetensors");
    let model = model_with(
        &dev,
        Some(LoseDevice {
            dev: dev.clone(),
            calls: 0,
            // Epoch 1 is 4 steps; the loss strikes in epoch 2's third step.
            at: 7,
        }),
    );
    let mut t = trainer_of(model);
    let loader = DataLoader::new(data(), 8);
    let opts = || {
        FitOptions::epochs(2)
            .steps_per_epoch(4)
            .backup(&backup)
            .verbose(false)
    };
    let err = t.fit(&loader, opts()).unwrap_err();
    assert!(
        matches!(err, wgrad_nn::Error::Tensor(TensorError::DeviceLost { .. })),
        "expected DeviceLost, got {err:?}"
    );
    assert!(
        err.to_string().contains("load the last checkpoint"),
        "{err}"
    );
    // Everything on the lost device now says so, without a panic.
    assert!(matches!(
        Tensor::zeros(&dev, &[4], DType::F32),
        Err(TensorError::DeviceLost { .. })
    ));

    let saved = std::fs::read(&backup).unwrap();
    let fresh = device();
    let mut again = trainer(&fresh);
    let h = again.fit(&loader, opts()).unwrap();
    assert_eq!(h.epochs.len(), 1, "resumed at epoch 2");
    assert!(h.epochs[0].loss.is_finite());
    assert_ne!(std::fs::read(&backup).unwrap(), saved, "epoch 2 was saved");
    let _ = std::fs::remove_dir_all(dir);
}
