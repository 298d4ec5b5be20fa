//! Layers that resize images: UpSampling2D, ZeroPadding2D, CenterCrop.

use wgrad_graph::{ops, Var};
use wgrad_tensor::{DType, Device, Tensor, Upsample};

use super::expect_rank;
use crate::{Ctx, Error, Layer, Result};

/// Keras's `UpSampling2D(size, interpolation)`: nearest (default) or bilinear.
#[derive(Debug)]
pub struct UpSampling2D {
    size: [usize; 2],
    mode: Upsample,
}

impl UpSampling2D {
    pub fn new(size: usize) -> UpSampling2D {
        UpSampling2D {
            size: [size, size],
            mode: Upsample::Nearest,
        }
    }
    pub fn bilinear(mut self) -> Self {
        self.mode = Upsample::Bilinear;
        self
    }
}

impl Layer for UpSampling2D {
    fn kind(&self) -> &'static str {
        "UpSampling2D"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let [h, w, c] = expect_rank::<3>("UpSampling2D", input, "[H, W, C] images")?;
        if self.size.contains(&0) {
            return Err(Error::config("UpSampling2D", "size must be at least 1"));
        }
        Ok(vec![h * self.size[0], w * self.size[1], c])
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        Ok(ops::upsample2d(x, self.size, self.mode)?)
    }
}

/// Keras's `ZeroPadding2D(((top, bottom), (left, right)))`.
#[derive(Debug)]
pub struct ZeroPadding2D {
    pad: [usize; 4],
}

impl ZeroPadding2D {
    /// The same `p` pixels on every side.
    pub fn new(p: usize) -> ZeroPadding2D {
        ZeroPadding2D { pad: [p; 4] }
    }
    pub fn sides(top: usize, bottom: usize, left: usize, right: usize) -> ZeroPadding2D {
        ZeroPadding2D {
            pad: [top, bottom, left, right],
        }
    }
}

/// `x` with `before` and `after` zero rows joined along `axis` (the gradient is the slice).
fn pad_axis(x: &Var, axis: usize, before: usize, after: usize) -> Result<Var> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let zeros = |n: usize| -> Result<Var> {
        let mut s = x.shape().to_vec();
        s[axis] = n;
        Ok(Var::new(Tensor::zeros(x.value().device(), &s, DType::F32)?))
    };
    let (b, a) = (zeros(before)?, zeros(after)?);
    let mut parts = Vec::new();
    if before > 0 {
        parts.push(&b);
    }
    parts.push(x);
    if after > 0 {
        parts.push(&a);
    }
    Ok(ops::concat(&parts, axis as isize)?)
}

impl Layer for ZeroPadding2D {
    fn kind(&self) -> &'static str {
        "ZeroPadding2D"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let [h, w, c] = expect_rank::<3>("ZeroPadding2D", input, "[H, W, C] images")?;
        let [t, b, l, r] = self.pad;
        Ok(vec![h + t + b, w + l + r, c])
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let [t, b, l, r] = self.pad;
        pad_axis(&pad_axis(x, 1, t, b)?, 2, l, r)
    }
}

/// Keras's `CenterCrop(height, width)`: the central window (the odd pixel of an uneven margin
/// is cut from the bottom/right, as Keras).
#[derive(Debug)]
pub struct CenterCrop {
    size: [usize; 2],
}

impl CenterCrop {
    pub fn new(height: usize, width: usize) -> CenterCrop {
        CenterCrop {
            size: [height, width],
        }
    }
}

impl Layer for CenterCrop {
    fn kind(&self) -> &'static str {
        "CenterCrop"
    }
    fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
        let [h, w, c] = expect_rank::<3>("CenterCrop", input, "[H, W, C] images")?;
        let [th, tw] = self.size;
        if th > h || tw > w || th == 0 || tw == 0 {
            return Err(Error::config(
                "CenterCrop",
                format!("cannot crop {h}x{w} images to {th}x{tw}"),
            ));
        }
        Ok(vec![th, tw, c])
    }
    fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
        let (h, w) = (x.shape()[1], x.shape()[2]);
        let [th, tw] = self.size;
        let (top, left) = ((h - th) / 2, (w - tw) / 2);
        let y = ops::slice(x, 1, top, top + th)?;
        Ok(ops::slice(&y, 2, left, left + tw)?)
    }
}
