//! Detection annotations over an image folder, in COCO's JSON ([`coco_folder`]) or YOLO's text
//! format ([`yolo_folder`]).
//!
//! YOLO: `images/<stem>.<ext>`
//! with `labels/<stem>.txt`, one object per line, `class x_centre y_centre width height`, the
//! four numbers fractions of the image's width and height (Darknet's convention, as the
//! Ultralytics tools write it). An image without a label file has no objects. Images are read
//! as [`read_image`] does (RGB in `[0, 1]`, resized to the requested size); boxes are given in
//! pixels of the resized image, `[y0, x0, y1, x1]`. A malformed line is an [`Error::Format`]
//! naming the file and the line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::canvas::{Canvases, Placed};
use crate::error::{Error, Result};
use crate::folder::{is_image, read_image, sorted_entries};

/// Reads `images/` with the YOLO labels of `labels/`, images brought to `size = [H, W]`,
/// classes `0..classes`. The result's `masks` are empty (boxes only).
pub fn yolo_folder(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    size: [usize; 2],
    classes: usize,
) -> Result<Canvases> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let files: Vec<PathBuf> = sorted_entries(images)?
        .into_iter()
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    if files.is_empty() {
        return Err(Error::format(images, "no PNG or JPEG images"));
    }
    let mut pixels = Vec::new();
    let mut objects = Vec::new();
    for (i, file) in files.iter().enumerate() {
        pixels.extend(read_image(file, size)?);
        let txt = labels
            .join(file.file_stem().unwrap_or_default())
            .with_extension("txt");
        objects.push(if txt.is_file() {
            let text = std::fs::read_to_string(&txt).map_err(|e| Error::io(&txt, e))?;
            parse_yolo_labels(&text, &txt, size, classes, i)?
        } else {
            Vec::new()
        });
    }
    Ok(Canvases {
        images: pixels,
        shape: [size[0], size[1], 3],
        objects,
        masks: Vec::new(),
        classes,
    })
}

/// Parses one YOLO label file's text (`origin` names it in errors) into the objects of image
/// number `image`, boxes in pixels of a `[h, w]` image, classes below `classes`.
pub fn parse_yolo_labels(
    text: &str,
    origin: &Path,
    [h, w]: [usize; 2],
    classes: usize,
    image: usize,
) -> Result<Vec<Placed>> {
    let path = origin;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| Error::format(path, format!("line {}: {why}: {line:?}", n + 1));
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(bad(format!(
                "expected 5 fields (class x_centre y_centre width height), got {}",
                fields.len()
            )));
        }
        let class: u32 = fields[0]
            .parse()
            .map_err(|_| bad("the class is not a non-negative integer".into()))?;
        if class as usize >= classes {
            return Err(bad(format!("class {class} is not below {classes}")));
        }
        let mut v = [0f32; 4];
        for (k, f) in fields[1..].iter().enumerate() {
            let x: f32 = f
                .parse()
                .map_err(|_| bad(format!("field {} is not a number", k + 2)))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(bad(format!(
                    "field {} is {x}, outside [0, 1] (YOLO labels are fractions of the image size)",
                    k + 2
                )));
            }
            v[k] = x;
        }
        let [cx, cy, bw, bh] = v;
        let (hf, wf) = (h as f32, w as f32);
        out.push(Placed {
            class,
            bbox: [
                ((cy - bh / 2.0) * hf).max(0.0),
                ((cx - bw / 2.0) * wf).max(0.0),
                ((cy + bh / 2.0) * hf).min(hf),
                ((cx + bw / 2.0) * wf).min(wf),
            ],
            source: image,
        });
    }
    Ok(out)
}

/// A COCO-style annotation file parsed: its images (file names, in the file's order) with
/// their objects, boxes scaled to the size the images will be brought to.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoFile {
    /// Each image's `file_name`, relative to the image folder.
    pub files: Vec<String>,
    /// Each image's objects, boxes `[y0, x0, y1, x1]` in pixels of the resized image.
    pub objects: Vec<Vec<Placed>>,
    /// Category names in increasing id order (class `k` is the `k`-th).
    pub names: Vec<String>,
}

