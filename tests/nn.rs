//! wgrad-nn: every layer's and loss's gradient against finite differences, summary parameter
//! counts against Keras's, training that learns, a step that never waits, and safetensors
//! weights and checkpoints (round trips, typed errors, resuming to the same result).

use wgrad::data::{DataLoader, Dataset};
use wgrad::graph::{self, ops, Var};
use wgrad::nn::layers::*;
use wgrad::nn::{
    load_weights, save_weights, Act, Ctx, FitOptions, Layer, Loss, Optimizer, Schedule, Sequential,
    Trainer,
};
use wgrad::{DType, Device, Padding, Tensor};
use wgrad_testkit::{check_gradient, close_scalar, Fd, Rng};

/// d(Σ layer(x)·R)/d(x and every trainable weight) against central differences, in
/// training mode with a fixed step seed (so dropout draws the same mask every call).
fn check_layer(name: &str, mut layer: impl Layer, input: &[usize], tol: f64) {
    let dev = wgrad_testkit::device();
    let out_shape = layer.build(&dev, &input[1..], 7).unwrap();
    let mut rng = Rng::new(3);
    let x0 = away_from_zero(&mut rng, input.iter().product());
    let y_numel = input[0] * out_shape.iter().product::<usize>();
    let r = rng.vec(y_numel, -1.0, 1.0);
    let rv = Tensor::from_slice(&dev, &r, &[y_numel]).unwrap();
    let run = |layer: &mut dyn Layer, x: &Var| -> Var {
        let y = layer.forward(x, &mut Ctx::new(true, 5)).unwrap();
        assert_eq!(
            &y.shape()[1..],
            out_shape.as_slice(),
            "{name}: output shape"
        );
        let flat = ops::reshape(&y, &[y_numel]).unwrap();
        ops::sum(&ops::mul(&flat, &Var::new(rv.clone())).unwrap(), &[]).unwrap()
    };
    let x = Var::param(Tensor::from_slice(&dev, &x0, input).unwrap());
    run(&mut layer, &x).backward().unwrap();
    // Small enough that few ReLU pre-activations cross zero, large enough for f32 sums.
    let eps = 2e-3f32;
    let value = |layer: &mut dyn Layer, xs: &[f32]| -> f64 {
        let xv = Var::new(Tensor::from_slice(&dev, xs, input).unwrap());
        graph::no_grad(|| run(layer, &xv))
            .value()
            .to_vec::<f32>()
            .unwrap()[0] as f64
    };
    let fd = Fd::new(eps).tol(tol, tol);
    let gx = x.grad().expect("input gradient").to_vec::<f32>().unwrap();
    check_gradient(&format!("{name}: x"), &x0, &gx, fd.at_most(10), |p| {
        value(&mut layer, p)
    });
    // Each trainable weight's gradient.
    let grads: Vec<Option<Vec<f32>>> = layer
        .params()
        .iter()
        .map(|p| {
            p.trainable()
                .then(|| p.grad().expect("weight gradient").to_vec::<f32>().unwrap())
        })
        .collect();
    for (k, g) in grads.iter().enumerate() {
        let Some(g) = g else { continue };
        let w0 = layer.params()[k].value().to_vec::<f32>().unwrap();
        let shape = layer.params()[k].shape().to_vec();
        let ctx = format!("{name}: {}", layer.params()[k].name());
        check_gradient(&ctx, &w0, g, fd.at_most(8), |w| {
            layer.params_mut()[k].set(Tensor::from_slice(&dev, w, &shape).unwrap());
            value(&mut layer, &x0)
        });
        layer.params_mut()[k].set(Tensor::from_slice(&dev, &w0, &shape).unwrap());
    }
}

/// Values in ±[0.1, 1): away from the kinks of ReLU and max pooling's ties.
fn away_from_zero(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.uniform(0.1, 1.0);
            if rng.next_u64().is_multiple_of(2) {
                v
            } else {
                -v
            }
        })
        .collect()
}

#[test]
fn layer_gradients() {
    check_layer(
        "Conv2D",
        Conv2D::new(4, 3).same().strides(2).activation(Act::Tanh),
        &[2, 7, 6, 3],
        2e-2,
    );
    check_layer(
        "Conv2D relu",
        Conv2D::new(5, 2).activation(Act::Relu),
        &[1, 5, 5, 2],
        2e-2,
    );
    check_layer(
        "Conv2D groups",
        Conv2D::new(4, 3).groups(2).use_bias(false),
        &[1, 5, 5, 4],
        2e-2,
    );
    check_layer(
        "Dense",
        Dense::new(5).activation(Act::Sigmoid),
        &[3, 7],
        2e-2,
    );
    check_layer(
        "Dense softmax",
        Dense::new(4).activation(Act::Softmax),
        &[3, 6],
        2e-2,
    );
    check_layer("MaxPool2D", MaxPool2D::new(2), &[2, 6, 6, 3], 2e-2);
    check_layer(
        "AvgPool2D same",
        AvgPool2D::new(3).strides(2).same(),
        &[2, 7, 5, 2],
        2e-2,
    );
    check_layer(
        "GlobalAvgPool2D",
        GlobalAvgPool2D::new(),
        &[2, 3, 4, 5],
        2e-2,
    );
    check_layer(
        "GlobalMaxPool2D",
        GlobalMaxPool2D::new(),
        &[2, 3, 4, 5],
        2e-2,
    );
    check_layer(
        "BatchNormalization",
        BatchNormalization::new(),
        &[4, 3, 3, 5],
        3e-2,
    );
    check_layer("Dropout", Dropout::new(0.4), &[3, 20], 2e-2);
    check_layer("Flatten", Flatten::new(), &[2, 3, 2, 2], 1e-2);
    check_layer("Reshape", Reshape::new(&[6, 2]), &[2, 3, 4], 1e-2);
    check_layer("Activation elu", Activation(Act::Elu(1.0)), &[2, 9], 2e-2);
    check_layer(
        "Rescaling",
        Rescaling::new(1.0 / 255.0, -0.5),
        &[2, 5],
        1e-2,
    );
    check_layer(
        "DepthwiseConv2D",
        DepthwiseConv2D::new(3).depth_multiplier(2).same(),
        &[2, 5, 4, 3],
        2e-2,
    );
    check_layer(
        "SeparableConv2D",
        SeparableConv2D::new(4, 3).strides(2).activation(Act::Relu),
        &[1, 7, 7, 3],
        2e-2,
    );
    check_layer(
        "Conv2DTranspose",
        Conv2DTranspose::new(3, 3).strides(2).same(),
        &[2, 3, 4, 2],
        2e-2,
    );
    check_layer(
        "UpSampling2D bilinear",
        UpSampling2D::new(2).bilinear(),
        &[1, 3, 4, 2],
        1e-2,
    );
    check_layer(
        "ZeroPadding2D",
        ZeroPadding2D::sides(1, 0, 2, 1),
        &[2, 3, 3, 2],
        1e-2,
    );
    check_layer("CenterCrop", CenterCrop::new(3, 2), &[2, 6, 5, 2], 1e-2);
}

/// Keras's parameter counts and output shapes of the other convolution layers.
#[test]
fn separable_and_transposed_layer_shapes() {
    let dev = wgrad_testkit::device();
    let m = Sequential::new(&dev, &[32, 32, 3])
        .add(DepthwiseConv2D::new(3).depth_multiplier(2).same())
        .unwrap() // 3·3·3·2 + 6
        .add(SeparableConv2D::new(16, 3).strides(2).same())
        .unwrap() // 3·3·6 + 6·16 + 16
        .add(Conv2DTranspose::new(8, 4).strides(2).same())
        .unwrap() // 4·4·8·16 + 8
        .add(ZeroPadding2D::new(1))
        .unwrap()
        .add(CenterCrop::new(30, 30))
        .unwrap()
        .add(UpSampling2D::new(2))
        .unwrap();
    assert_eq!(m.param_counts().0, (54 + 6) + (54 + 96 + 16) + (2048 + 8));
    assert_eq!(m.output_shape(), &[60, 60, 8]);
    let err = Sequential::new(&dev, &[4, 4, 3])
        .add(CenterCrop::new(5, 5))
        .err()
        .unwrap();
    assert!(err.to_string().contains("center_crop"), "{err}");
}

