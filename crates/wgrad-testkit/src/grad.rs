//! The gradient check every backward kernel and backward rule is held to: central finite
//! differences of a scalar loss, compared with the analytic gradient element by element.
//!
//! Tests make the loss a random linear functional of the op's output, L = Σ y·r
//! ([`projection`]), so one check covers every output's contribution; where the op is linear
//! or piecewise linear in the perturbed input, central differences are exact up to rounding
//! and the tolerance can be tight.

/// How a check perturbs and what it accepts.
#[derive(Clone, Copy, Debug)]
pub struct Fd {
    /// Half-width of the central difference (applied in f32, the device's precision).
    pub eps: f32,
    /// Accepts |fd − analytic| ≤ atol + rtol·|fd|.
    pub rtol: f64,
    pub atol: f64,
    /// Check at most this many evenly spaced elements per input (all when `None`): each
    /// element costs two loss evaluations, which are device round trips.
    pub at_most: Option<usize>,
}

impl Fd {
    pub fn new(eps: f32) -> Self {
        Fd {
            eps,
            rtol: 1e-3,
            atol: 1e-3,
            at_most: None,
        }
    }
    pub fn tol(self, rtol: f64, atol: f64) -> Self {
        Fd { rtol, atol, ..self }
    }
    pub fn at_most(self, n: usize) -> Self {
        Fd {
            at_most: Some(n),
            ..self
        }
    }
    /// The elements of an input of `len` values this check perturbs.
    pub fn indices(&self, len: usize) -> impl Iterator<Item = usize> {
        let step = self.at_most.map_or(1, |n| (len / n.max(1)).max(1));
        (0..len).step_by(step)
    }
}

/// Σ y·r in f64: the random linear loss that turns an op's output into a scalar.
pub fn projection(y: &[f32], r: &[f32]) -> f64 {
    assert_eq!(
        y.len(),
        r.len(),
        "projection: output and weights differ in length"
    );
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Checks `analytic` = dL/dx at `x`, where `loss` evaluates L at one point.
#[track_caller]
pub fn check_gradient(
    ctx: &str,
    x: &[f32],
    analytic: &[f32],
    fd: Fd,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    check_gradient_batched(ctx, x, analytic, fd, |points| {
        points.iter().map(|p| loss(p)).collect()
    })
}

/// [`check_gradient`] for a loss that evaluates many points in one call (for instance as one
/// batched forward dispatch): `losses` gets the perturbed points x ± eps·eᵢ, in the order
/// (+, −) per checked element, and returns L at each.
#[track_caller]
pub fn check_gradient_batched(
    ctx: &str,
    x: &[f32],
    analytic: &[f32],
    fd: Fd,
    losses: impl FnOnce(&[Vec<f32>]) -> Vec<f64>,
) {
    assert_eq!(
        analytic.len(),
        x.len(),
        "{ctx}: the gradient has {} values for an input of {}",
        analytic.len(),
        x.len()
    );
    let idx: Vec<usize> = fd.indices(x.len()).collect();
    let mut points = Vec::with_capacity(2 * idx.len());
    for &i in &idx {
        for sign in [1.0f32, -1.0] {
            let mut p = x.to_vec();
            p[i] += sign * fd.eps;
            points.push(p);
        }
    }
    let l = losses(&points);
    assert_eq!(l.len(), points.len(), "{ctx}: one loss per point expected");
    for (k, &i) in idx.iter().enumerate() {
        let num = (l[2 * k] - l[2 * k + 1]) / (2.0 * fd.eps as f64);
        let got = analytic[i] as f64;
        assert!(
            (num - got).abs() <= fd.atol + fd.rtol * num.abs(),
            "{ctx}: d/dx[{i}] = {got}, finite differences {num} (eps {}, rtol {}, atol {})",
            fd.eps,
            fd.rtol,
            fd.atol
        );
    }
}

/// The gradient of an f64 function by central differences with step `h`: for checking a
/// kernel's backward against an f64 reference whose derivative is not written out.
pub fn central_differences(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (mut p, mut m) = (x.to_vec(), x.to_vec());
            p[i] += h;
            m[i] -= h;
            (f(&p) - f(&m)) / (2.0 * h)
        })
        .collect()
}

/// Checks both convolution gradient kernels, `conv2d_backward_input` and
/// `conv2d_backward_filter`, against central differences of L = Σ conv2d(x, w)·g for random
/// x `[N, H, W, C]`, w `[KH, KW, C/groups, O]` and g. L is linear in each input, so the
/// differences are exact up to rounding and the tolerance is tight. `x_samples` bounds how
/// many input elements are perturbed (each costs two forward passes).
pub fn check_conv2d_gradients(
    rng: &mut crate::Rng,
    xs: [usize; 4],
    ws: [usize; 4],
    opts: wgrad_tensor::Conv2dOptions,
    x_samples: usize,
) {
    use wgrad_tensor::Tensor;
    let dev = crate::device();
    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let tw = Tensor::from_slice(&dev, &wv, &ws).unwrap();
    let tx = Tensor::from_slice(&dev, &xv, &xs).unwrap();
    let ys = tx.conv2d(&tw, opts).unwrap().shape().to_vec();
    let gv = rng.vec(ys.iter().product(), -1.0, 1.0);
    let tg = Tensor::from_slice(&dev, &gv, &ys).unwrap();
    let loss = |x: &[f32], w: &[f32]| -> f64 {
        let y = Tensor::from_slice(&dev, x, &xs)
            .unwrap()
            .conv2d(&Tensor::from_slice(&dev, w, &ws).unwrap(), opts)
            .unwrap();
        projection(&y.to_vec::<f32>().unwrap(), &gv)
    };
    let dx = tg.conv2d_backward_input(&tw, &xs, opts).unwrap();
    let dw = tx
        .conv2d_backward_filter(&tg, [ws[0], ws[1]], opts)
        .unwrap();
    let ctx = format!("conv2d x {xs:?} w {ws:?} {opts:?}");
    let fd = Fd::new(1e-2).tol(0.0, 2e-3);
    check_gradient(
        &format!("{ctx}: dx"),
        &xv,
        &dx.to_vec::<f32>().unwrap(),
        fd.at_most(x_samples),
        |p| loss(p, &wv),
    );
    check_gradient(
        &format!("{ctx}: dw"),
        &wv,
        &dw.to_vec::<f32>().unwrap(),
        fd,
        |p| loss(&xv, p),
    );
}
