//! Segmentation folders: images beside label masks, as Pascal VOC's `JPEGImages/` and
//! `SegmentationClass/`. The mask of `images/<stem>.<ext>` is `masks/<stem>.png`, an 8-bit PNG
//! whose pixel values *are* the classes: grey levels, or palette indices read as indices
//! (VOC's masks are palette PNGs; their colours are only a picture of the classes). Images are
//! read as [`read_image`] does (RGB in `[0, 1]`, bilinear resize); masks are resized by
//! nearest neighbour so every pixel keeps a class of the source. VOC marks object borders
//! with the value 255 ("void"): [`MaskFolder::void`] maps such a value to a class.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::folder::{is_image, read_image, sorted_entries, MAX_DECODED_BYTES};
use crate::transform::resize_nearest;

/// A reader for an image folder and its mask folder; see the module documentation.
#[derive(Clone, Debug)]
pub struct MaskFolder {
    images: PathBuf,
    masks: PathBuf,
    size: [usize; 2],
    classes: usize,
    void: Option<(u8, u32)>,
}

impl MaskFolder {
    /// Images of `images/`, masks of `masks/`, both brought to `size = [H, W]`, classes
    /// `0..classes`.
    pub fn new(
        images: impl Into<PathBuf>,
        masks: impl Into<PathBuf>,
        size: [usize; 2],
        classes: usize,
    ) -> MaskFolder {
        MaskFolder {
            images: images.into(),
            masks: masks.into(),
            size,
            classes,
            void: None,
        }
    }

    /// Reads mask value `value` (VOC: 255) as class `class` (e.g. the background, 0).
    pub fn void(mut self, value: u8, class: u32) -> Self {
        self.void = Some((value, class));
        self
    }

    /// Reads every image with its mask. An image without a mask, a mask that is not an 8-bit
    /// grey or palette PNG, or a value outside the classes is an [`Error::Format`] naming the
    /// file.
    pub fn read(&self) -> Result<Dataset> {
        let files: Vec<PathBuf> = sorted_entries(&self.images)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if files.is_empty() {
            return Err(Error::format(&self.images, "no PNG or JPEG images"));
        }
        let mut images = Vec::new();
        let mut masks = Vec::new();
        for file in &files {
            let stem = file.file_stem().unwrap_or_default();
            let mask = self.masks.join(stem).with_extension("png");
            if !mask.is_file() {
                return Err(Error::format(
                    file,
                    format!("no mask: expected {}", mask.display()),
                ));
            }
            images.extend(read_image(file, self.size)?);
            masks.extend(self.read_mask(&mask)?);
        }
        Dataset::with_masks(images, [self.size[0], self.size[1], 3], masks, self.classes)
    }

    fn read_mask(&self, path: &Path) -> Result<Vec<u32>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.decode_mask(&bytes, path)
    }

    /// Decodes the bytes of one mask PNG (`origin` names it in errors) into `H·W` classes, as
    /// [`MaskFolder::read`] does for each mask.
    pub fn decode_mask(&self, bytes: &[u8], origin: &Path) -> Result<Vec<u32>> {
        let path = origin;
        let bad = |reason: String| Error::format(path, reason);
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        // Identity: palette indices stay indices instead of expanding to colours.
        decoder.set_transformations(png::Transformations::IDENTITY);
        let mut reader = decoder
            .read_info()
            .map_err(|e| bad(format!("cannot decode mask PNG: {e}")))?;
        let too_large = || {
            bad(format!(
                "mask PNG too large: more than {} MiB decoded",
                MAX_DECODED_BYTES >> 20
            ))
        };
        let len = reader
            .output_buffer_size()
            .filter(|&n| n as u64 <= MAX_DECODED_BYTES)
            .ok_or_else(too_large)?;
        let (w, h) = (reader.info().width as u64, reader.info().height as u64);
        if w * h * 4 > MAX_DECODED_BYTES {
            return Err(too_large());
        }
        let mut buf = vec![0u8; len];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| bad(format!("cannot decode mask PNG: {e}")))?;
        use png::{BitDepth, ColorType};
        if info.bit_depth != BitDepth::Eight
            || !matches!(info.color_type, ColorType::Grayscale | ColorType::Indexed)
        {
            return Err(bad(format!(
                "a mask must be an 8-bit grey or palette PNG whose values are classes, got {:?} {:?}",
                info.color_type, info.bit_depth
            )));
        }
        let (w, h) = (info.width as usize, info.height as usize);
        let mut values = Vec::with_capacity(w * h);
        for row in buf.chunks_exact(info.line_size).take(h) {
            values.extend(row[..w].iter().map(|&v| v as f32));
        }
        let values = if [h, w] == self.size {
            values
        } else {
            resize_nearest(&values, [h, w, 1], self.size)
        };
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v as u8;
                let class = match self.void {
                    Some((void, class)) if v == void => class,
                    _ => v as u32,
                };
                if class as usize >= self.classes {
                    return Err(bad(format!(
                        "value {v} at pixel ({}, {}) is not a class below {} (VOC's border value 255 needs MaskFolder::void(255, 0))",
                        i / self.size[1],
                        i % self.size[1],
                        self.classes
                    )));
                }
                Ok(class)
            })
            .collect()
    }
}