/// Each loss's gradient by finite differences, and its value against an f64 formula.
#[test]
fn loss_values_and_gradients() {
    let dev = wgrad_testkit::device();
    let (n, c) = (4usize, 5usize);
    let mut rng = Rng::new(11);
    let logits = rng.vec(n * c, -2.0, 2.0);
    let labels = [3u32, 0, 4, 1];
    let lt = Tensor::from_slice(&dev, &labels, &[n]).unwrap();
    let probs: Vec<f32> = logits
        .chunks(c)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = r.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect();
    let xent: f64 = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| -(probs[i * c + l as usize] as f64).ln())
        .sum::<f64>()
        / n as f64;
    let targets01 = rng.vec(n * c, 0.0, 1.0);
    let t01 = Tensor::from_slice(&dev, &targets01, &[n, c]).unwrap();
    let onehot: Vec<f32> = (0..n * c)
        .map(|k| (labels[k / c] as usize == k % c) as u8 as f32)
        .collect();
    let oh = Tensor::from_slice(&dev, &onehot, &[n, c]).unwrap();
    let sig = |v: f32| 1.0 / (1.0 + (-v as f64).exp());
    let bce_logits: f64 = logits
        .iter()
        .zip(&targets01)
        .map(|(&x, &t)| -(t as f64 * sig(x).ln() + (1.0 - t as f64) * (1.0 - sig(x)).ln()))
        .sum::<f64>()
        / (n * c) as f64;
    let mse: f64 = logits
        .iter()
        .zip(&targets01)
        .map(|(&x, &t)| ((x - t) as f64).powi(2))
        .sum::<f64>()
        / (n * c) as f64;
    let mae: f64 = logits
        .iter()
        .zip(&targets01)
        .map(|(&x, &t)| ((x - t) as f64).abs())
        .sum::<f64>()
        / (n * c) as f64;
    let huber: f64 = logits
        .iter()
        .zip(&targets01)
        .map(|(&x, &t)| {
            let d = ((x - t) as f64).abs();
            if d <= 1.0 {
                0.5 * d * d
            } else {
                d - 0.5
            }
        })
        .sum::<f64>()
        / (n * c) as f64;
    let cases: Vec<(Loss, bool, &Tensor, f64)> = vec![
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            false,
            &lt,
            xent,
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            true,
            &lt,
            xent,
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: true },
            false,
            &oh,
            xent,
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: false },
            true,
            &oh,
            xent,
        ),
        (
            Loss::BinaryCrossentropy { from_logits: true },
            false,
            &t01,
            bce_logits,
        ),
        (Loss::MeanSquaredError, false, &t01, mse),
        (Loss::MeanAbsoluteError, false, &t01, mae),
        (Loss::Huber { delta: 1.0 }, false, &t01, huber),
    ];
    for (loss, softmax_first, target, want) in cases {
        let name = format!("{loss:?}");
        let f = |x: &Var| -> Var {
            let p = if softmax_first {
                ops::softmax(x, -1).unwrap()
            } else {
                x.clone()
            };
            loss.compute(&p, target).unwrap()
        };
        let x = Var::param(Tensor::from_slice(&dev, &logits, &[n, c]).unwrap());
        let l = f(&x);
        let got = l.value().to_vec::<f32>().unwrap()[0] as f64;
        close_scalar(&format!("{name}: loss"), got, want, 1e-4, 1e-4);
        l.backward().unwrap();
        let g = x.grad().unwrap().to_vec::<f32>().unwrap();
        check_gradient(&name, &logits, &g, Fd::new(1e-2).tol(2e-2, 2e-2), |v| {
            let xv = Var::new(Tensor::from_slice(&dev, v, &[n, c]).unwrap());
            graph::no_grad(|| f(&xv)).value().to_vec::<f32>().unwrap()[0] as f64
        });
    }
    // Wrong targets are typed errors.
    let x = Var::new(Tensor::from_slice(&dev, &logits, &[n, c]).unwrap());
    for (loss, t) in [
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            &t01,
        ),
        (Loss::MeanSquaredError, &lt),
    ] {
        assert!(
            matches!(loss.compute(&x, t), Err(wgrad::nn::Error::Input { .. })),
            "{loss:?}"
        );
    }
}

/// Parameter counts as Keras's `summary()` reports them for the same models.
#[test]
fn summary_counts_match_keras() {
    let dev = wgrad_testkit::device();
    let m = wgrad::models::fashion_course(&dev, 10, 0).unwrap();
    assert_eq!(m.param_counts(), (1_386_506, 0));
    assert_eq!(
        m.layer_names(),
        ["conv2d", "max_pooling2d", "flatten", "dense", "dense_1"]
    );
    let s = m.summary(32);
    assert!(
        s.contains("(None, 26, 26, 64)") && s.contains("1,386,506"),
        "{s}"
    );
    // Chollet's MNIST convnet: 93,322 parameters in the book.
    let chollet = wgrad::models::chollet_mnist(&dev, 10, true, 0).unwrap();
    assert_eq!(chollet.param_counts(), (93_322, 0));
    // Géron's Fashion-MNIST CNN: 1,413,834, as Keras counts it.
    let geron = wgrad::models::geron_fashion(&dev, 10, 0).unwrap();
    assert_eq!(geron.param_counts(), (1_413_834, 0));
    // Batch norm: gamma and beta train, the moving statistics do not.
    let bn = Sequential::new(&dev, &[4, 4, 3])
        .add(Conv2D::new(8, 3).same().use_bias(false))
        .unwrap()
        .add(BatchNormalization::new())
        .unwrap();
    assert_eq!(bn.param_counts(), (3 * 3 * 3 * 8 + 16, 16));
    // Misconfigured layers name themselves.
    let err = Sequential::new(&dev, &[5, 5, 3])
        .add(Conv2D::new(4, 7))
        .err()
        .unwrap();
    assert!(
        matches!(err, wgrad::nn::Error::Config { .. }) && err.to_string().contains("conv2d"),
        "{err}"
    );
    let err = Sequential::new(&dev, &[5, 5, 3])
        .add(Dense::new(4))
        .err()
        .unwrap();
    assert!(err.to_string().contains("Flatten"), "{err}");
}

/// Two Gaussian blobs per class in 6×6×1 "images": a small CNN must separate four classes.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = Vec::with_capacity(n * 36);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 4) as u32;
        let (cy, cx) = [(1.5, 1.5), (1.5, 4.5), (4.5, 1.5), (4.5, 4.5)][class as usize];
        for y in 0..6 {
            for x in 0..6 {
                let d2 = (y as f32 - cy).powi(2) + (x as f32 - cx).powi(2);
                images.push((-d2 / 2.0).exp() + rng.uniform(-0.3, 0.3));
            }
        }
        labels.push(class);
    }
    Dataset::new(images, [6, 6, 1], labels, 4).unwrap()
}

fn blob_model(dev: &Device, seed: u64) -> Sequential {
    Sequential::new(dev, &[6, 6, 1])
        .seed(seed)
        .add(Conv2D::new(8, 3).same().activation(Act::Relu))
        .unwrap()
        .add(BatchNormalization::new())
        .unwrap()
        .add(MaxPool2D::new(2))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dropout::new(0.2))
        .unwrap()
        .add(Dense::new(4))
        .unwrap()
}

#[test]
fn fit_learns_with_every_optimizer() {
    let dev = wgrad_testkit::device();
    let train = DataLoader::new(blobs(256, 1), 32).shuffle(true).seed(3);
    let test = DataLoader::new(blobs(128, 2), 64);
    let optimizers = [
        Optimizer::sgd(0.03).momentum(0.9).nesterov(true),
        Optimizer::rmsprop(3e-3),
        Optimizer::adam(1e-2),
        Optimizer::adamw(1e-2, 1e-3),
        Optimizer::nadam(1e-2),
        Optimizer::sgd(Schedule::ExponentialDecay {
            initial: 0.2,
            decay_steps: 8,
            rate: 0.9,
            staircase: false,
        }),
    ];
    for opt in optimizers {
        let name = opt.name();
        let mut t = Trainer::new(
            blob_model(&dev, 9),
            opt,
            Loss::sparse_categorical_crossentropy(true),
        );
        let h = t
            .fit(
                &train,
                FitOptions::epochs(10).validation(&test).verbose(false),
            )
            .unwrap();
        let first = h.epochs[0].loss;
        let last = h.epochs.last().unwrap();
        assert!(
            last.loss < 0.5 * first,
            "{name}: loss {first} -> {}",
            last.loss
        );
        assert!(
            last.val_accuracy.unwrap() > 0.9,
            "{name}: val accuracy {:?}",
            last.val_accuracy
        );
        // evaluate agrees with the epoch's validation figures and with predict's arg-max.
        let e = t.evaluate(&test).unwrap();
        assert!((e.loss - last.val_loss.unwrap()).abs() < 1e-5);
        let ds = blobs(128, 2);
        let x = Tensor::from_slice(&dev, ds.images(), &[128, 6, 6, 1]).unwrap();
        let pred = t
            .predict(&x, 50)
            .unwrap()
            .argmax(-1, false)
            .unwrap()
            .to_vec::<u32>()
            .unwrap();
        let acc = pred.iter().zip(ds.labels()).filter(|(a, b)| a == b).count() as f32 / 128.0;
        assert!(
            (acc - e.accuracy.unwrap()).abs() < 1e-6,
            "{name}: predict {acc} vs evaluate {:?}",
            e.accuracy
        );
    }
}

