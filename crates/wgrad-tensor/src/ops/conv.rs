//! 2-D convolution, its two gradients, and transposed convolution (`shaders/conv.wgsl`).
//!
//! Layouts follow Keras: activations NHWC, filters HWIO `[KH, KW, C/groups, O]`. Each direction
//! is an implicit GEMM on the shared skeletons (ops/gemm.rs), so both strategies (workgroup
//! tiles on GPUs, register blocks on CPU adapters) serve all three. A 1×1, stride-1, unpadded,
//! ungrouped convolution is a plain matmul and goes there.

use std::sync::Mutex;

use super::gemm::{self, Blocking};
use super::matmul::MatmulOptions;
use super::window::{geometry_2d, AxisGeometry, Padding};
use crate::kernel::{params, shader, Block, Kernel, Spec};
use crate::Activation;
use crate::{DType, Error, Result, Tensor};

const HELPERS: &[&str] = &[
    shader!("common/activations.wgsl"),
    shader!("common/gemm.wgsl"),
];

pub static CONV2D_FORWARD: Kernel = Kernel {
    workgroup: super::gemm::WG,
    blocks: &[ConvParams::LAYOUT],
    name: "conv2d_forward",
    file: "conv.wgsl",
    source: shader!("conv.wgsl"),
    helpers: HELPERS,
    entries: &["gemm_tiled", "gemm_blocked"],
};

pub static CONV2D_BACKWARD_INPUT: Kernel = Kernel {
    workgroup: super::gemm::WG,
    blocks: &[ConvParams::LAYOUT],
    name: "conv2d_backward_input",
    file: "conv.wgsl",
    source: shader!("conv.wgsl"),
    helpers: HELPERS,
    entries: &["gemm_tiled", "gemm_blocked"],
};

pub static CONV2D_BACKWARD_FILTER: Kernel = Kernel {
    workgroup: super::gemm::WG,
    blocks: &[ConvParams::LAYOUT],
    name: "conv2d_backward_filter",
    file: "conv.wgsl",
    source: shader!("conv.wgsl"),
    helpers: HELPERS,
    entries: &["gemm_tiled", "gemm_blocked"],
};

pub static CONV2D_FILTER_TAPS: Kernel = Kernel {
    workgroup: 64,
    name: "conv2d_backward_filter_taps",
    file: "conv_filter_taps.wgsl",
    source: shader!("conv_filter_taps.wgsl"),
    helpers: &[],
    entries: &["main"],
    blocks: &[FilterTapsParams::LAYOUT],
};

params!("Params" => struct ConvParams {
    m: u32,
    n: u32,
    row0: u32,
    z0: u32,
    batch: u32,
    // Input (forward's x) extents.
    h: u32,
    w: u32,
    c: u32,
    // Output (forward's y) extents.
    oh: u32,
    ow: u32,
    o: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    // Padding before, top and left.
    pt: u32,
    pl: u32,
    // Channels per group, in and out.
    cg: u32,
    og: u32,
    // GEMM K.
    k: u32,
    // Filter gradient: K-splits per group, and K per split (a multiple of 4).
    splits: u32,
    chunk: u32,
    // act_linear's negative slope (forward write-out).
    slope: f32,
    has_bias: u32,
    // log2 of the strides when they are powers of two, else all ones (the shader divides).
    sh_log: u32,
    sw_log: u32,
    has_scale: u32,
    has_residual: u32,
});

impl gemm::GemmParams for ConvParams {
    fn set_origin(&mut self, row0: u32, z0: u32) {
        self.row0 = row0;
        self.z0 = z0;
    }
}

params!("Params" => struct FilterTapsParams {
    threads: u32,
    // Workgroups per grid row (2-D grids past 65,535 workgroups).
    row: u32,
    // N·OH output rows, and output rows per slice.
    rows: u32,
    rows_per: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    // Output channels, in units of the sums' type (O/4 when they are vec4).
    o: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,
    pl: u32,
});

/// Filters with at most this many taps per output channel (KH·KW·C, one group) take the
/// direct filter-gradient kernel instead of the implicit GEMM.
const MAX_DIRECT_TAPS: usize = 32;

/// `filter_grad` for a `kh`×`kw`×`c` filter: every tap's running sum in its own register
/// (lavapipe turns an indexed local array into memory gathers), the tap loops unrolled.
/// With `vec4`, each invocation takes four neighbouring output channels (O a multiple of 4):
/// dy and the partial sums move as vec4 and each x value serves four sums.
fn taps_spec(kh: usize, kw: usize, c: usize, vec4: bool) -> Spec {
    static CACHE: gemm::SpecCache<(usize, usize, usize, bool)> = Mutex::new(Vec::new());
    gemm::memo(&CACHE, (kh, kw, c, vec4), || taps_body(kh, kw, c, vec4))
}

