//! Unary maps against f64 formulas, on both the vec4 path (length % 4 == 0) and the scalar path.

use crate::{close, down, up};
use wgrad_tensor::{Activation, UnaryOp};
use wgrad_testkit::grad::central_differences;
use wgrad_testkit::{activation_f64, assert_close, elu, erf, sigmoid, Rng, SELU_ALPHA, SELU_SCALE};

const LENGTHS: [usize; 6] = [1, 3, 4, 7, 1031, 4096];
fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    use UnaryOp::*;
    match op {
        Neg => -x,
        Abs => x.abs(),
        Exp => x.exp(),
        Log => x.ln(),
        Sqrt => x.sqrt(),
        Rsqrt => 1.0 / x.sqrt(),
        Square => x * x,
        Reciprocal => 1.0 / x,
        Act(a) => activation_f64(a, x),
        Affine(a, b) => a as f64 * x + b as f64,
        DivScalar(a) => x / a as f64,
        RdivScalar(a) => a as f64 / x,
        MaximumScalar(a) => x.max(a as f64),
        MinimumScalar(a) => x.min(a as f64),
        Clip(lo, hi) => x.clamp(lo as f64, hi as f64),
        // C's pow, and so Rust's powf, has NumPy's semantics: NaN for a negative base with a
        // non-integral exponent, sign from odd integral exponents, pow(x, 0) = 1.
        PowScalar(e) => x.powf(e as f64),
        NonFinite => f64::from(u8::from(!x.is_finite())),
    }
}

/// Inputs inside the op's domain: positive for log/sqrt/rsqrt, away from zero for 1/x.
fn inputs(op: UnaryOp, n: usize, rng: &mut Rng) -> Vec<f32> {
    use UnaryOp::*;
    let raw = rng.vec(n, -4.0, 4.0);
    match op {
        Log | Sqrt | Rsqrt => raw.iter().map(|x| x.abs() + 0.01).collect(),
        Reciprocal | RdivScalar(_) => raw
            .iter()
            .map(|&x| if x < 0.0 { x - 0.1 } else { x + 0.1 })
            .collect(),
        _ => raw,
    }
}

fn check(op: UnaryOp, x: &[f32], rtol: f64, atol: f64) {
    let got = down(&up(x, &[x.len()]).unary(op).unwrap());
    let want: Vec<f64> = x.iter().map(|&v| unary_ref(op, v as f64)).collect();
    close(
        &format!("{op:?}, length {}", x.len()),
        &got,
        &want,
        rtol,
        atol,
    );
}

#[test]
fn erf_reference_matches_tabulated_values() {
    // Values from Abramowitz & Stegun table 7.1 and the erfc asymptotics: both branches.
    assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
    assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-15);
    assert!((erf(2.0) - 0.995_322_265_018_952_7).abs() < 1e-15);
    assert!((1.0 - erf(3.0) - 2.209_049_699_858_544e-5).abs() < 1e-15);
    assert!((erf(-2.4) + 0.999_311_486_103_355).abs() < 1e-14);
    assert!((erf(2.6) - 0.999_763_965_583_470_2).abs() < 1e-14);
}

#[test]
fn every_unary_op_on_every_length() {
    let mut rng = Rng::new(11);
    for op in UnaryOp::ALL {
        for n in LENGTHS {
            let x = inputs(op, n, &mut rng);
            check(op, &x, 1e-5, 1e-6);
        }
    }
}

#[test]
fn unary_ops_with_other_parameters() {
    let mut rng = Rng::new(12);
    let ops = [
        UnaryOp::Act(Activation::LeakyRelu(0.01)),
        UnaryOp::Act(Activation::Elu(0.5)),
        UnaryOp::Affine(-0.5, 3.0),
        UnaryOp::DivScalar(-7.0),
        UnaryOp::RdivScalar(-2.0),
        UnaryOp::MaximumScalar(-1.0),
        UnaryOp::MinimumScalar(2.0),
        UnaryOp::Clip(-3.0, 0.25),
    ];
    for op in ops {
        for n in [5, 12] {
            let x = inputs(op, n, &mut rng);
            check(op, &x, 1e-5, 1e-6);
        }
    }
}

