// Batch normalisation over the last (channel) axis of a row-major tensor viewed as [M, C]
// (M = the product of every other axis: N·H·W for NHWC, N after a Dense layer).
//
// Specialisation:
//   T      f32, or vec4<f32> when C % 4 == 0 (p.cv then counts vec4s). On lavapipe every storage
//          access is a per-lane loop, so a vec4 moves four channels for the price of one.
//   MODE   `stats`:   0 sum(x - x0), 1 sum(((x - x0) - centre)^2), 2 sum(dy) and sum(dy·(x - mean))
//   OP     `channel`: 0 mean, 1 inv_std, 2 grad_gamma, 3 grad_beta, 4 moving average
//   SHIFT  `normalize`: subtract row 0 of x (x0) before the centre (training) or not (inference)
//
// Statistics are two-pass (mean, then the mean of squared deviations) and *shifted*: each channel
// first subtracts its own first value x0, so for data offset by 1000 the partial sums stay near
// zero and keep f32 precision; the mean of (x - x0) is the `centre`, and the public mean is
// x0 + centre. Normalising with (x - x0) - centre rather than x - mean also avoids the rounding of
// mean to f32 at the offset's magnitude.
//
// Long reductions are cut into S strided partial results ([S, cv], or [2, S, cv] for MODE 2) that
// `finish` adds up, as in reduce.wgsl: no workgroup memory, no barriers (both expensive on CPU
// adapters). With S = 1, `stats` writes the scaled result directly.
//
// Bindings: every entry point uses a contiguous prefix of the slots below (auto layouts hold
// only what an entry point references, and the launcher binds slots 1, 2, ... in order); what
// each slot holds is given per entry point. Slots a variant never reads get a dummy buffer.

struct Params {
    rows: u32,     // M
    cv: u32,       // channels in units of T
    splits: u32,   // S (stats, finish); row blocks (normalize, backward_dx)
    threads: u32,  // invocations
    row: u32,      // workgroups per grid row (launch_1d)
    pad: u32,
    f0: f32,       // scale (stats, finish), epsilon / momentum (channel), 1/M (backward_dx)
    f1: f32,       // 1 - momentum (channel OP 4)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@group(0) @binding(3) var<storage, read> in_a: array<T>;
@group(0) @binding(4) var<storage, read> in_b: array<T>;
@group(0) @binding(5) var<storage, read> in_c: array<T>;
@group(0) @binding(6) var<storage, read> in_d: array<T>;
@group(0) @binding(7) var<storage, read> in_e: array<T>;

// Slots: x = input, out = partials [S, cv] (or [2, S, cv]), in_a = centre (MODE 1) or mean
// (MODE 2), in_b = dy (MODE 2). Invocation i = (split s, channel ch); split s takes rows
// s, s + S, ... so neighbouring invocations read neighbouring addresses.
@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.threads) { return; }
    let ch = i % p.cv;
    let s = i / p.cv;
    var shift = T(0.0);
    if (MODE != 2u) { shift = x[ch]; }
    var centre = T(0.0);
    if (MODE != 0u) { centre = in_a[ch]; }
    var acc = T(0.0);
    var acc2 = T(0.0);
    for (var m = s; m < p.rows; m += p.splits) {
        let at = m * p.cv + ch;
        let v = x[at];
        switch MODE {
            case 0u: { acc += v - shift; }
            case 1u: {
                let d = (v - shift) - centre;
                acc += d * d;
            }
            default: {
                let g = in_b[at];
                acc += g;
                acc2 += g * (v - centre);
            }
        }
    }
    out[i] = acc * p.f0;
    if (MODE == 2u) { out[p.threads + i] = acc2 * p.f0; }
}

// Slots: x = partials [R, S, cv], out = [R, cv]. Invocation i = (plane r, channel ch).
@compute @workgroup_size(WG)
fn finish(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.threads) { return; }
    let ch = i % p.cv;
    let base = (i / p.cv) * p.splits * p.cv + ch;
    var acc = T(0.0);
    for (var s = 0u; s < p.splits; s++) { acc += x[base + s * p.cv]; }
    out[i] = acc * p.f0;
}

// Per-channel results, one invocation per channel group. Slots by OP:
//   0 mean:       x = input (row 0 is the shift), in_a = centre      → x0 + centre
//   1 inv_std:    in_a = variance, f0 = epsilon                      → 1 / sqrt(var + eps)
//   2 grad_gamma: in_a = sums [2, cv], in_b = inv_std                → sum(dy·(x - mean))·inv_std
//   3 grad_beta:  in_a = sums [2, cv]                                → sum(dy)
//   4 moving avg: x = moving, in_a = batch, f0 = momentum, f1 = 1 - momentum (Keras's form)
@compute @workgroup_size(WG)
fn channel(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.threads) { return; }
    switch OP {
        case 0u: { out[i] = x[i] + in_a[i]; }
        // 1 / sqrt, not inverseSqrt: WGSL lets inverseSqrt be 2 ULP off, and this is computed
        // once per channel.
        case 1u: { out[i] = 1.0 / sqrt(in_a[i] + p.f0); }
        case 2u: { out[i] = in_a[p.cv + i] * in_b[i]; }
        case 3u: { out[i] = in_a[i]; }
        default: { out[i] = x[i] * p.f0 + in_a[i] * p.f1; }
    }
}

// y = ((x - x0) - centre) · inv_std · gamma + beta (x0 = 0 without SHIFT). Slots: x = input,
// out = y, in_a = centre (training) or moving mean, in_b = inv_std, in_c = gamma, in_d = beta.
// Invocation i = (row block, channel ch) handles rows rb, rb + blocks, ...: the per-channel
// values are loaded once per invocation instead of once per element.
@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.threads) { return; }
    let ch = i % p.cv;
    let rb = i / p.cv;
    var shift = T(0.0);
    if (SHIFT) { shift = x[ch]; }
    let centre = in_a[ch];
    let k = in_b[ch] * in_c[ch];
    let beta = in_d[ch];
    for (var m = rb; m < p.rows; m += p.splits) {
        let at = m * p.cv + ch;
        out[at] = ((x[at] - shift) - centre) * k + beta;
    }
}

// Training-mode input gradient:
//   dx = gamma·inv_std · (dy - sum(dy)/M - (x - mean)·inv_std²·sum(dy·(x - mean))/M)
// which is gamma·inv_std/M · (M·dy - sum(dy) - xhat·sum(dy·xhat)) with xhat = (x - mean)·inv_std.
// Slots: x = input, out = dx, in_a = mean, in_b = dy, in_c = inv_std, in_d = gamma,
// in_e = sums [2, cv] (sum(dy), sum(dy·(x - mean))); f0 = 1/M. Row blocks as in normalize.
@compute @workgroup_size(WG)
fn backward_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.threads) { return; }
    let ch = i % p.cv;
    let rb = i / p.cv;
    let mean = in_a[ch];
    let istd = in_c[ch];
    let k = in_d[ch] * istd;
    let mdy = in_e[ch] * p.f0;
    let q = in_e[p.cv + ch] * istd * istd * p.f0;
    for (var m = rb; m < p.rows; m += p.splits) {
        let at = m * p.cv + ch;
        out[at] = k * ((in_b[at] - mdy) - (x[at] - mean) * q);
    }
}