/// Parses a COCO-style annotation file's text (`origin` names it in errors) for images to be
/// brought to `size = [H, W]`; see [`coco_folder`] for the rules.
pub fn parse_coco(text: &str, origin: &Path, size: [usize; 2]) -> Result<CocoFile> {
    use serde_json::Value;
    let path = origin;
    let bad = |why: String| Error::format(path, why);
    let root: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let list = |key: &str| -> Result<&Vec<Value>> {
        root.get(key).and_then(Value::as_array).ok_or_else(|| {
            bad(format!(
                "no \"{key}\" list (a COCO file has images, annotations, categories)"
            ))
        })
    };
    let id = |v: &Value, what: &str| -> Result<u64> {
        v.get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("a {what} without a numeric \"id\": {v}")))
    };
    let mut cats: Vec<(u64, String)> = Vec::new();
    for c in list("categories")? {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        cats.push((id(c, "category")?, name));
    }
    cats.sort();
    let mut imgs: Vec<(u64, String, f64, f64)> = Vec::new();
    for im in list("images")? {
        let file = im
            .get("file_name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("an image without \"file_name\": {im}")))?;
        let dim = |k: &str| im.get(k).and_then(Value::as_f64).filter(|v| *v > 0.0);
        let (w, h) = match (dim("width"), dim("height")) {
            (Some(w), Some(h)) => (w, h),
            _ => {
                return Err(bad(format!(
                    "image {file}: width and height must be positive"
                )))
            }
        };
        imgs.push((id(im, "image")?, file.to_string(), w, h));
    }
    if imgs.is_empty() {
        return Err(bad("no images".into()));
    }
    // By id, not by scanning: COCO's train split has 118k images and 860k annotations.
    let image_slot: HashMap<u64, usize> = imgs.iter().enumerate().map(|(i, m)| (m.0, i)).collect();
    let class_of: HashMap<u64, usize> = cats.iter().enumerate().map(|(i, c)| (c.0, i)).collect();
    if image_slot.len() != imgs.len() || class_of.len() != cats.len() {
        return Err(bad(
            "two images or two categories share an id (each \"id\" must be unique)".into(),
        ));
    }
    let mut objects: Vec<Vec<Placed>> = vec![Vec::new(); imgs.len()];
    for a in list("annotations")? {
        if a.get("iscrowd").and_then(Value::as_u64) == Some(1) {
            continue;
        }
        let image = a.get("image_id").and_then(Value::as_u64);
        let Some(&slot) = image.and_then(|i| image_slot.get(&i)) else {
            return Err(bad(format!("an annotation on an unknown image: {a}")));
        };
        let cat = a.get("category_id").and_then(Value::as_u64);
        let Some(&class) = cat.and_then(|c| class_of.get(&c)) else {
            return Err(bad(format!("an annotation of an unknown category: {a}")));
        };
        let b: Vec<f64> = a
            .get("bbox")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if b.len() != 4 || b[2] < 0.0 || b[3] < 0.0 {
            return Err(bad(format!(
                "a bbox must be [x, y, width, height] with non-negative sizes: {a}"
            )));
        }
        let (_, _, w, h) = imgs[slot];
        let (sy, sx) = (size[0] as f64 / h, size[1] as f64 / w);
        // Clamped to the image, as YOLO's labels are: a box that pokes out of its image (or
        // whose numbers overflow f32) must not reach the loss as an infinite coordinate.
        let (hf, wf) = (size[0] as f64, size[1] as f64);
        let at = |v: f64, top: f64| v.clamp(0.0, top) as f32;
        objects[slot].push(Placed {
            class: class as u32,
            bbox: [
                at(b[1] * sy, hf),
                at(b[0] * sx, wf),
                at((b[1] + b[3]) * sy, hf),
                at((b[0] + b[2]) * sx, wf),
            ],
            source: slot,
        });
    }
    Ok(CocoFile {
        files: imgs.into_iter().map(|(_, f, _, _)| f).collect(),
        objects,
        names: cats.into_iter().map(|(_, n)| n).collect(),
    })
}

/// Reads a COCO-style annotation file (`images`, `annotations`, `categories`; boxes
/// `[x, y, width, height]` in the image's pixels) with the images of `images/` it names by
/// `file_name`, brought to `size = [H, W]`. Classes are the categories in increasing id order
/// (`0..categories`), their names in the returned list. Images are in the file's order; an
/// image without annotations has no objects; `iscrowd` regions are left out; boxes are clamped
/// to their image. A malformed file, a box on an unknown image or category, or a negative size
/// is an [`Error::Format`].
pub fn coco_folder(
    annotations: impl AsRef<Path>,
    images: impl AsRef<Path>,
    size: [usize; 2],
) -> Result<(Canvases, Vec<String>)> {
    let path = annotations.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let coco = parse_coco(&text, path, size)?;
    let mut pixels = Vec::new();
    for file in &coco.files {
        pixels.extend(read_image(images.as_ref().join(file), size)?);
    }
    Ok((
        Canvases {
            images: pixels,
            shape: [size[0], size[1], 3],
            objects: coco.objects,
            masks: Vec::new(),
            classes: coco.names.len(),
        },
        coco.names,
    ))
}
