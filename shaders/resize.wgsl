// Image resizing along one axis: out[a, o, b] = Σ_t w[o, t] · x[a, start[o] + t, b] over a
// [A, In, B] view of an NHWC tensor (H: A = N, B = W·C; W: A = N·H', B = C). Every method of
// tf.image.resize is separable, so two passes of this kernel with the method's per-axis
// weight table (computed on the host in TF's own f32 arithmetic, ops/resize.rs) reproduce it:
// the tables are tiny, and the kernel stays one gather-and-sum whatever the method.

struct Params {
    a: u32,
    n_in: u32,   // extent of the resized axis in the input
    n_out: u32,  // and in the output
    b: u32,
    taps: u32,   // weights per output position (zero-padded)
    total: u32,  // a · n_out · b
    row: u32,    // workgroups per grid row (the grid folds into y past 65,535)
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> start: array<u32>;    // [n_out]
@group(0) @binding(3) var<storage, read> weight: array<f32>;   // [n_out, taps]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn resize_axis(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.total) { return; }
    let b = i % p.b;
    let o = (i / p.b) % p.n_out;
    let a = i / (p.b * p.n_out);
    let s = start[o];
    var acc = 0.0;
    for (var t = 0u; t < p.taps; t++) {
        let src = min(s + t, p.n_in - 1u);
        acc += weight[o * p.taps + t] * x[(a * p.n_in + src) * p.b + b];
    }
    y[i] = acc;
}
