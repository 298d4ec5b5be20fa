// C[batch] = act(A[batch] (M x K) · B[batch] (K x N) + bias), all row-major f32, as the shared
// GEMM skeletons (shaders/common/gemm.wgsl) with z = the batch index.
//
// The specialisation provides `AT`/`BT`/`CT` (f32, or vec4<f32> when rows are 4-aligned, so
// loads and stores move four values per per-lane loop on CPU adapters), `load_a_elem(e)`,
// `load_a4` (only when K is a multiple of 4), `load_b(e)` (B[e..e+4] as a vec4), `store_c`, and
// the generated `gemm_blocked`. Bias and the piecewise-linear activations are run-time
// parameters of the write-out, so one pipeline serves them all.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_batch: u32,    // element stride between batches (0 broadcasts one matrix)
    b_batch: u32,
    c_batch: u32,
    slope: f32,      // act_linear's negative slope: 1 identity, 0 relu, alpha leaky_relu
    has_bias: u32,
    row0: u32,
    z0: u32,
    lda: u32,        // elements between rows of A: K, or the whole K for a split-K slice
    wg_log: u32,     // log2 of gemm_blocked's workgroup width along N
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<AT>;
@group(0) @binding(2) var<storage, read> b: array<BT>;
@group(0) @binding(3) var<storage, read_write> c: array<CT>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Element offset of the row's first value in A.
alias RowInfo = u32;

// K positions are plain indices here.
alias KA = u32;
alias KB = u32;

fn row_info(z: u32, row: u32) -> u32 { return z * p.a_batch + row * p.lda; }
fn ka_start(z: u32, k: u32) -> u32 { return k; }
fn ka_next(s: u32, step: u32) -> u32 { return s + step; }
fn kb_start(z: u32, k: u32) -> u32 { return k; }
fn kb_next(s: u32) -> u32 { return s + 1u; }
fn load_a(r: u32, k: u32) -> f32 { return load_a_elem(r + k); }
fn load_b4(z: u32, k: u32, col: u32) -> vec4<f32> { return load_b(z * p.b_batch + k * p.n + col); }
fn k_range(z: u32) -> vec2<u32> { return vec2<u32>(0u, p.k); }

// The write-out's per-column data is the bias.
alias Epi = vec4<f32>;

fn epi_at(z: u32, col: u32) -> vec4<f32> {
    if (p.has_bias == 0u) { return vec4<f32>(0.0); }
    return vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]);
}

fn write_out(z: u32, row: u32, col: u32, acc: vec4<f32>, bias4: vec4<f32>) {
    if (row >= p.m || col >= p.n) { return; }
    store_c(z * p.c_batch + row * p.n + col, col, act_linear(acc + bias4, p.slope));
}
