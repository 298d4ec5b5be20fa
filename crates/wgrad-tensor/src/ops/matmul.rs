//! Matrix multiplication, 2-D and batched, with a fused bias + activation write-out
//! (`shaders/matmul.wgsl`).
//!
//! Two kernels, chosen by [`Device::strategy`](crate::Device::strategy): workgroup-memory tiles
//! for GPUs and register blocking for CPU adapters. A transposed operand is materialised by
//! the layout kernel first: that costs O(n²) against the product's O(n³) and keeps one tuned
//! inner loop per strategy.

use std::sync::Mutex;

use super::gemm::{self, Blocking};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::shape::{broadcast, numel};
use crate::{Activation, DType, Error, Result, Tensor};

kernel!(pub static MATMUL: "matmul" in "matmul.wgsl",
    workgroup super::gemm::WG,
    entries ["gemm_tiled", "gemm_blocked"],
    blocks [MatmulParams], helpers ["common/activations.wgsl", "common/gemm.wgsl"]);

params!("Params" => struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    // Element strides between batches (0 broadcasts one matrix).
    a_batch: u32,
    b_batch: u32,
    c_batch: u32,
    // act_linear's negative slope: 1 identity, 0 relu, alpha leaky_relu.
    slope: f32,
    has_bias: u32,
    row0: u32,
    z0: u32,
    /// Elements between rows of A: K, or the whole K when z runs over slices of it.
    lda: u32,
    /// log2 of `gemm_blocked`'s workgroup width along N (set by the launcher).
    wg_log: u32,
});

impl gemm::GemmParams for MatmulParams {
    fn set_origin(&mut self, row0: u32, z0: u32) {
        self.row0 = row0;
        self.z0 = z0;
    }
    fn set_wg_log(&mut self, wg_log: u32) {
        self.wg_log = wg_log;
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

/// How many K slices to compute as a batch when the product has too few output blocks to keep
/// the adapter busy: a dense layer's forward at a small batch ([64, 10816] · [10816, 128]) is
/// one workgroup, which runs on one core of a CPU adapter (and one compute unit of a GPU).
/// `None` when the product already has enough blocks or K is too short to be worth it.
fn split_k(dev: &crate::Device, blk: Blocking, m: usize, n: usize, k: usize) -> Option<usize> {
    const TARGET_GROUPS: usize = 16;
    const MIN_SLICE: usize = 512;
    let groups = gemm::output_groups(dev, blk, m, n);
    // At most MAX_LOOP k-steps per invocation, however many output blocks there are.
    let slices = (TARGET_GROUPS / groups.max(1))
        .min(k / MIN_SLICE)
        .max(k.div_ceil(super::MAX_LOOP));
    (slices >= 2).then_some(slices)
}

/// The slice count for `a · b` by measurement (src/tune.rs): the heuristic's count, half
/// and a quarter of it, and twice it, timed at the first product of this shape on this
/// adapter. How many slices pay for their partial sums depends on how many cores or compute
/// units run them, which a formula does not know.
fn tuned_slices(dev: &crate::Device, a: &Tensor, b: &Tensor, slices: usize) -> Result<usize> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let floor = k.div_ceil(super::MAX_LOOP).max(2);
    let mut candidates: Vec<u32> = [slices / 4, slices / 2, slices, 2 * slices]
        .into_iter()
        .filter(|&s| s >= floor && k / s >= 4)
        .map(|s| s as u32)
        .collect();
    candidates.dedup();
    let what = format!(
        "matmul split-K slices, [{m}, {k}] x [{k}, {n}], {:?}",
        dev.strategy()
    );
    let s = dev
        .tuner()
        .choose(dev, &what, slices as u32, &candidates, |s| {
            split_k_product(a, b, s as usize).map(drop)
        })?;
    Ok(s as usize)
}

/// `a · b` (`[M, K] · [K, N]`) as `slices` products over slices of K, summed: A is rearranged
/// to `[S, M, K/S]` (one copy, inner runs contiguous), B is already `[S, K/S, N]` in memory.
fn split_k_product(a: &Tensor, b: &Tensor, slices: usize) -> Result<Tensor> {
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let n = b.shape()[1];
    if let Some(s) = even_slices(k, slices) {
        return strided_slices_product(a, b, s);
    }
    // Slices a multiple of 4 long keep the vec4 loads; the tail is zero padding.
    let kc = k.div_ceil(slices).div_ceil(4) * 4;
    let slices = k.div_ceil(kc);
    let pad = slices * kc - k;
    let (a, b) = if pad > 0 {
        (a.pad(&[0, 0], &[0, pad])?, b.pad(&[0, 0], &[pad, 0])?)
    } else {
        (a.clone(), b.clone())
    };
    let a = a.reshape(&[m, slices, kc])?.permute(&[1, 0, 2])?;
    let b = b.reshape(&[slices, kc, n])?;
    a.matmul(&b)?.sum(&[0], false)
}

/// A slice count near `slices` that cuts K into equal runs that are whole vec4s, if any
/// (within a factor of 2): then the slices are read where they lie.
fn even_slices(k: usize, slices: usize) -> Option<usize> {
    (slices..=2 * slices)
        .chain((slices.div_ceil(2)..slices).rev())
        .find(|&s| s >= 2 && k.is_multiple_of(s) && (k / s).is_multiple_of(4))
}

/// [`split_k_product`] without rearranging A: slice z reads A's columns z·kc .. (z+1)·kc
/// in place (rows `lda = K` apart) and B's rows of the same range, writing [S, M, N] partial
/// products that the reduce kernel adds.
fn strided_slices_product(a: &Tensor, b: &Tensor, slices: usize) -> Result<Tensor> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let kc = k / slices;
    let dev = a.device();
    let out = Tensor::uninit(dev, "matmul", &[slices, m, n], DType::F32)?;
    let blk = gemm::blocking_for(n);
    let spec = spec(true, n.is_multiple_of(4), blk);
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: kc as u32,
        a_batch: kc as u32,
        b_batch: (kc * n) as u32,
        c_batch: (m * n) as u32,
        slope: 1.0,
        has_bias: 0,
        row0: 0,
        z0: 0,
        lda: k as u32,
        wg_log: 0,
    };
    gemm::launch(
        dev,
        "matmul",
        gemm::GemmLaunch {
            kernel: &MATMUL,
            spec: &spec,
            blocking: blk,
            m,
            n,
            zs: slices,
            params,
            buffers: &[a.bind(), b.bind(), out.bind(), dev.dummy(0)],
        },
    )?;
    out.sum(&[0], false)
}

