//! Matrix multiplication, 2-D and batched, with a fused bias + activation write-out
//! (`shaders/matmul.wgsl`).
//!
//! Two kernels, chosen by [`Device::strategy`](crate::Device::strategy): workgroup-memory tiles
//! for GPUs and register blocking for CPU adapters. A transposed operand is materialised by
//! the layout kernel first: that costs O(n²) against the product's O(n³) and keeps one tuned
//! inner loop per strategy.

use crate::device::Dispatch;
use crate::kernel::{shader, Kernel, Spec};
use crate::shape::{broadcast, numel};
use crate::{DType, Error, Result, Strategy, Tensor};

pub static MATMUL: Kernel = Kernel {
    name: "matmul",
    file: "matmul.wgsl",
    source: shader!("matmul.wgsl"),
    helpers: &[shader!("common/activations.wgsl")],
    entries: &["gemm_tiled", "gemm_blocked"],
};

/// The activation applied in a kernel's write-out.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Selu,
    Gelu,
    Sigmoid,
    Tanh,
    Softplus,
}

impl Activation {
    pub const ALL: [Activation; 9] = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Elu(1.0),
        Activation::Selu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softplus,
    ];

    /// The helper in `shaders/common/activations.wgsl` and its parameter.
    pub fn wgsl(self) -> (&'static str, f32) {
        use Activation::*;
        match self {
            Identity => ("identity", 0.0),
            Relu => ("relu", 0.0),
            LeakyRelu(a) => ("leaky_relu", a),
            Elu(a) => ("elu", a),
            Selu => ("selu", 0.0),
            Gelu => ("gelu", 0.0),
            Sigmoid => ("sigmoid", 0.0),
            Tanh => ("tanh", 0.0),
            Softplus => ("softplus", 0.0),
        }
    }
}

/// Options of [`Tensor::matmul_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MatmulOptions<'a> {
    pub transpose_a: bool,
    pub transpose_b: bool,
    /// Added to every row of the product; shape [N].
    pub bias: Option<&'a Tensor>,
    pub activation: Activation,
}

/// Register-block shape of `gemm_blocked`: rows per workgroup, vec4 columns per invocation,
/// invocations per workgroup. Tuned on lavapipe (see docs/kernels.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Blocking {
    pub rm: u32,
    pub vn: u32,
    pub wg_n: u32,
}

pub(crate) const BLOCKING: Blocking = Blocking {
    rm: 8,
    vn: 2,
    wg_n: 16,
};

pub(crate) fn spec(act: Activation, bias: bool, vec4_b: bool, blk: Blocking) -> Spec {
    let load_b = if vec4_b {
        "fn load_b(e: u32) -> vec4<f32> { return b[e / 4u]; }"
    } else {
        "fn load_b(e: u32) -> vec4<f32> { return vec4<f32>(b[e], b[e + 1u], b[e + 2u], b[e + 3u]); }"
    };
    Spec::new()
        .alias("T", "vec4<f32>")
        .alias("BT", if vec4_b { "vec4<f32>" } else { "f32" })
        .bool("HAS_BIAS", bias)
        .u32("RM", blk.rm)
        .u32("VN", blk.vn)
        .u32("WG_N", blk.wg_n)
        .line(load_b)
        .line(&format!(
            "fn activation(v: T, a: f32) -> T {{ return act_{}(v, a); }}",
            act.wgsl().0
        ))
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for act in Activation::ALL {
        for bias in [false, true] {
            for vec4 in [false, true] {
                v.push((&MATMUL, spec(act, bias, vec4, BLOCKING)));
            }
        }
    }
    v
}

