//! The table of bad inputs (docs/errors.md lists the same cases, by id): each case makes one
//! mistake a user makes — a wrong shape, dtype, axis or device for an op; a model whose layers
//! do not fit, or a call with the wrong input; a missing, truncated or foreign weights file; a
//! broken data file — and asserts the typed error it returns and that the message says what to
//! do (the expected words are part of the table).

use std::path::PathBuf;

use wgrad::data::Dataset;
use wgrad::graph::Var;
use wgrad::nn::layers::{Conv2D, Dense, Dropout, Flatten, MaxPool2D};
use wgrad::nn::{Add, Concatenate, Ctx, Functional, Layer, Loss, Sequential};
use wgrad::{Conv2dOptions, DType, Device, NmsOptions, Padding, Tensor};

/// One case's outcome: the error's Debug form (its variant) and its message.
struct Got {
    debug: String,
    message: String,
}

fn err<T, E: std::fmt::Debug + std::fmt::Display>(r: Result<T, E>) -> Option<Got> {
    r.err().map(|e| Got {
        debug: format!("{e:?}"),
        message: e.to_string(),
    })
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn f32s(dev: &Device, shape: &[usize]) -> Tensor {
    Tensor::zeros(dev, shape, DType::F32).unwrap()
}

fn chain(dev: &Device) -> Sequential {
    Sequential::new(dev, &[8, 8, 3])
        .add(Conv2D::new(4, 3))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(2))
        .unwrap()
}

/// `(id, variant, words the message must contain, outcome)`.
type Case = (
    &'static str,
    &'static str,
    &'static [&'static str],
    Option<Got>,
);