fn taps_body(kh: usize, kw: usize, c: usize, vec4: bool) -> Spec {
    let taps = kh * kw * c;
    let mut f = String::from("fn filter_grad(o: u32, r0: u32, r1: u32, slice: u32) {\n");
    for t in 0..taps {
        f += &format!("    var a{t} = DYT(0.0);\n");
    }
    f += "    for (var r = r0; r < r1; r++) {\n";
    f += "        let n = r / p.oh;\n        let top = i32((r % p.oh) * p.sh) - i32(p.pt);\n";
    for i in 0..kh {
        f += &format!("        let y{i} = top + {i} * i32(p.dh);\n");
        f += &format!("        let in{i} = y{i} >= 0 && y{i} < i32(p.h);\n");
        f += &format!("        let base{i} = (n * p.h + u32(max(y{i}, 0))) * p.w;\n");
    }
    f += "        var left = -i32(p.pl);\n        var q = r * p.ow * p.o + o;\n";
    f += "        for (var col = 0u; col < p.ow; col++) {\n            let g = dy[q];\n";
    for j in 0..kw {
        f += &format!("            let x{j} = left + {j} * i32(p.dw);\n");
        f += &format!("            let ok{j} = x{j} >= 0 && x{j} < i32(p.w);\n");
    }
    for i in 0..kh {
        for j in 0..kw {
            f += &format!("            if (in{i} && ok{j}) {{\n");
            f += &format!("                let e = (base{i} + u32(x{j})) * p.c;\n");
            for ch in 0..c {
                let t = (i * kw + j) * c + ch;
                f += &format!("                a{t} += g * x[e + {ch}u];\n");
            }
            f += "            }\n";
        }
    }
    f += "            left += i32(p.sw);\n            q += p.o;\n        }\n    }\n";
    f += &format!("    let base = slice * {taps}u * p.o + o;\n");
    for t in 0..taps {
        f += &format!("    partial[base + {t}u * p.o] = a{t};\n");
    }
    f += "}";
    let ty = if vec4 { "vec4<f32>" } else { "f32" };
    Spec::new().alias("DYT", ty).line(&f)
}

/// Stride, padding, dilation and groups of a convolution (Keras defaults: 1, valid, 1, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: [usize; 2],
    pub padding: Padding,
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// What the forward convolution's write-out applies, in order: `act(acc · scale + bias +
/// residual)`. `scale` and `bias` are per output channel (`[O]`); an inference-mode batch norm
/// after the convolution folds into them as scale = γ/√(σ²+ε), bias = β − μ·scale (plus the
/// convolution's own bias times scale). `residual` has the output's shape: the skip connection
/// of a residual block, added before the activation.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvEpilogue<'a> {
    pub bias: Option<&'a Tensor>,
    pub scale: Option<&'a Tensor>,
    pub residual: Option<&'a Tensor>,
    pub activation: Activation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    BackwardInput,
    BackwardFilter,
}

impl Direction {
    fn kernel(self) -> &'static Kernel {
        match self {
            Direction::Forward => &CONV2D_FORWARD,
            Direction::BackwardInput => &CONV2D_BACKWARD_INPUT,
            Direction::BackwardFilter => &CONV2D_BACKWARD_FILTER,
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Direction::Forward => "fwd",
            Direction::BackwardInput => "bwi",
            Direction::BackwardFilter => "bwf",
        }
    }
}

