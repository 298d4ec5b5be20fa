//! f64 references written from the definitions, sharing no code with the kernels.

use wgrad_tensor::Activation;

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
pub fn activation_f64(act: Activation, x: f64) -> f64 {
    use Activation::*;
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
pub fn activation_rows_f64(z: &[f64], n: usize, act: Activation) -> Vec<f64> {
    if act != Activation::Softmax {
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

/// TensorFlow's window rule for convolutions, written from its definition: for each spatial
/// axis of an `[N, H, W, C]` input and a `kernel` window, the padding before the first pixel
/// and the output extent (SAME pads `total` = what the stride leaves over, `total / 2` before).
pub fn conv_window(
    x: [usize; 4],
    kernel: [usize; 2],
    o: &wgrad_tensor::Conv2dOptions,
) -> ([usize; 2], [usize; 2]) {
    use wgrad_tensor::Padding;
    let mut pad = [0; 2];
    let mut out = [0; 2];
    for a in 0..2 {
        let span = (kernel[a] - 1) * o.dilation[a] + 1;
        let (before, total) = match o.padding {
            Padding::Valid => (0, 0),
            Padding::Same => {
                let oa = x[a + 1].div_ceil(o.stride[a]);
                let t = ((oa - 1) * o.stride[a] + span).saturating_sub(x[a + 1]);
                (t / 2, t)
            }
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => {
                if a == 0 {
                    (top, top + bottom)
                } else {
                    (left, left + right)
                }
            }
        };
        pad[a] = before;
        out[a] = (x[a + 1] + total - span) / o.stride[a] + 1;
    }
    (pad, out)
}
