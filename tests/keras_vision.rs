//! Keras parity for the vision-task models: `tests/data/keras_vision.safetensors` holds a mini
//! U-Net (per-pixel softmax), a fully convolutional detector with a YOLO-style grid head and a
//! classification + localization model with two heads, each with Keras 3's weights, an input
//! batch, Keras's outputs in inference mode and Keras's loss on stored labels.
//!
//! Every model is built here from the file's metadata, layer by layer, so other models of the
//! same kinds are checked the same way. The metadata lists layers in order; two graph rules
//! turn the list into a graph, as the generator writes its models:
//! - a `Concatenate` joins the running tensor with the last tensor of the same height and
//!   width that fed a pooling layer (the U-Net skip), in the order `[running, skip]`;
//! - consecutive layers named `*_head` are parallel outputs, each reading the tensor before
//!   the first of them; the output `output_<x>` belongs to the head `<x>_head`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wgrad::graph::{no_grad, Var};
use wgrad::nn::layers::{
    Activation, BatchNormalization, Conv2D, Conv2DTranspose, Dense, GlobalAvgPool2D, MaxPool2D,
};
use wgrad::nn::{import_weights, Act, Concatenate, Ctx, Functional, Import, Layer, Loss, Tap};
use wgrad::{Device, Padding, Tensor};
use wgrad_testkit::assert_close;

fn file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keras_vision.safetensors")
}

