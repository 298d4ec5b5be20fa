//! Training parity with Keras, optimizer by optimizer: `tests/data/keras_training.safetensors`
//! holds a small model (Conv2D ReLU, BatchNormalization in training mode, MaxPool, Flatten,
//! Dense softmax) trained by Keras 3's `train_on_batch` from the same initial weights on the
//! same batches, once per optimizer, with each step's loss (before that step's update) and the
//! weights and moving statistics after the last step. The configurations come from the file's
//! metadata, and so does the number of steps; the layer shapes come from the initial weights.
//! Replayed with wgrad's layers, optimizers and `train_step`, every step's loss must agree to
//! 1e-4 relative and every final tensor to 1e-3 of its largest magnitude.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wgrad::nn::layers::{BatchNormalization, Conv2D, Dense, Flatten, MaxPool2D};
use wgrad::nn::{import_weights, Act, Import, Layer, Loss, Optimizer, Sequential, Trainer};
use wgrad::{Device, Tensor};

fn file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keras_training.safetensors")
}

struct Oracle {
    bytes: Vec<u8>,
    meta: std::collections::HashMap<String, String>,
}

impl Oracle {
    fn load() -> Oracle {
        let bytes = std::fs::read(file()).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = m.metadata().clone().unwrap_or_default();
        Oracle { bytes, meta }
    }

    fn json(&self, key: &str) -> Value {
        serde_json::from_str(&self.meta[key]).unwrap()
    }

    fn tensor(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let v = st.tensor(name).ok()?;
        let data = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some((v.shape().to_vec(), data))
    }

