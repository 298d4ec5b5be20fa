//! Matmul parity against an f64 CPU loop, for both strategies, on shapes that are not
//! multiples of any tile or vector width.

use wgrad_tensor::MatmulOptions;
use wgrad_tensor::{Activation, Error, Tensor};
use wgrad_testkit::{activation_rows_f64, assert_close, matmul_ref, strategies, Rng};

fn transpose(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = x[i * c + j];
        }
    }
    t
}

#[test]
fn matmul_odd_shapes_both_strategies() {
    let mut rng = Rng::new(1);
    let shapes = [
        (1, 1, 1),
        (1, 7, 1),
        (3, 5, 2),
        (7, 13, 9),
        (17, 31, 4),
        (65, 67, 129),
        (128, 64, 64),
        (100, 1, 257),
        (2, 300, 3),
        (33, 17, 96),
        (17, 32, 20),
        (5, 8, 36),
        (31, 12, 8),
        // Past gemm's SMALL_MACS (2^21 multiply-adds), so the full 16 x 16 register block
        // runs, with scalar and vec4 operands; the shapes above take the small block.
        (129, 131, 127),
        (132, 128, 136),
    ];
    for dev in strategies() {
        for &(m, k, n) in &shapes {
            let a = rng.vec(m * k, -1.0, 1.0);
            let b = rng.vec(k * n, -1.0, 1.0);
            let ta = Tensor::from_slice(&dev, &a, &[m, k]).unwrap();
            let tb = Tensor::from_slice(&dev, &b, &[k, n]).unwrap();
            let c = ta.matmul(&tb).unwrap();
            assert_eq!(c.shape(), &[m, n]);
            let got = c.to_vec::<f32>().unwrap();
            assert_close(
                &got,
                &matmul_ref(&a, &b, m, k, n),
                1e-5,
                1e-5 * (k as f64).sqrt(),
            );
        }
    }
}

#[test]
fn matmul_transposed_operands() {
    let mut rng = Rng::new(2);
    // The second shape has a wide B, so A·Bᵀ runs as (B·Aᵀ)ᵀ (a dense input gradient); with
    // M a multiple of 4 the register-blocked kernels read a transposed A where it lies (the
    // third and fourth: a dense weight gradient, one with a narrow product). The last two
    // are past gemm's SMALL_MACS, so the same paths run with the full 16 x 16 block.
    for ((m, k, n), dev) in [
        (19, 23, 11),
        (3, 23, 40),
        (36, 23, 20),
        (40, 9, 6),
        (36, 520, 120),
        (132, 130, 124),
    ]
    .into_iter()
    .flat_map(|s| strategies().map(|d| (s, d)))
    {
        let a = rng.vec(m * k, -1.0, 1.0);
        let b = rng.vec(k * n, -1.0, 1.0);
        let want = matmul_ref(&a, &b, m, k, n);
        let at = Tensor::from_slice(&dev, &transpose(&a, m, k), &[k, m]).unwrap();
        let bt = Tensor::from_slice(&dev, &transpose(&b, k, n), &[n, k]).unwrap();
        let ta = Tensor::from_slice(&dev, &a, &[m, k]).unwrap();
        let tb = Tensor::from_slice(&dev, &b, &[k, n]).unwrap();
        for (x, y, tra, trb) in [
            (&at, &tb, true, false),
            (&ta, &bt, false, true),
            (&at, &bt, true, true),
        ] {
            let o = MatmulOptions {
                transpose_a: tra,
                transpose_b: trb,
                ..Default::default()
            };
            let got = x.matmul_with(y, o).unwrap().to_vec::<f32>().unwrap();
            assert_close(&got, &want, 1e-5, 1e-5 * (k as f64).sqrt());
        }
    }
}

#[test]
fn matmul_fused_bias_and_every_activation() {
    let mut rng = Rng::new(3);
    let (m, k, n) = (13, 29, 10);
    for dev in strategies() {
        let a = rng.vec(m * k, -1.0, 1.0);
        let b = rng.vec(k * n, -1.0, 1.0);
        let bias = rng.vec(n, -2.0, 2.0);
        let base = matmul_ref(&a, &b, m, k, n);
        let ta = Tensor::from_slice(&dev, &a, &[m, k]).unwrap();
        let tb = Tensor::from_slice(&dev, &b, &[k, n]).unwrap();
        let tbias = Tensor::from_slice(&dev, &bias, &[n]).unwrap();
        for act in Activation::ALL {
            for with_bias in [false, true] {
                let o = MatmulOptions {
                    bias: with_bias.then_some(&tbias),
                    activation: act,
                    ..Default::default()
                };
                let got = ta.matmul_with(&tb, o).unwrap().to_vec::<f32>().unwrap();
                let z: Vec<f64> = base
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v + if with_bias { bias[i % n] as f64 } else { 0.0 })
                    .collect();
                let want = activation_rows_f64(&z, n, act);
                assert_close(&got, &want, 1e-5, 2e-5);
            }
        }
    }
}

