//! Every backward rule of wgrad-graph against central finite differences of a random linear
//! functional L = Σ f(inputs)·R, plus the graph mechanics (no_grad, detach, accumulation,
//! release of saved tensors).

use wgrad_graph::{self as graph, ops, Var};
use wgrad_tensor::{Activation, BinaryOp, Conv2dOptions, Device, Padding, Tensor, UnaryOp};
use wgrad_testkit::{check_gradient, projection, Fd, Rng};

/// Checks d(Σ f(x)·R)/dx for every input against central differences (a sample of elements).
fn check(
    name: &str,
    inputs: &[(Vec<f32>, Vec<usize>)],
    f: impl Fn(&[Var]) -> wgrad_tensor::Result<Var>,
    eps: f32,
    tol: f64,
) {
    let dev = wgrad_testkit::device();
    let vars: Vec<Var> = inputs
        .iter()
        .map(|(d, s)| Var::param(Tensor::from_slice(&dev, d, s).unwrap()))
        .collect();
    let y = f(&vars).unwrap();
    let mut rng = Rng::new(99);
    let r = rng.vec(y.value().numel(), -1.0, 1.0);
    let rv = Var::new(Tensor::from_slice(&dev, &r, y.shape()).unwrap());
    ops::sum(&ops::mul(&y, &rv).unwrap(), &[])
        .unwrap()
        .backward()
        .unwrap();
    let loss = |vals: &[Vec<f32>]| -> f64 {
        let vs: Vec<Var> = vals
            .iter()
            .zip(inputs)
            .map(|(d, (_, s))| Var::new(Tensor::from_slice(&dev, d, s).unwrap()))
            .collect();
        let y = graph::no_grad(|| f(&vs))
            .unwrap()
            .into_value()
            .to_vec::<f32>()
            .unwrap();
        projection(&y, &r)
    };
    let base: Vec<Vec<f32>> = inputs.iter().map(|(d, _)| d.clone()).collect();
    for (k, v) in vars.iter().enumerate() {
        let grad = v
            .grad()
            .unwrap_or_else(|| panic!("{name}: input {k} got no gradient"))
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(
            grad.len(),
            base[k].len(),
            "{name}: gradient {k} has the wrong size"
        );
        let fd = Fd::new(eps).tol(tol, tol).at_most(12);
        check_gradient(&format!("{name}: input {k}"), &base[k], &grad, fd, |p| {
            let mut at = base.clone();
            at[k] = p.to_vec();
            loss(&at)
        });
    }
}

fn data(seed: u64, shape: &[usize], lo: f32, hi: f32) -> (Vec<f32>, Vec<usize>) {
    (
        Rng::new(seed).vec(shape.iter().product(), lo, hi),
        shape.to_vec(),
    )
}

/// Values kept away from 0 so kinks (relu, abs, leaky) are not straddled by the differences.
fn away_from_zero(seed: u64, shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let (d, s) = data(seed, shape, 0.1, 1.0);
    let mut r = Rng::new(seed + 1);
    (
        d.into_iter()
            .map(|v| {
                if r.next_u64().is_multiple_of(2) {
                    v
                } else {
                    -v
                }
            })
            .collect(),
        s,
    )
}

#[test]
fn unary_rules() {
    for op in [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Square,
        UnaryOp::Act(Activation::Relu),
        UnaryOp::Act(Activation::LeakyRelu(0.2)),
        UnaryOp::Act(Activation::Elu(1.0)),
        UnaryOp::Act(Activation::Selu),
        UnaryOp::Act(Activation::Gelu),
        UnaryOp::Act(Activation::Sigmoid),
        UnaryOp::Act(Activation::Tanh),
        UnaryOp::Act(Activation::Softplus),
        UnaryOp::Affine(2.0, 1.0),
        UnaryOp::DivScalar(3.0),
        UnaryOp::MaximumScalar(0.05),
        UnaryOp::MinimumScalar(0.05),
        // Kinks inside the gap the data leaves around zero, or outside the data's range.
        UnaryOp::Clip(-2.0, 0.05),
        UnaryOp::PowScalar(3.0),
    ] {
        check(
            &format!("{op:?}"),
            &[away_from_zero(1, &[3, 7])],
            |v| ops::unary(&v[0], op),
            1e-3,
            2e-2,
        );
    }
    for op in [
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Reciprocal,
        UnaryOp::RdivScalar(2.0),
        UnaryOp::PowScalar(2.5),
    ] {
        check(
            &format!("{op:?}"),
            &[data(2, &[5, 4], 0.5, 2.0)],
            |v| ops::unary(&v[0], op),
            1e-3,
            2e-2,
        );
    }
}