/// A training step records its work and never waits: no submit, no readback.
#[test]
fn a_training_step_makes_no_host_round_trip() {
    // A device of its own: the shared one counts other tests' submits too.
    let dev = Device::new().unwrap();
    let mut t = Trainer::new(
        blob_model(&dev, 1),
        Optimizer::adam(1e-3),
        Loss::sparse_categorical_crossentropy(true),
    );
    let ds = blobs(16, 4);
    let x = Tensor::from_slice(&dev, ds.images(), &[16, 6, 6, 1]).unwrap();
    let y = Tensor::from_slice(&dev, ds.labels(), &[16]).unwrap();
    t.train_step(&x, &y).unwrap(); // first step: slots are created
    dev.sync().unwrap();
    let c0 = dev.counters();
    for _ in 0..3 {
        t.train_step(&x, &y).unwrap();
    }
    let c1 = dev.counters();
    assert_eq!(
        (c1.submits, c1.readbacks),
        (c0.submits, c0.readbacks),
        "three steps, no wait"
    );
    assert!(c1.dispatches > c0.dispatches);
}

#[test]
fn callbacks_stop_training() {
    let dev = wgrad_testkit::device();
    let train = DataLoader::new(blobs(64, 1), 32);
    let mut t = Trainer::new(
        blob_model(&dev, 2),
        Optimizer::adam(1e-2),
        Loss::sparse_categorical_crossentropy(true),
    );
    // The seeds' "stop when accuracy passes a threshold" as a closure.
    let mut stop_at_first = |_: &wgrad::nn::EpochLog| wgrad::nn::Control::Stop;
    let h = t
        .fit(
            &train,
            FitOptions::epochs(5)
                .verbose(false)
                .callback(&mut stop_at_first),
        )
        .unwrap();
    assert_eq!(h.epochs.len(), 1);
    let mut es = wgrad::nn::EarlyStopping::new("val_loss", 0);
    let err = t
        .fit(
            &train,
            FitOptions::epochs(3).verbose(false).callback(&mut es),
        )
        .unwrap_err();
    assert!(err.to_string().contains("val_loss"), "{err}");
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-nn-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn weights(m: &dyn Layer) -> Vec<Vec<f32>> {
    m.params()
        .iter()
        .map(|p| p.value().to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn weights_round_trip_and_mismatches_are_typed_errors() {
    let dev = wgrad_testkit::device();
    let a = blob_model(&dev, 1);
    let mut b = blob_model(&dev, 2);
    assert_ne!(weights(&a), weights(&b));
    let path = tmp("blob.safetensors");
    save_weights(&a, &path).unwrap();
    load_weights(&mut b, &path).unwrap();
    assert_eq!(weights(&a), weights(&b));
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
    // Another architecture: the error names what is missing and what is extra.
    let mut other = Sequential::new(&dev, &[6, 6, 1])
        .add(Conv2D::new(3, 3))
        .unwrap();
    let err = load_weights(&mut other, &path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, wgrad::nn::Error::Checkpoint { .. }), "{msg}");
    assert!(
        msg.contains("conv2d/kernel") && msg.contains("dense/kernel"),
        "{msg}"
    );
    // Truncated and garbage files.
    let bytes = std::fs::read(&path).unwrap();
    let cut = tmp("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        load_weights(&mut b, &cut),
        Err(wgrad::nn::Error::Checkpoint { .. })
    ));
    std::fs::write(&cut, b"not a safetensors file at all").unwrap();
    assert!(matches!(
        load_weights(&mut b, &cut),
        Err(wgrad::nn::Error::Checkpoint { .. })
    ));
    assert!(matches!(
        load_weights(&mut b, tmp("absent.safetensors")),
        Err(wgrad::nn::Error::Io { .. })
    ));
    let _ = (DType::F32, Padding::Valid);
}

/// Two epochs straight and one epoch + checkpoint + a fresh trainer resuming for the second
/// end with the same weights (same seeds, same adapter).
#[test]
fn checkpoints_resume_to_the_same_result() {
    let dev = wgrad_testkit::device();
    let train = DataLoader::new(blobs(96, 5), 32).shuffle(true).seed(8);
    let make = || {
        Trainer::new(
            blob_model(&dev, 4),
            Optimizer::adam(1e-2),
            Loss::sparse_categorical_crossentropy(true),
        )
        .seed(6)
    };
    let mut straight = make();
    straight
        .fit(&train, FitOptions::epochs(2).verbose(false))
        .unwrap();

    let mut first = make();
    first
        .fit(&train, FitOptions::epochs(1).verbose(false))
        .unwrap();
    let path = tmp("ckpt.safetensors");
    first.save_checkpoint(&path).unwrap();
    let mut resumed = make();
    resumed.load_checkpoint(&path).unwrap();
    assert_eq!(
        (resumed.epochs_done(), resumed.optimizer.iterations()),
        (1, 3)
    );
    resumed
        .fit(&train, FitOptions::epochs(2).verbose(false))
        .unwrap();
    let (a, b) = (weights(&straight.model), weights(&resumed.model));
    for (x, y) in a.iter().zip(&b) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= 1e-6 * (1.0 + u.abs()), "{u} vs {v}");
        }
    }
    // BackupAndRestore: a fit "interrupted" after one epoch (epochs(1)), then a fresh
    // trainer asked for the full two epochs with the same backup, ends where `straight` did.
    let backup = tmp("backup.safetensors");
    let _ = std::fs::remove_file(&backup);
    let mut cut = make();
    cut.fit(&train, FitOptions::epochs(1).verbose(false).backup(&backup))
        .unwrap();
    let mut again = make();
    let h = again
        .fit(&train, FitOptions::epochs(2).verbose(false).backup(&backup))
        .unwrap();
    assert_eq!(
        h.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(again.epochs_done(), 2);
    for (x, y) in a.iter().zip(&weights(&again.model)) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= 1e-6 * (1.0 + u.abs()), "{u} vs {v}");
        }
    }
    // A checkpoint of another optimizer is refused.
    let mut sgd = Trainer::new(
        blob_model(&dev, 4),
        Optimizer::sgd(0.1),
        Loss::sparse_categorical_crossentropy(true),
    );
    assert!(matches!(
        sgd.load_checkpoint(&path),
        Err(wgrad::nn::Error::Checkpoint { .. })
    ));
}

/// A residual block and a squeeze-and-excitation block as functional graphs.
fn residual_block(dev: &Device) -> wgrad::nn::Functional {
    use wgrad::nn::{Add, Functional};
    let mut g = Functional::new(dev).seed(3);
    let x = g.input(&[5, 5, 3]);
    let h = g
        .apply(Conv2D::new(3, 3).same().activation(Act::Tanh), x)
        .unwrap();
    let h = g.apply(Conv2D::new(3, 3).same(), h).unwrap();
    let y = g.merge(Add, &[h, x]).unwrap();
    let y = g.apply(Activation(Act::Elu(1.0)), y).unwrap();
    g.outputs(&[y]).unwrap();
    g
}

fn se_block(dev: &Device) -> wgrad::nn::Functional {
    use wgrad::nn::{Functional, Multiply};
    let mut g = Functional::new(dev).seed(4);
    let x = g.input(&[4, 4, 6]);
    let s = g.apply(GlobalAvgPool2D::new(), x).unwrap();
    let s = g.apply(Dense::new(3).activation(Act::Relu), s).unwrap();
    let s = g.apply(Dense::new(6).activation(Act::Sigmoid), s).unwrap();
    let s = g.apply(Reshape::new(&[1, 1, 6]), s).unwrap();
    let y = g.merge(Multiply, &[x, s]).unwrap();
    g.outputs(&[y]).unwrap();
    g
}

