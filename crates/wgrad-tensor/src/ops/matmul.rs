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
use crate::{DType, Error, Result, Strategy, Tensor, UnaryOp};

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

    /// The negative slope `act_linear` in `shaders/common/activations.wgsl` applies, for
    /// activations fused into a write-out; `None` for the transcendental ones, which run as
    /// an elementwise kernel after it.
    pub fn fused_slope(self) -> Option<f32> {
        match self {
            Activation::Identity => Some(1.0),
            Activation::Relu => Some(0.0),
            Activation::LeakyRelu(a) => Some(a),
            _ => None,
        }
    }

    /// The same activation as an elementwise op (`None` for identity).
    pub fn unary_op(self) -> Option<UnaryOp> {
        use Activation::*;
        Some(match self {
            Identity => return None,
            Relu => UnaryOp::Relu,
            LeakyRelu(a) => UnaryOp::LeakyRelu(a),
            Elu(a) => UnaryOp::Elu(a),
            Selu => UnaryOp::Selu,
            Gelu => UnaryOp::Gelu,
            Sigmoid => UnaryOp::Sigmoid,
            Tanh => UnaryOp::Tanh,
            Softplus => UnaryOp::Softplus,
        })
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

/// Register-block shape of `gemm_blocked`: rows per workgroup (RM), vec4 columns per invocation
/// (VN), invocations per workgroup (WG_N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Blocking {
    pub rm: u32,
    pub vn: u32,
    pub wg_n: u32,
}

/// 16 rows x 16 columns per invocation measured fastest on lavapipe (LLVM 15, AVX2) among
/// 4..32 rows x 8..32 columns. Every storage load there is a loop over the SIMD lanes, so
/// what counts is loads per FMA: a row of A costs one vec4 load per 4 k-steps and is reused
/// for VN vec4 FMAs; a B vec4 costs one load per k-step and is reused by RM rows.
const RM: u32 = 16;
const VN: u32 = 4;
/// Workgroup widths: 64 invocations when N is wide enough, fewer for narrow products so that
/// a 10-class Dense layer does not leave most lanes idle.
const WG_WIDTHS: [u32; 4] = [8, 16, 32, 64];

pub(crate) fn blocking_for(n: usize) -> Blocking {
    let invocations = n.div_ceil((4 * VN) as usize) as u32;
    let wg_n = WG_WIDTHS
        .into_iter()
        .find(|&w| w >= invocations)
        .unwrap_or(64);
    Blocking {
        rm: RM,
        vn: VN,
        wg_n,
    }
}

/// The `gemm_blocked` entry point for one register block, as straight-line WGSL over named
/// accumulators `c{i}_{j}` (row i, vec4 column j). With `a_vec4` (K a multiple of 4) the k loop
/// steps by 4 and reads each row of A as one vec4.
pub(crate) fn blocked_entry(blk: Blocking, a_vec4: bool) -> String {
    let (rm, vn) = (blk.rm, blk.vn);
    let mut s = String::new();
    let mut line = |t: String| {
        s += &t;
        s.push('\n');
    };
    line(format!("@compute @workgroup_size({}, 1, 1)", blk.wg_n));
    line("fn gemm_blocked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {".into());
    line(format!("    let row0 = p.row0 + wg.y * {rm}u;"));
    line(format!(
        "    let col0 = (wg.x * {}u + lid.x) * {}u;",
        blk.wg_n,
        4 * vn
    ));
    line("    if (col0 >= p.n) { return; }".into());
    line("    let a0 = (wg.z + p.batch0) * p.a_batch + row0 * p.k;".into());
    line("    let b0 = (wg.z + p.batch0) * p.b_batch + col0;".into());
    for i in 0..rm {
        for j in 0..vn {
            line(format!("    var c{i}_{j} = vec4<f32>(0.0);"));
        }
    }
    // One k-step: VN loads of B, then RM x VN FMAs with row i's A value `a{i}`.
    let step = |line: &mut dyn FnMut(String), k: &str, a_of: &dyn Fn(u32) -> String| {
        line(format!("        {{ let brow = b0 + ({k}) * p.n;"));
        for j in 0..vn {
            line(format!("        let b{j} = load_b(brow + {}u);", 4 * j));
        }
        for i in 0..rm {
            line(format!("        let s{i} = vec4<f32>({});", a_of(i)));
            for j in 0..vn {
                line(format!("        c{i}_{j} = fma(s{i}, b{j}, c{i}_{j});"));
            }
        }
        line("        }".into());
    };
    if a_vec4 {
        line("    let a4 = a0 / 4u;".into());
        line("    let k4 = p.k / 4u;".into());
        line("    for (var kq = 0u; kq < k4; kq++) {".into());
        for i in 0..rm {
            line(format!("        let av{i} = a[a4 + {i}u * k4 + kq];"));
        }
        for t in 0..4 {
            step(&mut line, &format!("4u * kq + {t}u"), &|i| {
                format!("av{i}[{t}]")
            });
        }
    } else {
        line("    for (var kk = 0u; kk < p.k; kk++) {".into());
        step(&mut line, "kk", &|i| format!("a[a0 + {i}u * p.k + kk]"));
    }
    line("    }".into());
    for j in 0..vn {
        line(format!("    let bias{j} = bias_at(col0 + {}u);", 4 * j));
    }
    for i in 0..rm {
        for j in 0..vn {
            line(format!(
                "    write_out(wg.z, row0 + {i}u, col0 + {}u, c{i}_{j}, bias{j});",
                4 * j
            ));
        }
    }
    line("}".into());
    s
}

