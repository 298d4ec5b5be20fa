//! f16 storage (mixed precision): every float op accepts f16 operands, computes in f32 and
//! stores its float result in f16. Two checks per op family:
//! - the f16 result equals the f32 op on the same (f16-representable) values rounded to f16
//!   once, bit for bit — the f32 kernels are checked against f64 loops and TensorFlow in the
//!   other test targets, so this pins the storage path to them;
//! - against an f64 loop of its own where one is short (matmul, convolution), within the
//!   rounding of f16 storage.

use half::f16;
use wgrad_tensor::{
    Activation, BinaryOp, Conv2dOptions, ConvEpilogue, DType, MatmulOptions, Padding, ResizeMethod,
    Tensor, UnaryOp, Upsample,
};
use wgrad_testkit::{device, matmul_ref, Rng};

/// Values that f16 holds exactly, so the f32 and the f16 runs see the same numbers.
fn halves(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    rng.vec(n, lo, hi)
        .into_iter()
        .map(|v| f16::from_f32(v).to_f32())
        .collect()
}

fn f32_tensor(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&device(), v, shape).unwrap()
}

fn f16_tensor(v: &[f32], shape: &[usize]) -> Tensor {
    let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    Tensor::from_slice(&device(), &h, shape).unwrap()
}

/// Runs `op` on f32 and on f16 copies of `inputs`; the f16 run must return f16 whose bits are
/// the f32 result rounded once. `op` is one op of the family (a backward op gets its forward
/// results as inputs): a chain would round its intermediates in one run and not the other.
fn same_as_f32(name: &str, inputs: &[(Vec<f32>, Vec<usize>)], op: impl Fn(&[Tensor]) -> Tensor) {
    let wide: Vec<Tensor> = inputs.iter().map(|(v, s)| f32_tensor(v, s)).collect();
    let half: Vec<Tensor> = inputs.iter().map(|(v, s)| f16_tensor(v, s)).collect();
    let want = op(&wide);
    let got = op(&half);
    assert_eq!(got.dtype(), DType::F16, "{name}: result dtype");
    assert_eq!(got.shape(), want.shape(), "{name}: result shape");
    let want = want.to_vec::<f32>().unwrap();
    let got = got.to_vec::<f16>().unwrap();
    let mut bad = 0;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        let w = f16::from_f32(*w);
        if w.to_bits() != g.to_bits() && !(w.is_nan() && g.is_nan()) {
            if bad < 5 {
                eprintln!("{name}[{i}]: f16 path {g}, f32 path rounded {w}");
            }
            bad += 1;
        }
    }
    assert_eq!(bad, 0, "{name}: {bad} of {} values differ", got.len());
}

#[test]
fn elementwise_ops_store_f16_and_compute_f32() {
    let mut rng = Rng::new(71);
    let a = (halves(&mut rng, 2 * 3 * 5, -3.0, 3.0), vec![2, 3, 5]);
    let b = (halves(&mut rng, 5, 0.5, 2.0), vec![5]);
    let g = (halves(&mut rng, 30, -1.0, 1.0), vec![2, 3, 5]);
    // Whole vec4s: the elementwise kernels read and write the packed halves themselves.
    let a4 = (halves(&mut rng, 40, -3.0, 3.0), vec![2, 4, 5]);
    let g4 = (halves(&mut rng, 40, -1.0, 1.0), vec![2, 4, 5]);
    let y4 = (halves(&mut rng, 40, 0.1, 2.0), vec![2, 4, 5]);
    for op in [
        BinaryOp::Add,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
    ] {
        same_as_f32(&format!("{op:?}"), &[a.clone(), b.clone()], |t| {
            t[0].binary(&t[1], op).unwrap()
        });
        same_as_f32(&format!("{op:?}, packed"), &[a4.clone(), y4.clone()], |t| {
            t[0].binary(&t[1], op).unwrap()
        });
    }
    for op in [
        UnaryOp::Exp,
        UnaryOp::Act(Activation::Relu),
        UnaryOp::Act(Activation::Sigmoid),
        UnaryOp::Affine(0.5, 1.0),
    ] {
        same_as_f32(&format!("{op:?}"), std::slice::from_ref(&a), |t| {
            t[0].unary(op).unwrap()
        });
        same_as_f32(&format!("{op:?}, packed"), std::slice::from_ref(&a4), |t| {
            t[0].unary(op).unwrap()
        });
        same_as_f32(
            &format!("{op:?} backward, packed"),
            &[g4.clone(), a4.clone(), y4.clone()],
            |t| t[0].unary_backward(op, &t[1], &t[2]).unwrap(),
        );
        let y = (halves(&mut rng, 30, 0.1, 2.0), vec![2, 3, 5]);
        same_as_f32(
            &format!("{op:?} backward"),
            &[g.clone(), a.clone(), y],
            |t| t[0].unary_backward(op, &t[1], &t[2]).unwrap(),
        );
    }
    same_as_f32("where", &[a.clone(), g.clone()], |t| {
        let mask = t[0].gt(&t[1]).unwrap();
        assert_eq!(mask.dtype(), DType::U32, "comparisons still give u32 masks");
        mask.where_(&t[0], &t[1]).unwrap()
    });
    same_as_f32("pad", std::slice::from_ref(&a), |t| {
        t[0].pad(&[0, 1, 2], &[1, 0, 1]).unwrap()
    });
}

