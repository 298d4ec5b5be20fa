//! Every parser a user feeds files to, as a fuzz target: the function takes arbitrary bytes,
//! hands them to the parser, and checks what comes back. A parser may refuse the bytes with a
//! typed error — that is its job — but it must never panic, hang or allocate without bound,
//! and what it accepts must be well-formed: lengths that agree with the shapes, pixels in
//! `[0, 1]`, labels and classes in range, boxes inside their image. A check that fails panics,
//! which is what the fuzzer reports as a crash.
//!
//! The targets run under AFL++ (`cargo xtask fuzz`, through cargo-afl on the stable
//! toolchain: `crates/wgrad-fuzz/afl` is the instrumented binary) and, with the inputs the
//! fuzzer found interesting kept in `corpus/<target>/`, in this crate's test, which replays
//! the seeds and the whole corpus in seconds. docs/fuzzing.md records the runs.

use std::io::Write;
use std::path::Path;

use safetensors::SafeTensors;
use wgrad_data::annotations::{parse_coco, parse_yolo_labels};
use wgrad_data::canvas::Placed;
use wgrad_data::cifar::{parse_cifar10, parse_cifar100};
use wgrad_data::folder::decode_image;
use wgrad_data::idx::{parse_images, parse_labels};
use wgrad_data::{Cifar100Label, MaskFolder};
use wgrad_nn::checkpoint::{TensorFile, CHECKPOINT, WEIGHTS};
use wgrad_nn::import::import_values;
use wgrad_nn::{Import, WeightLayout};

/// One parser under test: its name (the corpus folder), the function the fuzzer calls, and
/// well-formed inputs to start from.
pub struct Target {
    pub name: &'static str,
    /// Runs the parser on the bytes and checks the result; true when the parser accepted them.
    pub run: fn(&[u8]) -> bool,
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "idx_images",
        run: idx_images,
        seeds: seeds_idx_images,
    },
    Target {
        name: "idx_labels",
        run: idx_labels,
        seeds: seeds_idx_labels,
    },
    Target {
        name: "cifar",
        run: cifar,
        seeds: seeds_cifar,
    },
    Target {
        name: "image",
        run: image,
        seeds: seeds_image,
    },
    Target {
        name: "mask",
        run: mask,
        seeds: seeds_mask,
    },
    Target {
        name: "yolo_labels",
        run: yolo_labels,
        seeds: seeds_yolo,
    },
    Target {
        name: "coco",
        run: coco,
        seeds: seeds_coco,
    },
    Target {
        name: "weights",
        run: weights,
        seeds: seeds_weights,
    },
    Target {
        name: "import",
        run: import,
        seeds: seeds_import,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn origin() -> &'static Path {
    Path::new("fuzz-input")
}

