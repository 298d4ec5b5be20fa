// 2-D convolution over NHWC activations with HWIO filters, forward and both gradients, each as
// an implicit GEMM on the shared skeletons (shaders/common/gemm.wgsl): A is gathered from the
// activations on the fly (no im2col buffer), padding reads as zero. z is the group (forward,
// input gradient) or group x K-split (filter gradient). The specialisation forwards the
// skeleton's loaders to one direction's functions below and provides the element accessors
// a_elem/a_vec/b_elem/b_vec/store_c (vec4 or scalar, by channel alignment) and B_VEC4.
//
//   forward         C[(n,oh,ow), o]   = Σ_(kh,kw,c)  x[n, oh·s+kh·d-p, ow·s+kw·d-p, c] · w[kh,kw,c,o]
//   input gradient  C[(n,ih,iw), c]   = Σ_(kh,kw,o)  dy[n, (ih+p-kh·d)/s, (iw+p-kw·d)/s, o] · wT[kh,kw,o,c]
//                                       (only taps where the division is exact and in range)
//   filter gradient C[o, (kh,kw,c)]   = Σ_(n,oh,ow)  dyT[o, (n,oh,ow)] · x[n, oh·s+kh·d-p, ow·s+kw·d-p, c]
//                                       (K = N·OH·OW is long: split across z, partial sums added
//                                       by the reduce kernel; stored transposed into HWIO)

