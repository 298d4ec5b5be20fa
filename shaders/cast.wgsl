// Dtype conversions over raw 32-bit words. f16 is stored two per word and converted with
// pack2x16float/unpack2x16float, which every backend has, so f16 storage needs no SHADER_F16.
// Specialisation: MODE (0 f32->f16, 1 f16->f32, 2 f32->i32, 3 i32->f32, 4 f32->u32,
// 5 u32->f32, 6 i32<->u32 bit copy). f32 -> integer truncates toward zero, as NumPy's astype.

struct Params {
    n: u32,      // invocations: output words for MODE 0, output elements otherwise
    row: u32,
    total: u32,  // input elements
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    switch MODE {
        case 0u: {
            let lo = bitcast<f32>(src[2u * i]);
            var hi = 0.0;
            if (2u * i + 1u < p.total) { hi = bitcast<f32>(src[2u * i + 1u]); }
            dst[i] = pack_halves(vec2<f32>(lo, hi));
        }
        case 1u: { dst[i] = bitcast<u32>(unpack2x16float(src[i / 2u])[i % 2u]); }
        case 2u: { dst[i] = bitcast<u32>(i32(bitcast<f32>(src[i]))); }
        case 3u: { dst[i] = bitcast<u32>(f32(bitcast<i32>(src[i]))); }
        case 4u: { dst[i] = u32(bitcast<f32>(src[i])); }
        case 5u: { dst[i] = bitcast<u32>(f32(src[i])); }
        default: { dst[i] = src[i]; }
    }
}
