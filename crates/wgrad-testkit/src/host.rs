//! Moving data between the host and the device under test, and row-major index arithmetic
//! recomputed here so references share no code with the crate.

use wgrad_tensor::{Element, Tensor};

/// Host data as a tensor on the device under test.
pub fn up<T: Element>(data: &[T], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&crate::device(), data, shape).unwrap()
}

/// A tensor's f32 values on the host.
pub fn down(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides.
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
