//! Pooling and upsampling (NHWC), forward and backward: TensorFlow's reference cases, an
//! independent f64 reference written here with plain loops, finite differences and the adjoint
//! identity, global pools, and the typed errors.

use wgrad_tensor::Upsample;
use wgrad_tensor::{DType, Padding, Tensor};
use wgrad_testkit::grad::check_gradient_batched;
use wgrad_testkit::{
    close, device, down, is_dtype, is_invalid, is_shape, numel, projection, to_f64, up, Fd, Rng,
};

// ---------------------------------------------------------------------------------------------
// f64 reference, sharing no code with the crate (the padding rule is re-derived here).

/// (output extent, padding before) of one axis under TF's rule.
fn ref_axis(
    input: usize,
    k: usize,
    s: usize,
    pad: (Option<(usize, usize)>, bool),
) -> (usize, usize) {
    let (before, after) = match pad {
        (Some(e), _) => e,
        (None, false) => (0, 0),
        (None, true) => {
            let out = input.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(input);
            (total / 2, total - total / 2)
        }
    };
    ((input + before + after - k) / s + 1, before)
}

/// The per-axis padding description of `p` for `axis`.
fn axis_pad(p: Padding, axis: usize) -> (Option<(usize, usize)>, bool) {
    match p {
        Padding::Valid => (None, false),
        Padding::Same => (None, true),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => (
            Some(if axis == 0 {
                (top, bottom)
            } else {
                (left, right)
            }),
            false,
        ),
    }
}

struct Geo {
    oh: usize,
    ow: usize,
    pt: usize,
    pl: usize,
}

fn ref_geo(s: [usize; 4], pool: [usize; 2], stride: [usize; 2], p: Padding) -> Geo {
    let (oh, pt) = ref_axis(s[1], pool[0], stride[0], axis_pad(p, 0));
    let (ow, pl) = ref_axis(s[2], pool[1], stride[1], axis_pad(p, 1));
    Geo { oh, ow, pt, pl }
}

/// Real input cells (flat NHWC offsets without n and c) of window (oy, ox).
fn window(
    s: [usize; 4],
    g: &Geo,
    pool: [usize; 2],
    stride: [usize; 2],
    oy: usize,
    ox: usize,
) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for ky in 0..pool[0] {
        for kx in 0..pool[1] {
            let y = (oy * stride[0] + ky) as isize - g.pt as isize;
            let x = (ox * stride[1] + kx) as isize - g.pl as isize;
            if y >= 0 && x >= 0 && (y as usize) < s[1] && (x as usize) < s[2] {
                v.push((y as usize, x as usize));
            }
        }
    }
    v
}

/// Reference pooling: (output, argmax index per output as (h*W+w)*C+c, max) or the mean.
struct PoolRef {
    shape: [usize; 4],
    max: Vec<f64>,
    arg: Vec<u32>,
    avg: Vec<f64>,
    /// d(sum(out * g))/dx for max and avg, given g.
    dmax: Vec<f64>,
    davg: Vec<f64>,
}

fn pool_ref(
    x: &[f32],
    s: [usize; 4],
    pool: [usize; 2],
    stride: [usize; 2],
    p: Padding,
    grad: &[f32],
) -> PoolRef {
    let g = ref_geo(s, pool, stride, p);
    let [n, h, w, c] = s;
    let _ = h;
    let out = [n, g.oh, g.ow, c];
    let (mut max, mut arg, mut avg) = (vec![], vec![], vec![]);
    let mut dmax = vec![0f64; x.len()];
    let mut davg = vec![0f64; x.len()];
    let at = |b: usize, y: usize, xx: usize, ch: usize| ((b * s[1] + y) * w + xx) * c + ch;
    for b in 0..n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let cells = window(s, &g, pool, stride, oy, ox);
                for ch in 0..c {
                    let o = ((b * g.oh + oy) * g.ow + ox) * c + ch;
                    let (mut best, mut bi) = (f64::NEG_INFINITY, None);
                    let mut sum = 0.0;
                    for &(y, xx) in &cells {
                        let v = x[at(b, y, xx, ch)] as f64;
                        sum += v;
                        if bi.is_none() || v > best {
                            best = v;
                            bi = Some((y, xx));
                        }
                    }
                    let (y, xx) = bi.unwrap();
                    max.push(best);
                    arg.push(((y * w + xx) * c + ch) as u32);
                    avg.push(sum / cells.len() as f64);
                    dmax[at(b, y, xx, ch)] += grad[o] as f64;
                    for &(y, xx) in &cells {
                        davg[at(b, y, xx, ch)] += grad[o] as f64 / cells.len() as f64;
                    }
                }
            }
        }
    }
    PoolRef {
        shape: out,
        max,
        arg,
        avg,
        dmax,
        davg,
    }
}

