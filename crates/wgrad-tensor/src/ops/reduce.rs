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
    /// Elements of x's binding before the [A, K, B] view: a piece of a tensor past the
    /// binding limit binds from the aligned offset below its first element.
    x0: u32,
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
    x0: usize,
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
        x.bind(),
        out.bind(),
        idx_out.as_ref().map_or(device.dummy(0), |t| t.bind()),
        idx_in.map_or(device.dummy(1), |t| t.bind()),
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
            x0: x0 as u32,
        },
        &buffers,
        n_out as u64,
    )?;
    Ok((out, idx_out))
}

/// Reduces `x` (from element `x0` of its binding), viewed as [a, k, b], over k: one pass, or
/// several when k is long (strided partials first, so that even a reduction of a million
/// values to one keeps thousands of invocations busy). `total_k` is the count a mean divides
/// by. Returns the [a * b] values and, for arg-reductions, positions.
fn reduce_akb(
    op: ReduceOp,
    x: &Tensor,
    x0: usize,
    a: usize,
    k: usize,
    b: usize,
    total_k: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    let device = x.device();
    let (mut vals, mut idx, mut k_left, mut x0) = (x.clone(), None::<Tensor>, k.max(1), x0);
    loop {
        let splits = if k_left <= MIN_PER_SPLIT {
            1
        } else {
            (TARGET_INVOCATIONS / (a * b).max(1))
                .clamp(1, k_left / MIN_PER_SPLIT)
                .max(1)
        };
        let scale = if splits == 1 && op == ReduceOp::Mean {
            1.0 / total_k as f32
        } else {
            1.0
        };
        let (v, i) = pass(
            device,
            op,
            &vals,
            idx.as_ref(),
            a,
            k_left,
            b,
            splits,
            scale,
            x0,
        )?;
        (vals, idx, x0) = (v, i, 0);
        if splits == 1 {
            return Ok((vals, idx));
        }
        k_left = splits;
    }
}

/// [`reduce_akb`] for an `x` past the binding limit: each piece of at most one binding
/// (whole rows of [a, k·b] when a row fits, else blocks of k within one row) is reduced on
/// its own window, and the partial results are combined (sum, max, min) and put back in
/// order. Positions (argmax, argmin) are not combined: those return an error.
fn reduce_in_pieces(op: ReduceOp, x: &Tensor, a: usize, k: usize, b: usize) -> Result<Tensor> {
    let dev = x.device();
    let limit = (dev.binding_limit() / 4) as usize;
    let align = (dev.binding_alignment() / 4) as usize;
    if op.code() >= 3 {
        return Err(Error::Unsplit {
            op: "argmax/argmin",
            bytes: x.size_in_bytes(),
            limit: dev.binding_limit(),
        });
    }
    // Binds elements start..start+len from the aligned offset below start.
    let piece = |start: usize, pa: usize, pk: usize| -> Result<Tensor> {
        let skip = start % align;
        let w = x.window(start - skip, skip + pa * pk * b)?;
        let sum_op = if op == ReduceOp::Mean { ReduceOp::Sum } else { op };
        Ok(reduce_akb(sum_op, &w, skip, pa, pk, b, k)?.0)
    };
    let combine = |acc: Tensor, t: &Tensor| match op {
        ReduceOp::Max => acc.maximum(t),
        ReduceOp::Min => acc.minimum(t),
        _ => acc.add(t),
    };
    let row = k * b;
    let mut parts = Vec::new();
    if row + align <= limit {
        let per = (limit - align) / row;
        let mut a0 = 0;
        while a0 < a {
            let pa = per.min(a - a0);
            parts.push(piece(a0 * row, pa, k)?);
            a0 += pa;
        }
    } else {
        let per = (limit - align) / b;
        if per == 0 {
            return Err(Error::Unsplit {
                op: "reduce",
                bytes: 4 * b as u64,
                limit: dev.binding_limit(),
            });
        }
        for ai in 0..a {
            let mut acc: Option<Tensor> = None;
            let mut k0 = 0;
            while k0 < k {
                let pk = per.min(k - k0);
                let t = piece(ai * row + k0 * b, 1, pk)?;
                acc = Some(match acc {
                    None => t,
                    Some(acc) => combine(acc, &t)?,
                });
                k0 += pk;
            }
            parts.push(acc.expect("k > 0"));
        }
    }
    let parts: Vec<&Tensor> = parts.iter().collect();
    let out = if parts.len() == 1 {
        parts[0].clone()
    } else {
        Tensor::concat(&parts, 0)?
    };
    match op {
        ReduceOp::Mean => out.mul_scalar(1.0 / k as f32),
        _ => Ok(out),
    }
}

impl Tensor {
    /// Reduces over `axes` (negative counts from the end; empty means all axes).
    /// Arg-reductions take exactly one axis and return u32 positions along it.
    pub fn reduce(&self, op: ReduceOp, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let name = "reduce";
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].reduce(op, axes, keepdims))? {
            return Ok(y);
        }
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
        if k == 0 {
            return Tensor::zeros(self.device(), &out_shape, DType::F32);
        }
        let (vals, idx) = if x.fits_binding() {
            reduce_akb(op, &x, 0, a, k, b, k)?
        } else {
            (reduce_in_pieces(op, &x, a, k, b)?, None)
        };
        let result = if arg {
            idx.ok_or(Error::Unsplit {
                op: "argmax/argmin",
                bytes: x.size_in_bytes(),
                limit: x.device().binding_limit(),
            })?
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
