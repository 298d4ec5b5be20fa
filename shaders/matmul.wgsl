// C[batch] = act(A[batch] (M x K) · B[batch] (K x N) + bias), all row-major f32.
//
// Two strategies, picked per adapter class (Device::strategy):
// - gemm_tiled (GPUs): a 64x64 output tile per workgroup of 16x16 invocations, each owning a
//   4x4 block; 64x16 slices of A and 16x64 of B are staged in workgroup memory so every global
//   value is loaded once per workgroup instead of 64 times.
// - gemm_blocked (CPU adapters): no workgroup memory and no barriers. A workgroup owns RM rows,
//   each invocation RM x (4*VN) outputs kept in registers. All invocations of a workgroup read
//   the same A element at each step (a broadcast for lavapipe's SIMD lanes) and neighbouring
//   columns of B.
//
// Loads are unguarded: rows >= M and columns >= N only feed outputs that are never stored, and
// wgpu's robust buffer access keeps every read inside its binding. The K loop is exact.
// `T` is vec4<f32> for the shared activation helpers; `load_b(e)` (from the specialisation)
// returns B[e..e+4] as a vec4, with vec4 loads when N is a multiple of 4.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_batch: u32,    // element stride between batches (0 broadcasts one matrix)
    b_batch: u32,
    c_batch: u32,
    alpha: f32,      // activation parameter (leaky_relu slope, elu alpha)
    batch0: u32,     // first batch of this dispatch (batches past the grid's z limit)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<BT>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

fn write_out(wz: u32, row: u32, col: u32, acc: vec4<f32>) {
    if (row >= p.m) { return; }
    var v = acc;
    if (HAS_BIAS) { v += vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]); }
    v = activation(v, p.alpha);
    let o = (wz + p.batch0) * p.c_batch + row * p.n + col;
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) { c[o + j] = v[j]; }
    }
}

@compute @workgroup_size(WG_N, 1, 1)
fn gemm_blocked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * RM;
    let col0 = (wg.x * WG_N + lid.x) * (4u * VN);
    if (col0 >= p.n) { return; }
    let a0 = (wg.z + p.batch0) * p.a_batch + row0 * p.k;
    let b0 = (wg.z + p.batch0) * p.b_batch + col0;
    var acc: array<array<vec4<f32>, VN>, RM>;
    for (var i = 0u; i < RM; i++) {
        for (var j = 0u; j < VN; j++) { acc[i][j] = vec4<f32>(0.0); }
    }
    for (var kk = 0u; kk < p.k; kk++) {
        var bv: array<vec4<f32>, VN>;
        let brow = b0 + kk * p.n;
        for (var j = 0u; j < VN; j++) { bv[j] = load_b(brow + 4u * j); }
        for (var i = 0u; i < RM; i++) {
            let av = vec4<f32>(a[a0 + i * p.k + kk]);
            for (var j = 0u; j < VN; j++) { acc[i][j] = fma(av, bv[j], acc[i][j]); }
        }
    }
    for (var i = 0u; i < RM; i++) {
        for (var j = 0u; j < VN; j++) { write_out(wg.z, row0 + i, col0 + 4u * j, acc[i][j]); }
    }
}

const TILE: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>;        // [TK][TILE]: transposed so a thread's 4 rows are adjacent
var<workgroup> b_tile: array<vec4<f32>, 256>;   // [TK][TILE/4]

@compute @workgroup_size(16, 16, 1)
fn gemm_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let a0 = (wg.z + p.batch0) * p.a_batch;
    let b0 = (wg.z + p.batch0) * p.b_batch;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // A slice: 1024 values, 4 per invocation; K past the end reads as zero.
        for (var q = 0u; q < 4u; q++) {
            let e = li + 256u * q;
            let r = e / TK;
            let kk = e % TK;
            var v = 0.0;
            if (k0 + kk < p.k) { v = a[a0 + (row0 + r) * p.k + k0 + kk]; }
            a_tile[kk * TILE + r] = v;
        }
        // B slice: 256 vec4, one per invocation.
        let kk = li / 16u;
        var bv = vec4<f32>(0.0);
        if (k0 + kk < p.k) { bv = load_b(b0 + (k0 + kk) * p.n + col0 + 4u * (li % 16u)); }
        b_tile[li] = bv;
        workgroupBarrier();
        for (var t = 0u; t < TK; t++) {
            let bt = b_tile[t * 16u + lid.x];
            let at = t * TILE + lid.y * 4u;
            for (var i = 0u; i < 4u; i++) { acc[i] = fma(vec4<f32>(a_tile[at + i]), bt, acc[i]); }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) { write_out(wg.z, row0 + lid.y * 4u + i, col0 + lid.x * 4u, acc[i]); }
}
