// Reductions over the middle axis of a [A, K, B] view (any contiguous run of axes of a
// row-major tensor is such a view). A long K is split into S strided partial sums written as
// [A, S, B] and reduced again by the same kernel, so no workgroup memory or barriers are needed
// (barriers are expensive on CPU adapters) and every invocation has work on wide GPUs.
//
// Partition: split s takes k = s, s + S, s + 2S, ... so neighbouring invocations read
// neighbouring addresses (coalesced on GPUs, vector-friendly on lavapipe).
//
// Specialisation: OP (0 sum, 1 max, 2 min, 3 argmax, 4 argmin) and FIRST (indices are positions
// along K; later passes carry the indices of their partial results in `idx_in`).

struct Params {
    a: u32,
    k: u32,
    b: u32,
    splits: u32,
    n_out: u32,   // a * splits * b
    row: u32,
    scale: f32,   // 1/K for a mean's last pass, else 1
    x0: u32,      // elements of x's binding before the [A, K, B] view (a piece's aligned window)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx_out: array<u32>;
@group(0) @binding(4) var<storage, read> idx_in: array<u32>;

fn better(v: f32, i: u32, best: f32, best_i: u32) -> bool {
    // Ties keep the lowest index, as NumPy's argmax; NaN never wins.
    if (OP == 3u) { return v > best || (v == best && i < best_i); }
    return v < best || (v == best && i < best_i);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let o = grid_index(wg, li, p.row);
    if (o >= p.n_out) { return; }
    let bi = o % p.b;
    let s = (o / p.b) % p.splits;
    let ai = o / (p.b * p.splits);
    let base = p.x0 + ai * p.k * p.b + bi;
    var acc = 0.0;
    if (OP == 1u || OP == 3u) { acc = bitcast<f32>(0xff800000u); }   // -inf
    if (OP == 2u || OP == 4u) { acc = bitcast<f32>(0x7f800000u); }   // +inf
    var best_i = 0xffffffffu;
    for (var k = s; k < p.k; k += p.splits) {
        let v = x[base + k * p.b];
        switch OP {
            case 0u: { acc += v; }
            case 1u: { acc = max(acc, v); }
            case 2u: { acc = min(acc, v); }
            default: {
                var i = k;
                if (!FIRST) { i = idx_in[base - p.x0 + k * p.b]; }
                if (best_i == 0xffffffffu || better(v, i, acc, best_i)) {
                    acc = v;
                    best_i = i;
                }
            }
        }
    }
    out[o] = acc * p.scale;
    if (OP >= 3u) { idx_out[o] = best_i; }
}
