//! Local response normalisation (NHWC, across channels), forward and backward: hand-computed
//! values, an independent f64 reference written here with plain loops (the gradient as a
//! scatter of the Jacobian, where the kernel gathers), central finite differences through the
//! graph, the layer and PyTorch's convention, and the typed errors.

use wgrad::graph::{self, ops, Var};
use wgrad::nn::layers::LocalResponseNormalization;
use wgrad::nn::{Ctx, Layer, Sequential};
use wgrad::{DType, Error, LrnParams, Tensor};
use wgrad_testkit::grad::check_gradient_batched;
use wgrad_testkit::{
    close, device, down, is_dtype, is_invalid, is_shape, numel, projection, up, Fd, Rng,
};

// ---------------------------------------------------------------------------------------------
// f64 reference.

/// The channels [lo, hi) of channel `c`'s window among `ch` channels.
fn ref_window(c: usize, r: usize, ch: usize) -> std::ops::Range<usize> {
    c.saturating_sub(r)..(c + r + 1).min(ch)
}

/// bias + alpha * sqr_sum for every element.
fn ref_denominators(x: &[f32], ch: usize, p: LrnParams) -> Vec<f64> {
    let mut d = vec![0f64; x.len()];
    for (pix, row) in x.chunks(ch).enumerate() {
        for c in 0..ch {
            let s: f64 = ref_window(c, p.depth_radius, ch)
                .map(|k| (row[k] as f64).powi(2))
                .sum();
            d[pix * ch + c] = p.bias as f64 + p.alpha as f64 * s;
        }
    }
    d
}

fn lrn_ref(x: &[f32], ch: usize, p: LrnParams) -> Vec<f64> {
    let d = ref_denominators(x, ch, p);
    x.iter()
        .zip(&d)
        .map(|(&v, &d)| v as f64 * d.powf(-p.beta as f64))
        .collect()
}

/// dx = Jᵀ dy, built by scattering each output's partial derivatives onto the inputs it reads:
/// ∂y_c/∂x_j = [c = j]·d_c^-β − 2αβ·x_c·x_j·d_c^(−β−1) for j in c's window.
fn lrn_grad_ref(x: &[f32], dy: &[f32], ch: usize, p: LrnParams) -> Vec<f64> {
    let d = ref_denominators(x, ch, p);
    let (alpha, beta) = (p.alpha as f64, p.beta as f64);
    let mut dx = vec![0f64; x.len()];
    for pix in 0..x.len() / ch {
        let o = pix * ch;
        for c in 0..ch {
            let (xc, dc, g) = (x[o + c] as f64, d[o + c], dy[o + c] as f64);
            dx[o + c] += g * dc.powf(-beta);
            for j in ref_window(c, p.depth_radius, ch) {
                dx[o + j] -= g * 2.0 * alpha * beta * xc * x[o + j] as f64 * dc.powf(-beta - 1.0);
            }
        }
    }
    dx
}