/// One direction's specialisation: A/B/C element access (vec4 when channels allow) and the
/// skeleton's loaders forwarded to that direction's functions.
fn spec(dir: Direction, a_vec4: bool, b_vec4: bool, c_vec4: bool, blk: Blocking) -> Spec {
    static CACHE: gemm::SpecCache<(Direction, bool, bool, bool, Blocking)> = Mutex::new(Vec::new());
    gemm::memo(&CACHE, (dir, a_vec4, b_vec4, c_vec4, blk), || {
        let vec = |v: bool| if v { "vec4<f32>" } else { "f32" };
        let access = |name: &str, buf: &str, v: bool| {
            if v {
                format!("fn {name}_elem(e: u32) -> f32 {{ return {buf}[e / 4u][e % 4u]; }}\nfn {name}_vec(e: u32) -> vec4<f32> {{ return {buf}[e / 4u]; }}")
            } else {
                format!("fn {name}_elem(e: u32) -> f32 {{ return {buf}[e]; }}\nfn {name}_vec(e: u32) -> vec4<f32> {{ return vec4<f32>({buf}[e], {buf}[e + 1u], {buf}[e + 2u], {buf}[e + 3u]); }}")
            }
        };
        let store = if c_vec4 {
            "fn store_c(e: u32, col: u32, v: vec4<f32>) { dst[e / 4u] = v; }\nfn dst_elem(e: u32, v: f32) { dst[e / 4u][e % 4u] = v; }\nfn load_residual(e: u32, col: u32) -> vec4<f32> { return residual[e / 4u]; }"
        } else {
            "fn store_c(e: u32, col: u32, v: vec4<f32>) { for (var j = 0u; j < 4u; j++) { if (col + j < p.n) { dst[e + j] = v[j]; } } }\nfn dst_elem(e: u32, v: f32) { dst[e] = v; }\nfn load_residual(e: u32, col: u32) -> vec4<f32> { var r = vec4<f32>(0.0); for (var j = 0u; j < 4u; j++) { if (col + j < p.n) { r[j] = residual[e + j]; } } return r; }"
        };
        let d = dir.prefix();
        let krange = if dir == Direction::BackwardFilter {
            "bwf_k_range"
        } else {
            "full_k"
        };
        // K state types and their steppers: taps for A in the forward and input-gradient
        // directions, output pixels for B in the filter gradient, plain indices otherwise.
        let (ka_ty, ka, ka_next, kb_ty, kb) = match dir {
            Direction::Forward => ("TapPos", "fwd_ka", "fwd_ka_next", "u32", "index"),
            Direction::BackwardInput => ("TapPos", "bwi_ka", "bwi_ka_next", "u32", "index"),
            Direction::BackwardFilter => ("u32", "index", "index_step", "TapPos", "bwf_kb"),
        };
        Spec::new()
            .alias("T", "vec4<f32>")
            .alias("AT", vec(a_vec4))
            .alias("BT", vec(b_vec4))
            .alias("CT", vec(c_vec4))
            .bool("B_VEC4", b_vec4)
            .alias("KA", ka_ty)
            .alias("KB", kb_ty)
            .line(&access("a", "src_a", a_vec4))
            .line(&access("b", "src_b", b_vec4))
            .line(store)
            .line(&format!("fn row_info(z: u32, row: u32) -> RowInfo {{ return {d}_row_info(z, row); }}"))
            .line(&format!("fn load_a(r: RowInfo, s: KA) -> f32 {{ return {d}_load_a(r, s); }}"))
            .line(&format!("fn load_a4(r: RowInfo, s: KA) -> vec4<f32> {{ return {d}_load_a4(r, s); }}"))
            .line(&format!("fn load_b4(z: u32, s: KB, col: u32) -> vec4<f32> {{ return {d}_load_b4(z, s, col); }}"))
            .line(&format!("fn ka_start(z: u32, k: u32) -> KA {{ return {ka}_start(z, k); }}"))
            .line(&format!("fn ka_next(s: KA, step: u32) -> KA {{ return {ka_next}(s, step); }}"))
            .line(&format!("fn kb_start(z: u32, k: u32) -> KB {{ return {kb}_start(z, k); }}"))
            .line(&format!("fn kb_next(s: KB) -> KB {{ return {kb}_next(s); }}"))
            .line(&format!("fn k_range(z: u32) -> vec2<u32> {{ return {krange}(z); }}"))
            .line(&format!("fn write_out(z: u32, row: u32, col: u32, acc: vec4<f32>, e: Epi) {{ {d}_write_out(z, row, col, acc, e); }}"))
            .line(&gemm::blocked_entry(blk, a_vec4))
    })
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    // The direct filter gradient is generated per filter shape; these stand for the family.
    for (kh, kw, c) in [(1, 1, 1), (3, 3, 1), (5, 5, 1), (3, 3, 3), (2, 4, 4)] {
        for vec4 in [false, true] {
            v.push((&CONV2D_FILTER_TAPS, taps_spec(kh, kw, c, vec4)));
        }
    }
    for dir in [
        Direction::Forward,
        Direction::BackwardInput,
        Direction::BackwardFilter,
    ] {
        for a4 in [false, true] {
            for b4 in [false, true] {
                // The filter gradient stores scattered scalars, so its C is never vec4.
                for c4 in if dir == Direction::BackwardFilter {
                    vec![false]
                } else {
                    vec![false, true]
                } {
                    for blk in gemm::all_blockings() {
                        v.push((dir.kernel(), spec(dir, a4, b4, c4, blk)));
                    }
                }
            }
        }
    }
    v
}

/// Everything a launch needs about one convolution, checked.
/// Taps `first..first + kept` of an HWIO filter.
fn taps(filter: &Tensor, first: [usize; 2], kept: [usize; 2]) -> Result<Tensor> {
    let mut f = filter.clone();
    for ax in 0..2 {
        if kept[ax] != f.shape()[ax] {
            f = f.slice(ax as isize, first[ax], first[ax] + kept[ax])?;
        }
    }
    Ok(f)
}

