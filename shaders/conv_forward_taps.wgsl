// Forward convolution with few taps (KH·KW·C ≤ 32, one group, C not a multiple of 4), e.g. a
// first layer on grey images: y[n,oh,ow,o] = act(b[o] + Σ_(kh,kw,c) x[n, oh·s+kh·d-p, ow·s+kw·d-p, c]
// · w[kh,kw,c,o]).
//
// The implicit GEMM of conv.wgsl gathers every A value with its own bounds test and reads K in
// scalars when C is not a multiple of 4; for a 3×3 grey filter that is 2 GFLOP/s on lavapipe.
// Here one invocation owns one to four groups of four output channels of one output row
// (n, oh): the filter's taps for those channels sit in named vec4 registers for the whole row (the specialisation
// generates `conv_row` straight-line for the layer's KH, KW, C), row bounds are checked once
// per tap row, column bounds once per pixel and tap column, and each x value feeds every
// channel the invocation owns. Neighbouring invocations take neighbouring channel groups, so their x loads are
// the same addresses and their stores contiguous. This is the filter-gradient kernel's layout
// (conv_filter_taps.wgsl) turned around.

struct Params {
    threads: u32,
    row: u32,        // workgroups per grid row (2-D grids past 65,535 workgroups)
    groups: u32,     // channel groups of four per invocation
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    o: u32,          // output channels / 4
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,
    pl: u32,
    has_bias: u32,
    slope: f32,      // negative slope of the fused activation: 1 linear, 0 ReLU
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.threads) { return; }
    let per_row = p.o / p.groups;
    conv_row(t / per_row, (t % per_row) * p.groups);
}