/// Reference bilinear taps of output row d: (i0, i1, weight of i1).
fn ref_tap(d: usize, f: usize, n: usize) -> (usize, usize, f64) {
    let src = (d as f64 + 0.5) / f as f64 - 0.5;
    let y0 = src.floor();
    let frac = src - y0;
    let cl = |v: f64| v.clamp(0.0, (n - 1) as f64) as usize;
    (cl(y0), cl(y0 + 1.0), frac)
}

/// Reference upsampling as a list of (output, input, weight) terms, so forward and backward
/// share one description: out[o] = sum w * x[i], dx[i] = sum w * g[o].
fn up_terms(s: [usize; 4], f: [usize; 2], mode: Upsample) -> Vec<(usize, usize, f64)> {
    let [n, h, w, c] = s;
    let (oh, ow) = (h * f[0], w * f[1]);
    let mut t = Vec::new();
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let ys = match mode {
                    Upsample::Nearest => vec![(oy / f[0], 1.0)],
                    Upsample::Bilinear => {
                        let (a, bb, fr) = ref_tap(oy, f[0], h);
                        vec![(a, 1.0 - fr), (bb, fr)]
                    }
                };
                let xs = match mode {
                    Upsample::Nearest => vec![(ox / f[1], 1.0)],
                    Upsample::Bilinear => {
                        let (a, bb, fr) = ref_tap(ox, f[1], w);
                        vec![(a, 1.0 - fr), (bb, fr)]
                    }
                };
                for ch in 0..c {
                    let o = ((b * oh + oy) * ow + ox) * c + ch;
                    for &(y, wy) in &ys {
                        for &(x, wx) in &xs {
                            t.push((o, ((b * h + y) * w + x) * c + ch, wy * wx));
                        }
                    }
                }
            }
        }
    }
    t
}

fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Padding {
    Padding::Explicit {
        top,
        bottom,
        left,
        right,
    }
}

// ---------------------------------------------------------------------------------------------
// TensorFlow's reference cases.

#[test]
fn tensorflow_oracle_cases() {
    let cases = wgrad_testkit::oracle::cases("pool2d");
    assert!(cases.len() >= 9, "expected the nine pool2d cases");
    for case in &cases {
        let (xs, x) = case.get("input");
        let (_, want_y) = case.get("output");
        let (gs, g) = case.get("grad_output");
        let (_, want_dx) = case.get("grad_input");
        let xt = up(x, xs);
        let gt = up(g, gs);
        let kind = case.str("kind");
        let ctx = format!("{} {}", case.name, case.params);
        let (y, dx) = if kind == "global_avg" {
            (
                xt.global_avg_pool2d().unwrap(),
                gt.global_avg_pool2d_backward(xs).unwrap(),
            )
        } else {
            let (pool, stride) = (case.pair("pool_size"), case.pair("stride"));
            let padding = match case.str("padding") {
                "valid" => Padding::Valid,
                "same" => Padding::Same,
                other => panic!("{ctx}: padding {other}"),
            };
            match kind {
                "max" => {
                    let (y, idx) = xt.max_pool2d(pool, stride, padding).unwrap();
                    let dx = gt
                        .max_pool2d_backward(&idx, xs, pool, stride, padding)
                        .unwrap();
                    (y, dx)
                }
                "avg" => (
                    xt.avg_pool2d(pool, stride, padding).unwrap(),
                    gt.avg_pool2d_backward(xs, pool, stride, padding).unwrap(),
                ),
                other => panic!("{ctx}: kind {other}"),
            }
        };
        assert_eq!(y.shape(), case.get("output").0, "{ctx}");
        close(
            &format!("{ctx} output"),
            &down(&y),
            &to_f64(want_y),
            1e-4,
            1e-5,
        );
        close(
            &format!("{ctx} grad_input"),
            &down(&dx),
            &to_f64(want_dx),
            1e-4,
            1e-5,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Randomized parity with the f64 reference.

/// One random pooling problem: odd sizes, C with and without the vec4 path.
fn random_case(rng: &mut Rng) -> ([usize; 4], [usize; 2], [usize; 2], Padding) {
    let pick = |rng: &mut Rng, lo: usize, hi: usize| lo + (rng.next_u64() as usize) % (hi - lo + 1);
    let pool = [pick(rng, 1, 4), pick(rng, 1, 4)];
    let stride = [pick(rng, 1, 3), pick(rng, 1, 3)];
    let cs = [1, 3, 4, 5, 8];
    let s = [
        pick(rng, 1, 2),
        pick(rng, pool[0], 11),
        pick(rng, pool[1], 11),
        cs[rng.next_u64() as usize % cs.len()],
    ];
    let padding = match rng.next_u64() % 3 {
        0 => Padding::Valid,
        1 => Padding::Same,
        // Pooling needs each pad narrower than its window.
        _ => explicit(
            pick(rng, 0, pool[0] - 1),
            pick(rng, 0, pool[0] - 1),
            pick(rng, 0, pool[1] - 1),
            pick(rng, 0, pool[1] - 1),
        ),
    };
    (s, pool, stride, padding)
}

/// Distinct values (a shuffled grid with gaps of 1/64), so a max has no ties and finite
/// differences with a step below the gap never change the winner.
fn distinct(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) / 64.0).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.next_u64() as usize % (i + 1));
    }
    v
}