fn cases() -> Vec<Case> {
    let dev = wgrad_testkit::device();
    let t = |s: &[usize]| f32s(&dev, s);
    let i32s = Tensor::zeros(&dev, &[4, 4], DType::I32).unwrap();
    let conv = Conv2dOptions::default();
    let mut v: Vec<Case> = vec![
        // ---- ops
        (
            "op-broadcast",
            "Shape",
            &["equal or one of them 1"],
            err(t(&[2, 3]).add(&t(&[4]))),
        ),
        (
            "op-matmul-inner",
            "Shape",
            &["must equal"],
            err(t(&[2, 3]).matmul(&t(&[4, 5]))),
        ),
        (
            "op-matmul-dtype",
            "Dtype",
            &["Tensor::cast"],
            err(i32s.matmul(&i32s)),
        ),
        (
            "op-matmul-rank",
            "Shape",
            &["rank >= 2"],
            err(t(&[3]).matmul(&t(&[3, 2]))),
        ),
        (
            "op-conv-rank",
            "Shape",
            &["NHWC (rank 4)"],
            err(t(&[8, 8, 3]).conv2d(&t(&[3, 3, 3, 4]), conv)),
        ),
        (
            "op-conv-channels",
            "Shape",
            &["must equal"],
            err(t(&[1, 8, 8, 3]).conv2d(&t(&[3, 3, 2, 4]), conv)),
        ),
        (
            "op-conv-groups",
            "",
            &["must both divide"],
            err(t(&[1, 8, 8, 3]).conv2d(&t(&[3, 3, 1, 4]), Conv2dOptions { groups: 2, ..conv })),
        ),
        (
            "op-conv-stride0",
            "",
            &["must all be at least 1"],
            err(t(&[1, 8, 8, 3]).conv2d(
                &t(&[3, 3, 3, 4]),
                Conv2dOptions {
                    stride: [0, 1],
                    ..conv
                },
            )),
        ),
        (
            "op-pool-window0",
            "",
            &["must all be at least 1"],
            err(t(&[1, 8, 8, 3]).max_pool2d([0, 2], [2, 2], Padding::Valid)),
        ),
        (
            "op-pool-rank",
            "Shape",
            &["NHWC tensor of rank 4"],
            err(t(&[8, 8, 3]).max_pool2d([2, 2], [2, 2], Padding::Valid)),
        ),
        (
            "op-reduce-axis",
            "",
            &["counting from the end"],
            err(t(&[2, 3]).sum(&[2], false)),
        ),
        (
            "op-softmax-axis",
            "",
            &["counting from the end"],
            err(t(&[2, 3]).softmax(5)),
        ),
        (
            "op-reshape-numel",
            "Shape",
            &["must multiply to 6"],
            err(t(&[2, 3]).reshape(&[4, 2])),
        ),
        (
            "op-permute",
            "",
            &["exactly once"],
            err(t(&[2, 3]).permute(&[0, 0])),
        ),
        (
            "op-slice",
            "",
            &["at most 3"],
            err(t(&[2, 3]).slice(1, 2, 5)),
        ),
        (
            "op-concat",
            "Shape",
            &["must match"],
            err(Tensor::concat(&[&t(&[2, 3]), &t(&[2, 4])], 0)),
        ),
        (
            "op-from-slice-length",
            "",
            &["6 expected"],
            err(Tensor::from_slice(&dev, &[1.0f32; 5], &[2, 3])),
        ),
        (
            "op-readback-dtype",
            "Dtype",
            &["Tensor::cast"],
            err(t(&[2]).to_vec::<i32>()),
        ),
        (
            "op-resize-zero",
            "",
            &["must be positive"],
            err(t(&[1, 4, 4, 1]).resize([0, 2], wgrad::ResizeMethod::Bilinear, false)),
        ),
        (
            "op-nms-boxes",
            "Shape",
            &["[N, 4]"],
            err(t(&[5, 3]).non_max_suppression(&t(&[5]), NmsOptions::new(3))),
        ),
        (
            "op-nms-scores",
            "Shape",
            &["scores (and classes) [N]"],
            err(t(&[5, 4]).non_max_suppression(&t(&[4]), NmsOptions::new(3))),
        ),
        (
            "op-batch-norm-gamma",
            "Shape",
            &["must have shape [3]"],
            err(t(&[4, 3]).batch_norm_train(&t(&[2]), &t(&[3]), 1e-3)),
        ),
        (
            "op-lrn-bias",
            "",
            &["> 0"],
            err(t(&[1, 2, 2, 4]).lrn(wgrad::LrnParams::new(1, 0.0, 1.0, 0.5))),
        ),
        (
            "op-upsample-zero",
            "",
            &["at least 1"],
            err(t(&[1, 2, 2, 1]).upsample2d([0, 2], wgrad::Upsample::Nearest)),
        ),
        (
            "op-where-mask-dtype",
            "Dtype",
            &["mask from a comparison"],
            err(t(&[2, 2]).where_(&t(&[3]), &t(&[2, 2]))),
        ),
        (
            "op-transpose-axis",
            "",
            &["counting from the end"],
            err(t(&[2, 3]).transpose(0, 3)),
        ),
        (
            "op-argmax-axis",
            "",
            &["counting from the end"],
            err(t(&[2, 3]).argmax(2, false)),
        ),
        (
            "op-global-pool-rank",
            "Shape",
            &["NHWC tensor of rank 4"],
            err(t(&[4, 4]).global_avg_pool2d()),
        ),
        (
            "op-pad-length",
            "",
            &["2 leading and 2 trailing"],
            err(t(&[2, 3]).pad(&[1], &[1, 1])),
        ),
        (
            "op-preprocess-channels",
            "",
            &["3 RGB channels"],
            err(t(&[1, 2, 2, 2]).preprocess_input(wgrad::Preprocess::Caffe)),
        ),
    ];
    // Another device's tensor.
    let other = Device::new().unwrap();
    v.push((
        "op-device-mismatch",
        "DeviceMismatch",
        &["move them to one device"],
        err(t(&[2]).add(&f32s(&other, &[2]))),
    ));

    // ---- layers and models: found when the model is built
    v.push((
        "model-dense-on-images",
        "Config",
        &["add Flatten first"],
        err(Sequential::new(&dev, &[8, 8, 3]).add(Dense::new(2))),
    ));
    v.push((
        "model-conv-on-vectors",
        "Config",
        &["[H, W, C] images"],
        err(Sequential::new(&dev, &[10]).add(Conv2D::new(4, 3))),
    ));
    v.push((
        "model-conv-too-small",
        "",
        &["Same padding"],
        err(Sequential::new(&dev, &[2, 2, 3]).add(Conv2D::new(4, 3))),
    ));
    v.push((
        "model-conv-groups",
        "Config",
        &["must divide"],
        err(Sequential::new(&dev, &[8, 8, 3]).add(Conv2D::new(4, 3).groups(2))),
    ));
    v.push((
        "model-pool-too-large",
        "",
        &["Same padding"],
        err(Sequential::new(&dev, &[2, 2, 3]).add(MaxPool2D::new(4))),
    ));
    v.push((
        "model-dropout-rate",
        "Config",
        &["[0, 1)"],
        err(Sequential::new(&dev, &[4]).add(Dropout::new(1.5))),
    ));
    v.push((
        "model-reshape-numel",
        "",
        &["same number of values"],
        err(Sequential::new(&dev, &[4]).add(wgrad::nn::layers::Reshape::new(&[3]))),
    ));
    v.push((
        "model-duplicate-name",
        "Config",
        &["its own name"],
        err(Sequential::new(&dev, &[4])
            .add_named("d", Dense::new(2))
            .unwrap()
            .add_named("d", Dense::new(2))),
    ));
    {
        let mut g = Functional::new(&dev);
        let a = g.input(&[4]);
        let b = g.input(&[5]);
        v.push((
            "model-add-shapes",
            "Config",
            &["one shape"],
            err(g.merge(Add, &[a, b])),
        ));
        let c = g.input(&[2, 3]);
        let d = g.input(&[3, 3]);
        v.push((
            "model-concat-shapes",
            "Config",
            &["must match"],
            err(g.merge(Concatenate::default(), &[c, d])),
        ));
        v.push((
            "model-no-outputs",
            "Config",
            &["at least one output"],
            err(g.outputs(&[])),
        ));
        v.push((
            "model-unused-input",
            "Config",
            &["connect it or leave it out"],
            err(g.outputs(&[a])),
        ));
        let mut h = Functional::new(&dev);
        let _ = h.input(&[4]);
        v.push((
            "model-foreign-tap",
            "",
            &["input() and apply()"],
            err(h.apply(Dense::new(2), a)),
        ));
    }
    // ---- a built model called with the wrong input
    let mut m = chain(&dev);
    v.push((
        "call-rank",
        "",
        &["expects [N, 8, 8, 3]"],
        err(m.forward(&Var::new(t(&[8, 8, 3])), &mut Ctx::new(false, 0))),
    ));
    v.push((
        "call-spatial",
        "",
        &["expects [N, 8, 8, 3]"],
        err(m.forward(&Var::new(t(&[1, 9, 9, 3])), &mut Ctx::new(false, 0))),
    ));
    v.push((
        "call-channels",
        "",
        &["expects [N, 8, 8, 3]"],
        err(m.forward(&Var::new(t(&[1, 8, 8, 4])), &mut Ctx::new(false, 0))),
    ));
    v.push((
        "call-unbuilt-layer",
        "Config",
        &["add it to a model first"],
        err(Dense::new(2).forward(&Var::new(t(&[1, 4])), &mut Ctx::new(false, 0))),
    ));
    let logits = Var::new(t(&[4, 3]));
    let labels = Tensor::from_slice(&dev, &[0u32, 1, 2], &[3]).unwrap();
    v.push((
        "loss-target-shape",
        "",
        &["of shape [4]"],
        err(Loss::sparse_categorical_crossentropy(true).compute(&logits, &labels)),
    ));

    // ---- weights files
    let d = dir();
    v.push((
        "weights-missing",
        "Io",
        &["check the path"],
        err(wgrad::nn::load_weights(
            &mut chain(&dev),
            d.join("absent.safetensors"),
        )),
    ));
    v.push((
        "weights-not-safetensors",
        "Checkpoint",
        &["save_weights"],
        err(wgrad::nn::load_weights(
            &mut chain(&dev),
            file("junk.safetensors", b"not a safetensors file at all"),
        )),
    ));
    let good = d.join("good.safetensors");
    wgrad::nn::save_weights(&chain(&dev), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    v.push((
        "weights-truncated",
        "Checkpoint",
        &["copy the file again"],
        err(wgrad::nn::load_weights(
            &mut chain(&dev),
            file("cut.safetensors", &bytes[..bytes.len() / 2]),
        )),
    ));
    let other_model = Sequential::new(&dev, &[8, 8, 3])
        .add(Conv2D::new(5, 3))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(2))
        .unwrap();
    v.push((
        "weights-wrong-shapes",
        "",
        &["another architecture"],
        err(wgrad::nn::load_weights(&mut { other_model }, &good)),
    ));
    v.push((
        "import-not-safetensors",
        "Checkpoint",
        &["save_weights"],
        err(wgrad::nn::import::import_weights(
            &mut chain(&dev),
            file("junk2.safetensors", b"\x00\x01"),
            &wgrad::nn::import::Import::keras(),
        )),
    ));

    // ---- data readers
    v.push((
        "idx-missing",
        "",
        &["check the path"],
        err(wgrad::data::idx::read_labels(d.join("absent-idx"))),
    ));
    v.push((
        "idx-bad-magic",
        "Format",
        &["expected 0x00000801"],
        err(wgrad::data::idx::read_labels(file(
            "bad.idx",
            &[1, 2, 3, 4, 0, 0, 0, 1, 7],
        ))),
    ));
    v.push((
        "idx-truncated",
        "",
        &["download or copy it again"],
        err(wgrad::data::idx::read_labels(file(
            "short.idx",
            &[0, 0, 8, 1, 0, 0, 0, 9, 1, 2],
        ))),
    ));
    v.push((
        "cifar-size",
        "",
        &["download or copy it again"],
        err(wgrad::data::cifar::read_cifar10_file(file(
            "c.bin",
            &[0u8; 100],
        ))),
    ));
    v.push((
        "folder-missing",
        "",
        &["check the path"],
        err(wgrad::data::image_folder(d.join("absent-folder"), [8, 8])),
    ));
    v.push((
        "dataset-length",
        "Invalid",
        &["expected 12"],
        err(Dataset::new(vec![0.0; 10], [2, 2, 1], vec![0, 1, 0], 2)),
    ));
    v.push((
        "dataset-label",
        "Invalid",
        &["not below num_classes 2"],
        err(Dataset::new(vec![0.0; 8], [2, 2, 1], vec![0, 5], 2)),
    ));
    v.push((
        "coco-broken-json",
        "",
        &["not valid JSON"],
        err(wgrad::data::coco_folder(
            file("ann.json", b"{ not json"),
            &d,
            [8, 8],
        )),
    ));

    // ---- the example binaries' arguments (cargo test builds the examples beside the tests)
    let absent = d.join("absent-data");
    let absent = absent.to_str().unwrap();
    for (id, words, example, args) in [
        (
            "example-unknown-flag",
            &["--help"][..],
            "fashion_mnist",
            &["--bogus"][..],
        ),
        (
            "example-bad-choice",
            &["possible values"],
            "fashion_mnist",
            &["--model", "nope"],
        ),
        (
            "example-not-a-number",
            &["invalid value"],
            "fashion_mnist",
            &["--epochs", "two"],
        ),
        (
            "example-zero-epochs",
            &["at least 1"],
            "fashion_mnist",
            &["--epochs", "0"],
        ),
        (
            "example-missing-data",
            &["check the path"],
            "resnet34",
            &["--data", absent],
        ),
        (
            "example-small-image",
            &["at least 32"],
            "resnet34",
            &["--image-size", "8"],
        ),
        (
            "example-zero-batch",
            &["at least 1"],
            "segmentation",
            &["--batch-size", "0"],
        ),
        (
            "example-zero-labels",
            &["at least 1"],
            "transfer",
            &["--labels", "0"],
        ),
    ] {
        v.push((id, "exit status", words, run_example(example, args)));
    }
    v
}

