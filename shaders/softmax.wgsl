// Softmax / log-softmax along the middle axis of a [A, K, B] view, one invocation per (a, b).
// Stable form: subtract the row maximum before exp, so logits of any size give finite results.
// Rows in classification are short (classes), so a sequential loop per invocation beats any
// cooperative scheme here. Specialisation: LOG.

struct Params {
    a: u32,
    k: u32,
    b: u32,
    n_rows: u32,
    row: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = grid_index(wg, li, p.row);
    if (r >= p.n_rows) { return; }
    let base = (r / p.b) * p.k * p.b + r % p.b;
    var m = bitcast<f32>(0xff800000u);
    for (var k = 0u; k < p.k; k++) { m = max(m, x[base + k * p.b]); }
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) { s += exp(x[base + k * p.b] - m); }
    if (LOG) {
        // (x - m) - log(s), not x - (m + log(s)): m + log(s) rounds at m's magnitude, which for
        // logits ~1000 costs ~3e-5 absolute in every output.
        let ls = log(s);
        for (var k = 0u; k < p.k; k++) { y[base + k * p.b] = (x[base + k * p.b] - m) - ls; }
    } else {
        let inv = 1.0 / s;
        for (var k = 0u; k < p.k; k++) { y[base + k * p.b] = exp(x[base + k * p.b] - m) * inv; }
    }
}