#[test]
fn binary_rules_with_broadcasting() {
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
    ] {
        for (sa, sb) in [
            (vec![3, 4], vec![3, 4]),
            (vec![2, 3, 4], vec![4]),
            (vec![3, 1], vec![1, 5]),
        ] {
            let a = data(3, &sa, 0.5, 1.5);
            let b = data(4, &sb, 0.6, 1.4);
            check(
                &format!("{op:?} {sa:?} {sb:?}"),
                &[a, b],
                |v| ops::binary(&v[0], &v[1], op),
                1e-3,
                1e-2,
            );
        }
    }
}

#[test]
fn shape_rules() {
    check(
        "reshape",
        &[data(5, &[2, 6], -1.0, 1.0)],
        |v| ops::reshape(&v[0], &[3, 4]),
        1e-2,
        1e-3,
    );
    check(
        "permute",
        &[data(6, &[2, 3, 4], -1.0, 1.0)],
        |v| ops::permute(&v[0], &[2, 0, 1]),
        1e-2,
        1e-3,
    );
    check(
        "slice",
        &[data(7, &[4, 5], -1.0, 1.0)],
        |v| ops::slice(&v[0], 1, 1, 4),
        1e-2,
        1e-3,
    );
    check(
        "concat",
        &[data(8, &[2, 3], -1.0, 1.0), data(9, &[2, 2], -1.0, 1.0)],
        |v| ops::concat(&[&v[0], &v[1]], 1),
        1e-2,
        1e-3,
    );
}

#[test]
fn reduction_and_softmax_rules() {
    check(
        "sum axis",
        &[data(10, &[3, 4, 5], -1.0, 1.0)],
        |v| ops::sum(&v[0], &[1]),
        1e-2,
        1e-3,
    );
    check(
        "sum all",
        &[data(11, &[3, 4], -1.0, 1.0)],
        |v| ops::sum(&v[0], &[]),
        1e-2,
        1e-3,
    );
    check(
        "mean axes",
        &[data(12, &[3, 4, 5], -1.0, 1.0)],
        |v| ops::mean(&v[0], &[0, 2]),
        1e-2,
        1e-3,
    );
    check(
        "softmax",
        &[data(13, &[4, 6], -2.0, 2.0)],
        |v| ops::softmax(&v[0], -1),
        1e-3,
        1e-2,
    );
    check(
        "softmax axis 0",
        &[data(14, &[4, 3], -2.0, 2.0)],
        |v| ops::softmax(&v[0], 0),
        1e-3,
        1e-2,
    );
    check(
        "log_softmax",
        &[data(15, &[4, 6], -2.0, 2.0)],
        |v| ops::log_softmax(&v[0], -1),
        1e-3,
        1e-2,
    );
}

#[test]
fn loss_rules() {
    let dev = wgrad_testkit::device();
    let labels = Tensor::from_slice(&dev, &[2u32, 0, 4, 1, 4], &[5]).unwrap();
    check(
        "sparse xent",
        &[data(16, &[5, 6], -3.0, 3.0)],
        |v| ops::sparse_softmax_cross_entropy(&v[0], &labels),
        1e-3,
        1e-2,
    );
    check(
        "mse",
        &[data(17, &[4, 3], -1.0, 1.0), data(18, &[4, 3], -1.0, 1.0)],
        |v| ops::mse(&v[0], &v[1]),
        1e-3,
        1e-2,
    );
}

