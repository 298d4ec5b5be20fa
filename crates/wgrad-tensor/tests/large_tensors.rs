//! Tensors past the binding limit: every op that splits its work, run on a device whose
//! binding limit is lowered to 16 KiB (so tensors of a few thousand elements take the paths
//! that a VGG-16 fc1 weight takes on lavapipe at 128 MiB), against the same op on the device
//! under test with the adapter's limit, where every tensor here fits one binding, and
//! against f64 references written with plain loops.

use wgrad_tensor::{DType, Device, Error, MatmulOptions, Tensor, Update};
use wgrad_testkit::{close, device, Rng};

const LIMIT: u64 = 16 << 10;

/// A private device with the lowered limit (the default device keeps the adapter's).
fn small() -> Device {
    let d = Device::new().unwrap();
    d.set_binding_limit(Some(LIMIT));
    assert_eq!(d.binding_limit(), LIMIT);
    d
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

/// The same values on the lowered device and the full one.
fn pair(d: &Device, v: &[f32], shape: &[usize]) -> (Tensor, Tensor) {
    (
        Tensor::from_slice(d, v, shape).unwrap(),
        Tensor::from_slice(&device(), v, shape).unwrap(),
    )
}

fn big(t: &Tensor) -> bool {
    t.size_in_bytes() > LIMIT
}

/// Split and unsplit results agree bit for bit (elementwise work, copies, generators).
fn same_bits(what: &str, split: &Tensor, full: &Tensor) {
    assert_eq!(split.shape(), full.shape(), "{what}");
    let (a, b) = (split.to_f32_vec().unwrap(), full.to_f32_vec().unwrap());
    let bad = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x.to_bits() != y.to_bits());
    assert!(bad.is_none(), "{what}: element {bad:?} differs");
}

#[test]
fn limit_is_lowered_and_restored() {
    let d = small();
    let adapter = device().binding_limit();
    d.set_binding_limit(Some(5000));
    assert_eq!(d.binding_limit(), 4096, "rounded down to 4 KiB");
    d.set_binding_limit(Some(1));
    assert_eq!(d.binding_limit(), 4096, "at least 4 KiB");
    d.set_binding_limit(None);
    assert_eq!(d.binding_limit(), adapter);
    assert!(d.max_tensor_bytes() >= d.binding_limit());
}

#[test]
fn elementwise_ops_split() {
    let d = small();
    // One length a multiple of 4 (vec4 kernels), one odd (scalar kernels and a short tail).
    for n in [12_288usize, 9_999] {
        let v = data(n, n as u64);
        let w = data(n, 7);
        let (x, xf) = pair(&d, &v, &[n]);
        let (y, yf) = pair(&d, &w, &[n]);
        assert!(big(&x));
        same_bits("exp", &x.exp().unwrap(), &xf.exp().unwrap());
        same_bits("relu", &x.relu().unwrap(), &xf.relu().unwrap());
        same_bits(
            "mul_scalar",
            &x.mul_scalar(0.5).unwrap(),
            &xf.mul_scalar(0.5).unwrap(),
        );
        same_bits("add", &x.add(&y).unwrap(), &xf.add(&yf).unwrap());
        same_bits("div", &x.div(&y).unwrap(), &xf.div(&yf).unwrap());
        let got = x.mul(&y).unwrap().to_vec::<f32>().unwrap();
        let want: Vec<f64> = v
            .iter()
            .zip(&w)
            .map(|(a, b)| *a as f64 * *b as f64)
            .collect();
        close("mul", &got, &want, 1e-6, 0.0);
        let gt = x.gt(&y).unwrap();
        let gtf = xf.gt(&yf).unwrap();
        assert_eq!(gt.to_vec::<u32>().unwrap(), gtf.to_vec::<u32>().unwrap());
        same_bits(
            "where",
            &gt.where_(&x, &y).unwrap(),
            &gtf.where_(&xf, &yf).unwrap(),
        );
        let g = x.square().unwrap();
        let gf = xf.square().unwrap();
        let y2 = x.exp().unwrap();
        let y2f = xf.exp().unwrap();
        same_bits(
            "unary_backward",
            &g.unary_backward(wgrad_tensor::UnaryOp::Exp, &x, &y2)
                .unwrap(),
            &gf.unary_backward(wgrad_tensor::UnaryOp::Exp, &xf, &y2f)
                .unwrap(),
        );
    }
}

