//! Depthwise convolution (groups == C, channel multiplier M) through the direct kernels of
//! ops/depthwise.rs, which `conv2d`, `conv2d_backward_input` and `conv2d_backward_filter` route
//! to: TensorFlow's reference cases, an f64 reference over random configurations (every load
//! path: vec4, splat, gather, scalar), finite differences, the fused epilogue, and a long
//! filter-gradient reduction that is split. The routing must hold under both strategies, so
//! every check runs with each.
//!
//! The grouped GEMM these kernels replace cannot be reached any more for groups == C, so the
//! comparisons are with the f64 reference (which tests/conv.rs also checks the GEMM against).

use wgrad_tensor::{Activation, Conv2dOptions, ConvEpilogue, Padding, Tensor};
use wgrad_testkit::oracle::cases;
use wgrad_testkit::{assert_close, check_conv2d_gradients, close, strategies, Rng};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

#[test]
fn depthwise_matches_tensorflow() {
    let all = cases("depthwise_conv2d");
    assert!(!all.is_empty());
    for dev in strategies() {
        for c in &all {
            let up = |role: &str| {
                let (s, d) = c.get(role);
                Tensor::from_slice(&dev, d, s).unwrap()
            };
            let want =
                |role: &str| -> Vec<f64> { c.get(role).1.iter().map(|&v| v as f64).collect() };
            let (x, dy) = (up("input"), up("grad_output"));
            // Keras's (kh, kw, C, M) kernel is, in memory, HWIO [kh, kw, 1, C·M] with output
            // channel c·M + m.
            let (ws, wd) = c.get("filter");
            let w = Tensor::from_slice(&dev, wd, &[ws[0], ws[1], 1, ws[2] * ws[3]]).unwrap();
            let padding = match c.str("padding") {
                "same" => Padding::Same,
                "valid" => Padding::Valid,
                p => panic!("padding {p}"),
            };
            let opts = Conv2dOptions {
                stride: c.pair("stride"),
                dilation: c.pair("dilation"),
                padding,
                groups: x.shape()[3],
            };
            let ctx = format!("{} {opts:?} ({:?})", c.name, dev.strategy());
            let y = x.conv2d(&w, opts).unwrap();
            assert_eq!(y.shape(), c.get("output").0, "{ctx}");
            assert_close(&y.to_vec::<f32>().unwrap(), &want("output"), RTOL, ATOL);
            let dx = dy.conv2d_backward_input(&w, x.shape(), opts).unwrap();
            assert_close(
                &dx.to_vec::<f32>().unwrap(),
                &want("grad_input"),
                RTOL,
                ATOL,
            );
            let dw = x.conv2d_backward_filter(&dy, [ws[0], ws[1]], opts).unwrap();
            assert_eq!(dw.shape(), w.shape(), "{ctx}");
            assert_close(
                &dw.to_vec::<f32>().unwrap(),
                &want("grad_filter"),
                RTOL,
                ATOL,
            );
        }
    }
}

/// One depthwise configuration and its f64 reference results.
struct Case {
    x: [usize; 4],
    k: [usize; 2],
    m: usize,
    opts: Conv2dOptions,
    y: [usize; 4],
    xv: Vec<f32>,
    wv: Vec<f32>,
    dyv: Vec<f32>,
    /// y, dx and dw in f64.
    want: [Vec<f64>; 3],
}

