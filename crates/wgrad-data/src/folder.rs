//! Image folders: `root/<class>/<image>`, one sub-directory per class. Class ids follow the
//! sorted sub-directory names (byte order), files within a class are read in sorted order, so
//! the result is the same on every machine. PNG and JPEG files (by extension, any case) are
//! decoded with the `image` crate, converted to RGB, resized to the requested `[H, W]` with
//! bilinear filtering when their size differs, and scaled to `[0, 1]`. Other files and hidden
//! entries are skipped; a PNG/JPEG that cannot be decoded is an [`Error::Format`] naming it.
//! No search path: the caller gives the root.

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{Error, Result};

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

pub(crate) fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// Decodes one PNG/JPEG into an `h×w×3` HWC f32 image in `[0, 1]`.
pub fn read_image(path: impl AsRef<Path>, size: [usize; 2]) -> Result<Vec<f32>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, path, size)
}

/// Decodes the bytes of a PNG/JPEG (`origin` names it in errors) into an `h×w×3` HWC f32
/// image in `[0, 1]`, resized bilinearly when its size differs.
pub fn decode_image(bytes: &[u8], origin: &Path, [h, w]: [usize; 2]) -> Result<Vec<f32>> {
    let path = origin;
    if h == 0 || w == 0 {
        return Err(Error::format(
            path,
            format!("cannot bring an image to size [{h}, {w}]: both sides must be at least 1"),
        ));
    }
    let img = decode_rgb8(bytes).map_err(|e| Error::format(path, e))?;
    let (tw, th) = (
        u32::try_from(w).map_err(|_| Error::format(path, "target width too large"))?,
        u32::try_from(h).map_err(|_| Error::format(path, "target height too large"))?,
    );
    let img = if img.dimensions() == (tw, th) {
        img
    } else {
        image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle)
    };
    Ok(img
        .into_raw()
        .into_iter()
        .map(|b| b as f32 / 255.0)
        .collect())
}

/// Most bytes a decoder may allocate for one image (or mask): a 40-megapixel RGB photo fits.
/// Without a bound, a few hundred bytes of header claiming 50000×50000 pixels make the reader
/// allocate gigabytes (found by fuzzing, docs/fuzzing.md).
pub const MAX_DECODED_BYTES: u64 = 128 << 20;

fn decode_rgb8(bytes: &[u8]) -> std::result::Result<image::RgbImage, String> {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image: {e}"))?;
    reader.limits(limits);
    // The JPEG decoder (zune-jpeg 0.5) has panicked on malformed files (an assertion in its
    // upsampler, found by fuzzing): one bad photo must be an error naming it, not the end of
    // a training run.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| "the image decoder failed on this file (it is malformed)".to_string())?;
    let img = decoded.map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "cannot decode image: it needs more than {} MiB decoded; resize it beforehand",
            MAX_DECODED_BYTES >> 20
        ),
        e => format!("cannot decode image: {e}"),
    })?;
    Ok(img.to_rgb8())
}

/// Reads `root/<class>/*.{png,jpg,jpeg}` into a dataset of `size = [H, W]` RGB images, with
/// class names set to the sub-directory names.
pub fn image_folder(root: impl AsRef<Path>, size: [usize; 2]) -> Result<Dataset> {
    let root = root.as_ref();
    let classes: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if classes.is_empty() {
        return Err(Error::format(
            root,
            "no class sub-directories (expected root/<class>/<image>)",
        ));
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    for (id, dir) in classes.iter().enumerate() {
        names.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for file in sorted_entries(dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
        {
            images.extend(read_image(&file, size)?);
            labels.push(id as u32);
        }
    }
    Ok(Dataset::new(images, [size[0], size[1], 3], labels, classes.len())?.with_class_names(names))
}
