//! Parity tests of every tensor op except matmul against an independent f64 reference written
//! here with plain loops. One test target, so the device opens once per run.

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod cast;
mod elementwise;
mod errors;
mod fill;
mod layout;
mod random;
mod reduce;
mod softmax;

use wgrad::{Element, Tensor};

/// Uploads host data to the device under test.
pub fn up<T: Element>(data: &[T], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&common::device(), data, shape).unwrap()
}

/// Reads an f32 tensor back.
pub fn down(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Row-major strides, recomputed here so the reference shares no code with the crate.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Multi-index of flat position `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// [`common::assert_close`] with a description of the case in the message.
#[track_caller]
pub fn close(ctx: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{ctx}: length mismatch");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{ctx}: element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}
