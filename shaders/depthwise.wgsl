// Depthwise 2-D convolution (groups = C: one input channel per group, channel multiplier M,
// O = C·M output channels; output channel c·M + m reads input channel c) over NHWC activations
// with HWIO filters [KH, KW, 1, O], as direct window loops rather than the grouped GEMM, whose
// one-column products per group leave most SIMD lanes idle.
//
//   forward          y[n,oy,ox,o]  = Σ_(i,j) x[n, oy·s+i·d-p, ox·s+j·d-p, o/M] · w[i,j,o]
//   input gradient   dx[n,iy,ix,c] = Σ_(i,j,m) dy[n, (iy+p-i·d)/s, (ix+p-j·d)/s, c·M+m] · w[i,j,c·M+m]
//                                    (a gather: only taps where the division is exact and in range,
//                                    so no float atomics)
//   filter gradient  dw[i,j,o]     = Σ_(n,oy,ox) dy[n,oy,ox,o] · x[n, oy·s+i·d-p, ox·s+j·d-p, o/M]
//                                    (the sum over N·OH·OW is long: each invocation sums one chunk
//                                    into partial[split, i, j, o]; the reduce kernel adds the splits)
//
// One invocation owns V channels of one pixel (V = 4 when the channel count allows: on a CPU
// adapter every storage load is a per-lane loop, so a vec4 load costs about what a scalar does).
// Neighbouring invocations own neighbouring channels of the same pixel, so their window bounds
// agree and the branches below stay uniform across SIMD lanes.
//
// Specialisation: V (1 or 4), T (f32 or vec4<f32>), ST/AT (element types of the src and aux
// bindings), and src4/aux4, which load the V lanes at element indices e (e.x only when V = 1):
// one vec4 (`e.x` a multiple of 4 and the lanes contiguous), one scalar splat (all lanes read the
// same input channel, M a multiple of 4), or a gather of four scalars (other multipliers).

struct Params {
    threads: u32,  // forward, input gradient: invocations per image row (W·lanes); filter
                   // gradient: all invocations
    row: u32,      // forward, input gradient: first image of this dispatch; filter gradient:
                   // workgroups per grid row (2-D grids past 65,535 workgroups)
    n: u32,
    h: u32,        // input extents
    w: u32,
    c: u32,
    oh: u32,       // output extents
    ow: u32,
    o: u32,        // C·M
    m: u32,        // channel multiplier
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,       // padding before, top and left
    pl: u32,
    lanes: u32,    // invocations per pixel: O/V (forward, filter gradient) or C/V (input gradient)
    sh_log: u32,   // log2 of the strides when they are powers of two, else 0xffffffff
    sw_log: u32,
    chunk: u32,    // filter gradient: output pixels per split
    npq: u32,      // N·OH·OW
    slope: f32,    // act_linear's negative slope (forward)
    has_bias: u32,
    has_scale: u32,
    has_residual: u32,
    lanes_log: u32, // log2 of lanes when it is a power of two, else 0xffffffff
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<ST>;       // x (forward, filter grad) or dy
@group(0) @binding(2) var<storage, read> aux: array<AT>;       // w (forward, input grad) or dy
@group(0) @binding(3) var<storage, read_write> dst: array<T>;
// Forward only: the write-out act(acc · scale + bias + residual) of ops/conv.rs's epilogue
// (scale and bias per output channel, e.g. a folded inference batch norm; residual the skip
// connection, of the output's shape).
@group(0) @binding(4) var<storage, read> bias: array<T>;
@group(0) @binding(5) var<storage, read> scale: array<T>;
@group(0) @binding(6) var<storage, read> residual: array<T>;

const LANE4: vec4<u32> = vec4<u32>(0u, 1u, 2u, 3u);

const NONE: u32 = 0xffffffffu;

// (lane, column) of a grid x index: lanes are the fastest axis. The forward and input-gradient
// grids are (W·lanes, H, N), so this is their only division per invocation (integer division
// by a run-time value is scalarised lane by lane on CPU adapters and, with the window loops
// this short, per-invocation index arithmetic costs as much as the loads), and a shift when
// lanes is a power of two.
fn split_lanes(q: u32) -> vec2<u32> {
    if (p.lanes_log != NONE) { return vec2<u32>(q & (p.lanes - 1u), q >> p.lanes_log); }
    return vec2<u32>(q % p.lanes, q / p.lanes);
}

// ceil(a / d), without a division for d = 1 (undilated windows).
fn div_ceil(a: u32, d: u32) -> u32 {
    if (d == 1u) { return a; }
    return (a + d - 1u) / d;
}

// Taps [lo, hi) of a window starting at `start` (may be negative) with dilation d that land
// inside [0, n): start + k·d >= 0 and start + k·d < n. Computed once per invocation, so the
// window loops below need no bounds tests (and divide by nothing).
fn tap_range(start: i32, d: u32, k: u32, n: u32) -> vec2<u32> {
    var lo = 0u;
    if (start < 0) { lo = div_ceil(u32(-start), d); }
    var hi = 0u;
    let top = i32(n) - 1 - start;
    if (top >= 0) { hi = min(k, div_ceil(u32(top) + 1u, d)); }
    return vec2<u32>(min(lo, hi), hi);
}

// t / stride if t is a whole number of strides (else -1). Power-of-two strides use a shift and
// a mask: integer division by a run-time value is scalarised lane by lane on CPU adapters.
fn stride_div(t: i32, stride: u32, log2: u32) -> i32 {
    if (t < 0) { return -1; }
    if (log2 != NONE) {
        if ((u32(t) & (stride - 1u)) != 0u) { return -1; }
        return i32(u32(t) >> log2);
    }
    if (t % i32(stride) != 0) { return -1; }
    return t / i32(stride);
}

// One invocation per (output pixel, V output channels).
@compute @workgroup_size(WG)
fn dw_fwd(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.threads) { return; }
    let vx = split_lanes(gid.x);
    let v = vx.x;
    let ox = vx.y;
    let oy = gid.y;
    let n = gid.z + p.row;
    let t = (n * p.oh + oy) * p.threads + gid.x;
    let o = v * V;
    // Input channel of each lane (lanes past V are never read).
    var ci = vec4<u32>(o) + LANE4;
    if (p.m != 1u) { ci /= p.m; }
    let y0 = i32(oy * p.sh) - i32(p.pt);
    let x0 = i32(ox * p.sw) - i32(p.pl);
    let ky = tap_range(y0, p.dh, p.kh, p.h);
    let kx = tap_range(x0, p.dw, p.kw, p.w);
    var acc = T(0.0);
    for (var i = ky.x; i < ky.y; i++) {
        let row = (n * p.h + u32(y0 + i32(i * p.dh))) * p.w;
        let tap_row = i * p.kw;
        for (var j = kx.x; j < kx.y; j++) {
            let pix = (row + u32(x0 + i32(j * p.dw))) * p.c;
            acc += src4(vec4<u32>(pix) + ci) * aux4(vec4<u32>((tap_row + j) * p.o + o) + LANE4);
        }
    }
    var z = acc;
    if (p.has_scale != 0u) { z *= scale[v]; }
    if (p.has_bias != 0u) { z += bias[v]; }
    if (p.has_residual != 0u) { z += residual[t]; }
    dst[t] = act_linear(z, p.slope);
}

