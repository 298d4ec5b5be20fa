//! The geometry of one convolution: shapes, groups, padding and the window rules checked
//! once, the parameter block they make, and the reductions to simpler problems (a pointwise
//! matmul, a depthwise kernel, a filter trimmed to the taps that touch the input).

use super::{ConvParams, Conv2dOptions};
use crate::ops::window::{geometry_2d, AxisGeometry, Padding};
use crate::{Error, Result, Tensor};

/// Taps `first..first + kept` of an HWIO filter.
pub(crate) fn taps(filter: &Tensor, first: [usize; 2], kept: [usize; 2]) -> Result<Tensor> {
    let mut f = filter.clone();
    for ax in 0..2 {
        if kept[ax] != f.shape()[ax] {
            f = f.slice(ax as isize, first[ax], first[ax] + kept[ax])?;
        }
    }
    Ok(f)
}

/// A `[kh', kw', C, O]` filter gradient placed at tap `first` of a zero `[KH, KW, C, O]` one.
pub(crate) fn embed_taps(g: &Tensor, first: [usize; 2], kernel: [usize; 2]) -> Result<Tensor> {
    let after = |ax: usize| kernel[ax] - first[ax] - g.shape()[ax];
    g.pad(&[first[0], first[1], 0, 0], &[after(0), after(1), 0, 0])
}

/// Everything a launch needs about one convolution, checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) o: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) groups: usize,
    pub(crate) rows: AxisGeometry,
    pub(crate) cols: AxisGeometry,
    pub(crate) opts: Conv2dOptions,
}

impl Geometry {
    pub(crate) fn new(
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

    pub(crate) fn cg(&self) -> usize {
        self.c / self.groups
    }
    pub(crate) fn og(&self) -> usize {
        self.o / self.groups
    }
    pub(crate) fn output_shape(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.o]
    }
    pub(crate) fn input_shape(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.c]
    }

    /// One input channel per group: the direct depthwise kernels (ops/depthwise.rs) serve it.
    pub(crate) fn depthwise(&self) -> Option<crate::ops::depthwise::Geometry> {
        (self.groups == self.c && self.groups > 1).then_some(crate::ops::depthwise::Geometry {
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
    pub(crate) fn params(
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
            wg_log: 0,
        }
    }

    /// True when the convolution is a plain [N·H·W, C] x [C, O] product.
    /// The kernel taps some output actually reads real input with, when that is fewer than
    /// all of them: `(first tap, kept taps)` per axis and the options that give the same
    /// output with only those taps (explicit padding). On feature maps smaller than the
    /// kernel's reach (ResNet's last stage at 32×32 input is 1×1: a 3×3 "same" convolution
    /// there reads only its centre tap) the dropped taps multiply padding zeros only, so
    /// im2col would spend most of the GEMM on them.
    pub(crate) fn trimmed(&self) -> Option<([usize; 2], [usize; 2], Conv2dOptions)> {
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

    pub(crate) fn is_pointwise(&self) -> bool {
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
pub(crate) fn pow2_log(s: usize) -> u32 {
    if s.is_power_of_two() {
        s.trailing_zeros()
    } else {
        u32::MAX
    }
}