#[test]
fn broadcasting_ops_split_the_full_shape_operand() {
    let d = small();
    let (m, n) = (97, 61);
    let v = data(m * n, 3);
    let bias = data(n, 4);
    let (x, xf) = pair(&d, &v, &[m, n]);
    let (b, bf) = pair(&d, &bias, &[n]);
    let (s, sf) = pair(&d, &[2.5], &[]);
    assert!(big(&x));
    let got = x.add(&b).unwrap();
    same_bits("x + bias", &got, &xf.add(&bf).unwrap());
    let want: Vec<f64> = (0..m * n)
        .map(|i| v[i] as f64 + bias[i % n] as f64)
        .collect();
    close("x + bias", &got.to_vec::<f32>().unwrap(), &want, 1e-6, 1e-7);
    // The broadcast operand first.
    same_bits("bias - x", &b.sub(&x).unwrap(), &bf.sub(&xf).unwrap());
    same_bits("x * scalar", &x.mul(&s).unwrap(), &xf.mul(&sf).unwrap());
    let mask = x.gt(&b).unwrap();
    let maskf = xf.gt(&bf).unwrap();
    same_bits(
        "where(mask, x, scalar)",
        &mask.where_(&x, &s).unwrap(),
        &maskf.where_(&xf, &sf).unwrap(),
    );
}

#[test]
fn fills_generators_and_casts_split() {
    let d = small();
    let n = 10_001;
    let full = Tensor::full(&d, &[n], 1.25, DType::F32).unwrap();
    assert!(big(&full));
    assert!(full.to_vec::<f32>().unwrap().iter().all(|&x| x == 1.25));
    let r = Tensor::arange(&d, 3.0, 3.0 + 0.5 * n as f32, 0.5).unwrap();
    same_bits(
        "arange",
        &r,
        &Tensor::arange(&device(), 3.0, 3.0 + 0.5 * n as f32, 0.5).unwrap(),
    );
    let ri = Tensor::arange_i32(&d, -7, n as i32 - 7, 1).unwrap();
    let want: Vec<i32> = (-7..n as i32 - 7).collect();
    assert_eq!(ri.to_vec::<i32>().unwrap(), want);
    // A counter-based generator: the pieces must continue the sequence exactly.
    for shape in [&[n][..], &[4099, 3]] {
        same_bits(
            "rand_uniform",
            &Tensor::rand_uniform(&d, shape, -2.0, 3.0, 42).unwrap(),
            &Tensor::rand_uniform(&device(), shape, -2.0, 3.0, 42).unwrap(),
        );
        same_bits(
            "rand_normal",
            &Tensor::rand_normal(&d, shape, 0.5, 2.0, 9).unwrap(),
            &Tensor::rand_normal(&device(), shape, 0.5, 2.0, 9).unwrap(),
        );
    }
    // f16 halves: two per word, so both the reading and the writing pieces stay aligned.
    let v = data(2 * n + 1, 5);
    let (x, xf) = pair(&d, &v, &[v.len()]);
    let h = x.to_dtype(DType::F16).unwrap();
    let hf = xf.to_dtype(DType::F16).unwrap();
    assert!(big(&h));
    same_bits("to f16", &h, &hf);
    same_bits(
        "f16 to f32",
        &h.to_dtype(DType::F32).unwrap(),
        &hf.to_dtype(DType::F32).unwrap(),
    );
    let want: Vec<f64> = v.iter().map(|&x| half::f16::from_f32(x).to_f64()).collect();
    close(
        "f16 round trip",
        &h.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        &want,
        0.0,
        0.0,
    );
    let i = x.mul_scalar(100.0).unwrap().to_dtype(DType::I32).unwrap();
    let want: Vec<i32> = v.iter().map(|&x| (x * 100.0) as i32).collect();
    assert_eq!(i.to_vec::<i32>().unwrap(), want);
}