#[test]
fn dense_and_matmul_rules() {
    check(
        "matmul",
        &[data(20, &[5, 7], -1.0, 1.0), data(21, &[7, 3], -1.0, 1.0)],
        |v| ops::matmul(&v[0], &v[1]),
        1e-2,
        1e-3,
    );
    check(
        "matmul batched x 2-D",
        &[
            data(22, &[2, 3, 4], -1.0, 1.0),
            data(23, &[4, 5], -1.0, 1.0),
        ],
        |v| ops::matmul(&v[0], &v[1]),
        1e-2,
        1e-3,
    );
    for act in [
        Activation::Linear,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
        Activation::Tanh,
    ] {
        // Inputs chosen so no pre-activation sits at the ReLU kink.
        check(
            &format!("dense {act:?}"),
            &[
                data(24, &[6, 5], 0.1, 1.0),
                away_from_zero(25, &[5, 4]),
                away_from_zero(26, &[4]),
            ],
            |v| ops::dense(&v[0], &v[1], Some(&v[2]), act),
            1e-3,
            2e-2,
        );
    }
}

#[test]
fn conv_rules() {
    for (opts, ws) in [
        (
            Conv2dOptions {
                padding: Padding::Same,
                ..Default::default()
            },
            [3, 3, 3, 4],
        ),
        (
            Conv2dOptions {
                stride: [2, 1],
                padding: Padding::Valid,
                dilation: [1, 2],
                groups: 2,
            },
            [2, 2, 2, 4],
        ),
    ] {
        for act in [Activation::Linear, Activation::Relu, Activation::Tanh] {
            check(
                &format!("conv2d {opts:?} {act:?}"),
                &[
                    data(30, &[2, 5, 6, ws[2] * opts.groups], -1.0, 1.0),
                    data(31, &ws, -1.0, 1.0),
                    data(32, &[4], -0.5, 0.5),
                ],
                |v| ops::conv2d(&v[0], &v[1], Some(&v[2]), act, opts),
                1e-3,
                2e-2,
            );
        }
    }
    let t = Conv2dOptions {
        stride: [2, 2],
        padding: Padding::Same,
        ..Default::default()
    };
    check(
        "conv2d_transpose",
        &[
            data(33, &[1, 3, 4, 4], -1.0, 1.0),
            data(34, &[3, 3, 2, 4], -1.0, 1.0),
            data(35, &[2], -1.0, 1.0),
        ],
        |v| ops::conv2d_transpose(&v[0], &v[1], Some(&v[2]), t, [0, 0]),
        1e-2,
        2e-3,
    );
}

#[test]
fn pooling_resize_norm_dropout_rules() {
    // Distinct values so max pooling has no ties for the differences to flip.
    let distinct: Vec<f32> = (0..2 * 6 * 6 * 3)
        .map(|i| ((i * 37) % 216) as f32 / 50.0)
        .collect();
    let x = (distinct, vec![2, 6, 6, 3]);
    check(
        "max_pool2d",
        std::slice::from_ref(&x),
        |v| ops::max_pool2d(&v[0], [3, 3], [2, 2], Padding::Same),
        1e-3,
        1e-2,
    );
    check(
        "avg_pool2d",
        std::slice::from_ref(&x),
        |v| ops::avg_pool2d(&v[0], [2, 2], [2, 2], Padding::Same),
        1e-2,
        1e-3,
    );
    check(
        "global_avg_pool2d",
        std::slice::from_ref(&x),
        |v| ops::global_avg_pool2d(&v[0]),
        1e-2,
        1e-3,
    );
    check(
        "global_max_pool2d",
        std::slice::from_ref(&x),
        |v| ops::global_max_pool2d(&v[0]),
        1e-3,
        1e-2,
    );
    for mode in [
        wgrad_tensor::Upsample::Nearest,
        wgrad_tensor::Upsample::Bilinear,
    ] {
        check(
            &format!("upsample {mode:?}"),
            &[data(40, &[1, 3, 4, 2], -1.0, 1.0)],
            |v| ops::upsample2d(&v[0], [2, 3], mode),
            1e-2,
            1e-3,
        );
    }
    check(
        "batch_norm",
        &[
            data(41, &[4, 3, 2, 3], -1.0, 2.0),
            data(42, &[3], 0.5, 1.5),
            data(43, &[3], -0.5, 0.5),
        ],
        |v| Ok(ops::batch_norm_train(&v[0], &v[1], &v[2], 1e-3)?.0),
        1e-2,
        2e-2,
    );
    check(
        "dropout",
        &[data(44, &[5, 8], -1.0, 1.0)],
        |v| ops::dropout(&v[0], 0.3, 7),
        1e-2,
        1e-3,
    );
}