#[test]
fn functional_graphs_have_gradients_and_summaries() {
    let dev = wgrad_testkit::device();
    check_layer("residual block", residual_block(&dev), &[2, 5, 5, 3], 2e-2);
    check_layer(
        "squeeze-and-excitation",
        se_block(&dev),
        &[2, 4, 4, 6],
        2e-2,
    );
    let r = residual_block(&dev);
    assert_eq!(r.param_counts(), (2 * (3 * 3 * 3 * 3 + 3), 0));
    let s = r.summary(4);
    assert!(
        s.contains("Connected to") && s.contains("conv2d_1, input_layer"),
        "{s}"
    );
    // Two inputs joined by Concatenate, run with forward_multi: the output is the two
    // inputs side by side.
    use wgrad::nn::{Concatenate, Functional};
    let mut g = Functional::new(&dev);
    let a = g.input(&[3, 3, 2]);
    let b = g.input(&[3, 3, 1]);
    let c = g.merge(Concatenate::default(), &[a, b]).unwrap();
    assert_eq!(g.shape(c), &[3, 3, 3]);
    g.outputs(&[c, a]).unwrap();
    let xa: Vec<f32> = (0..18).map(|v| v as f32).collect();
    let xb: Vec<f32> = (0..9).map(|v| 100.0 + v as f32).collect();
    let va = Var::new(Tensor::from_slice(&dev, &xa, &[1, 3, 3, 2]).unwrap());
    let vb = Var::new(Tensor::from_slice(&dev, &xb, &[1, 3, 3, 1]).unwrap());
    let outs = g.forward_multi(&[va, vb], &mut Ctx::new(false, 0)).unwrap();
    assert_eq!(outs.len(), 2);
    let got = outs[0].value().to_vec::<f32>().unwrap();
    let want: Vec<f32> = (0..9)
        .flat_map(|p| [xa[2 * p], xa[2 * p + 1], xb[p]])
        .collect();
    assert_eq!(got, want);
    // Joins that cannot work name the layer.
    let mut bad = Functional::new(&dev);
    let p = bad.input(&[3, 3, 2]);
    let q = bad.input(&[3, 3, 1]);
    let err = bad.merge(wgrad::nn::Add, &[p, q]).unwrap_err();
    assert!(err.to_string().contains("add (Add)"), "{err}");
    let err = bad
        .forward(
            &Var::new(Tensor::zeros(&dev, &[1, 3, 3, 2], DType::F32).unwrap()),
            &mut Ctx::new(false, 0),
        )
        .unwrap_err();
    assert!(err.to_string().contains("output"), "{err}");
}

/// A graph is checked when its outputs are declared, not at its first forward: no outputs,
/// an input nobody reads and a layer whose output reaches no output are typed errors there.
#[test]
fn functional_graphs_are_validated_when_outputs_are_declared() {
    use wgrad::nn::{Error, Functional};
    let dev = wgrad_testkit::device();
    let mut g = Functional::new(&dev);
    let x = g.input(&[4]);
    let unused = g.input(&[2]);
    let h = g.apply(Dense::new(3), x).unwrap();
    let dangling = g.apply(Dense::new(5), x).unwrap();
    let config = |e: Error| match e {
        Error::Config { reason, .. } => reason,
        other => panic!("expected a configuration error, got {other}"),
    };
    let r = config(g.outputs(&[]).unwrap_err());
    assert!(r.contains("at least one output"), "{r}");
    let r = config(g.outputs(&[h]).unwrap_err());
    assert!(
        r.contains("input_layer_1") && r.contains("reaches none"),
        "{r}"
    );
    let mut other = Functional::new(&dev);
    let far = other.input(&[1]);
    let far = other.apply(Dense::new(1), far).unwrap();
    let far = other.apply(Dense::new(1), far).unwrap();
    let r = config(g.outputs(&[far]).unwrap_err());
    assert!(r.contains("is a tensor of another model"), "{r}");
    // With both inputs read, the dense layer left over is named.
    let joined = g.apply(Dense::new(3), unused).unwrap();
    let y = g.merge(wgrad::nn::Add, &[h, joined]).unwrap();
    let r = config(g.outputs(&[y]).unwrap_err());
    assert!(
        r.contains("\"dense_1\"") && r.contains("reaches none"),
        "{r}"
    );
    g.outputs(&[y, dangling]).unwrap();
    assert_eq!(g.output_shapes(), vec![&[3][..], &[5][..]]);
    assert_eq!(g.input_shapes(), vec![&[4][..], &[2][..]]);
}

/// `Sequential` builds the one model graph: the finished chain is a `Functional` with the
/// same names, weights, summary and outputs.
#[test]
fn a_sequential_model_is_a_chain_of_the_functional_graph() {
    let dev = wgrad_testkit::device();
    let seq = blob_model(&dev, 7);
    let names: Vec<String> = seq.layer_names().iter().map(|s| s.to_string()).collect();
    let summary = seq.summary(8);
    assert!(summary.starts_with("Model: \"sequential\""), "{summary}");
    assert!(
        !summary.contains("Connected to") && !summary.contains("InputLayer"),
        "{summary}"
    );
    let x =
        Var::new(Tensor::from_slice(&dev, &blobs(4, 3).images()[..4 * 36], &[4, 6, 6, 1]).unwrap());
    let mut seq = seq;
    let want = seq
        .forward(&x, &mut Ctx::new(false, 0))
        .unwrap()
        .value()
        .to_vec::<f32>()
        .unwrap();
    let mut g: wgrad::nn::Functional = seq.into_model();
    assert_eq!(g.kind(), "Sequential");
    assert_eq!(g.layer_names(), names);
    assert_eq!(g.summary(8), summary);
    let got = g
        .forward(&x, &mut Ctx::new(false, 0))
        .unwrap()
        .value()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn a_functional_model_trains_and_saves() {
    use wgrad::nn::{Add, Functional};
    let dev = wgrad_testkit::device();
    let mut g = Functional::new(&dev).seed(5);
    let x = g.input(&[6, 6, 1]);
    let h = g
        .apply(Conv2D::new(4, 3).same().activation(Act::Relu), x)
        .unwrap();
    let k = g.apply(Conv2D::new(4, 1), x).unwrap();
    let h = g.merge(Add, &[h, k]).unwrap();
    // The classes differ by where the blob is: keep positions (Flatten, not global pooling).
    let h = g.apply(Flatten::new(), h).unwrap();
    let y = g.apply(Dense::new(4), h).unwrap();
    g.outputs(&[y]).unwrap();
    let train = DataLoader::new(blobs(256, 1), 32).shuffle(true).seed(1);
    let test = DataLoader::new(blobs(128, 2), 64);
    let mut t = Trainer::new(
        g,
        Optimizer::adam(2e-2),
        Loss::sparse_categorical_crossentropy(true),
    );
    let h = t
        .fit(
            &train,
            FitOptions::epochs(10).validation(&test).verbose(false),
        )
        .unwrap();
    assert!(
        h.epochs.last().unwrap().val_accuracy.unwrap() > 0.9,
        "{:?}",
        h.epochs.last()
    );
    let path = tmp("functional.safetensors");
    save_weights(&t.model, &path).unwrap();
    let names: Vec<String> = t.model.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "conv2d/kernel",
            "conv2d/bias",
            "conv2d_1/kernel",
            "conv2d_1/bias",
            "dense/kernel",
            "dense/bias"
        ]
    );
    load_weights(&mut t.model, &path).unwrap();
}

/// tf.keras 2's legacy `decay=` as the chapter uses it, `SGD(lr=0.2, momentum=0.9, decay=0.01)`:
/// step t uses lr / (1 + 0.01·t), against Keras's momentum rule in f64.
#[test]
fn legacy_decay_divides_the_learning_rate_by_the_step() {
    use wgrad::nn::Param;
    let dev = wgrad_testkit::device();
    let g = [0.3f32, -0.7];
    let mut p = Param::new(
        "w",
        Tensor::from_slice(&dev, &[0.5f32, -1.0], &[2]).unwrap(),
    );
    let mut opt = Optimizer::sgd(0.2).momentum(0.9).decay(0.01);
    let (mut w, mut v) = ([0.5f64, -1.0], [0.0f64; 2]);
    for t in 0..4 {
        let lr = 0.2 / (1.0 + 0.01 * t as f64);
        assert!((opt.learning_rate() as f64 - lr).abs() < 1e-7, "step {t}");
        let gt = Var::new(Tensor::from_slice(&dev, &g, &[2]).unwrap());
        ops::sum(&ops::mul(p.var(), &gt).unwrap(), &[])
            .unwrap()
            .backward()
            .unwrap();
        opt.step(vec![&mut p]).unwrap();
        for i in 0..2 {
            v[i] = 0.9 * v[i] - lr * g[i] as f64;
            w[i] += v[i];
        }
    }
    wgrad_testkit::assert_close(&p.value().to_vec::<f32>().unwrap(), &w, 1e-5, 1e-6);
}

