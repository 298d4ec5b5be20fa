//! Convolution, its gradients and transposed convolution: TensorFlow's reference cases, an f64
//! CPU reference over random configurations, finite-difference gradient checks, and the typed
//! errors of invalid configurations. Every check runs with both kernel strategies.

use wgrad_tensor::{Activation, Conv2dOptions, Device, Error, Padding, Tensor};
use wgrad_testkit::oracle::{cases, Case};
use wgrad_testkit::{assert_close, check_conv2d_gradients, strategies, Rng};

fn padding_of(c: &Case) -> Padding {
    match c.str("padding") {
        "same" => Padding::Same,
        "valid" => Padding::Valid,
        p => panic!("padding {p}"),
    }
}

fn up(dev: &Device, c: &Case, role: &str) -> Tensor {
    let (s, d) = c.get(role);
    Tensor::from_slice(dev, d, s).unwrap()
}

fn want(c: &Case, role: &str) -> Vec<f64> {
    c.get(role).1.iter().map(|&v| v as f64).collect()
}

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

#[test]
fn conv2d_matches_tensorflow() {
    for dev in strategies() {
        for c in cases("conv2d") {
            let opts = Conv2dOptions {
                stride: c.pair("stride"),
                dilation: c.pair("dilation"),
                padding: padding_of(&c),
                groups: 1,
            };
            let (x, w, dy) = (
                up(&dev, &c, "input"),
                up(&dev, &c, "filter"),
                up(&dev, &c, "grad_output"),
            );
            let y = x.conv2d(&w, opts).unwrap();
            assert_close(&y.to_vec::<f32>().unwrap(), &want(&c, "output"), RTOL, ATOL);
            let dx = dy.conv2d_backward_input(&w, x.shape(), opts).unwrap();
            assert_close(
                &dx.to_vec::<f32>().unwrap(),
                &want(&c, "grad_input"),
                RTOL,
                ATOL,
            );
            let kh = [w.shape()[0], w.shape()[1]];
            let dw = x.conv2d_backward_filter(&dy, kh, opts).unwrap();
            assert_eq!(dw.shape(), w.shape(), "{}", c.name);
            assert_close(
                &dw.to_vec::<f32>().unwrap(),
                &want(&c, "grad_filter"),
                RTOL,
                ATOL,
            );
        }
    }
}

#[test]
fn depthwise_conv2d_matches_tensorflow() {
    for dev in strategies() {
        for c in cases("depthwise_conv2d") {
            let (x, dy) = (up(&dev, &c, "input"), up(&dev, &c, "grad_output"));
            let (ws, wd) = c.get("filter");
            let ch = x.shape()[3];
            // Keras's (kh, kw, C, multiplier) is, in memory, HWIO with one input channel per
            // group and output channel c·multiplier + m.
            let w = Tensor::from_slice(&dev, wd, &[ws[0], ws[1], 1, ws[2] * ws[3]]).unwrap();
            let opts = Conv2dOptions {
                stride: c.pair("stride"),
                dilation: c.pair("dilation"),
                padding: padding_of(&c),
                groups: ch,
            };
            let y = x.conv2d(&w, opts).unwrap();
            assert_close(&y.to_vec::<f32>().unwrap(), &want(&c, "output"), RTOL, ATOL);
            let dx = dy.conv2d_backward_input(&w, x.shape(), opts).unwrap();
            assert_close(
                &dx.to_vec::<f32>().unwrap(),
                &want(&c, "grad_input"),
                RTOL,
                ATOL,
            );
            let dw = x.conv2d_backward_filter(&dy, [ws[0], ws[1]], opts).unwrap();
            assert_close(
                &dw.to_vec::<f32>().unwrap(),
                &want(&c, "grad_filter"),
                RTOL,
                ATOL,
            );
        }
    }
}