#[test]
fn saturating_activations_stay_finite_at_large_inputs() {
    let big = [
        -1e4f32, -100.0, -88.0, -50.0, -30.0, -20.0, -15.5, -10.0, -1e-3, 0.0, 1e-3, 10.0, 15.5,
        20.0, 30.0, 50.0, 88.0, 100.0, 1e4,
    ];
    // Odd and multiple-of-4 lengths reach the scalar and the vec4 kernel.
    for x in [&big[..], &big[..16]] {
        for op in [
            UnaryOp::Act(Activation::Sigmoid),
            UnaryOp::Act(Activation::Tanh),
            UnaryOp::Act(Activation::Softplus),
            UnaryOp::Act(Activation::Gelu),
            UnaryOp::Act(Activation::Elu(1.0)),
            UnaryOp::Act(Activation::Selu),
            UnaryOp::Act(Activation::Relu),
            UnaryOp::Act(Activation::LeakyRelu(0.2)),
        ] {
            let got = down(&up(x, &[x.len()]).unary(op).unwrap());
            assert!(
                got.iter().all(|v| v.is_finite()),
                "{op:?} of {x:?} gave {got:?}"
            );
            check(op, x, 1e-5, 1e-6);
        }
    }
}

#[test]
fn pow_scalar_follows_numpy_for_negative_bases() {
    let mut base: Vec<f32> = vec![-3.0, -2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0];
    let mut rng = Rng::new(13);
    base.extend(rng.vec(7, -3.0, 3.0));
    for e in [
        0.0f32,
        1.0,
        2.0,
        3.0,
        -1.0,
        -2.0,
        -3.0,
        7.0,
        0.5,
        2.5,
        -1.5,
        1.0 / 3.0,
    ] {
        for n in [base.len(), 16] {
            let x = &base[..n];
            let got = down(&up(x, &[n]).pow_scalar(e).unwrap());
            for (i, (&g, &b)) in got.iter().zip(x).enumerate() {
                if b < 0.0 && e.fract() != 0.0 {
                    assert!(g.is_nan(), "pow({b}, {e}) at {i}: got {g}, want NaN");
                }
                if e == 0.0 {
                    assert_eq!(g, 1.0, "pow({b}, 0)");
                }
            }
            check(UnaryOp::PowScalar(e), x, 1e-5, 1e-6);
        }
    }
    // Zero bases: pow(0, 0) = 1, pow(0, positive) = 0.
    let z = [0.0f32; 3];
    assert_eq!(down(&up(&z, &[3]).pow_scalar(0.0).unwrap()), [1.0; 3]);
    assert_eq!(down(&up(&z, &[3]).pow_scalar(2.5).unwrap()), [0.0; 3]);
    assert_eq!(down(&up(&z, &[3]).pow_scalar(3.0).unwrap()), [0.0; 3]);
}

#[test]
fn unary_keeps_the_shape() {
    let x: Vec<f32> = (0..30).map(|i| i as f32 - 15.0).collect();
    let t = up(&x, &[2, 3, 5]).relu().unwrap();
    assert_eq!(t.shape(), &[2, 3, 5]);
    let want: Vec<f64> = x.iter().map(|&v| (v as f64).max(0.0)).collect();
    assert_close(&down(&t), &want, 0.0, 0.0);
    let s = up(&[-2.5f32], &[]).abs().unwrap();
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_eq!(down(&s), [2.5]);
}

