//! `tf.image.resize` for NHWC f32 images (`shaders/resize.wgsl`): bilinear, nearest, area and
//! bicubic, with TF 2's half-pixel centres, and antialiased bilinear and bicubic (TF's
//! `scale_and_translate` with the triangle and Keys kernels).
//!
//! Every method is separable, so a resize is two passes of one kernel, along H and then W,
//! each with a table of (first source index, weights) per output position. The tables are
//! computed here in f32 exactly as TF's kernels compute their interpolation weights (the
//! scale as `in / out` in f32, `floor`/`ceil` of f32 positions, bicubic's 1,024-entry
//! coefficient table with `lrintf`), so the sample positions and edge rules are TF's.

use super::launch_1d;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static RESIZE: "resize" in "resize.wgsl",
    workgroup 64,
    entries ["resize_axis"],
    blocks [ResizeParams]);

params!("Params" => struct ResizeParams {
    a: u32,
    // Extent of the resized axis in the input, and in the output.
    n_in: u32,
    n_out: u32,
    b: u32,
    // Weights per output position (zero-padded).
    taps: u32,
    // a · n_out · b
    total: u32,
    row: u32,
    pad: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&RESIZE, Spec::new())]
}

/// The `method` of `tf.image.resize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMethod {
    Bilinear,
    Nearest,
    Area,
    Bicubic,
}

/// One axis's resampling: for output position o, `weights[o·taps .. (o+1)·taps]` apply to
/// source positions `start[o] ..`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AxisTable {
    pub start: Vec<u32>,
    pub weights: Vec<f32>,
    pub taps: usize,
}

impl AxisTable {
    /// From each output's (source, weight) pairs, which must be contiguous in source order.
    fn from_pairs(pairs: Vec<Vec<(usize, f32)>>) -> AxisTable {
        let taps = pairs.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut start = Vec::with_capacity(pairs.len());
        let mut weights = vec![0f32; pairs.len() * taps];
        for (o, p) in pairs.iter().enumerate() {
            let s = p.first().map_or(0, |&(i, _)| i);
            start.push(s as u32);
            for &(i, w) in p {
                weights[o * taps + (i - s)] += w;
            }
        }
        AxisTable {
            start,
            weights,
            taps,
        }
    }
}

/// TF's `CalculateResizeScale` without align_corners: `in / out` in f32.
fn scale(n_in: usize, n_out: usize) -> f32 {
    n_in as f32 / n_out as f32
}

/// resize_bilinear(half_pixel_centers): source (o + ½)·scale − ½, lower index clamped at 0,
/// upper at the last row, weight of the upper one its fractional part.
fn bilinear(n_in: usize, n_out: usize) -> AxisTable {
    let s = scale(n_in, n_out);
    AxisTable::from_pairs(
        (0..n_out)
            .map(|o| {
                let x = (o as f32 + 0.5) * s - 0.5;
                let f = x.floor();
                let lower = (f as i64).max(0) as usize;
                let upper = (x.ceil() as i64).min(n_in as i64 - 1) as usize;
                let lerp = x - f;
                if upper == lower {
                    vec![(lower, 1.0)]
                } else {
                    vec![(lower, 1.0 - lerp), (upper, lerp)]
                }
            })
            .collect(),
    )
}

/// resize_nearest_neighbor(half_pixel_centers): floor((o + ½)·scale), clamped.
fn nearest(n_in: usize, n_out: usize) -> AxisTable {
    let s = scale(n_in, n_out);
    AxisTable::from_pairs(
        (0..n_out)
            .map(|o| {
                let i = ((o as f32 + 0.5) * s).floor() as i64;
                vec![(i.clamp(0, n_in as i64 - 1) as usize, 1.0)]
            })
            .collect(),
    )
}

/// resize_area: each output cell [o·scale, (o+1)·scale) averages the source cells it covers,
/// weighted by the covered length.
fn area(n_in: usize, n_out: usize) -> AxisTable {
    let s = scale(n_in, n_out);
    AxisTable::from_pairs(
        (0..n_out)
            .map(|o| {
                let (lo, hi) = (o as f32 * s, (o + 1) as f32 * s);
                let (first, end) = (lo.floor() as i64, hi.ceil() as i64);
                let mut v: Vec<(usize, f32)> = Vec::new();
                for i in first..end {
                    let cover = (i as f32 + 1.0).min(hi) - (i as f32).max(lo);
                    let i = i.clamp(0, n_in as i64 - 1) as usize;
                    match v.last_mut() {
                        Some(last) if last.0 == i => last.1 += cover / s,
                        _ => v.push((i, cover / s)),
                    }
                }
                v
            })
            .collect(),
    )
}