#[test]
fn conv2d_transpose_matches_tensorflow() {
    for dev in strategies() {
        for c in cases("conv2d_transpose") {
            let (x, w, dy) = (
                up(&dev, &c, "input"),
                up(&dev, &c, "filter"),
                up(&dev, &c, "grad_output"),
            );
            let opts = Conv2dOptions {
                stride: c.pair("stride"),
                padding: padding_of(&c),
                ..Default::default()
            };
            let want_shape = c.get("output").0.to_vec();
            let base = x
                .conv2d_transpose(&w, opts, [0, 0])
                .unwrap()
                .shape()
                .to_vec();
            let out_pad = [want_shape[1] - base[1], want_shape[2] - base[2]];
            let y = x.conv2d_transpose(&w, opts, out_pad).unwrap();
            assert_eq!(y.shape(), &want_shape[..], "{}", c.name);
            assert_close(&y.to_vec::<f32>().unwrap(), &want(&c, "output"), RTOL, ATOL);
            let dx = dy.conv2d_transpose_backward_input(&w, opts).unwrap();
            assert_close(
                &dx.to_vec::<f32>().unwrap(),
                &want(&c, "grad_input"),
                RTOL,
                ATOL,
            );
            let dw = x
                .conv2d_transpose_backward_filter(&dy, [w.shape()[0], w.shape()[1]], opts)
                .unwrap();
            assert_close(
                &dw.to_vec::<f32>().unwrap(),
                &want(&c, "grad_filter"),
                RTOL,
                ATOL,
            );
        }
    }
}

/// f64 reference of one convolution configuration.
struct Ref {
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    dil: [usize; 2],
    pad: [usize; 2],
    out: [usize; 2],
    groups: usize,
}

impl Ref {
    fn new(x: [usize; 4], w: [usize; 4], o: Conv2dOptions) -> Ref {
        let (pad, out) = wgrad_testkit::conv_window(x, [w[0], w[1]], &o);
        Ref {
            x,
            w,
            stride: o.stride,
            dil: o.dilation,
            pad,
            out,
            groups: o.groups,
        }
    }

