// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11). Output block i is
// philox(counter = (i, 0, 0, 0), key = seed), so a value depends only on (seed, index): the same
// seed gives the same tensor on every adapter and for any dispatch shape.
// WGSL has no 32x32->64 multiply, so mulhilo splits operands into 16-bit halves.
// Specialisation: NORMAL (Box-Muller on pairs of words; else uniform in [low, high)).

struct Params {
    n: u32,       // output elements
    row: u32,
    key0: u32,
    key1: u32,
    p0: f32,      // low or mean
    p1: f32,      // high or std
    base: u32,    // first block of four of this piece
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let hl = ah * bl;
    let lh = al * bh;
    let hh = ah * bh;
    let cross = (ll >> 16u) + (hl & 0xffffu) + lh;   // < 2^32 for all inputs
    let hi = hh + (hl >> 16u) + (cross >> 16u);
    let lo = (cross << 16u) | (ll & 0xffffu);
    return vec2<u32>(hi, lo);
}

fn philox(counter: vec4<u32>, seed: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = seed;
    for (var r = 0u; r < 10u; r++) {
        let m0 = mulhilo(0xD2511F53u, c.x);
        let m1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(m1.x ^ c.y ^ k.x, m1.y, m0.x ^ c.w ^ k.y, m0.y);
        k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// 24 high bits to [0, 1): exact in f32 and identical on every adapter.
fn unit(w: u32) -> f32 { return f32(w >> 8u) * 5.9604644775390625e-8; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let blk = grid_index(wg, li, p.row);
    if (4u * blk >= p.n) { return; }
    let w = philox(vec4<u32>(blk + p.base, 0u, 0u, 0u), vec2<u32>(p.key0, p.key1));
    var v: vec4<f32>;
    if (NORMAL) {
        // u1 in (0, 1] keeps log finite.
        let r0 = sqrt(-2.0 * log(unit(w.x) + 5.9604644775390625e-8));
        let r1 = sqrt(-2.0 * log(unit(w.z) + 5.9604644775390625e-8));
        let t0 = 6.283185307179586 * unit(w.y);
        let t1 = 6.283185307179586 * unit(w.w);
        v = vec4<f32>(r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1)) * p.p1 + p.p0;
    } else {
        v = vec4<f32>(unit(w.x), unit(w.y), unit(w.z), unit(w.w)) * (p.p1 - p.p0) + p.p0;
    }
    for (var j = 0u; j < 4u; j++) {
        if (4u * blk + j < p.n) { dst[4u * blk + j] = v[j]; }
    }
}