#[test]
fn optimizer_updates_split() {
    let d = small();
    let n = 6_001;
    let (w, wf) = pair(&d, &data(n, 1), &[n]);
    let (g, gf) = pair(&d, &data(n, 2), &[n]);
    let (s1, s1f) = pair(
        &d,
        &data(n, 3).iter().map(|x| x.abs()).collect::<Vec<_>>(),
        &[n],
    );
    let (s2, s2f) = pair(
        &d,
        &data(n, 4).iter().map(|x| x.abs()).collect::<Vec<_>>(),
        &[n],
    );
    let (s3, s3f) = pair(&d, &data(n, 5), &[n]);
    let updates = [
        Update::Sgd {
            lr: 0.1,
            decay: 0.01,
        },
        Update::SgdMomentum {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            decay: 0.0,
        },
        Update::RmsProp {
            lr: 0.01,
            rho: 0.9,
            epsilon: 1e-7,
            decay: 0.0,
            momentum: 0.5,
            centered: true,
        },
        Update::Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            decay: 0.004,
        },
    ];
    for u in updates {
        let slots = [&s1, &s2, &s3][..u.slots()].to_vec();
        let slotsf = [&s1f, &s2f, &s3f][..u.slots()].to_vec();
        let (p, ps) = w.optimizer_update(&g, &slots, u).unwrap();
        let (pf, psf) = wf.optimizer_update(&gf, &slotsf, u).unwrap();
        same_bits(&format!("{u:?} parameter"), &p, &pf);
        for (a, b) in ps.iter().zip(&psf) {
            same_bits(&format!("{u:?} slot"), a, b);
        }
    }
    // Plain SGD against the rule itself.
    let (p, _) = w
        .optimizer_update(
            &g,
            &[],
            Update::Sgd {
                lr: 0.1,
                decay: 0.0,
            },
        )
        .unwrap();
    let (wv, gv) = (data(n, 1), data(n, 2));
    let want: Vec<f64> = wv
        .iter()
        .zip(&gv)
        .map(|(w, g)| *w as f64 - 0.1 * *g as f64)
        .collect();
    close("sgd", &p.to_vec::<f32>().unwrap(), &want, 1e-6, 1e-7);
}

/// Sum, mean, max and min over `axes` of `v` in `shape`, by plain loops.
fn reference(v: &[f32], shape: &[usize], axis: Option<usize>) -> [Vec<f64>; 4] {
    let (outer, k, inner) = match axis {
        None => (1, v.len(), 1),
        Some(a) => (
            shape[..a].iter().product(),
            shape[a],
            shape[a + 1..].iter().product::<usize>(),
        ),
    };
    let mut out = [vec![], vec![], vec![], vec![]];
    for o in 0..outer {
        for i in 0..inner {
            let vals: Vec<f64> = (0..k).map(|j| v[(o * k + j) * inner + i] as f64).collect();
            let sum: f64 = vals.iter().sum();
            out[0].push(sum);
            out[1].push(sum / k as f64);
            out[2].push(vals.iter().cloned().fold(f64::MIN, f64::max));
            out[3].push(vals.iter().cloned().fold(f64::MAX, f64::min));
        }
    }
    out
}