#[test]
fn pooling_matches_the_f64_reference() {
    let mut rng = Rng::new(7);
    let mut seen = [false; 3];
    for trial in 0..60 {
        let (s, pool, stride, padding) = random_case(&mut rng);
        seen[match padding {
            Padding::Valid => 0,
            Padding::Same => 1,
            _ => 2,
        }] = true;
        let ctx = format!("trial {trial}: {s:?} pool {pool:?} stride {stride:?} {padding:?}");
        // Half the trials use tie-free data, half coarse data with many ties: the index must
        // then be the first maximum in window order.
        let x: Vec<f32> = if trial % 2 == 0 {
            distinct(&mut rng, numel(&s))
        } else {
            (0..numel(&s))
                .map(|_| (rng.next_u64() % 4) as f32 - 2.0)
                .collect()
        };
        let xt = up(&x, &s);
        let (y, idx) = xt.max_pool2d(pool, stride, padding).unwrap();
        let g: Vec<f32> = rng.vec(y.numel(), -1.0, 1.0);
        let r = pool_ref(&x, s, pool, stride, padding, &g);
        assert_eq!(y.shape(), r.shape, "{ctx}");
        assert_eq!(idx.shape(), r.shape, "{ctx}");
        assert_eq!(idx.dtype(), DType::U32);
        close(&format!("{ctx} max"), &down(&y), &r.max, 0.0, 0.0);
        assert_eq!(idx.to_vec::<u32>().unwrap(), r.arg, "{ctx} indices");
        let avg = xt.avg_pool2d(pool, stride, padding).unwrap();
        assert_eq!(avg.shape(), r.shape, "{ctx}");
        close(&format!("{ctx} avg"), &down(&avg), &r.avg, 1e-5, 1e-6);

        let gt = up(&g, &r.shape);
        let dmax = gt
            .max_pool2d_backward(&idx, &s, pool, stride, padding)
            .unwrap();
        close(
            &format!("{ctx} max backward"),
            &down(&dmax),
            &r.dmax,
            1e-5,
            1e-6,
        );
        let davg = gt.avg_pool2d_backward(&s, pool, stride, padding).unwrap();
        close(
            &format!("{ctx} avg backward"),
            &down(&davg),
            &r.davg,
            1e-5,
            1e-6,
        );
    }
    assert_eq!(seen, [true; 3], "every padding mode drawn");
}