/// Optimizer::nadam over four steps against Keras's Nadam written out in f64 (momentum
/// schedule u_t = β1(1 − ½·0.96ᵗ) as Keras 3, its running product, bias-corrected moments).
#[test]
fn nadam_follows_keras() {
    use wgrad::nn::Param;
    let dev = wgrad_testkit::device();
    let w0 = [0.5f32, -1.0, 2.0];
    let grads = [
        [0.1f32, -0.3, 0.7],
        [0.2, 0.1, -0.4],
        [-0.5, 0.3, 0.2],
        [0.05, -0.1, 0.9],
    ];
    let mut p = Param::new("w", Tensor::from_slice(&dev, &w0, &[3]).unwrap());
    let mut opt = Optimizer::nadam(0.01);
    let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-7f64, 0.01f64);
    let mut w: Vec<f64> = w0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v, mut prod) = (vec![0.0; 3], vec![0.0; 3], 1.0f64);
    for (step, g) in grads.iter().enumerate() {
        // loss = Σ w·g has gradient g.
        let gt = Var::new(Tensor::from_slice(&dev, g, &[3]).unwrap());
        ops::sum(&ops::mul(p.var(), &gt).unwrap(), &[])
            .unwrap()
            .backward()
            .unwrap();
        opt.step(vec![&mut p]).unwrap();
        let t = step as f64 + 1.0;
        let u = |t: f64| b1 * (1.0 - 0.5 * 0.96f64.powf(t));
        let (ut, ut1) = (u(t), u(t + 1.0));
        let pt = prod * ut;
        let pt1 = pt * ut1;
        prod = pt;
        for i in 0..3 {
            let gi = g[i] as f64;
            m[i] += (gi - m[i]) * (1.0 - b1);
            v[i] += (gi * gi - v[i]) * (1.0 - b2);
            let mhat = ut1 * m[i] / (1.0 - pt1) + (1.0 - ut) * gi / (1.0 - pt);
            let vhat = v[i] / (1.0 - b2.powf(t));
            w[i] -= lr * mhat / (vhat.sqrt() + eps);
        }
    }
    wgrad_testkit::assert_close(&p.value().to_vec::<f32>().unwrap(), &w, 1e-5, 1e-6);
}

/// Keras's gradient clipping (clipnorm, global_clipnorm, clipvalue) ahead of a plain SGD step,
/// against the same formulas in f64: g·c/max(‖g‖, c) per tensor, over all tensors together,
/// and clip(g, −v, v). One gradient is above each threshold and one below it.
#[test]
fn gradient_clipping_follows_keras() {
    use wgrad::nn::Param;
    let dev = wgrad_testkit::device();
    let w0: [&[f32]; 2] = [&[0.5, -1.0, 2.0, 0.25], &[1.5, -0.5]];
    let grads: [&[f32]; 2] = [&[3.0, -4.0, 1.0, 2.0], &[0.1, -0.2]];
    let lr = 0.1f64;
    let norm = |g: &[f32]| g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let global = grads.iter().map(|g| norm(g).powi(2)).sum::<f64>().sqrt();
    for (how, c) in [
        ("clipnorm", 1.0f32),
        ("global_clipnorm", 2.0),
        ("clipvalue", 1.5),
    ] {
        let mut ps: Vec<Param> = w0
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Param::new(
                    format!("w{i}"),
                    Tensor::from_slice(&dev, w, &[w.len()]).unwrap(),
                )
            })
            .collect();
        for (p, g) in ps.iter().zip(grads) {
            // loss = Σ w·g has gradient g.
            let gt = Var::new(Tensor::from_slice(&dev, g, &[g.len()]).unwrap());
            ops::sum(&ops::mul(p.var(), &gt).unwrap(), &[])
                .unwrap()
                .backward()
                .unwrap();
        }
        let sgd = Optimizer::sgd(lr as f32);
        let mut opt = match how {
            "clipnorm" => sgd.clipnorm(c),
            "global_clipnorm" => sgd.global_clipnorm(c),
            _ => sgd.clipvalue(c),
        };
        opt.step(ps.iter_mut().collect()).unwrap();
        let c = c as f64;
        for ((p, w), g) in ps.iter().zip(w0).zip(grads) {
            let scale = match how {
                "clipnorm" => c / norm(g).max(c),
                "global_clipnorm" => c / global.max(c),
                _ => 1.0,
            };
            let want: Vec<f64> = w
                .iter()
                .zip(g)
                .map(|(&w, &g)| {
                    let g = g as f64 * scale;
                    let g = if how == "clipvalue" {
                        g.clamp(-c, c)
                    } else {
                        g
                    };
                    w as f64 - lr * g
                })
                .collect();
            wgrad_testkit::assert_close(&p.value().to_vec::<f32>().unwrap(), &want, 1e-5, 1e-6);
        }
    }
    // Keras refuses clipnorm together with global_clipnorm; a non-positive threshold is a
    // configuration error too, not a silent no-op.
    let mut p = Param::new("w", Tensor::from_slice(&dev, &[1.0f32], &[1]).unwrap());
    for opt in [
        Optimizer::sgd(0.1).clipnorm(1.0).global_clipnorm(1.0),
        Optimizer::sgd(0.1).clipvalue(0.0),
        Optimizer::sgd(0.1).clipnorm(f32::NAN),
    ] {
        let mut opt = opt;
        let gt = Var::new(Tensor::from_slice(&dev, &[1.0f32], &[1]).unwrap());
        ops::sum(&ops::mul(p.var(), &gt).unwrap(), &[])
            .unwrap()
            .backward()
            .unwrap();
        let err = opt.step(vec![&mut p]).unwrap_err();
        assert!(matches!(err, wgrad::nn::Error::Config { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("clip"), "{msg}");
    }
}

/// Keras's `use_ema` against its rule in f64: after each update a ← m·a + (1 − m)·w, with
/// momentum 0 on the first step; with `ema_overwrite_frequency` n the weights take the average
/// after every n-th step; `finalize_variable_values` hands them the average at the end. A
/// trainable weight without a gradient is averaged too, as Keras averages every trainable one.
#[test]
fn weight_moving_average_follows_keras() {
    use wgrad::nn::Param;
    let dev = wgrad_testkit::device();
    let w0 = [0.5f32, -1.0, 2.0];
    let grads = [
        [0.1f32, -0.3, 0.7],
        [0.2, 0.1, -0.4],
        [-0.5, 0.3, 0.2],
        [0.05, -0.1, 0.9],
        [0.3, 0.3, -0.3],
    ];
    let (lr, m) = (0.1f64, 0.8f64);
    for every in [0u64, 2] {
        let mut p = Param::new("w", Tensor::from_slice(&dev, &w0, &[3]).unwrap());
        let mut idle = Param::new("idle", Tensor::from_slice(&dev, &[4.0f32], &[1]).unwrap());
        let mut opt = Optimizer::sgd(lr as f32)
            .use_ema(m as f32)
            .ema_overwrite_frequency(every);
        let mut w: Vec<f64> = w0.iter().map(|&v| v as f64).collect();
        let mut a = vec![0.0f64; 3];
        for (t, g) in grads.iter().enumerate() {
            let gt = Var::new(Tensor::from_slice(&dev, g, &[3]).unwrap());
            ops::sum(&ops::mul(p.var(), &gt).unwrap(), &[])
                .unwrap()
                .backward()
                .unwrap();
            opt.step(vec![&mut p, &mut idle]).unwrap();
            let mt = if t == 0 { 0.0 } else { m };
            for i in 0..3 {
                w[i] -= lr * g[i] as f64;
                a[i] = mt * a[i] + (1.0 - mt) * w[i];
            }
            if every > 0 && (t as u64 + 1).is_multiple_of(every) {
                w.clone_from(&a);
            }
            wgrad_testkit::assert_close(&p.value().to_vec::<f32>().unwrap(), &w, 1e-5, 1e-6);
        }
        opt.finalize_variable_values(vec![&mut p, &mut idle]);
        wgrad_testkit::assert_close(&p.value().to_vec::<f32>().unwrap(), &a, 1e-5, 1e-6);
        wgrad_testkit::assert_close(&idle.value().to_vec::<f32>().unwrap(), &[4.0], 1e-6, 1e-6);
        assert_eq!(opt.slots_per_param(), 1, "the average is SGD's one slot");
    }
    let mut p = Param::new("w", Tensor::from_slice(&dev, &w0, &[3]).unwrap());
    let err = Optimizer::sgd(0.1)
        .use_ema(1.5)
        .step(vec![&mut p])
        .unwrap_err();
    assert!(err.to_string().contains("ema_momentum"), "{err}");
}

/// Top-k accuracy on the device against a host count over the same predictions.
#[test]
fn top_k_accuracy_matches_a_host_count() {
    let dev = wgrad_testkit::device();
    let data = blobs(96, 7);
    let loader = DataLoader::new(data.clone(), 40);
    let mut t = Trainer::new(
        blob_model(&dev, 3),
        Optimizer::adam(1e-3),
        Loss::sparse_categorical_crossentropy(true),
    )
    .top_k_accuracy(2);
    let e = t.evaluate(&loader).unwrap();
    let x = Tensor::from_slice(&dev, data.images(), &[96, 6, 6, 1]).unwrap();
    let p = t.predict(&x, 40).unwrap().to_vec::<f32>().unwrap();
    let (mut top1, mut top2) = (0, 0);
    for (row, &l) in p.chunks(4).zip(data.labels()) {
        let beaten = row.iter().filter(|&&v| v > row[l as usize]).count();
        top1 += (beaten == 0) as usize;
        top2 += (beaten < 2) as usize;
    }
    assert!(
        (e.accuracy.unwrap() - top1 as f32 / 96.0).abs() < 1e-6,
        "{e:?} vs {top1}"
    );
    assert!(
        (e.top_k_accuracy.unwrap() - top2 as f32 / 96.0).abs() < 1e-6,
        "{e:?} vs {top2}"
    );
    assert!(
        top2 > top1,
        "an untrained model: top-2 should count more hits than top-1"
    );
}

/// The seeds' `ResidualUnit` is a user-defined layer: wgrad-models implements `Layer` for it
/// outside wgrad-nn, from public pieces only.
use wgrad::models::ResidualUnit;

#[test]
fn a_custom_layer_builds_trains_and_counts_like_keras() {
    let dev = wgrad_testkit::device();
    let m = Sequential::new(&dev, &[6, 6, 1])
        .seed(2)
        .add(Conv2D::new(4, 3).same())
        .unwrap()
        .add(ResidualUnit::new(4, 1))
        .unwrap()
        .add(ResidualUnit::new(8, 2))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(4))
        .unwrap();
    // Keras: unit(4, 1) = 2·(3·3·4·4) + 2·8 trainable + 2·8 moving; unit(8, 2) =
    // 3·3·4·8 + 3·3·8·8 + 4·8 + 3·16 trainable + 3·16 moving.
    let unit1 = (2 * 144 + 16, 16);
    let unit2 = (288 + 576 + 32 + 48, 48);
    let (tr, non) = m.param_counts();
    assert_eq!(
        (tr, non),
        (40 + unit1.0 + unit2.0 + 72 * 4 + 4, unit1.1 + unit2.1)
    );
    assert_eq!(m.output_shape(), &[4]);
    let train = DataLoader::new(blobs(256, 1), 32).shuffle(true).seed(1);
    let mut t = Trainer::new(
        m,
        Optimizer::adam(1e-2),
        Loss::sparse_categorical_crossentropy(true),
    );
    let h = t.fit(&train, FitOptions::epochs(6).verbose(false)).unwrap();
    assert!(
        h.epochs.last().unwrap().accuracy.unwrap() > 0.9,
        "{:?}",
        h.epochs.last()
    );
    assert!(t
        .model
        .named_params()
        .iter()
        .any(|(n, _)| n == "residual_unit_1/skip/conv2d/kernel"));
}

