//! Batch normalisation over the channel (last) axis: TensorFlow oracle cases, an independent
//! f64 reference on odd and vec4 channel counts, finite-difference gradients, inference mode,
//! Keras's moving-average update, data far from zero, and the typed errors.

use wgrad_tensor::{batch_norm_update_moving, KERAS_EPSILON, KERAS_MOMENTUM};
use wgrad_tensor::{DType, Tensor};
use wgrad_testkit::{
    assert_close, check_gradient, device, down, is_dtype, is_invalid, is_shape, oracle, projection,
    up, Fd, Rng,
};

/// f64 reference of training-mode batch norm on x viewed as [M, C]:
/// (output, mean, biased variance, inv_std).
struct Fwd {
    y: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    istd: Vec<f64>,
}

fn forward_ref(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Fwd {
    let m = x.len() / c;
    let mut mean = vec![0f64; c];
    for (i, &v) in x.iter().enumerate() {
        mean[i % c] += v as f64;
    }
    mean.iter_mut().for_each(|v| *v /= m as f64);
    let mut var = vec![0f64; c];
    for (i, &v) in x.iter().enumerate() {
        var[i % c] += (v as f64 - mean[i % c]).powi(2);
    }
    var.iter_mut().for_each(|v| *v /= m as f64);
    let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i % c;
            (v as f64 - mean[ch]) * istd[ch] * gamma[ch] as f64 + beta[ch] as f64
        })
        .collect();
    Fwd { y, mean, var, istd }
}

