//! The GEMM machinery shared by matmul and the convolutions (`shaders/common/gemm.wgsl`):
//! the register-block generator for CPU adapters, block-shape choice, and the launcher that
//! splits grids past the adapter's per-axis limit.

use crate::device::{Device, Dispatch};
use crate::kernel::{Block, Kernel, Spec};
use crate::{Error, Result, Strategy};

/// Register-block shape of `gemm_blocked`: rows per invocation (RM), vec4 columns per
/// invocation (VN), and the workgroup's invocations along columns (WG_N) and rows (WG_M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Blocking {
    pub rm: u32,
    pub vn: u32,
    pub wg_n: u32,
    pub wg_m: u32,
}

/// 16 rows x 16 columns per invocation measured fastest on lavapipe (LLVM 15, AVX2) among
/// 4..32 rows x 8..32 columns. Every storage load there is a loop over the SIMD lanes, so
/// what counts is loads per FMA: a row of A costs one vec4 load per 4 k-steps and is reused
/// for VN vec4 FMAs; a B vec4 costs one load per k-step and is reused by RM rows.
const RM: u32 = 16;
const VN: u32 = 4;
/// Invocations per workgroup. lavapipe runs 8 lanes per vector; 64 lets its threads take
/// whole workgroups with little scheduling overhead.
pub(crate) const WG: u32 = 64;
/// Products at most 8 columns wide (a U-Net's first level, 8-channel convolutions and their
/// input gradients): 16 columns per invocation would compute half of them on padding, so
/// 8 columns by 32 rows keep the same 64 accumulators busy (U-Net step at 48², 8 filters:
/// see docs/performance.md).
const NARROW: Blocking = Blocking {
    rm: 32,
    vn: 2,
    wg_n: 1,
    wg_m: WG,
};
/// Widths a workgroup can have along N; the rest of its 64 invocations go along M, so a
/// narrow product (a 10-class Dense layer, a 64-channel convolution) still fills its lanes.
pub(crate) const WG_WIDTHS: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

pub(crate) fn blocking_for(n: usize) -> Blocking {
    if n <= (4 * NARROW.vn) as usize {
        return NARROW;
    }
    shaped(RM, VN, n)
}

/// A register block of `rm` rows x `vn` vec4 columns, in a workgroup as wide along N as `n`
/// needs (at most all of it).
fn shaped(rm: u32, vn: u32, n: usize) -> Blocking {
    let invocations = n.div_ceil((4 * vn) as usize) as u32;
    let wg_n = WG_WIDTHS
        .into_iter()
        .find(|&w| w >= invocations)
        .unwrap_or(WG);
    Blocking {
        rm,
        vn,
        wg_n,
        wg_m: WG / wg_n,
    }
}

/// Products of at most this many multiply-adds (a classifier head, 32 x 512 x 10) take a
/// 4 x 4 block. Their run time is microseconds in any blocking, but a 16 x 16 block costs
/// lavapipe 1-3 s of LLVM time at its first dispatch, per variant, while a 4 x 4 one
/// compiles in a tenth of that: on a fresh shader cache the head's three products were a
/// third of a ResNet-34's first step.
pub(crate) const SMALL_MACS: usize = 1 << 21;
const SMALL: (u32, u32) = (4, 1);

/// [`blocking_for`] for a whole product of `macs` multiply-adds with `n` output columns.
pub(crate) fn blocking_for_product(macs: usize, n: usize) -> Blocking {
    if macs <= SMALL_MACS {
        shaped(SMALL.0, SMALL.1, n)
    } else {
        blocking_for(n)
    }
}

/// The part of a [`Blocking`] the generated shader depends on: the register block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlockShape {
    rm: u32,
    vn: u32,
}

impl Blocking {
    /// The workgroup's shape is a run-time parameter, so blockings that differ only in it
    /// share one specialisation, hence one pipeline.
    pub(crate) fn shader_key(self) -> BlockShape {
        BlockShape {
            rm: self.rm,
            vn: self.vn,
        }
    }
}

/// One blocking per register block `blocking_for` can return (for variant enumeration: the
/// workgroup's width does not change the shader).
pub(crate) fn all_blockings() -> impl Iterator<Item = Blocking> {
    [
        blocking_for((4 * VN * WG) as usize),
        NARROW,
        shaped(SMALL.0, SMALL.1, 1),
    ]
    .into_iter()
}

/// The `gemm_blocked` entry point as straight-line WGSL over named accumulators `c{i}_{j}`
/// (row i, vec4 column j), calling the kernel file's loaders (see shaders/common/gemm.wgsl).
/// lavapipe compiles a local array indexed inside a loop into memory gathers and scatters;
/// named values stay in vector registers (8 -> 26 GFLOP/s on a 1024³ matmul). With `a_vec4`
/// the K loop steps by 4 and reads each row of A as one vec4.
pub(crate) fn blocked_entry(blk: Blocking, a_vec4: bool) -> String {
    blocked_entry_with(
        blk,
        if a_vec4 { ALoad::Rows4 } else { ALoad::Scalar },
        false,
    )
}