#[test]
fn reductions_split() {
    let d = small();
    // [a, k, b] views whose rows fit one binding (outer axis 13) and whose rows do not
    // (a middle axis of 5,003 rows of 3).
    for (shape, axis) in [
        (vec![12_345usize], None),
        (vec![13, 977], Some(1)),
        (vec![2, 5_003, 3], Some(1)),
        (vec![4_099, 7], Some(0)),
        (vec![3, 2_001, 5], None),
    ] {
        let n: usize = shape.iter().product();
        let v = data(n, n as u64);
        let (x, xf) = pair(&d, &v, &shape);
        assert!(big(&x));
        let axes: Vec<isize> = axis.map(|a| vec![a as isize]).unwrap_or_default();
        let want = reference(&v, &shape, axis);
        let got = [
            x.sum(&axes, false).unwrap(),
            x.mean(&axes, false).unwrap(),
            x.max(&axes, false).unwrap(),
            x.min(&axes, false).unwrap(),
        ];
        let unsplit = [
            xf.sum(&axes, false).unwrap(),
            xf.mean(&axes, false).unwrap(),
            xf.max(&axes, false).unwrap(),
            xf.min(&axes, false).unwrap(),
        ];
        for (i, name) in ["sum", "mean", "max", "min"].iter().enumerate() {
            let ctx = format!("{name} over {axis:?} of {shape:?}");
            assert_eq!(got[i].shape(), unsplit[i].shape(), "{ctx}");
            let g = got[i].to_vec::<f32>().unwrap();
            close(&ctx, &g, &want[i], 1e-5, 1e-5);
            close(
                &ctx,
                &g,
                &wgrad_testkit::to_f64(&down(&unsplit[i])),
                1e-5,
                1e-5,
            );
        }
    }
    // Positions cannot be combined piecewise: a typed error, not a wrong index.
    let (x, _) = pair(&d, &data(9_000, 1), &[9_000]);
    assert!(matches!(x.argmax(0, false), Err(Error::Unsplit { .. })));
}

fn down(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn copies_split_along_the_outer_axis() {
    let d = small();
    let (r, c) = (1_001, 7);
    let v = data(r * c, 8);
    let (x, xf) = pair(&d, &v, &[r, c]);
    assert!(big(&x));
    same_bits(
        "slice rows",
        &x.slice(0, 13, 900).unwrap(),
        &xf.slice(0, 13, 900).unwrap(),
    );
    let want: Vec<f64> = v[13 * c..900 * c].iter().map(|&x| x as f64).collect();
    close(
        "slice rows",
        &down(&x.slice(0, 13, 900).unwrap()),
        &want,
        0.0,
        0.0,
    );
    same_bits(
        "slice columns",
        &x.slice(1, 2, 5).unwrap(),
        &xf.slice(1, 2, 5).unwrap(),
    );
    same_bits(
        "concat",
        &Tensor::concat(&[&x, &x.slice(0, 0, 3).unwrap(), &x], 0).unwrap(),
        &Tensor::concat(&[&xf, &xf.slice(0, 0, 3).unwrap(), &xf], 0).unwrap(),
    );
    same_bits(
        "pad",
        &x.pad(&[3, 1], &[2, 0]).unwrap(),
        &xf.pad(&[3, 1], &[2, 0]).unwrap(),
    );
    // A big tensor read back in one buffer copy: no binding involved.
    assert_eq!(down(&x), v);
    // A permutation whose pieces would each span the whole input: a typed error.
    match x.t() {
        Err(Error::Unsplit { bytes, limit, .. }) => assert!(bytes > limit && limit == LIMIT),
        other => panic!("expected Error::Unsplit, got {other:?}"),
    }
}

/// `op(a) · op(b)` by plain loops over stored row-major operands.
fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|p| {
                    let x = if ta { a[p * m + i] } else { a[i * k + p] };
                    let y = if tb { b[j * k + p] } else { b[p * n + j] };
                    x as f64 * y as f64
                })
                .sum();
        }
    }
    out
}

