//! Depthwise convolution (`groups == C`, any channel multiplier M = O / C) as direct window
//! kernels (`shaders/depthwise.wgsl`): forward, input gradient (a gather) and filter gradient
//! (chunked partial sums added by the reduce kernel).
//!
//! There is no public entry point here: `Tensor::conv2d`, `conv2d_backward_input` and
//! `conv2d_backward_filter` route grouped convolutions with one input channel per group to
//! these functions after their checks (ops/conv.rs). Through the grouped GEMM each group was a
//! one-column product, which leaves most SIMD lanes idle; here every invocation owns 4
//! neighbouring channels of one pixel whenever the channel counts allow.

use super::conv::Conv2dOptions;
use super::launch_1d;
use super::window::AxisGeometry;
use crate::device::Dispatch;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::Activation;
use crate::{DType, Result, Tensor};

kernel!(pub static DEPTHWISE: "depthwise" in "depthwise.wgsl",
    workgroup 64,
    entries ["dw_fwd", "dw_bwi", "dw_bwf"],
    blocks [DepthwiseParams], helpers ["common/activations.wgsl"]);

params!("Params" => struct DepthwiseParams {
    /// Forward, input gradient: invocations per image row (W·lanes); filter gradient: all
    /// invocations.
    threads: u32,
    /// Forward, input gradient: first image of this dispatch; filter gradient: workgroups per
    /// grid row (2-D grids past 65,535 workgroups).
    row: u32,
    /// Input extents.
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    /// Output extents; `o` is C·M.
    oh: u32,
    ow: u32,
    o: u32,
    /// Channel multiplier.
    m: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    /// Padding before, top and left.
    pt: u32,
    pl: u32,
    /// Invocations per pixel: O/V (forward, filter gradient) or C/V (input gradient).
    lanes: u32,
    /// log2 of the strides when they are powers of two, else all ones.
    sh_log: u32,
    sw_log: u32,
    /// Filter gradient: output pixels per split.
    chunk: u32,
    /// N·OH·OW.
    npq: u32,
    /// The fused activation's negative slope (forward).
    slope: f32,
    has_bias: u32,
    has_scale: u32,
    has_residual: u32,
    /// log2 of lanes when it is a power of two, else all ones.
    lanes_log: u32,
});

/// How an invocation's V lanes are loaded from one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// V = 1: one scalar.
    Scalar,
    /// Four contiguous, 16-byte aligned channels: one vec4 load.
    Vec,
    /// Four lanes reading the same element (forward/filter gradient with M % 4 == 0): one
    /// scalar load, splatted.
    Splat,
    /// Four scalars at arbitrary indices (other multipliers).
    Gather,
}

impl Access {
    fn elem(self) -> &'static str {
        if self == Access::Vec {
            "vec4<f32>"
        } else {
            "f32"
        }
    }

    /// `fn {name}4(e: vec4<u32>) -> T` for binding `name`.
    fn loader(self, name: &str) -> String {
        let body = match self {
            Access::Scalar => format!("{name}[e.x]"),
            Access::Vec => format!("{name}[e.x / 4u]"),
            Access::Splat => format!("T({name}[e.x])"),
            Access::Gather => {
                format!("vec4<f32>({name}[e.x], {name}[e.y], {name}[e.z], {name}[e.w])")
            }
        };
        format!("fn {name}4(e: vec4<u32>) -> T {{ return {body}; }}")
    }
}

/// The specialisation for the given src/aux access (both Scalar, or neither).
fn spec(src: Access, aux: Access) -> Spec {
    let v = if src == Access::Scalar { 1 } else { 4 };
    Spec::new()
        .u32("V", v)
        .alias("T", if v == 4 { "vec4<f32>" } else { "f32" })
        .alias("ST", src.elem())
        .alias("AT", aux.elem())
        .line(&src.loader("src"))
        .line(&aux.loader("aux"))
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = vec![(&DEPTHWISE, spec(Access::Scalar, Access::Scalar))];
    for src in [Access::Vec, Access::Splat, Access::Gather] {
        for aux in [Access::Vec, Access::Gather] {
            v.push((&DEPTHWISE, spec(src, aux)));
        }
    }
    v
}

/// The shape of one depthwise convolution, taken from conv.rs's checked geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Input [N, H, W, C].
    pub x: [usize; 4],
    /// Output [N, OH, OW, O].
    pub y: [usize; 4],
    pub kernel: [usize; 2],
    pub rows: AxisGeometry,
    pub cols: AxisGeometry,
    pub opts: Conv2dOptions,
}

