// 2-D pooling over NHWC tensors, forward and backward, one invocation per output (forward) or
// per input cell (backward), V channels per invocation.
//
// Backward kernels are gathers, not scatters: each input cell walks the few output windows that
// can contain it and sums what they send it. Floating-point atomics are not portable (WGSL has
// atomic<u32>/<i32> only), and a gather writes every cell exactly once, so the result does not
// depend on invocation order either.
//
// Padding never contributes: max pooling treats padded cells as -inf (they never win), average
// pooling divides by the number of real cells in the window (TensorFlow/Keras's rule). The
// launcher rejects paddings as wide as the window, so every window holds a real cell.
//
// Max-pool indices are TensorFlow's MaxPoolWithArgmax convention without the batch:
// (h * W + w) * C + c, the flat position inside one image.
//
// Specialisation: V (1 or 4 channels per invocation), T = f32 or vec4<f32>, U = u32 or
// vec4<u32>, LANE (the channel offsets within a vector: 0u or vec4(0, 1, 2, 3)).

struct Params {
    n_threads: u32,
    row: u32,       // workgroups per grid row (2-D grids past 65,535 workgroups)
    h: u32,         // input height, width
    w: u32,
    c4: u32,        // channels / V
    oh: u32,        // output height, width
    ow: u32,
    kh: u32,        // window
    kw: u32,
    sh: u32,        // stride
    sw: u32,
    pt: u32,        // padding before (top, left)
    pl: u32,
    c: u32,         // channels
    scale: f32,     // global pools: 1 / (H * W) for average, 1 for max
    use_idx: u32,   // global pools: 1 routes the gradient to idx (max), 0 spreads it (average)
    relu: u32,      // max_fwd: 1 returns relu(max) (= the max of relu(x)) and no winner where it is 0
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;
@group(0) @binding(3) var<storage, read_write> idx: array<U>;

const NONE: u32 = 0xffffffffu;

// The input rows [lo, hi) that output row `o` reads along an axis (window start o*s - pad).
fn span(o: u32, s: u32, pad: u32, k: u32, n: u32) -> vec2<u32> {
    let start = i32(o * s) - i32(pad);
    return vec2<u32>(u32(max(start, 0)), u32(min(start + i32(k), i32(n))));
}

// Whether a window is 2x2 and wholly inside the image (the usual 2x2/2 pool).
fn whole_2x2(ys: vec2<u32>, xs: vec2<u32>) -> bool {
    return p.kh == 2u && p.kw == 2u && ys.y == ys.x + 2u && xs.y == xs.x + 2u;
}

// The output rows [lo, hi) whose windows contain input row `i` along an axis:
// o*s - pad <= i < o*s - pad + k.
fn covering(i: u32, s: u32, pad: u32, k: u32, n_out: u32) -> vec2<u32> {
    let first = i32(i + pad) - i32(k) + 1;
    var lo = 0u;
    if (first > 0) { lo = (u32(first) + s - 1u) / s; }
    let hi = min((i + pad) / s + 1u, n_out);
    return vec2<u32>(lo, max(hi, lo));
}

@compute @workgroup_size(WG)
fn max_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let ox = r % p.ow;
    let oy = (r / p.ow) % p.oh;
    let n = r / (p.ow * p.oh);
    let ys = span(oy, p.sh, p.pt, p.kh, p.h);
    let xs = span(ox, p.sw, p.pl, p.kw, p.w);
    var best = T(bitcast<f32>(0xff800000u));   // -inf
    var best_i = U(NONE);
    if (whole_2x2(ys, xs)) {
        // The usual 2x2 window without padding, unrolled: the general loops' per-lane trip
        // counts and bounds cost lavapipe more than the four loads.
        let e = ((n * p.h + ys.x) * p.w + xs.x) * p.c4 + c4;
        let down = p.w * p.c4;
        let cell = U((ys.x * p.w + xs.x) * p.c + c4 * V) + LANE;
        let v = array<T, 4>(src[e], src[e + p.c4], src[e + down], src[e + down + p.c4]);
        let cells = array<U, 4>(cell, cell + U(p.c), cell + U(p.w * p.c), cell + U((p.w + 1u) * p.c));
        best = v[0];
        best_i = cells[0];
        for (var i = 1u; i < 4u; i++) {
            let take = v[i] > best;
            best = select(best, v[i], take);
            best_i = select(best_i, cells[i], take);
        }
    }
    for (var y = select(ys.x, ys.y, whole_2x2(ys, xs)); y < ys.y; y++) {
        for (var x = xs.x; x < xs.y; x++) {
            let v = src[((n * p.h + y) * p.w + x) * p.c4 + c4];
            let cell = U((y * p.w + x) * p.c + c4 * V) + LANE;
            // Strictly greater keeps the first maximum in row-major window order (TF's tie
            // rule); the NONE test makes the first real cell win even when it is -inf.
            let take = (v > best) | (best_i == U(NONE));
            best = select(best, v, take);
            best_i = select(best_i, cell, take);
        }
    }
    // relu(max(w)) = max(relu(w)): a ReLU before the pool runs on the pooled output instead
    // of the whole input. Where the window's maximum is not positive relu(x) was 0 at every
    // cell and its gradient is 0, so no cell wins and both backward kernels route nothing.
    let off = (select(U(0u), U(1u), best <= T(0.0)) * U(p.relu)) != U(0u);
    dst[t] = select(best, T(0.0), off);
    idx[t] = select(best_i, U(NONE), off);
}

