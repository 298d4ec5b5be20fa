//! 2-D convolution, its two gradients, and transposed convolution (`shaders/conv.wgsl`).
//!
//! Layouts follow Keras: activations NHWC, filters HWIO `[KH, KW, C/groups, O]`. Each direction
//! is an implicit GEMM on the shared skeletons (ops/gemm.rs), so both strategies (workgroup
//! tiles on GPUs, register blocks on CPU adapters) serve all three. A 1×1, stride-1, unpadded,
//! ungrouped convolution is a plain matmul and goes there.

mod codegen;
mod geometry;

use super::gemm;
use super::matmul::MatmulOptions;
use super::window::Padding;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::Activation;
use crate::{DType, Error, Result, Strategy, Tensor};
use codegen::{
    forward_taps_groups, forward_taps_spec, slides, spec, taps_spec, Direction, MAX_DIRECT_TAPS,
};
use geometry::{embed_taps, taps, Geometry};

kernel!(pub static CONV2D_FORWARD: "conv2d_forward" in "conv.wgsl",
    workgroup super::gemm::WG,
    entries ["gemm_tiled", "gemm_blocked"],
    blocks [ConvParams], helpers ["common/activations.wgsl", "common/gemm.wgsl"]);

kernel!(pub static CONV2D_BACKWARD_INPUT: "conv2d_backward_input" in "conv.wgsl",
    workgroup super::gemm::WG,
    entries ["gemm_tiled", "gemm_blocked"],
    blocks [ConvParams], helpers ["common/activations.wgsl", "common/gemm.wgsl"]);

kernel!(pub static CONV2D_BACKWARD_FILTER: "conv2d_backward_filter" in "conv.wgsl",
    workgroup super::gemm::WG,
    entries ["gemm_tiled", "gemm_blocked"],
    blocks [ConvParams], helpers ["common/activations.wgsl", "common/gemm.wgsl"]);

kernel!(pub static CONV2D_FILTER_TAPS: "conv2d_backward_filter_taps"
    in "conv_filter_taps.wgsl", workgroup 64,
    entries ["main"],
    blocks [FilterTapsParams]);

kernel!(pub static CONV2D_FORWARD_TAPS: "conv2d_forward_taps"
    in "conv_forward_taps.wgsl", workgroup 64,
    entries ["main"],
    blocks [ForwardTapsParams]);

params!("Params" => struct ForwardTapsParams {
    threads: u32,
    row: u32,
    /// Channel groups of four per invocation.
    groups: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    /// Output channels / 4.
    o: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,
    pl: u32,
    has_bias: u32,
    /// Negative slope of the fused activation: 1 linear, 0 ReLU.
    slope: f32,
});

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
    // log2 of `gemm_blocked`'s workgroup width along N (set by the launcher).
    wg_log: u32,
});

