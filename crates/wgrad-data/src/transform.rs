//! Per-sample transforms on one HWC f32 image: the seeded augmentations the [`DataLoader`]
//! applies on its worker thread ([`Transform`]: random horizontal flip, random crop with zero
//! padding, per-channel normalisation, affine rescale), and the deterministic building blocks
//! behind them, usable on their own (mirror, padded crop at a given offset, centre
//! crop-or-pad such as 28→32 for MNIST into ResNet, bilinear resize).
//!
//! [`DataLoader`]: crate::DataLoader

use crate::rng::Rng;

/// One augmentation or preprocessing step, applied per sample in the order given to the
/// loader. Random steps draw from a generator seeded by (loader seed, epoch, sample index), so
/// results do not depend on threads or batch order.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Mirror left↔right with probability `p`.
    HorizontalFlip { p: f32 },
    /// Zero-pad `padding` pixels on every side, then crop back to H×W at a uniformly random
    /// offset (the CIFAR "pad 4, crop 32" augmentation).
    RandomCrop { padding: usize },
    /// `(x - mean[c]) / std[c]` per channel.
    Normalize { mean: Vec<f32>, std: Vec<f32> },
    /// `x * scale + offset` on every value (e.g. `[0,1] → [-1,1]` with 2, -1).
    Rescale { scale: f32, offset: f32 },
}

impl Transform {
    /// Horizontal flip with probability ½.
    pub fn random_horizontal_flip() -> Self {
        Transform::HorizontalFlip { p: 0.5 }
    }

    pub fn random_crop(padding: usize) -> Self {
        Transform::RandomCrop { padding }
    }

    /// # Panics
    /// If `mean` and `std` differ in length or a `std` is not positive.
    pub fn normalize(mean: &[f32], std: &[f32]) -> Self {
        assert_eq!(mean.len(), std.len(), "normalize: mean and std lengths");
        assert!(
            std.iter().all(|&s| s > 0.0),
            "normalize: std must be positive"
        );
        Transform::Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    pub fn rescale(scale: f32, offset: f32) -> Self {
        Transform::Rescale { scale, offset }
    }

    /// Whether the step moves pixels (so a mask must move with its image) rather than
    /// changing their values.
    pub fn is_geometric(&self) -> bool {
        matches!(
            self,
            Transform::HorizontalFlip { .. } | Transform::RandomCrop { .. }
        )
    }

    /// Whether this step can be applied to images of `channels` channels.
    pub fn supports_channels(&self, channels: usize) -> bool {
        match self {
            Transform::Normalize { mean, .. } => mean.len() == channels,
            _ => true,
        }
    }

    /// Applies the step to one HWC image in place; `scratch` is reused between calls.
    pub fn apply(
        &self,
        image: &mut [f32],
        shape: [usize; 3],
        rng: &mut Rng,
        scratch: &mut Vec<f32>,
    ) {
        match self {
            Transform::HorizontalFlip { p } => {
                if rng.next_f32() < *p {
                    hflip(image, shape);
                }
            }
            Transform::RandomCrop { padding } => {
                let span = 2 * *padding as u64 + 1;
                let top = rng.below(span) as usize;
                let left = rng.below(span) as usize;
                scratch.clear();
                scratch.extend_from_slice(image);
                crop_padded_into(scratch, image, shape, *padding, top, left);
            }
            Transform::Normalize { mean, std } => normalize(image, shape, mean, std),
            Transform::Rescale { scale, offset } => {
                image.iter_mut().for_each(|x| *x = *x * scale + offset)
            }
        }
    }
}

/// Mirrors an HWC image left↔right in place.
pub fn hflip(image: &mut [f32], [h, w, c]: [usize; 3]) {
    for y in 0..h {
        let row = &mut image[y * w * c..(y + 1) * w * c];
        for x in 0..w / 2 {
            for ch in 0..c {
                row.swap(x * c + ch, (w - 1 - x) * c + ch);
            }
        }
    }
}

/// Pads an HWC image with `padding` zeros on every side and crops an H×W window whose
/// top-left corner is at (`top`, `left`) in the padded image (`0..=2·padding` each).
/// `top = left = padding` returns the image unchanged.
pub fn crop_padded(
    image: &[f32],
    shape: [usize; 3],
    padding: usize,
    top: usize,
    left: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; image.len()];
    crop_padded_into(image, &mut out, shape, padding, top, left);
    out
}

