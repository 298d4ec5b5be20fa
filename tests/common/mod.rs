//! Test-only helpers shared by the test targets: the device under test, an f64 reference
//! toolkit, seeded host data and tolerance checks.
#![allow(dead_code)]

use wgrad::{Device, Strategy};

/// The device every test runs on: `WGRAD_ADAPTER` / `WGPU_BACKEND` select it, as for users.
pub fn device() -> Device {
    wgrad::default_device()
        .expect("tests need an adapter: run `cargo xtask test`, which installs the software one")
}

/// The device under test with each matmul-like strategy, so both pass the same checks.
pub fn strategies() -> [Device; 2] {
    let d = device();
    [
        d.with_strategy(Strategy::Tiled),
        d.with_strategy(Strategy::RegisterBlocked),
    ]
}

/// SplitMix64: reproducible host data independent of the device's generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise, naming the first offender.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "length mismatch");
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
            "element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// f64 reference matmul of row-major [m, k] x [k, n].
pub fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for j in 0..n {
                c[i * n + j] += av * b[p * n + j] as f64;
            }
        }
    }
    c
}

/// IoU of two `[y0, x0, y1, x1]` boxes in f64, written from the definition: corners sorted,
/// empty boxes overlap nothing.
pub fn box_iou_f64(a: &[f32], b: &[f32]) -> f64 {
    let c = |v: &[f32]| {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        (
            v[0].min(v[2]),
            v[1].min(v[3]),
            v[0].max(v[2]),
            v[1].max(v[3]),
        )
    };
    let (ay0, ax0, ay1, ax1) = c(a);
    let (by0, bx0, by1, bx1) = c(b);
    let (area_a, area_b) = ((ay1 - ay0) * (ax1 - ax0), (by1 - by0) * (bx1 - bx0));
    if area_a <= 0.0 || area_b <= 0.0 {
        return 0.0;
    }
    let ih = (ay1.min(by1) - ay0.max(by0)).max(0.0);
    let iw = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    let inter = ih * iw;
    inter / (area_a + area_b - inter)
}

pub mod oracle;

/// The typed error a bad call must return.
#[track_caller]
pub fn is_shape<T: std::fmt::Debug>(r: wgrad::Result<T>) {
    assert!(
        matches!(r, Err(wgrad::Error::Shape { .. })),
        "expected Error::Shape, got {r:?}"
    );
}

#[track_caller]
pub fn is_invalid<T: std::fmt::Debug>(r: wgrad::Result<T>) {
    assert!(
        matches!(r, Err(wgrad::Error::InvalidArgument { .. })),
        "expected Error::InvalidArgument, got {r:?}"
    );
}

#[track_caller]
pub fn is_dtype<T: std::fmt::Debug>(r: wgrad::Result<T>) {
    assert!(
        matches!(r, Err(wgrad::Error::Dtype { .. })),
        "expected Error::Dtype, got {r:?}"
    );
}

/// An f32 tensor on the device under test.
pub fn up(data: &[f32], shape: &[usize]) -> wgrad::Tensor {
    wgrad::Tensor::from_slice(&device(), data, shape).unwrap()
}

/// A tensor's f32 values on the host.
pub fn down(t: &wgrad::Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

pub fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

pub const SELU_ALPHA: f64 = 1.6732632423543772;
pub const SELU_SCALE: f64 = 1.0507009873554805;

/// erf in f64: Maclaurin series where it converges without cancellation, the Laplace
/// continued fraction for erfc beyond. Both are accurate far past f32 precision.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let v = if z < 2.5 {
        let mut term = z;
        let mut sum = z;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut t = z;
        for n in (1..=200).rev() {
            t = z + (n as f64 / 2.0) / t;
        }
        1.0 - (-z * z).exp() / (std::f64::consts::PI.sqrt() * t)
    };
    v.copysign(x)
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn elu(x: f64, a: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        a * x.exp_m1()
    }
}

/// `act(x)` in f64 for an elementwise activation (Keras's formulas; GELU the exact erf form).
pub fn activation_f64(act: wgrad::Activation, x: f64) -> f64 {
    use wgrad::Activation::*;
    match act {
        Linear => x,
        Relu => x.max(0.0),
        LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a as f64 * x
            }
        }
        Elu(a) => elu(x, a as f64),
        Selu => SELU_SCALE * elu(x, SELU_ALPHA),
        Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Sigmoid => sigmoid(x),
        Tanh => x.tanh(),
        Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        Softmax => panic!("softmax is a row op: activation_rows_f64"),
    }
}

/// `act` over rows of `n` values: elementwise, or softmax along each row.
pub fn activation_rows_f64(z: &[f64], n: usize, act: wgrad::Activation) -> Vec<f64> {
    if act != wgrad::Activation::Softmax {
        return z.iter().map(|&v| activation_f64(act, v)).collect();
    }
    z.chunks(n)
        .flat_map(|row| {
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect()
}