/// How `gemm_blocked` reads A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ALoad {
    /// One value per row and k-step (`load_a`).
    Scalar,
    /// Four k-steps of a row as one vec4 (`load_a4`; K a multiple of 4).
    Rows4,
    /// A stored transposed, `[K, M]` (`load_at4(z, k, row)`: four rows at one k as a vec4; M
    /// a multiple of 4): a dense layer's weight gradient xᵀ·g reads x where it lies instead
    /// of transposing it first, and four rows cost one load instead of four.
    Transposed,
}

/// [`blocked_entry`] with A read as `a_load` says and, with `c_transposed`, C written
/// transposed through the kernel file's `store_ct(e, v)` (C `[N, M]`, M a multiple of 4:
/// four rows of one column are one vec4, gathered from four accumulators; no bias or
/// activation).
pub(crate) fn blocked_entry_with(blk: Blocking, a_load: ALoad, c_transposed: bool) -> String {
    let (rm, vn) = (blk.rm, blk.vn);
    let mut s = String::new();
    let mut line = |t: String| {
        s += &t;
        s.push('\n');
    };
    // The workgroup's shape (invocations along N and M) is a run-time parameter, `p.wg_log`
    // = log2 of its width, so one pipeline serves every width: lavapipe compiles each pipeline
    // with LLVM at its first dispatch, 1-3 s for a block this size, and a ResNet's channel
    // counts would otherwise need one variant per width. The decode is two shifts per
    // invocation, outside the K loop.
    line(format!("@compute @workgroup_size({WG}, 1, 1)"));
    line("fn gemm_blocked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {".into());
    line("    let z = p.z0 + wg.z;".into());
    line("    let lx = li & ((1u << p.wg_log) - 1u);".into());
    line("    let ly = li >> p.wg_log;".into());
    line(format!(
        "    let row0 = p.row0 + (wg.y * ({WG}u >> p.wg_log) + ly) * {rm}u;"
    ));
    line(format!(
        "    let col0 = ((wg.x << p.wg_log) + lx) * {}u;",
        4 * vn
    ));
    line("    if (col0 >= p.n || row0 >= p.m) { return; }".into());
    line("    let kr = k_range(z);".into());
    for i in 0..rm {
        line(format!("    let r{i} = row_info(z, row0 + {i}u);"));
    }
    for i in 0..rm {
        for j in 0..vn {
            line(format!("    var c{i}_{j} = vec4<f32>(0.0);"));
        }
    }
    // One k-step: VN loads of B, then RM x VN FMAs with row i's A value; the K state of B
    // advances by one. K positions are carried as incremental state (ka, kb) rather than
    // decoded from k: a decode divides by run-time extents, and lavapipe scalarises vector
    // integer division lane by lane.
    let step = |line: &mut dyn FnMut(String), a_of: &dyn Fn(u32) -> String| {
        line("        {".into());
        for j in 0..vn {
            line(format!(
                "        let b{j} = load_b4(z, kb, col0 + {}u);",
                4 * j
            ));
        }
        for i in 0..rm {
            line(format!("        let s{i} = vec4<f32>({});", a_of(i)));
            for j in 0..vn {
                line(format!("        c{i}_{j} = fma(s{i}, b{j}, c{i}_{j});"));
            }
        }
        line("        kb = kb_next(kb);".into());
        line("        }".into());
    };
    line("    var ka = ka_start(z, kr.x);".into());
    line("    var kb = kb_start(z, kr.x);".into());
    if a_load == ALoad::Transposed {
        line("    for (var kk = kr.x; kk < kr.y; kk++) {".into());
        for q in 0..rm / 4 {
            line(format!(
                "        let at{q} = load_at4(z, kk, row0 + {}u);",
                4 * q
            ));
        }
        step(&mut line, &|i| format!("at{}[{}]", i / 4, i % 4));
    } else if a_load == ALoad::Rows4 {
        line("    for (var kq = kr.x / 4u; kq < kr.y / 4u; kq++) {".into());
        for i in 0..rm {
            line(format!("        let av{i} = load_a4(r{i}, ka);"));
        }
        for t in 0..4 {
            step(&mut line, &|i| format!("av{i}[{t}]"));
        }
        line("        ka = ka_next(ka, 4u);".into());
    } else {
        line("    for (var kk = kr.x; kk < kr.y; kk++) {".into());
        step(&mut line, &|i| format!("load_a(r{i}, ka)"));
        line("        ka = ka_next(ka, 1u);".into());
    }
    line("    }".into());
    if c_transposed {
        // The write-out data is unused, but read, so the layout keeps its binding.
        line("    _ = epi_at(z, col0);".into());
        let zc = "z * p.c_batch";
        for j in 0..vn {
            for l in 0..4 {
                let c = 4 * j + l;
                line(format!("    if (col0 + {c}u < p.n) {{"));
                for q in 0..rm / 4 {
                    let r = 4 * q;
                    line(format!(
                        "        if (row0 + {r}u < p.m) {{ store_ct({zc} + (col0 + {c}u) * p.m + row0 + {r}u, vec4<f32>(c{}_{j}[{l}], c{}_{j}[{l}], c{}_{j}[{l}], c{}_{j}[{l}])); }}",
                        r,
                        r + 1,
                        r + 2,
                        r + 3
                    ));
                }
                line("    }".into());
            }
        }
        line("}".into());
        return s;
    }
    for j in 0..vn {
        line(format!("    let epi{j} = epi_at(z, col0 + {}u);", 4 * j));
    }
    for i in 0..rm {
        for j in 0..vn {
            line(format!(
                "    write_out(z, row0 + {i}u, col0 + {}u, c{i}_{j}, epi{j});",
                4 * j
            ));
        }
    }
    line("}".into());
    s
}

