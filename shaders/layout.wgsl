// Strided copies: permute, slice and concat are all "walk the index space of `shape`, read at
// src strides, write at dst strides". Elements are moved as raw 32-bit words, so one kernel
// serves f32, i32 and u32. f16 (two halves per word) uses `copy_half`, where one invocation
// assembles one whole output word, so no two invocations write the same word.

struct Params {
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
    n: u32,          // invocations: runs (copy) or output words (copy_half)
    row: u32,
    rank: u32,
    src_base: u32,
    dst_base: u32,
    total: u32,      // copy_half: output elements
    runs_per_row: u32, // copy: runs of RUN elements per innermost row
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// The extents and strides are read straight from the uniform block (see binary.wgsl: a
// by-value copy of these arrays costs lavapipe scratch memory it never frees).
fn src_offset(i: u32) -> u32 {
    var rem = i;
    var o = p.src_base;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let e = p.shape[q][r];
        o += (rem % e) * p.src_strides[q][r];
        rem = rem / e;
    }
    return o;
}

fn dst_offset(i: u32) -> u32 {
    var rem = i;
    var o = p.dst_base;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let e = p.shape[q][r];
        o += (rem % e) * p.dst_strides[q][r];
        rem = rem / e;
    }
    return o;
}

// One invocation moves a run of up to RUN elements along the innermost axis: the index is
// decoded (a division per outer axis) once per run instead of once per element. Integer
// division does not vectorise on CPU adapters; decoding per element made this copy ~10x
// slower than the memory traffic (60 M elements/s on lavapipe).
const RUN: u32 = 8u;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n) { return; }
    let last = p.rank - 1u;
    let inner = p.shape[last / 4u][last % 4u];
    let s_step = p.src_strides[last / 4u][last % 4u];
    let d_step = p.dst_strides[last / 4u][last % 4u];
    var rem = t / p.runs_per_row;
    let j0 = (t % p.runs_per_row) * RUN;
    var so = p.src_base + j0 * s_step;
    var d_o = p.dst_base + j0 * d_step;
    for (var d = i32(last) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let e = p.shape[q][r];
        so += (rem % e) * p.src_strides[q][r];
        d_o += (rem % e) * p.dst_strides[q][r];
        rem = rem / e;
    }
    let end = min(j0 + RUN, inner);
    for (var j = j0; j < end; j++) {
        dst[d_o] = src[so];
        so += s_step;
        d_o += d_step;
    }
}

fn half_at(e: u32) -> u32 {
    return (src[e / 2u] >> (16u * (e % 2u))) & 0xffffu;
}

// Output is dense: word w holds elements 2w and 2w+1.
@compute @workgroup_size(WG)
fn copy_half(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let w = grid_index(wg, li, p.row);
    if (w >= p.n) { return; }
    let lo = half_at(src_offset(2u * w));
    var hi = 0u;
    if (2u * w + 1u < p.total) { hi = half_at(src_offset(2u * w + 1u)); }
    dst[w] = lo | (hi << 16u);
}

// Batched matrix transpose [B, R, C] -> [B, C, R] of 32-bit words, the copy behind every
// `t()` (matmul and convolution gradients transpose operands on each backward step). The
// generic `copy` decodes a rank-8 index with a division per axis for every element and reads
// with a stride; here each invocation moves a 4×4 tile — four runs of four consecutive words
// in, four runs out — with no division, which on a CPU adapter is ~10× faster.
struct TParams {
    rows: u32,
    cols: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> tp: TParams;

@compute @workgroup_size(8, 8, 1)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if (c0 >= tp.cols || r0 >= tp.rows) { return; }
    let base = gid.z * tp.rows * tp.cols;
    let nr = min(4u, tp.rows - r0);
    let nc = min(4u, tp.cols - c0);
    var tile: array<array<u32, 4>, 4>;
    for (var r = 0u; r < nr; r++) {
        let row = base + (r0 + r) * tp.cols + c0;
        for (var c = 0u; c < nc; c++) {
            tile[r][c] = src[row + c];
        }
    }
    for (var c = 0u; c < nc; c++) {
        let out = base + (c0 + c) * tp.rows + r0;
        for (var r = 0u; r < nr; r++) {
            dst[out + r] = tile[r][c];
        }
    }
}
