//! Permute, transpose, slice and concat as strided-copy kernels (`shaders/layout.wgsl`).
//! Tensors stay dense, so every other kernel indexes with plain row-major strides.

use super::{launch_1d, pack2x4, same_device};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::shape::{axis as resolve_axis, numel, strides};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static LAYOUT: "layout" in "layout.wgsl",
    workgroup 256,
    entries ["copy", "copy_half", "transpose"],
    blocks [LayoutParams, TransposeParams]);

params!("Params" => struct LayoutParams {
    // Extents and strides, rank <= 8.
    shape: [[u32; 4]; 2],
    src_strides: [[u32; 4]; 2],
    dst_strides: [[u32; 4]; 2],
    // Invocations: runs (copy) or output words (copy_half).
    n: u32,
    row: u32,
    rank: u32,
    src_base: u32,
    dst_base: u32,
    // copy_half: output elements.
    total: u32,
    // copy: runs of RUN elements per innermost row.
    runs_per_row: u32,
    pad: u32,
});

params!("TParams" => struct TransposeParams {
    rows: u32,
    cols: u32,
    pad0: u32,
    pad1: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&LAYOUT, Spec::new())]
}

/// Copies the `shape`-sized block of `src` (at `src_base`, `src_strides`) into `dst` (at
/// `dst_base`, `dst_strides`). f16 needs a dense destination (`dst_strides` row-major, base 0).
///
/// When `src` or `dst` is past the binding limit, the block is copied in pieces along its
/// first axis, each binding the windows of `src` and `dst` its elements span: slices,
/// concatenations and pads of large tensors along their outer axis, whose pieces are
/// contiguous runs. A permutation whose piece spans more than one binding (the transpose of
/// a large matrix) returns [`Error::Unsplit`].
pub(crate) fn strided_copy(
    src: &Tensor,
    dst: &Tensor,
    shape: &[usize],
    src_strides: &[usize],
    src_base: usize,
    dst_strides: &[usize],
    dst_base: usize,
) -> Result<()> {
    if (src.fits_binding() && dst.fits_binding()) || shape.is_empty() || numel(shape) == 0 {
        return strided_copy_once(
            src,
            dst,
            shape,
            src_strides,
            src_base,
            dst_strides,
            dst_base,
        );
    }
    let dev = src.device();
    let unsplit = || Error::Unsplit {
        op: "layout",
        bytes: src.size_in_bytes().max(dst.size_in_bytes()),
        limit: dev.binding_limit(),
    };
    if src.dtype() == DType::F16 {
        return Err(unsplit());
    }
    let limit = (dev.binding_limit() / 4) as usize;
    let align = (dev.binding_alignment() / 4) as usize;
    // Elements one row of the block spans in a tensor, beyond its first.
    let inner = |st: &[usize]| -> usize { (1..shape.len()).map(|d| (shape[d] - 1) * st[d]).sum() };
    let (si, di) = (inner(src_strides), inner(dst_strides));
    // Most rows whose span, after rounding its start down to the alignment, fits.
    let rows_within = |stride: usize, inner: usize| -> usize {
        match limit.checked_sub(align + inner + 1) {
            None => 0,
            Some(room) if stride == 0 => shape[0].min(usize::MAX - room),
            Some(room) => room / stride + 1,
        }
    };
    let per = rows_within(src_strides[0], si)
        .min(rows_within(dst_strides[0], di))
        .min(shape[0]);
    if per == 0 {
        return Err(unsplit());
    }
    let mut piece_shape = shape.to_vec();
    let mut r0 = 0;
    while r0 < shape[0] {
        let rows = per.min(shape[0] - r0);
        piece_shape[0] = rows;
        // The aligned window of `t` holding elements base.. of a piece, and the piece's base
        // inside it.
        let window = |t: &Tensor, base: usize, stride: usize, inner: usize| {
            let start = base - base % align;
            let len = (base + (rows - 1) * stride + inner + 1 - start).min(t.numel() - start);
            t.window(start, len).map(|w| (w, base - start))
        };
        let (sw, sb) = window(src, src_base + r0 * src_strides[0], src_strides[0], si)?;
        let (dw, db) = window(dst, dst_base + r0 * dst_strides[0], dst_strides[0], di)?;
        strided_copy_once(&sw, &dw, &piece_shape, src_strides, sb, dst_strides, db)?;
        r0 += rows;
    }
    Ok(())
}

