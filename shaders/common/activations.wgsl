// Activations shared by the elementwise kernels and the GEMM write-out.
// `T` is f32 or vec4<f32>, set by the specialisation; every formula is the stable form
// (no exp of a large positive number), so saturated units give 0/1, never NaN.

fn act_identity(x: T, a: f32) -> T { return x; }
fn act_relu(x: T, a: f32) -> T { return max(x, T(0.0)); }
fn act_leaky_relu(x: T, a: f32) -> T { return select(x * a, x, x > T(0.0)); }
fn act_elu(x: T, a: f32) -> T { return select(a * (exp(min(x, T(0.0))) - T(1.0)), x, x > T(0.0)); }
// SELU's constants are fixed by its self-normalising derivation (Klambauer et al. 2017).
fn act_selu(x: T, a: f32) -> T { return 1.0507009873554805 * act_elu(x, 1.6732632423543772); }
fn act_sigmoid(x: T, a: f32) -> T {
    let e = exp(-abs(x));
    return select(e / (T(1.0) + e), T(1.0) / (T(1.0) + e), x >= T(0.0));
}
// Some drivers compute tanh as a ratio of exponentials that overflows to NaN past |x| ~ 44;
// tanh(15) already rounds to 1 in f32.
fn act_tanh(x: T, a: f32) -> T { return tanh(clamp(x, T(-15.0), T(15.0))); }
fn act_softplus(x: T, a: f32) -> T { return max(x, T(0.0)) + log(T(1.0) + exp(-abs(x))); }
// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): WGSL has no erf builtin.
fn erf_approx(x: T) -> T {
    let s = sign(x);
    let v = abs(x);
    let t = T(1.0) / (T(1.0) + 0.3275911 * v);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return s * (T(1.0) - poly * exp(-v * v));
}
// Exact GELU (erf form), the default of Keras and PyTorch.
fn act_gelu(x: T, a: f32) -> T { return 0.5 * x * (T(1.0) + erf_approx(x * 0.7071067811865476)); }

// Identity, ReLU and leaky ReLU as one run-time parameter (slope 1, 0, alpha) for GEMM
// write-outs: one pipeline serves all three, with no branch. Transcendental activations run
// as a following elementwise kernel instead: inlined into every cell of a register-blocked
// write-out they multiply lavapipe's JIT time, for a pass that is memory-bound anyway.
fn act_linear(x: T, slope: f32) -> T {
    // The select keeps relu(-inf) = 0 rather than 0 * -inf = NaN.
    return max(x, T(0.0)) + select(slope * min(x, T(0.0)), T(0.0), slope == 0.0);
}
