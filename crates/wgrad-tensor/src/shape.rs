//! Shape arithmetic: element counts, contiguous strides, NumPy broadcasting, axis checks.

use crate::{Error, Result};

/// Highest rank the kernels index (their parameter blocks hold eight extents).
pub const MAX_RANK: usize = 8;

/// Number of elements of a shape (1 for a scalar of rank 0).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// NumPy broadcasting of two shapes: align on the right, extents must match or be 1.
pub fn broadcast(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("extents {da} and {db} at dimension {i} cannot be broadcast: each pair must be equal or one of them 1 (reshape an operand to line up its axes)"),
                    &[a, b],
                ))
            }
        };
    }
    Ok(out)
}

/// Strides (in elements) for reading a tensor of `shape` as if it had `out` (a broadcast of it):
/// broadcast dimensions get stride 0.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                own[i - off]
            }
        })
        .collect()
}

/// Resolves a possibly negative axis against `rank`.
pub fn axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    if axis < -r || axis >= r {
        return Err(Error::invalid(
            op,
            format!("axis {axis} is out of range for rank {rank}: use 0..{rank}, or -1..-{rank} counting from the end"),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// Resolves a list of axes, rejecting repeats.
pub fn axes(op: &'static str, list: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let a = axis(op, a, rank)?;
        if out.contains(&a) {
            return Err(Error::invalid(op, format!("axis {a} is given twice")));
        }
        out.push(a);
    }
    out.sort_unstable();
    Ok(out)
}

pub(crate) fn check_rank(op: &'static str, shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(Error::shape(
            op,
            format!("rank above {MAX_RANK} is not supported"),
            &[shape],
        ));
    }
    Ok(())
}