    /// The optimizers of the file: every metadata entry but the model's.
    fn optimizers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .meta
            .keys()
            .filter(|k| *k != "model")
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// The model of the file's metadata; filters, kernel size and the pooled extent come from the
/// initial weights: conv (kh, kw, c, f), head (h'·w'·f, classes).
fn model(dev: &Device, o: &Oracle) -> Sequential {
    let meta = o.json("model");
    let classes: Vec<&str> = meta["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cls"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "Conv2D",
            "BatchNormalization",
            "MaxPooling2D",
            "Flatten",
            "Dense"
        ],
        "the architecture this test replays"
    );
    let input: Vec<usize> = meta["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (ks, _) = o.tensor("init/conv/kernel").unwrap();
    let (hs, _) = o.tensor("init/head/kernel").unwrap();
    let (kh, filters) = (ks[0], ks[3]);
    // Valid convolution, then a 2x2 pool: the head's input rows tell the pool size apart.
    let conv_out = input[1] - kh + 1;
    let pooled = ((hs[0] / filters) as f64).sqrt().round() as usize;
    let pool = conv_out / pooled;
    assert_eq!(pooled * pooled * filters, hs[0], "head rows");
    Sequential::new(dev, &input[1..])
        .add_named("conv", Conv2D::new(filters, kh).activation(Act::Relu))
        .and_then(|m| m.add_named("bn", BatchNormalization::new()))
        .and_then(|m| m.add_named("pool", MaxPool2D::new(pool)))
        .and_then(|m| m.add_named("flatten", Flatten::new()))
        .and_then(|m| m.add_named("head", Dense::new(hs[1]).activation(Act::Softmax)))
        .unwrap()
}

/// The wgrad optimizer for one metadata entry (Keras's `get_config()`).
fn optimizer(cfg: &Value) -> Optimizer {
    let f = |k: &str| cfg[k].as_f64().unwrap_or_else(|| panic!("{k} in {cfg}")) as f32;
    let lr = f("learning_rate");
    for k in ["clipnorm", "clipvalue", "global_clipnorm"] {
        assert!(cfg[k].is_null(), "{k} is not replayed here");
    }
    assert_eq!(cfg["use_ema"], Value::Bool(false));
    let name = cfg["name"].as_str().unwrap();
    if name.starts_with("sgd") {
        Optimizer::sgd(lr)
            .momentum(f("momentum"))
            .nesterov(cfg["nesterov"].as_bool().unwrap())
    } else if name.starts_with("rm_sprop") {
        assert!(!cfg["centered"].as_bool().unwrap());
        assert_eq!(f("momentum"), 0.0);
        Optimizer::rmsprop(lr).rho(f("rho")).epsilon(f("epsilon"))
    } else if name.starts_with("adam_w") {
        Optimizer::adamw(lr, f("weight_decay"))
            .betas(f("beta_1"), f("beta_2"))
            .epsilon(f("epsilon"))
    } else if name.starts_with("adam") {
        Optimizer::adam(lr)
            .betas(f("beta_1"), f("beta_2"))
            .epsilon(f("epsilon"))
    } else if name.starts_with("nadam") {
        Optimizer::nadam(lr)
            .betas(f("beta_1"), f("beta_2"))
            .epsilon(f("epsilon"))
    } else {
        panic!("optimizer {name} has no wgrad counterpart in this test")
    }
}

/// Replays one optimizer's trajectory; returns the worst loss and weight deviations.
fn replay(dev: &Device, o: &Oracle, opt: &str) -> (f64, f64) {
    let steps = o.json("model")["steps"].as_u64().unwrap() as usize;
    let mut m = model(dev, o);
    let how = Import::keras().prefix("init/");
    import_weights(&mut m, file(), &how).unwrap_or_else(|e| panic!("{opt}: {e}"));
    let mut trainer = Trainer::new(
        m,
        optimizer(&o.json(opt)),
        Loss::sparse_categorical_crossentropy(false),
    );
    let (_, want_loss) = o.tensor(&format!("{opt}/loss")).unwrap();
    assert_eq!(want_loss.len(), steps, "{opt}: one loss per step");
    let mut worst_loss = 0f64;
    for (k, &want) in want_loss.iter().enumerate() {
        let (xs, xv) = o.tensor(&format!("batch{k}/x")).unwrap();
        let (_, yv) = o.tensor(&format!("batch{k}/y")).unwrap();
        let labels: Vec<u32> = yv.iter().map(|&v| v as u32).collect();
        let x = Tensor::from_slice(dev, &xv, &xs).unwrap();
        let y = Tensor::from_slice(dev, &labels, &[labels.len()]).unwrap();
        let (loss, _) = trainer.train_step(&x, &y).unwrap();
        let got = loss.to_vec::<f32>().unwrap()[0] as f64;
        let want = want as f64;
        let rel = (got - want).abs() / want.abs();
        assert!(
            rel < 1e-4,
            "{opt}: step {k} loss {got} vs Keras {want} (relative {rel:.2e})"
        );
        worst_loss = worst_loss.max(rel);
    }
    let mut worst_weight = 0f64;
    let mut compared = 0;
    for (name, p) in trainer.model.named_params() {
        let Some((shape, want)) = o.tensor(&format!("{opt}/{name}")) else {
            continue;
        };
        assert_eq!(p.shape(), &shape[..], "{opt}/{name}");
        let got = p.value().to_vec::<f32>().unwrap();
        let scale = want.iter().fold(0f64, |s, &v| s.max(v.abs() as f64));
        let dev_max = got
            .iter()
            .zip(&want)
            .fold(0f64, |s, (&g, &w)| s.max((g as f64 - w as f64).abs()));
        let rel = dev_max / scale.max(1e-12);
        assert!(
            rel < 1e-3,
            "{opt}/{name}: largest deviation {dev_max:.3e} is {rel:.2e} of the tensor's scale {scale:.3e}"
        );
        worst_weight = worst_weight.max(rel);
        compared += 1;
    }
    assert_eq!(
        compared, 8,
        "{opt}: kernel and bias of conv and head, gamma, beta and both moving statistics of bn"
    );
    dev.sync().unwrap();
    (worst_loss, worst_weight)
}

#[test]
fn every_optimizer_trains_as_keras_step_for_step() {
    let dev = wgrad_testkit::device();
    let o = Oracle::load();
    let opts = o.optimizers();
    assert!(opts.len() >= 7, "{opts:?}");
    for opt in &opts {
        let (l, w) = replay(&dev, &o, opt);
        println!("{opt:>14}: loss within {l:.1e} relative, weights within {w:.1e} of scale");
    }
}