impl gemm::GemmParams for ConvParams {
    fn set_origin(&mut self, row0: u32, z0: u32) {
        self.row0 = row0;
        self.z0 = z0;
    }
    fn set_wg_log(&mut self, wg_log: u32) {
        self.wg_log = wg_log;
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

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    // The direct filter gradient is generated per filter shape; these stand for the family.
    for (kh, kw, c) in [(1, 1, 1), (3, 3, 1), (5, 5, 1), (3, 3, 3), (2, 4, 4)] {
        for vec4 in [false, true] {
            for bias in [false, true] {
                for slide in [false, slides(kw, 1, 1)] {
                    v.push((&CONV2D_FILTER_TAPS, taps_spec(kh, kw, c, vec4, bias, slide)));
                }
            }
        }
        for groups in [1, 2, 4] {
            for slide in [false, slides(kw, 1, 1)] {
                v.push((
                    &CONV2D_FORWARD_TAPS,
                    forward_taps_spec(kh, kw, c, groups, slide),
                ));
            }
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

fn check_f32(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    super::same_device(op, ts)?;
    for t in ts {
        t.expect_dtype(op, DType::F32)?;
    }
    Ok(())
}

/// The implicit GEMM a convolution direction runs: an `m`×`n` output over `k`, `zs`
/// independent problems (groups, times splits of K for the filter gradient), each split
/// `chunk` long.
#[derive(Clone, Copy, Debug)]
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    zs: usize,
    splits: usize,
    chunk: usize,
}

/// One direction's implicit GEMM: `x_a`·`x_b` into `out` (the roles of x, filter and dy per
/// direction), `epi` applied in the write-out with the fused activation's `slope`.
fn launch(
    dir: Direction,
    [x_a, x_b, out]: [&Tensor; 3],
    epi: &ConvEpilogue<'_>,
    geo: &Geometry,
    p: Problem,
    slope: f32,
) -> Result<()> {
    let Problem {
        m,
        n,
        k,
        zs,
        splits,
        chunk,
    } = p;
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
        x_a.bind(),
        x_b.bind(),
        out.bind(),
        epi.bias.map_or(dummy, Tensor::bind),
        epi.scale.map_or(dummy, Tensor::bind),
        epi.residual.map_or(dummy, Tensor::bind),
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

/// How many zero channels to pad the input (and the filter) with to a multiple of 4, when the
/// register-blocked GEMM would otherwise read A as scalars (an RGB stem, 7×7×3): the padded
/// layer reads vec4s and shares its pipelines with every other layer's, where a 3-channel
/// one needs its own forward and filter-gradient variants, each 2–3 s of LLVM time on
/// lavapipe's first dispatch (two of the five of a ResNet-34 step). The zeros add exact
/// zeros, in the same order. 0 when nothing is to gain: for a small product the two padding
/// dispatches cost more than a variant of its own.
fn channel_padding(x: &Tensor, geo: &Geometry) -> usize {
    let macs = geo.n * geo.oh * geo.ow * geo.o * geo.kh * geo.kw * geo.c;
    if geo.groups != 1
        || macs <= gemm::SMALL_MACS
        || x.device().strategy() != crate::Strategy::RegisterBlocked
    {
        return 0;
    }
    geo.c.next_multiple_of(4) - geo.c
}

/// The forward convolution by [`CONV2D_FORWARD_TAPS`] when it applies: one group, few taps,
/// C not a multiple of 4 (so the implicit GEMM would read K in scalars), O a multiple of 4, a
/// bias and a fused activation at most. `None` otherwise.
fn forward_direct(
    x: &Tensor,
    filter: &Tensor,
    epi: &ConvEpilogue<'_>,
    geo: &Geometry,
) -> Result<Option<Tensor>> {
    let taps = geo.kh * geo.kw * geo.c;
    let slope = epi.activation.fused_slope();
    let fits = geo.groups == 1
        && taps <= MAX_DIRECT_TAPS
        && !geo.c.is_multiple_of(4)
        && geo.o.is_multiple_of(4)
        && epi.scale.is_none()
        && epi.residual.is_none()
        && slope.is_some();
    if !fits {
        return Ok(None);
    }
    let out = Tensor::uninit(x.device(), "conv2d", &geo.output_shape(), DType::F32)?;
    if out.numel() == 0 {
        return Ok(Some(out));
    }
    let rows = geo.n * geo.oh;
    let units = geo.o / 4;
    let groups = forward_taps_groups(taps, units);
    let threads = rows * units / groups;
    let o = &geo.opts;
    let u = |v: usize| v as u32;
    let params = |row| ForwardTapsParams {
        threads: u(threads),
        groups: u(groups),
        row,
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
        has_bias: u(usize::from(epi.bias.is_some())),
        slope: slope.unwrap_or(1.0),
    };
    // Without a bias the filter stands in for the binding the kernel never reads.
    let bias = epi.bias.unwrap_or(filter);
    super::launch_1d(
        x.device(),
        &CONV2D_FORWARD_TAPS,
        "main",
        &forward_taps_spec(
            geo.kh,
            geo.kw,
            geo.c,
            groups,
            slides(geo.kw, o.stride[1], o.dilation[1]),
        ),
        params,
        &[x.bind(), filter.bind(), bias.bind(), out.bind()],
        threads as u64,
    )?;
    Ok(Some(out))
}

/// The filter gradient by [`CONV2D_FILTER_TAPS`]: `x` the forward input, `dy` the output
/// gradient, one group; with `bias`, also the bias gradient (Σ dy per channel) from the same
/// pass over dy.
fn filter_grad_direct(
    x: &Tensor,
    dy: &Tensor,
    geo: &Geometry,
    filter_shape: [usize; 4],
    bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let rows = geo.n * geo.oh;
    let vec4 = geo.o.is_multiple_of(4);
    // Invocations per slice: one per output channel, or per four.
    let units = if vec4 { geo.o / 4 } else { geo.o };
    // Enough slices for about 8,192 invocations (128 workgroups), each at least a row.
    let slices = (8192 / units.max(1)).clamp(1, rows);
    let rows_per = rows.div_ceil(slices);
    let slices = rows.div_ceil(rows_per);
    let taps = geo.kh * geo.kw * geo.c;
    let rows_out = taps + bias as usize;
    let partial = Tensor::uninit(
        x.device(),
        "conv2d_backward_filter",
        &[slices, rows_out, geo.o],
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
        &taps_spec(
            geo.kh,
            geo.kw,
            geo.c,
            vec4,
            bias,
            slides(geo.kw, o.stride[1], o.dilation[1]),
        ),
        params,
        &[x.bind(), dy.bind(), partial.bind()],
        (slices * units) as u64,
    )?;
    let sums = if slices == 1 {
        partial.reshape(&[rows_out, geo.o])?
    } else {
        partial.sum(&[0], false)?
    };
    if !bias {
        return Ok((sums.reshape(&filter_shape)?, None));
    }
    Ok((
        sums.slice(0, 0, taps)?.reshape(&filter_shape)?,
        Some(sums.slice(0, taps, rows_out)?.reshape(&[geo.o])?),
    ))
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
        let mut operands = vec![self, filter];
        operands.extend([epi.bias, epi.scale, epi.residual].into_iter().flatten());
        if super::cast::any_half(&operands) {
            let w = |t: Option<&Tensor>| t.map(Tensor::widened).transpose();
            let (bias, scale, residual) = (w(epi.bias)?, w(epi.scale)?, w(epi.residual)?);
            let wide = ConvEpilogue {
                bias: bias.as_ref(),
                scale: scale.as_ref(),
                residual: residual.as_ref(),
                activation: epi.activation,
            };
            let y = self
                .widened()?
                .conv2d_fused(&filter.widened()?, &wide, opts)?;
            return y.narrowed();
        }
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
        if let Some(y) = forward_direct(self, filter, epi, &geo)? {
            return Ok(y);
        }
        if geo.is_pointwise() && epi.scale.is_none() && epi.residual.is_none() && !shares_pipelines(self) {
            let x = self.reshape(&[geo.n * geo.h * geo.w, geo.c])?;
            let w = filter.reshape(&[geo.c, geo.o])?;
            let o = MatmulOptions {
                bias: epi.bias,
                activation: epi.activation,
                ..Default::default()
            };
            return x.matmul_with(&w, o)?.reshape(&geo.output_shape());
        }
        let extra = channel_padding(self, &geo);
        if extra > 0 {
            let x4 = self.pad(&[0, 0, 0, 0], &[0, 0, 0, extra])?;
            let f4 = filter.pad(&[0, 0, 0, 0], &[0, 0, extra, 0])?;
            return x4.conv2d_fused(&f4, epi, opts);
        }
        let out = Tensor::uninit(self.device(), op, &geo.output_shape(), DType::F32)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        let k = geo.kh * geo.kw * geo.cg();
        let slope = epi.activation.fused_slope().unwrap_or(1.0);
        let p = Problem {
            m: geo.n * geo.oh * geo.ow,
            n: geo.og(),
            k,
            zs: geo.groups,
            splits: 1,
            chunk: k,
        };
        launch(Direction::Forward, [self, filter, &out], epi, &geo, p, slope)?;
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
        if let Some(dx) = super::cast::via_f32(&[self, filter], |t| {
            t[0].conv2d_backward_input(&t[1], input_shape, opts)
        })? {
            return Ok(dx);
        }
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
        if geo.opts.stride != [1, 1] && geo.opts.dilation == [1, 1] && geo.groups == 1 {
            return backward_input_by_phase(self, filter, &geo);
        }
        if let Some(dx) = backward_input_as_forward(self, filter, &geo)? {
            return Ok(dx);
        }
        if geo.is_pointwise() && !shares_pipelines(self) {
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
        let p = Problem {
            m: geo.n * geo.h * geo.w,
            n: cg,
            k,
            zs: g,
            splits: 1,
            chunk: k,
        };
        let none = ConvEpilogue::default();
        launch(Direction::BackwardInput, [self, &wt, &out], &none, &geo, p, 1.0)?;
        Ok(out)
    }

    /// Gradient of a convolution with respect to its filter: `self` is the forward input `x`,
    /// `dy` the gradient of its output, `kernel` the filter's (KH, KW). (Input gradients are
    /// methods of `dy`, as in every family: `dy.conv2d_backward_input(filter, …)`.)
    pub fn conv2d_backward_filter(
        &self,
        dy: &Tensor,
        kernel: [usize; 2],
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        Ok(self.filter_grad(dy, kernel, opts, false)?.0)
    }

    /// [`Tensor::conv2d_backward_filter`] and the bias gradient (`dy` summed over N, H, W),
    /// the pair a convolution with a bias needs: from one pass over `dy` where the filter
    /// has few taps (a first layer), else the filter gradient and a reduction.
    pub fn conv2d_backward_filter_and_bias(
        &self,
        dy: &Tensor,
        kernel: [usize; 2],
        opts: Conv2dOptions,
    ) -> Result<(Tensor, Tensor)> {
        let (dw, db) = self.filter_grad(dy, kernel, opts, true)?;
        let db = match db {
            Some(db) => db,
            None => dy.sum(&[0, 1, 2], false)?,
        };
        Ok((dw, db))
    }

    /// The filter gradient and, with `bias` and where the direct kernel computes it on the
    /// way, the bias gradient.
    fn filter_grad(
        &self,
        dy: &Tensor,
        kernel: [usize; 2],
        opts: Conv2dOptions,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let op = "conv2d_backward_filter";
        if let Some(dw) = super::cast::via_f32(&[self, dy], |t| {
            t[0].conv2d_backward_filter(&t[1], kernel, opts)
        })? {
            return Ok((dw, None));
        }
        check_f32(op, &[self, dy])?;
        if self.rank() != 4 || dy.rank() != 4 {
            return Err(Error::shape(
                op,
                "input and gradient must be NHWC (rank 4)",
                &[self.shape(), dy.shape()],
            ));
        }
        let g = opts.groups.max(1);
        let (c, o) = (self.shape()[3], dy.shape()[3]);
        if c % g != 0 {
            return Err(Error::invalid(
                op,
                format!("{c} input channels do not divide into {g} groups"),
            ));
        }
        let filter_shape = [kernel[0], kernel[1], c / g, o];
        let geo = Geometry::new(op, self.shape(), &filter_shape, opts)?;
        if dy.shape() != geo.output_shape() {
            return Err(Error::shape(
                op,
                format!(
                    "gradient must have the forward output's shape {:?}",
                    geo.output_shape()
                ),
                &[self.shape(), dy.shape()],
            ));
        }
        if let Some(d) = geo.depthwise() {
            return Ok((super::depthwise::backward_filter(self, dy, &d)?, None));
        }
        if let Some((first, kept, opts)) = geo.trimmed() {
            // Dropped taps only ever met padding: their gradient is exactly zero.
            let g = self.conv2d_backward_filter(dy, kept, opts)?;
            return Ok((embed_taps(&g, first, kernel)?, None));
        }
        let npq = geo.n * geo.oh * geo.ow;
        if geo.is_pointwise() && !shares_pipelines(self) {
            let x = self.reshape(&[npq, c])?;
            let dy = dy.reshape(&[npq, o])?;
            let dw = x
                .matmul_with(
                    &dy,
                    MatmulOptions {
                        transpose_a: true,
                        ..Default::default()
                    },
                )?
                .reshape(&filter_shape)?;
            return Ok((dw, None));
        }
        if npq == 0 {
            return Ok((
                Tensor::zeros(self.device(), &filter_shape, DType::F32)?,
                None,
            ));
        }
        if g == 1 && kernel[0] * kernel[1] * c <= MAX_DIRECT_TAPS {
            return filter_grad_direct(self, dy, &geo, filter_shape, bias);
        }
        let extra = channel_padding(self, &geo);
        if extra > 0 {
            let x4 = self.pad(&[0, 0, 0, 0], &[0, 0, 0, extra])?;
            let (dw, db) = x4.filter_grad(dy, kernel, opts, bias)?;
            return Ok((dw.slice(2, 0, c)?, db));
        }
        let cols = geo.kh * geo.kw * geo.cg();
        let rows = geo.og();
        // The reduction over N·OH·OW is long and the output small: split it so that enough
        // workgroups run, each split at least MIN_CHUNK long, K per split a multiple of 4.
        const MIN_CHUNK: usize = 256;
        const TARGET_GROUPS: usize = 128;
        let blk = gemm::blocking_for(cols);
        let groups_per_split = gemm::output_groups(self.device(), blk, rows, cols) * g;
        let splits = (TARGET_GROUPS / groups_per_split.max(1))
            .clamp(1, npq.div_ceil(MIN_CHUNK).max(1))
            .max(npq.div_ceil(super::MAX_LOOP));
        let chunk = npq.div_ceil(splits).div_ceil(4) * 4;
        let splits = npq.div_ceil(chunk);
        let dyt = dy.reshape(&[npq, o])?.t()?;
        let partial = Tensor::uninit(
            self.device(),
            op,
            &[splits, kernel[0], kernel[1], c / g, o],
            DType::F32,
        )?;
        let p = Problem {
            m: rows,
            n: cols,
            k: npq,
            zs: g * splits,
            splits,
            chunk,
        };
        let none = ConvEpilogue::default();
        launch(Direction::BackwardFilter, [&dyt, self, &partial], &none, &geo, p, 1.0)?;
        let dw = if splits == 1 {
            partial.reshape(&filter_shape)?
        } else {
            partial.sum(&[0], false)?
        };
        Ok((dw, None))
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
        super::same_device(op, &[self, filter])?;
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
    /// the forward input, `dy` the gradient of its output.
    pub fn conv2d_transpose_backward_filter(
        &self,
        dy: &Tensor,
        kernel: [usize; 2],
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        dy.conv2d_backward_filter(self, kernel, opts)
    }
}

/// One axis of one stride phase `r`: its taps `r, r + s, …` of `k`, the extent of its
/// stride-1 result, and the range `lo..hi` of result rows `q` whose input row
/// `ih = r − pad + s·q` lies inside the input.
fn phase(r: usize, s: usize, k: usize, a: &crate::ops::window::AxisGeometry) -> (usize, usize, usize, usize) {
    let taps = if r < k { (k - r).div_ceil(s) } else { 0 };
    let extent = a.output + taps.saturating_sub(1);
    let lo = a.pad_before.saturating_sub(r).div_ceil(s);
    let hi = if a.input + a.pad_before > r {
        ((a.input - 1 + a.pad_before - r) / s + 1).min(extent)
    } else {
        0
    };
    (taps, extent, lo, hi)
}

/// Phase `(rh, rw)`'s taps of an HWIO `filter`, flipped and with their channels swapped, into
/// `dst` (`[th, tw, O, width]`) from channel `at`: `dst[a, b, o, at + c] = w[rh + sh·(th−1−a),
/// rw + sw·(tw−1−b), c, o]`. The flip is a copy with negative strides: the layout kernel's
/// offsets are u32, whose arithmetic WGSL defines to wrap, so `base + i·(2³² − |s|)` is
/// `base − i·|s|` for every tap read.
fn flip_phase_taps(
    filter: &Tensor,
    dst: &Tensor,
    geo: &Geometry,
    [rh, rw]: [usize; 2],
    [th, tw]: [usize; 2],
    width: usize,
    at: usize,
) -> Result<()> {
    let [sh, sw] = geo.opts.stride;
    let (c, o, kw) = (geo.c, geo.o, geo.kw);
    let neg = |v: usize| (v as u32).wrapping_neg() as usize;
    super::layout::strided_copy(
        filter,
        dst,
        &[th, tw, o, c],
        &[neg(sh * kw * c * o), neg(sw * c * o), 1, o],
        (rh + sh * (th - 1)) * kw * c * o + (rw + sw * (tw - 1)) * c * o,
        &[tw * o * width, o * width, width, 1],
        at,
    )
}

/// Whether convolutions on `t`'s device run as few distinct pipelines as they can: on the
/// register-blocked strategy (CPU adapters), where every new GEMM variant costs 1–2 s of
/// LLVM time at its first dispatch, 1×1 convolutions stay on the convolution kernels instead
/// of taking matmul's (three more variants: forward, and both gradients' transposed
/// operands), and stride-1 input gradients run on the forward kernel.
fn shares_pipelines(t: &Tensor) -> bool {
    t.device().strategy() == Strategy::RegisterBlocked
}

/// The input gradient of a stride-1 convolution as a forward convolution of `dy` with the
/// filter flipped and its channels swapped, padded so that its output is exactly `dx`:
/// `dx[ih] = Σ_kh dy[ih + pt − kh]·w[kh]` is a correlation with `w[KH − 1 − j]` under padding
/// `KH − 1 − pt` before and `KH − 1 − pb` after. It shares the forward pipeline instead of
/// needing an input-gradient variant of its own, which on lavapipe is 1–2 s of LLVM time at
/// a process's first step (docs/performance.md, "The first step of a process"). `None` where
/// that does not apply (dilation, groups, padding as wide as the filter), or on
/// the GPU strategy, whose input-gradient kernel is tuned for its tiles.
fn backward_input_as_forward(dy: &Tensor, filter: &Tensor, geo: &Geometry) -> Result<Option<Tensor>> {
    let o = &geo.opts;
    let plain = o.stride == [1, 1] && o.dilation == [1, 1] && geo.groups == 1;
    if !plain || !shares_pipelines(dy) {
        return Ok(None);
    }
    let (r, c) = (&geo.rows, &geo.cols);
    // At stride 1 every padded cell is read: output = input + before + after − kernel + 1.
    let exact = |a: &crate::ops::window::AxisGeometry, k: usize| {
        a.output + k == a.input + a.pad_before + a.pad_after + 1 && a.pad_before.max(a.pad_after) < k
    };
    if !exact(r, geo.kh) || !exact(c, geo.kw) {
        return Ok(None);
    }
    let (pt, pb, pl, pr) = (r.pad_before, r.pad_after, c.pad_before, c.pad_after);
    let (kh, kw) = (geo.kh, geo.kw);
    let flipped = Tensor::uninit(
        dy.device(),
        "conv2d_backward_input",
        &[kh, kw, geo.o, geo.c],
        DType::F32,
    )?;
    flip_phase_taps(filter, &flipped, geo, [0, 0], [kh, kw], geo.c, 0)?;
    let opts = Conv2dOptions {
        padding: Padding::Explicit {
            top: kh - 1 - pt,
            bottom: kh - 1 - pb,
            left: kw - 1 - pl,
            right: kw - 1 - pr,
        },
        ..Default::default()
    };
    let dx = dy.conv2d(&flipped, opts)?;
    debug_assert_eq!(dx.shape(), geo.input_shape().as_slice());
    Ok(Some(dx))
}

/// Stride 1, padded by `taps − 1` on every side: the "full" convolution whose output row `q`
/// is `Σ_j dy[q − j]·w[j]` once the taps are flipped.
fn full_conv([th, tw]: [usize; 2]) -> Conv2dOptions {
    Conv2dOptions {
        padding: Padding::Explicit {
            top: th - 1,
            bottom: th - 1,
            left: tw - 1,
            right: tw - 1,
        },
        ..Default::default()
    }
}

/// Writes phase `(rh, rw)`'s result (channels `at..at + C` of `z`) into its interleaved rows
/// and columns of `dx`: row `q` of `z` is input row `rh − pad + sh·q`.
fn scatter_phase(z: &Tensor, dx: &Tensor, geo: &Geometry, [rh, rw]: [usize; 2], at: usize) -> Result<()> {
    use crate::shape::strides;
    let [sh, sw] = geo.opts.stride;
    let (_, _, lo_h, hi_h) = phase(rh, sh, geo.kh, &geo.rows);
    let (_, _, lo_w, hi_w) = phase(rw, sw, geo.kw, &geo.cols);
    if lo_h >= hi_h || lo_w >= hi_w {
        return Ok(());
    }
    let ih0 = rh + sh * lo_h - geo.rows.pad_before;
    let iw0 = rw + sw * lo_w - geo.cols.pad_before;
    let zs = strides(z.shape());
    let xs = strides(&geo.input_shape());
    super::layout::strided_copy(
        z,
        dx,
        &[geo.n, hi_h - lo_h, hi_w - lo_w, geo.c],
        &zs,
        lo_h * zs[1] + lo_w * zs[2] + at,
        &[xs[0], sh * xs[1], sw * xs[2], 1],
        ih0 * xs[1] + iw0 * xs[2],
    )
}

/// The input gradient of a strided convolution as stride-1 problems, one per *stride phase*.
/// An input row `ih` with `(ih + pad) mod s = r` receives gradient only through the taps
/// `kh ≡ r (mod s)`: `dx[ih] = Σ_j dy[q − j] · w[r + s·j]` with `q = (ih + pad − r) / s`, a
/// forward "full" stride-1 convolution of `dy` with the sub-filter `w[r::s]` flipped and its
/// channels swapped (the forward kernel runs nearer the matmul ceiling than the input-gradient
/// gather, which visited every tap and discarded (s²−1)/s² of them). Each phase's result is
/// written into its interleaved rows and columns of `dx`; phases with no tap (a 1×1 filter at
/// stride 2: three of four) stay zero. When the kernel is a multiple of the stride (a
/// transposed convolution's 2×2/2 or 4×4/2) every phase has the same taps, so the sub-filters
/// stack along the output channels and one convolution computes all s² phases, a GEMM s²
/// times wider (C = 32 per phase is a narrow product; 4·32 is not).
fn backward_input_by_phase(dy: &Tensor, filter: &Tensor, geo: &Geometry) -> Result<Tensor> {
    let [sh, sw] = geo.opts.stride;
    let dev = dy.device();
    let (c, o) = (geo.c, geo.o);
    let op = "conv2d_backward_input";
    // The phases write disjoint rows and columns; when they cover every one, nothing is
    // left to zero first.
    let covered = |s: usize, k: usize, a: &crate::ops::window::AxisGeometry| {
        (0..s)
            .map(|r| {
                let (taps, _, lo, hi) = phase(r, s, k, a);
                if taps == 0 { 0 } else { hi.saturating_sub(lo) }
            })
            .sum::<usize>()
            == a.input
    };
    let dx = if dy.numel() > 0 && covered(sh, geo.kh, &geo.rows) && covered(sw, geo.kw, &geo.cols)
    {
        Tensor::uninit(dev, op, &geo.input_shape(), DType::F32)?
    } else {
        Tensor::zeros(dev, &geo.input_shape(), DType::F32)?
    };
    if dx.numel() == 0 || dy.numel() == 0 {
        return Ok(dx);
    }
    let phases: Vec<[usize; 2]> = (0..sh).flat_map(|rh| (0..sw).map(move |rw| [rh, rw])).collect();
    if geo.kh.is_multiple_of(sh) && geo.kw.is_multiple_of(sw) {
        let taps = [geo.kh / sh, geo.kw / sw];
        let width = phases.len() * c;
        let stacked = Tensor::uninit(dev, op, &[taps[0], taps[1], o, width], DType::F32)?;
        for (p, &r) in phases.iter().enumerate() {
            flip_phase_taps(filter, &stacked, geo, r, taps, width, p * c)?;
        }
        let z = dy.conv2d(&stacked, full_conv(taps))?;
        for (p, &r) in phases.iter().enumerate() {
            scatter_phase(&z, &dx, geo, r, p * c)?;
        }
        return Ok(dx);
    }
    for r in phases {
        let taps = [
            phase(r[0], sh, geo.kh, &geo.rows).0,
            phase(r[1], sw, geo.kw, &geo.cols).0,
        ];
        if taps.contains(&0) {
            continue;
        }
        let flipped = Tensor::uninit(dev, op, &[taps[0], taps[1], o, c], DType::F32)?;
        flip_phase_taps(filter, &flipped, geo, r, taps, c, 0)?;
        let z = dy.conv2d(&flipped, full_conv(taps))?;
        scatter_phase(&z, &dx, geo, r, 0)?;
    }
    Ok(dx)
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
