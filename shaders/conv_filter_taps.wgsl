// Filter gradient of a convolution with few taps (KH·KW·C ≤ 32, one group), e.g. a first layer
// on grey or RGB images: dw[kh,kw,c,o] = Σ_(n,oh,ow) dy[n,oh,ow,o] · x[n, oh·s+kh·d-p, ow·s+kw·d-p, c].
//
// The implicit GEMM of conv.wgsl would be C[O, KH·KW·C] with K = N·OH·OW: a product 9 columns
// wide for a 3×3 grey filter, which leaves most of its register block idle (0.6 GFLOP/s, half of
// Fashion-MNIST's training step). Here one invocation owns one output channel o and keeps all
// taps' sums in named registers (the specialisation generates `filter_grad` straight-line for
// the layer's KH, KW, C), walking a slice of output rows; neighbouring invocations take
// neighbouring o, so the dy loads are contiguous and every x load is the same address across
// them. When O is a multiple of 4 (DYT = vec4<f32>) an invocation owns four channels: one x
// load then feeds four sums, which matters on a CPU adapter, where a load that is the same
// for every lane is still a gather. Row bounds are checked once per row and tap row, column bounds once per pixel and tap
// column. Slices write partial sums [slice, KH, KW, C, O] that the reduce kernel adds.

struct Params {
    threads: u32,
    row: u32,        // workgroups per grid row (2-D grids past 65,535 workgroups)
    rows: u32,       // N·OH output rows
    rows_per: u32,   // output rows per slice
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    o: u32,          // output channels, in units of DYT (O/4 when the sums are vec4)
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,
    pl: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<DYT>;
@group(0) @binding(3) var<storage, read_write> partial: array<DYT>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.threads) { return; }
    let o = t % p.o;
    let slice = t / p.o;
    let r0 = slice * p.rows_per;
    filter_grad(o, r0, min(r0 + p.rows_per, p.rows), slice);
}
