//! Op launchers, one file per kernel family (`shaders/<family>.wgsl`): shape rules, the
//! specialisation, the parameter block and the dispatch. Each public op is a method on
//! [`Tensor`](crate::Tensor) defined next to its kernel.

/// The kernel families, one module per `shaders/<family>.wgsl`, each with its `variants()`:
/// this one list makes both the modules and [`all_variants`], so a new family cannot be left
/// out of the offline checks.
macro_rules! families {
    ($($family:ident),* $(,)?) => {
        $(pub(crate) mod $family;)*

        /// Every kernel variant wgrad can launch, for the offline validation (naga) tests.
        #[allow(dead_code)]
        pub(crate) fn all_variants() -> Vec<(&'static Kernel, Spec)> {
            let mut v = Vec::new();
            $(v.extend($family::variants());)*
            v
        }
    };
}

families!(
    fill, unary, binary, reduce, softmax, layout, cast, random, matmul, conv, depthwise, pool, lrn,
    upsample, batch_norm, optim, nms, resize,
);

/// The GEMM code generator shared by matmul and the convolutions.
pub(crate) mod gemm;
/// NHWC operand checks and the channels-per-invocation specialisation of the image kernels.
pub(crate) mod image;
/// Sliding-window geometry (padding, output extents).
pub(crate) mod window;

use crate::device::{Device, Dispatch, View};
use crate::kernel::{Block, Kernel, Spec};
use crate::shape::MAX_RANK;
use crate::{Result, Tensor};

/// The most loop iterations a kernel's launcher lets one invocation run. lavapipe (Mesa 22.3)
/// ends an invocation's loops silently after 65,535 iterations in all (its loop limiter), so a
/// longer reduction returns a truncated sum there: a 1 × 4.5M · 4.5M × 4 matmul gave 4,194,240
/// per output and a 30,000-class softmax summed to 0.18. Launchers split longer loops across
/// invocations (split-K, chunks) or dispatches; half the limit leaves room for inner loops.
pub(crate) const MAX_LOOP: usize = 32768;

/// Up to eight extents or strides as the two vec4<u32> of a parameter block's
/// `array<vec4<u32>, 2>` (unused trailing entries 0).
pub(crate) fn pack2x4(v: &[usize]) -> [[u32; 4]; 2] {
    let mut out = [0u32; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = x as u32;
    }
    bytemuck::cast(out)
}

/// Launches a 1-D kernel over `threads` invocations in workgroups of `kernel.workgroup`
/// (the shader's `WG`). `block` makes the parameter block from the number of workgroups per
/// grid row, from which every 1-D kernel rebuilds its linear index with `grid_index`
/// (shaders/common/grid.wgsl: grids past 65,535 workgroups fold into a second dimension).
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_1d<P: Block>(
    device: &Device,
    kernel: &'static Kernel,
    entry: &'static str,
    spec: &Spec,
    block: impl FnOnce(u32) -> P,
    buffers: &[crate::device::View<'_>],
    threads: u64,
) -> Result<()> {
    launch_1d_bound(device, kernel, entry, spec, block, buffers, None, threads)
}

/// [`launch_1d`] with each buffer's binding named (see [`Dispatch::bindings`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_1d_bound<P: Block>(
    device: &Device,
    kernel: &'static Kernel,
    entry: &'static str,
    spec: &Spec,
    block: impl FnOnce(u32) -> P,
    buffers: &[crate::device::View<'_>],
    bindings: Option<&[u32]>,
    threads: u64,
) -> Result<()> {
    if threads == 0 {
        return Ok(());
    }
    let (workgroups, row) = device.grid_1d(threads.div_ceil(kernel.workgroup as u64))?;
    let params = block(row);
    device.dispatch(Dispatch {
        kernel,
        entry,
        spec,
        params: bytemuck::bytes_of(&params),
        buffers,
        bindings,
        workgroups,
    })
}

/// An argument of [`launch_1d_split`].
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// Bound whole in every piece: a scalar, a broadcast operand, a small table.
    Whole(View<'a>),
    /// Cut in step with the invocations: invocation `i` of the launch owns the `bytes` bytes
    /// at `i * bytes` of this view (an element, or a vec4 of them).
    Split(View<'a>, u64),
}

/// How many items one binding of `device` covers when the widest argument takes `widest`
/// bytes per item, rounded down so that every piece of every argument starts
/// binding-aligned (the narrowest argument, `narrowest` bytes per item, needs the longest
/// step). Zero when a single step is past the limit.
pub(crate) fn chunk_len(device: &Device, widest: u64, narrowest: u64) -> u64 {
    let align = device.binding_alignment();
    // Items per aligned step: align / gcd(align, bytes), align a power of two.
    let step = align >> narrowest.trailing_zeros().min(align.trailing_zeros());
    (device.binding_limit() / widest.max(1)) / step * step
}

/// [`launch_1d`] for elementwise kernels, over any number of items: when a `Split` argument
/// is past the binding limit, the launch runs as several dispatches, each binding a window of
/// every `Split` argument and the whole of every `Whole` one. `block(row, first, items)` makes
/// the parameter block of the piece covering items `first..first + items` (a kernel whose
/// result depends on an item's global index, as a counter-based RNG does, adds `first`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_1d_split<P: Block>(
    device: &Device,
    kernel: &'static Kernel,
    entry: &'static str,
    spec: &Spec,
    block: impl Fn(u32, u64, u64) -> P,
    args: &[Arg<'_>],
    items: u64,
) -> Result<()> {
    let sizes = || {
        args.iter().filter_map(|a| match a {
            Arg::Split(_, bytes) => Some(*bytes),
            Arg::Whole(_) => None,
        })
    };
    let widest = sizes().max().unwrap_or(4);
    let per = if args
        .iter()
        .any(|a| matches!(a, Arg::Split(v, _) if v.size > device.binding_limit()))
    {
        chunk_len(device, widest, sizes().min().unwrap_or(4))
    } else {
        items.max(1)
    };
    if per == 0 {
        return Err(crate::Error::Unsplit {
            op: kernel.name,
            bytes: widest,
            limit: device.binding_limit(),
        });
    }
    let mut first = 0;
    while first < items {
        let n = per.min(items - first);
        let views: Vec<View<'_>> = args
            .iter()
            .map(|a| match *a {
                Arg::Whole(v) => v,
                Arg::Split(v, _) if per >= items => v,
                Arg::Split(v, bytes) => v.window(first * bytes, n * bytes),
            })
            .collect();
        launch_1d(
            device,
            kernel,
            entry,
            spec,
            |row| block(row, first, n),
            &views,
            n,
        )?;
        first += n;
    }
    Ok(())
}

/// Checks that all tensors live on the first one's device.
pub(crate) fn same_device(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    for t in &ts[1..] {
        ts[0].same_device(op, t)?;
    }
    Ok(())
}