impl Tensor {
    /// Matrix product over the last two axes, batched over the leading ones (NumPy rules:
    /// a [.., M, K] · b [.., K, N] -> [.., M, N]).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_with(rhs, MatmulOptions::default())
    }

    /// `act(op(self) · op(rhs) + bias)` in one kernel, where op transposes when asked.
    pub fn matmul_with(&self, rhs: &Tensor, o: MatmulOptions<'_>) -> Result<Tensor> {
        let name = "matmul";
        super::same_device(name, &[self, rhs])?;
        self.expect_dtype(name, DType::F32)?;
        rhs.expect_dtype(name, DType::F32)?;
        if self.rank() < 2 || rhs.rank() < 2 {
            return Err(Error::shape(
                name,
                "operands need rank >= 2",
                &[self.shape(), rhs.shape()],
            ));
        }
        let a = if o.transpose_a {
            self.t()?
        } else {
            self.clone()
        };
        let b = if o.transpose_b { rhs.t()? } else { rhs.clone() };
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
        let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                name,
                format!("inner extents differ ({k} vs {k2})"),
                &[a.shape(), b.shape()],
            ));
        }
        let batch_shape = broadcast(name, &a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
        let batch = numel(&batch_shape);
        let batch_stride = |t: &Tensor, r: usize, size: usize| -> Result<u32> {
            match numel(&t.shape()[..r - 2]) {
                x if x == batch => Ok(size as u32),
                1 => Ok(0),
                _ => Err(Error::shape(
                    name,
                    "batch axes must match or one operand must have none",
                    &[a.shape(), b.shape()],
                )),
            }
        };
        let (sa, sb) = (batch_stride(&a, ra, m * k)?, batch_stride(&b, rb, k * n)?);
        if let Some(bias) = o.bias {
            super::same_device(name, &[self, bias])?;
            bias.expect_dtype(name, DType::F32)?;
            if bias.shape() != [n] {
                return Err(Error::shape(
                    name,
                    format!("bias must have shape [{n}]"),
                    &[bias.shape()],
                ));
            }
        }
        let mut out_shape = batch_shape.clone();
        out_shape.extend([m, n]);
        let out = Tensor::uninit(self.device(), name, &out_shape, DType::F32)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        if k == 0 {
            return Tensor::zeros(self.device(), &out_shape, DType::F32)?
                .bias_act(o.bias, o.activation);
        }
        let dev = self.device();
        let blk = BLOCKING;
        let (entry, gx, gy) = match dev.strategy() {
            Strategy::Tiled => ("gemm_tiled", n.div_ceil(64), m.div_ceil(64)),
            Strategy::RegisterBlocked => (
                "gemm_blocked",
                n.div_ceil((4 * blk.vn * blk.wg_n) as usize),
                m.div_ceil(blk.rm as usize),
            ),
        };
        let max = dev.limits().max_compute_workgroups_per_dimension as usize;
        if gx > max || gy > max {
            return Err(Error::invalid(
                name,
                format!(
                    "[{m}, {k}] x [{k}, {n}] needs more than {max} workgroups along one grid axis"
                ),
            ));
        }
        let (act, alpha) = o.activation.wgsl();
        let _ = act;
        let spec = spec(o.activation, o.bias.is_some(), n % 4 == 0, blk);
        let bias_buf = o.bias.map_or(dev.dummy(0), |t| t.buffer());
        let buffers = [a.buffer(), b.buffer(), out.buffer(), bias_buf];
        // Batches past the grid's z limit go in several dispatches, offset through the
        // operands' batch strides.
        for b0 in (0..batch).step_by(max) {
            let nb = (batch - b0).min(max);
            let params = [
                m as u32,
                n as u32,
                k as u32,
                sa,
                sb,
                (m * n) as u32,
                alpha.to_bits(),
                b0 as u32,
            ];
            dev.dispatch(Dispatch {
                kernel: &MATMUL,
                entry,
                spec: &spec,
                params: &params,
                buffers: &buffers,
                workgroups: [gx as u32, gy as u32, nb as u32],
            });
        }
        Ok(out)
    }

    /// `act(self + bias)` with bias broadcast over rows, for the degenerate K = 0 product.
    fn bias_act(&self, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        let x = match bias {
            Some(b) => self.add(b)?,
            None => self.clone(),
        };
        use crate::UnaryOp as U;
        match act {
            Activation::Identity => Ok(x),
            Activation::Relu => x.unary(U::Relu),
            Activation::LeakyRelu(a) => x.unary(U::LeakyRelu(a)),
            Activation::Elu(a) => x.unary(U::Elu(a)),
            Activation::Selu => x.unary(U::Selu),
            Activation::Gelu => x.unary(U::Gelu),
            Activation::Sigmoid => x.unary(U::Sigmoid),
            Activation::Tanh => x.unary(U::Tanh),
            Activation::Softplus => x.unary(U::Softplus),
        }
    }
}