@compute @workgroup_size(WG)
fn max_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let x = r % p.w;
    let y = (r / p.w) % p.h;
    let n = r / (p.w * p.h);
    let me = U((y * p.w + x) * p.c + c4 * V) + LANE;
    let oys = covering(y, p.sh, p.pt, p.kh, p.oh);
    let oxs = covering(x, p.sw, p.pl, p.kw, p.ow);
    var acc = T(0.0);
    for (var oy = oys.x; oy < oys.y; oy++) {
        for (var ox = oxs.x; ox < oxs.y; ox++) {
            let o = ((n * p.oh + oy) * p.ow + ox) * p.c4 + c4;
            // Most windows did not pick this cell: skip their gradient load.
            let hit = idx[o] == me;
            if (any(hit)) { acc += select(T(0.0), src[o], hit); }
        }
    }
    dst[t] = acc;
}

// Max-pool backward when windows do not overlap (stride >= window, the usual 2x2/2): each
// input cell lies in at most one window, so one invocation per *output* writes its whole
// window (the gradient where the index matches, zero elsewhere). For 2x2/2 that is a quarter
// of the gather's invocations and of its index arithmetic, which is what the gather spends
// its time on (integer division is scalarised on CPU adapters). Cells no window covers are
// zeroed by the launcher first.
@compute @workgroup_size(WG)
fn max_bwd_windows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let ox = r % p.ow;
    let oy = (r / p.ow) % p.oh;
    let n = r / (p.ow * p.oh);
    let g = src[t];
    let at = idx[t];
    let ys = span(oy, p.sh, p.pt, p.kh, p.h);
    let xs = span(ox, p.sw, p.pl, p.kw, p.w);
    if (whole_2x2(ys, xs)) {
        let e = ((n * p.h + ys.x) * p.w + xs.x) * p.c4 + c4;
        let down = p.w * p.c4;
        let cell = U((ys.x * p.w + xs.x) * p.c + c4 * V) + LANE;
        dst[e] = select(T(0.0), g, at == cell);
        dst[e + p.c4] = select(T(0.0), g, at == cell + U(p.c));
        dst[e + down] = select(T(0.0), g, at == cell + U(p.w * p.c));
        dst[e + down + p.c4] = select(T(0.0), g, at == cell + U((p.w + 1u) * p.c));
        return;
    }
    for (var y = ys.x; y < ys.y; y++) {
        for (var x = xs.x; x < xs.y; x++) {
            let cell = U((y * p.w + x) * p.c + c4 * V) + LANE;
            dst[((n * p.h + y) * p.w + x) * p.c4 + c4] = select(T(0.0), g, at == cell);
        }
    }
}

@compute @workgroup_size(WG)
fn avg_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let ox = r % p.ow;
    let oy = (r / p.ow) % p.oh;
    let n = r / (p.ow * p.oh);
    let ys = span(oy, p.sh, p.pt, p.kh, p.h);
    let xs = span(ox, p.sw, p.pl, p.kw, p.w);
    var acc = T(0.0);
    for (var y = ys.x; y < ys.y; y++) {
        for (var x = xs.x; x < xs.y; x++) {
            acc += src[((n * p.h + y) * p.w + x) * p.c4 + c4];
        }
    }
    dst[t] = acc * (1.0 / f32((ys.y - ys.x) * (xs.y - xs.x)));
}

@compute @workgroup_size(WG)
fn avg_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let x = r % p.w;
    let y = (r / p.w) % p.h;
    let n = r / (p.w * p.h);
    let oys = covering(y, p.sh, p.pt, p.kh, p.oh);
    let oxs = covering(x, p.sw, p.pl, p.kw, p.ow);
    var acc = T(0.0);
    for (var oy = oys.x; oy < oys.y; oy++) {
        let ys = span(oy, p.sh, p.pt, p.kh, p.h);
        var row = T(0.0);
        for (var ox = oxs.x; ox < oxs.y; ox++) {
            let xs = span(ox, p.sw, p.pl, p.kw, p.w);
            // Each window sent grad / (its count of real cells) to every real cell in it.
            row += src[((n * p.oh + oy) * p.ow + ox) * p.c4 + c4] * (1.0 / f32(xs.y - xs.x));
        }
        acc += row * (1.0 / f32(ys.y - ys.x));
    }
    dst[t] = acc;
}

// Backward of the global pools: grad [N, C] to [N, H, W, C]. Average spreads grad / (H * W)
// everywhere; max sends grad to the position idx[n, c] (an argmax over H * W, first on ties).
@compute @workgroup_size(WG)
fn global_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c4 = t % p.c4;
    let r = t / p.c4;
    let hw = r % (p.h * p.w);
    let o = (r / (p.h * p.w)) * p.c4 + c4;
    var g = src[o] * p.scale;
    if (p.use_idx != 0u) {
        g = select(T(0.0), g, idx[o] == U(hw));
    }
    dst[t] = g;
}