#[test]
fn named_methods_apply_their_op() {
    let mut rng = Rng::new(14);
    let x = rng.vec(7, -3.0, 3.0);
    let t = up(&x, &[7]);
    let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.5).collect();
    let p = up(&pos, &[7]);
    type Method = fn(&wgrad_tensor::Tensor) -> wgrad_tensor::Result<wgrad_tensor::Tensor>;
    type Reference = fn(f64) -> f64;
    // (name, method, reference, needs positive input)
    let cases: [(&str, Method, Reference, bool); 24] = [
        ("neg", |t| t.neg(), |v| -v, false),
        ("abs", |t| t.abs(), f64::abs, false),
        ("exp", |t| t.exp(), f64::exp, false),
        ("log", |t| t.log(), f64::ln, true),
        ("sqrt", |t| t.sqrt(), f64::sqrt, true),
        ("rsqrt", |t| t.rsqrt(), |v| 1.0 / v.sqrt(), true),
        ("square", |t| t.square(), |v| v * v, false),
        ("recip", |t| t.recip(), |v| 1.0 / v, true),
        ("relu", |t| t.relu(), |v| v.max(0.0), false),
        (
            "leaky_relu",
            |t| t.leaky_relu(0.3),
            |v| if v > 0.0 { v } else { 0.3 * v },
            false,
        ),
        ("elu", |t| t.elu(0.7), |v| elu(v, 0.7), false),
        (
            "selu",
            |t| t.selu(),
            |v| SELU_SCALE * elu(v, SELU_ALPHA),
            false,
        ),
        (
            "gelu",
            |t| t.gelu(),
            |v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
            false,
        ),
        ("sigmoid", |t| t.sigmoid(), sigmoid, false),
        ("tanh", |t| t.tanh(), f64::tanh, false),
        (
            "softplus",
            |t| t.softplus(),
            |v| v.max(0.0) + (-v.abs()).exp().ln_1p(),
            false,
        ),
        ("add_scalar", |t| t.add_scalar(1.5), |v| v + 1.5, false),
        ("sub_scalar", |t| t.sub_scalar(1.5), |v| v - 1.5, false),
        ("mul_scalar", |t| t.mul_scalar(-2.5), |v| v * -2.5, false),
        ("div_scalar", |t| t.div_scalar(4.0), |v| v / 4.0, false),
        ("pow_scalar", |t| t.pow_scalar(2.0), |v| v * v, false),
        (
            "maximum_scalar",
            |t| t.maximum_scalar(0.25),
            |v| v.max(0.25),
            false,
        ),
        (
            "minimum_scalar",
            |t| t.minimum_scalar(0.25),
            |v| v.min(0.25),
            false,
        ),
        ("clip", |t| t.clip(-1.0, 2.0), |v| v.clamp(-1.0, 2.0), false),
    ];
    for (name, method, reference, positive) in cases {
        let (input, data) = if positive { (&p, &pos) } else { (&t, &x) };
        let want: Vec<f64> = data.iter().map(|&v| reference(v as f64)).collect();
        close(name, &down(&method(input).unwrap()), &want, 1e-5, 1e-6);
    }
}

/// `Tensor::activation` for every activation (softmax along rows) against f64, and its
/// gradient against the f64 chain rule; `unary` refuses what is not an elementwise map.
#[test]
fn every_activation_and_its_gradient() {
    let mut rng = Rng::new(12);
    let (rows, n) = (5, 7);
    let x = rng.vec(rows * n, -3.0, 3.0);
    let g = rng.vec(rows * n, -1.0, 1.0);
    let (tx, tg) = (up(&x, &[rows, n]), up(&g, &[rows, n]));
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for act in Activation::ALL {
        let ty = tx.activation(act).unwrap();
        let want = wgrad_testkit::activation_rows_f64(&x64, n, act);
        assert_close(&down(&ty), &want, 1e-5, 1e-6);
        // Central differences of Σ g·act(x) in f64, per input.
        let h = 1e-5;
        let loss = |xs: &[f64]| -> f64 {
            let y = wgrad_testkit::activation_rows_f64(xs, n, act);
            y.iter().zip(&g).map(|(y, &g)| y * g as f64).sum()
        };
        let want_dx = central_differences(&x64, h, loss);
        let dx = tg.activation_backward(act, &tx, &ty).unwrap();
        assert_close(&down(&dx), &want_dx, 1e-3, 1e-4);
    }
    for act in [Activation::Linear, Activation::Softmax] {
        wgrad_testkit::is_invalid(tx.unary(UnaryOp::Act(act)));
    }
}