/// f64 reference of the training-mode backward: (dx, dgamma, dbeta), written from the
/// definitions (xhat, sums) rather than the kernel's rearranged form.
fn backward_ref(
    x: &[f32],
    dy: &[f32],
    c: usize,
    gamma: &[f32],
    f: &Fwd,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (x.len() / c) as f64;
    let xhat = |i: usize| (x[i] as f64 - f.mean[i % c]) * f.istd[i % c];
    let mut dgamma = vec![0f64; c];
    let mut dbeta = vec![0f64; c];
    for i in 0..x.len() {
        dgamma[i % c] += dy[i] as f64 * xhat(i);
        dbeta[i % c] += dy[i] as f64;
    }
    let dx = (0..x.len())
        .map(|i| {
            let ch = i % c;
            gamma[ch] as f64 * f.istd[ch] / m
                * (m * dy[i] as f64 - dbeta[ch] - xhat(i) * dgamma[ch])
        })
        .collect();
    (dx, dgamma, dbeta)
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn tensorflow_oracle_cases() {
    let cases = oracle::cases("batch_norm");
    assert_eq!(cases.len(), 2, "both oracle cases load");
    for case in &cases {
        let eps = case.params["epsilon"].as_f64().unwrap() as f32;
        assert_eq!(case.str("mode"), "training");
        let (xs, x) = case.get("input");
        let (gs, gamma) = case.get("gamma");
        let (_, beta) = case.get("beta");
        let (_, dy) = case.get("grad_output");
        let xt = up(x, xs);
        let gt = up(gamma, gs);
        let bt = up(beta, gs);
        let r = xt.batch_norm_train(&gt, &bt, eps).unwrap();
        let check = |what: &str, got: &Tensor, role: &str| {
            let (s, want) = case.get(role);
            assert_eq!(got.shape(), s, "{}: {what} shape", case.name);
            assert_close(&down(got), &to_f64(want), 1e-4, 1e-5);
        };
        check("output", &r.output, "output");
        check("mean", &r.mean, "batch_mean");
        check("variance", &r.variance, "batch_var");
        let (dx, dg, db) = up(dy, xs)
            .batch_norm_backward(&xt, &gt, &r.mean, &r.inv_std)
            .unwrap();
        check("grad_input", &dx, "grad_input");
        check("grad_gamma", &dg, "grad_gamma");
        check("grad_beta", &db, "grad_beta");
    }
}

/// Forward and backward of one shape against the f64 reference.
fn check_against_reference(rng: &mut Rng, shape: &[usize], eps: f32) {
    let c = *shape.last().unwrap();
    let n: usize = shape.iter().product();
    let x = rng.vec(n, -3.0, 3.0);
    let gamma = rng.vec(c, 0.5, 2.0);
    let beta = rng.vec(c, -1.0, 1.0);
    let dy = rng.vec(n, -1.0, 1.0);
    let f = forward_ref(&x, c, &gamma, &beta, eps as f64);
    let (gt, bt) = (up(&gamma, &[c]), up(&beta, &[c]));
    let xt = up(&x, shape);
    let r = xt.batch_norm_train(&gt, &bt, eps).unwrap();
    let ctx = format!("{shape:?}");
    assert_eq!(r.output.shape(), shape, "{ctx}");
    for (t, want) in [
        (&r.mean, &f.mean),
        (&r.variance, &f.var),
        (&r.inv_std, &f.istd),
    ] {
        assert_eq!(t.shape(), [c], "{ctx}");
        assert_close(&down(t), want, 1e-5, 1e-6);
    }
    assert_close(&down(&r.output), &f.y, 1e-4, 1e-5);

    let (dx, dg, db) = backward_ref(&x, &dy, c, &gamma, &f);
    let (gdx, gdg, gdb) = up(&dy, shape)
        .batch_norm_backward(&xt, &gt, &r.mean, &r.inv_std)
        .unwrap();
    assert_eq!(gdx.shape(), shape, "{ctx}");
    // dx is a difference of terms of size |gamma·istd·dy| ~ 1: absolute tolerance at that scale.
    assert_close(&down(&gdx), &dx, 1e-4, 1e-5);
    // The sums add M terms of size ~1: f32 summation error grows ~ sqrt(M)·1e-7.
    let atol = 1e-5 * ((n / c) as f64).sqrt();
    assert_close(&down(&gdg), &dg, 1e-4, atol);
    assert_close(&down(&gdb), &db, 1e-4, atol);
}

#[test]
fn matches_reference_on_odd_and_vec4_channel_counts() {
    let mut rng = Rng::new(7);
    // Rank 2 (after a Dense layer), odd N, channels odd (scalar path) and multiples of 4 (vec4).
    for c in [1, 3, 5, 7, 4, 8, 12] {
        check_against_reference(&mut rng, &[7, c], KERAS_EPSILON);
        check_against_reference(&mut rng, &[33, c], 1e-5);
    }
    // Rank 4 NHWC with odd N·H·W; the larger ones (> 64 rows per channel) take the split
    // statistics path (partials + finish) that the small ones skip.
    for c in [1, 3, 5, 7, 4, 8, 16] {
        check_against_reference(&mut rng, &[3, 5, 3, c], KERAS_EPSILON);
        check_against_reference(&mut rng, &[5, 9, 7, c], KERAS_EPSILON);
    }
    // Rank 1: each value is its own channel over a batch of one (variance 0, output = beta).
    check_against_reference(&mut rng, &[6], KERAS_EPSILON);
    // Many rows for few channels: hundreds of splits.
    check_against_reference(&mut rng, &[4001, 2], KERAS_EPSILON);
    check_against_reference(&mut rng, &[2001, 4], KERAS_EPSILON);
}

/// sum(output · g) in f64 from the device's output.
fn loss(x: &[f32], shape: &[usize], gamma: &[f32], beta: &[f32], g: &[f32]) -> f64 {
    let c = gamma.len();
    let r = up(x, shape)
        .batch_norm_train(&up(gamma, &[c]), &up(beta, &[c]), KERAS_EPSILON)
        .unwrap();
    projection(&down(&r.output), g)
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    for shape in [&[5, 3][..], &[2, 3, 1, 4][..]] {
        let c = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        // Spread-out inputs keep the variance away from 0, where 1/sqrt(var) would bend sharply.
        let x = rng.vec(n, -2.0, 2.0);
        let gamma = rng.vec(c, 0.5, 1.5);
        let beta = rng.vec(c, -0.5, 0.5);
        let g = rng.vec(n, -1.0, 1.0);
        let xt = up(&x, shape);
        let (gt, bt) = (up(&gamma, &[c]), up(&beta, &[c]));
        let r = xt.batch_norm_train(&gt, &bt, KERAS_EPSILON).unwrap();
        let (dx, dg, db) = up(&g, shape)
            .batch_norm_backward(&xt, &gt, &r.mean, &r.inv_std)
            .unwrap();
        // Step 1e-2: f32 rounding of each output (~1e-7 relative) divided by 2h stays ~1e-5,
        // while the O(h²) truncation error on these smooth inputs is ~1e-4.
        let fd = Fd::new(1e-2).tol(2e-2, 2e-3);
        check_gradient("dx", &x, &down(&dx), fd, |p| {
            loss(p, shape, &gamma, &beta, &g)
        });
        check_gradient("dgamma", &gamma, &down(&dg), fd, |p| {
            loss(&x, shape, p, &beta, &g)
        });
        check_gradient("dbeta", &beta, &down(&db), fd, |p| {
            loss(&x, shape, &gamma, p, &g)
        });
    }
}

#[test]
fn inference_mode_matches_reference() {
    let mut rng = Rng::new(13);
    for shape in [&[9, 5][..], &[3, 3, 5, 8][..], &[2, 7, 3][..]] {
        let c = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let x = rng.vec(n, -3.0, 3.0);
        let gamma = rng.vec(c, 0.5, 2.0);
        let beta = rng.vec(c, -1.0, 1.0);
        let mm = rng.vec(c, -1.0, 1.0);
        let mv = rng.vec(c, 0.1, 3.0);
        let eps = KERAS_EPSILON as f64;
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let ch = i % c;
                (x[i] as f64 - mm[ch] as f64) / (mv[ch] as f64 + eps).sqrt() * gamma[ch] as f64
                    + beta[ch] as f64
            })
            .collect();
        let y = up(&x, shape)
            .batch_norm_infer(
                &up(&gamma, &[c]),
                &up(&beta, &[c]),
                &up(&mm, &[c]),
                &up(&mv, &[c]),
                KERAS_EPSILON,
            )
            .unwrap();
        assert_eq!(y.shape(), shape);
        assert_close(&down(&y), &want, 1e-5, 1e-5);
    }
}

