// Local response normalisation across the channels of an NHWC tensor, forward and backward,
// one invocation per element. TensorFlow's tf.nn.local_response_normalization:
//
//   d[c] = bias + alpha * sum(x[c']^2 for c' in [c - r, c + r] clipped to the channels)
//   y[c] = x[c] * d[c]^-beta
//
// Channels are the innermost axis, so a window is a short contiguous run of one pixel's row;
// the vec4 trick of the pooling kernels would put neighbouring channels in one lane set and
// make every window straddle vectors, so this family stays scalar.
//
// Backward recomputes the window sums instead of saving them: saving d would cost a tensor the
// size of the activation for every LRN layer until backward runs, while recomputing costs
// (2r + 1)^2 reads per element with r small (2 in AlexNet, 5 at most by TF's default), which
// stay in cache because they are neighbours. The windows are symmetric (c' lies in c's window
// exactly when c lies in c''s), so the input cell j gathers from the windows of its own window:
//
//   dx[j] = dy[j] * d[j]^-beta - 2 * alpha * beta * x[j] * sum(dy[c] * x[c] * d[c]^-beta / d[c]
//                                                              for c in j's window)
//
// a gather that writes each cell once, with no float atomics. The launcher guarantees bias > 0
// and alpha >= 0, so every d is positive and pow never sees a negative or zero base.

struct Params {
    n_threads: u32,
    row: u32,       // workgroups per grid row (2-D grids past 65,535 workgroups)
    c: u32,         // channels
    radius: u32,    // depth_radius, clamped to c by the launcher (wider windows change nothing)
    bias: f32,
    alpha: f32,
    beta: f32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;

// The channels [lo, hi) of channel c's window; u32 arithmetic, so the low edge clips before it
// could wrap.
fn window(c: u32) -> vec2<u32> {
    let lo = select(0u, c - p.radius, c > p.radius);
    return vec2<u32>(lo, min(c + p.radius + 1u, p.c));
}

// bias + alpha * (sum of squares over channel c's window) of the pixel starting at `base`.
fn denom(base: u32, c: u32) -> f32 {
    let win = window(c);
    var s = 0.0;
    for (var k = win.x; k < win.y; k++) {
        let v = x[base + k];
        s = fma(v, v, s);
    }
    return fma(p.alpha, s, p.bias);
}

@compute @workgroup_size(WG)
fn lrn_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let c = t % p.c;
    let base = t - c;
    dst[t] = x[t] * pow(denom(base, c), -p.beta);
}

@compute @workgroup_size(WG)
fn lrn_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = grid_index(wg, li, p.row);
    if (t >= p.n_threads) { return; }
    let j = t % p.c;
    let base = t - j;
    let win = window(j);
    var cross = 0.0;
    for (var c = win.x; c < win.y; c++) {
        let d = denom(base, c);
        cross += dy[base + c] * x[base + c] * pow(d, -p.beta) / d;
    }
    let direct = dy[t] * pow(denom(base, j), -p.beta);
    dst[t] = direct - 2.0 * p.alpha * p.beta * x[t] * cross;
}
