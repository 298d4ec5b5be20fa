// Elementwise f32 -> f32 maps and their gradients, side by side. The specialisation sets `T`
// (f32, or vec4<f32> when the length is a multiple of 4: four lanes per invocation quadruple
// bandwidth on CPU adapters), `apply` (naming one op_* below) and `grad_apply` (one d_*).
// `S` is the storage type with `ld`/`st` converting: T itself, or vec2<u32> holding four
// packed halves (f16 storage: the arithmetic stays f32).
// Each d_* takes the op's input x, its output y and the output's gradient g, and uses
// whichever of x and y gives the cheaper and more exact derivative.

struct Params {
    n: u32,      // elements of T
    row: u32,    // workgroups per grid row (the grid folds into y past 65,535)
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<S>;
@group(0) @binding(2) var<storage, read_write> y: array<S>;
@group(0) @binding(3) var<storage, read> fwd_out: array<S>;
@group(0) @binding(4) var<storage, read> grad: array<S>;

fn op_neg(v: T) -> T { return -v; }
fn op_abs(v: T) -> T { return abs(v); }
fn op_exp(v: T) -> T { return exp(v); }
fn op_log(v: T) -> T { return log(v); }
fn op_sqrt(v: T) -> T { return sqrt(v); }
fn op_rsqrt(v: T) -> T { return inverseSqrt(v); }
fn op_square(v: T) -> T { return v * v; }
fn op_reciprocal(v: T) -> T { return T(1.0) / v; }
fn op_relu(v: T) -> T { return act_relu(v, p.alpha); }
fn op_leaky_relu(v: T) -> T { return act_leaky_relu(v, p.alpha); }
fn op_elu(v: T) -> T { return act_elu(v, p.alpha); }
fn op_selu(v: T) -> T { return act_selu(v, p.alpha); }
fn op_gelu(v: T) -> T { return act_gelu(v, p.alpha); }
fn op_sigmoid(v: T) -> T { return act_sigmoid(v, p.alpha); }
fn op_tanh(v: T) -> T { return act_tanh(v, p.alpha); }
fn op_softplus(v: T) -> T { return act_softplus(v, p.alpha); }
// Scalar forms: alpha * v + beta covers add, sub, mul, negate-and-add.
fn op_affine(v: T) -> T { return p.alpha * v + T(p.beta); }
fn op_div_scalar(v: T) -> T { return v / p.alpha; }
fn op_rdiv_scalar(v: T) -> T { return T(p.alpha) / v; }
fn op_maximum_scalar(v: T) -> T { return max(v, T(p.alpha)); }
fn op_minimum_scalar(v: T) -> T { return min(v, T(p.alpha)); }
fn op_clip(v: T) -> T { return clamp(v, T(p.alpha), T(p.beta)); }
// WGSL's pow is exp2(y * log2(x)): NaN for x < 0. NumPy's semantics for integral exponents
// (sign from odd powers) and pow(x, 0) = 1 are restored here.
fn op_pow_scalar(v: T) -> T {
    if (p.alpha == 0.0) { return T(1.0); }
    let r = pow(abs(v), T(p.alpha));
    let integral = p.alpha == round(p.alpha);
    let odd = integral && abs(p.alpha % 2.0) == 1.0;
    if (!integral) { return select(r, T(bitcast<f32>(0x7fc00000u)), v < T(0.0)); }
    if (odd) { return select(r, -r, v < T(0.0)); }
    return r;
}
// The exponent bits, not isinf/isnan: WGSL lets a compiler assume neither occurs.
fn op_non_finite(v: T) -> T {
    return select(T(0.0), T(1.0), (bitcast<U>(v) & U(0x7fffffffu)) >= U(0x7f800000u));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    y[i] = st(apply(ld(x[i])));
}

// ---- gradients ----

fn d_neg(x: T, y: T, g: T) -> T { return -g; }
fn d_abs(x: T, y: T, g: T) -> T { return g * sign(x); }
fn d_exp(x: T, y: T, g: T) -> T { return g * y; }
fn d_log(x: T, y: T, g: T) -> T { return g / x; }
fn d_sqrt(x: T, y: T, g: T) -> T { return g * 0.5 / y; }
fn d_rsqrt(x: T, y: T, g: T) -> T { return -0.5 * g * y * y * y; }
fn d_square(x: T, y: T, g: T) -> T { return 2.0 * g * x; }
fn d_reciprocal(x: T, y: T, g: T) -> T { return -g * y * y; }
fn d_relu(x: T, y: T, g: T) -> T { return select(T(0.0), g, x > T(0.0)); }
fn d_leaky_relu(x: T, y: T, g: T) -> T { return select(g * p.alpha, g, x > T(0.0)); }
// For x <= 0, y = a(e^x - 1), so dy/dx = a·e^x = y + a.
fn d_elu(x: T, y: T, g: T) -> T { return select(g * (y + p.alpha), g, x > T(0.0)); }
fn d_selu(x: T, y: T, g: T) -> T {
    let scale = 1.0507009873554805;
    return select(g * (y + scale * 1.6732632423543772), g * scale, x > T(0.0));
}
// d/dx [x·Φ(x)] = Φ(x) + x·φ(x).
fn d_gelu(x: T, y: T, g: T) -> T {
    let cdf = 0.5 * (T(1.0) + erf_approx(x * 0.7071067811865476));
    let pdf = exp(-0.5 * x * x) * 0.3989422804014327;
    return g * (cdf + x * pdf);
}
fn d_sigmoid(x: T, y: T, g: T) -> T { return g * y * (T(1.0) - y); }
fn d_tanh(x: T, y: T, g: T) -> T { return g * (T(1.0) - y * y); }
fn d_softplus(x: T, y: T, g: T) -> T { return g * act_sigmoid(x, 0.0); }
fn d_non_finite(x: T, y: T, g: T) -> T { return T(0.0); }
fn d_affine(x: T, y: T, g: T) -> T { return g * p.alpha; }
fn d_div_scalar(x: T, y: T, g: T) -> T { return g / p.alpha; }
fn d_rdiv_scalar(x: T, y: T, g: T) -> T { return -g * y / x; }
// Ties (x equal to the bound) send the gradient through, as TensorFlow's maximum does for
// its first operand.
fn d_maximum_scalar(x: T, y: T, g: T) -> T { return select(T(0.0), g, x >= T(p.alpha)); }
fn d_minimum_scalar(x: T, y: T, g: T) -> T { return select(T(0.0), g, x <= T(p.alpha)); }
fn d_clip(x: T, y: T, g: T) -> T { return select(T(0.0), g, (x >= T(p.alpha)) & (x <= T(p.beta))); }
fn d_pow_scalar(x: T, y: T, g: T) -> T {
    if (p.alpha == 0.0) { return T(0.0); }
    // a·x^(a-1) with x^(a-1) = y / x where x != 0, which keeps op_pow_scalar's sign rules.
    let direct = p.alpha * pow(abs(x), T(p.alpha - 1.0));
    return g * select(p.alpha * y / x, direct, x == T(0.0));
}

@compute @workgroup_size(WG)
fn grad_main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    // Every binding is read, so one layout serves every derivative.
    y[i] = st(grad_apply(ld(x[i]), ld(fwd_out[i]), ld(grad[i])));
}
