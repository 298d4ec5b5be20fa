//! Reductions over any set of axes, with keepdims (`shaders/reduce.wgsl`).
//!
//! The reduced axes are brought next to each other (a permute, only when they are not already
//! a contiguous run), the tensor is viewed as [A, K, B] and reduced over K in one or more
//! passes: a long K is first cut into strided partial results so that even a reduction of a
//! million elements to one value keeps thousands of invocations busy.

use super::{launch_1d, same_device};
use crate::device::Device;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::shape::{axes as resolve_axes, numel};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static REDUCE: "reduce" in "reduce.wgsl",
    workgroup 256,
    entries ["main"],
    blocks [ReduceParams]);

// The [A, K, B] view of the input, reduced along K in `splits` partial sums per output.
params!("Params" => struct ReduceParams {
    a: u32,
    k: u32,
    b: u32,
    splits: u32,
    /// Outputs of this pass: a * splits * b.
    n_out: u32,
    /// Workgroups per grid row (the grid folds into y past 65,535).
    row: u32,
    /// 1/K for a mean's last pass, else 1.
    scale: f32,
    pad: u32,
});

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    ArgMax,
    ArgMin,
}

impl ReduceOp {
    fn code(self) -> u32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
            ReduceOp::ArgMax => 3,
            ReduceOp::ArgMin => 4,
        }
    }
}

fn spec(code: u32, first: bool) -> Spec {
    Spec::new().u32("OP", code).bool("FIRST", first)
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for code in 0..5 {
        for first in [true, false] {
            v.push((&REDUCE, spec(code, first)));
        }
    }
    v
}

/// Values per invocation below which a pass is not split further.
const MIN_PER_SPLIT: usize = 64;
/// Invocations a split pass aims for (enough to fill a large GPU).
const TARGET_INVOCATIONS: usize = 1 << 16;

/// One reduction pass over [a, k, b]; returns the [a, splits, b] partials (and indices).
#[allow(clippy::too_many_arguments)]
fn pass(
    device: &Device,
    op: ReduceOp,
    x: &Tensor,
    idx_in: Option<&Tensor>,
    a: usize,
    k: usize,
    b: usize,
    splits: usize,
    scale: f32,
) -> Result<(Tensor, Option<Tensor>)> {
    let n_out = a * splits * b;
    let out = Tensor::uninit(device, "reduce", &[n_out], DType::F32)?;
    let arg = op.code() >= 3;
    let idx_out = if arg {
        Some(Tensor::uninit(device, "reduce", &[n_out], DType::U32)?)
    } else {
        None
    };
    let buffers = [
        x.buffer(),
        out.buffer(),
        idx_out.as_ref().map_or(device.dummy(0), |t| t.buffer()),
        idx_in.map_or(device.dummy(1), |t| t.buffer()),
    ];
    launch_1d(
        device,
        &REDUCE,
        "main",
        &spec(op.code(), idx_in.is_none()),
        |row| ReduceParams {
            a: a as u32,
            k: k as u32,
            b: b as u32,
            splits: splits as u32,
            n_out: n_out as u32,
            row,
            scale,
            pad: 0,
        },
        &buffers,
        n_out as u64,
    )?;
    Ok((out, idx_out))
}

impl Tensor {
    /// Reduces over `axes` (negative counts from the end; empty means all axes).
    /// Arg-reductions take exactly one axis and return u32 positions along it.
    pub fn reduce(&self, op: ReduceOp, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let name = "reduce";
        self.expect_dtype(name, DType::F32)?;
        let rank = self.rank();
        let mut ax = if axes.is_empty() {
            (0..rank).collect()
        } else {
            resolve_axes(name, axes, rank)?
        };
        let arg = op.code() >= 3;
        if arg && ax.len() != 1 && rank > 0 {
            return Err(Error::invalid(
                name,
                format!("{op:?} takes exactly one axis, got {axes:?}"),
            ));
        }
        let out_shape: Vec<usize> = (0..rank)
            .filter_map(|d| {
                if ax.contains(&d) {
                    keepdims.then_some(1)
                } else {
                    Some(self.shape()[d])
                }
            })
            .collect();
        let k: usize = ax.iter().map(|&d| self.shape()[d]).product();
        if k == 0 && op != ReduceOp::Sum {
            return Err(Error::shape(
                name,
                format!("{op:?} of an empty set of values"),
                &[self.shape()],
            ));
        }
        // Bring the reduced axes together (after the kept ones) unless they already are.
        let contiguous = ax.windows(2).all(|w| w[1] == w[0] + 1);
        let x = if contiguous || ax.is_empty() {
            self.clone()
        } else {
            let kept: Vec<usize> = (0..rank).filter(|d| !ax.contains(d)).collect();
            let perm: Vec<usize> = kept.iter().chain(ax.iter()).copied().collect();
            ax = (kept.len()..rank).collect();
            self.permute(&perm)?
        };
        let (a, b) = match (ax.first(), ax.last()) {
            (Some(&f), Some(&l)) => (numel(&x.shape()[..f]), numel(&x.shape()[l + 1..])),
            _ => (numel(x.shape()), 1),
        };
        let device = self.device();
        let (mut vals, mut idx, mut k_left) = (x, None::<Tensor>, k.max(1));
        if k == 0 {
            return Tensor::zeros(device, &out_shape, DType::F32);
        }
        loop {
            let splits = if k_left <= MIN_PER_SPLIT {
                1
            } else {
                (TARGET_INVOCATIONS / (a * b).max(1))
                    .clamp(1, k_left / MIN_PER_SPLIT)
                    .max(1)
            };
            let scale = if splits == 1 && op == ReduceOp::Mean {
                1.0 / k as f32
            } else {
                1.0
            };
            let (v, i) = pass(device, op, &vals, idx.as_ref(), a, k_left, b, splits, scale)?;
            vals = v;
            idx = i;
            if splits == 1 {
                break;
            }
            k_left = splits;
        }
        let result = if arg {
            idx.expect("arg reductions return indices")
        } else {
            vals
        };
        result.reshape(&out_shape)
    }

    pub fn sum(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, axes, keepdims)
    }
    pub fn mean(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, axes, keepdims)
    }
    pub fn max(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, axes, keepdims)
    }
    pub fn min(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, axes, keepdims)
    }
    /// Position of the largest value along `axis` (first on ties), as u32.
    pub fn argmax(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::ArgMax, &[axis], keepdims)
    }
    pub fn argmin(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::ArgMin, &[axis], keepdims)
    }

    /// Biased variance (divides by the count, as Keras's batch statistics), computed as the
    /// mean of squared deviations from the mean: stable where E[x²] - E[x]² cancels.
    pub fn variance(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let mean = self.mean(axes, true)?;
        same_device("variance", &[self, &mean])?;
        self.sub(&mean)?.square()?.mean(axes, keepdims)
    }
}