impl Case {
    fn new(rng: &mut Rng, x: [usize; 4], k: [usize; 2], m: usize, opts: Conv2dOptions) -> Case {
        let c = x[3];
        let o = c * m;
        let (pad, out) = wgrad_testkit::conv_window(x, k, &opts);
        let y = [x[0], out[0], out[1], o];
        let xv = rng.vec(x.iter().product(), -1.0, 1.0);
        let wv = rng.vec(k[0] * k[1] * o, -1.0, 1.0);
        let dyv = rng.vec(y.iter().product(), -1.0, 1.0);
        let (mut yr, mut dx, mut dw) = (
            vec![0f64; dyv.len()],
            vec![0f64; xv.len()],
            vec![0f64; wv.len()],
        );
        for n in 0..x[0] {
            for oy in 0..out[0] {
                for ox in 0..out[1] {
                    for oc in 0..o {
                        // Output channel oc reads input channel oc / M.
                        let ic = oc / m;
                        let yi = ((n * out[0] + oy) * out[1] + ox) * o + oc;
                        for i in 0..k[0] {
                            for j in 0..k[1] {
                                let iy = (oy * opts.stride[0] + i * opts.dilation[0]) as isize
                                    - pad[0] as isize;
                                let ix = (ox * opts.stride[1] + j * opts.dilation[1]) as isize
                                    - pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= x[1] as isize || ix >= x[2] as isize {
                                    continue;
                                }
                                let xi = ((n * x[1] + iy as usize) * x[2] + ix as usize) * c + ic;
                                let wi = (i * k[1] + j) * o + oc;
                                yr[yi] += xv[xi] as f64 * wv[wi] as f64;
                                dx[xi] += dyv[yi] as f64 * wv[wi] as f64;
                                dw[wi] += dyv[yi] as f64 * xv[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
        Case {
            x,
            k,
            m,
            opts,
            y,
            xv,
            wv,
            dyv,
            want: [yr, dx, dw],
        }
    }

    fn w_shape(&self) -> [usize; 4] {
        [self.k[0], self.k[1], 1, self.x[3] * self.m]
    }

    /// Runs the three directions on `dev` and compares with the reference; the filter
    /// gradient's tolerance grows with its reduction length (N·OH·OW terms).
    fn check(&self, dev: &wgrad_tensor::Device, ctx: &str) {
        let tx = Tensor::from_slice(dev, &self.xv, &self.x).unwrap();
        let tw = Tensor::from_slice(dev, &self.wv, &self.w_shape()).unwrap();
        let tdy = Tensor::from_slice(dev, &self.dyv, &self.y).unwrap();
        let y = tx.conv2d(&tw, self.opts).unwrap();
        assert_eq!(y.shape(), &self.y, "{ctx}");
        let got = y.to_vec::<f32>().unwrap();
        let taps = (self.k[0] * self.k[1]) as f64;
        close(
            &format!("{ctx}: forward"),
            &got,
            &self.want[0],
            1e-4,
            1e-5 * taps,
        );
        let dx = tdy.conv2d_backward_input(&tw, &self.x, self.opts).unwrap();
        let got = dx.to_vec::<f32>().unwrap();
        let terms = taps * self.m as f64;
        close(
            &format!("{ctx}: input grad"),
            &got,
            &self.want[1],
            1e-4,
            1e-5 * terms,
        );
        let dw = tx.conv2d_backward_filter(&tdy, self.k, self.opts).unwrap();
        assert_eq!(dw.shape(), &self.w_shape(), "{ctx}");
        let got = dw.to_vec::<f32>().unwrap();
        let npq = (self.y[0] * self.y[1] * self.y[2]) as f64;
        close(
            &format!("{ctx}: filter grad"),
            &got,
            &self.want[2],
            1e-4,
            1e-5 * npq,
        );
    }
}

#[test]
fn random_configurations_match_f64_reference() {
    let mut rng = Rng::new(21);
    let devs = strategies();
    // Channel counts and multipliers chosen to reach every load path: M = 1 with C % 4 == 0
    // (vec4), M = 4 (splatted scalar), M = 2, 3 (gathers), and C·M % 4 != 0 (scalar).
    let channels = [1, 3, 4, 8, 12];
    let multipliers = [1, 2, 3, 4];
    for case in 0..40 {
        let c = channels[case % channels.len()];
        let m = multipliers[(case / channels.len()) % multipliers.len()];
        let k = [
            1 + (rng.next_u64() % 4) as usize,
            1 + (rng.next_u64() % 4) as usize,
        ];
        let stride = [
            1 + (rng.next_u64() % 3) as usize,
            1 + (rng.next_u64() % 3) as usize,
        ];
        let dilation = [
            1 + (rng.next_u64() % 2) as usize,
            1 + (rng.next_u64() % 2) as usize,
        ];
        let padding = match case % 3 {
            0 => Padding::Same,
            1 => Padding::Valid,
            _ => Padding::Explicit {
                top: 1,
                bottom: 0,
                left: 2,
                right: 1,
            },
        };
        let h = (k[0] - 1) * dilation[0] + 1 + (rng.next_u64() % 7) as usize;
        let w = (k[1] - 1) * dilation[1] + 1 + (rng.next_u64() % 7) as usize;
        let n = 1 + (rng.next_u64() % 3) as usize;
        let opts = Conv2dOptions {
            stride,
            padding,
            dilation,
            groups: c,
        };
        let cs = Case::new(&mut rng, [n, h, w, c], k, m, opts);
        for dev in &devs {
            let ctx = format!(
                "case {case}: x {:?} k {k:?} M {m} {opts:?} ({:?})",
                cs.x,
                dev.strategy()
            );
            cs.check(dev, &ctx);
        }
    }
}

/// Xception-like layer shapes: vec4 channels, power-of-two and odd strides, and filter-gradient
/// reductions long enough to be split into many chunks (with a ragged last chunk).
#[test]
fn vec4_paths_and_split_filter_gradient() {
    let mut rng = Rng::new(22);
    for (x, k, m, s, padding) in [
        ([2, 33, 37, 16], [3, 3], 1, 1, Padding::Same),
        ([3, 29, 31, 8], [3, 3], 1, 2, Padding::Same),
        ([1, 45, 23, 4], [5, 5], 1, 3, Padding::Valid),
        ([2, 19, 21, 8], [3, 3], 2, 1, Padding::Same),
        ([2, 17, 17, 4], [3, 3], 4, 2, Padding::Same),
    ] {
        let opts = Conv2dOptions {
            stride: [s, s],
            padding,
            groups: x[3],
            ..Default::default()
        };
        let cs = Case::new(&mut rng, x, k, m, opts);
        for dev in strategies() {
            let ctx = format!("x {x:?} k {k:?} M {m} {opts:?} ({:?})", dev.strategy());
            cs.check(&dev, &ctx);
        }
    }
}

/// d/dθ of L = Σ depthwise(x, w)·g by central differences, against both gradient kernels.
#[test]
fn gradients_match_finite_differences() {
    let opts = Conv2dOptions {
        stride: [2, 1],
        padding: Padding::Same,
        dilation: [1, 2],
        groups: 3,
    };
    let x_samples = usize::MAX;
    check_conv2d_gradients(
        &mut Rng::new(23),
        [2, 6, 7, 3],
        [3, 2, 1, 6],
        opts,
        x_samples,
    );
}

/// act(y · scale + bias + residual) in the depthwise write-out equals the same steps done on
/// the host from the plain output, for fused (ReLU, leaky ReLU) and unfused (sigmoid)
/// activations, on a vec4 (C = 8, M = 1) and a scalar (C = 3, M = 3 -> O = 9) layout.
#[test]
fn fused_epilogue() {
    let mut rng = Rng::new(24);
    for dev in strategies() {
        for (c, m) in [(8, 1), (3, 3)] {
            let o = c * m;
            let xs = [2, 7, 6, c];
            let ws = [3, 3, 1, o];
            let opts = Conv2dOptions {
                padding: Padding::Same,
                groups: c,
                ..Default::default()
            };
            let tx =
                Tensor::from_slice(&dev, &rng.vec(xs.iter().product(), -1.0, 1.0), &xs).unwrap();
            let tw = Tensor::from_slice(&dev, &rng.vec(9 * o, -1.0, 1.0), &ws).unwrap();
            let bv = rng.vec(o, -1.0, 1.0);
            let sv = rng.vec(o, 0.5, 2.0);
            let tb = Tensor::from_slice(&dev, &bv, &[o]).unwrap();
            let ts = Tensor::from_slice(&dev, &sv, &[o]).unwrap();
            let plain = tx.conv2d(&tw, opts).unwrap();
            let rv = rng.vec(plain.numel(), -1.0, 1.0);
            let tr = Tensor::from_slice(&dev, &rv, plain.shape()).unwrap();
            let plain = plain.to_vec::<f32>().unwrap();
            for act in [
                Activation::Relu,
                Activation::LeakyRelu(0.2),
                Activation::Sigmoid,
            ] {
                let f = |z: f64| wgrad_testkit::activation_f64(act, z);
                // Bias only, through conv2d_with.
                let got = tx
                    .conv2d_with(&tw, Some(&tb), act, opts)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap();
                let want: Vec<f64> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| f(v as f64 + bv[i % o] as f64))
                    .collect();
                assert_close(&got, &want, 1e-5, 1e-5);
                // Scale, bias and residual, through conv2d_fused.
                let epi = ConvEpilogue {
                    bias: Some(&tb),
                    scale: Some(&ts),
                    residual: Some(&tr),
                    activation: act,
                };
                let got = tx
                    .conv2d_fused(&tw, &epi, opts)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap();
                let want: Vec<f64> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| f(v as f64 * sv[i % o] as f64 + bv[i % o] as f64 + rv[i] as f64))
                    .collect();
                assert_close(&got, &want, 1e-5, 1e-5);
            }
        }
    }
}
