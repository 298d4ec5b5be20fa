// Elementwise binary ops with NumPy broadcasting, and `where`.
// Specialisation: `T` (f32 or vec4<f32>), `M` the matching mask type (u32 or vec4<u32>),
// `O` the output type (T for arithmetic, M for comparisons), `BCAST` whether operands need
// stride arithmetic (vec4 is only used when both operands have the output's shape), and
// `apply`, naming one op_* function. `S`/`OS` are the operands' and the output's storage
// types with `ld`/`sto` converting: T and O themselves, or vec2<u32> holding four packed
// halves (f16 storage of same-shape arithmetic: the arithmetic stays f32).

struct Params {
    shape: array<vec4<u32>, 2>,  // output extents, rank <= 8
    sa: array<vec4<u32>, 2>,     // element strides of a (0 on broadcast dimensions)
    sb: array<vec4<u32>, 2>,
    sc: array<vec4<u32>, 2>,     // strides of the mask of `where`
    n: u32,
    row: u32,
    rank: u32,
    // A piece of an output past the binding limit: its first output index, and how much
    // lower each operand's bound window starts (the base for operands of the output's shape,
    // bound in windows; 0 for broadcast ones, bound whole).
    base: u32,
    base_a: u32,
    base_b: u32,
    base_c: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<S>;
@group(0) @binding(3) var<storage, read_write> out: array<OS>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;

fn op_add(x: T, y: T) -> T { return x + y; }
fn op_sub(x: T, y: T) -> T { return x - y; }
fn op_mul(x: T, y: T) -> T { return x * y; }
fn op_div(x: T, y: T) -> T { return x / y; }
fn op_maximum(x: T, y: T) -> T { return max(x, y); }
fn op_minimum(x: T, y: T) -> T { return min(x, y); }
fn op_pow(x: T, y: T) -> T {
    // NumPy semantics for negative bases with integral exponents (see unary.wgsl).
    let r = pow(abs(x), y);
    let integral = y == round(y);
    let odd = integral & (abs(y % T(2.0)) == T(1.0));
    let signed = select(r, -r, odd & (x < T(0.0)));
    let nan = T(bitcast<f32>(0x7fc00000u));
    return select(select(nan, signed, integral | (x >= T(0.0))), T(1.0), y == T(0.0));
}
fn op_eq(x: T, y: T) -> M { return select(M(0u), M(1u), x == y); }
// `!=` compiles to an ordered comparison on some drivers (lavapipe), false for NaN; NumPy's
// ne(NaN, y) is true, so take the complement of `==` instead.
fn op_ne(x: T, y: T) -> M { return select(M(1u), M(0u), x == y); }
fn op_lt(x: T, y: T) -> M { return select(M(0u), M(1u), x < y); }
fn op_le(x: T, y: T) -> M { return select(M(0u), M(1u), x <= y); }
fn op_gt(x: T, y: T) -> M { return select(M(0u), M(1u), x > y); }
fn op_ge(x: T, y: T) -> M { return select(M(0u), M(1u), x >= y); }

// Element offsets of a, b and the mask for output element i. The extents are read straight
// from the uniform block. Passing its arrays to a function by value makes a private copy per
// invocation, and on lavapipe (Mesa 22.3) every dispatch of that form grew the process by
// ~180 KB that was never returned (tests/host_memory.rs); indexing the uniform does not.
fn offsets(i: u32) -> vec3<u32> {
    var rem = i;
    var o = vec3<u32>(0u);
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let e = p.shape[q][r];
        let c = rem % e;
        rem = rem / e;
        o += c * vec3<u32>(p.sa[q][r], p.sb[q][r], p.sc[q][r]);
    }
    return o;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    if (BCAST) {
        let o = offsets(i + p.base);
        out[i] = sto(apply(ld(a[o.x - p.base_a]), ld(b[o.y - p.base_b])));
    } else {
        out[i] = sto(apply(ld(a[i]), ld(b[i])));
    }
}

// out = mask != 0 ? a : b, all three broadcast to the output (specialised with O = T = f32).
@compute @workgroup_size(WG)
fn where_main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let o = offsets(i + p.base);
    out[i] = sto(O(select(ld(b[o.y - p.base_b]), ld(a[o.x - p.base_a]), mask[o.z - p.base_c] != 0u)));
}