impl Geometry {
    fn m(&self) -> usize {
        self.y[3] / self.x[3]
    }

    /// Access for lanes = 4 output channels reading their input channels o / M.
    fn by_output_channel(&self) -> Access {
        match self.m() {
            _ if !self.y[3].is_multiple_of(4) => Access::Scalar,
            1 => Access::Vec,
            m if m.is_multiple_of(4) => Access::Splat,
            _ => Access::Gather,
        }
    }

    /// The parameter block of shaders/depthwise.wgsl.
    fn params(&self, threads: usize, lanes: usize, chunk: usize, slope: f32) -> DepthwiseParams {
        let o = &self.opts;
        let u = |v: usize| v as u32;
        DepthwiseParams {
            threads: u(threads),
            row: 0,
            n: u(self.x[0]),
            h: u(self.x[1]),
            w: u(self.x[2]),
            c: u(self.x[3]),
            oh: u(self.y[1]),
            ow: u(self.y[2]),
            o: u(self.y[3]),
            m: u(self.m()),
            kh: u(self.kernel[0]),
            kw: u(self.kernel[1]),
            sh: u(o.stride[0]),
            sw: u(o.stride[1]),
            dh: u(o.dilation[0]),
            dw: u(o.dilation[1]),
            pt: u(self.rows.pad_before),
            pl: u(self.cols.pad_before),
            lanes: u(lanes),
            sh_log: pow2_log(o.stride[0]),
            sw_log: pow2_log(o.stride[1]),
            chunk: u(chunk),
            npq: u(self.y[0] * self.y[1] * self.y[2]),
            slope,
            has_bias: 0,
            has_scale: 0,
            has_residual: 0,
            lanes_log: pow2_log(lanes),
        }
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

/// Launches the filter gradient: a 1-D grid over `params.threads` invocations.
fn launch(
    t: &Tensor,
    entry: &'static str,
    spec: &Spec,
    params: DepthwiseParams,
    buffers: &[crate::device::View<'_>],
) -> Result<()> {
    let threads = params.threads as u64;
    launch_1d(
        t.device(),
        &DEPTHWISE,
        entry,
        spec,
        |row| DepthwiseParams { row, ..params },
        buffers,
        threads,
    )
}

/// Launches the forward or input gradient on a (row of `params.threads` invocations, `rows`,
/// `images`) grid, so each invocation finds its pixel with one division (none when the lane
/// count is a power of two) instead of three. Batches past the grid limit go as several
/// dispatches, each told its first image (`params.row`).
fn launch_rows(
    t: &Tensor,
    entry: &'static str,
    spec: &Spec,
    mut params: DepthwiseParams,
    buffers: &[crate::device::View<'_>],
    rows: usize,
    images: usize,
) -> Result<()> {
    let dev = t.device();
    let max = dev.limits().max_compute_workgroups_per_dimension as usize;
    let x = (params.threads as usize).div_ceil(DEPTHWISE.workgroup as usize);
    if x > max || rows > max {
        return Err(crate::Error::invalid(
            "depthwise conv2d",
            format!(
                "{rows} rows of {} invocations exceed the adapter's grid",
                params.threads
            ),
        ));
    }
    let mut n0 = 0;
    while n0 < images {
        let zs = (images - n0).min(max);
        params.row = n0 as u32;
        dev.dispatch(Dispatch {
            kernel: &DEPTHWISE,
            entry,
            spec,
            params: bytemuck::bytes_of(&params),
            buffers,
            bindings: None,
            workgroups: [x as u32, rows as u32, zs as u32],
        })?;
        n0 += zs;
    }
    Ok(())
}

/// `act(depthwise(x, filter) · scale + bias + residual)` (conv.rs's `ConvEpilogue`, checked
/// there); `filter` is HWIO [KH, KW, 1, O]. Identity, ReLU and leaky ReLU are fused into the
/// write-out, other activations run as one elementwise pass.
pub(crate) fn forward(
    x: &Tensor,
    filter: &Tensor,
    bias: Option<&Tensor>,
    scale: Option<&Tensor>,
    residual: Option<&Tensor>,
    activation: Activation,
    geo: &Geometry,
) -> Result<Tensor> {
    let out = Tensor::uninit(x.device(), "conv2d", &geo.y, DType::F32)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let access = geo.by_output_channel();
    let v = if access == Access::Scalar { 1 } else { 4 };
    let aux = if v == 4 { Access::Vec } else { Access::Scalar };
    let lanes = geo.y[3] / v;
    let slope = activation.fused_slope().unwrap_or(1.0);
    let p = DepthwiseParams {
        has_bias: bias.is_some() as u32,
        has_scale: scale.is_some() as u32,
        has_residual: residual.is_some() as u32,
        ..geo.params(geo.y[2] * lanes, lanes, 0, slope)
    };
    let dummy = x.device().dummy(0);
    launch_rows(
        x,
        "dw_fwd",
        &spec(access, aux),
        p,
        &[
            x.bind(),
            filter.bind(),
            out.bind(),
            bias.map_or(dummy, Tensor::bind),
            scale.map_or(dummy, Tensor::bind),
            residual.map_or(dummy, Tensor::bind),
        ],
        geo.y[1],
        geo.y[0],
    )?;
    match activation.fused_slope() {
        Some(_) => Ok(out),
        None => out.activation(activation),
    }
}

/// Gradient with respect to the input: `dy` [N, OH, OW, O], result [N, H, W, C].
pub(crate) fn backward_input(dy: &Tensor, filter: &Tensor, geo: &Geometry) -> Result<Tensor> {
    let dx = Tensor::uninit(dy.device(), "conv2d_backward_input", &geo.x, DType::F32)?;
    if dx.numel() == 0 {
        return Ok(dx);
    }
    // Lanes are 4 input channels; their output channels c·M + m are contiguous only for M = 1.
    let access = match geo.m() {
        _ if !geo.x[3].is_multiple_of(4) => Access::Scalar,
        1 => Access::Vec,
        _ => Access::Gather,
    };
    let v = if access == Access::Scalar { 1 } else { 4 };
    let lanes = geo.x[3] / v;
    let p = geo.params(geo.x[2] * lanes, lanes, 0, 1.0);
    launch_rows(
        dy,
        "dw_bwi",
        &spec(access, access),
        p,
        &[dy.bind(), filter.bind(), dx.bind()],
        geo.x[1],
        geo.x[0],
    )?;
    Ok(dx)
}

/// Gradient with respect to the filter: `x` the forward input, `dy` [N, OH, OW, O]; result
/// [KH, KW, 1, O].
pub(crate) fn backward_filter(x: &Tensor, dy: &Tensor, geo: &Geometry) -> Result<Tensor> {
    let op = "conv2d_backward_filter";
    let filter_shape = [geo.kernel[0], geo.kernel[1], 1, geo.y[3]];
    let npq = geo.y[0] * geo.y[1] * geo.y[2];
    if npq == 0 {
        return Tensor::zeros(x.device(), &filter_shape, DType::F32);
    }
    let access = geo.by_output_channel();
    let v = if access == Access::Scalar { 1 } else { 4 };
    let aux = if v == 4 { Access::Vec } else { Access::Scalar };
    let lanes = geo.y[3] / v;
    let taps = geo.kernel[0] * geo.kernel[1];
    // The reduction over N·OH·OW is long and the output (taps × O) small: cut it into splits
    // so that about TARGET_THREADS invocations run, none with fewer than MIN_CHUNK pixels
    // (shorter chunks would spend more on the partial sums than they save).
    const TARGET_THREADS: usize = 16384;
    const MIN_CHUNK: usize = 64;
    let per_split = lanes * taps;
    let splits = (TARGET_THREADS / per_split)
        .clamp(1, npq.div_ceil(MIN_CHUNK))
        .max(npq.div_ceil(super::MAX_LOOP));
    let chunk = npq.div_ceil(splits);
    let splits = npq.div_ceil(chunk);
    let partial = Tensor::uninit(
        x.device(),
        op,
        &[splits, geo.kernel[0], geo.kernel[1], 1, geo.y[3]],
        DType::F32,
    )?;
    let p = geo.params(splits * per_split, lanes, chunk, 1.0);
    launch(
        x,
        "dw_bwf",
        &spec(access, aux),
        p,
        &[x.bind(), dy.bind(), partial.bind()],
    )?;
    if splits == 1 {
        partial.reshape(&filter_shape)
    } else {
        partial.sum(&[0], false)
    }
}