fn crop_padded_into(
    src: &[f32],
    dst: &mut [f32],
    [h, w, c]: [usize; 3],
    padding: usize,
    top: usize,
    left: usize,
) {
    // Output (y, x) reads input (y + top - padding, x + left - padding), zero outside.
    let dy = top as isize - padding as isize;
    let dx = left as isize - padding as isize;
    for y in 0..h {
        let sy = y as isize + dy;
        let out_row = &mut dst[y * w * c..(y + 1) * w * c];
        if sy < 0 || sy >= h as isize {
            out_row.fill(0.0);
            continue;
        }
        let in_row = &src[sy as usize * w * c..(sy as usize + 1) * w * c];
        for x in 0..w {
            let sx = x as isize + dx;
            let o = &mut out_row[x * c..(x + 1) * c];
            if sx < 0 || sx >= w as isize {
                o.fill(0.0);
            } else {
                o.copy_from_slice(&in_row[sx as usize * c..(sx as usize + 1) * c]);
            }
        }
    }
}

/// `(x - mean[c]) / std[c]` on an HWC image in place.
///
/// # Panics
/// If `mean` or `std` does not have one entry per channel.
pub fn normalize(image: &mut [f32], [_, _, c]: [usize; 3], mean: &[f32], std: &[f32]) {
    assert!(
        mean.len() == c && std.len() == c,
        "normalize: {c} channels but {} means and {} stds",
        mean.len(),
        std.len()
    );
    let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
    for px in image.chunks_exact_mut(c) {
        for ch in 0..c {
            px[ch] = (px[ch] - mean[ch]) * inv[ch];
        }
    }
}

/// Centre crop and/or zero-pad an HWC image to `[out_h, out_w]` (as TF's
/// `resize_with_crop_or_pad`): 28→32 puts 2 zero rows above and 2 below. An odd difference
/// puts the extra row/column at the bottom/right when padding, and crops it from the
/// bottom/right when cropping.
pub fn crop_or_pad(image: &[f32], [h, w, c]: [usize; 3], [out_h, out_w]: [usize; 2]) -> Vec<f32> {
    let mut out = vec![0.0; out_h * out_w * c];
    // Offset of the source inside the output (may be negative: a crop).
    let oy = (out_h as isize - h as isize).div_euclid(2);
    let ox = (out_w as isize - w as isize).div_euclid(2);
    for y in 0..out_h {
        let sy = y as isize - oy;
        if sy < 0 || sy >= h as isize {
            continue;
        }
        for x in 0..out_w {
            let sx = x as isize - ox;
            if sx < 0 || sx >= w as isize {
                continue;
            }
            let s = (sy as usize * w + sx as usize) * c;
            let d = (y * out_w + x) * c;
            out[d..d + c].copy_from_slice(&image[s..s + c]);
        }
    }
    out
}

/// Nearest-neighbour resize of an HWC image with half-pixel centres (TF2's
/// `resize(method="nearest")`): output pixel `o` reads `floor((o + 0.5)·in/out)`. Values are
/// copied, never blended, which is what a label mask needs.
pub fn resize_nearest(
    image: &[f32],
    [h, w, c]: [usize; 3],
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    let mut out = vec![0.0; out_h * out_w * c];
    if h == 0 || w == 0 {
        return out;
    }
    let src = |o: usize, n_in: usize, n_out: usize| {
        (((o as f64 + 0.5) * n_in as f64 / n_out as f64).floor() as usize).min(n_in - 1)
    };
    for y in 0..out_h {
        let sy = src(y, h, out_h);
        for x in 0..out_w {
            let sx = src(x, w, out_w);
            let from = (sy * w + sx) * c;
            out[(y * out_w + x) * c..][..c].copy_from_slice(&image[from..from + c]);
        }
    }
    out
}

/// Bilinear resize of an HWC image with half-pixel centres and edge clamping (TF2/Keras
/// `resize(method="bilinear", antialias=False)`).
pub fn resize_bilinear(
    image: &[f32],
    [h, w, c]: [usize; 3],
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    let mut out = vec![0.0; out_h * out_w * c];
    if h == 0 || w == 0 {
        return out;
    }
    let axis = |o: usize, n_in: usize, n_out: usize| {
        let src = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, src - i0 as f32)
    };
    for y in 0..out_h {
        let (y0, y1, fy) = axis(y, h, out_h);
        for x in 0..out_w {
            let (x0, x1, fx) = axis(x, w, out_w);
            for ch in 0..c {
                let p = |yy: usize, xx: usize| image[(yy * w + xx) * c + ch];
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                let bot = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                out[(y * out_w + x) * c + ch] = top + (bot - top) * fy;
            }
        }
    }
    out
}
