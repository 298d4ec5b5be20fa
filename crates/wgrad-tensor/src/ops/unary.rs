//! Elementwise maps and their scalar forms (`shaders/unary.wgsl`).

use super::{launch_1d_split, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{Activation, DType, Error, Result, Tensor};

kernel!(pub static UNARY: "unary" in "unary.wgsl",
    workgroup 256,
    entries ["main", "grad_main"],
    blocks [UnaryParams], helpers ["common/activations.wgsl"]);

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
}

impl UnaryOp {
    /// Every op with sample parameters (for variant enumeration and tests).
    pub const ALL: [UnaryOp; 23] = [
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
        })
    }
}

fn spec(name: &str, vec4: bool) -> Spec {
    Spec::new()
        .alias("T", if vec4 { "vec4<f32>" } else { "f32" })
        .line(&format!("fn apply(v: T) -> T {{ return op_{name}(v); }}"))
        .line(&format!(
            "fn grad_apply(x: T, y: T, g: T) -> T {{ return d_{name}(x, y, g); }}"
        ))
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for op in UnaryOp::ALL {
        for vec4 in [false, true] {
            v.push((&UNARY, spec(op.wgsl().expect("ALL is elementwise").0, vec4)));
        }
    }
    v
}

impl Tensor {
    /// Applies an elementwise map (f32 tensors).
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        self.expect_dtype("unary", DType::F32)?;
        let (name, alpha, beta) = op.wgsl()?;
        let out = Tensor::uninit(self.device(), "unary", self.shape(), DType::F32)?;
        let n = self.numel() as u64;
        let vec4 = n.is_multiple_of(4);
        let lanes = if vec4 { n / 4 } else { n };
        let lane = if vec4 { 16 } else { 4 };
        launch_1d_split(
            self.device(),
            &UNARY,
            "main",
            &spec(name, vec4),
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
        for t in [self, x, y] {
            t.expect_dtype(name, DType::F32)?;
        }
        if x.shape() != self.shape() || y.shape() != self.shape() {
            return Err(crate::Error::shape(
                name,
                "gradient, input and output must have one shape",
                &[self.shape(), x.shape(), y.shape()],
            ));
        }
        let (fname, alpha, beta) = op.wgsl()?;
        let out = Tensor::uninit(self.device(), name, self.shape(), DType::F32)?;
        let n = self.numel() as u64;
        let vec4 = n.is_multiple_of(4);
        let lanes = if vec4 { n / 4 } else { n };
        let lane = if vec4 { 16 } else { 4 };
        let buffers = [x, &out, y, self].map(|t| Arg::Split(t.bind(), lane));
        launch_1d_split(
            self.device(),
            &UNARY,
            "grad_main",
            &spec(fname, vec4),
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
