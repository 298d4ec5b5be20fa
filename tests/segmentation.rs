//! Semantic segmentation: the zoo's U-Net against the Keras mini U-Net of
//! `tests/data/keras_vision.safetensors` (same layer names, Keras's weights imported; the
//! oracle applies a softmax to the logits the zoo model returns), per-pixel training through
//! `fit` on a mask dataset (pixel accuracy, loss falling), and the device metrics `MeanIou`
//! (against a confusion matrix counted in f64 here) and `box_iou` (against the definition).

use std::path::Path;

use wgrad::data::{DataLoader, Dataset};
use wgrad::nn::metrics::box_iou;
use wgrad::nn::{
    import_weights, predict, BoxIou, FitOptions, Import, Layer, Loss, MeanIou, Optimizer, Trainer,
};
use wgrad::Tensor;
use wgrad_testkit::{assert_close, check_gradient, Fd, Rng};

#[test]
fn zoo_unet_matches_the_keras_mini_unet() {
    let dev = wgrad_testkit::device();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keras_vision.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |name: &str| {
        let v = st.tensor(name).unwrap();
        let d: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (v.shape().to_vec(), d)
    };
    let (xs, xv) = get("mini_unet/input");
    let (ys, yv) = get("mini_unet/output");
    // Levels and widths from the oracle's weights: enc1's filters, one level per pool.
    let filters = get("mini_unet/enc1_conv1/kernel").0[3];
    let levels = st
        .names()
        .iter()
        .filter(|n| n.starts_with("mini_unet/enc") && n.ends_with("_conv1/kernel"))
        .count();
    let classes = ys[3];
    let ups: Vec<usize> = (1..=levels)
        .map(|l| get(&format!("mini_unet/up{l}/kernel")).0[0])
        .collect();
    let mut m = wgrad::models::UNet::new(levels, filters)
        .up_kernels(&ups)
        .build(&dev, [xs[1], xs[2], xs[3]], classes)
        .unwrap();
    let how = Import::keras()
        .prefix("mini_unet/")
        .ignore(&["input", "output", "labels", "loss"]);
    import_weights(&mut m, &file, &how).unwrap();
    let count: usize = m.params().iter().map(|p| p.numel()).sum();
    assert_eq!(count, 7_764);
    let x = Tensor::from_slice(&dev, &xv, &xs).unwrap();
    let logits = predict(&mut m, &x, 2).unwrap();
    let probs = logits.softmax(-1).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f64> = yv.iter().map(|&v| v as f64).collect();
    assert_close(&probs, &want, 1e-4, 1e-5);

    let Err(err) = wgrad::models::unet(&dev, [30, 32, 3], 4, 2, 4) else {
        panic!("30×32 does not halve twice into whole sizes")
    };
    assert!(err.to_string().contains("multiple of"), "{err}");
    dev.sync().unwrap();
}

/// Stripes: class = which third of the width a pixel is in, shown in the image as a channel
/// ramp plus noise; a small U-Net learns it in a few steps.
fn stripes(n: usize, seed: u64) -> Dataset {
    let (h, w) = (8, 12);
    let mut rng = Rng::new(seed);
    let mut images = Vec::new();
    let mut masks = Vec::new();
    for _ in 0..n {
        let flip = rng.uniform(0.0, 1.0) < 0.5;
        for _y in 0..h {
            for x in 0..w {
                let mut class = (x * 3 / w) as u32;
                if flip {
                    class = 2 - class;
                }
                images.push(class as f32 / 2.0 + rng.uniform(-0.2, 0.2));
                masks.push(class);
            }
        }
    }
    Dataset::with_masks(images, [h, w, 1], masks, 3).unwrap()
}

