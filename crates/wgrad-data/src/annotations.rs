//! Detection annotations in YOLO's text format over an image folder: `images/<stem>.<ext>`
//! with `labels/<stem>.txt`, one object per line, `class x_centre y_centre width height`, the
//! four numbers fractions of the image's width and height (Darknet's convention, as the
//! Ultralytics tools write it). An image without a label file has no objects. Images are read
//! as [`read_image`] does (RGB in `[0, 1]`, resized to the requested size); boxes are given in
//! pixels of the resized image, `[y0, x0, y1, x1]`. A malformed line is an [`Error::Format`]
//! naming the file and the line.

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
            parse(&txt, size, classes, i)?
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

fn parse(path: &Path, [h, w]: [usize; 2], classes: usize, image: usize) -> Result<Vec<Placed>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
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
