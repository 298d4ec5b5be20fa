//! Determinism: two trainings with the same seeds on the same adapter end with bit-identical
//! weights, within one process (two trainers on one device) and across processes (a child on
//! a device of its own). The run covers what could break it: shuffled, augmented batches from
//! the prefetching DataLoader (a worker thread), dropout masks, batch norm in training mode
//! (its reductions and moving averages), convolution and pooling gradients, Adam.
//!
//! `harness = false`: with `WGRAD_DETERMINISM_CHILD` set, this binary is the child, which
//! writes its final weights where the parent reads them.

use std::path::Path;
use std::process::Command;

use wgrad_data::{DataLoader, Dataset, Transform};
use wgrad_nn::layers::{BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPool2D};
use wgrad_nn::{save_weights, Act, Layer, Loss, Optimizer, Sequential};
use wgrad_tensor::Device;
use wgrad_testkit::Rng;
use wgrad_train::{FitOptions, Trainer};

fn train(dev: &Device) -> Trainer<Sequential> {
    let model = Sequential::new(dev, &[12, 12, 2])
        .seed(21)
        .add(Conv2D::new(6, 3).same().activation(Act::Relu))
        .unwrap()
        .add(BatchNormalization::new())
        .unwrap()
        .add(MaxPool2D::new(2))
        .unwrap()
        .add(Dropout::new(0.3))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(5))
        .unwrap();
    let mut t = Trainer::new(
        model,
        Optimizer::adam(1e-2),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(4);
    let mut rng = Rng::new(17);
    let n = 96;
    let images = rng.vec(n * 12 * 12 * 2, 0.0, 1.0);
    let labels = (0..n).map(|i| (i % 5) as u32).collect();
    let data = Dataset::new(images, [12, 12, 2], labels, 5).unwrap();
    let loader = DataLoader::new(data, 16)
        .shuffle(true)
        .seed(9)
        .transform(Transform::random_horizontal_flip())
        .transform(Transform::random_crop(2));
    t.fit(&loader, FitOptions::epochs(3).verbose(false))
        .unwrap();
    t
}

fn bits(m: &dyn Layer) -> Vec<Vec<u32>> {
    m.params()
        .iter()
        .map(|p| {
            p.value()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

fn assert_identical(what: &str, a: &[Vec<u32>], b: &[Vec<u32>]) {
    assert_eq!(a.len(), b.len(), "{what}: parameter count");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let differ = x.iter().zip(y).filter(|(u, v)| u != v).count();
        assert!(
            differ == 0 && x.len() == y.len(),
            "{what}: parameter {i}: {differ} of {} values differ",
            x.len()
        );
    }
}

fn main() {
    if let Ok(path) = std::env::var("WGRAD_DETERMINISM_CHILD") {
        let dev = Device::new().unwrap();
        save_weights(&train(&dev).model, Path::new(&path)).unwrap();
        return;
    }
    let dev = wgrad_testkit::device();
    let a = train(&dev);
    let b = train(&dev);
    let (wa, wb) = (bits(&a.model), bits(&b.model));
    assert_identical("two trainings in one process", &wa, &wb);
    // Moving statistics are state too (they are not trained, but predictions use them).
    assert!(
        a.model.params().iter().any(|p| !p.trainable()),
        "the model has batch-norm moving statistics"
    );

    let dir = std::env::temp_dir().join(format!("wgrad-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("child.safetensors");
    let out = Command::new(std::env::current_exe().unwrap())
        .env("WGRAD_DETERMINISM_CHILD", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = train(&dev);
    wgrad_nn::load_weights(&mut c.model, &path).unwrap();
    assert_identical("a training in another process", &wa, &bits(&c.model));
    let _ = std::fs::remove_dir_all(&dir);
    let n: usize = wa.iter().map(Vec::len).sum();
    println!(
        "determinism: 3 epochs of a conv/BN/dropout/Adam model, {n} values bit-identical in one \
         process and across processes"
    );
}
