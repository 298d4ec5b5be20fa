// Constant fills and ranges. `full` writes a raw 32-bit pattern (an f32, an i32, a u32 or two
// f16 halves), so one entry point serves every dtype.

struct Params {
    n: u32,
    row: u32,
    word: u32,     // full: the pattern; arange: start (f32 or i32 bits)
    step: u32,     // arange: step (f32 or i32 bits)
    base: u32,     // arange: index of this piece's first element
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn full(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    dst[i] = p.word;
}

@compute @workgroup_size(WG)
fn arange_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    dst[i] = bitcast<u32>(bitcast<f32>(p.word) + f32(i + p.base) * bitcast<f32>(p.step));
}

@compute @workgroup_size(WG)
fn arange_i32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    dst[i] = bitcast<u32>(bitcast<i32>(p.word) + i32(i + p.base) * bitcast<i32>(p.step));
}