#[test]
fn moving_average_update_matches_keras_formula() {
    let mut rng = Rng::new(17);
    for (c, momentum) in [(5, KERAS_MOMENTUM), (8, 0.9), (3, 0.0), (4, 1.0)] {
        let v: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(c, 0.0, 2.0)).collect();
        let t: Vec<Tensor> = v.iter().map(|d| up(d, &[c])).collect();
        let (nm, nv) = batch_norm_update_moving(&t[0], &t[1], &t[2], &t[3], momentum).unwrap();
        let ema = |moving: &[f32], batch: &[f32]| -> Vec<f64> {
            let m = momentum as f64;
            moving
                .iter()
                .zip(batch)
                .map(|(&a, &b)| a as f64 * m + b as f64 * (1.0 - m))
                .collect()
        };
        assert_close(&down(&nm), &ema(&v[0], &v[2]), 1e-6, 1e-7);
        assert_close(&down(&nv), &ema(&v[1], &v[3]), 1e-6, 1e-7);
    }
}

#[test]
fn train_then_infer_with_batch_statistics_agree() {
    // Inference with the batch's own statistics as the moving ones must reproduce training
    // mode's output: the two paths share no shift logic, so this checks them against each other.
    let mut rng = Rng::new(19);
    let (shape, c) = ([4, 3, 5, 6], 6);
    let x = rng.vec(shape.iter().product(), -2.0, 2.0);
    let (gt, bt) = (
        up(&rng.vec(c, 0.5, 2.0), &[c]),
        up(&rng.vec(c, -1.0, 1.0), &[c]),
    );
    let xt = up(&x, &shape);
    let r = xt.batch_norm_train(&gt, &bt, KERAS_EPSILON).unwrap();
    let y = xt
        .batch_norm_infer(&gt, &bt, &r.mean, &r.variance, KERAS_EPSILON)
        .unwrap();
    assert_close(&down(&y), &to_f64(&down(&r.output)), 1e-5, 1e-5);
}

#[test]
fn large_offset_keeps_precision() {
    // Data ~1000 ± 0.5: E[x²] - E[x]² would cancel ~1e6 against ~1e6 in f32 (ulp 0.06) and lose
    // the variance (~0.08) entirely; an unshifted f32 sum of 4000 values near 1000 drifts the
    // mean by ~1e-3, i.e. ~4e-3 in the normalised output. Both checks below would fail.
    let mut rng = Rng::new(23);
    for (rows, c) in [(4001, 3), (1000, 8)] {
        let x: Vec<f32> = (0..rows * c)
            .map(|i| 1000.0 + (i % c) as f32 + rng.uniform(-0.5, 0.5))
            .collect();
        let gamma = vec![1.0f32; c];
        let beta = vec![0.0f32; c];
        let f = forward_ref(&x, c, &gamma, &beta, KERAS_EPSILON as f64);
        let r = up(&x, &[rows, c])
            .batch_norm_train(&up(&gamma, &[c]), &up(&beta, &[c]), KERAS_EPSILON)
            .unwrap();
        // The mean can be no closer than f32's rounding at 1000 (half an ulp, 3e-5).
        assert_close(&down(&r.mean), &f.mean, 0.0, 6e-5);
        assert_close(&down(&r.variance), &f.var, 1e-4, 0.0);
        assert_close(&down(&r.output), &f.y, 1e-4, 1e-4);
    }
}