/// A `[kh', kw', C, O]` filter gradient placed at tap `first` of a zero `[KH, KW, C, O]` one.
fn embed_taps(g: &Tensor, first: [usize; 2], kernel: [usize; 2]) -> Result<Tensor> {
    let after = |ax: usize| kernel[ax] - first[ax] - g.shape()[ax];
    g.pad(&[first[0], first[1], 0, 0], &[after(0), after(1), 0, 0])
}

#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    o: usize,
    kh: usize,
    kw: usize,
    groups: usize,
    rows: AxisGeometry,
    cols: AxisGeometry,
    opts: Conv2dOptions,
}

impl Geometry {
    fn new(
        op: &'static str,
        input: &[usize],
        filter: &[usize],
        opts: Conv2dOptions,
    ) -> Result<Geometry> {
        if input.len() != 4 {
            return Err(Error::shape(op, "input must be NHWC (rank 4)", &[input]));
        }
        if filter.len() != 4 {
            return Err(Error::shape(op, "filter must be HWIO (rank 4)", &[filter]));
        }
        let g = opts.groups;
        if g == 0 {
            return Err(Error::invalid(op, "groups must be at least 1"));
        }
        let (c, o) = (input[3], filter[3]);
        if c % g != 0 || o % g != 0 {
            return Err(Error::invalid(
                op,
                format!("{c} input and {o} output channels must both divide into {g} groups"),
            ));
        }
        if filter[2] * g != c {
            return Err(Error::shape(
                op,
                format!(
                    "filter input channels {} x {g} groups must equal the input's {c} channels",
                    filter[2]
                ),
                &[input, filter],
            ));
        }
        let [rows, cols] = geometry_2d(
            op,
            [input[1], input[2]],
            [filter[0], filter[1]],
            opts.stride,
            opts.dilation,
            opts.padding,
        )?;
        Ok(Geometry {
            n: input[0],
            h: input[1],
            w: input[2],
            c,
            oh: rows.output,
            ow: cols.output,
            o,
            kh: filter[0],
            kw: filter[1],
            groups: g,
            rows,
            cols,
            opts,
        })
    }

    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn og(&self) -> usize {
        self.o / self.groups
    }
    fn output_shape(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.o]
    }
    fn input_shape(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.c]
    }

    /// One input channel per group: the direct depthwise kernels (ops/depthwise.rs) serve it.
    fn depthwise(&self) -> Option<super::depthwise::Geometry> {
        (self.groups == self.c && self.groups > 1).then_some(super::depthwise::Geometry {
            x: self.input_shape(),
            y: self.output_shape(),
            kernel: [self.kh, self.kw],
            rows: self.rows,
            cols: self.cols,
            opts: self.opts,
        })
    }

    /// The parameter block of shaders/conv.wgsl (the write-out's scale and residual flags
    /// are the epilogue's).
    #[allow(clippy::too_many_arguments)]
    fn params(
        &self,
        m: usize,
        n: usize,
        k: usize,
        splits: usize,
        chunk: usize,
        slope: f32,
        has_bias: bool,
    ) -> ConvParams {
        let o = &self.opts;
        let u = |v: usize| v as u32;
        ConvParams {
            m: u(m),
            n: u(n),
            row0: 0,
            z0: 0,
            batch: u(self.n),
            h: u(self.h),
            w: u(self.w),
            c: u(self.c),
            oh: u(self.oh),
            ow: u(self.ow),
            o: u(self.o),
            groups: u(self.groups),
            kh: u(self.kh),
            kw: u(self.kw),
            sh: u(o.stride[0]),
            sw: u(o.stride[1]),
            dh: u(o.dilation[0]),
            dw: u(o.dilation[1]),
            pt: u(self.rows.pad_before),
            pl: u(self.cols.pad_before),
            cg: u(self.cg()),
            og: u(self.og()),
            k: u(k),
            splits: u(splits),
            chunk: u(chunk),
            slope,
            has_bias: has_bias as u32,
            sh_log: pow2_log(o.stride[0]),
            sw_log: pow2_log(o.stride[1]),
            has_scale: 0,
            has_residual: 0,
        }
    }

    /// True when the convolution is a plain [N·H·W, C] x [C, O] product.
    /// The kernel taps some output actually reads real input with, when that is fewer than
    /// all of them: `(first tap, kept taps)` per axis and the options that give the same
    /// output with only those taps (explicit padding). On feature maps smaller than the
    /// kernel's reach (ResNet's last stage at 32×32 input is 1×1: a 3×3 "same" convolution
    /// there reads only its centre tap) the dropped taps multiply padding zeros only, so
    /// im2col would spend most of the GEMM on them.
    fn trimmed(&self) -> Option<([usize; 2], [usize; 2], Conv2dOptions)> {
        if self.depthwise().is_some() || self.oh == 0 || self.ow == 0 {
            return None;
        }
        let axis = |g: &AxisGeometry, k: usize, s: usize, d: usize| {
            let live = |t: usize| {
                (g.output - 1) * s + t * d >= g.pad_before && t * d < g.pad_before + g.input
            };
            let first = (0..k).find(|&t| live(t))?;
            let last = (0..k).rev().find(|&t| live(t))?;
            let before = g.pad_before.checked_sub(first * d)?;
            let kept = last + 1 - first;
            let span = (kept - 1) * d + 1;
            let after = ((g.output - 1) * s + span).saturating_sub(g.input + before);
            ((g.input + before + after - span) / s + 1 == g.output)
                .then_some((first, kept, before, after))
        };
        let o = &self.opts;
        let r = axis(&self.rows, self.kh, o.stride[0], o.dilation[0])?;
        let c = axis(&self.cols, self.kw, o.stride[1], o.dilation[1])?;
        if r.1 == self.kh && c.1 == self.kw {
            return None;
        }
        let opts = Conv2dOptions {
            padding: Padding::Explicit {
                top: r.2,
                bottom: r.3,
                left: c.2,
                right: c.3,
            },
            ..*o
        };
        Some(([r.0, c.0], [r.1, c.1], opts))
    }

    fn is_pointwise(&self) -> bool {
        let o = &self.opts;
        self.kh == 1
            && self.kw == 1
            && o.stride == [1, 1]
            && self.groups == 1
            && self.oh == self.h
            && self.ow == self.w
    }
}

