//! Elementwise binary ops with NumPy broadcasting, comparisons and `where`
//! (`shaders/binary.wgsl`).

use super::{launch_1d_split, pack2x4, same_device, Arg};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::shape::{broadcast, broadcast_strides};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static BINARY: "binary" in "binary.wgsl",
    workgroup 256,
    entries ["main", "where_main"],
    blocks [BinaryParams], helpers ["common/half.wgsl"]);

params!("Params" => struct BinaryParams {
    /// Output extents, rank <= 8.
    shape: [[u32; 4]; 2],
    /// Element strides of a (0 on broadcast dimensions).
    sa: [[u32; 4]; 2],
    sb: [[u32; 4]; 2],
    /// Strides of the mask of `where`.
    sc: [[u32; 4]; 2],
    n: u32,
    /// Workgroups per grid row (the grid folds into y past 65,535).
    row: u32,
    rank: u32,
    /// The output index of this piece's first element: an output past the binding limit is
    /// computed in pieces, each binding windows of the operands of the output's shape (whose
    /// offsets then start `base` lower: `base_a`, `base_b`, `base_c`) and the whole of the
    /// broadcast ones (0).
    base: u32,
    base_a: u32,
    base_b: u32,
    base_c: u32,
    pad: u32,
});

/// A binary op on f32 tensors. Comparisons give a u32 mask of 0/1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];

    fn name(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Pow => "pow",
            Maximum => "maximum",
            Minimum => "minimum",
            Eq => "eq",
            Ne => "ne",
            Lt => "lt",
            Le => "le",
            Gt => "gt",
            Ge => "ge",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

fn spec(op: BinaryOp, vec4: bool, bcast: bool) -> Spec {
    spec_stored(op, vec4, bcast, false)
}

/// `half`: same-shape arithmetic on packed halves, four per invocation (so `vec4` too).
fn spec_stored(op: BinaryOp, vec4: bool, bcast: bool, half: bool) -> Spec {
    let (t, m) = if vec4 {
        ("vec4<f32>", "vec4<u32>")
    } else {
        ("f32", "u32")
    };
    let o = if op.is_comparison() { m } else { t };
    let (ld, sto) = if half {
        (
            "fn ld(v: S) -> T { return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)); }",
            "fn sto(v: O) -> OS { return vec2<u32>(pack_halves(v.xy), pack_halves(v.zw)); }",
        )
    } else {
        (
            "fn ld(v: S) -> T { return v; }",
            "fn sto(v: O) -> OS { return v; }",
        )
    };
    Spec::new()
        .alias("T", t)
        .alias("M", m)
        .alias("O", o)
        .alias("S", if half { "vec2<u32>" } else { t })
        .alias("OS", if half { "vec2<u32>" } else { o })
        .line(ld)
        .line(sto)
        .bool("BCAST", bcast)
        .line(&format!(
            "fn apply(x: T, y: T) -> O {{ return op_{}(x, y); }}",
            op.name()
        ))
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for op in BinaryOp::ALL {
        v.push((&BINARY, spec(op, false, true)));
        v.push((&BINARY, spec(op, false, false)));
        v.push((&BINARY, spec(op, true, false)));
        if !op.is_comparison() {
            v.push((&BINARY, spec_stored(op, true, false, true)));
        }
    }
    v
}

/// The block of a broadcasting launch (its `row` is set at launch).
fn broadcast_params(out: &[usize], [sa, sb, sc]: [&[usize]; 3]) -> BinaryParams {
    BinaryParams {
        shape: pack2x4(out),
        sa: pack2x4(sa),
        sb: pack2x4(sb),
        sc: pack2x4(sc),
        n: crate::shape::numel(out) as u32,
        rank: out.len() as u32,
        ..Default::default()
    }
}

/// How a broadcasting launch binds an operand: in windows when it has the output's shape,
/// whole otherwise (a bias, a scalar).
fn operand<'a>(t: &'a Tensor, out: &[usize]) -> Arg<'a> {
    if t.shape() == out {
        Arg::Split(t.bind(), 4)
    } else {
        Arg::Whole(t.bind())
    }
}