#[test]
fn max_pool_of_relu_matches_the_f64_reference() {
    // max_pool2d_relu(x) = max_pool2d(relu(x)), and its gradient through max_pool2d_backward
    // is relu'(x)·(the pool's gradient at relu(x)): the reference pools relu(x) in f64.
    let mut rng = Rng::new(29);
    for trial in 0..40 {
        let (s, pool, stride, padding) = random_case(&mut rng);
        let ctx = format!("trial {trial}: {s:?} pool {pool:?} stride {stride:?} {padding:?}");
        // Tie-free data half the time, else coarse values where many windows are all ≤ 0.
        let x: Vec<f32> = if trial % 2 == 0 {
            distinct(&mut rng, numel(&s))
                .iter()
                .map(|v| v + 1.0 / 128.0)
                .collect()
        } else {
            (0..numel(&s))
                .map(|_| (rng.next_u64() % 4) as f32 - 2.5)
                .collect()
        };
        let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        let (y, idx) = up(&x, &s).max_pool2d_relu(pool, stride, padding).unwrap();
        let g: Vec<f32> = rng.vec(y.numel(), -1.0, 1.0);
        let r = pool_ref(&relu, s, pool, stride, padding, &g);
        assert_eq!(y.shape(), r.shape, "{ctx}");
        close(&format!("{ctx} forward"), &down(&y), &r.max, 0.0, 0.0);
        let dx = up(&g, &r.shape)
            .max_pool2d_backward(&idx, &s, pool, stride, padding)
            .unwrap();
        let want: Vec<f64> = r
            .dmax
            .iter()
            .zip(&x)
            .map(|(d, v)| if *v > 0.0 { *d } else { 0.0 })
            .collect();
        close(&format!("{ctx} backward"), &down(&dx), &want, 1e-5, 1e-6);
    }
}