#[test]
fn reductions_and_softmax_accumulate_in_f32() {
    let mut rng = Rng::new(72);
    // 3,000 terms per row: an f16 accumulator would be off by whole units here.
    let x = (halves(&mut rng, 4 * 3000, 0.0, 1.0), vec![4, 3000]);
    same_as_f32("sum", std::slice::from_ref(&x), |t| {
        t[0].sum(&[1], false).unwrap()
    });
    same_as_f32("mean", std::slice::from_ref(&x), |t| {
        t[0].mean(&[0], true).unwrap()
    });
    same_as_f32("softmax", std::slice::from_ref(&x), |t| {
        t[0].softmax(-1).unwrap()
    });
    same_as_f32("log_softmax", std::slice::from_ref(&x), |t| {
        t[0].log_softmax(-1).unwrap()
    });
    let sums = f16_tensor(&x.0, &x.1).sum(&[1], false).unwrap();
    let sums = sums.to_vec::<f16>().unwrap();
    for (r, s) in sums.iter().enumerate() {
        let want: f64 = x.0[r * 3000..(r + 1) * 3000]
            .iter()
            .map(|&v| v as f64)
            .sum();
        // One rounding to f16 at the end: half an ulp of ~1,500 is 0.5.
        assert!(
            (s.to_f64() - want).abs() <= 0.5 + 1e-6 * want.abs(),
            "row {r}: {s} vs {want}"
        );
    }
    let idx = f16_tensor(&x.0, &x.1).argmax(1, false).unwrap();
    let wide = f32_tensor(&x.0, &x.1).argmax(1, false).unwrap();
    assert_eq!(idx.dtype(), DType::U32);
    assert_eq!(idx.to_vec::<u32>().unwrap(), wide.to_vec::<u32>().unwrap());
}

#[test]
fn matmul_in_f16_storage_matches_f64() {
    let mut rng = Rng::new(73);
    let (m, k, n) = (33, 300, 17);
    let a = halves(&mut rng, m * k, -1.0, 1.0);
    let b = halves(&mut rng, k * n, -1.0, 1.0);
    let bias = halves(&mut rng, n, -1.0, 1.0);
    let inputs = [
        (a.clone(), vec![m, k]),
        (b.clone(), vec![k, n]),
        (bias.clone(), vec![n]),
    ];
    same_as_f32("matmul + bias + relu", &inputs, |t| {
        let o = MatmulOptions {
            bias: Some(&t[2]),
            activation: Activation::Relu,
            ..Default::default()
        };
        t[0].matmul_with(&t[1], o).unwrap()
    });
    // A weight kept in f32 (a master weight) with f16 activations: still an f16 result.
    let got = f16_tensor(&a, &[m, k])
        .matmul(&f32_tensor(&b, &[k, n]))
        .unwrap();
    assert_eq!(got.dtype(), DType::F16);
    let got = got.to_vec::<f16>().unwrap();
    let want = matmul_ref(&a, &b, m, k, n);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // f32 accumulation of exact products, then one f16 rounding (2^-11 relative).
        let tol = 1e-4 + w.abs() / 2048.0;
        assert!((g.to_f64() - w).abs() <= tol, "[{i}]: {g} vs {w}");
    }
}

/// Direct f64 convolution (NHWC, HWIO, stride 1, Same padding for odd kernels).
fn conv_same_f64(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 4]) -> Vec<f64> {
    let [n, h, wd, c] = xs;
    let [kh, kw, _, o] = ws;
    let (ph, pw) = (kh / 2, kw / 2);
    let mut y = vec![0.0; n * h * wd * o];
    for b in 0..n {
        for i in 0..h {
            for j in 0..wd {
                for q in 0..o {
                    let mut s = 0.0;
                    for a in 0..kh {
                        for e in 0..kw {
                            let (ii, jj) = (i + a, j + e);
                            if ii < ph || jj < pw || ii - ph >= h || jj - pw >= wd {
                                continue;
                            }
                            let (ii, jj) = (ii - ph, jj - pw);
                            for ci in 0..c {
                                s += x[((b * h + ii) * wd + jj) * c + ci] as f64
                                    * w[((a * kw + e) * c + ci) * o + q] as f64;
                            }
                        }
                    }
                    y[((b * h + i) * wd + j) * o + q] = s;
                }
            }
        }
    }
    y
}