/// Frozen layers keep their weights through `fit`; the others change.
#[test]
fn frozen_layers_do_not_train() {
    let dev = wgrad_testkit::device();
    let mut m = blob_model(&dev, 5);
    m.layer_mut("conv2d").unwrap().freeze(false);
    let before = weights(&m);
    let (tr, non) = m.param_counts();
    assert_eq!(
        non,
        8 * 9 + 8 + 16,
        "conv2d's kernel and bias join the moving statistics"
    );
    assert!(tr > 0);
    let train = DataLoader::new(blobs(64, 1), 32);
    let mut t = Trainer::new(
        m,
        Optimizer::sgd(0.1),
        Loss::sparse_categorical_crossentropy(true),
    );
    t.fit(&train, FitOptions::epochs(1).verbose(false)).unwrap();
    let after = weights(&t.model);
    assert_eq!(before[0], after[0], "frozen kernel");
    assert_eq!(before[1], after[1], "frozen bias");
    assert_ne!(before.last(), after.last(), "the dense bias trains");
}

/// A two-headed functional model (class and blob position) trained with weighted losses.
#[test]
fn a_two_headed_model_trains_with_weighted_losses() {
    use wgrad::nn::Functional;
    let dev = wgrad_testkit::device();
    let mut g = Functional::new(&dev).seed(8);
    let x = g.input(&[6, 6, 1]);
    let h = g
        .apply(Conv2D::new(8, 3).same().activation(Act::Relu), x)
        .unwrap();
    let h = g.apply(Flatten::new(), h).unwrap();
    let class = g.apply(Dense::new(4), h).unwrap();
    let position = g.apply(Dense::new(2), h).unwrap();
    g.outputs(&[class, position]).unwrap();
    let mut t = Trainer::multi_output(
        g,
        Optimizer::adam(1e-2),
        vec![
            (Loss::sparse_categorical_crossentropy(true), 1.0),
            (Loss::MeanSquaredError, 0.5),
        ],
    );
    let data = blobs(128, 3);
    let xs = Tensor::from_slice(&dev, data.images(), &[128, 6, 6, 1]).unwrap();
    let ys = Tensor::from_slice(&dev, data.labels(), &[128]).unwrap();
    let centres: Vec<f32> = data
        .labels()
        .iter()
        .flat_map(|&l| [(l / 2) as f32, (l % 2) as f32])
        .collect();
    let ps = Tensor::from_slice(&dev, &centres, &[128, 2]).unwrap();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..60 {
        let (l, outs) = t
            .train_step_multi(std::slice::from_ref(&xs), &[ys.clone(), ps.clone()])
            .unwrap();
        assert_eq!(outs.len(), 2);
        last = l.to_vec::<f32>().unwrap()[0];
        first.get_or_insert(last);
    }
    assert!(
        last < 0.1 * first.unwrap(),
        "weighted loss {first:?} -> {last}"
    );
    // A DataLoader without float targets cannot feed the MSE head, and says what to do;
    // with the centres attached, fit trains both heads from it.
    let err = t
        .fit(
            &DataLoader::new(data.clone(), 32),
            FitOptions::epochs(1).verbose(false),
        )
        .unwrap_err();
    assert!(err.to_string().contains("with_targets"), "{err}");
    let with = data.with_targets(centres, &[2]).unwrap();
    let h = t
        .fit(
            &DataLoader::new(with, 32),
            FitOptions::epochs(1).verbose(false),
        )
        .unwrap();
    let e = &h.epochs[0];
    assert!(e.loss < 0.2 * first.unwrap(), "{e:?}");
    assert!(e.accuracy.unwrap() > 0.9, "{e:?}");
}

/// `History::save_plot` writes a real 1000×420 PNG, atomically, and reports a bad path.
#[test]
fn training_curves_are_written_as_png() {
    use wgrad::nn::{EpochLog, History};
    let h = History {
        epochs: (0..4)
            .map(|e| EpochLog {
                epoch: e,
                loss: 1.0 / (e as f32 + 1.0),
                accuracy: Some(0.5 + 0.1 * e as f32),
                val_loss: Some(1.2 / (e as f32 + 1.0)),
                val_accuracy: Some(0.45 + 0.1 * e as f32),
                ..Default::default()
            })
            .collect(),
    };
    let path = tmp("curves.png");
    h.save_plot(&path, "test run").unwrap();
    assert_eq!(image::image_dimensions(&path).unwrap(), (1000, 420));
    let img = image::open(&path).unwrap().to_rgb8();
    let coloured = img
        .pixels()
        .filter(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2])
        .count();
    assert!(
        coloured > 1000,
        "the curves are drawn in colour ({coloured} pixels)"
    );
    let err = h
        .save_plot("/proc/no-such-dir/curves.png", "x")
        .unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

/// Batch-norm weights and statistics of `model` moved away from their initial 1s and 0s
/// (γ and σ² in [0.5, 1.5), β and μ in [-0.5, 0.5)), so folding them is really exercised.
fn scramble_batch_norms(dev: &Device, model: &mut dyn Layer, seed: u64) {
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    for (i, (p, n)) in model.params_mut().into_iter().zip(&names).enumerate() {
        if n.starts_with("batch_normalization") {
            let lo = if n.ends_with("beta") || n.ends_with("mean") {
                -0.5
            } else {
                0.5
            };
            p.set(Tensor::rand_uniform(dev, p.shape(), lo, lo + 1.0, seed + i as u64).unwrap());
        }
    }
}

