//! Whole-model parity with Keras: `tests/data/keras_models.safetensors` holds three small
//! Keras 3 models' weights under Keras's layer names, an input batch and Keras's outputs in
//! inference mode (batch-norm moving statistics set). The same architectures built from wgrad
//! layers with the same names load those weights through the Keras importer and must give
//! the same outputs. The PyTorch path is checked by writing a model's weights in PyTorch's
//! names and layouts (converted here by independent index arithmetic) and importing them back.

use std::path::{Path, PathBuf};

use wgrad::nn::layers::{
    Activation, AvgPool2D, BatchNormalization, Conv2D, Conv2DTranspose, Dense, DepthwiseConv2D,
    Flatten, GlobalAvgPool2D, MaxPool2D, Reshape, SeparableConv2D,
};
use wgrad::nn::{
    import_weights, predict, Act, Add, Error, Functional, Import, Layer, Multiply, Sequential,
};
use wgrad::{Device, Tensor};
use wgrad_testkit::assert_close;

fn file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keras_models.safetensors")
}

/// A tensor of the file: shape and data.
type Stored = (Vec<usize>, Vec<f32>);

/// `model/input` and `model/output` of the file.
fn io(model: &str) -> (Stored, Stored) {
    let bytes = std::fs::read(file()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |role: &str| {
        let v = st.tensor(&format!("{model}/{role}")).unwrap();
        let data = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (v.shape().to_vec(), data)
    };
    (get("input"), get("output"))
}

/// Imports `model`'s weights from the file and compares its inference output with Keras's.
fn check(dev: &Device, name: &str, model: &mut dyn Layer, want_params: usize) {
    let how = Import::keras()
        .prefix(&format!("{name}/"))
        .ignore(&["input", "output"]);
    import_weights(model, file(), &how).unwrap();
    let count: usize = model.params().iter().map(|p| p.numel()).sum();
    assert_eq!(count, want_params, "{name}: parameter count");
    let ((xs, xv), (ys, yv)) = io(name);
    let x = Tensor::from_slice(dev, &xv, &xs).unwrap();
    let y = predict(model, &x, xs[0]).unwrap();
    assert_eq!(y.shape(), &ys[..], "{name}");
    let want: Vec<f64> = yv.iter().map(|&v| v as f64).collect();
    assert_close(&y.to_vec::<f32>().unwrap(), &want, 1e-4, 1e-5);
    dev.sync().unwrap();
}

#[test]
fn chollet_mnist_matches_keras() {
    let dev = wgrad_testkit::device();
    let mut m = Sequential::new(&dev, &[28, 28, 1])
        .add_named("conv1", Conv2D::new(32, 3).activation(Act::Relu))
        .and_then(|m| m.add_named("pool1", MaxPool2D::new(2)))
        .and_then(|m| m.add_named("conv2", Conv2D::new(64, 3).activation(Act::Relu)))
        .and_then(|m| m.add_named("pool2", MaxPool2D::new(2)))
        .and_then(|m| m.add_named("conv3", Conv2D::new(64, 3).activation(Act::Relu)))
        .and_then(|m| m.add_named("flatten", Flatten::new()))
        .and_then(|m| m.add_named("dense1", Dense::new(64).activation(Act::Relu)))
        .and_then(|m| m.add_named("dense2", Dense::new(10).activation(Act::Softmax)))
        .unwrap();
    check(&dev, "chollet_mnist", &mut m, 93_322);
}

/// The seeds' residual unit written out flat with Keras's names `unit{i}_…`.
fn unit(
    g: &mut Functional,
    x: wgrad::nn::Tap,
    i: usize,
    filters: usize,
    strides: usize,
) -> wgrad::nn::Tap {
    let n = |s: &str| format!("unit{i}_{s}");
    let h = g
        .apply_named(
            &n("conv1"),
            Conv2D::new(filters, 3)
                .strides(strides)
                .same()
                .use_bias(false),
            x,
        )
        .unwrap();
    let h = g
        .apply_named(&n("bn1"), BatchNormalization::new(), h)
        .unwrap();
    let h = g
        .apply_named(&n("relu1"), Activation(Act::Relu), h)
        .unwrap();
    let h = g
        .apply_named(
            &n("conv2"),
            Conv2D::new(filters, 3).same().use_bias(false),
            h,
        )
        .unwrap();
    let h = g
        .apply_named(&n("bn2"), BatchNormalization::new(), h)
        .unwrap();
    let skip = if strides > 1 {
        let s = g
            .apply_named(
                &n("skip_conv"),
                Conv2D::new(filters, 1)
                    .strides(strides)
                    .same()
                    .use_bias(false),
                x,
            )
            .unwrap();
        g.apply_named(&n("skip_bn"), BatchNormalization::new(), s)
            .unwrap()
    } else {
        x
    };
    let sum = g.merge_named(&n("add"), Add, &[h, skip]).unwrap();
    g.apply_named(&n("out"), Activation(Act::Relu), sum)
        .unwrap()
}

#[test]
fn mini_resnet_matches_keras() {
    let dev = wgrad_testkit::device();
    let mut g = Functional::new(&dev);
    let x = g.input(&[32, 32, 3]);
    let h = g
        .apply_named(
            "stem_conv",
            Conv2D::new(8, 7).strides(2).same().use_bias(false),
            x,
        )
        .unwrap();
    let h = g
        .apply_named("stem_bn", BatchNormalization::new(), h)
        .unwrap();
    let h = g
        .apply_named("stem_relu", Activation(Act::Relu), h)
        .unwrap();
    let mut h = g
        .apply_named("stem_pool", MaxPool2D::new(3).strides(2).same(), h)
        .unwrap();
    for (i, (f, s)) in [(8, 1), (8, 1), (16, 2)].into_iter().enumerate() {
        h = unit(&mut g, h, i, f, s);
    }
    let h = g.apply_named("gap", GlobalAvgPool2D::new(), h).unwrap();
    let y = g
        .apply_named("head", Dense::new(10).activation(Act::Softmax), h)
        .unwrap();
    g.outputs(&[y]).unwrap();
    check(&dev, "mini_resnet", &mut g, 7_586);
}

#[test]
fn mini_xception_se_matches_keras() {
    let dev = wgrad_testkit::device();
    let mut g = Functional::new(&dev);
    let x = g.input(&[16, 16, 3]);
    let h = g
        .apply_named("stem_conv", Conv2D::new(8, 3).strides(2).same(), x)
        .unwrap();
    let h = g
        .apply_named(
            "sep1",
            SeparableConv2D::new(16, 3).same().use_bias(false),
            h,
        )
        .unwrap();
    let h = g
        .apply_named("sep1_bn", BatchNormalization::new(), h)
        .unwrap();
    let h = g
        .apply_named("sep1_relu", Activation(Act::Relu), h)
        .unwrap();
    let h = g
        .apply_named("dw1", DepthwiseConv2D::new(3).strides(2).same(), h)
        .unwrap();
    // Squeeze-and-excitation: per-channel weights from the pooled map scale the map.
    let s = g
        .apply_named("se_squeeze", GlobalAvgPool2D::new(), h)
        .unwrap();
    let s = g
        .apply_named("se_reduce", Dense::new(4).activation(Act::Relu), s)
        .unwrap();
    let s = g
        .apply_named("se_expand", Dense::new(16).activation(Act::Sigmoid), s)
        .unwrap();
    let s = g
        .apply_named("se_reshape", Reshape::new(&[1, 1, 16]), s)
        .unwrap();
    let h = g.merge_named("se_scale", Multiply, &[h, s]).unwrap();
    let h = g
        .apply_named("up1", Conv2DTranspose::new(8, 3).strides(2).same(), h)
        .unwrap();
    let h = g.apply_named("avgpool", AvgPool2D::new(2), h).unwrap();
    let h = g.apply_named("flatten", Flatten::new(), h).unwrap();
    let y = g
        .apply_named("head", Dense::new(5).activation(Act::Softmax), h)
        .unwrap();
    g.outputs(&[y]).unwrap();
    check(&dev, "mini_xception_se", &mut g, 2_601);
}

/// Missing, unexpected and mis-shaped tensors are one typed error naming each, and nothing
/// is assigned.
#[test]
fn mismatched_files_are_typed_errors() {
    let dev = wgrad_testkit::device();
    let mut m = Sequential::new(&dev, &[28, 28, 1])
        .add_named("conv1", Conv2D::new(32, 3).activation(Act::Relu))
        .and_then(|m| m.add_named("pool1", MaxPool2D::new(2)))
        .and_then(|m| m.add_named("conv2", Conv2D::new(48, 3).activation(Act::Relu)))
        .and_then(|m| m.add_named("flatten", Flatten::new()))
        .and_then(|m| m.add_named("extra", Dense::new(3)))
        .unwrap();
    let before = m.params()[0].value().to_vec::<f32>().unwrap();
    let how = Import::keras()
        .prefix("chollet_mnist/")
        .ignore(&["input", "output"]);
    match import_weights(&mut m, file(), &how) {
        Err(Error::Import {
            missing,
            unexpected,
            misshaped,
            ..
        }) => {
            assert_eq!(missing.len(), 2, "{missing:?}");
            assert!(
                missing.iter().all(|n| n.starts_with("extra/")),
                "{missing:?}"
            );
            assert!(
                unexpected.contains(&"chollet_mnist/dense1/kernel".to_string()),
                "{unexpected:?}"
            );
            assert!(
                unexpected.contains(&"chollet_mnist/conv3/bias".to_string()),
                "{unexpected:?}"
            );
            assert_eq!(misshaped.len(), 2, "{misshaped:?}");
            assert!(
                misshaped.iter().all(|n| n.contains("conv2/")),
                "{misshaped:?}"
            );
        }
        other => panic!("expected an import error, got {other:?}"),
    }
    assert_eq!(m.params()[0].value().to_vec::<f32>().unwrap(), before);
    let err = import_weights(&mut m, "/nonexistent/weights.safetensors", &how).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    dev.sync().unwrap();
}

/// A model's weights written as a PyTorch state dict (names `conv.weight`, `bn.running_var`;
/// OIHW / `[out, in]` / `[C·m, 1, KH, KW]` / `[in, out, KH, KW]` layouts, converted here by
/// plain index arithmetic) import back into a fresh model with identical outputs.
#[test]
fn pytorch_state_dicts_convert_on_load() {
    let dev = wgrad_testkit::device();
    let build = |seed: u64| {
        let mut g = Functional::new(&dev).seed(seed);
        let x = g.input(&[8, 8, 3]);
        let h = g.apply_named("conv", Conv2D::new(4, 3).same(), x).unwrap();
        let h = g.apply_named("bn", BatchNormalization::new(), h).unwrap();
        let h = g
            .apply_named("dw", DepthwiseConv2D::new(3).depth_multiplier(2).same(), h)
            .unwrap();
        let h = g
            .apply_named("up", Conv2DTranspose::new(5, 2).strides(2), h)
            .unwrap();
        let h = g.apply_named("pool", GlobalAvgPool2D::new(), h).unwrap();
        let y = g.apply_named("fc", Dense::new(3), h).unwrap();
        g.outputs(&[y]).unwrap();
        g
    };
    let mut a = build(1);
    let mut b = build(2);
    // Non-trivial moving statistics, so mean and variance cannot be swapped unnoticed.
    let names: Vec<String> = a.named_params().into_iter().map(|(n, _)| n).collect();
    for (i, (p, n)) in a.params_mut().into_iter().zip(&names).enumerate() {
        if n.starts_with("bn/moving") || n.starts_with("bn/beta") {
            let t = Tensor::rand_uniform(&dev, p.shape(), 0.5, 1.5, 100 + i as u64).unwrap();
            p.set(t);
        }
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (name, p) in a.named_params() {
        let v = p.value().to_vec::<f32>().unwrap();
        let s = p.shape().to_vec();
        let (layer, weight) = name.split_once('/').unwrap();
        let torch_weight = match weight {
            "kernel" | "gamma" => "weight",
            "beta" => "bias",
            "moving_mean" => "running_mean",
            "moving_variance" => "running_var",
            w => w,
        };
        let (shape, data) = match (layer, s.as_slice()) {
            ("fc", &[i, o]) => (
                vec![o, i],
                (0..o * i).map(|k| v[(k % i) * o + k / i]).collect(),
            ),
            ("conv", &[kh, kw, ci, co]) | ("up", &[kh, kw, ci, co]) => {
                let mut d = vec![0f32; v.len()];
                for j in 0..co {
                    for i in 0..ci {
                        for y in 0..kh {
                            for x in 0..kw {
                                d[((j * ci + i) * kh + y) * kw + x] =
                                    v[((y * kw + x) * ci + i) * co + j];
                            }
                        }
                    }
                }
                (vec![co, ci, kh, kw], d)
            }
            ("dw", &[kh, kw, c, m]) if weight == "kernel" => {
                let mut d = vec![0f32; v.len()];
                for ch in 0..c {
                    for j in 0..m {
                        for y in 0..kh {
                            for x in 0..kw {
                                d[((ch * m + j) * kh + y) * kw + x] =
                                    v[((y * kw + x) * c + ch) * m + j];
                            }
                        }
                    }
                }
                (vec![c * m, 1, kh, kw], d)
            }
            _ => (s.clone(), v),
        };
        tensors.push((format!("{layer}.{torch_weight}"), shape, data));
    }
    tensors.push(("bn.num_batches_tracked".into(), vec![1], vec![0.0]));
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
            (n.clone(), view.unwrap())
        })
        .collect();
    let path = std::env::temp_dir().join(format!("wgrad-torch-{}.safetensors", std::process::id()));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();

    let x = Tensor::rand_uniform(&dev, &[2, 8, 8, 3], -1.0, 1.0, 9).unwrap();
    let want = predict(&mut a, &x, 2).unwrap().to_vec::<f32>().unwrap();
    let before = predict(&mut b, &x, 2).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(want, before, "the two seeds must give different models");
    import_weights(&mut b, &path, &Import::pytorch()).unwrap();
    let got = predict(&mut b, &x, 2).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    assert_close(&got, &want, 1e-5, 1e-6);
    // With Keras's names the same file is all unexpected and all missing.
    let err = import_weights(&mut b, &path, &Import::keras()).unwrap_err();
    assert!(matches!(err, Error::Import { .. }), "{err:?}");
    let _ = std::fs::remove_file(&path);
    dev.sync().unwrap();
}