fn unit(values: &[f32], what: &str) {
    for v in values {
        assert!((0.0..=1.0).contains(v), "{what}: value {v} outside [0, 1]");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("in memory");
    e.finish().expect("in memory")
}

// ---- IDX (MNIST) ----------------------------------------------------------------------------

pub fn idx_images(data: &[u8]) -> bool {
    let Ok((pixels, [n, h, w])) = parse_images(data, origin()) else {
        return false;
    };
    assert_eq!(pixels.len(), n * h * w, "IDX images: payload vs header");
    true
}

pub fn idx_labels(data: &[u8]) -> bool {
    // Labels are bytes; the check that matters is that a bad header is an error, not a panic.
    parse_labels(data, origin()).is_ok()
}

/// An IDX file of `magic` with `dims` and the payload `0, 1, 2, …`.
pub fn idx_file(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    out.extend((0..n).map(|i| (i * 37 % 256) as u8));
    out
}

fn seeds_idx_images() -> Vec<Vec<u8>> {
    let f = idx_file(wgrad_data::idx::IMAGES_MAGIC, &[3, 2, 4]);
    vec![gzip(&f), f]
}

fn seeds_idx_labels() -> Vec<Vec<u8>> {
    let f = idx_file(wgrad_data::idx::LABELS_MAGIC, &[5]);
    vec![gzip(&f), f]
}

// ---- CIFAR binary ---------------------------------------------------------------------------

pub fn cifar(data: &[u8]) -> bool {
    let runs = [
        (parse_cifar10(data, origin()), 10),
        (parse_cifar100(data, origin(), Cifar100Label::Coarse), 20),
        (parse_cifar100(data, origin(), Cifar100Label::Fine), 100),
    ];
    let mut accepted = false;
    for (result, classes) in runs {
        if let Ok((images, labels)) = result {
            assert_eq!(images.len(), labels.len() * 32 * 32 * 3, "CIFAR records");
            assert!(
                labels.iter().all(|&l| (l as usize) < classes),
                "CIFAR label"
            );
            unit(&images, "CIFAR pixel");
            accepted = true;
        }
    }
    accepted
}

fn seeds_cifar() -> Vec<Vec<u8>> {
    let record = |labels: &[u8]| {
        let mut r = labels.to_vec();
        r.extend((0..3072).map(|i| (i % 251) as u8));
        r
    };
    let ten = record(&[7]);
    vec![gzip(&ten), ten, record(&[3, 42])]
}

// ---- Images (PNG, JPEG) ---------------------------------------------------------------------

/// The size images are brought to: not square, so that resizing runs on every input.
pub const IMAGE_SIZE: [usize; 2] = [7, 9];

pub fn image(data: &[u8]) -> bool {
    let Ok(px) = decode_image(data, origin(), IMAGE_SIZE) else {
        return false;
    };
    assert_eq!(px.len(), IMAGE_SIZE[0] * IMAGE_SIZE[1] * 3, "decoded image");
    unit(&px, "image pixel");
    true
}

/// A `w×h` picture with a gradient, encoded as `format`.
pub fn encoded(w: u32, h: u32, format: image::ImageFormat, grey: bool) -> Vec<u8> {
    let rgb = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 50) as u8, ((x + y) * 20) as u8])
    });
    let img = if grey {
        image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(rgb).to_luma8())
    } else {
        image::DynamicImage::ImageRgb8(rgb)
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("in memory");
    out.into_inner()
}

fn seeds_image() -> Vec<Vec<u8>> {
    use image::ImageFormat::{Jpeg, Png};
    vec![
        encoded(5, 4, Png, false),
        encoded(9, 7, Png, true),
        encoded(8, 8, Jpeg, false),
    ]
}

// ---- Segmentation masks ---------------------------------------------------------------------

/// The mask reader under test: masks brought to 6×5, classes 0..4, VOC's void 255 read as 0.
pub fn mask_reader() -> MaskFolder {
    MaskFolder::new("images", "masks", [6, 5], 4).void(255, 0)
}

pub fn mask(data: &[u8]) -> bool {
    let Ok(classes) = mask_reader().decode_mask(data, origin()) else {
        return false;
    };
    assert_eq!(classes.len(), 6 * 5, "mask pixels");
    assert!(classes.iter().all(|&c| c < 4), "mask class");
    true
}

/// An 8-bit `w×h` mask PNG of `values` (row-major), grey or with a palette.
pub fn mask_png(w: u32, h: u32, values: &[u8], palette: bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_depth(png::BitDepth::Eight);
        if palette {
            enc.set_color(png::ColorType::Indexed);
            enc.set_palette(
                (0..=255u8)
                    .flat_map(|i| [i, 255 - i, i / 2])
                    .collect::<Vec<_>>(),
            );
        } else {
            enc.set_color(png::ColorType::Grayscale);
        }
        let mut w = enc.write_header().expect("in memory");
        w.write_image_data(values).expect("in memory");
    }
    out
}