/// Inference folds each batch norm (and the activation after it) into the convolution before
/// it: same outputs as running the layers one by one, in fewer dispatches. A convolution with
/// its own activation is not folded (the nonlinearity comes before the affine map).
#[test]
fn predict_folds_batch_norm_into_the_convolution() {
    // Its own device: the dispatch counters must not see the other tests running in parallel.
    let dev = wgrad::Device::new().unwrap();
    let mut m = Sequential::new(&dev, &[7, 7, 3])
        .seed(4)
        .add(Conv2D::new(6, 3).same())
        .and_then(|m| m.add(BatchNormalization::new()))
        .and_then(|m| m.add(Activation(Act::Relu)))
        .and_then(|m| m.add(Conv2D::new(5, 3).activation(Act::Relu)))
        .and_then(|m| m.add(BatchNormalization::new()))
        .and_then(|m| m.add(Conv2D::new(4, 1).use_bias(false)))
        .and_then(|m| m.add(BatchNormalization::new()))
        .and_then(|m| m.add(Activation(Act::Tanh)))
        .and_then(|m| m.add(Flatten::new()))
        .and_then(|m| m.add(Dense::new(3)))
        .unwrap();
    scramble_batch_norms(&dev, &mut m, 50);
    let x = Tensor::rand_uniform(&dev, &[3, 7, 7, 3], -1.0, 1.0, 5).unwrap();
    dev.sync().unwrap();
    let d0 = dev.counters().dispatches;
    let reference = graph::no_grad(|| {
        let mut ctx = Ctx::new(false, 0);
        ctx.fold = false;
        m.forward(&Var::new(x.clone()), &mut ctx).unwrap()
    });
    let reference_dispatches = dev.counters().dispatches - d0;
    let want: Vec<f64> = reference
        .value()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    // The first call also derives the folded scales and biases, cached for later batches.
    wgrad::nn::predict(&mut m, &x, 3).unwrap();
    let d1 = dev.counters().dispatches;
    let got = wgrad::nn::predict(&mut m, &x, 3).unwrap();
    let d2 = dev.counters().dispatches;
    wgrad_testkit::assert_close(&got.to_vec::<f32>().unwrap(), &want, 1e-5, 1e-6);
    assert!(
        d2 - d1 < reference_dispatches,
        "folded {} dispatches, layer by layer {reference_dispatches}",
        d2 - d1
    );
    dev.sync().unwrap();
}

#[test]
fn decode_predictions_ranks_each_row() {
    let dev = wgrad_testkit::device();
    let p = Tensor::from_slice(&dev, &[0.1f32, 0.6, 0.3, f32::NAN, 0.2, 0.5], &[2, 3]).unwrap();
    let names: Vec<String> = ["cat", "dog", "bird"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let d = wgrad::nn::decode_predictions(&p, 2, &names).unwrap();
    assert_eq!(
        d[0],
        vec![(1, "dog".to_string(), 0.6), (2, "bird".to_string(), 0.3)]
    );
    assert_eq!(
        d[1],
        vec![(2, "bird".to_string(), 0.5), (1, "dog".to_string(), 0.2)]
    );
    let d = wgrad::nn::decode_predictions(&p, 5, &[]).unwrap();
    assert_eq!(d[1].iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 1, 0]);
    assert!(wgrad::nn::decode_predictions(&p, 2, &names[..2]).is_err());
    assert!(wgrad::nn::decode_predictions(&p.reshape(&[6]).unwrap(), 2, &[]).is_err());
}

/// The same folding in a functional graph: conv → BN → ReLU chains fold; a batch norm whose
/// input is also read elsewhere, or that is a model output, is run on its own.
#[test]
fn functional_predict_folds_only_private_chains() {
    use wgrad::nn::{Add, Functional};
    // Its own device: the dispatch counters must not see the other tests running in parallel.
    let dev = wgrad::Device::new().unwrap();
    let mut g = Functional::new(&dev).seed(9);
    let x = g.input(&[6, 6, 4]);
    let a = g.apply(Conv2D::new(4, 3).same(), x).unwrap();
    let a = g.apply(BatchNormalization::new(), a).unwrap();
    let h = g.apply(Activation(Act::Relu), a).unwrap();
    let b = g
        .apply(Conv2D::new(4, 3).same().use_bias(false), h)
        .unwrap();
    let b = g.apply(BatchNormalization::new(), b).unwrap();
    let s = g.merge(Add, &[b, h]).unwrap();
    // `c` feeds both its batch norm and the second output: not folded.
    let c = g.apply(Conv2D::new(2, 1), s).unwrap();
    let cb = g.apply(BatchNormalization::new(), c).unwrap();
    let p = g.apply(GlobalAvgPool2D::new(), cb).unwrap();
    let y = g.apply(Dense::new(3), p).unwrap();
    let q = g.apply(GlobalAvgPool2D::new(), c).unwrap();
    g.outputs(&[y, q]).unwrap();
    scramble_batch_norms(&dev, &mut g, 70);
    let xv = Tensor::rand_uniform(&dev, &[2, 6, 6, 4], -1.0, 1.0, 8).unwrap();
    let run = |g: &mut Functional, fold: bool| {
        graph::no_grad(|| {
            let mut ctx = Ctx::new(false, 0);
            ctx.fold = fold;
            g.forward_multi(&[Var::new(xv.clone())], &mut ctx)
                .unwrap()
                .iter()
                .map(|v| v.value().to_vec::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
    };
    run(&mut g, false);
    let r0 = dev.counters().dispatches;
    let want = run(&mut g, false);
    let unfolded = dev.counters().dispatches - r0;
    // The first folded run also derives and caches the folded scales and biases.
    run(&mut g, true);
    let d1 = dev.counters().dispatches;
    let got = run(&mut g, true);
    let d2 = dev.counters().dispatches;
    for (got, want) in got.iter().zip(&want) {
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        wgrad_testkit::assert_close(got, &want, 1e-5, 1e-6);
    }
    // Two batch norms and one ReLU run inside the convolutions' write-outs.
    assert!(
        d2 - d1 + 3 <= unfolded,
        "folded {}, layer by layer {unfolded}",
        d2 - d1
    );
    dev.sync().unwrap();
}

/// Keras's transfer-learning semantics: a frozen BatchNormalization runs in inference mode
/// while the model trains (moving statistics used and left alone, gamma and beta unchanged and
/// without gradients); unfrozen with a fresh optimizer, training continues from the weights.
#[test]
fn frozen_batch_norm_runs_in_inference_mode() {
    use wgrad::graph::{no_grad, Var};
    use wgrad::nn::Ctx;
    let dev = wgrad_testkit::device();
    let build = || {
        Sequential::new(&dev, &[6, 6, 1])
            .seed(4)
            .add(Conv2D::new(4, 3).same())
            .unwrap()
            .add(BatchNormalization::new())
            .unwrap()
            .add(Flatten::new())
            .unwrap()
            .add(Dense::new(4))
            .unwrap()
    };
    let mut m = build();
    // Non-trivial moving statistics, as a pretrained base has.
    let warm = DataLoader::new(blobs(64, 1), 32);
    let mut t = Trainer::new(
        m,
        Optimizer::adam(1e-2),
        Loss::sparse_categorical_crossentropy(true),
    );
    t.fit(&warm, FitOptions::epochs(2).verbose(false)).unwrap();
    m = t.model;
    let bn = |m: &Sequential| -> Vec<Vec<f32>> {
        m.named_params()
            .into_iter()
            .filter(|(n, _)| n.starts_with("batch_normalization"))
            .map(|(_, p)| p.value().to_vec::<f32>().unwrap())
            .collect()
    };
    let x = Tensor::from_slice(&dev, blobs(8, 9).images(), &[8, 6, 6, 1]).unwrap();
    let run = |m: &mut Sequential, training: bool| {
        no_grad(|| {
            m.forward(&Var::new(x.clone()), &mut Ctx::new(training, 0))
                .unwrap()
                .value()
                .to_vec::<f32>()
                .unwrap()
        })
    };
    // Trainable: training mode normalises with the batch's statistics, so outputs differ.
    assert_ne!(run(&mut m, true), run(&mut m, false));
    m.layer_mut("batch_normalization").unwrap().freeze(false);
    let stats = bn(&m);
    let infer = run(&mut m, false);
    let train_mode = run(&mut m, true);
    let want: Vec<f64> = infer.iter().map(|&v| v as f64).collect();
    wgrad_testkit::assert_close(&train_mode, &want, 1e-6, 1e-6);
    assert_eq!(
        bn(&m),
        stats,
        "a frozen forward in training mode updates nothing"
    );

    let mut t = Trainer::new(
        m,
        Optimizer::sgd(0.1),
        Loss::sparse_categorical_crossentropy(true),
    );
    let before = weights(&t.model);
    let data = DataLoader::new(blobs(64, 2), 32);
    let phase1 = t.fit(&data, FitOptions::epochs(2).verbose(false)).unwrap();
    assert_eq!(
        bn(&t.model),
        stats,
        "gamma, beta and the moving statistics stay"
    );
    assert_ne!(weights(&t.model)[0], before[0], "the convolution trains");
    for (n, p) in t.model.named_params() {
        if n.starts_with("batch_normalization") {
            assert!(!p.trainable() && p.var().grad().is_none(), "{n}");
        }
    }
    // Phase 2: unfreeze, fresh optimizer at a low rate: continues from phase 1's weights.
    let mut m = t.model;
    m.layer_mut("batch_normalization").unwrap().freeze(true);
    let trained = weights(&m);
    let mut t = Trainer::new(
        m,
        Optimizer::sgd(1e-3),
        Loss::sparse_categorical_crossentropy(true),
    );
    let phase2 = t.fit(&data, FitOptions::epochs(1).verbose(false)).unwrap();
    let first = phase1.epochs[0].loss;
    let continued = phase2.epochs[0].loss;
    assert!(
        continued < first,
        "phase 2 starts from trained weights: {continued} vs {first}"
    );
    assert_ne!(bn(&t.model), stats, "unfrozen, batch norm trains again");
    assert_ne!(weights(&t.model), trained);
}

/// `Functional::layer_mut` finds a layer by its summary name (freezing a nested base).
#[test]
fn functional_layers_are_found_by_name() {
    use wgrad::nn::Functional;
    let dev = wgrad_testkit::device();
    let mut inner = Functional::new(&dev);
    let x = inner.input(&[6, 6, 1]);
    let h = inner.apply_named("conv", Conv2D::new(2, 3), x).unwrap();
    inner.outputs(&[h]).unwrap();
    let mut g = Functional::new(&dev);
    let x = g.input(&[6, 6, 1]);
    let h = g.apply_named("base", inner, x).unwrap();
    let h = g.apply_named("flat", Flatten::new(), h).unwrap();
    let y = g.apply_named("head", Dense::new(3), h).unwrap();
    g.outputs(&[y]).unwrap();
    let all = g.param_counts().0;
    g.layer_mut("base").unwrap().freeze(false);
    assert_eq!(g.param_counts().0, all - (2 * 9 + 2));
    assert!(g.layer_mut("nowhere").is_none());
    let names: Vec<String> = g.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"base/conv/kernel".to_string()), "{names:?}");
}

/// `History::mean_images_per_second` averages the epochs' rates (0 for an empty history).
#[test]
fn history_mean_rate() {
    use wgrad::nn::{EpochLog, History};
    let mut h = History::default();
    assert_eq!(h.mean_images_per_second(), 0.0);
    h.epochs = [100.0, 300.0]
        .map(|r| EpochLog {
            images_per_second: r,
            ..Default::default()
        })
        .to_vec();
    assert_eq!(h.mean_images_per_second(), 200.0);
}

/// The layer a user writes: a learned scale per channel, in four methods (`kind` comes from
/// the type's name).
struct ChannelScale {
    scale: Option<wgrad::nn::Param>,
}

impl Layer for ChannelScale {
    fn build(
        &mut self,
        dev: &Device,
        input: &[usize],
        _seed: u64,
    ) -> wgrad::nn::Result<Vec<usize>> {
        let c = *input.last().expect("a channel axis");
        let init: Vec<f32> = (0..c).map(|i| 0.5 + 0.25 * i as f32).collect();
        let w = Tensor::from_slice(dev, &init, &[c])?;
        self.scale = Some(wgrad::nn::Param::new("scale", w));
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: &Var, _ctx: &mut Ctx) -> wgrad::nn::Result<Var> {
        let w = self.scale.as_ref().expect("built").var();
        Ok(ops::mul(x, w)?)
    }

    fn params(&self) -> Vec<&wgrad::nn::Param> {
        self.scale.iter().collect()
    }

    fn params_mut(&mut self) -> Vec<&mut wgrad::nn::Param> {
        self.scale.iter_mut().collect()
    }
}

#[test]
fn a_custom_layer_in_four_methods_trains_in_a_model() {
    let dev = wgrad_testkit::device();
    check_layer(
        "ChannelScale",
        ChannelScale { scale: None },
        &[2, 3, 3, 4],
        2e-2,
    );
    let model = Sequential::new(&dev, &[6, 6, 1])
        .seed(4)
        .add(Conv2D::new(3, 3).same())
        .unwrap()
        .add(ChannelScale { scale: None })
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(4))
        .unwrap();
    let summary = model.summary(8);
    let row = summary
        .lines()
        .find(|l| l.contains("(ChannelScale)"))
        .unwrap_or_else(|| panic!("no ChannelScale row:\n{summary}"));
    // Name (kind), output shape, then the parameter count: one scale per channel.
    let params = row.split(')').nth(2).map(|r| r.split_whitespace().next());
    assert!(row.contains("(None, 6, 6, 3)"), "{row}");
    assert_eq!(params, Some(Some("3")), "{row}");
    let train = DataLoader::new(blobs(128, 1), 32).shuffle(true).seed(2);
    let mut t = Trainer::new(
        model,
        Optimizer::adam(2e-2),
        Loss::sparse_categorical_crossentropy(true),
    );
    let h = t.fit(&train, FitOptions::epochs(4).verbose(false)).unwrap();
    let losses: Vec<f32> = h.epochs.iter().map(|e| e.loss).collect();
    assert!(losses[3] < 0.5 * losses[0], "losses {losses:?}");
    // The scale is a weight like any other: it moved from its initial values.
    let scale = t.model.params()[2].value().to_vec::<f32>().unwrap();
    assert!((scale[0] - 0.5).abs() > 1e-3, "{scale:?}");
}