#[test]
fn convolutions_in_f16_storage() {
    let mut rng = Rng::new(74);
    let xs = [2, 9, 8, 6];
    let ws = [3, 3, 6, 8];
    let x = halves(&mut rng, xs.iter().product(), -1.0, 1.0);
    let w = halves(&mut rng, ws.iter().product(), -0.5, 0.5);
    let same = Conv2dOptions {
        padding: Padding::Same,
        ..Default::default()
    };
    let strided = Conv2dOptions {
        stride: [2, 2],
        padding: Padding::Same,
        ..Default::default()
    };
    let inputs = [(x.clone(), xs.to_vec()), (w.clone(), ws.to_vec())];
    for (label, opts, oh, ow) in [("same", same, 9, 8), ("stride 2", strided, 5, 4)] {
        same_as_f32(&format!("conv2d {label}"), &inputs, |t| {
            t[0].conv2d(&t[1], opts).unwrap()
        });
        let dy = (
            halves(&mut rng, 2 * oh * ow * 8, -1.0, 1.0),
            vec![2, oh, ow, 8],
        );
        same_as_f32(
            &format!("conv2d input gradient {label}"),
            &[dy.clone(), inputs[1].clone()],
            |t| t[0].conv2d_backward_input(&t[1], &xs, opts).unwrap(),
        );
        same_as_f32(
            &format!("conv2d filter gradient {label}"),
            &[inputs[0].clone(), dy],
            |t| t[0].conv2d_backward_filter(&t[1], [3, 3], opts).unwrap(),
        );
    }
    let bias = halves(&mut rng, 8, -0.5, 0.5);
    let res = halves(&mut rng, 2 * 9 * 8 * 8, -0.5, 0.5);
    let fused_inputs = [
        (x.clone(), xs.to_vec()),
        (w.clone(), ws.to_vec()),
        (bias, vec![8]),
        (res, vec![2, 9, 8, 8]),
    ];
    same_as_f32("conv2d + bias + residual + relu", &fused_inputs, |t| {
        let epi = ConvEpilogue {
            bias: Some(&t[2]),
            residual: Some(&t[3]),
            activation: Activation::Relu,
            ..Default::default()
        };
        t[0].conv2d_fused(&t[1], &epi, same).unwrap()
    });
    // Transposed: filter [KH, KW, out, in] = [4, 4, 5, 6].
    let tw = halves(&mut rng, 4 * 4 * 5 * 6, -0.5, 0.5);
    same_as_f32(
        "conv2d_transpose 4x4/2",
        &[(x.clone(), xs.to_vec()), (tw, vec![4, 4, 5, 6])],
        |t| t[0].conv2d_transpose(&t[1], strided, [0, 0]).unwrap(),
    );
    let got = f16_tensor(&x, &xs)
        .conv2d(&f16_tensor(&w, &ws), same)
        .unwrap();
    let got = got.to_vec::<f16>().unwrap();
    let want = conv_same_f64(&x, xs, &w, ws);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = 1e-4 + w.abs() / 2048.0;
        assert!((g.to_f64() - w).abs() <= tol, "conv [{i}]: {g} vs {w}");
    }
}

