// Elementwise f32 -> f32 maps. The specialisation sets `T` (f32, or vec4<f32> when the length
// is a multiple of 4: four lanes per invocation quadruple bandwidth on CPU adapters) and
// `apply`, which names one of the functions below.

struct Params {
    n: u32,      // elements of T
    row: u32,    // workgroups per grid row (the grid folds into y past 65,535)
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.row) * 256u + li;
    if (i >= p.n) { return; }
    y[i] = apply(x[i]);
}