#[test]
fn bad_arguments_return_typed_errors() {
    let x = up(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let g3 = up(&[1.0; 3], &[3]);
    let g4 = up(&[1.0; 4], &[4]);
    let g13 = up(&[1.0; 3], &[1, 3]);
    let gu = Tensor::from_slice(&device(), &[1u32; 3], &[3]).unwrap();
    let xi = Tensor::from_slice(&device(), &[1i32; 6], &[2, 3]).unwrap();
    assert_eq!(gu.dtype(), DType::U32);

    // Per-channel operands must be [C].
    is_shape(x.batch_norm_train(&g4, &g3, 1e-3));
    is_shape(x.batch_norm_train(&g3, &g13, 1e-3));
    is_shape(x.batch_norm_infer(&g3, &g3, &g4, &g3, 1e-3));
    is_shape(x.batch_norm_infer(&g3, &g3, &g3, &g13, 1e-3));
    // Rank 0 has no channel axis; an empty batch has no statistics.
    is_shape(up(&[1.0], &[]).batch_norm_train(&g3, &g3, 1e-3));
    let empty = Tensor::from_slice::<f32>(&device(), &[], &[0, 3]).unwrap();
    is_shape(empty.batch_norm_train(&g3, &g3, 1e-3));
    // Wrong dtypes.
    is_dtype(x.batch_norm_train(&gu, &g3, 1e-3));
    is_dtype(xi.batch_norm_train(&g3, &g3, 1e-3));
    is_dtype(x.batch_norm_infer(&g3, &g3, &gu, &g3, 1e-3));
    // Epsilon must be finite and non-negative.
    is_invalid(x.batch_norm_train(&g3, &g3, -1e-3));
    is_invalid(x.batch_norm_train(&g3, &g3, f32::NAN));
    is_invalid(x.batch_norm_infer(&g3, &g3, &g3, &g3, f32::INFINITY));

    // Backward: grad_output must match the input; saved statistics must be [C].
    let r = x.batch_norm_train(&g3, &g3, 1e-3).unwrap();
    let dy = up(&[1.0; 6], &[3, 2]);
    is_shape(dy.batch_norm_backward(&x, &g3, &r.mean, &r.inv_std));
    let dy = up(&[1.0; 6], &[2, 3]);
    is_shape(dy.batch_norm_backward(&x, &g3, &g4, &r.inv_std));
    is_dtype(dy.batch_norm_backward(&x, &g3, &r.mean, &gu));
    is_dtype(
        Tensor::from_slice(&device(), &[1i32; 6], &[2, 3])
            .unwrap()
            .batch_norm_backward(&x, &g3, &r.mean, &r.inv_std),
    );

    // Moving update: momentum in [0, 1], matching [C] shapes and dtypes.
    for m in [-0.1, 1.5, f32::NAN] {
        is_invalid(batch_norm_update_moving(&g3, &g3, &g3, &g3, m));
    }
    is_shape(batch_norm_update_moving(&g3, &g3, &g4, &g3, 0.9));
    is_shape(batch_norm_update_moving(&g13, &g13, &g13, &g13, 0.9));
    is_dtype(batch_norm_update_moving(&g3, &gu, &g3, &g3, 0.9));
}

#[test]
fn a_training_step_never_waits_for_the_device() {
    // Design rule: no host round trip inside a training step. A device of its own, so the
    // counters are not disturbed by the other tests running in parallel on the shared one.
    let dev = wgrad_tensor::Device::new().unwrap();
    let mut rng = Rng::new(29);
    let (shape, c) = ([4, 9, 9, 8], 8);
    let n: usize = shape.iter().product();
    let t = |d: &[f32], s: &[usize]| Tensor::from_slice(&dev, d, s).unwrap();
    let x = t(&rng.vec(n, -1.0, 1.0), &shape);
    let dy = t(&rng.vec(n, -1.0, 1.0), &shape);
    let (g, b) = (t(&[1.0; 8], &[c]), t(&[0.0; 8], &[c]));
    let (mm, mv) = (t(&[0.0; 8], &[c]), t(&[1.0; 8], &[c]));
    dev.sync().unwrap();
    let before = dev.counters();
    let r = x.batch_norm_train(&g, &b, KERAS_EPSILON).unwrap();
    let (dx, _, _) = dy.batch_norm_backward(&x, &g, &r.mean, &r.inv_std).unwrap();
    let (nm, _) = batch_norm_update_moving(&mm, &mv, &r.mean, &r.variance, KERAS_MOMENTUM).unwrap();
    let after = dev.counters();
    assert_eq!(after.readbacks, before.readbacks, "no readback");
    assert_eq!(after.submits, before.submits, "no submit");
    assert_eq!(after.uploads, before.uploads, "no upload");
    // 324 rows: split statistics (stats + finish) twice forward, once backward.
    assert!(after.dispatches - before.dispatches >= 10);
    // And the recorded work is real: the results read back finite.
    assert!(dx.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
    assert!(nm.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
}