/// Runs an example binary and returns its failure (exit status and stderr), or None when it
/// succeeded.
fn run_example(name: &str, args: &[&str]) -> Option<Got> {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let out = std::process::Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo test builds the examples)", bin.display()));
    (!out.status.success()).then(|| Got {
        debug: format!("{}", out.status),
        // lavapipe's loader complains about XDG_RUNTIME_DIR on headless machines: not ours.
        message: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

#[test]
fn every_bad_input_is_a_typed_error_that_says_what_to_do() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md"))
        .unwrap_or_default();
    let mut failures = Vec::new();
    let all = cases();
    for (id, variant, words, got) in &all {
        let Some(g) = got else {
            failures.push(format!("{id}: no error"));
            continue;
        };
        println!(
            "{id}: {} | {}",
            g.debug.split(['{', '(']).next().unwrap_or(""),
            g.message
        );
        if !variant.is_empty() && !g.debug.contains(variant) {
            failures.push(format!("{id}: expected {variant}, got {}", g.debug));
        }
        for w in *words {
            if !g.message.to_lowercase().contains(&w.to_lowercase()) {
                failures.push(format!("{id}: message lacks {w:?}: {}", g.message));
            }
        }
        if !docs.contains(&format!("`{id}`")) {
            failures.push(format!("{id}: not listed in docs/errors.md"));
        }
    }
    let _ = std::fs::remove_dir_all(dir());
    assert!(all.len() >= 60, "{} cases", all.len());
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