/// The specialisation for operands with 4-aligned rows or not, and one register blocking.
pub(crate) fn spec(a_vec4: bool, b_vec4: bool, blk: Blocking) -> Spec {
    let a = if a_vec4 {
        gemm::ALoad::Rows4
    } else {
        gemm::ALoad::Scalar
    };
    spec_with(a, b_vec4, false, blk)
}

/// [`spec`] with A read as `a_load` says (`Transposed`: A stored `[K, M]`) and, with `c_t`,
/// C written transposed (`[N, M]`, M a multiple of 4): register-blocked strategy only.
pub(crate) fn spec_with(a_load: gemm::ALoad, b_vec4: bool, c_t: bool, blk: Blocking) -> Spec {
    static CACHE: gemm::SpecCache<(gemm::ALoad, bool, bool, gemm::BlockShape)> = Mutex::new(Vec::new());
    gemm::memo(&CACHE, (a_load, b_vec4, c_t, blk.shader_key()), || {
        let a_vec4 = a_load != gemm::ALoad::Scalar;
        let vec = |v: bool| if v { "vec4<f32>" } else { "f32" };
        let mut s = Spec::new()
            .alias("T", "vec4<f32>")
            .alias("AT", vec(a_vec4))
            .alias("BT", vec(b_vec4))
            .alias("CT", vec(b_vec4));
        s = if a_vec4 {
            s.line("fn load_a_elem(e: u32) -> f32 { return a[e / 4u][e % 4u]; }")
                .line("fn load_a4(r: u32, k: u32) -> vec4<f32> { return a[(r + k) / 4u]; }")
                .line("fn load_at4(z: u32, k: u32, row: u32) -> vec4<f32> { return a[(z * p.a_batch + k * p.m + row) / 4u]; }")
        } else {
            s.line("fn load_a_elem(e: u32) -> f32 { return a[e]; }")
        };
        s = if b_vec4 {
            s.line("fn load_b(e: u32) -> vec4<f32> { return b[e / 4u]; }")
                .line("fn store_c(e: u32, col: u32, v: vec4<f32>) { c[e / 4u] = v; }")
        } else {
            s.line("fn load_b(e: u32) -> vec4<f32> { return vec4<f32>(b[e], b[e + 1u], b[e + 2u], b[e + 3u]); }")
                .line("fn store_c(e: u32, col: u32, v: vec4<f32>) { for (var j = 0u; j < 4u; j++) { if (col + j < p.n) { c[e + j] = v[j]; } } }")
        };
        // Four rows of one column of C at a time, at element e = col·M + row (a multiple of 4).
        s = if b_vec4 {
            s.line("fn store_ct(e: u32, v: vec4<f32>) { c[e / 4u] = v; }")
        } else {
            s.line("fn store_ct(e: u32, v: vec4<f32>) { for (var j = 0u; j < 4u; j++) { c[e + j] = v[j]; } }")
        };
        s.line(&gemm::blocked_entry_with(blk, a_load, c_t))
    })
}

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    for a_vec4 in [false, true] {
        for b_vec4 in [false, true] {
            for blk in gemm::all_blockings() {
                v.push((&MATMUL, spec(a_vec4, b_vec4, blk)));
                if a_vec4 {
                    v.push((&MATMUL, spec_with(gemm::ALoad::Transposed, b_vec4, false, blk)));
                    v.push((&MATMUL, spec_with(gemm::ALoad::Rows4, b_vec4, true, blk)));
                }
            }
        }
    }
    v
}