#[test]
fn unet_fits_masks_with_pixel_accuracy() {
    let dev = wgrad_testkit::device();
    let model = wgrad::models::unet(&dev, [8, 12, 1], 3, 2, 4).unwrap();
    let mut t = Trainer::new(
        model,
        Optimizer::adam(1e-2),
        Loss::sparse_categorical_crossentropy(true),
    )
    .seed(5);
    let train = DataLoader::new(stripes(64, 1), 16).shuffle(true).seed(2);
    let val = DataLoader::new(stripes(32, 9), 16);
    let h = t
        .fit(
            &train,
            FitOptions::epochs(12).validation(&val).verbose(false),
        )
        .unwrap();
    let first = &h.epochs[0];
    let last = h.epochs.last().unwrap();
    assert!(
        last.loss < 0.5 * first.loss,
        "{} -> {}",
        first.loss,
        last.loss
    );
    let acc = last.val_accuracy.unwrap();
    // Validation lags training while the moving statistics (momentum 0.99) catch up.
    assert!((0.85..=1.0).contains(&acc), "pixel accuracy {acc}");

    // The same accuracy and a mean IoU counted on the host from the predictions.
    let data = stripes(32, 9);
    let x = Tensor::from_slice(&dev, data.images(), &[32, 8, 12, 1]).unwrap();
    let scores = t.predict(&x, 16).unwrap();
    let labels = Tensor::from_slice(&dev, data.labels(), &[32, 8, 12]).unwrap();
    let mut miou = MeanIou::new(&dev, 3).unwrap();
    miou.update(&scores, &labels).unwrap();
    let s = scores.to_vec::<f32>().unwrap();
    let pred: Vec<usize> = s
        .chunks(3)
        .map(|c| (0..3).fold(0, |b, i| if c[i] > c[b] { i } else { b }))
        .collect();
    let hits = pred
        .iter()
        .zip(data.labels())
        .filter(|(p, l)| **p == **l as usize)
        .count();
    assert!((hits as f32 / pred.len() as f32 - acc).abs() < 1e-6);
    let host = host_mean_iou(&pred, data.labels(), 3);
    assert!((miou.result().unwrap() - host).abs() < 1e-9);
    dev.sync().unwrap();
}

fn host_mean_iou(pred: &[usize], labels: &[u32], c: usize) -> f64 {
    let mut m = vec![vec![0f64; c]; c];
    for (&p, &l) in pred.iter().zip(labels) {
        m[l as usize][p] += 1.0;
    }
    let ious: Vec<f64> = (0..c)
        .filter_map(|k| {
            let row: f64 = m[k].iter().sum();
            let col: f64 = (0..c).map(|i| m[i][k]).sum();
            let u = row + col - m[k][k];
            (u > 0.0).then(|| m[k][k] / u)
        })
        .collect();
    ious.iter().sum::<f64>() / ious.len() as f64
}