#[test]
fn dense_layer_products_split() {
    let d = small();
    // A dense layer [batch, in] · [in, out] whose weight (in x out) is past the limit: its
    // forward (K in pieces), input gradient (B transposed: output columns in pieces) and
    // weight gradient (a large product: output rows in pieces), with odd extents so that
    // windows start at unaligned rows.
    let (batch, inp, out) = (5, 301, 67);
    let x = data(batch * inp, 1);
    let w = data(inp * out, 2);
    let gz = data(batch * out, 3);
    let bias = data(out, 4);
    let (xd, xf) = pair(&d, &x, &[batch, inp]);
    let (wd, wf) = pair(&d, &w, &[inp, out]);
    let (gd, gf) = pair(&d, &gz, &[batch, out]);
    let (bd, bf) = pair(&d, &bias, &[out]);
    assert!(big(&wd) && !big(&xd));
    let opts = |ta, tb| MatmulOptions {
        transpose_a: ta,
        transpose_b: tb,
        ..Default::default()
    };
    // Each product split on the lowered device, unsplit on the full one, and by loops.
    let check = |name: &str,
                 [a, b]: [&Tensor; 2],
                 [af, bf]: [&Tensor; 2],
                 t: (bool, bool),
                 want: Vec<f64>| {
        let got = a.matmul_with(b, opts(t.0, t.1)).unwrap();
        let unsplit = af.matmul_with(bf, opts(t.0, t.1)).unwrap();
        assert_eq!(got.shape(), unsplit.shape(), "{name}");
        close(name, &down(&got), &want, 1e-5, 1e-5);
        close(
            name,
            &down(&got),
            &wgrad_testkit::to_f64(&down(&unsplit)),
            1e-5,
            1e-5,
        );
    };
    let mm = |a: &[f32], b: &[f32], m, k, n, ta, tb| matmul_ref(a, b, m, k, n, ta, tb);
    check(
        "forward",
        [&xd, &wd],
        [&xf, &wf],
        (false, false),
        mm(&x, &w, batch, inp, out, false, false),
    );
    check(
        "input gradient",
        [&gd, &wd],
        [&gf, &wf],
        (false, true),
        mm(&gz, &w, batch, out, inp, false, true),
    );
    check(
        "weight gradient",
        [&xd, &gd],
        [&xf, &gf],
        (true, false),
        mm(&x, &gz, inp, batch, out, true, false),
    );
    // The forward with its fused bias and ReLU.
    let fused = MatmulOptions {
        bias: Some(&bd),
        activation: wgrad_tensor::Activation::Relu,
        ..Default::default()
    };
    let got = xd.matmul_with(&wd, fused).unwrap();
    let want: Vec<f64> = matmul_ref(&x, &w, batch, inp, out, false, false)
        .iter()
        .enumerate()
        .map(|(i, v)| (v + bias[i % out] as f64).max(0.0))
        .collect();
    close("forward + bias + relu", &down(&got), &want, 1e-5, 1e-5);
    let unsplit = xf
        .matmul_with(
            &wf,
            MatmulOptions {
                bias: Some(&bf),
                ..fused
            },
        )
        .unwrap();
    close(
        "fused",
        &down(&got),
        &wgrad_testkit::to_f64(&down(&unsplit)),
        1e-5,
        1e-6,
    );
    // A large A, untransposed (rows in pieces), and a large transposed A (K in pieces).
    let (m, k, n) = (700, 9, 5);
    let a = data(m * k, 5);
    let b = data(k * n, 6);
    let (ad, _) = pair(&d, &a, &[m, k]);
    let (bd2, _) = pair(&d, &b, &[k, n]);
    assert!(big(&ad));
    close(
        "tall A",
        &down(&ad.matmul(&bd2).unwrap()),
        &matmul_ref(&a, &b, m, k, n, false, false),
        1e-5,
        1e-6,
    );
    let at = data(m * k, 7);
    let (atd, _) = pair(&d, &at, &[m, k]);
    let c = data(m * n, 8);
    let (cd, _) = pair(&d, &c, &[m, n]);
    close(
        "large A transposed",
        &down(&atd.matmul_with(&cd, opts(true, false)).unwrap()),
        &matmul_ref(&at, &c, k, m, n, true, false),
        1e-5,
        1e-5,
    );
}

#[test]
fn ops_that_do_not_split_say_so() {
    let d = small();
    // A convolution input past the limit: a typed error naming the kernel, never an invalid
    // bind group or a wrong result.
    let x = Tensor::zeros(&d, &[1, 40, 40, 8], DType::F32).unwrap();
    let w = Tensor::zeros(&d, &[3, 3, 8, 4], DType::F32).unwrap();
    match x.conv2d(&w, Default::default()) {
        Err(e @ Error::Unsplit { .. }) => {
            let msg = e.to_string();
            println!("{msg}");
            assert!(
                msg.contains("binding limit") && msg.contains("smaller batch"),
                "{msg}"
            );
        }
        other => panic!("expected Error::Unsplit, got {other:?}"),
    }
    // The device stays usable.
    let y = Tensor::from_slice(&d, &[1.0f32, 2.0], &[2]).unwrap();
    assert_eq!(down(&y.add(&y).unwrap()), [2.0, 4.0]);
}