/// The specialisation for operands with 4-aligned rows or not, memoised: the generated body is
/// kilobytes of text, built once per shape class rather than once per call.
pub(crate) fn spec(a_vec4: bool, b_vec4: bool, blk: Blocking) -> Spec {
    static CACHE: std::sync::Mutex<Vec<((bool, bool, Blocking), Spec)>> =
        std::sync::Mutex::new(Vec::new());
    let key = (a_vec4, b_vec4, blk);
    let mut cache = CACHE.lock().unwrap();
    if let Some((_, s)) = cache.iter().find(|(k, _)| *k == key) {
        return s.clone();
    }
    let s = build_spec(a_vec4, b_vec4, blk);
    cache.push((key, s.clone()));
    s
}

fn build_spec(a_vec4: bool, b_vec4: bool, blk: Blocking) -> Spec {
    let load_a = if a_vec4 {
        "fn load_a(e: u32) -> f32 { return a[e / 4u][e % 4u]; }"
    } else {
        "fn load_a(e: u32) -> f32 { return a[e]; }"
    };
    let load_b = if b_vec4 {
        "fn load_b(e: u32) -> vec4<f32> { return b[e / 4u]; }"
    } else {
        "fn load_b(e: u32) -> vec4<f32> { return vec4<f32>(b[e], b[e + 1u], b[e + 2u], b[e + 3u]); }"
    };
    let store_c = if b_vec4 {
        "fn store_c(e: u32, col: u32, v: vec4<f32>) { c[e / 4u] = v; }"
    } else {
        "fn store_c(e: u32, col: u32, v: vec4<f32>) { for (var j = 0u; j < 4u; j++) { if (col + j < p.n) { c[e + j] = v[j]; } } }"
    };
    let vec = |v: bool| if v { "vec4<f32>" } else { "f32" };
    Spec::new()
        .alias("T", "vec4<f32>")
        .alias("AT", vec(a_vec4))
        .alias("BT", vec(b_vec4))
        .alias("CT", vec(b_vec4))
        .line(load_a)
        .line(load_b)
        .line(store_c)
        .line(&blocked_entry(blk, a_vec4))
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for a_vec4 in [false, true] {
        for b_vec4 in [false, true] {
            for wg_n in WG_WIDTHS {
                v.push((
                    &MATMUL,
                    spec(
                        a_vec4,
                        b_vec4,
                        Blocking {
                            rm: RM,
                            vn: VN,
                            wg_n,
                        },
                    ),
                ));
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
        let blk = blocking_for(n);
        let (entry, rows_per_group, cols_per_group) = match dev.strategy() {
            Strategy::Tiled => ("gemm_tiled", 64, 64),
            Strategy::RegisterBlocked => (
                "gemm_blocked",
                blk.rm as usize,
                (4 * blk.vn * blk.wg_n) as usize,
            ),
        };
        let max = dev.limits().max_compute_workgroups_per_dimension as usize;
        let gx = n.div_ceil(cols_per_group);
        if gx > max {
            return Err(Error::invalid(
                name,
                format!("N = {n} needs more than {max} workgroups along the grid's x axis"),
            ));
        }
        let slope = o.activation.fused_slope().unwrap_or(1.0);
        let spec = spec(k.is_multiple_of(4), n.is_multiple_of(4), blk);
        let bias_buf = o.bias.map_or(dev.dummy(0), |t| t.buffer());
        let buffers = [a.buffer(), b.buffer(), out.buffer(), bias_buf];
        // Past the grid's per-axis limit, rows and batches go in several dispatches, each told
        // its first row and batch.
        let row_blocks = m.div_ceil(rows_per_group);
        for b0 in (0..batch).step_by(max) {
            for r0 in (0..row_blocks).step_by(max) {
                let nb = (batch - b0).min(max);
                let nr = (row_blocks - r0).min(max);
                let params = [
                    m as u32,
                    n as u32,
                    k as u32,
                    sa,
                    sb,
                    (m * n) as u32,
                    slope.to_bits(),
                    b0 as u32,
                    (r0 * rows_per_group) as u32,
                    o.bias.is_some() as u32,
                ];
                dev.dispatch(Dispatch {
                    kernel: &MATMUL,
                    entry,
                    spec: &spec,
                    params: &params,
                    buffers: &buffers,
                    workgroups: [gx as u32, nr as u32, nb as u32],
                });
            }
        }
        match o.activation.fused_slope() {
            Some(_) => Ok(out),
            None => out.unary(o.activation.unary_op().expect("non-identity activation")),
        }
    }

    /// `act(self + bias)` with bias broadcast over rows, for the degenerate K = 0 product.
    fn bias_act(&self, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        let x = match bias {
            Some(b) => self.add(b)?,
            None => self.clone(),
        };
        match act.unary_op() {
            Some(op) => x.unary(op),
            None => Ok(x),
        }
    }
}