/// PyTorch's `nn.LocalResponseNorm(size, alpha, beta, k)` written from its definition: the
/// squares zero-padded by size/2 before and (size−1)/2 after along the channels, averaged over
/// `size` channels, then x / (k + alpha · mean)^beta.
fn torch_ref(x: &[f32], ch: usize, size: usize, alpha: f64, beta: f64, k: f64) -> Vec<f64> {
    let mut out = vec![0f64; x.len()];
    for (pix, row) in x.chunks(ch).enumerate() {
        for c in 0..ch {
            let mut s = 0.0;
            for t in 0..size {
                let k_ch = c as isize - (size / 2) as isize + t as isize;
                if (0..ch as isize).contains(&k_ch) {
                    s += (row[k_ch as usize] as f64).powi(2);
                }
            }
            let mean = s / size as f64;
            out[pix * ch + c] = row[c] as f64 / (k + alpha * mean).powf(beta);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Forward.

#[test]
fn known_values_with_clipped_edge_windows() {
    // One pixel, channels [1, 2, 3], radius 1, TF's bias 1, alpha 1, beta 0.5: the edge windows
    // hold two channels, the middle one three. d = [1+1+4, 1+1+4+9, 1+4+9] = [6, 15, 14].
    let p = LrnParams::new(1, 1.0, 1.0, 0.5);
    let y = down(&up(&[1.0, 2.0, 3.0], &[1, 1, 1, 3]).lrn(p).unwrap());
    let want = [1.0 / 6f64.sqrt(), 2.0 / 15f64.sqrt(), 3.0 / 14f64.sqrt()];
    close("known", &y, &want, 1e-6, 1e-7);
    // Radius 0 squares each channel alone: x / (1 + x²)^0.5.
    let p0 = LrnParams::new(0, 1.0, 1.0, 0.5);
    let y = down(&up(&[1.0, 2.0, 3.0], &[1, 1, 1, 3]).lrn(p0).unwrap());
    let want = [1.0 / 2f64.sqrt(), 2.0 / 5f64.sqrt(), 3.0 / 10f64.sqrt()];
    close("radius 0", &y, &want, 1e-6, 1e-7);
    // TensorFlow's defaults (radius 5 covers all three channels): d = 1 + 14 everywhere.
    let y = down(
        &up(&[1.0, 2.0, 3.0], &[1, 1, 1, 3])
            .lrn(LrnParams::default())
            .unwrap(),
    );
    let want = [1.0 / 15f64.sqrt(), 2.0 / 15f64.sqrt(), 3.0 / 15f64.sqrt()];
    close("defaults", &y, &want, 1e-6, 1e-7);
}

/// Shapes and parameters the tests sweep: odd channel counts (1, primes), windows narrower
/// than, equal to and wider than the channels, AlexNet's parameters and several exponents.
fn cases() -> Vec<([usize; 4], LrnParams)> {
    vec![
        ([2, 3, 2, 7], LrnParams::default()),
        ([1, 2, 3, 7], LrnParams::new(0, 1.0, 1.0, 0.5)),
        ([2, 2, 2, 7], LrnParams::new(2, 2.0, 1e-4, 0.75)),
        ([1, 3, 3, 11], LrnParams::new(2, 1.0, 0.3, 0.75)),
        ([1, 2, 2, 16], LrnParams::new(3, 0.5, 0.2, 1.0)),
        ([3, 1, 2, 5], LrnParams::new(9, 1.5, 0.5, 0.25)),
        ([1, 2, 1, 1], LrnParams::new(2, 1.0, 2.0, 0.75)),
        ([1, 1, 3, 6], LrnParams::new(1, 1.0, 0.4, -0.5)),
    ]
}

#[test]
fn forward_matches_the_f64_reference() {
    let mut rng = Rng::new(5);
    for (s, p) in cases() {
        let x = rng.vec(numel(&s), -3.0, 3.0);
        let y = down(&up(&x, &s).lrn(p).unwrap());
        close(
            &format!("{s:?} {p:?}"),
            &y,
            &lrn_ref(&x, s[3], p),
            1e-5,
            1e-6,
        );
    }
}

#[test]
fn forward_on_a_larger_tensor() {
    // More invocations than one workgroup row of the small cases, AlexNet's parameters on 96
    // channels, values of the size ReLU features have.
    let s = [2, 9, 9, 96];
    let p = LrnParams::new(2, 2.0, 1e-4, 0.75);
    let x = Rng::new(8).vec(numel(&s), 0.0, 30.0);
    let y = down(&up(&x, &s).lrn(p).unwrap());
    close("alexnet conv1", &y, &lrn_ref(&x, s[3], p), 1e-5, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Backward.

#[test]
fn backward_matches_the_analytic_f64_gradient() {
    let mut rng = Rng::new(11);
    for (s, p) in cases() {
        let x = rng.vec(numel(&s), -3.0, 3.0);
        let g = rng.vec(numel(&s), -1.0, 1.0);
        let dx = down(&up(&g, &s).lrn_backward(&up(&x, &s), p).unwrap());
        close(
            &format!("{s:?} {p:?}"),
            &dx,
            &lrn_grad_ref(&x, &g, s[3], p),
            1e-4,
            1e-5,
        );
    }
}

/// d(Σ lrn(x)·R)/dx from the graph (`ops::lrn` + `backward`) against central differences of
/// the device's forward pass. All perturbed inputs go through one batched forward call (LRN
/// acts on each pixel alone, so stacking the points along the batch axis changes nothing).
fn finite_differences(ctx: &str, s: [usize; 4], p: LrnParams, x: &[f32], r: &[f32]) {
    let xv = Var::param(up(x, &s));
    let y = ops::lrn(&xv, p).unwrap();
    let rv = Var::new(up(r, &s));
    ops::sum(&ops::mul(&y, &rv).unwrap(), &[])
        .unwrap()
        .backward()
        .unwrap();
    let grad = down(&xv.grad().expect("lrn passes a gradient to its input"));

    let fd = Fd::new(1e-2).tol(5e-3, 5e-3);
    check_gradient_batched(ctx, x, &grad, fd, |points| {
        let shape = [points.len() * s[0], s[1], s[2], s[3]];
        let yb = graph::no_grad(|| ops::lrn(&Var::new(up(&points.concat(), &shape)), p))
            .unwrap()
            .into_value();
        down(&yb)
            .chunks(x.len())
            .map(|yk| projection(yk, r))
            .collect()
    });
}

#[test]
fn graph_gradient_matches_finite_differences() {
    let mut rng = Rng::new(17);
    let problems = [
        ([1, 1, 2, 7], LrnParams::new(2, 1.0, 0.5, 0.75)),
        ([1, 2, 1, 5], LrnParams::new(0, 1.0, 1.0, 0.5)),
        ([1, 1, 2, 6], LrnParams::default()),
        ([2, 1, 1, 8], LrnParams::new(2, 2.0, 0.2, 0.75)),
    ];
    for (s, p) in problems {
        let x = rng.vec(numel(&s), -2.0, 2.0);
        let r = rng.vec(numel(&s), -1.0, 1.0);
        finite_differences(&format!("{s:?} {p:?}"), s, p, &x, &r);
    }
}

// ---------------------------------------------------------------------------------------------
// The layer and PyTorch's convention.

#[test]
fn layer_applies_the_op_and_converts_pytorch_arguments() {
    let dev = device();
    let s = [2, 3, 3, 9];
    let x = Rng::new(23).vec(numel(&s), -2.0, 2.0);
    let xt = Var::new(up(&x, &s));

    let layer = LocalResponseNormalization::new()
        .depth_radius(2)
        .bias(2.0)
        .alpha(0.1)
        .beta(0.75);
    assert_eq!(layer.params(), LrnParams::new(2, 2.0, 0.1, 0.75));
    let mut m = Sequential::new(&dev, &s[1..]).add(layer).unwrap();
    assert_eq!(m.output_shape(), &s[1..]);
    assert_eq!(m.param_counts(), (0, 0));
    assert_eq!(m.layer_names(), ["local_response_normalization"]);
    let y = m.forward(&xt, &mut Ctx::new(true, 0)).unwrap();
    close(
        "layer",
        &down(y.value()),
        &lrn_ref(&x, s[3], LrnParams::new(2, 2.0, 0.1, 0.75)),
        1e-5,
        1e-6,
    );

    // PyTorch's LocalResponseNorm(size=5, alpha=0.5, beta=0.75, k=2) divides alpha by 5.
    let torch = LocalResponseNormalization::from_torch(5, 0.5, 0.75, 2.0).unwrap();
    assert_eq!(torch.params(), LrnParams::new(2, 2.0, 0.1, 0.75));
    let mut m = Sequential::new(&dev, &s[1..]).add(torch).unwrap();
    let y = m.forward(&xt, &mut Ctx::new(false, 0)).unwrap();
    close(
        "from_torch",
        &down(y.value()),
        &torch_ref(&x, s[3], 5, 0.5, 0.75, 2.0),
        1e-5,
        1e-6,
    );
    // PyTorch's defaults (size 3, alpha 1e-4, beta 0.75, k 1) on large values, where alpha
    // matters.
    let p = LrnParams::from_torch(3, 1e-4, 0.75, 1.0).unwrap();
    let big: Vec<f32> = x.iter().map(|v| v * 50.0).collect();
    close(
        "from_torch defaults",
        &down(&up(&big, &s).lrn(p).unwrap()),
        &torch_ref(&big, s[3], 3, 1e-4, 0.75, 1.0),
        1e-5,
        1e-6,
    );
    // An even window is not centred: no TensorFlow equivalent.
    assert!(matches!(
        LrnParams::from_torch(4, 1e-4, 0.75, 1.0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(LocalResponseNormalization::from_torch(0, 1e-4, 0.75, 1.0).is_err());
}

#[test]
fn layer_build_rejects_bad_shapes_and_parameters() {
    let dev = device();
    let r = Sequential::new(&dev, &[16]).add(LocalResponseNormalization::new());
    assert!(
        matches!(r, Err(wgrad::nn::Error::Config { .. })),
        "{:?}",
        r.err()
    );
    let r = Sequential::new(&dev, &[4, 4, 3]).add(LocalResponseNormalization::new().bias(0.0));
    assert!(
        matches!(r, Err(wgrad::nn::Error::Config { .. })),
        "{:?}",
        r.err()
    );
    // An unbuilt layer called on a rank-3 batch gets the op's typed error, not a panic.
    let mut l = LocalResponseNormalization::new();
    let r = l.forward(
        &Var::new(up(&[1.0; 12], &[1, 4, 3])),
        &mut Ctx::new(false, 0),
    );
    assert!(
        matches!(r, Err(wgrad::nn::Error::Tensor(Error::Shape { .. }))),
        "{:?}",
        r.err()
    );
}

// ---------------------------------------------------------------------------------------------
// Typed errors.

#[test]
fn bad_inputs_return_typed_errors() {
    let p = LrnParams::default();
    let f = |s: &[usize]| up(&vec![1.0; numel(s)], s);
    let x = f(&[1, 2, 2, 3]);
    // Rank.
    is_shape(f(&[2, 2, 3]).lrn(p));
    is_shape(f(&[1, 1, 2, 2, 3]).lrn(p));
    is_shape(f(&[6]).lrn(p));
    is_shape(f(&[2, 2, 3]).lrn_backward(&f(&[2, 2, 3]), p));
    is_shape(x.lrn_backward(&f(&[2, 2, 3]), p));
    // The gradient must have the input's shape.
    is_shape(f(&[1, 2, 2, 4]).lrn_backward(&x, p));
    is_shape(f(&[2, 2, 2, 3]).lrn_backward(&x, p));
    // Dtype.
    let xi = Tensor::from_slice(&device(), &[1i32; 12], &[1, 2, 2, 3]).unwrap();
    is_dtype(xi.lrn(p));
    is_dtype(x.lrn_backward(&xi, p));
    is_dtype(xi.lrn_backward(&x, p));
    // Parameters that would put a zero, negative or non-finite base under the power.
    is_invalid(x.lrn(LrnParams { bias: 0.0, ..p }));
    is_invalid(x.lrn(LrnParams { bias: -1.0, ..p }));
    is_invalid(x.lrn(LrnParams { alpha: -0.1, ..p }));
    is_invalid(x.lrn(LrnParams {
        alpha: f32::NAN,
        ..p
    }));
    is_invalid(x.lrn(LrnParams {
        beta: f32::INFINITY,
        ..p
    }));
    is_invalid(x.lrn_backward(&x, LrnParams { bias: 0.0, ..p }));
    // The graph op passes the same errors through.
    assert!(matches!(
        ops::lrn(&Var::param(f(&[2, 3])), p),
        Err(Error::Shape { .. })
    ));
    // After all those refusals the op still works (and an empty batch is fine).
    let y = down(&x.lrn(p).unwrap());
    close("after errors", &y, &[0.5f64; 12], 1e-6, 1e-7);
    let e = Tensor::zeros(&device(), &[0, 2, 2, 3], DType::F32).unwrap();
    assert_eq!(e.lrn(p).unwrap().shape(), &[0, 2, 2, 3]);
}