#[test]
fn vec4_and_scalar_paths_agree_on_a_wider_image() {
    // 3x3/2 Same as in ResNet stems, C = 16 (vec4 path) against the reference.
    let mut rng = Rng::new(11);
    let s = [2, 17, 13, 16];
    let x = distinct(&mut rng, numel(&s));
    let (pool, stride) = ([3, 3], [2, 2]);
    let (y, idx) = up(&x, &s).max_pool2d(pool, stride, Padding::Same).unwrap();
    let g = rng.vec(y.numel(), -1.0, 1.0);
    let r = pool_ref(&x, s, pool, stride, Padding::Same, &g);
    close("max", &down(&y), &r.max, 0.0, 0.0);
    let dx = up(&g, &r.shape)
        .max_pool2d_backward(&idx, &s, pool, stride, Padding::Same)
        .unwrap();
    close("max backward", &down(&dx), &r.dmax, 1e-5, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Finite differences: the backward kernels are the derivative of the forward kernels.

/// Checks `grad` = d(Σ f(x)·g)/dx by central differences, evaluating every perturbed input in
/// one batched forward call (the points stacked along the batch axis). Both pools are
/// piecewise linear, so with eps below the gap between values the difference is exact up to
/// f32 rounding.
fn finite_differences(
    ctx: &str,
    x: &[f32],
    s: [usize; 4],
    g: &[f32],
    grad: &[f32],
    f: impl Fn(&Tensor) -> Tensor,
) {
    assert_eq!(s[0], 1);
    let fd = Fd::new(1.0 / 256.0).tol(2e-3, 2e-3);
    check_gradient_batched(ctx, x, grad, fd, |points| {
        let y = down(&f(&up(&points.concat(), &[points.len(), s[1], s[2], s[3]])));
        y.chunks(g.len()).map(|yk| projection(yk, g)).collect()
    });
}

#[test]
fn pool_backward_matches_finite_differences() {
    let mut rng = Rng::new(23);
    let problems = [
        ([1, 5, 5, 2], [3, 3], [2, 2], Padding::Same),
        ([1, 6, 5, 4], [2, 3], [1, 2], Padding::Valid),
        ([1, 4, 5, 3], [3, 2], [2, 1], explicit(2, 1, 0, 1)),
    ];
    for (s, pool, stride, padding) in problems {
        let ctx = format!("{s:?} pool {pool:?} stride {stride:?} {padding:?}");
        let x = distinct(&mut rng, numel(&s));
        let xt = up(&x, &s);
        let (y, idx) = xt.max_pool2d(pool, stride, padding).unwrap();
        let g = rng.vec(y.numel(), -1.0, 1.0);
        let gt = up(&g, y.shape());
        let dmax = down(
            &gt.max_pool2d_backward(&idx, &s, pool, stride, padding)
                .unwrap(),
        );
        finite_differences(&format!("max {ctx}"), &x, s, &g, &dmax, |b| {
            b.max_pool2d(pool, stride, padding).unwrap().0
        });
        let davg = down(&gt.avg_pool2d_backward(&s, pool, stride, padding).unwrap());
        finite_differences(&format!("avg {ctx}"), &x, s, &g, &davg, |b| {
            b.avg_pool2d(pool, stride, padding).unwrap()
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Global pools.

#[test]
fn global_pools_and_their_gradients() {
    let mut rng = Rng::new(31);
    for s in [[2, 5, 7, 3], [1, 1, 1, 4], [3, 4, 4, 8], [1, 9, 1, 1]] {
        let [n, h, w, c] = s;
        // Coarse values so ties are common: the gradient must go to the first maximum.
        let x: Vec<f32> = (0..numel(&s))
            .map(|_| (rng.next_u64() % 3) as f32)
            .collect();
        let g = rng.vec(n * c, -1.0, 1.0);
        let (xt, gt) = (up(&x, &s), up(&g, &[n, c]));
        let (mut mean, mut max) = (vec![0f64; n * c], vec![f64::NEG_INFINITY; n * c]);
        let mut first = vec![0usize; n * c];
        for b in 0..n {
            for p in 0..h * w {
                for ch in 0..c {
                    let v = x[(b * h * w + p) * c + ch] as f64;
                    mean[b * c + ch] += v / (h * w) as f64;
                    if v > max[b * c + ch] {
                        max[b * c + ch] = v;
                        first[b * c + ch] = p;
                    }
                }
            }
        }
        let (mut dmean, mut dmax) = (vec![0f64; x.len()], vec![0f64; x.len()]);
        for b in 0..n {
            for p in 0..h * w {
                for ch in 0..c {
                    let i = (b * h * w + p) * c + ch;
                    dmean[i] = g[b * c + ch] as f64 / (h * w) as f64;
                    if first[b * c + ch] == p {
                        dmax[i] = g[b * c + ch] as f64;
                    }
                }
            }
        }
        let ctx = format!("{s:?}");
        let avg = xt.global_avg_pool2d().unwrap();
        assert_eq!(avg.shape(), [n, c]);
        close(&format!("{ctx} global avg"), &down(&avg), &mean, 1e-5, 1e-6);
        let mx = xt.global_max_pool2d().unwrap();
        assert_eq!(mx.shape(), [n, c]);
        close(&format!("{ctx} global max"), &down(&mx), &max, 0.0, 0.0);
        let da = gt.global_avg_pool2d_backward(&s).unwrap();
        close(
            &format!("{ctx} global avg backward"),
            &down(&da),
            &dmean,
            1e-6,
            1e-7,
        );
        let dm = gt.global_max_pool2d_backward(&xt).unwrap();
        close(
            &format!("{ctx} global max backward"),
            &down(&dm),
            &dmax,
            0.0,
            0.0,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Upsampling.

#[test]
fn upsampling_matches_the_f64_reference() {
    let mut rng = Rng::new(43);
    let shapes = [
        [1, 1, 1, 1],
        [2, 3, 5, 3],
        [1, 4, 3, 4],
        [1, 7, 2, 8],
        [2, 2, 6, 5],
    ];
    let factors = [[1, 1], [2, 2], [3, 2], [1, 4], [4, 3]];
    for s in shapes {
        for f in factors {
            for mode in [Upsample::Nearest, Upsample::Bilinear] {
                let ctx = format!("{s:?} x{f:?} {mode:?}");
                let x = rng.vec(numel(&s), -2.0, 2.0);
                let os = [s[0], s[1] * f[0], s[2] * f[1], s[3]];
                let g = rng.vec(numel(&os), -1.0, 1.0);
                let terms = up_terms(s, f, mode);
                let (mut want_y, mut want_dx) = (vec![0f64; numel(&os)], vec![0f64; x.len()]);
                for &(o, i, w) in &terms {
                    want_y[o] += w * x[i] as f64;
                    want_dx[i] += w * g[o] as f64;
                }
                let y = up(&x, &s).upsample2d(f, mode).unwrap();
                assert_eq!(y.shape(), os, "{ctx}");
                let yv = down(&y);
                close(&format!("{ctx} forward"), &yv, &want_y, 1e-5, 1e-6);
                let dx = down(&up(&g, &os).upsample2d_backward(&s, f, mode).unwrap());
                close(&format!("{ctx} backward"), &dx, &want_dx, 1e-5, 1e-5);
                // The adjoint identity ties the two GPU kernels together: <up(x), g> = <x, up*(g)>.
                let lhs: f64 = yv.iter().zip(&g).map(|(&a, &b)| a as f64 * b as f64).sum();
                let rhs: f64 = x.iter().zip(&dx).map(|(&a, &b)| a as f64 * b as f64).sum();
                assert!(
                    (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
                    "{ctx}: adjoint {lhs} vs {rhs}"
                );
            }
        }
    }
}

#[test]
fn bilinear_matches_known_values() {
    // tf.image.resize([[[0], [1]]] (1x2), [1, 4], "bilinear") = [0, 0.25, 0.75, 1]: half-pixel
    // centres, clamped at the edges (an align_corners=True resize would give 0, 1/3, 2/3, 1).
    let y = up(&[0.0, 1.0], &[1, 1, 2, 1])
        .upsample2d([1, 2], Upsample::Bilinear)
        .unwrap();
    close(
        "bilinear 1x2 -> 1x4",
        &down(&y),
        &[0.0, 0.25, 0.75, 1.0],
        0.0,
        1e-7,
    );
    let y = up(&[0.0, 1.0], &[1, 1, 2, 1])
        .upsample2d([1, 2], Upsample::Nearest)
        .unwrap();
    close(
        "nearest 1x2 -> 1x4",
        &down(&y),
        &[0.0, 0.0, 1.0, 1.0],
        0.0,
        0.0,
    );
}

// ---------------------------------------------------------------------------------------------
// Typed errors.

fn f(shape: &[usize]) -> Tensor {
    up(&vec![1.0; numel(shape)], shape)
}

#[test]
fn bad_inputs_return_typed_errors() {
    let x = f(&[1, 4, 4, 2]);
    let v = Padding::Valid;
    // Rank.
    is_shape(f(&[4, 4, 2]).max_pool2d([2, 2], [2, 2], v));
    is_shape(f(&[4, 4, 2]).avg_pool2d([2, 2], [2, 2], v));
    is_shape(f(&[4, 4]).global_avg_pool2d());
    is_shape(f(&[1, 1, 4, 4, 2]).global_max_pool2d());
    is_shape(f(&[4, 2]).upsample2d([2, 2], Upsample::Nearest));
    // Zero window, stride or factor; windows larger than the padded input; too much padding.
    is_invalid(x.max_pool2d([0, 2], [1, 1], v));
    is_invalid(x.avg_pool2d([2, 2], [1, 0], v));
    is_invalid(x.max_pool2d([5, 2], [1, 1], v));
    is_invalid(x.avg_pool2d([2, 2], [1, 1], explicit(2, 0, 0, 0)));
    is_invalid(x.upsample2d([0, 2], Upsample::Bilinear));
    is_invalid(f(&[1, 4, 4, 1]).upsample2d_backward(&[1, 2, 2, 1], [2, 0], Upsample::Nearest));
    // Dtype.
    let xi = Tensor::from_slice(&device(), &[1i32; 32], &[1, 4, 4, 2]).unwrap();
    is_dtype(xi.max_pool2d([2, 2], [2, 2], v));
    is_dtype(xi.avg_pool2d([2, 2], [2, 2], v));
    is_dtype(xi.global_avg_pool2d());
    is_dtype(xi.upsample2d([2, 2], Upsample::Nearest));
    // Indices: wrong dtype, wrong shape; gradient of the wrong shape.
    let (y, idx) = x.max_pool2d([2, 2], [2, 2], v).unwrap();
    let (pool, st) = ([2, 2], [2, 2]);
    is_dtype(y.max_pool2d_backward(&y, &[1, 4, 4, 2], pool, st, v));
    let idx_bad = Tensor::zeros(&device(), &[1, 2, 1, 2], DType::U32).unwrap();
    is_shape(y.max_pool2d_backward(&idx_bad, &[1, 4, 4, 2], pool, st, v));
    is_shape(y.max_pool2d_backward(&idx, &[1, 6, 6, 2], pool, st, v));
    is_shape(y.max_pool2d_backward(&idx, &[1, 4, 4], pool, st, v));
    is_shape(y.avg_pool2d_backward(&[1, 4, 4, 3], pool, st, v));
    is_shape(f(&[1, 3]).global_avg_pool2d_backward(&[1, 4, 4, 2]));
    is_shape(f(&[1, 2]).global_max_pool2d_backward(&f(&[2, 4, 4, 2])));
    is_shape(f(&[1, 8, 7, 2]).upsample2d_backward(&[1, 4, 4, 2], [2, 2], Upsample::Nearest));
    // The indices alone still work after all those refusals.
    let dx = y
        .max_pool2d_backward(&idx, &[1, 4, 4, 2], pool, st, v)
        .unwrap();
    assert_eq!(down(&dx).iter().sum::<f32>(), 8.0);
}