struct Oracle {
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl Oracle {
    fn load() -> Oracle {
        let bytes = std::fs::read(file()).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = m.metadata().clone().unwrap_or_default();
        Oracle { bytes, meta }
    }

    fn models(&self) -> Vec<String> {
        let mut v: Vec<String> = self.meta.keys().cloned().collect();
        v.sort();
        v
    }

    fn json(&self, model: &str) -> Value {
        serde_json::from_str(&self.meta[model]).unwrap()
    }

    /// Every tensor of `model/` that is not a weight: its role (after the prefix) with data.
    fn roles(&self, model: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let prefix = format!("{model}/");
        st.tensors()
            .into_iter()
            .filter_map(|(name, v)| {
                let role = name.strip_prefix(&prefix)?;
                // Weights are `layer/weight`; inputs, outputs, labels and the loss have no slash.
                if role.contains('/') {
                    return None;
                }
                let data = v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Some((role.to_string(), (v.shape().to_vec(), data)))
            })
            .collect()
    }
}

fn usize_pair(v: &Value) -> [usize; 2] {
    let a = v.as_array().expect("a pair");
    [
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    ]
}

fn act(name: &str) -> Act {
    match name {
        "linear" => Act::Linear,
        "relu" => Act::Relu,
        "softmax" => Act::Softmax,
        "sigmoid" => Act::Sigmoid,
        "tanh" => Act::Tanh,
        other => panic!("activation {other} is not in this test's table"),
    }
}

fn padding(l: &Value) -> Padding {
    match l["padding"].as_str().unwrap_or("valid") {
        "same" => Padding::Same,
        "valid" => Padding::Valid,
        p => panic!("padding {p}"),
    }
}

/// The model described by `meta`, its outputs in the order of the heads (or the last layer),
/// with the stored output role of each.
fn build(dev: &Device, meta: &Value) -> (Functional, Vec<String>) {
    let input = meta["input_shape"].as_array().unwrap();
    let sample: Vec<usize> = input[1..]
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut g = Functional::new(dev);
    let mut x = g.input(&sample);
    // Tensors that fed a pooling layer: the skip candidates of a later Concatenate.
    let mut pooled_inputs: Vec<Tap> = Vec::new();
    let mut head_source: Option<Tap> = None;
    let mut heads: Vec<(String, Tap)> = Vec::new();
    for l in meta["layers"].as_array().unwrap() {
        let name = l["name"].as_str().unwrap();
        let cls = l["cls"].as_str().unwrap();
        let is_head = name.ends_with("_head");
        let from = if is_head {
            *head_source.get_or_insert(x)
        } else {
            x
        };
        let y = match cls {
            "InputLayer" => continue,
            "Conv2D" => {
                let [kh, kw] = usize_pair(&l["kernel_size"]);
                let [sh, sw] = usize_pair(&l["strides"]);
                let layer = Conv2D::new(l["filters"].as_u64().unwrap() as usize, kh)
                    .kernel_size(kh, kw)
                    .strides_hw(sh, sw)
                    .padding(padding(l))
                    .activation(act(l["activation"].as_str().unwrap()))
                    .use_bias(l["use_bias"].as_bool().unwrap());
                g.apply_named(name, layer, from)
            }
            "Conv2DTranspose" => {
                let [kh, kw] = usize_pair(&l["kernel_size"]);
                let [sh, sw] = usize_pair(&l["strides"]);
                assert_eq!((kh, sh), (kw, sw), "square windows in this test");
                let layer = Conv2DTranspose::new(l["filters"].as_u64().unwrap() as usize, kh)
                    .strides(sh)
                    .padding(padding(l));
                assert_eq!(l["activation"], "linear");
                assert!(l["use_bias"].as_bool().unwrap());
                g.apply_named(name, layer, from)
            }
            "BatchNormalization" => {
                assert_eq!(l["axis"], -1);
                let layer = BatchNormalization::new()
                    .epsilon(l["epsilon"].as_f64().unwrap() as f32)
                    .momentum(l["momentum"].as_f64().unwrap() as f32);
                g.apply_named(name, layer, from)
            }
            "Activation" => g.apply_named(
                name,
                Activation(act(l["activation"].as_str().unwrap())),
                from,
            ),
            "LeakyReLU" => {
                let slope = l["negative_slope"].as_f64().unwrap() as f32;
                g.apply_named(name, Activation(Act::LeakyRelu(slope)), from)
            }
            "MaxPooling2D" => {
                let [p, q] = usize_pair(&l["pool_size"]);
                let [s, t] = usize_pair(&l["strides"]);
                assert_eq!((p, s), (q, t), "square windows in this test");
                pooled_inputs.push(from);
                g.apply_named(name, MaxPool2D::new(p).strides(s).padding(padding(l)), from)
            }
            "GlobalAveragePooling2D" => g.apply_named(name, GlobalAvgPool2D::new(), from),
            "Dense" => {
                let layer = Dense::new(l["units"].as_u64().unwrap() as usize)
                    .activation(act(l["activation"].as_str().unwrap()))
                    .use_bias(l["use_bias"].as_bool().unwrap());
                g.apply_named(name, layer, from)
            }
            "Concatenate" => {
                let axis = l["axis"].as_i64().unwrap() as isize;
                let hw = g.shape(from)[..2].to_vec();
                let skip = *pooled_inputs
                    .iter()
                    .rev()
                    .find(|t| g.shape(**t)[..2] == hw[..])
                    .unwrap_or_else(|| panic!("{name}: no pooled tensor of size {hw:?}"));
                g.merge_named(name, Concatenate { axis }, &[from, skip])
            }
            other => panic!("layer class {other} is not in this test's table"),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        if is_head {
            let role = format!("output_{}", name.trim_end_matches("_head"));
            heads.push((role, y));
        } else {
            head_source = None;
            x = y;
        }
    }
    let (roles, taps): (Vec<String>, Vec<Tap>) = if heads.len() > 1 {
        heads.into_iter().unzip()
    } else {
        (
            vec!["output".to_string()],
            vec![heads.first().map_or(x, |h| h.1)],
        )
    };
    g.outputs(&taps).unwrap();
    (g, roles)
}

/// Keras's loss for the model: per-pixel sparse CE for a mask, 0.8·CE + 0.2·MSE for the
/// class + box model.
fn loss(
    dev: &Device,
    outputs: &[Var],
    out_roles: &[String],
    roles: &HashMap<String, (Vec<usize>, Vec<f32>)>,
) -> Option<f32> {
    let labels = |role: &str| {
        let (s, v) = &roles[role];
        let u: Vec<u32> = v.iter().map(|&c| c as u32).collect();
        Tensor::from_slice(dev, &u, s).unwrap()
    };
    let ce = Loss::sparse_categorical_crossentropy(false);
    let value = if roles.contains_key("labels") {
        ce.compute(&outputs[0], &labels("labels")).unwrap()
    } else if roles.contains_key("labels_class") {
        let pos = |r: &str| out_roles.iter().position(|o| o == r).unwrap();
        let (bs, bv) = &roles["labels_box"];
        let boxes = Tensor::from_slice(dev, bv, bs).unwrap();
        let c = ce
            .compute(&outputs[pos("output_class")], &labels("labels_class"))
            .unwrap();
        let b = Loss::MeanSquaredError
            .compute(&outputs[pos("output_box")], &boxes)
            .unwrap();
        let c = wgrad::graph::ops::mul_scalar(&c, 0.8).unwrap();
        let b = wgrad::graph::ops::mul_scalar(&b, 0.2).unwrap();
        wgrad::graph::ops::add(&c, &b).unwrap()
    } else {
        return None;
    };
    Some(value.value().to_vec::<f32>().unwrap()[0])
}

#[test]
fn vision_models_match_keras() {
    let dev = wgrad_testkit::device();
    let o = Oracle::load();
    let models = o.models();
    assert!(models.len() >= 3, "{models:?}");
    let mut losses_checked = 0;
    for name in &models {
        let meta = o.json(name);
        let (mut g, out_roles) = build(&dev, &meta);
        let roles = o.roles(name);
        let ignore: Vec<&str> = roles.keys().map(String::as_str).collect();
        let how = Import::keras().prefix(&format!("{name}/")).ignore(&ignore);
        import_weights(&mut g, file(), &how).unwrap_or_else(|e| panic!("{name}: {e}"));
        let count: usize = g.params().iter().map(|p| p.numel()).sum();
        // Keras counts the moving statistics among a model's parameters, as wgrad does.
        assert_eq!(
            count as u64,
            meta["total_params"].as_u64().unwrap(),
            "{name}"
        );

        let (xs, xv) = &roles["input"];
        let x = Tensor::from_slice(&dev, xv, xs).unwrap();
        for fold in [true, false] {
            let outputs = no_grad(|| {
                let mut ctx = Ctx::new(false, 0);
                ctx.fold = fold;
                g.forward_multi(&[Var::new(x.clone())], &mut ctx).unwrap()
            });
            for (out, role) in outputs.iter().zip(&out_roles) {
                let (ys, yv) = &roles[role];
                assert_eq!(out.shape(), &ys[..], "{name} {role}");
                let want: Vec<f64> = yv.iter().map(|&v| v as f64).collect();
                assert_close(&out.value().to_vec::<f32>().unwrap(), &want, 1e-4, 1e-5);
            }
            if let Some(got) = loss(&dev, &outputs, &out_roles, &roles) {
                let want = roles["loss"].1[0] as f64;
                assert!(
                    (got as f64 - want).abs() <= 1e-4 * want.abs() + 1e-5,
                    "{name} (fold {fold}): loss {got} against Keras's {want}"
                );
                losses_checked += 1;
            }
        }
    }
    assert!(losses_checked >= 4, "{losses_checked} losses checked");
    dev.sync().unwrap();
}

/// The per-pixel loss needs labels shaped as the predictions without their class axis.
#[test]
fn per_pixel_labels_of_the_wrong_shape_are_typed_errors() {
    let dev = wgrad_testkit::device();
    let p = Var::new(Tensor::rand_uniform(&dev, &[2, 4, 4, 3], 0.1, 0.9, 1).unwrap());
    let bad = Tensor::from_slice(&dev, &[0u32; 2 * 16], &[2, 16]).unwrap();
    let err = Loss::sparse_categorical_crossentropy(false)
        .compute(&p, &bad)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("[2, 4, 4]"), "{msg}");
    let good = Tensor::from_slice(&dev, &[1u32; 2 * 16], &[2, 4, 4]).unwrap();
    let v = Loss::sparse_categorical_crossentropy(false)
        .compute(&p, &good)
        .unwrap();
    let probs = p.value().to_vec::<f32>().unwrap();
    let want: f64 = probs
        .chunks(3)
        .map(|c| -(c[1] as f64).clamp(1e-7, 1.0 - 1e-7).ln())
        .sum::<f64>()
        / 32.0;
    let got = v.value().to_vec::<f32>().unwrap()[0] as f64;
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
}