#[test]
fn no_grad_detach_and_accumulation() {
    let dev = Device::new().unwrap();
    let w = Var::param(Tensor::from_slice(&dev, &[1.0f32, 2.0, 3.0], &[3]).unwrap());
    let y = graph::no_grad(|| ops::square(&w).unwrap());
    assert!(!y.requires_grad(), "no_grad records nothing");
    assert!(!ops::square(&w.detach()).unwrap().requires_grad());
    // Two backward passes over two recorded graphs add up.
    for _ in 0..2 {
        ops::sum(&ops::square(&w).unwrap(), &[])
            .unwrap()
            .backward()
            .unwrap();
    }
    assert_eq!(
        w.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![4.0, 8.0, 12.0]
    );
    w.zero_grad();
    assert!(w.grad().is_none());
    // A graph backpropagates once: its saved tensors are gone after the first pass.
    let loss = ops::sum(&ops::square(&w).unwrap(), &[]).unwrap();
    loss.backward().unwrap();
    assert!(matches!(
        loss.backward(),
        Err(wgrad_tensor::Error::InvalidArgument { .. })
    ));
    // backward() needs a scalar.
    assert!(matches!(
        ops::square(&w).unwrap().backward(),
        Err(wgrad_tensor::Error::InvalidArgument { .. })
    ));
}

/// Saved activations are released once backward has used them: after backward and dropping
/// the loss, no tensor of the step is alive, and no round trip happened inside the step.
#[test]
fn backward_releases_saved_tensors_and_stays_on_the_device() {
    let dev = Device::new().unwrap();
    let w = Var::param(Tensor::rand_normal(&dev, &[3, 3, 4, 8], 0.0, 0.2, 1).unwrap());
    let x = Var::new(Tensor::rand_uniform(&dev, &[2, 9, 9, 4], -1.0, 1.0, 2).unwrap());
    let labels = Tensor::from_slice(&dev, &[1u32, 3], &[2]).unwrap();
    dev.sync().unwrap();
    let before = dev.memory_stats().in_use;
    let c0 = dev.counters();
    {
        let h = ops::conv2d(
            &x,
            &w,
            None,
            Activation::Relu,
            Conv2dOptions {
                padding: Padding::Same,
                ..Default::default()
            },
        )
        .unwrap();
        let p = ops::global_avg_pool2d(&h).unwrap();
        let loss = ops::sparse_softmax_cross_entropy(&p, &labels).unwrap();
        loss.backward().unwrap();
    }
    let c1 = dev.counters();
    assert_eq!(
        (c1.submits, c1.readbacks, c1.uploads),
        (c0.submits, c0.readbacks, c0.uploads),
        "a step records, it never waits"
    );
    let grad = w.grad().unwrap();
    assert_eq!(grad.shape(), &[3, 3, 4, 8]);
    let after = dev.memory_stats().in_use;
    // The step's activations (h alone is 2·9·9·8 floats, 5 KiB) and every saved tensor are
    // back in the pool: what stays is the gradient's buffer (rounded up to its pool bucket).
    assert!(
        after >= before + grad.size_in_bytes() && after < before + 2 * grad.size_in_bytes(),
        "in use {after} bytes vs {before} before the step; the gradient holds {}",
        grad.size_in_bytes()
    );
}
