// Strided copies: permute, slice and concat are all "walk the index space of `shape`, read at
// src strides, write at dst strides". Elements are moved as raw 32-bit words, so one kernel
// serves f32, i32 and u32. f16 (two halves per word) uses `copy_half`, where one invocation
// assembles one whole output word, so no two invocations write the same word.

struct Params {
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
    n: u32,          // elements (copy) or output words (copy_half)
    row: u32,
    rank: u32,
    src_base: u32,
    dst_base: u32,
    total: u32,      // copy_half: output elements
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn extent(v: array<vec4<u32>, 2>, d: u32) -> u32 { return v[d / 4u][d % 4u]; }

fn src_offset(i: u32) -> u32 {
    var rem = i;
    var o = p.src_base;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let e = extent(p.shape, u32(d));
        o += (rem % e) * extent(p.src_strides, u32(d));
        rem = rem / e;
    }
    return o;
}

fn dst_offset(i: u32) -> u32 {
    var rem = i;
    var o = p.dst_base;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let e = extent(p.shape, u32(d));
        o += (rem % e) * extent(p.dst_strides, u32(d));
        rem = rem / e;
    }
    return o;
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.row) * 256u + li;
    if (i >= p.n) { return; }
    dst[dst_offset(i)] = src[src_offset(i)];
}

fn half_at(e: u32) -> u32 {
    return (src[e / 2u] >> (16u * (e % 2u))) & 0xffffu;
}

// Output is dense: word w holds elements 2w and 2w+1.
@compute @workgroup_size(256)
fn copy_half(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let w = (wg.x + wg.y * p.row) * 256u + li;
    if (w >= p.n) { return; }
    let lo = half_at(src_offset(2u * w));
    var hi = 0u;
    if (2u * w + 1u < p.total) { hi = half_at(src_offset(2u * w + 1u)); }
    dst[w] = lo | (hi << 16u);
}