impl Tensor {
    /// A·Bᵀ as (B·Aᵀ)ᵀ when transposing A and the product moves fewer values than transposing
    /// B: a dense layer's input gradient, g [64, 128] · Wᵀ with W [10816, 128], transposes
    /// 0.7 M values instead of 1.4 M. Plain 2-D products only (no bias or activation).
    fn matmul_by_transposed_product(
        &self,
        rhs: &Tensor,
        o: MatmulOptions<'_>,
    ) -> Result<Option<Tensor>> {
        let plain = o.bias.is_none() && o.activation == Activation::Linear;
        if !(o.transpose_b && !o.transpose_a && plain && self.rank() == 2 && rhs.rank() == 2) {
            return Ok(None);
        }
        let (m, k, n) = (self.shape()[0], self.shape()[1], rhs.shape()[0]);
        if rhs.shape()[1] != k || m * k + m * n >= n * k {
            return Ok(None);
        }
        let bt = MatmulOptions {
            transpose_b: true,
            ..Default::default()
        };
        Ok(Some(rhs.matmul_impl(self, bt, true)?))
    }

    /// Matrix product over the last two axes, batched over the leading ones (NumPy rules:
    /// a [.., M, K] · b [.., K, N] -> [.., M, N]).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_with(rhs, MatmulOptions::default())
    }

    /// `act(op(self) · op(rhs) + bias)` in one kernel, where op transposes when asked.
    pub fn matmul_with(&self, rhs: &Tensor, o: MatmulOptions<'_>) -> Result<Tensor> {
        self.matmul_impl(rhs, o, false)
    }

    /// [`Tensor::matmul_with`]; with `transposed_out` the result comes back transposed
    /// (`[N, M]`), written so by the register-blocked kernel when it can (2-D, M a multiple of
    /// 4, no bias or activation) and transposed after the product otherwise.
    fn matmul_impl(
        &self,
        rhs: &Tensor,
        o: MatmulOptions<'_>,
        transposed_out: bool,
    ) -> Result<Tensor> {
        let name = "matmul";
        super::same_device(name, &[self, rhs])?;
        let mut operands = vec![self, rhs];
        operands.extend(o.bias);
        if let Some(y) = super::cast::via_f32(&operands, |t| {
            let bias = o.bias.map(|_| &t[2]);
            t[0].matmul_with(&t[1], MatmulOptions { bias, ..o })
        })? {
            return Ok(y);
        }
        self.expect_dtype(name, DType::F32)?;
        rhs.expect_dtype(name, DType::F32)?;
        if self.rank() < 2 || rhs.rank() < 2 {
            return Err(Error::shape(
                name,
                "operands need rank >= 2",
                &[self.shape(), rhs.shape()],
            ));
        }
        if self.rank() == 2 && rhs.rank() == 2 {
            let (m, n) = (
                self.shape()[if o.transpose_a { 1 } else { 0 }],
                rhs.shape()[if o.transpose_b { 0 } else { 1 }],
            );
            let limit = self.device().binding_limit();
            if !self.fits_binding() || !rhs.fits_binding() || DType::F32.bytes_for(m * n) > limit
            {
                return self.matmul_in_pieces(rhs, o);
            }
        }
        if let Some(c) = self.matmul_by_transposed_product(rhs, o)? {
            return Ok(c);
        }
        // A 2-D transposed A is read where it lies by the register-blocked kernels when its
        // rows come in fours (gemm::ALoad::Transposed); otherwise it is transposed first.
        let blocked = self.device().strategy() == crate::Strategy::RegisterBlocked;
        // A product small enough for the 4 x 4 block reads every operand as scalars: its run
        // time is microseconds in any form, and one variant serves all of them (a classifier
        // head's forward and both gradients), where vec4 and transposed reads would each be
        // another pipeline for lavapipe to compile at its first dispatch.
        let small = |macs: usize| macs <= gemm::SMALL_MACS;
        let a_in_place = o.transpose_a
            && blocked
            && !small(self.numel() * rhs.shape()[rhs.rank() - if o.transpose_b { 2 } else { 1 }])
            && self.rank() == 2
            && rhs.rank() == 2
            && self.shape()[1].is_multiple_of(4)
            && gemm::blocking_for(if o.transpose_b {
                rhs.shape()[0]
            } else {
                rhs.shape()[1]
            })
            .rm
            .is_multiple_of(4);
        let a = if o.transpose_a && !a_in_place {
            self.t()?
        } else {
            self.clone()
        };
        let b = if o.transpose_b { rhs.t()? } else { rhs.clone() };
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = if a_in_place {
            (a.shape()[1], a.shape()[0])
        } else {
            (a.shape()[ra - 2], a.shape()[ra - 1])
        };
        let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                name,
                format!("inner extents differ ({k} vs {k2}): the first operand's last axis must equal the second's rows (transpose_a / transpose_b flip an operand)"),
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
        let c_t = transposed_out
            && blocked
            && batch_shape.is_empty()
            && m.is_multiple_of(4)
            && o.bias.is_none()
            && o.activation == Activation::Linear
            && gemm::blocking_for(n).rm.is_multiple_of(4);
        if transposed_out && !c_t {
            return self.matmul_impl(rhs, o, false)?.t();
        }
        let mut out_shape = batch_shape.clone();
        out_shape.extend(if c_t { [n, m] } else { [m, n] });
        let out = Tensor::uninit(self.device(), name, &out_shape, DType::F32)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        if k == 0 {
            return Tensor::zeros(self.device(), &out_shape, DType::F32)?
                .bias_act(o.bias, o.activation);
        }
        let dev = self.device();
        let blk = gemm::blocking_for_product(batch * m * n * k, n);
        let small = small(batch * m * n * k);
        if batch == 1 {
            if let Some(slices) = split_k(dev, blk, m, n, k) {
                let a = if a_in_place { a.t()? } else { a };
                let slices = tuned_slices(dev, &a, &b, slices)?;
                let c = split_k_product(&a, &b, slices)?.bias_act(o.bias, o.activation)?;
                return if c_t { c.t() } else { Ok(c) };
            }
        }
        let slope = o.activation.fused_slope().unwrap_or(1.0);
        let a_load = if a_in_place {
            gemm::ALoad::Transposed
        } else if k.is_multiple_of(4) && !small {
            gemm::ALoad::Rows4
        } else {
            gemm::ALoad::Scalar
        };
        let spec = spec_with(a_load, n.is_multiple_of(4) && !small, c_t, blk);
        let bias_buf = o.bias.map_or(dev.dummy(0), |t| t.bind());
        let params = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_batch: sa,
            b_batch: sb,
            c_batch: (m * n) as u32,
            slope,
            has_bias: o.bias.is_some() as u32,
            row0: 0,
            z0: 0,
            lda: k as u32,
            wg_log: 0,
        };
        gemm::launch(
            dev,
            name,
            gemm::GemmLaunch {
                kernel: &MATMUL,
                spec: &spec,
                blocking: blk,
                m,
                n,
                zs: batch,
                params,
                buffers: &[a.bind(), b.bind(), out.bind(), bias_buf],
            },
        )?;
        match o.activation.fused_slope() {
            Some(_) => Ok(out),
            None => out.activation(o.activation),
        }
    }

    /// [`Tensor::matmul_with`] for 2-D operands or a product past the binding limit (a VGG
    /// fc1 weight is 411 MB; lavapipe binds 128 MiB). Every piece is an ordinary product of
    /// windows of the stored operands, and no large operand is ever transposed:
    /// - a large product, or a large untransposed A: blocks of output rows, each
    ///   `A[rows] · op(B)`, copied into place (op(B) must fit);
    /// - a large transposed A or untransposed B (a dense layer's weight in its forward): K in
    ///   blocks, whose row windows of the stored operand feed partial products that are
    ///   summed;
    /// - a large transposed B (the weight in a dense layer's input gradient): blocks of
    ///   output columns, each `op(A) · B[rows]ᵀ`, joined.
    fn matmul_in_pieces(&self, rhs: &Tensor, o: MatmulOptions<'_>) -> Result<Tensor> {
        let name = "matmul";
        let dev = self.device();
        let (a, b) = (self, rhs);
        let (m, k) = if o.transpose_a {
            (a.shape()[1], a.shape()[0])
        } else {
            (a.shape()[0], a.shape()[1])
        };
        let (k2, n) = if o.transpose_b {
            (b.shape()[1], b.shape()[0])
        } else {
            (b.shape()[0], b.shape()[1])
        };
        if k != k2 {
            return Err(Error::shape(
                name,
                format!("inner extents differ ({k} vs {k2}): the first operand's last axis must equal the second's rows (transpose_a / transpose_b flip an operand)"),
                &[a.shape(), b.shape()],
            ));
        }
        let limit = dev.binding_limit();
        let big_c = DType::F32.bytes_for(m * n) > limit;
        let unsplit = || Error::Unsplit {
            op: name,
            bytes: a.size_in_bytes().max(b.size_in_bytes()),
            limit,
        };
        if k == 0 {
            return Tensor::zeros(dev, &[m, n], DType::F32)?.bias_act(o.bias, o.activation);
        }
        // Rows per window of stored operands `w1` and `w2` elements wide (one operand: equal):
        // each window within the limit, every one starting aligned.
        let rows_per = |w1: usize, w2: usize| {
            super::chunk_len(dev, 4 * w1.max(w2) as u64, 4 * w1.min(w2) as u64) as usize
        };
        let plain = MatmulOptions {
            bias: None,
            activation: Activation::Linear,
            ..o
        };
        if big_c || (!a.fits_binding() && !o.transpose_a) {
            if !b.fits_binding() {
                return Err(unsplit());
            }
            let a = if o.transpose_a { a.t()? } else { a.clone() };
            let out = Tensor::uninit(dev, name, &[m, n], DType::F32)?;
            let per = rows_per(k, n).min(m);
            if per == 0 {
                return Err(unsplit());
            }
            let mut r0 = 0;
            while r0 < m {
                let r1 = (r0 + per).min(m);
                let piece = a.rows(r0, r1)?.matmul_with(
                    b,
                    MatmulOptions {
                        transpose_a: false,
                        ..o
                    },
                )?;
                super::layout::strided_copy(&piece, &out, &[r1 - r0, n], &[n, 1], 0, &[n, 1], r0 * n)?;
                r0 = r1;
            }
            return Ok(out);
        }
        let big_a = !a.fits_binding();
        let big_b = !b.fits_binding();
        if big_a || !o.transpose_b {
            // K in blocks: row windows of whichever stored operand holds K along its rows,
            // column slices of the other.
            let per = match (o.transpose_a, o.transpose_b) {
                (true, false) => rows_per(m, n),
                (true, true) => rows_per(m, m),
                (false, _) => rows_per(n, n),
            }
            .min(k);
            if per == 0 || (big_a && !o.transpose_a) || (big_b && o.transpose_b) {
                return Err(unsplit());
            }
            let mut acc: Option<Tensor> = None;
            let mut k0 = 0;
            while k0 < k {
                let k1 = (k0 + per).min(k);
                let pa = if o.transpose_a {
                    a.rows(k0, k1)?
                } else {
                    a.slice(1, k0, k1)?
                };
                let pb = if o.transpose_b {
                    b.slice(1, k0, k1)?
                } else {
                    b.rows(k0, k1)?
                };
                let p = pa.matmul_with(&pb, plain)?;
                acc = Some(match acc {
                    None => p,
                    Some(acc) => acc.add(&p)?,
                });
                k0 = k1;
            }
            return acc
                .expect("k > 0 here")
                .bias_act(o.bias, o.activation);
        }
        // A large transposed B: blocks of output columns from row windows of B.
        let per = rows_per(k, k).min(n);
        if per == 0 || big_a {
            return Err(unsplit());
        }
        let mut parts = Vec::new();
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + per).min(n);
            parts.push(a.matmul_with(&b.rows(n0, n1)?, plain)?);
            n0 = n1;
        }
        let parts: Vec<&Tensor> = parts.iter().collect();
        Tensor::concat(&parts, 1)?.bias_act(o.bias, o.activation)
    }

    /// `act(self + bias)` with bias broadcast over rows, for the degenerate K = 0 product
    /// and the split-K one.
    fn bias_act(&self, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        let x = match bias {
            Some(b) => self.add(b)?,
            None => self.clone(),
        };
        x.activation(act)
    }
}