fn strided_copy_once(
    src: &Tensor,
    dst: &Tensor,
    shape: &[usize],
    src_strides: &[usize],
    src_base: usize,
    dst_strides: &[usize],
    dst_base: usize,
) -> Result<()> {
    let (unit, one) = ([1usize], [1usize]);
    let (shape, src_strides, dst_strides) = if shape.is_empty() {
        (&unit[..], &one[..], &one[..])
    } else {
        (shape, src_strides, dst_strides)
    };
    let n = numel(shape);
    let half = src.dtype() == DType::F16;
    // `copy` moves runs of RUN (8) elements of the innermost axis per invocation.
    let runs_per_row = shape[shape.len() - 1].div_ceil(8).max(1);
    let threads = if half {
        n.div_ceil(2)
    } else {
        (n / shape[shape.len() - 1].max(1)) * runs_per_row
    };
    let p = LayoutParams {
        shape: pack2x4(shape),
        src_strides: pack2x4(src_strides),
        dst_strides: pack2x4(dst_strides),
        n: threads as u32,
        row: 0,
        rank: shape.len() as u32,
        src_base: src_base as u32,
        dst_base: dst_base as u32,
        total: n as u32,
        runs_per_row: runs_per_row as u32,
        pad: 0,
    };
    let entry = if half { "copy_half" } else { "copy" };
    launch_1d(
        src.device(),
        &LAYOUT,
        entry,
        &Spec::new(),
        |row| LayoutParams { row, ..p },
        &[src.bind(), dst.bind()],
        threads as u64,
    )
}

/// The tiled kernel for a permutation that swaps the last two axes and keeps the others in
/// place (a batched matrix transpose). Returns false, launching nothing, for any other
/// permutation, for f16 (two values per word), or for a grid past the dispatch limits.
fn transpose_last_two(src: &Tensor, dst: &Tensor, dims: &[usize], perm: &[usize]) -> Result<bool> {
    let r = perm.len();
    let swaps = r >= 2
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p);
    if !swaps || src.dtype() == DType::F16 || src.numel() == 0 {
        return Ok(false);
    }
    let (rows, cols) = (dims[r - 2], dims[r - 1]);
    let batch: usize = dims[..r - 2].iter().product();
    let max = src.device().limits().max_compute_workgroups_per_dimension as usize;
    let grid = [cols.div_ceil(32), rows.div_ceil(32), batch];
    if grid.iter().any(|&g| g > max) {
        return Ok(false);
    }
    src.device().dispatch(crate::device::Dispatch {
        kernel: &LAYOUT,
        entry: "transpose",
        spec: &Spec::new(),
        params: bytemuck::bytes_of(&TransposeParams {
            rows: rows as u32,
            cols: cols as u32,
            pad0: 0,
            pad1: 0,
        }),
        buffers: &[src.bind(), dst.bind()],
        bindings: None,
        workgroups: [grid[0] as u32, grid[1] as u32, grid[2] as u32],
    })?;
    Ok(true)
}