/// A kernel's memoised specialisations, keyed by what selects them.
pub(crate) type SpecCache<K> = std::sync::Mutex<Vec<(K, Spec)>>;

/// Memoises a kernel's specialisations: a generated body is kilobytes of text, built once per
/// (kernel, shape class) rather than once per call.
pub(crate) fn memo<K: PartialEq + Copy + Send + 'static>(
    cache: &'static SpecCache<K>,
    key: K,
    build: impl FnOnce() -> Spec,
) -> Spec {
    let mut c = cache.lock().unwrap();
    if let Some((_, s)) = c.iter().find(|(k, _)| *k == key) {
        return s.clone();
    }
    let s = build();
    c.push((key, s.clone()));
    s
}

/// The parameter block of a family on the GEMM skeletons: the skeleton reads `row0` (the
/// first row block of this dispatch) and `z0` (its first z), which the launcher sets per
/// dispatch when the grid is split.
pub(crate) trait GemmParams: Block {
    fn set_origin(&mut self, row0: u32, z0: u32);
    /// log2 of the workgroup's width along N (`gemm_blocked`; see [`blocked_entry_with`]).
    fn set_wg_log(&mut self, wg_log: u32);
}

/// One GEMM-shaped launch: `m` x `n` outputs for each of `zs` values of z.
pub(crate) struct GemmLaunch<'a, P: GemmParams> {
    pub kernel: &'static Kernel,
    pub spec: &'a Spec,
    pub blocking: Blocking,
    pub m: usize,
    pub n: usize,
    pub zs: usize,
    pub params: P,
    pub buffers: &'a [crate::device::View<'a>],
}

/// Dispatches `gemm_tiled` or `gemm_blocked` by the device's strategy, splitting row blocks
/// and z values past the grid's per-axis limit into several dispatches.
/// The entry point and the output block (rows, columns) one workgroup computes.
fn tiling(dev: &Device, blk: Blocking) -> (&'static str, usize, usize) {
    match dev.strategy() {
        Strategy::Tiled => ("gemm_tiled", 64, 64),
        Strategy::RegisterBlocked => (
            "gemm_blocked",
            (blk.rm * blk.wg_m) as usize,
            (4 * blk.vn * blk.wg_n) as usize,
        ),
    }
}

/// How many workgroups an `m`×`n` output takes (per batch entry).
pub(crate) fn output_groups(dev: &Device, blk: Blocking, m: usize, n: usize) -> usize {
    let (_, rows, cols) = tiling(dev, blk);
    m.div_ceil(rows) * n.div_ceil(cols)
}

pub(crate) fn launch<P: GemmParams>(
    dev: &Device,
    op: &'static str,
    mut g: GemmLaunch<'_, P>,
) -> Result<()> {
    let blk = g.blocking;
    let (entry, rows_per_group, cols_per_group) = tiling(dev, blk);
    let max = dev.limits().max_compute_workgroups_per_dimension as usize;
    let gx = g.n.div_ceil(cols_per_group);
    if gx > max {
        return Err(Error::invalid(
            op,
            format!(
                "{} output columns need more than {max} workgroups along the grid's x axis",
                g.n
            ),
        ));
    }
    let row_blocks = g.m.div_ceil(rows_per_group);
    g.params.set_wg_log(blk.wg_n.trailing_zeros());
    for z0 in (0..g.zs).step_by(max) {
        for r0 in (0..row_blocks).step_by(max) {
            g.params.set_origin((r0 * rows_per_group) as u32, z0 as u32);
            dev.dispatch(Dispatch {
                kernel: g.kernel,
                entry,
                spec: g.spec,
                params: bytemuck::bytes_of(&g.params),
                buffers: g.buffers,
                bindings: None,
                workgroups: [
                    gx as u32,
                    (row_blocks - r0).min(max) as u32,
                    (g.zs - z0).min(max) as u32,
                ],
            })?;
        }
    }
    Ok(())
}