fn seeds_mask() -> Vec<Vec<u8>> {
    let values: Vec<u8> = (0..30u8)
        .map(|i| if i % 7 == 6 { 255 } else { i % 4 })
        .collect();
    vec![
        mask_png(5, 6, &values, false),
        mask_png(5, 6, &values, true),
        mask_png(3, 2, &[0, 1, 2, 3, 255, 1], false),
    ]
}

// ---- Detection annotations ------------------------------------------------------------------

/// The size detection images are brought to.
pub const CANVAS: [usize; 2] = [40, 60];

fn inside(objects: &[Placed], classes: usize, what: &str) {
    let [h, w] = CANVAS.map(|v| v as f32);
    for o in objects {
        let [y0, x0, y1, x1] = o.bbox;
        assert!(
            (0.0..=h).contains(&y0) && (0.0..=h).contains(&y1) && y0 <= y1,
            "{what}: box {:?} outside the image rows",
            o.bbox
        );
        assert!(
            (0.0..=w).contains(&x0) && (0.0..=w).contains(&x1) && x0 <= x1,
            "{what}: box {:?} outside the image columns",
            o.bbox
        );
        assert!((o.class as usize) < classes, "{what}: class {}", o.class);
    }
}

pub fn yolo_labels(data: &[u8]) -> bool {
    // The folder reader reads label files as UTF-8 text; other bytes are an I/O error there.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(objects) = parse_yolo_labels(text, origin(), CANVAS, 3, 0) else {
        return false;
    };
    inside(&objects, 3, "YOLO");
    true
}

fn seeds_yolo() -> Vec<Vec<u8>> {
    vec![
        b"0 0.5 0.5 0.2 0.3\n2 0.1 0.9 0.05 0.1\n".to_vec(),
        b"\n1 1 1 1 1\r\n".to_vec(),
        Vec::new(),
    ]
}

pub fn coco(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(file) = parse_coco(text, origin(), CANVAS) else {
        return false;
    };
    assert_eq!(
        file.objects.len(),
        file.files.len(),
        "COCO objects per image"
    );
    for objects in &file.objects {
        inside(objects, file.names.len(), "COCO");
    }
    true
}

fn seeds_coco() -> Vec<Vec<u8>> {
    let full = r#"{"images": [{"id": 1, "file_name": "a.png", "width": 120, "height": 80},
 {"id": 7, "file_name": "b.jpg", "width": 60, "height": 40}],
 "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
 "annotations": [{"image_id": 1, "category_id": 3, "bbox": [10, 20, 30.5, 40]},
 {"image_id": 7, "category_id": 1, "bbox": [0, 0, 60, 40], "iscrowd": 0},
 {"image_id": 7, "category_id": 1, "bbox": [5, 5, 1, 1], "iscrowd": 1}]}"#;
    let empty = r#"{"images": [{"id": 0, "file_name": "x.png", "width": 1, "height": 1}],
 "categories": [], "annotations": []}"#;
    vec![full.as_bytes().to_vec(), empty.as_bytes().to_vec()]
}

// ---- Weights, checkpoints, Keras/PyTorch imports ----------------------------------------------

/// The weights the model under test has: one of each layout the importer converts.
pub fn model_weights() -> Vec<(String, WeightLayout, Vec<usize>)> {
    [
        ("conv/kernel", WeightLayout::Conv, vec![2, 2, 1, 3]),
        ("conv/bias", WeightLayout::Plain, vec![3]),
        ("bn/moving_mean", WeightLayout::Plain, vec![3]),
        (
            "dw/depthwise_kernel",
            WeightLayout::Depthwise,
            vec![2, 1, 3, 2],
        ),
        ("up/kernel", WeightLayout::ConvTranspose, vec![2, 2, 2, 3]),
        ("dense/kernel", WeightLayout::Dense, vec![4, 2]),
    ]
    .into_iter()
    .map(|(n, l, s)| (n.to_string(), l, s))
    .collect()
}