#[test]
fn mean_iou_counts_the_confusion_matrix_over_batches() {
    let dev = wgrad_testkit::device();
    let mut rng = Rng::new(4);
    let c = 5;
    let mut miou = MeanIou::new(&dev, c).unwrap();
    let (mut all_p, mut all_l) = (Vec::new(), Vec::new());
    for (n, h, w) in [(2, 6, 7), (3, 5, 5)] {
        let m = n * h * w;
        let scores = rng.vec(m * c, -1.0, 1.0);
        // Class 4 never appears in the labels, and only sometimes predicted.
        let labels: Vec<u32> = (0..m).map(|_| (rng.next_u64() % 4) as u32).collect();
        let st = Tensor::from_slice(&dev, &scores, &[n, h, w, c]).unwrap();
        let lt = Tensor::from_slice(&dev, &labels, &[n, h, w]).unwrap();
        miou.update(&st, &lt).unwrap();
        all_p.extend(
            scores
                .chunks(c)
                .map(|s| (0..c).fold(0, |b, i| if s[i] > s[b] { i } else { b })),
        );
        all_l.extend(labels);
    }
    let host = host_mean_iou(&all_p, &all_l, c);
    assert!((miou.result().unwrap() - host).abs() < 1e-9);
    let cm = miou.confusion().unwrap();
    assert_eq!(cm.iter().flatten().sum::<f64>(), all_l.len() as f64);
    // A class in neither labels nor predictions has no IoU.
    let mut two = MeanIou::new(&dev, 3).unwrap();
    let p = Tensor::from_slice(&dev, &[0u32, 1, 1, 0], &[4]).unwrap();
    let l = Tensor::from_slice(&dev, &[0u32, 1, 0, 0], &[4]).unwrap();
    two.update_classes(&p, &l).unwrap();
    let per = two.per_class().unwrap();
    assert_eq!(per[2], None);
    assert!((per[0].unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!((per[1].unwrap() - 0.5).abs() < 1e-12);
    // Wrong shapes and dtypes are typed input errors.
    let bad = Tensor::from_slice(&dev, &[0.0f32; 4 * 4], &[4, 4]).unwrap();
    assert!(two.update(&bad, &l).is_err());
    let f = Tensor::from_slice(&dev, &[0.0f32; 4], &[4]).unwrap();
    let s3 = Tensor::from_slice(&dev, &[0.0f32; 4 * 3], &[4, 3]).unwrap();
    assert!(two.update(&s3, &f).is_err());
    assert!(MeanIou::new(&dev, 1).is_err());
    dev.sync().unwrap();
}

#[test]
fn box_iou_matches_the_definition() {
    let dev = wgrad_testkit::device();
    let mut rng = Rng::new(11);
    let n = 50;
    let mut a = rng.vec(n * 4, 0.0, 1.0);
    let b = rng.vec(n * 4, 0.0, 1.0);
    // Identical, disjoint and empty boxes.
    a[..4].copy_from_slice(&b[..4]);
    a[4..8].copy_from_slice(&[2.0, 2.0, 3.0, 3.0]);
    a[8..12].copy_from_slice(&[0.5, 0.5, 0.5, 0.9]);
    let at = Tensor::from_slice(&dev, &a, &[n, 4]).unwrap();
    let bt = Tensor::from_slice(&dev, &b, &[n, 4]).unwrap();
    let got = box_iou(&at, &bt).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f64> = a
        .chunks(4)
        .zip(b.chunks(4))
        .map(|(x, y)| wgrad_testkit::box_iou_f64(x, y))
        .collect();
    assert_close(&got, &want, 1e-5, 1e-6);
    assert!((got[0] - 1.0).abs() < 1e-6 && got[1] == 0.0 && got[2] == 0.0);
    let mut m = BoxIou::new(&dev).unwrap();
    m.update(&at, &bt).unwrap();
    m.update(&bt, &bt).unwrap();
    let mean = (want.iter().sum::<f64>() + n as f64) / (2 * n) as f64;
    assert!((m.result().unwrap() - mean).abs() < 1e-5);
    let wrong = Tensor::from_slice(&dev, &a[..n * 2], &[n, 2]).unwrap();
    assert!(box_iou(&wrong, &wrong).is_err());
    dev.sync().unwrap();
}

/// Keras's class_weight on the sparse cross-entropy: mean over positions of w[label]·CE, from
/// logits and from probabilities, against f64; wrong lengths and losses are typed errors.
#[test]
fn class_weighted_cross_entropy_matches_f64() {
    let dev = wgrad_testkit::device();
    let mut rng = Rng::new(21);
    let (n, h, w, c) = (2, 3, 4, 3);
    let m = n * h * w;
    let logits = rng.vec(m * c, -2.0, 2.0);
    let labels: Vec<u32> = (0..m).map(|_| (rng.next_u64() % c as u64) as u32).collect();
    let weights = [0.2f32, 1.0, 3.5];
    let lt = Tensor::from_slice(&dev, &labels, &[n, h, w]).unwrap();
    let mut want = 0f64;
    let mut want_p = 0f64;
    let mut probs = Vec::new();
    for (row, &l) in logits.chunks(c).zip(&labels) {
        let mx = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
        let logp = row[l as usize] as f64 - mx - z.ln();
        want += weights[l as usize] as f64 * -logp;
        let p: Vec<f32> = row
            .iter()
            .map(|&v| ((v as f64 - mx).exp() / z) as f32)
            .collect();
        want_p += weights[l as usize] as f64 * -(p[l as usize] as f64).ln();
        probs.extend(p);
    }
    let (want, want_p) = (want / m as f64, want_p / m as f64);
    let x = wgrad::graph::Var::new(Tensor::from_slice(&dev, &logits, &[n, h, w, c]).unwrap());
    let got = Loss::sparse_categorical_crossentropy(true)
        .compute_class_weighted(&x, &lt, &weights)
        .unwrap();
    let got = got.value().to_vec::<f32>().unwrap()[0] as f64;
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    let p = wgrad::graph::Var::new(Tensor::from_slice(&dev, &probs, &[n, h, w, c]).unwrap());
    let got_p = Loss::sparse_categorical_crossentropy(false)
        .compute_class_weighted(&p, &lt, &weights)
        .unwrap();
    let got_p = got_p.value().to_vec::<f32>().unwrap()[0] as f64;
    assert!(
        (got_p - want_p).abs() < 1e-5 * want_p,
        "{got_p} vs {want_p}"
    );
    // Unit weights are the plain loss.
    let plain = Loss::sparse_categorical_crossentropy(true)
        .compute(&x, &lt)
        .unwrap()
        .value()
        .to_vec::<f32>()
        .unwrap()[0];
    let ones = Loss::sparse_categorical_crossentropy(true)
        .compute_class_weighted(&x, &lt, &[1.0; 3])
        .unwrap()
        .value()
        .to_vec::<f32>()
        .unwrap()[0];
    assert!((plain - ones).abs() < 1e-6);
    let e = Loss::sparse_categorical_crossentropy(true)
        .compute_class_weighted(&x, &lt, &[1.0; 2])
        .unwrap_err();
    assert!(e.to_string().contains("one per class"), "{e}");
    assert!(Loss::MeanSquaredError
        .compute_class_weighted(&x, &lt, &weights)
        .is_err());
    dev.sync().unwrap();
}

/// The whole U-Net's input gradient (encoder, both skips, transposed convolutions, the
/// concatenations) against central finite differences of `sum(logits · r)` in f64-accumulated
/// f32, at a sample of input positions; inference mode so batch norm is a fixed affine map.
#[test]
fn unet_input_gradient_matches_finite_differences() {
    use wgrad::graph::{ops, Var};
    use wgrad::nn::Ctx;
    let dev = wgrad_testkit::device();
    let mut m = wgrad::models::unet(&dev, [8, 8, 2], 3, 2, 4).unwrap();
    let mut rng = Rng::new(3);
    let xv = rng.vec(8 * 8 * 2, -1.0, 1.0);
    let rv = rng.vec(8 * 8 * 3, -1.0, 1.0);
    let r = Tensor::from_slice(&dev, &rv, &[1, 8, 8, 3]).unwrap();
    let mut f = |x: &[f32], grad: bool| -> (f64, Option<Vec<f32>>) {
        let t = Tensor::from_slice(&dev, x, &[1, 8, 8, 2]).unwrap();
        let xvar = if grad { Var::param(t) } else { Var::new(t) };
        let mut ctx = Ctx::new(false, 0);
        ctx.fold = false;
        let y = m.forward(&xvar, &mut ctx).unwrap();
        let l = ops::sum(&ops::mul(&y, &Var::new(r.clone())).unwrap(), &[]).unwrap();
        let v = l.value().to_vec::<f32>().unwrap()[0] as f64;
        if grad {
            l.backward().unwrap();
            (v, Some(xvar.grad().unwrap().to_vec::<f32>().unwrap()))
        } else {
            (v, None)
        }
    };
    let (_, g) = f(&xv, true);
    let g = g.unwrap();
    // ReLU kinks within ±eps can move a difference by a little; a wrong skip or
    // transposed-conv gradient is off by order one.
    let fd = Fd::new(1e-3).tol(5e-2, 5e-3).at_most(xv.len() / 7);
    check_gradient("d/dx", &xv, &g, fd, |p| f(p, false).0);
    dev.sync().unwrap();
}

/// A class + box model trains through `fit` from one loader: the sparse loss gets the
/// labels, the MSE the float targets; accuracy is the class head's. Geometric augmentation
/// with float targets is refused, and float losses without targets are typed errors.
#[test]
fn fit_feeds_labels_and_box_targets_to_two_heads() {
    use wgrad::data::Transform;
    use wgrad::nn::layers::{Dense, Flatten};
    use wgrad::nn::{predict_multi, Act, Functional};
    let dev = wgrad_testkit::device();
    // Class = which half holds the bright pixel; box target = that pixel's cell.
    let mut rng = Rng::new(8);
    let (mut images, mut labels, mut boxes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..96 {
        let p = (rng.next_u64() % 16) as usize;
        let mut img = vec![0f32; 16];
        img[p] = 1.0;
        images.extend(img);
        labels.push((p % 4 >= 2) as u32);
        let (y, x) = ((p / 4) as f32 / 4.0, (p % 4) as f32 / 4.0);
        boxes.extend([y, x, y + 0.25, x + 0.25]);
    }
    let ds = Dataset::new(images, [4, 4, 1], labels, 2)
        .unwrap()
        .with_targets(boxes, &[4])
        .unwrap();
    let mut g = Functional::new(&dev).seed(3);
    let x = g.input(&[4, 4, 1]);
    let h = g.apply_named("flat", Flatten::new(), x).unwrap();
    let h = g
        .apply_named("fc", Dense::new(32).activation(Act::Relu), h)
        .unwrap();
    let c = g
        .apply_named("class_head", Dense::new(2).activation(Act::Softmax), h)
        .unwrap();
    let b = g
        .apply_named("box_head", Dense::new(4).activation(Act::Sigmoid), h)
        .unwrap();
    g.outputs(&[c, b]).unwrap();
    let mut t = Trainer::multi_output(
        g,
        Optimizer::adam(1e-2),
        vec![
            (Loss::sparse_categorical_crossentropy(false), 0.8),
            (Loss::MeanSquaredError, 0.2),
        ],
    );
    let loader = DataLoader::new(ds.clone(), 16).shuffle(true);
    let h = t
        .fit(&loader, FitOptions::epochs(30).verbose(false))
        .unwrap();
    let last = h.epochs.last().unwrap();
    assert!(last.loss < 0.2 * h.epochs[0].loss, "{:?}", h.epochs[0]);
    assert!(last.accuracy.unwrap() > 0.95, "{last:?}");
    let xs = Tensor::from_slice(&dev, ds.images(), &[96, 4, 4, 1]).unwrap();
    let outs = predict_multi(&mut t.model, &xs, 32).unwrap();
    let truth = Tensor::from_slice(&dev, ds.targets(), &[96, 4]).unwrap();
    let mut iou = BoxIou::new(&dev).unwrap();
    iou.update(&outs[1], &truth).unwrap();
    assert!(iou.result().unwrap() > 0.5, "{}", iou.result().unwrap());
    // The evaluated loss is the same weighted sum, here against the trained model.
    let e = t.evaluate(&DataLoader::new(ds.clone(), 32)).unwrap();
    assert!(
        (e.loss - last.loss).abs() < 0.5 * last.loss.max(0.02),
        "{e:?}"
    );

    let flipping = DataLoader::new(ds.clone(), 16).transform(Transform::random_horizontal_flip());
    let err = t
        .fit(&flipping, FitOptions::epochs(1).verbose(false))
        .unwrap_err();
    assert!(err.to_string().contains("float targets"), "{err}");
    let plain = Dataset::new(vec![0.0; 16 * 4], [4, 4, 1], vec![0; 4], 2).unwrap();
    // fit continues from the epochs done, so ask for one more.
    let more = FitOptions::epochs(t.epochs_done() + 1).verbose(false);
    let err = t.fit(&DataLoader::new(plain, 4), more).unwrap_err();
    assert!(err.to_string().contains("with_targets"), "{err}");
    dev.sync().unwrap();
}