/// The same data movement as `perm` over `shape`, on as few axes as possible: axes of extent 1
/// are dropped, and input axes that stay consecutive and in order in the output are merged.
/// Returns the merged input extents and the permutation over them (at least one axis).
fn canonical_permutation(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let kept: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
    // Output-order runs of input axes p, p+1, p+2, ... (unit axes already gone, so an input
    // axis "next" to p is the next kept one).
    let mut order: Vec<usize> = kept.clone();
    order.sort_unstable();
    let next = |p: usize| {
        order
            .iter()
            .position(|&q| q == p)
            .and_then(|i| order.get(i + 1))
    };
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for &p in &kept {
        match runs.last_mut() {
            Some(run) if next(*run.last().unwrap()) == Some(&p) => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    if runs.is_empty() {
        return (vec![1], vec![0]);
    }
    // Number the runs by where they sit in the input.
    let mut by_input: Vec<usize> = (0..runs.len()).collect();
    by_input.sort_by_key(|&r| runs[r][0]);
    let dims: Vec<usize> = by_input
        .iter()
        .map(|&r| runs[r].iter().map(|&a| shape[a]).product())
        .collect();
    let perm: Vec<usize> = (0..runs.len())
        .map(|r| by_input.iter().position(|&q| q == r).unwrap())
        .collect();
    (dims, perm)
}

impl Tensor {
    /// Reorders axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let name = "permute";
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::invalid(
                name,
                format!("{perm:?} is not a permutation of {rank} axes: list each axis 0..{rank} exactly once"),
            ));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let out = Tensor::uninit(self.device(), name, &shape, self.dtype())?;
        // The kernels see the permutation with unit axes dropped and runs of axes that stay
        // adjacent merged: a conv filter's [KH, KW, C, 1, O] -> [1, KH, KW, O, C] is then a
        // batched [C, O] transpose for the tiled kernel instead of a 5-D strided gather.
        let (dims, perm) = canonical_permutation(self.shape(), perm);
        if !transpose_last_two(self, &out, &dims, &perm)? {
            let own = strides(&dims);
            let src_strides: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
            let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
            strided_copy(
                self,
                &out,
                &out_dims,
                &src_strides,
                0,
                &strides(&out_dims),
                0,
            )?;
        }
        Ok(out)
    }

    /// Zero padding: `before[i]` zeros ahead of and `after[i]` zeros behind axis `i` (one
    /// entry per axis). f16 goes through f32 (two halves share a word).
    pub fn pad(&self, before: &[usize], after: &[usize]) -> Result<Tensor> {
        let name = "pad";
        let rank = self.rank();
        if before.len() != rank || after.len() != rank {
            return Err(Error::invalid(
                name,
                format!(
                    "needs {rank} leading and {rank} trailing amounts, got {} and {}",
                    before.len(),
                    after.len()
                ),
            ));
        }
        if self.dtype() == DType::F16 {
            // Two halves share a word: pad the f32 values and store the result again.
            return self.widened()?.pad(before, after)?.narrowed();
        }
        let shape: Vec<usize> = (0..rank)
            .map(|i| before[i] + self.shape()[i] + after[i])
            .collect();
        let out = Tensor::zeros(self.device(), &shape, self.dtype())?;
        if self.numel() == 0 {
            return Ok(out);
        }
        let dst_strides = strides(&shape);
        let base = (0..rank).map(|i| before[i] * dst_strides[i]).sum();
        strided_copy(
            self,
            &out,
            self.shape(),
            &strides(self.shape()),
            0,
            &dst_strides,
            base,
        )?;
        Ok(out)
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (
            resolve_axis("transpose", a, self.rank())?,
            resolve_axis("transpose", b, self.rank())?,
        );
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Swaps the last two axes (a matrix transpose, batched).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::shape("t", "needs rank >= 2", &[self.shape()]));
        }
        self.transpose(-2, -1)
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        let name = "slice";
        let ax = resolve_axis(name, axis, self.rank())?;
        let len = self.shape()[ax];
        if start > end || end > len {
            return Err(Error::invalid(
                name,
                format!("range {start}..{end} is outside 0..{len} of axis {ax}: start must be at most end, end at most {len}"),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape[ax] = end - start;
        let own = strides(self.shape());
        let out = Tensor::uninit(self.device(), name, &shape, self.dtype())?;
        strided_copy(
            self,
            &out,
            &shape,
            &own,
            start * own[ax],
            &strides(&shape),
            0,
        )?;
        Ok(out)
    }

    /// Joins tensors along `axis`; all other extents must match.
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let name = "concat";
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid(name, "no tensors given"))?;
        same_device(name, tensors)?;
        let ax = resolve_axis(name, axis, first.rank())?;
        let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
        for t in tensors {
            t.expect_dtype(name, first.dtype())?;
            let fits = t.rank() == first.rank()
                && (0..t.rank()).all(|d| d == ax || t.shape()[d] == first.shape()[d]);
            if !fits {
                return Err(Error::shape(
                    name,
                    format!("extents must match except along axis {ax}"),
                    &shapes,
                ));
            }
        }
        if first.dtype() == DType::F16 {
            // Two halves share a word, so pieces cannot be written into place independently.
            let wide: Vec<Tensor> = tensors
                .iter()
                .map(|t| t.to_dtype(DType::F32))
                .collect::<Result<_>>()?;
            let refs: Vec<&Tensor> = wide.iter().collect();
            return Tensor::concat(&refs, axis)?.to_dtype(DType::F16);
        }
        let mut shape = first.shape().to_vec();
        shape[ax] = tensors.iter().map(|t| t.shape()[ax]).sum();
        let out = Tensor::uninit(first.device(), name, &shape, first.dtype())?;
        let out_strides = strides(&shape);
        let mut offset = 0;
        for t in tensors {
            strided_copy(
                t,
                &out,
                t.shape(),
                &strides(t.shape()),
                0,
                &out_strides,
                offset * out_strides[ax],
            )?;
            offset += t.shape()[ax];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_permutation as canon;

    #[test]
    fn canonical_permutation_drops_unit_axes_and_merges_runs() {
        // The conv input-gradient filter reorder: a batched [C, O] transpose.
        assert_eq!(
            canon(&[3, 3, 8, 1, 16], &[3, 0, 1, 4, 2]),
            (vec![9, 8, 16], vec![0, 2, 1])
        );
        assert_eq!(canon(&[2, 3, 4], &[0, 1, 2]), (vec![24], vec![0]));
        assert_eq!(canon(&[2, 3, 4], &[2, 0, 1]), (vec![6, 4], vec![1, 0]));
        assert_eq!(
            canon(&[2, 3, 4, 5], &[1, 0, 2, 3]),
            (vec![2, 3, 20], vec![1, 0, 2])
        );
        assert_eq!(canon(&[1, 1], &[1, 0]), (vec![1], vec![0]));
        assert_eq!(canon(&[5, 1, 7], &[2, 1, 0]), (vec![5, 7], vec![1, 0]));
        assert_eq!(
            canon(&[2, 3, 4, 5], &[3, 1, 2, 0]),
            (vec![2, 12, 5], vec![2, 1, 0])
        );
    }
}