struct Params {
    m: u32,
    n: u32,
    row0: u32,
    z0: u32,
    batch: u32,
    h: u32,        // input (forward's x) extents
    w: u32,
    c: u32,
    oh: u32,       // output (forward's y) extents
    ow: u32,
    o: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,       // padding before, top and left
    pl: u32,
    cg: u32,       // channels per group, in and out
    og: u32,
    k: u32,        // GEMM K
    splits: u32,   // filter gradient: K-splits per group
    chunk: u32,    // filter gradient: K per split (a multiple of 4)
    slope: f32,    // act_linear's negative slope (forward write-out)
    has_bias: u32,
    sh_log: u32,   // log2 of the strides when they are powers of two, else 0xffffffff
    sw_log: u32,
    has_scale: u32,
    has_residual: u32,
    wg_log: u32,   // log2 of gemm_blocked's workgroup width along N
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src_a: array<AT>;
@group(0) @binding(2) var<storage, read> src_b: array<BT>;
@group(0) @binding(3) var<storage, read_write> dst: array<CT>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> scale: array<f32>;
@group(0) @binding(6) var<storage, read> residual: array<CT>;

// Per-row data hoisted out of the K loop: (image base, first input row/column of the window
// or output row/column, channel offset of the group).
alias RowInfo = vec4<i32>;
// Forward and input gradient walk K as (channel, kw, kh): `TapPos` carries the three and steps
// them like an odometer. The filter gradient walks its K = (n, oh, ow) the same way for B.
alias TapPos = vec4<u32>;

fn full_k(z: u32) -> vec2<u32> { return vec2<u32>(0u, p.k); }
fn index_start(z: u32, k: u32) -> u32 { return k; }
fn index_next(s: u32) -> u32 { return s + 1u; }
fn index_step(s: u32, step: u32) -> u32 { return s + step; }

// (channel within `inner`, kw, kh) of position k.
fn tap_start(k: u32, inner: u32) -> vec4<u32> {
    let tap = k / inner;
    return vec4<u32>(k % inner, tap % p.kw, tap / p.kw, 0u);
}

fn tap_next(s: vec4<u32>, step: u32, inner: u32) -> vec4<u32> {
    let c = s.x + step;
    let w1 = c >= inner;
    let kw = s.y + select(0u, 1u, w1);
    let w2 = kw >= p.kw;
    return vec4<u32>(select(c, 0u, w1), select(kw, 0u, w2), s.z + select(0u, 1u, w2), 0u);
}

// The forward write-out computes act(acc · scale + shift + residual): shift is the bias, and
// scale/shift together are an inference-mode batch norm folded into the convolution. Every
// direction calls epi_at (so one layout of bindings 4 and 5 serves all three); only the
// forward one has a bias or scale.
struct ConvEpi {
    shift: vec4<f32>,
    scale: vec4<f32>,
}
alias Epi = ConvEpi;

fn epi_at(z: u32, col: u32) -> ConvEpi {
    let e = z * p.og + col;
    var r = ConvEpi(vec4<f32>(0.0), vec4<f32>(1.0));
    if (p.has_bias != 0u) { r.shift = vec4<f32>(bias[e], bias[e + 1u], bias[e + 2u], bias[e + 3u]); }
    if (p.has_scale != 0u) { r.scale = vec4<f32>(scale[e], scale[e + 1u], scale[e + 2u], scale[e + 3u]); }
    return r;
}

// ---- forward: rows are output pixels, columns output channels of group z ----

fn fwd_row_info(z: u32, row: u32) -> vec4<i32> {
    let ow = row % p.ow;
    let t = row / p.ow;
    let oh = t % p.oh;
    let n = t / p.oh;
    return vec4<i32>(i32(n * p.h), i32(oh * p.sh) - i32(p.pt), i32(ow * p.sw) - i32(p.pl), i32(z * p.cg));
}

fn fwd_ka_start(z: u32, k: u32) -> vec4<u32> { return tap_start(k, p.cg); }
fn fwd_ka_next(s: vec4<u32>, step: u32) -> vec4<u32> { return tap_next(s, step, p.cg); }

// Element offset in x of this row's input pixel under tap (kh, kw), channel 0 of the group;
// -1 in the padding.
fn fwd_pixel(r: vec4<i32>, s: vec4<u32>) -> i32 {
    let ih = r.y + i32(s.z * p.dh);
    let iw = r.z + i32(s.y * p.dw);
    if (ih < 0 || iw < 0 || ih >= i32(p.h) || iw >= i32(p.w)) { return -1; }
    return ((r.x + ih) * i32(p.w) + iw) * i32(p.c) + r.w;
}

fn fwd_load_a(r: vec4<i32>, s: vec4<u32>) -> f32 {
    let e = fwd_pixel(r, s);
    if (e < 0) { return 0.0; }
    return a_elem(u32(e) + s.x);
}

fn fwd_load_a4(r: vec4<i32>, s: vec4<u32>) -> vec4<f32> {
    let e = fwd_pixel(r, s);
    if (e < 0) { return vec4<f32>(0.0); }
    return a_vec(u32(e) + s.x);
}

// w viewed as [KH·KW·Cg, O]; group z owns columns z·Og ..
fn fwd_load_b4(z: u32, k: u32, col: u32) -> vec4<f32> { return b_vec(k * p.o + z * p.og + col); }

fn fwd_write_out(z: u32, row: u32, col: u32, acc: vec4<f32>, ep: ConvEpi) {
    if (row >= p.m || col >= p.n) { return; }
    let e = row * p.o + z * p.og + col;
    var v = acc * ep.scale + ep.shift;
    if (p.has_residual != 0u) { v += load_residual(e, col); }
    store_c(e, col, act_linear(v, p.slope));
}

// ---- input gradient: rows are input pixels, columns input channels of group z ----

fn bwi_row_info(z: u32, row: u32) -> vec4<i32> {
    let iw = row % p.w;
    let t = row / p.w;
    let ih = t % p.h;
    let n = t / p.h;
    return vec4<i32>(i32(n * p.oh), i32(ih + p.pt), i32(iw + p.pl), i32(z * p.og));
}

fn bwi_ka_start(z: u32, k: u32) -> vec4<u32> { return tap_start(k, p.og); }
fn bwi_ka_next(s: vec4<u32>, step: u32) -> vec4<u32> { return tap_next(s, step, p.og); }

// t / stride if t is a whole number of strides (else -1). Power-of-two strides (all of
// ResNet's) use a shift and a mask: integer division is scalarised on CPU adapters.
fn stride_div(t: i32, stride: u32, log2: u32) -> i32 {
    if (t < 0) { return -1; }
    if (log2 != 0xffffffffu) {
        if ((u32(t) & (stride - 1u)) != 0u) { return -1; }
        return i32(u32(t) >> log2);
    }
    if (t % i32(stride) != 0) { return -1; }
    return t / i32(stride);
}

// Element offset in dy of channel 0 (of the group) of the output pixel that tap (kh, kw) of
// this input pixel feeds, or -1 when the tap falls between strides or outside the output.
fn bwi_pixel(r: vec4<i32>, s: vec4<u32>) -> i32 {
    let oh = stride_div(r.y - i32(s.z * p.dh), p.sh, p.sh_log);
    let ow = stride_div(r.z - i32(s.y * p.dw), p.sw, p.sw_log);
    if (oh < 0 || ow < 0 || oh >= i32(p.oh) || ow >= i32(p.ow)) { return -1; }
    return ((r.x + oh) * i32(p.ow) + ow) * i32(p.o) + r.w;
}

fn bwi_load_a(r: vec4<i32>, s: vec4<u32>) -> f32 {
    let e = bwi_pixel(r, s);
    if (e < 0) { return 0.0; }
    return a_elem(u32(e) + s.x);
}

fn bwi_load_a4(r: vec4<i32>, s: vec4<u32>) -> vec4<f32> {
    let e = bwi_pixel(r, s);
    if (e < 0) { return vec4<f32>(0.0); }
    return a_vec(u32(e) + s.x);
}

// The filter transposed per group to [G][KH·KW·Og][Cg] (a cheap copy of a small tensor), so
// four neighbouring input channels are one vec4.
fn bwi_load_b4(z: u32, k: u32, col: u32) -> vec4<f32> { return b_vec((z * p.k + k) * p.cg + col); }

fn bwi_write_out(z: u32, row: u32, col: u32, acc: vec4<f32>, ep: ConvEpi) {
    if (row >= p.m || col >= p.n) { return; }
    store_c(row * p.c + z * p.cg + col, col, acc);
}

// ---- filter gradient: rows are output channels of the group, columns (kh, kw, c) ----

fn bwf_row_info(z: u32, row: u32) -> vec4<i32> {
    let g = z / p.splits;
    return vec4<i32>(i32((g * p.og + row) * p.k), 0, 0, 0);
}

// dy transposed to [O][N·OH·OW], so a row of A is contiguous along K.
fn bwf_load_a(r: vec4<i32>, k: u32) -> f32 { return a_elem(u32(r.x) + k); }
fn bwf_load_a4(r: vec4<i32>, k: u32) -> vec4<f32> { return a_vec(u32(r.x) + k); }

// B's position: output pixel (ow, oh, n) of K index k.
fn bwf_kb_start(z: u32, k: u32) -> vec4<u32> {
    let t = k / p.ow;
    return vec4<u32>(k % p.ow, t % p.oh, t / p.oh, 0u);
}

fn bwf_kb_next(s: vec4<u32>) -> vec4<u32> {
    let ow = s.x + 1u;
    let w1 = ow >= p.ow;
    let oh = s.y + select(0u, 1u, w1);
    let w2 = oh >= p.oh;
    return vec4<u32>(select(ow, 0u, w1), select(oh, 0u, w2), s.z + select(0u, 1u, w2), 0u);
}

// x at the input pixel that output pixel s reads through tap `tap`, channel 0 of group g;
// -1 in the padding.
fn bwf_pixel(g: u32, s: vec4<u32>, tap: u32) -> i32 {
    let ih = i32(s.y * p.sh + (tap / p.kw) * p.dh) - i32(p.pt);
    let iw = i32(s.x * p.sw + (tap % p.kw) * p.dw) - i32(p.pl);
    if (ih < 0 || iw < 0 || ih >= i32(p.h) || iw >= i32(p.w)) { return -1; }
    return ((i32(s.z * p.h) + ih) * i32(p.w) + iw) * i32(p.c) + i32(g * p.cg);
}

fn bwf_b_elem(g: u32, s: vec4<u32>, col: u32) -> f32 {
    let e = bwf_pixel(g, s, col / p.cg);
    if (e < 0) { return 0.0; }
    return b_elem(u32(e) + col % p.cg);
}

fn bwf_load_b4(z: u32, s: vec4<u32>, col: u32) -> vec4<f32> {
    let g = z / p.splits;
    if (B_VEC4) {
        // Cg is a multiple of 4: the four columns are four channels of one tap.
        let e = bwf_pixel(g, s, col / p.cg);
        if (e < 0) { return vec4<f32>(0.0); }
        return b_vec(u32(e) + col % p.cg);
    }
    return vec4<f32>(bwf_b_elem(g, s, col), bwf_b_elem(g, s, col + 1u), bwf_b_elem(g, s, col + 2u), bwf_b_elem(g, s, col + 3u));
}

fn bwf_k_range(z: u32) -> vec2<u32> {
    let s = z % p.splits;
    return vec2<u32>(s * p.chunk, min(p.k, (s + 1u) * p.chunk));
}

// Partial sums of split s go to [s][KH·KW·Cg][O], i.e. already in HWIO order.
fn bwf_write_out(z: u32, row: u32, col: u32, acc: vec4<f32>, ep: ConvEpi) {
    if (row >= p.m) { return; }
    let s = z % p.splits;
    let g = z / p.splits;
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) { dst_elem((s * p.n + col + j) * p.o + g * p.og + row, acc[j]); }
    }
}