/// resize_bicubic(half_pixel_centers): Keys' cubic (a = −0.5) from TF's 1,024-entry table;
/// taps outside the image get no weight and the rest are renormalised (TF's "keys" border).
fn bicubic(n_in: usize, n_out: usize) -> AxisTable {
    const TABLE: usize = 1024;
    const A: f32 = -0.5;
    let table: Vec<f32> = (0..=TABLE)
        .flat_map(|i| {
            let x = (i as f64 / TABLE as f64) as f32;
            let near = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
            let x = x + 1.0;
            let far = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
            [near, far]
        })
        .collect();
    let s = scale(n_in, n_out);
    AxisTable::from_pairs(
        (0..n_out)
            .map(|o| {
                let x = (o as f32 + 0.5) * s - 0.5;
                let loc = x.floor();
                // lrintf: round half to even, as the default rounding mode does.
                let off = ((x - loc) * TABLE as f32).round_ties_even() as usize;
                let loc = loc as i64;
                let w = [
                    table[off * 2 + 1],
                    table[off * 2],
                    table[(TABLE - off) * 2],
                    table[(TABLE - off) * 2 + 1],
                ];
                let inside: Vec<(usize, f32)> = (0..4)
                    .filter_map(|k| {
                        let i = loc - 1 + k as i64;
                        (0..n_in as i64).contains(&i).then(|| (i as usize, w[k]))
                    })
                    .collect();
                let sum: f32 = inside.iter().map(|p| p.1).sum();
                if sum.abs() >= 1000.0 * f32::MIN_POSITIVE {
                    let inv = 1.0 / sum;
                    inside.into_iter().map(|(i, w)| (i, w * inv)).collect()
                } else {
                    inside
                }
            })
            .collect(),
    )
}

/// scale_and_translate with antialiasing: kernel `k` of radius `radius`, widened by the
/// downscaling factor, sampled at (o + ½)/scale and normalised to sum 1.
fn scale_and_translate(n_in: usize, n_out: usize, radius: f32, k: fn(f32) -> f32) -> AxisTable {
    let scale = n_out as f32 / n_in as f32;
    let inv_scale = (1.0 / scale as f64) as f32;
    let kernel_scale = inv_scale.max(1.0);
    AxisTable::from_pairs(
        (0..n_out)
            .map(|o| {
                let sample = (o as f32 + 0.5) * inv_scale;
                if sample < 0.0 || sample > n_in as f32 {
                    return Vec::new();
                }
                let last = n_in as i64 - 1;
                let first = ((sample - radius * kernel_scale - 0.5).ceil() as i64).clamp(0, last);
                let end =
                    ((sample + radius * kernel_scale - 0.5).floor() as i64).clamp(0, last) + 1;
                let raw: Vec<(usize, f32)> = (first..end)
                    .map(|i| {
                        let pos = i as f32 + 0.5 - sample;
                        (i as usize, k((pos / kernel_scale).abs()))
                    })
                    .collect();
                let total: f32 = raw.iter().map(|p| p.1).sum();
                if total.abs() >= 1000.0 * f32::MIN_POSITIVE {
                    let inv = 1.0 / total;
                    raw.into_iter().map(|(i, w)| (i, w * inv)).collect()
                } else {
                    raw.into_iter().map(|(i, _)| (i, 0.0)).collect()
                }
            })
            .collect(),
    )
}

