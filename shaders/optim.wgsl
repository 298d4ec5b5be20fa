// Optimizer updates: one elementwise pass per parameter tensor that reads the parameter, its
// gradient and the optimizer's slots, and writes the new parameter and new slots. Fusing the
// whole update into one dispatch moves each value through memory once per step, instead of the
// five or six passes the same update costs as separate elementwise ops.
//
// Weight decay is Keras 3's, for every rule: decoupled, `w ← w − lr·wd·w` before the update
// (the host passes `decay` = lr·wd), never an L2 term in the gradient.
//
// The specialisation sets `T` (f32, or vec4<f32> when the length is a multiple of 4). Every
// step-dependent scalar (the learning rate of the schedule, Adam's bias corrections) is
// computed on the host and arrives in the parameter block, so a step never reads the device.

struct Params {
    n: u32,        // elements of T
    row: u32,      // workgroups per grid row (the grid folds into y past 65,535)
    lr: f32,       // learning rate for this step (Adam: with the bias corrections folded in)
    decay: f32,    // lr · weight decay: the parameter is scaled by 1 − decay before the update
    a: f32,        // SGD: momentum · Adam/RMSprop: beta1 / rho
    b: f32,        // Adam: beta2 · RMSprop: momentum
    eps: f32,
    flag: u32,     // SGD: Nesterov
    c1: f32,       // Nadam: weight of the new first moment
    c2: f32,       // Nadam: weight of the gradient
    c3: f32,       // Nadam: 1 / (1 − β2ᵗ)
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> param: array<T>;
@group(0) @binding(2) var<storage, read> grad: array<T>;
@group(0) @binding(3) var<storage, read_write> param_out: array<T>;
@group(0) @binding(4) var<storage, read> slot1: array<T>;
@group(0) @binding(5) var<storage, read_write> slot1_out: array<T>;
@group(0) @binding(6) var<storage, read> slot2: array<T>;
@group(0) @binding(7) var<storage, read_write> slot2_out: array<T>;
@group(0) @binding(8) var<storage, read> slot3: array<T>;
@group(0) @binding(9) var<storage, read_write> slot3_out: array<T>;

// Plain SGD.
@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    param_out[i] = param[i] * (1.0 - p.decay) - p.lr * grad[i];
}

// Keras's momentum form: v' = μ·v − lr·g; w' = w + v', or with Nesterov w' = w + μ·v' − lr·g.
@compute @workgroup_size(WG)
fn sgd_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let w = param[i] * (1.0 - p.decay);
    let g = grad[i];
    let v = p.a * slot1[i] - p.lr * g;
    slot1_out[i] = v;
    if (p.flag != 0u) {
        param_out[i] = w + p.a * v - p.lr * g;
    } else {
        param_out[i] = w + v;
    }
}

// RMSprop as Keras 3: s' = ρ·s + (1 − ρ)·g²; w' = w − lr·g / √(s' + ε). ε sits under the root
// (Keras's form, unlike Adam's √v + ε): with ε = 1e-7 and s' of the order of 1e-7 the two
// differ by tens of percent per step.
@compute @workgroup_size(WG)
fn rmsprop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let g = grad[i];
    let s = p.a * slot1[i] + (1.0 - p.a) * g * g;
    slot1_out[i] = s;
    param_out[i] = param[i] * (1.0 - p.decay) - p.lr * g / sqrt(s + p.eps);
}

// Keras 3's RMSprop options. `centered` keeps the mean gradient ḡ' = ρ·ḡ + (1 − ρ)·g and divides
// by √(s' − ḡ'² + ε); `momentum` μ accumulates the increment, m' = μ·m + lr·g/√(…), w' = w − m'.
// Slots in order: s, then ḡ when centered, then m.
@compute @workgroup_size(WG)
fn rmsprop_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let g = grad[i];
    let s = p.a * slot1[i] + (1.0 - p.a) * g * g;
    slot1_out[i] = s;
    let m = p.b * slot2[i] + p.lr * g / sqrt(s + p.eps);
    slot2_out[i] = m;
    param_out[i] = param[i] * (1.0 - p.decay) - m;
}

@compute @workgroup_size(WG)
fn rmsprop_centered(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let g = grad[i];
    let s = p.a * slot1[i] + (1.0 - p.a) * g * g;
    let mg = p.a * slot2[i] + (1.0 - p.a) * g;
    slot1_out[i] = s;
    slot2_out[i] = mg;
    param_out[i] = param[i] * (1.0 - p.decay) - p.lr * g / sqrt(s - mg * mg + p.eps);
}

@compute @workgroup_size(WG)
fn rmsprop_centered_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let g = grad[i];
    let s = p.a * slot1[i] + (1.0 - p.a) * g * g;
    let mg = p.a * slot2[i] + (1.0 - p.a) * g;
    slot1_out[i] = s;
    slot2_out[i] = mg;
    let m = p.b * slot3[i] + p.lr * g / sqrt(s - mg * mg + p.eps);
    slot3_out[i] = m;
    param_out[i] = param[i] * (1.0 - p.decay) - m;
}

// Adam with the bias corrections folded into lr on the host (Kingma & Ba's "efficient"
// form, as Keras): m' = β1·m + (1 − β1)·g; v' = β2·v + (1 − β2)·g²;
// w' = w·(1 − decay) − lr_t·m' / (√v' + ε).
@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let g = grad[i];
    let m = p.a * slot1[i] + (1.0 - p.a) * g;
    let v = p.b * slot2[i] + (1.0 - p.b) * g * g;
    slot1_out[i] = m;
    slot2_out[i] = v;
    param_out[i] = param[i] * (1.0 - p.decay) - p.lr * m / (sqrt(v) + p.eps);
}

// Nadam (Keras's form): with the momentum schedule u_t and its running products computed on
// the host, m̂ = c1·m' + c2·g and v̂ = c3·v'; w' = w − lr·m̂ / (√v̂ + ε).
@compute @workgroup_size(WG)
fn nadam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let g = grad[i];
    let m = p.a * slot1[i] + (1.0 - p.a) * g;
    let v = p.b * slot2[i] + (1.0 - p.b) * g * g;
    slot1_out[i] = m;
    slot2_out[i] = v;
    param_out[i] = param[i] * (1.0 - p.decay) - p.lr * (p.c1 * m + p.c2 * g) / (sqrt(p.c3 * v) + p.eps);
}