/// In training too, a ReLU whose only reader is a max pool moves past it (they commute): a
/// Conv2D's own ReLU and an `Activation(relu)` layer. Outputs and every gradient equal the
/// layer-by-layer run's exactly, with fewer dispatches; a ReLU output read twice stays put.
#[test]
fn a_relu_before_a_max_pool_moves_past_it_in_training() {
    use wgrad::nn::{Add, Functional};
    // Its own device: the dispatch counters must not see the other tests running in parallel.
    let dev = wgrad::Device::new().unwrap();
    let mut g = Functional::new(&dev).seed(12);
    let x = g.input(&[9, 9, 3]);
    let a = g
        .apply(Conv2D::new(8, 3).same().activation(Act::Relu), x)
        .unwrap();
    let a = g.apply(MaxPool2D::new(2), a).unwrap();
    let b = g.apply(Conv2D::new(8, 3).same(), a).unwrap();
    let b = g.apply(Activation(Act::Relu), b).unwrap();
    let b = g.apply(MaxPool2D::new(3).strides(2).same(), b).unwrap();
    // Read by the pool and by the sum: not moved.
    let c = g.apply(Conv2D::new(8, 1).activation(Act::Relu), b).unwrap();
    let cp = g.apply(MaxPool2D::new(1), c).unwrap();
    let s = g.merge(Add, &[cp, c]).unwrap();
    let f = g.apply(Flatten::new(), s).unwrap();
    let y = g.apply(Dense::new(3), f).unwrap();
    g.outputs(&[y]).unwrap();
    let mut rng = Rng::new(31);
    // Shifted down, so that many windows hold no positive value.
    let xs: Vec<f32> = rng.vec(2 * 9 * 9 * 3, -1.5, 0.7);
    let r = Tensor::from_slice(&dev, &rng.vec(6, -1.0, 1.0), &[2, 3]).unwrap();
    let run = |g: &mut Functional, fold: bool| {
        for p in g.params() {
            p.var().zero_grad();
        }
        let xv = Var::param(Tensor::from_slice(&dev, &xs, &[2, 9, 9, 3]).unwrap());
        let mut ctx = Ctx::new(true, 1);
        ctx.fold = fold;
        let d0 = dev.counters().dispatches;
        let y = g.forward(&xv, &mut ctx).unwrap();
        ops::sum(&ops::mul(&y, &Var::new(r.clone())).unwrap(), &[])
            .unwrap()
            .backward()
            .unwrap();
        dev.sync().unwrap();
        let dispatches = dev.counters().dispatches - d0;
        let mut out = vec![
            y.value().to_vec::<f32>().unwrap(),
            xv.grad().unwrap().to_vec::<f32>().unwrap(),
        ];
        for p in g.params() {
            out.push(p.grad().unwrap().to_vec::<f32>().unwrap());
        }
        (out, dispatches)
    };
    run(&mut g, false);
    let (want, unfolded) = run(&mut g, false);
    let (got, folded) = run(&mut g, true);
    assert_eq!(got.len(), want.len());
    for (k, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            got, want,
            "tensor {k} (output, input gradient, then weights)"
        );
    }
    assert!(
        want.iter().all(|t| t.iter().any(|&v| v != 0.0)),
        "every gradient is live"
    );
    // The Activation layer's forward and the two ReLU gradients are gone.
    assert!(
        folded + 3 <= unfolded,
        "moved {folded} dispatches, layer by layer {unfolded}"
    );
}