fn triangle(x: f32) -> f32 {
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Keys' cubic with a = −0.5, as scale_and_translate's "keyscubic" kernel.
fn keys_cubic(x: f32) -> f32 {
    if x >= 2.0 {
        0.0
    } else if x >= 1.0 {
        ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    } else {
        (1.5 * x - 2.5) * x * x + 1.0
    }
}

pub(crate) fn axis_table(
    method: ResizeMethod,
    antialias: bool,
    n_in: usize,
    n_out: usize,
) -> AxisTable {
    match (method, antialias) {
        (ResizeMethod::Bilinear, true) => scale_and_translate(n_in, n_out, 1.0, triangle),
        (ResizeMethod::Bicubic, true) => scale_and_translate(n_in, n_out, 2.0, keys_cubic),
        (ResizeMethod::Bilinear, false) => bilinear(n_in, n_out),
        (ResizeMethod::Bicubic, false) => bicubic(n_in, n_out),
        // TF ignores antialias for nearest and area.
        (ResizeMethod::Nearest, _) => nearest(n_in, n_out),
        (ResizeMethod::Area, _) => area(n_in, n_out),
    }
}

/// One pass along the middle axis of an [a, n_in, b] view.
fn pass(
    x: &Tensor,
    t: &AxisTable,
    a: usize,
    n_in: usize,
    b: usize,
    out_shape: &[usize],
) -> Result<Tensor> {
    let op = "resize";
    let dev = x.device();
    let n_out = t.start.len();
    let start = Tensor::from_slice(dev, &t.start, &[n_out])?;
    let weights = Tensor::from_slice(dev, &t.weights, &[t.weights.len()])?;
    let y = Tensor::uninit(dev, op, out_shape, DType::F32)?;
    let total = a * n_out * b;
    launch_1d(
        dev,
        &RESIZE,
        "resize_axis",
        &Spec::new(),
        |row| ResizeParams {
            a: a as u32,
            n_in: n_in as u32,
            n_out: n_out as u32,
            b: b as u32,
            taps: t.taps as u32,
            total: total as u32,
            row,
            pad: 0,
        },
        &[x.bind(), start.bind(), weights.bind(), y.bind()],
        total as u64,
    )?;
    Ok(y)
}

impl Tensor {
    /// `tf.image.resize(images, size, method, antialias)` of NHWC f32 images to `size` =
    /// (height, width).
    pub fn resize(
        &self,
        size: [usize; 2],
        method: ResizeMethod,
        antialias: bool,
    ) -> Result<Tensor> {
        let op = "resize";
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].resize(size, method, antialias))? {
            return Ok(y);
        }
        self.expect_dtype(op, DType::F32)?;
        let &[n, h, w, c] = self.shape() else {
            return Err(Error::shape(
                op,
                "images must be NHWC (rank 4)",
                &[self.shape()],
            ));
        };
        if size.contains(&0) || h == 0 || w == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "cannot resize {h}x{w} images to {}x{}: every extent must be positive",
                    size[0], size[1]
                ),
            ));
        }
        let [oh, ow] = size;
        let th = axis_table(method, antialias, h, oh);
        let tw = axis_table(method, antialias, w, ow);
        let rows = pass(self, &th, n, h, w * c, &[n, oh, w, c])?;
        pass(&rows, &tw, n * oh, w, c, &[n, oh, ow, c])
    }
}

/// The input conventions of `keras.applications` (`preprocess_input`'s `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// "caffe" (VGG, ResNet50): RGB to BGR, then minus the ImageNet channel means.
    Caffe,
    /// "tf" (Xception, Inception, MobileNet): scaled from [0, 255] to [-1, 1].
    Tf,
    /// "torch" (DenseNet): scaled to [0, 1], then standardised with the ImageNet mean and
    /// standard deviation.
    Torch,
}

impl Tensor {
    /// Keras's `preprocess_input` of NHWC RGB images with values in [0, 255].
    pub fn preprocess_input(&self, mode: Preprocess) -> Result<Tensor> {
        let op = "preprocess_input";
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].preprocess_input(mode))? {
            return Ok(y);
        }
        self.expect_dtype(op, DType::F32)?;
        if self.rank() == 0 || self.shape().last() != Some(&3) {
            return Err(Error::shape(
                op,
                "images must end in 3 RGB channels",
                &[self.shape()],
            ));
        }
        let dev = self.device();
        let per_channel = |v: [f32; 3]| Tensor::from_slice(dev, &v, &[3]);
        match mode {
            Preprocess::Caffe => {
                let c = self.rank() as isize - 1;
                let bgr = Tensor::concat(
                    &[
                        &self.slice(c, 2, 3)?,
                        &self.slice(c, 1, 2)?,
                        &self.slice(c, 0, 1)?,
                    ],
                    c,
                )?;
                bgr.sub(&per_channel([103.939, 116.779, 123.68])?)
            }
            Preprocess::Tf => self.div_scalar(127.5)?.sub_scalar(1.0),
            Preprocess::Torch => self
                .div_scalar(255.0)?
                .sub(&per_channel([0.485, 0.456, 0.406])?)?
                .div(&per_channel([0.229, 0.224, 0.225])?),
        }
    }
}
