//! Elementwise maps and their scalar forms (`shaders/unary.wgsl`).

use super::{launch_1d_split, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{Activation, DType, Error, Result, Tensor};

kernel!(pub static UNARY: "unary" in "unary.wgsl",
    workgroup 256,
    entries ["main", "grad_main"],
    blocks [UnaryParams], helpers ["common/activations.wgsl", "common/half.wgsl"]);

params!("Params" => struct UnaryParams {
    /// Elements of `T` (f32 or vec4<f32>).
    n: u32,
    /// Workgroups per grid row (the grid folds into y past 65,535).
    row: u32,
    alpha: f32,
    beta: f32,
});

/// An elementwise f32 map. Parameters ride in the op: `Act(LeakyRelu(slope))`, `Affine(a, b)` is
/// `a * x + b`, `Clip(lo, hi)`...
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Square,
    Reciprocal,
    /// An elementwise activation (not the identity or softmax: see [`Tensor::activation`]).
    Act(Activation),
    Affine(f32, f32),
    DivScalar(f32),
    RdivScalar(f32),
    MaximumScalar(f32),
    MinimumScalar(f32),
    Clip(f32, f32),
    PowScalar(f32),
    /// 1 where the value is ±inf or NaN, else 0 (from the bits, so a fast-math compiler
    /// cannot assume it away): how dynamic loss scaling finds an overflowed gradient.
    NonFinite,
}

impl UnaryOp {
    /// Every op with sample parameters (for variant enumeration and tests).
    pub const ALL: [UnaryOp; 24] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Square,
        UnaryOp::Reciprocal,
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
        UnaryOp::RdivScalar(3.0),
        UnaryOp::MaximumScalar(0.5),
        UnaryOp::MinimumScalar(0.5),
        UnaryOp::Clip(-0.5, 0.5),
        UnaryOp::PowScalar(3.0),
        UnaryOp::NonFinite,
    ];

    /// The WGSL function (`op_<name>`) and its two parameters.
    fn wgsl(self) -> Result<(&'static str, f32, f32)> {
        use UnaryOp::*;
        Ok(match self {
            Neg => ("neg", 0.0, 0.0),
            Abs => ("abs", 0.0, 0.0),
            Exp => ("exp", 0.0, 0.0),
            Log => ("log", 0.0, 0.0),
            Sqrt => ("sqrt", 0.0, 0.0),
            Rsqrt => ("rsqrt", 0.0, 0.0),
            Square => ("square", 0.0, 0.0),
            Reciprocal => ("reciprocal", 0.0, 0.0),
            Act(a) => match a.wgsl() {
                Some((name, alpha)) => (name, alpha, 0.0),
                None => {
                    return Err(Error::invalid(
                        "unary",
                        format!(
                            "{} is not an elementwise map: use Tensor::activation",
                            a.name()
                        ),
                    ))
                }
            },
            Affine(a, b) => ("affine", a, b),
            DivScalar(a) => ("div_scalar", a, 0.0),
            RdivScalar(a) => ("rdiv_scalar", a, 0.0),
            MaximumScalar(a) => ("maximum_scalar", a, 0.0),
            MinimumScalar(a) => ("minimum_scalar", a, 0.0),
            Clip(a, b) => ("clip", a, b),
            PowScalar(a) => ("pow_scalar", a, 0.0),
            NonFinite => ("non_finite", 0.0, 0.0),
        })
    }
}

/// Four f32 lanes stored as four packed halves.
const HALF4: [&str; 2] = [
    "fn ld(v: S) -> T { return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)); }",
    "fn st(v: T) -> S { return vec2<u32>(pack_halves(v.xy), pack_halves(v.zw)); }",
];
const PLAIN: [&str; 2] = [
    "fn ld(v: S) -> T { return v; }",
    "fn st(v: T) -> S { return v; }",
];

fn spec(name: &str, vec4: bool) -> Spec {
    spec_stored(name, vec4, false)
}

/// `half`: f16 storage, four elements per invocation (so `vec4` too).
fn spec_stored(name: &str, vec4: bool, half: bool) -> Spec {
    let t = if vec4 { "vec4<f32>" } else { "f32" };
    let [ld, st] = if half { HALF4 } else { PLAIN };
    Spec::new()
        .alias("T", t)
        .alias("S", if half { "vec2<u32>" } else { t })
        .line(ld)
        .line(st)
        .alias("U", if vec4 { "vec4<u32>" } else { "u32" })
        .line(&format!("fn apply(v: T) -> T {{ return op_{name}(v); }}"))
        .line(&format!(
            "fn grad_apply(x: T, y: T, g: T) -> T {{ return d_{name}(x, y, g); }}"
        ))
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for op in UnaryOp::ALL {
        let name = op.wgsl().expect("ALL is elementwise").0;
        for vec4 in [false, true] {
            v.push((&UNARY, spec(name, vec4)));
        }
        v.push((&UNARY, spec_stored(name, true, true)));
    }
    v
}