#[test]
fn matmul_batched_and_broadcast() {
    let mut rng = Rng::new(4);
    let (bt, m, k, n) = (3, 9, 14, 6);
    for dev in strategies() {
        let a = rng.vec(bt * m * k, -1.0, 1.0);
        let b = rng.vec(bt * k * n, -1.0, 1.0);
        let ta = Tensor::from_slice(&dev, &a, &[bt, m, k]).unwrap();
        let tb = Tensor::from_slice(&dev, &b, &[bt, k, n]).unwrap();
        let got = ta.matmul(&tb).unwrap();
        assert_eq!(got.shape(), &[bt, m, n]);
        let got = got.to_vec::<f32>().unwrap();
        let mut want = Vec::new();
        for i in 0..bt {
            want.extend(matmul_ref(
                &a[i * m * k..(i + 1) * m * k],
                &b[i * k * n..(i + 1) * k * n],
                m,
                k,
                n,
            ));
        }
        assert_close(&got, &want, 1e-5, 1e-5);

        // One 2-D operand is shared by every batch.
        let b2 = Tensor::from_slice(&dev, &b[..k * n], &[k, n]).unwrap();
        let got = ta.matmul(&b2).unwrap().to_vec::<f32>().unwrap();
        let mut want = Vec::new();
        for i in 0..bt {
            want.extend(matmul_ref(
                &a[i * m * k..(i + 1) * m * k],
                &b[..k * n],
                m,
                k,
                n,
            ));
        }
        assert_close(&got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn matmul_rejects_bad_operands() {
    let dev = wgrad_testkit::device();
    let a = Tensor::zeros(&dev, &[3, 4], wgrad_tensor::DType::F32).unwrap();
    let b = Tensor::zeros(&dev, &[5, 2], wgrad_tensor::DType::F32).unwrap();
    assert!(matches!(
        a.matmul(&b),
        Err(Error::Shape { op: "matmul", .. })
    ));
    let v = Tensor::zeros(&dev, &[4], wgrad_tensor::DType::F32).unwrap();
    assert!(matches!(a.matmul(&v), Err(Error::Shape { .. })));
    let i = Tensor::zeros(&dev, &[4, 2], wgrad_tensor::DType::I32).unwrap();
    assert!(matches!(a.matmul(&i), Err(Error::Dtype { .. })));
    let good = Tensor::zeros(&dev, &[4, 2], wgrad_tensor::DType::F32).unwrap();
    let bad_bias = Tensor::zeros(&dev, &[3], wgrad_tensor::DType::F32).unwrap();
    let o = MatmulOptions {
        bias: Some(&bad_bias),
        ..Default::default()
    };
    assert!(matches!(a.matmul_with(&good, o), Err(Error::Shape { .. })));
    let b3 = Tensor::zeros(&dev, &[2, 4, 2], wgrad_tensor::DType::F32).unwrap();
    let a3 = Tensor::zeros(&dev, &[3, 3, 4], wgrad_tensor::DType::F32).unwrap();
    assert!(matches!(a3.matmul(&b3), Err(Error::Shape { .. })));
}

/// Few output blocks over a long K (a dense layer's forward at a small batch) are computed as
/// K slices summed: exact and padded slice lengths, transposed operands, bias + activation.
#[test]
fn matmul_long_k_few_blocks_is_split() {
    let mut rng = Rng::new(4);
    for dev in strategies() {
        for &(m, k, n, ta_, tb_) in &[
            (64, 10816, 128, false, false),
            (3, 5001, 7, false, false),
            (9, 4099, 5, true, false),
            (2, 2048, 3, false, true),
        ] {
            let a = rng.vec(m * k, -1.0, 1.0);
            let b = rng.vec(k * n, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let (sa, sb) = (
                if ta_ { [k, m] } else { [m, k] },
                if tb_ { [n, k] } else { [k, n] },
            );
            let av = if ta_ { transpose(&a, m, k) } else { a.clone() };
            let bv = if tb_ { transpose(&b, k, n) } else { b.clone() };
            let tta = Tensor::from_slice(&dev, &av, &sa).unwrap();
            let ttb = Tensor::from_slice(&dev, &bv, &sb).unwrap();
            let tbias = Tensor::from_slice(&dev, &bias, &[n]).unwrap();
            let o = MatmulOptions {
                transpose_a: ta_,
                transpose_b: tb_,
                bias: Some(&tbias),
                activation: Activation::Relu,
            };
            let got = tta.matmul_with(&ttb, o).unwrap().to_vec::<f32>().unwrap();
            let want: Vec<f64> = matmul_ref(&a, &b, m, k, n)
                .iter()
                .enumerate()
                .map(|(i, &v)| (v + bias[i % n] as f64).max(0.0))
                .collect();
            assert_close(&got, &want, 1e-5, 1e-5 * (k as f64).sqrt());
        }
    }
}
