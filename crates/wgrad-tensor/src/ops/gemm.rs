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
    let invocations = n.div_ceil((4 * VN) as usize) as u32;
    let wg_n = WG_WIDTHS
        .into_iter()
        .find(|&w| w >= invocations)
        .unwrap_or(WG);
    Blocking {
        rm: RM,
        vn: VN,
        wg_n,
        wg_m: WG / wg_n,
    }
}

/// Every blocking `blocking_for` can return (for variant enumeration).
pub(crate) fn all_blockings() -> impl Iterator<Item = Blocking> {
    WG_WIDTHS
        .into_iter()
        .map(|wg_n| Blocking {
            rm: RM,
            vn: VN,
            wg_n,
            wg_m: WG / wg_n,
        })
        .chain([NARROW])
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
    line(format!(
        "@compute @workgroup_size({}, {}, 1)",
        blk.wg_n, blk.wg_m
    ));
    line("fn gemm_blocked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {".into());
    line("    let z = p.z0 + wg.z;".into());
    line(format!(
        "    let row0 = p.row0 + (wg.y * {}u + lid.y) * {rm}u;",
        blk.wg_m
    ));
    line(format!(
        "    let col0 = (wg.x * {}u + lid.x) * {}u;",
        blk.wg_n,
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
