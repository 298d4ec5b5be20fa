//! Semantic segmentation: the zoo's U-Net against the Keras mini U-Net of
//! `tests/data/keras_vision.safetensors` (same layer names, Keras's weights imported; the
//! oracle applies a softmax to the logits the zoo model returns), per-pixel training through
//! `fit` on a mask dataset (pixel accuracy, loss falling), and the device metrics `MeanIou`
//! (against a confusion matrix counted in f64 here) and `box_iou` (against the definition).

mod common;

use std::path::Path;

use common::{assert_close, Rng};
use wgrad::data::{DataLoader, Dataset};
use wgrad::nn::metrics::box_iou;
use wgrad::nn::{
    import_weights, predict, BoxIou, FitOptions, Import, Layer, Loss, MeanIou, Optimizer, Trainer,
};
use wgrad::Tensor;

#[test]
fn zoo_unet_matches_the_keras_mini_unet() {
    let dev = common::device();
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
    let dev = common::device();
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
    let dev = common::device();
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

fn iou_ref(a: &[f32], b: &[f32]) -> f64 {
    let c = |v: &[f32]| {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        (
            v[0].min(v[2]),
            v[1].min(v[3]),
            v[0].max(v[2]),
            v[1].max(v[3]),
        )
    };
    let (ay0, ax0, ay1, ax1) = c(a);
    let (by0, bx0, by1, bx1) = c(b);
    let inter = (ay1.min(by1) - ay0.max(by0)).max(0.0) * (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    let union = (ay1 - ay0) * (ax1 - ax0) + (by1 - by0) * (bx1 - bx0) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

#[test]
fn box_iou_matches_the_definition() {
    let dev = common::device();
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
        .map(|(x, y)| iou_ref(x, y))
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
