// f32 -> packed f16, shared by every kernel that stores halves. pack2x16float leaves values
// outside f16's finite range indeterminate (WGSL); dynamic loss scaling needs an overflow to
// read as ±inf (and a NaN to stay NaN), so those lanes are encoded by hand. 0x477ff000 is
// 65520, the first value that rounds to inf.
fn half_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let mag = b & 0x7fffffffu;
    if (mag > 0x7f800000u) { return sign | 0x7e00u; }
    if (mag >= 0x477ff000u) { return sign | 0x7c00u; }
    return pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu;
}

// Two halves in one word (x in the low half), the common in-range case in one instruction.
fn pack_halves(v: vec2<f32>) -> u32 {
    let mag = bitcast<vec2<u32>>(v) & vec2<u32>(0x7fffffffu);
    if (all(mag < vec2<u32>(0x477ff000u))) { return pack2x16float(v); }
    return half_bits(v.x) | (half_bits(v.y) << 16u);
}