fn spec() -> Vec<(String, Vec<usize>)> {
    model_weights()
        .into_iter()
        .map(|(n, _, s)| (n, s))
        .collect()
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn agree(values: &[Vec<f32>], shapes: impl Iterator<Item = Vec<usize>>, what: &str) {
    for (v, s) in values.iter().zip(shapes) {
        assert_eq!(v.len(), numel(&s), "{what}: values vs shape {s:?}");
    }
}

pub fn weights(data: &[u8]) -> bool {
    let spec = spec();
    let mut accepted = false;
    if let Ok(file) = TensorFile::from_bytes(data.to_vec(), origin(), WEIGHTS) {
        if let Ok(values) = file.weights(&spec) {
            assert_eq!(values.len(), spec.len(), "one value per weight");
            agree(&values, spec.iter().map(|(_, s)| s.clone()), "weights");
            accepted = true;
        }
    }
    // A training checkpoint: its counters and an optimizer slot, as Trainer::load_checkpoint
    // reads them.
    if let Ok(file) = TensorFile::from_bytes(data.to_vec(), origin(), CHECKPOINT) {
        for key in ["iterations", "steps", "epochs_done", "optimizer"] {
            let _ = file.meta(key).map(|v| v.parse::<u64>());
        }
        let (name, shape) = &spec[0];
        if let Ok(v) = file.host(&format!("optimizer/{name}/0"), shape) {
            assert_eq!(v.len(), numel(shape), "optimizer slot");
        }
    }
    accepted
}

/// A safetensors file of `tensors` (name, shape; values `0.5·i`) with `format` metadata.
pub fn safetensors_file(tensors: &[(String, Vec<usize>)], meta: &[(&str, &str)]) -> Vec<u8> {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| {
            (0..numel(s))
                .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, s), d)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .expect("sizes agree");
            (n.clone(), v)
        })
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(meta)).expect("in memory")
}

fn seeds_weights() -> Vec<Vec<u8>> {
    let mut with_slots = spec();
    with_slots.push(("optimizer/conv/kernel/0".to_string(), vec![2, 2, 1, 3]));
    vec![
        safetensors_file(&spec(), &[("format", WEIGHTS)]),
        safetensors_file(
            &with_slots,
            &[
                ("format", CHECKPOINT),
                ("optimizer", "adam"),
                ("iterations", "12"),
                ("steps", "12"),
                ("epochs_done", "1"),
            ],
        ),
    ]
}

pub fn import(data: &[u8]) -> bool {
    let Ok(st) = SafeTensors::deserialize(data) else {
        return false;
    };
    let wanted = model_weights();
    let mut accepted = false;
    for how in [
        Import::keras(),
        Import::pytorch(),
        Import::keras().prefix("base/"),
    ] {
        if let Ok(values) = import_values(&st, origin(), &how, &wanted) {
            agree(&values, wanted.iter().map(|w| w.2.clone()), "import");
            accepted = true;
        }
    }
    accepted
}

/// The model's weights as a PyTorch state dict names and lays them out.
pub fn pytorch_names() -> Vec<(String, Vec<usize>)> {
    vec![
        ("conv.weight".into(), vec![3, 1, 2, 2]),
        ("conv.bias".into(), vec![3]),
        ("bn.running_mean".into(), vec![3]),
        ("bn.num_batches_tracked".into(), vec![1]),
        ("dw.depthwise_kernel".into(), vec![6, 1, 2, 1]),
        ("up.weight".into(), vec![3, 2, 2, 2]),
        ("dense.weight".into(), vec![2, 4]),
    ]
}

fn seeds_import() -> Vec<Vec<u8>> {
    let base: Vec<(String, Vec<usize>)> = spec()
        .into_iter()
        .map(|(n, s)| (format!("base/{n}"), s))
        .collect();
    vec![
        safetensors_file(&spec(), &[]),
        safetensors_file(&pytorch_names(), &[]),
        safetensors_file(&base, &[]),
    ]
}