/// The block of one piece of a broadcasting launch.
fn piece(p: BinaryParams, args: &[Arg<'_>], row: u32, first: u64, n: u64) -> BinaryParams {
    let base = |i: usize| match args[i] {
        Arg::Split(..) => first as u32,
        Arg::Whole(_) => 0,
    };
    BinaryParams {
        row,
        n: n as u32,
        base: first as u32,
        base_a: base(0),
        base_b: base(1),
        base_c: args.get(3).map_or(0, |_| base(3)),
        ..p
    }
}

impl Tensor {
    /// `op(self, rhs)` with NumPy broadcasting.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let name = "binary";
        same_device(name, &[self, rhs])?;
        let half = !op.is_comparison()
            && self.shape() == rhs.shape()
            && [self, rhs]
                .iter()
                .all(|t| t.dtype() == DType::F16 && t.numel().is_multiple_of(4));
        if half {
            return self.binary_packed(rhs, op);
        }
        if let Some(y) = super::cast::via_f32(&[self, rhs], |t| t[0].binary(&t[1], op))? {
            return Ok(y);
        }
        self.expect_dtype(name, DType::F32)?;
        rhs.expect_dtype(name, DType::F32)?;
        let shape = broadcast(name, self.shape(), rhs.shape())?;
        let dtype = if op.is_comparison() {
            DType::U32
        } else {
            DType::F32
        };
        let out = Tensor::uninit(self.device(), name, &shape, dtype)?;
        let n = out.numel() as u64;
        let same = self.shape() == rhs.shape();
        let vec4 = same && n.is_multiple_of(4);
        let p = if same {
            BinaryParams {
                n: if vec4 { n / 4 } else { n } as u32,
                ..Default::default()
            }
        } else {
            let sa = broadcast_strides(self.shape(), &shape);
            let sb = broadcast_strides(rhs.shape(), &shape);
            broadcast_params(&shape, [&sa, &sb, &[]])
        };
        let lanes = p.n as u64;
        let lane = if vec4 { 16 } else { 4 };
        let args = if same {
            [self, rhs, &out].map(|t| Arg::Split(t.bind(), lane))
        } else {
            [
                operand(self, &shape),
                operand(rhs, &shape),
                Arg::Split(out.bind(), 4),
            ]
        };
        launch_1d_split(
            self.device(),
            &BINARY,
            "main",
            &spec(op, vec4, !same),
            |row, first, n| piece(p, &args, row, first, n),
            &args,
            lanes,
        )?;
        Ok(out)
    }

    /// Same-shape arithmetic on f16 storage read and written as packed halves.
    fn binary_packed(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let out = Tensor::uninit(self.device(), "binary", self.shape(), DType::F16)?;
        let p = BinaryParams {
            n: (out.numel() / 4) as u32,
            ..Default::default()
        };
        // Four halves, two words, per invocation.
        let args = [self, rhs, &out].map(|t| Arg::Split(t.bind(), 8));
        launch_1d_split(
            self.device(),
            &BINARY,
            "main",
            &spec_stored(op, true, false, true),
            |row, first, n| piece(p, &args, row, first, n),
            &args,
            p.n as u64,
        )?;
        Ok(out)
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    pub fn pow(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Pow)
    }
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Eq)
    }
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Ne)
    }
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Lt)
    }
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Le)
    }
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Gt)
    }
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Ge)
    }

    /// Picks `on_true` where the u32 mask `self` is non-zero, else `on_false`; all three
    /// broadcast together.
    pub fn where_(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let name = "where";
        same_device(name, &[self, on_true, on_false])?;
        if self.dtype() != DType::U32 {
            return Err(Error::Dtype {
                op: name,
                expected: "u32 (a mask from a comparison)".into(),
                got: self.dtype(),
            });
        }
        if let Some(y) =
            super::cast::via_f32(&[on_true, on_false], |t| self.where_(&t[0], &t[1]))?
        {
            return Ok(y);
        }
        on_true.expect_dtype(name, DType::F32)?;
        on_false.expect_dtype(name, DType::F32)?;
        let shape = broadcast(
            name,
            &broadcast(name, self.shape(), on_true.shape())?,
            on_false.shape(),
        )?;
        let out = Tensor::uninit(self.device(), name, &shape, DType::F32)?;
        let sa = broadcast_strides(on_true.shape(), &shape);
        let sb = broadcast_strides(on_false.shape(), &shape);
        let sc = broadcast_strides(self.shape(), &shape);
        let p = broadcast_params(&shape, [&sa, &sb, &sc]);
        let args = [
            operand(on_true, &shape),
            operand(on_false, &shape),
            Arg::Split(out.bind(), 4),
            operand(self, &shape),
        ];
        let spec = spec(BinaryOp::Add, false, true);
        launch_1d_split(
            self.device(),
            &BINARY,
            "where_main",
            &spec,
            |row, first, n| piece(p, &args, row, first, n),
            &args,
            out.numel() as u64,
        )?;
        Ok(out)
    }
}