    /// Calls f(x index, w index, y index) for every multiply-add of the convolution.
    fn each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [n, h, wd, c] = self.x;
        let [kh, kw, cg, o] = self.w;
        let og = o / self.groups;
        for b in 0..n {
            for oy in 0..self.out[0] {
                for ox in 0..self.out[1] {
                    for oc in 0..o {
                        let g = oc / og;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * self.stride[0] + ky * self.dil[0]) as isize
                                    - self.pad[0] as isize;
                                let ix = (ox * self.stride[1] + kx * self.dil[1]) as isize
                                    - self.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                for ci in 0..cg {
                                    let xi = ((b * h + iy as usize) * wd + ix as usize) * c
                                        + g * cg
                                        + ci;
                                    let wi = ((ky * kw + kx) * cg + ci) * o + oc;
                                    let yi = ((b * self.out[0] + oy) * self.out[1] + ox) * o + oc;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn conv2d_random_configurations_match_f64_reference() {
    let mut rng = Rng::new(11);
    let devs = strategies();
    for case in 0..24 {
        let groups = [1, 1, 2, 3][case % 4];
        let cg = 1 + (rng.next_u64() % 5) as usize;
        let og = 1 + (rng.next_u64() % 6) as usize;
        let (c, o) = (cg * groups, og * groups);
        let k = [
            1 + (rng.next_u64() % 4) as usize,
            1 + (rng.next_u64() % 4) as usize,
        ];
        let stride = [
            1 + (rng.next_u64() % 3) as usize,
            1 + (rng.next_u64() % 3) as usize,
        ];
        let dil = if case % 3 == 0 {
            [2, 1 + (rng.next_u64() % 2) as usize]
        } else {
            [1, 1]
        };
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
        let h = (k[0] - 1) * dil[0] + 1 + (rng.next_u64() % 6) as usize;
        let w = (k[1] - 1) * dil[1] + 1 + (rng.next_u64() % 6) as usize;
        let n = 1 + (rng.next_u64() % 2) as usize;
        let opts = Conv2dOptions {
            stride,
            padding,
            dilation: dil,
            groups,
        };
        check_against_reference(
            &format!("case {case}"),
            [n, h, w, c],
            [k[0], k[1], cg, o],
            opts,
            &mut rng,
            &devs,
        );
    }
}

/// Forward, input gradient and filter gradient of one configuration against the f64 loops.
/// Strided input gradients go through stride phases (one stride-1 problem per phase, or all
/// phases in one when the kernel is a multiple of the stride): kernels below, equal to and
/// above the stride, on axes where the phases do and do not cover every input row.
#[test]
fn strided_input_gradients_by_phase_match_f64_reference() {
    let mut rng = Rng::new(5);
    let devs = strategies();
    let same = Padding::Same;
    let valid = Padding::Valid;
    let odd = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    for (i, (k, s, padding, h)) in [
        ([4, 4], [2, 2], same, 9),
        ([2, 2], [2, 2], valid, 8),
        ([3, 3], [3, 3], same, 10),
        ([4, 2], [2, 2], odd, 7),
        ([3, 3], [2, 2], same, 9),
        ([1, 1], [2, 2], valid, 7),
        ([7, 7], [2, 2], same, 12),
        ([5, 3], [3, 2], odd, 11),
        ([2, 4], [1, 2], same, 6),
    ]
    .into_iter()
    .enumerate()
    {
        let opts = Conv2dOptions {
            stride: s,
            padding,
            ..Default::default()
        };
        check_against_reference(
            &format!("phase case {i}: {k:?}/{s:?} {padding:?}"),
            [2, h, h + 1, 3],
            [k[0], k[1], 3, 5],
            opts,
            &mut rng,
            &devs,
        );
    }
}

fn check_against_reference(
    what: &str,
    xs: [usize; 4],
    ws: [usize; 4],
    opts: Conv2dOptions,
    rng: &mut Rng,
    devs: &[Device],
) {
    let (k, cg, n, o) = ([ws[0], ws[1]], ws[2], xs[0], ws[3]);
    let r = Ref::new(xs, ws, opts);

    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let ys = [n, r.out[0], r.out[1], o];
    let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
    let (mut y, mut dx, mut dw) = (
        vec![0f64; dyv.len()],
        vec![0f64; xv.len()],
        vec![0f64; wv.len()],
    );
    r.each(|xi, wi, yi| {
        y[yi] += xv[xi] as f64 * wv[wi] as f64;
        dx[xi] += dyv[yi] as f64 * wv[wi] as f64;
        dw[wi] += dyv[yi] as f64 * xv[xi] as f64;
    });
    for dev in devs {
        let ctx = format!("{what}: x {xs:?} w {ws:?} {opts:?} ({:?})", dev.strategy());
        let tx = Tensor::from_slice(dev, &xv, &xs).unwrap();
        let tw = Tensor::from_slice(dev, &wv, &ws).unwrap();
        let tdy = Tensor::from_slice(dev, &dyv, &ys).unwrap();
        let got = tx.conv2d(&tw, opts).unwrap();
        assert_eq!(got.shape(), &ys, "{ctx}");
        let tol = 1e-5 * (k[0] * k[1] * cg) as f64;
        assert_close(&got.to_vec::<f32>().unwrap(), &y, 1e-4, tol);
        assert_close(
            &tdy.conv2d_backward_input(&tw, &xs, opts)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            &dx,
            1e-4,
            tol,
        );
        assert_close(
            &tx.conv2d_backward_filter(&tdy, k, opts)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            &dw,
            1e-4,
            1e-5 * (ys.iter().product::<usize>() as f64),
        );
        // With the bias gradient (Σ dy per channel): from the same pass where the direct
        // few-tap kernel runs, else by a reduction.
        let mut db = vec![0f64; o];
        for (i, &g) in dyv.iter().enumerate() {
            db[i % o] += g as f64;
        }
        let (gw, gb) = tx.conv2d_backward_filter_and_bias(&tdy, k, opts).unwrap();
        assert_eq!(gb.shape(), &[o], "{ctx}");
        let tol_n = 1e-5 * (ys.iter().product::<usize>() as f64);
        assert_close(&gw.to_vec::<f32>().unwrap(), &dw, 1e-4, tol_n);
        assert_close(&gb.to_vec::<f32>().unwrap(), &db, 1e-4, tol_n);
    }
}

/// Feature maps smaller than the kernel's reach: taps that only ever meet padding are
/// dropped before the GEMM (ResNet's last stage at 32×32 input is 1×1 under a 3×3 conv), and
/// the filter gradient of the dropped taps must come back as exact zeros.
#[test]
fn conv2d_on_maps_smaller_than_the_kernel() {
    let mut rng = Rng::new(13);
    let devs = strategies();
    let same = |stride: usize, dil: usize| Conv2dOptions {
        stride: [stride, stride],
        padding: Padding::Same,
        dilation: [dil, dil],
        groups: 1,
    };
    let cases: &[([usize; 4], [usize; 4], Conv2dOptions)] = &[
        ([2, 1, 1, 8], [3, 3, 8, 12], same(1, 1)),
        ([2, 2, 2, 8], [3, 3, 8, 12], same(2, 1)),
        ([1, 3, 2, 5], [7, 7, 5, 4], same(2, 1)),
        ([1, 2, 3, 4], [3, 5, 4, 6], same(1, 2)),
        ([2, 1, 4, 6], [3, 3, 6, 4], same(1, 1)),
        (
            [1, 2, 2, 4],
            [5, 5, 4, 4],
            Conv2dOptions {
                padding: Padding::Explicit {
                    top: 3,
                    bottom: 1,
                    left: 0,
                    right: 4,
                },
                ..same(1, 1)
            },
        ),
        (
            [2, 1, 1, 6],
            [3, 3, 3, 6],
            Conv2dOptions {
                groups: 2,
                ..same(1, 1)
            },
        ),
    ];
    for (i, &(xs, ws, opts)) in cases.iter().enumerate() {
        check_against_reference(&format!("small map {i}"), xs, ws, opts, &mut rng, &devs);
    }
}

/// Channel counts that take the vec4 paths (multiples of 4) and long filter-gradient
/// reductions that are split across workgroups.
#[test]
fn conv2d_vec4_paths_and_split_reductions() {
    let mut rng = Rng::new(12);
    for (n, h, c, o, groups, s) in [
        (2, 17, 8, 12, 1, 1),
        (3, 23, 16, 8, 2, 2),
        (1, 40, 4, 4, 1, 1),
        (2, 9, 8, 16, 4, 1),
    ] {
        let opts = Conv2dOptions {
            stride: [s, s],
            padding: Padding::Same,
            groups,
            ..Default::default()
        };
        let xs = [n, h, h + 2, c];
        let ws = [3, 3, c / groups, o];
        let r = Ref::new(xs, ws, opts);
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let ys = [n, r.out[0], r.out[1], o];
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let (mut y, mut dx, mut dw) = (
            vec![0f64; dyv.len()],
            vec![0f64; xv.len()],
            vec![0f64; wv.len()],
        );
        r.each(|xi, wi, yi| {
            y[yi] += xv[xi] as f64 * wv[wi] as f64;
            dx[xi] += dyv[yi] as f64 * wv[wi] as f64;
            dw[wi] += dyv[yi] as f64 * xv[xi] as f64;
        });
        for dev in strategies() {
            let tx = Tensor::from_slice(&dev, &xv, &xs).unwrap();
            let tw = Tensor::from_slice(&dev, &wv, &ws).unwrap();
            let tdy = Tensor::from_slice(&dev, &dyv, &ys).unwrap();
            assert_close(
                &tx.conv2d(&tw, opts).unwrap().to_vec::<f32>().unwrap(),
                &y,
                1e-4,
                1e-4,
            );
            assert_close(
                &tdy.conv2d_backward_input(&tw, &xs, opts)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
                &dx,
                1e-4,
                1e-4,
            );
            assert_close(
                &tx.conv2d_backward_filter(&tdy, [3, 3], opts)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
                &dw,
                1e-4,
                1e-3,
            );
        }
    }
}

/// d/dθ of L = Σ conv(x, w)·g by central differences, against the gradient kernels.
#[test]
fn conv2d_gradients_match_finite_differences() {
    let opts = Conv2dOptions {
        stride: [2, 1],
        padding: Padding::Same,
        dilation: [1, 2],
        groups: 2,
    };
    let x_samples = 24; // every 7th of the 168 input values
    check_conv2d_gradients(
        &mut Rng::new(13),
        [1, 6, 7, 4],
        [2, 3, 2, 4],
        opts,
        x_samples,
    );
}

#[test]
fn fused_bias_and_activation_and_pointwise_path() {
    let mut rng = Rng::new(14);
    for dev in strategies() {
        for k in [1, 3] {
            let (xs, ws) = ([2, 5, 6, 8], [k, k, 8, 12]);
            let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
            let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
            let bv = rng.vec(12, -1.0, 1.0);
            let tx = Tensor::from_slice(&dev, &xv, &xs).unwrap();
            let tw = Tensor::from_slice(&dev, &wv, &ws).unwrap();
            let tb = Tensor::from_slice(&dev, &bv, &[12]).unwrap();
            let opts = Conv2dOptions {
                padding: Padding::Same,
                ..Default::default()
            };
            let plain = tx.conv2d(&tw, opts).unwrap().to_vec::<f32>().unwrap();
            for act in [
                wgrad_tensor::Activation::Relu,
                wgrad_tensor::Activation::Sigmoid,
            ] {
                let got = tx
                    .conv2d_with(&tw, Some(&tb), act, opts)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap();
                let want: Vec<f64> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let z = v as f64 + bv[i % 12] as f64;
                        if act == wgrad_tensor::Activation::Relu {
                            z.max(0.0)
                        } else {
                            1.0 / (1.0 + (-z).exp())
                        }
                    })
                    .collect();
                assert_close(&got, &want, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let dev = wgrad_testkit::device();
    let x = Tensor::zeros(&dev, &[1, 5, 5, 4], wgrad_tensor::DType::F32).unwrap();
    let w = |s: &[usize]| Tensor::zeros(&dev, s, wgrad_tensor::DType::F32).unwrap();
    let o = Conv2dOptions::default();
    // Kernel larger than the (unpadded) input.
    assert!(matches!(
        x.conv2d(&w(&[7, 7, 4, 2]), o),
        Err(Error::InvalidArgument { .. })
    ));
    // Channels not divisible by groups.
    assert!(matches!(
        x.conv2d(&w(&[3, 3, 4, 2]), Conv2dOptions { groups: 3, ..o }),
        Err(Error::InvalidArgument { .. })
    ));
    // Filter in-channels do not match.
    assert!(matches!(
        x.conv2d(&w(&[3, 3, 3, 2]), o),
        Err(Error::Shape { .. })
    ));
    // Zero stride.
    assert!(matches!(
        x.conv2d(
            &w(&[3, 3, 4, 2]),
            Conv2dOptions {
                stride: [0, 1],
                ..o
            }
        ),
        Err(Error::InvalidArgument { .. })
    ));
    // Zero groups.
    assert!(matches!(
        x.conv2d(&w(&[3, 3, 4, 2]), Conv2dOptions { groups: 0, ..o }),
        Err(Error::InvalidArgument { .. })
    ));
    // Wrong ranks, dtype and bias.
    assert!(matches!(
        w(&[5, 5, 4]).conv2d(&w(&[3, 3, 4, 2]), o),
        Err(Error::Shape { .. })
    ));
    let xi = Tensor::zeros(&dev, &[1, 5, 5, 4], wgrad_tensor::DType::I32).unwrap();
    assert!(matches!(
        xi.conv2d(&w(&[3, 3, 4, 2]), o),
        Err(Error::Dtype { .. })
    ));
    let bad_bias = w(&[3]);
    assert!(matches!(
        x.conv2d_with(
            &w(&[3, 3, 4, 2]),
            Some(&bad_bias),
            wgrad_tensor::Activation::Linear,
            o
        ),
        Err(Error::Shape { .. })
    ));
    // Gradient of the wrong shape.
    assert!(matches!(
        w(&[1, 2, 2, 2]).conv2d_backward_input(&w(&[3, 3, 4, 2]), &[1, 5, 5, 4], o),
        Err(Error::Shape { .. })
    ));
    // Transposed convolution: output padding not below the stride.
    assert!(matches!(
        x.conv2d_transpose(
            &w(&[3, 3, 2, 4]),
            Conv2dOptions {
                stride: [2, 2],
                ..o
            },
            [2, 0]
        ),
        Err(Error::InvalidArgument { .. })
    ));
}

/// act(conv · scale + bias + residual) in one kernel equals the same steps done one by one,
/// for vec4 and scalar channel counts.
#[test]
fn fused_scale_shift_and_residual() {
    let mut rng = Rng::new(15);
    for dev in strategies() {
        for (c, o) in [(8, 12), (3, 5)] {
            let (xs, ws) = ([2, 6, 5, c], [3, 3, c, o]);
            let x =
                Tensor::from_slice(&dev, &rng.vec(xs.iter().product(), -1.0, 1.0), &xs).unwrap();
            let w =
                Tensor::from_slice(&dev, &rng.vec(ws.iter().product(), -1.0, 1.0), &ws).unwrap();
            let scale = Tensor::from_slice(&dev, &rng.vec(o, 0.5, 2.0), &[o]).unwrap();
            let bias = Tensor::from_slice(&dev, &rng.vec(o, -1.0, 1.0), &[o]).unwrap();
            let opts = Conv2dOptions {
                padding: Padding::Same,
                stride: [2, 1],
                ..Default::default()
            };
            let plain = x.conv2d(&w, opts).unwrap();
            let res = Tensor::from_slice(&dev, &rng.vec(plain.numel(), -1.0, 1.0), plain.shape())
                .unwrap();
            let epi = wgrad_tensor::ConvEpilogue {
                bias: Some(&bias),
                scale: Some(&scale),
                residual: Some(&res),
                activation: wgrad_tensor::Activation::Relu,
            };
            let got = x
                .conv2d_fused(&w, &epi, opts)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let want = plain
                .mul(&scale)
                .unwrap()
                .add(&bias)
                .unwrap()
                .add(&res)
                .unwrap()
                .relu()
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            assert_close(
                &got,
                &want.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                1e-5,
                1e-5,
            );
            let bad = Tensor::zeros(&dev, &[1, 2, 3, o], wgrad_tensor::DType::F32).unwrap();
            let epi = wgrad_tensor::ConvEpilogue {
                residual: Some(&bad),
                ..Default::default()
            };
            assert!(matches!(
                x.conv2d_fused(&w, &epi, opts),
                Err(Error::Shape { .. })
            ));
        }
    }
}

/// Filters of few taps (KH·KW·C ≤ 32, one group: grey and RGB first layers) take the direct
/// filter-gradient kernel: strides, dilation, padding, several row slices and one.
#[test]
fn conv2d_filter_gradient_of_few_taps() {
    let mut rng = Rng::new(14);
    let devs = strategies();
    let o = |stride: usize, dilation: usize, padding: Padding| Conv2dOptions {
        stride: [stride, stride],
        padding,
        dilation: [dilation, dilation],
        groups: 1,
    };
    let cases: &[([usize; 4], [usize; 4], Conv2dOptions)] = &[
        ([4, 30, 30, 1], [3, 3, 1, 8], o(1, 1, Padding::Same)),
        ([2, 17, 17, 3], [3, 3, 3, 16], o(2, 1, Padding::Valid)),
        ([1, 20, 20, 2], [3, 3, 2, 5], o(1, 2, Padding::Same)),
        ([3, 9, 11, 1], [5, 5, 1, 64], o(1, 1, Padding::Same)),
        ([1, 6, 6, 4], [2, 4, 4, 3], o(1, 1, Padding::Valid)),
    ];
    for (i, &(xs, ws, opts)) in cases.iter().enumerate() {
        check_against_reference(&format!("few taps {i}"), xs, ws, opts, &mut rng, &devs);
    }
}

/// The direct forward kernel of few-channel convolutions (C not a multiple of 4, O a multiple
/// of 4) with its fused bias and activations, against the f64 loops.
#[test]
fn few_channel_forward_fuses_bias_and_activation() {
    let mut rng = Rng::new(15);
    // (input, filter with its C taken from the input, stride, padding)
    type Config = ([usize; 4], [usize; 4], [usize; 2], Padding);
    let cases: &[Config] = &[
        ([2, 9, 10, 1], [3, 3, 1, 8], [1, 1], Padding::Same),
        ([1, 11, 8, 3], [2, 4, 3, 4], [2, 1], Padding::Valid),
        ([2, 7, 7, 2], [5, 5, 1, 12], [2, 2], Padding::Same),
    ];
    for &(xs, mut ws, stride, padding) in cases {
        ws[2] = xs[3];
        let opts = Conv2dOptions {
            stride,
            padding,
            ..Default::default()
        };
        let r = Ref::new(xs, ws, opts);
        let o = ws[3];
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let bv = rng.vec(o, -1.0, 1.0);
        let ys = [xs[0], r.out[0], r.out[1], o];
        let mut y = vec![0f64; ys.iter().product()];
        r.each(|xi, wi, yi| y[yi] += xv[xi] as f64 * wv[wi] as f64);
        for (i, v) in y.iter_mut().enumerate() {
            *v += bv[i % o] as f64;
        }
        for dev in strategies() {
            let tx = Tensor::from_slice(&dev, &xv, &xs).unwrap();
            let tw = Tensor::from_slice(&dev, &wv, &ws).unwrap();
            let tb = Tensor::from_slice(&dev, &bv, &[o]).unwrap();
            for act in [
                Activation::Linear,
                Activation::Relu,
                Activation::LeakyRelu(0.1),
            ] {
                let want: Vec<f64> = y
                    .iter()
                    .map(|&v| wgrad_testkit::activation_f64(act, v))
                    .collect();
                let got = tx.conv2d_with(&tw, Some(&tb), act, opts).unwrap();
                assert_eq!(got.shape(), &ys);
                assert_close(&got.to_vec::<f32>().unwrap(), &want, 1e-4, 1e-4);
            }
        }
    }
}

/// Input channels not in fours, past the small-product threshold: the register-blocked
/// strategy runs these padded with zero channels (ops/conv/mod.rs, `channel_padding`), the
/// filter gradient sliced back; both strategies must match the f64 loops, bias gradient too.
#[test]
fn conv2d_odd_channel_counts_run_padded() {
    let mut rng = Rng::new(15);
    let devs = strategies();
    let o = |stride: usize| Conv2dOptions {
        stride: [stride, stride],
        padding: Padding::Same,
        dilation: [1, 1],
        groups: 1,
    };
    let cases: &[([usize; 4], [usize; 4], Conv2dOptions)] = &[
        // An RGB stem, 7x7/2.
        ([4, 40, 40, 3], [7, 7, 3, 16], o(2)),
        // Five channels, 3x3.
        ([2, 32, 32, 5], [3, 3, 5, 32], o(1)),
    ];
    for (i, &(xs, ws, opts)) in cases.iter().enumerate() {
        check_against_reference(&format!("odd channels {i}"), xs, ws, opts, &mut rng, &devs);
    }
}