/// log2 of a power-of-two stride, else all ones (the shader then divides).
fn pow2_log(s: usize) -> u32 {
    if s.is_power_of_two() {
        s.trailing_zeros()
    } else {
        u32::MAX
    }
}

fn check_f32(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    super::same_device(op, ts)?;
    for t in ts {
        t.expect_dtype(op, DType::F32)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn launch(
    dir: Direction,
    x_a: &Tensor,
    x_b: &Tensor,
    out: &Tensor,
    epi: &ConvEpilogue<'_>,
    geo: &Geometry,
    m: usize,
    n: usize,
    k: usize,
    zs: usize,
    splits: usize,
    chunk: usize,
    slope: f32,
) -> Result<()> {
    let dev = x_a.device();
    let cg4 = geo.cg().is_multiple_of(4) && geo.c.is_multiple_of(4);
    let og4 = geo.og().is_multiple_of(4) && geo.o.is_multiple_of(4);
    let (a4, b4, c4) = match dir {
        Direction::Forward => (cg4, og4, og4),
        Direction::BackwardInput => (og4, cg4, cg4),
        Direction::BackwardFilter => (k.is_multiple_of(4) && chunk.is_multiple_of(4), cg4, false),
    };
    let blk = gemm::blocking_for(n);
    let spec = spec(dir, a4, b4, c4, blk);
    let params = ConvParams {
        has_scale: epi.scale.is_some() as u32,
        has_residual: epi.residual.is_some() as u32,
        ..geo.params(m, n, k, splits, chunk, slope, epi.bias.is_some())
    };
    let dummy = dev.dummy(0);
    let all = [
        x_a.buffer(),
        x_b.buffer(),
        out.buffer(),
        epi.bias.map_or(dummy, Tensor::buffer),
        epi.scale.map_or(dummy, Tensor::buffer),
        epi.residual.map_or(dummy, Tensor::buffer),
    ];
    // Only the forward write-out reads the residual, so only its layout has binding 6.
    let buffers = if dir == Direction::Forward {
        &all[..]
    } else {
        &all[..5]
    };
    gemm::launch(
        dev,
        dir.kernel().name,
        gemm::GemmLaunch {
            kernel: dir.kernel(),
            spec: &spec,
            blocking: blk,
            m,
            n,
            zs,
            params,
            buffers,
        },
    )
}

/// The filter gradient by [`CONV2D_FILTER_TAPS`]: `x` the forward input, `dy` the output
/// gradient, one group.
fn filter_grad_direct(
    x: &Tensor,
    dy: &Tensor,
    geo: &Geometry,
    filter_shape: [usize; 4],
) -> Result<Tensor> {
    let rows = geo.n * geo.oh;
    let vec4 = geo.o.is_multiple_of(4);
    // Invocations per slice: one per output channel, or per four.
    let units = if vec4 { geo.o / 4 } else { geo.o };
    // Enough slices for about 8,192 invocations (128 workgroups), each at least a row.
    let slices = (8192 / units.max(1)).clamp(1, rows);
    let rows_per = rows.div_ceil(slices);
    let slices = rows.div_ceil(rows_per);
    let taps = geo.kh * geo.kw * geo.c;
    let partial = Tensor::uninit(
        x.device(),
        "conv2d_backward_filter",
        &[slices, geo.kh, geo.kw, geo.c, geo.o],
        DType::F32,
    )?;
    let o = &geo.opts;
    let u = |v: usize| v as u32;
    let params = |row| FilterTapsParams {
        threads: u(slices * units),
        row,
        rows: u(rows),
        rows_per: u(rows_per),
        h: u(geo.h),
        w: u(geo.w),
        c: u(geo.c),
        oh: u(geo.oh),
        ow: u(geo.ow),
        o: u(units),
        sh: u(o.stride[0]),
        sw: u(o.stride[1]),
        dh: u(o.dilation[0]),
        dw: u(o.dilation[1]),
        pt: u(geo.rows.pad_before),
        pl: u(geo.cols.pad_before),
    };
    debug_assert_eq!(taps, filter_shape.iter().take(3).product::<usize>());
    super::launch_1d(
        x.device(),
        &CONV2D_FILTER_TAPS,
        "main",
        &taps_spec(geo.kh, geo.kw, geo.c, vec4),
        params,
        &[x.buffer(), dy.buffer(), partial.buffer()],
        (slices * units) as u64,
    )?;
    if slices == 1 {
        partial.reshape(&filter_shape)
    } else {
        partial.sum(&[0], false)
    }
}

impl Tensor {
    /// Convolution of NHWC `self` with an HWIO `filter` `[KH, KW, C/groups, O]`.
    pub fn conv2d(&self, filter: &Tensor, opts: Conv2dOptions) -> Result<Tensor> {
        self.conv2d_with(filter, None, Activation::Linear, opts)
    }

    /// `act(conv2d(self, filter) + bias)` with bias `[O]`, bias and activation fused into the
    /// kernel's write-out (identity, ReLU, leaky ReLU; others as one elementwise pass after).
    pub fn conv2d_with(
        &self,
        filter: &Tensor,
        bias: Option<&Tensor>,
        activation: Activation,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        self.conv2d_fused(
            filter,
            &ConvEpilogue {
                bias,
                activation,
                ..Default::default()
            },
            opts,
        )
    }

    /// `act(conv2d(self, filter) · scale + bias + residual)` in one kernel: see [`ConvEpilogue`].
    pub fn conv2d_fused(
        &self,
        filter: &Tensor,
        epi: &ConvEpilogue<'_>,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        let op = "conv2d";
        check_f32(op, &[self, filter])?;
        let geo = Geometry::new(op, self.shape(), filter.shape(), opts)?;
        for (name, t) in [("bias", epi.bias), ("scale", epi.scale)] {
            if let Some(t) = t {
                check_f32(op, &[self, t])?;
                if t.shape() != [geo.o] {
                    return Err(Error::shape(
                        op,
                        format!("{name} must have shape [{}]", geo.o),
                        &[t.shape()],
                    ));
                }
            }
        }
        if let Some(r) = epi.residual {
            check_f32(op, &[self, r])?;
            if r.shape() != geo.output_shape() {
                return Err(Error::shape(
                    op,
                    format!(
                        "residual must have the output's shape {:?}",
                        geo.output_shape()
                    ),
                    &[r.shape()],
                ));
            }
        }
        if let Some(d) = geo.depthwise() {
            let (b, s, r) = (epi.bias, epi.scale, epi.residual);
            return super::depthwise::forward(self, filter, b, s, r, epi.activation, &d);
        }
        if let Some((first, kept, opts)) = geo.trimmed() {
            return self.conv2d_fused(&taps(filter, first, kept)?, epi, opts);
        }
        if geo.is_pointwise() && epi.scale.is_none() && epi.residual.is_none() {
            let x = self.reshape(&[geo.n * geo.h * geo.w, geo.c])?;
            let w = filter.reshape(&[geo.c, geo.o])?;
            let o = MatmulOptions {
                bias: epi.bias,
                activation: epi.activation,
                ..Default::default()
            };
            return x.matmul_with(&w, o)?.reshape(&geo.output_shape());
        }
        let out = Tensor::uninit(self.device(), op, &geo.output_shape(), DType::F32)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        let k = geo.kh * geo.kw * geo.cg();
        let slope = epi.activation.fused_slope().unwrap_or(1.0);
        launch(
            Direction::Forward,
            self,
            filter,
            &out,
            epi,
            &geo,
            geo.n * geo.oh * geo.ow,
            geo.og(),
            k,
            geo.groups,
            1,
            k,
            slope,
        )?;
        match epi.activation.fused_slope() {
            Some(_) => Ok(out),
            None => out.activation(epi.activation),
        }
    }

    /// Gradient of a convolution with respect to its input: `self` is the gradient of the
    /// output `[N, OH, OW, O]`, `input_shape` the forward input's shape.
    pub fn conv2d_backward_input(
        &self,
        filter: &Tensor,
        input_shape: &[usize],
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        let op = "conv2d_backward_input";
        check_f32(op, &[self, filter])?;
        let geo = Geometry::new(op, input_shape, filter.shape(), opts)?;
        if self.shape() != geo.output_shape() {
            return Err(Error::shape(
                op,
                format!(
                    "gradient must have the forward output's shape {:?}",
                    geo.output_shape()
                ),
                &[self.shape(), input_shape, filter.shape()],
            ));
        }
        if let Some(d) = geo.depthwise() {
            return super::depthwise::backward_input(self, filter, &d);
        }
        if let Some((first, kept, opts)) = geo.trimmed() {
            return self.conv2d_backward_input(&taps(filter, first, kept)?, input_shape, opts);
        }
        if geo.is_pointwise() {
            let dy = self.reshape(&[geo.n * geo.h * geo.w, geo.o])?;
            let w = filter.reshape(&[geo.c, geo.o])?;
            let o = MatmulOptions {
                transpose_b: true,
                ..Default::default()
            };
            return dy.matmul_with(&w, o)?.reshape(&geo.input_shape());
        }
        let out = Tensor::uninit(self.device(), op, &geo.input_shape(), DType::F32)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        // Filter per group as [G][KH·KW·Og][Cg]: from [KH, KW, Cg, G, Og] to [G, KH, KW, Og, Cg].
        let (g, cg, og) = (geo.groups, geo.cg(), geo.og());
        let wt = filter
            .reshape(&[geo.kh, geo.kw, cg, g, og])?
            .permute(&[3, 0, 1, 4, 2])?;
        let k = geo.kh * geo.kw * og;
        launch(
            Direction::BackwardInput,
            self,
            &wt,
            &out,
            &ConvEpilogue::default(),
            &geo,
            geo.n * geo.h * geo.w,
            cg,
            k,
            g,
            1,
            k,
            1.0,
        )?;
        Ok(out)
    }

    /// Gradient of a convolution with respect to its filter: `self` is the forward input,
    /// `grad_output` the gradient of its output, `kernel` the filter's (KH, KW).
    pub fn conv2d_backward_filter(
        &self,
        grad_output: &Tensor,
        kernel: [usize; 2],
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        let op = "conv2d_backward_filter";
        check_f32(op, &[self, grad_output])?;
        if self.rank() != 4 || grad_output.rank() != 4 {
            return Err(Error::shape(
                op,
                "input and gradient must be NHWC (rank 4)",
                &[self.shape(), grad_output.shape()],
            ));
        }
        let g = opts.groups.max(1);
        let (c, o) = (self.shape()[3], grad_output.shape()[3]);
        if c % g != 0 {
            return Err(Error::invalid(
                op,
                format!("{c} input channels do not divide into {g} groups"),
            ));
        }
        let filter_shape = [kernel[0], kernel[1], c / g, o];
        let geo = Geometry::new(op, self.shape(), &filter_shape, opts)?;
        if grad_output.shape() != geo.output_shape() {
            return Err(Error::shape(
                op,
                format!(
                    "gradient must have the forward output's shape {:?}",
                    geo.output_shape()
                ),
                &[self.shape(), grad_output.shape()],
            ));
        }
        if let Some(d) = geo.depthwise() {
            return super::depthwise::backward_filter(self, grad_output, &d);
        }
        if let Some((first, kept, opts)) = geo.trimmed() {
            // Dropped taps only ever met padding: their gradient is exactly zero.
            let g = self.conv2d_backward_filter(grad_output, kept, opts)?;
            return embed_taps(&g, first, kernel);
        }
        let npq = geo.n * geo.oh * geo.ow;
        if geo.is_pointwise() {
            let x = self.reshape(&[npq, c])?;
            let dy = grad_output.reshape(&[npq, o])?;
            return x
                .matmul_with(
                    &dy,
                    MatmulOptions {
                        transpose_a: true,
                        ..Default::default()
                    },
                )?
                .reshape(&filter_shape);
        }
        if npq == 0 {
            return Tensor::zeros(self.device(), &filter_shape, DType::F32);
        }
        if g == 1 && kernel[0] * kernel[1] * c <= MAX_DIRECT_TAPS {
            return filter_grad_direct(self, grad_output, &geo, filter_shape);
        }
        let cols = geo.kh * geo.kw * geo.cg();
        let rows = geo.og();
        // The reduction over N·OH·OW is long and the output small: split it so that enough
        // workgroups run, each split at least MIN_CHUNK long, K per split a multiple of 4.
        const MIN_CHUNK: usize = 256;
        const TARGET_GROUPS: usize = 128;
        let blk = gemm::blocking_for(cols);
        let groups_per_split = match self.device().strategy() {
            crate::Strategy::Tiled => rows.div_ceil(64) * cols.div_ceil(64),
            crate::Strategy::RegisterBlocked => {
                rows.div_ceil((blk.rm * blk.wg_m) as usize)
                    * cols.div_ceil((4 * blk.vn * blk.wg_n) as usize)
            }
        } * g;
        let splits = (TARGET_GROUPS / groups_per_split.max(1))
            .clamp(1, npq.div_ceil(MIN_CHUNK).max(1))
            .max(npq.div_ceil(super::MAX_LOOP));
        let chunk = npq.div_ceil(splits).div_ceil(4) * 4;
        let splits = npq.div_ceil(chunk);
        let dyt = grad_output.reshape(&[npq, o])?.t()?;
        let partial = Tensor::uninit(
            self.device(),
            op,
            &[splits, kernel[0], kernel[1], c / g, o],
            DType::F32,
        )?;
        launch(
            Direction::BackwardFilter,
            &dyt,
            self,
            &partial,
            &ConvEpilogue::default(),
            &geo,
            rows,
            cols,
            npq,
            g * splits,
            splits,
            chunk,
            1.0,
        )?;
        if splits == 1 {
            partial.reshape(&filter_shape)
        } else {
            partial.sum(&[0], false)
        }
    }

    /// Keras `Conv2DTranspose`: `self` `[N, H, W, in]`, `filter` `[KH, KW, out, in]` (TF's
    /// layout), output `[N, OH, OW, out]` with OH = H·s for Same padding and
    /// (H-1)·s + (KH-1)·d + 1 for Valid, plus `output_padding` (each below the stride).
    pub fn conv2d_transpose(
        &self,
        filter: &Tensor,
        opts: Conv2dOptions,
        output_padding: [usize; 2],
    ) -> Result<Tensor> {
        let op = "conv2d_transpose";
        check_f32(op, &[self, filter])?;
        let out_shape =
            transpose_output_shape(op, self.shape(), filter.shape(), opts, output_padding)?;
        // The transpose of a convolution is that convolution's input gradient, with the
        // filter's in/out roles swapped: HWIO of the forward conv = [KH, KW, out, in].
        self.conv2d_backward_input(filter, &out_shape, opts)
    }

    /// Gradient of `conv2d_transpose` with respect to its input: a plain convolution of the
    /// output gradient with the same filter.
    pub fn conv2d_transpose_backward_input(
        &self,
        filter: &Tensor,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        self.conv2d(filter, opts)
    }

    /// Gradient of `conv2d_transpose` with respect to its filter `[KH, KW, out, in]`: `self` is
    /// the forward input, `grad_output` the gradient of its output.
    pub fn conv2d_transpose_backward_filter(
        &self,
        grad_output: &Tensor,
        kernel: [usize; 2],
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        grad_output.conv2d_backward_filter(self, kernel, opts)
    }
}

/// The output shape `[N, OH, OW, out]` of [`Tensor::conv2d_transpose`] for an input and a
/// `[KH, KW, out, in]` filter shape (layers use it to know their output before any data).
pub fn transpose_output_shape(
    op: &'static str,
    input: &[usize],
    filter: &[usize],
    opts: Conv2dOptions,
    output_padding: [usize; 2],
) -> Result<Vec<usize>> {
    if input.len() != 4 || filter.len() != 4 {
        return Err(Error::shape(
            op,
            "input must be NHWC and filter [KH, KW, out, in]",
            &[input, filter],
        ));
    }
    if filter[3] * opts.groups.max(1) != input[3] {
        return Err(Error::shape(
            op,
            "filter's last extent (in channels) must match the input's channels",
            &[input, filter],
        ));
    }
    let mut out = vec![input[0], 0, 0, filter[2] * opts.groups.max(1)];
    for a in 0..2 {
        let (s, d, k) = (opts.stride[a], opts.dilation[a], filter[a]);
        if s == 0 || d == 0 || k == 0 {
            return Err(Error::invalid(
                op,
                "kernel, stride and dilation must be at least 1",
            ));
        }
        if output_padding[a] >= s.max(d) {
            return Err(Error::invalid(
                op,
                format!(
                    "output_padding {} must be smaller than the stride {s} or dilation {d}",
                    output_padding[a]
                ),
            ));
        }
        let span = (k - 1) * d + 1;
        out[a + 1] = match opts.padding {
            Padding::Same => input[a + 1] * s,
            Padding::Valid => (input[a + 1] - 1) * s + span,
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => {
                let (b, e) = if a == 0 { (top, bottom) } else { (left, right) };
                ((input[a + 1] - 1) * s + span)
                    .checked_sub(b + e)
                    .ok_or_else(|| Error::invalid(op, "explicit padding exceeds the output"))?
            }
        } + output_padding[a];
    }
    Ok(out)
}