impl Tensor {
    /// Applies an elementwise map (f32 tensors).
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let half = native_half(&[self]);
        if !half {
            if let Some(y) = super::cast::via_f32(&[self], |t| t[0].unary(op))? {
                return Ok(y);
            }
            self.expect_dtype("unary", DType::F32)?;
        }
        let (name, alpha, beta) = op.wgsl()?;
        let out = Tensor::uninit(self.device(), "unary", self.shape(), self.dtype())?;
        let n = self.numel() as u64;
        let vec4 = n.is_multiple_of(4);
        let lanes = if vec4 { n / 4 } else { n };
        let lane = match (half, vec4) {
            (true, _) => 8,
            (false, true) => 16,
            (false, false) => 4,
        };
        launch_1d_split(
            self.device(),
            &UNARY,
            "main",
            &spec_stored(name, vec4, half),
            |row, _, lanes| UnaryParams {
                n: lanes as u32,
                row,
                alpha,
                beta,
            },
            &[Arg::Split(self.bind(), lane), Arg::Split(out.bind(), lane)],
            lanes,
        )?;
        Ok(out)
    }

    /// Gradient of `op` at input `x` with forward output `y` (`x.unary(op)`), given the output
    /// gradient `self`: one kernel, `self · op'(x)`.
    pub fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let name = "unary_backward";
        super::same_device(name, &[self, x, y])?;
        let half = native_half(&[self, x, y]);
        if !half {
            if let Some(dx) =
                super::cast::via_f32(&[self, x, y], |t| t[0].unary_backward(op, &t[1], &t[2]))?
            {
                return Ok(dx);
            }
            for t in [self, x, y] {
                t.expect_dtype(name, DType::F32)?;
            }
        }
        if x.shape() != self.shape() || y.shape() != self.shape() {
            return Err(crate::Error::shape(
                name,
                "gradient, input and output must have one shape",
                &[self.shape(), x.shape(), y.shape()],
            ));
        }
        let (fname, alpha, beta) = op.wgsl()?;
        let out = Tensor::uninit(self.device(), name, self.shape(), self.dtype())?;
        let n = self.numel() as u64;
        let vec4 = n.is_multiple_of(4);
        let lanes = if vec4 { n / 4 } else { n };
        let lane = match (half, vec4) {
            (true, _) => 8,
            (false, true) => 16,
            (false, false) => 4,
        };
        let buffers = [x, &out, y, self].map(|t| Arg::Split(t.bind(), lane));
        launch_1d_split(
            self.device(),
            &UNARY,
            "grad_main",
            &spec_stored(fname, vec4, half),
            |row, _, lanes| UnaryParams {
                n: lanes as u32,
                row,
                alpha,
                beta,
            },
            &buffers,
            lanes,
        )?;
        Ok(out)
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Rsqrt)
    }
    pub fn square(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Square)
    }
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Reciprocal)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Relu))
    }
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::LeakyRelu(slope)))
    }
    pub fn elu(&self, alpha: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Elu(alpha)))
    }
    pub fn selu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Selu))
    }
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Gelu))
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Sigmoid))
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Tanh))
    }
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Act(Activation::Softplus))
    }
    pub fn add_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Affine(1.0, s))
    }
    pub fn sub_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Affine(1.0, -s))
    }
    pub fn mul_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Affine(s, 0.0))
    }
    pub fn div_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::DivScalar(s))
    }
    pub fn pow_scalar(&self, e: f32) -> Result<Tensor> {
        self.unary(UnaryOp::PowScalar(e))
    }
    pub fn maximum_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::MaximumScalar(s))
    }
    pub fn minimum_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::MinimumScalar(s))
    }
    pub fn clip(&self, lo: f32, hi: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Clip(lo, hi))
    }
}

/// Whether the elementwise kernels read and write these operands as packed halves
/// themselves: all f16, and a length of whole vec4s (four halves = two words per lane).
fn native_half(operands: &[&Tensor]) -> bool {
    operands
        .iter()
        .all(|t| t.dtype() == DType::F16 && t.numel().is_multiple_of(4))
}