// (first tap, tap step) of the taps k that can put padded position `a` on a stride, i.e.
// a - k·d divisible by s. Undilated: k ≡ a (mod s), so only every s-th tap is visited (a
// stride-2 input gradient skips 3 of 4 taps without testing them). Dilated: every tap, each
// tested by stride_div.
fn first_tap(a: u32, s: u32, log2: u32, d: u32) -> vec2<u32> {
    if (d != 1u) { return vec2<u32>(0u, 1u); }
    if (log2 != NONE) { return vec2<u32>(a & (s - 1u), s); }
    return vec2<u32>(a % s, s);
}

// One invocation per (input pixel, V input channels): the sum over every output position whose
// window covers the pixel, and over the M output channels each input channel feeds.
@compute @workgroup_size(WG)
fn dw_bwi(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.threads) { return; }
    let vx = split_lanes(gid.x);
    let v = vx.x;
    let ix = vx.y;
    let iy = gid.y;
    let n = gid.z + p.row;
    let t = (n * p.h + iy) * p.threads + gid.x;
    // First output channel of each lane's input channel: c·M.
    let co = (vec4<u32>(v * V) + LANE4) * p.m;
    var acc = T(0.0);
    let ty = first_tap(iy + p.pt, p.sh, p.sh_log, p.dh);
    let tx = first_tap(ix + p.pl, p.sw, p.sw_log, p.dw);
    for (var i = ty.x; i < p.kh; i += ty.y) {
        let oy = stride_div(i32(iy + p.pt) - i32(i * p.dh), p.sh, p.sh_log);
        if (oy < 0 || oy >= i32(p.oh)) { continue; }
        let row = (n * p.oh + u32(oy)) * p.ow;
        for (var j = tx.x; j < p.kw; j += tx.y) {
            let ox = stride_div(i32(ix + p.pl) - i32(j * p.dw), p.sw, p.sw_log);
            if (ox < 0 || ox >= i32(p.ow)) { continue; }
            let pix = (row + u32(ox)) * p.o;
            let tap = (i * p.kw + j) * p.o;
            for (var m = 0u; m < p.m; m++) {
                acc += src4(vec4<u32>(pix + m) + co) * aux4(vec4<u32>(tap + m) + co);
            }
        }
    }
    dst[t] = acc;
}

// One invocation per (split, tap, V output channels): the sum over one chunk of output pixels,
// walked as an odometer (ox, oy, n) so the loop divides by nothing.
@compute @workgroup_size(WG)
fn dw_bwf(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.threads) { return; }
    let v = t % p.lanes;
    let r = t / p.lanes;
    let taps = p.kh * p.kw;
    let tap = r % taps;
    let split = r / taps;
    let o = v * V;
    var ci = vec4<u32>(o) + LANE4;
    if (p.m != 1u) { ci /= p.m; }
    // Offsets of this tap from an output pixel's window origin.
    let ty = i32((tap / p.kw) * p.dh) - i32(p.pt);
    let tx = i32((tap % p.kw) * p.dw) - i32(p.pl);
    let start = split * p.chunk;
    let end = min(p.npq, start + p.chunk);
    var ox = start % p.ow;
    let q = start / p.ow;
    var oy = q % p.oh;
    var n = q / p.oh;
    var acc = T(0.0);
    for (var k = start; k < end; k++) {
        let iy = i32(oy * p.sh) + ty;
        let ix = i32(ox * p.sw) + tx;
        if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
            let pix = ((n * p.h + u32(iy)) * p.w + u32(ix)) * p.c;
            acc += src4(vec4<u32>(pix) + ci) * aux4(vec4<u32>(k * p.o + o) + LANE4);
        }
        ox += 1u;
        if (ox == p.ow) {
            ox = 0u;
            oy += 1u;
            if (oy == p.oh) {
                oy = 0u;
                n += 1u;
            }
        }
    }
    dst[t] = acc;
}