#[test]
fn pooling_norms_and_resampling_in_f16_storage() {
    let mut rng = Rng::new(75);
    let x = (halves(&mut rng, 2 * 8 * 6 * 4, -2.0, 2.0), vec![2, 8, 6, 4]);
    let one = std::slice::from_ref(&x);
    same_as_f32("max_pool2d", one, |t| {
        t[0].max_pool2d([2, 2], [2, 2], Padding::Valid).unwrap().0
    });
    let shape = x.1.clone();
    let (_, idx) = f32_tensor(&x.0, &x.1)
        .max_pool2d([3, 3], [2, 2], Padding::Same)
        .unwrap();
    let pooled = (halves(&mut rng, 2 * 4 * 3 * 4, -1.0, 1.0), vec![2, 4, 3, 4]);
    same_as_f32("max_pool2d backward", std::slice::from_ref(&pooled), |t| {
        t[0].max_pool2d_backward(&idx, &shape, [3, 3], [2, 2], Padding::Same)
            .unwrap()
    });
    same_as_f32("avg_pool2d", one, |t| {
        t[0].avg_pool2d([2, 2], [1, 1], Padding::Same).unwrap()
    });
    same_as_f32("avg_pool2d backward", one, |t| {
        t[0].avg_pool2d_backward(&shape, [2, 2], [1, 1], Padding::Same)
            .unwrap()
    });
    same_as_f32("global_avg_pool2d", one, |t| {
        t[0].global_avg_pool2d().unwrap()
    });
    same_as_f32("global_max_pool2d", one, |t| {
        t[0].global_max_pool2d().unwrap()
    });
    let per_image = (halves(&mut rng, 2 * 4, -1.0, 1.0), vec![2, 4]);
    same_as_f32(
        "global_avg_pool2d backward",
        std::slice::from_ref(&per_image),
        |t| t[0].global_avg_pool2d_backward(&shape).unwrap(),
    );
    same_as_f32("global_max_pool2d backward", &[per_image, x.clone()], |t| {
        t[0].global_max_pool2d_backward(&t[1]).unwrap()
    });
    same_as_f32("upsample2d bilinear", one, |t| {
        t[0].upsample2d([2, 2], Upsample::Bilinear).unwrap()
    });
    let up2 = (
        halves(&mut rng, 2 * 16 * 12 * 4, -1.0, 1.0),
        vec![2, 16, 12, 4],
    );
    same_as_f32(
        "upsample2d bilinear backward",
        std::slice::from_ref(&up2),
        |t| {
            t[0].upsample2d_backward(&shape, [2, 2], Upsample::Bilinear)
                .unwrap()
        },
    );
    same_as_f32("resize bicubic", one, |t| {
        t[0].resize([5, 9], ResizeMethod::Bicubic, false).unwrap()
    });
    let gamma = (halves(&mut rng, 4, 0.5, 1.5), vec![4]);
    let beta = (halves(&mut rng, 4, -0.5, 0.5), vec![4]);
    let dy = (halves(&mut rng, 2 * 8 * 6 * 4, -1.0, 1.0), vec![2, 8, 6, 4]);
    // Batch norm keeps its statistics in f32 (they feed the f32 moving averages) and stores
    // the normalised output and the input's gradient in f16.
    let bn_in = [x.clone(), gamma.clone(), beta.clone(), dy.clone()];
    same_as_f32("batch_norm_train", &bn_in, |t| {
        let bn = t[0].batch_norm_train(&t[1], &t[2], 1e-3).unwrap();
        assert_eq!(bn.mean.dtype(), DType::F32, "batch statistics stay f32");
        bn.output
    });
    same_as_f32("batch_norm_backward (input)", &bn_in, |t| {
        let bn = t[0].batch_norm_train(&t[1], &t[2], 1e-3).unwrap();
        let (dx, dg, db) = t[3]
            .batch_norm_backward(&t[0], &t[1], &bn.mean, &bn.inv_std)
            .unwrap();
        assert_eq!(
            (dg.dtype(), db.dtype()),
            (DType::F32, DType::F32),
            "gamma's and beta's gradients are their weights' dtype"
        );
        dx
    });
}

#[test]
fn f32_to_f16_overflow_is_inf_and_non_finite_finds_it() {
    let x = [1.0f32, 65504.0, 65520.0, -1e6, f32::NAN, 3.0];
    let t = f32_tensor(&x, &[6]).to_dtype(DType::F16).unwrap();
    let bits: Vec<u16> = t
        .to_vec::<f16>()
        .unwrap()
        .iter()
        .map(|h| h.to_bits())
        .collect();
    assert_eq!(bits[1], 0x7bff, "65504 is the largest finite half");
    assert_eq!(bits[2], 0x7c00, "65520 rounds to +inf");
    assert_eq!(bits[3], 0xfc00, "-1e6 overflows to -inf");
    assert!(f16::from_bits(bits[4]).is_nan());
    let flags = t
        .to_dtype(DType::F32)
        .unwrap()
        .unary(UnaryOp::NonFinite)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(flags, vec![0.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
    // The packed elementwise path stores an overflow as inf too (a scaled gradient past f16).
    let doubled = f16_tensor(&[60000.0, -40000.0, 1.5, 3.0], &[4])
        .unary(UnaryOp::Affine(2.0, 0.0))
        .unwrap();
    assert_eq!(doubled.dtype(), DType::F16);
    let got: Vec<u16> = doubled
        .to_vec::<f16>()
        .unwrap()
        .iter()
        .map(|h| h.to_bits())
        .collect();
    assert_eq!(
        got,
        vec![
            0x7c00,
            0xfc00,
            f16::from_f32(3.0).to_bits(),
            f16::from_f32(6.0).to_bits()
        ]
    );
}
