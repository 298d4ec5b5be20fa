// 2-D upsampling by integer factors over NHWC tensors, forward and backward, V channels per
// invocation.
//
// Nearest repeats each pixel factor times along each axis (Keras UpSampling2D's default).
// Bilinear is tf.image.resize's with half-pixel centres (Keras UpSampling2D(interpolation=
// "bilinear"), PyTorch align_corners=False): output d reads source position
// (d + 0.5) / f - 0.5, between rows floor() and floor() + 1, both clamped to the image.
//
// Backward kernels are gathers (one invocation per input cell summing the weighted gradients
// of the outputs that read it), so no float atomics are needed and every cell is written once.
//
// Specialisation: V (1 or 4), T = f32 or vec4<f32>.

struct Params {
    n_threads: u32,
    row: u32,       // workgroups per grid row (2-D grids past 65,535 workgroups)
    h: u32,         // input height, width
    w: u32,
    c4: u32,        // channels / V
    fh: u32,        // factors
    fw: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;

// The two source rows of output row d and the weight of the second one.
struct Tap {
    i0: u32,
    i1: u32,
    w1: f32,
}

fn tap(d: u32, f: u32, n: u32) -> Tap {
    // The source position (d + 0.5) / f - 0.5 is num / (2f) with num = 2d + 1 - f, in integers
    // so that forward and backward agree exactly on the floor. num >= -(f - 1) > -2f, so a
    // negative num always floors to -1.
    let num = i32(2u * d + 1u) - i32(f);
    let den = i32(2u * f);
    var y0 = num / den;
    if (num < 0) { y0 = -1; }
    let frac = f32(num - y0 * den) / f32(den);
    let last = i32(n) - 1;
    return Tap(u32(clamp(y0, 0, last)), u32(clamp(y0 + 1, 0, last)), frac);
}

// Weight of source row i in output row d.
fn weight(d: u32, i: u32, f: u32, n: u32) -> f32 {
    let k = tap(d, f, n);
    return select(0.0, 1.0 - k.w1, k.i0 == i) + select(0.0, k.w1, k.i1 == i);
}

// Output rows [lo, hi) that can read source row i: those whose floor() is i - 1 or i, i.e.
// f*i - f + (f-1)/2 <= d < f*i + f + f/2 (both widened by rounding; weight() sorts them out).
fn readers(i: u32, f: u32, n_out: u32) -> vec2<u32> {
    let lo = max(i32(f * i) - i32(f) + i32((f - 1u) / 2u), 0);
    let hi = min(f * i + f + f / 2u + 1u, n_out);
    return vec2<u32>(u32(lo), hi);
}

@compute @workgroup_size(WG)
fn nearest_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let ow = p.w * p.fw;
    let oh = p.h * p.fh;
    let x = (r % ow) / p.fw;
    let y = ((r / ow) % oh) / p.fh;
    let n = r / (ow * oh);
    dst[t] = src[((n * p.h + y) * p.w + x) * p.c4 + c4];
}

@compute @workgroup_size(WG)
fn nearest_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let x = r % p.w;
    let y = (r / p.w) % p.h;
    let n = r / (p.w * p.h);
    let ow = p.w * p.fw;
    let oh = p.h * p.fh;
    var acc = T(0.0);
    for (var dy = 0u; dy < p.fh; dy++) {
        let base = (n * oh + y * p.fh + dy) * ow + x * p.fw;
        for (var dx = 0u; dx < p.fw; dx++) {
            acc += src[(base + dx) * p.c4 + c4];
        }
    }
    dst[t] = acc;
}

@compute @workgroup_size(WG)
fn bilinear_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let ow = p.w * p.fw;
    let oh = p.h * p.fh;
    let ty = tap((r / ow) % oh, p.fh, p.h);
    let tx = tap(r % ow, p.fw, p.w);
    let base = (r / (ow * oh)) * p.h;
    let top = mix(src[((base + ty.i0) * p.w + tx.i0) * p.c4 + c4],
                  src[((base + ty.i0) * p.w + tx.i1) * p.c4 + c4], tx.w1);
    let bottom = mix(src[((base + ty.i1) * p.w + tx.i0) * p.c4 + c4],
                     src[((base + ty.i1) * p.w + tx.i1) * p.c4 + c4], tx.w1);
    dst[t] = mix(top, bottom, ty.w1);
}

@compute @workgroup_size(WG)
fn bilinear_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let x = r % p.w;
    let y = (r / p.w) % p.h;
    let n = r / (p.w * p.h);
    let ow = p.w * p.fw;
    let oh = p.h * p.fh;
    let ys = readers(y, p.fh, oh);
    let xs = readers(x, p.fw, ow);
    var acc = T(0.0);
    for (var dy = ys.x; dy < ys.y; dy++) {
        let wy = weight(dy, y, p.fh, p.h);
        if (wy == 0.0) { continue; }
        var row = T(0.0);
        for (var dx = xs.x; dx < xs.y; dx++) {
            row += src[((n * oh + dy) * ow + dx) * p.c4 + c4] * weight(dx, x, p.fw, p.w);
        }
        acc += row * wy;
    }
    dst[t] = acc;
}
