//! WGSL generated for the convolutions: the implicit-GEMM specialisation of each direction
//! (element access, loaders and write-out forwarded to `shaders/conv.wgsl`'s functions) and
//! the direct filter-gradient body, unrolled per filter shape.

use std::sync::Mutex;

use super::{CONV2D_BACKWARD_FILTER, CONV2D_BACKWARD_INPUT, CONV2D_FORWARD};
use crate::kernel::{Kernel, Spec};
use crate::ops::gemm::{self, Blocking};

/// Filters with at most this many taps per output channel (KH·KW·C, one group) take the
/// direct filter-gradient kernel instead of the implicit GEMM.
pub(crate) const MAX_DIRECT_TAPS: usize = 32;

/// `filter_grad` for a `kh`×`kw`×`c` filter: every tap's running sum in its own register
/// (lavapipe turns an indexed local array into memory gathers), the tap loops unrolled.
/// With `vec4`, each invocation takes four neighbouring output channels (O a multiple of 4):
/// dy and the partial sums move as vec4 and each x value serves four sums.
/// With `bias`, the same walk also sums dy itself (the bias gradient, Σ dy over N·OH·OW):
/// one more register and no more loads, instead of a reduction pass over dy of its own. The
/// partial sums are then `[slice, KH·KW·C + 1, O]`, the bias's row last.
/// With `slide` (see [`slides`]) each row's walk keeps the window in registers.
pub(crate) fn taps_spec(kh: usize, kw: usize, c: usize, vec4: bool, bias: bool, slide: bool) -> Spec {
    static CACHE: gemm::SpecCache<(usize, usize, usize, bool, bool, bool)> = Mutex::new(Vec::new());
    gemm::memo(&CACHE, (kh, kw, c, vec4, bias, slide), || {
        taps_body(kh, kw, c, vec4, bias, slide)
    })
}

/// Whether the direct kernels can slide their window along a row: with a horizontal stride
/// and dilation of 1, the taps of column `col + 1` are those of `col` moved by one, so each
/// step loads only the window's new column (3 of 9 values for a 3×3 filter) and keeps the
/// rest in registers. Padding cells load as zeros, which add nothing to the sums.
pub(crate) fn slides(kw: usize, stride_w: usize, dilation_w: usize) -> bool {
    kw > 1 && stride_w == 1 && dilation_w == 1
}

/// The straight-line code that loads the window column `j` (`x{j}` its position, `in{i}` and
/// `base{i}` per filter row from the row set-up) into `v{i}_{j}_{ch}`, zero off the image.
fn window_column(kh: usize, c: usize, j: usize, col: &str, indent: &str, decl: &str) -> String {
    let mut f = format!("{indent}let x{j} = {col};\n{indent}let ok{j} = x{j} >= 0 && x{j} < i32(p.w);\n");
    f += &format!("{indent}let cx{j} = u32(clamp(x{j}, 0, i32(p.w) - 1));\n");
    for i in 0..kh {
        for ch in 0..c {
            f += &format!(
                "{indent}{decl}v{i}_{j}_{ch} = select(0.0, x[(base{i} + cx{j}) * p.c + {ch}u], in{i} && ok{j});\n"
            );
        }
    }
    f
}

/// The straight-line code that moves the window one column right: `v{i}_{j}` ← `v{i}_{j+1}`.
fn window_shift(kh: usize, kw: usize, c: usize, indent: &str) -> String {
    let mut f = String::new();
    for i in 0..kh {
        for j in 0..kw - 1 {
            for ch in 0..c {
                f += &format!("{indent}v{i}_{j}_{ch} = v{i}_{}_{ch};\n", j + 1);
            }
        }
    }
    f
}

/// The window's first `kw - 1` columns, declared as registers before a row's walk (`left`
/// its first column).
fn window_start(kh: usize, kw: usize, c: usize, indent: &str) -> String {
    let mut f = String::new();
    for j in 0..kw - 1 {
        f += &window_column(kh, c, j, &format!("left + {j}"), indent, "var ");
    }
    f
}

fn taps_body(kh: usize, kw: usize, c: usize, vec4: bool, bias: bool, slide: bool) -> Spec {
    let taps = kh * kw * c;
    let rows_out = taps + bias as usize;
    let mut f = String::from("fn filter_grad(o: u32, r0: u32, r1: u32, slice: u32) {\n");
    for t in 0..rows_out {
        f += &format!("    var a{t} = DYT(0.0);\n");
    }
    f += "    for (var r = r0; r < r1; r++) {\n";
    f += "        let n = r / p.oh;\n        let top = i32((r % p.oh) * p.sh) - i32(p.pt);\n";
    for i in 0..kh {
        f += &format!("        let y{i} = top + {i} * i32(p.dh);\n");
        f += &format!("        let in{i} = y{i} >= 0 && y{i} < i32(p.h);\n");
        f += &format!("        let base{i} = (n * p.h + u32(max(y{i}, 0))) * p.w;\n");
    }
    f += "        var left = -i32(p.pl);\n        var q = r * p.ow * p.o + o;\n";
    if slide {
        f += &window_start(kh, kw, c, "        ");
    }
    f += "        for (var col = 0u; col < p.ow; col++) {\n            let g = dy[q];\n";
    if bias {
        f += &format!("            a{taps} += g;\n");
    }
    if slide {
        let last = kw - 1;
        f += "            {\n";
        f += &window_column(kh, c, last, &format!("left + {last}"), "            ", "var ");
        for i in 0..kh {
            for j in 0..kw {
                for ch in 0..c {
                    let t = (i * kw + j) * c + ch;
                    f += &format!("            a{t} += g * v{i}_{j}_{ch};\n");
                }
            }
        }
        f += &window_shift(kh, kw, c, "            ");
        f += "            }\n";
    } else {
        for j in 0..kw {
            f += &format!("            let x{j} = left + {j} * i32(p.dw);\n");
            f += &format!("            let ok{j} = x{j} >= 0 && x{j} < i32(p.w);\n");
        }
        for i in 0..kh {
            for j in 0..kw {
                f += &format!("            if (in{i} && ok{j}) {{\n");
                f += &format!("                let e = (base{i} + u32(x{j})) * p.c;\n");
                for ch in 0..c {
                    let t = (i * kw + j) * c + ch;
                    f += &format!("                a{t} += g * x[e + {ch}u];\n");
                }
                f += "            }\n";
            }
        }
    }
    f += "            left += i32(p.sw);\n            q += p.o;\n        }\n    }\n";
    f += &format!("    let base = slice * {rows_out}u * p.o + o;\n");
    for t in 0..rows_out {
        f += &format!("    partial[base + {t}u * p.o] = a{t};\n");
    }
    f += "}";
    let ty = if vec4 { "vec4<f32>" } else { "f32" };
    Spec::new().alias("DYT", ty).line(&f)
}

/// `conv_row` for a `kh`×`kw`×`c` filter (shaders/conv_forward_taps.wgsl): the taps of
/// `groups` groups of four output channels in named vec4 registers, the tap loops unrolled,
/// each x value loaded once for all of them.
pub(crate) fn forward_taps_spec(kh: usize, kw: usize, c: usize, groups: usize, slide: bool) -> Spec {
    static CACHE: gemm::SpecCache<(usize, usize, usize, usize, bool)> = Mutex::new(Vec::new());
    gemm::memo(&CACHE, (kh, kw, c, groups, slide), || {
        forward_taps_body(kh, kw, c, groups, slide)
    })
}

/// Channel groups (of four) per invocation of the direct forward kernel: as many as divide
/// the layer's groups while the filter registers stay at about 40 vec4s (more spill on
/// lavapipe's AVX2 code).
pub(crate) fn forward_taps_groups(taps: usize, units: usize) -> usize {
    [4, 2, 1]
        .into_iter()
        .find(|&g| units.is_multiple_of(g) && taps * g <= 40)
        .unwrap_or(1)
}

fn forward_taps_body(kh: usize, kw: usize, c: usize, groups: usize, slide: bool) -> Spec {
    let taps = kh * kw * c;
    // `o` is this invocation's first channel group; its `groups` groups are o, o + 1, ….
    let mut f = String::from("fn conv_row(r: u32, o: u32) {\n");
    for g in 0..groups {
        for t in 0..taps {
            f += &format!("    let w{t}_{g} = wt[{t}u * p.o + o + {g}u];\n");
        }
        f += &format!("    var b{g} = vec4<f32>(0.0);\n");
        f += &format!("    if (p.has_bias != 0u) {{ b{g} = bias[o + {g}u]; }}\n");
    }
    f += "    let n = r / p.oh;\n    let top = i32((r % p.oh) * p.sh) - i32(p.pt);\n";
    for i in 0..kh {
        f += &format!("    let y{i} = top + {i} * i32(p.dh);\n");
        f += &format!("    let in{i} = y{i} >= 0 && y{i} < i32(p.h);\n");
        f += &format!("    let base{i} = (n * p.h + u32(max(y{i}, 0))) * p.w;\n");
    }
    f += "    var left = -i32(p.pl);\n    var q = r * p.ow * p.o + o;\n";
    if slide {
        f += &window_start(kh, kw, c, "    ");
    }
    f += "    for (var col = 0u; col < p.ow; col++) {\n";
    for g in 0..groups {
        f += &format!("        var acc{g} = b{g};\n");
    }
    if slide {
        let last = kw - 1;
        f += &window_column(kh, c, last, &format!("left + {last}"), "        ", "var ");
        for i in 0..kh {
            for j in 0..kw {
                for ch in 0..c {
                    let t = (i * kw + j) * c + ch;
                    for g in 0..groups {
                        f += &format!("        acc{g} += v{i}_{j}_{ch} * w{t}_{g};\n");
                    }
                }
            }
        }
        f += &window_shift(kh, kw, c, "        ");
    } else {
        f += &forward_taps_gather(kh, kw, c, groups);
    }
    f += &forward_taps_store(groups);
    f += "        left += i32(p.sw);\n        q += p.o;\n    }\n}";
    Spec::new().line(&f)
}

/// One output pixel's taps, each loaded where it lies (any stride and dilation).
fn forward_taps_gather(kh: usize, kw: usize, c: usize, groups: usize) -> String {
    let mut f = String::new();
    for j in 0..kw {
        f += &format!("        let x{j} = left + {j} * i32(p.dw);\n");
        f += &format!("        let ok{j} = x{j} >= 0 && x{j} < i32(p.w);\n");
    }
    for i in 0..kh {
        for j in 0..kw {
            f += &format!("        if (in{i} && ok{j}) {{\n");
            f += &format!("            let e = (base{i} + u32(x{j})) * p.c;\n");
            for ch in 0..c {
                let t = (i * kw + j) * c + ch;
                f += &format!("            let v{t} = x[e + {ch}u];\n");
                for g in 0..groups {
                    f += &format!("            acc{g} += v{t} * w{t}_{g};\n");
                }
            }
            f += "        }\n";
        }
    }
    f
}

/// The fused activation and the stores of one pixel's `groups` channel groups.
fn forward_taps_store(groups: usize) -> String {
    // act_linear's form: relu(-inf) stays 0 rather than 0 · -inf = NaN.
    let mut f = String::from("        let zero = vec4<f32>(0.0);\n");
    for g in 0..groups {
        f += &format!("        let neg{g} = select(p.slope * min(acc{g}, zero), zero, p.slope == 0.0);\n");
        f += &format!("        y[q + {g}u] = max(acc{g}, zero) + neg{g};\n");
    }
    f
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Forward,
    BackwardInput,
    BackwardFilter,
}

impl Direction {
    pub(crate) fn kernel(self) -> &'static Kernel {
        match self {
            Direction::Forward => &CONV2D_FORWARD,
            Direction::BackwardInput => &CONV2D_BACKWARD_INPUT,
            Direction::BackwardFilter => &CONV2D_BACKWARD_FILTER,
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Direction::Forward => "fwd",
            Direction::BackwardInput => "bwi",
            Direction::BackwardFilter => "bwf",
        }
    }
}

/// One direction's specialisation: A/B/C element access (vec4 when channels allow) and the
/// skeleton's loaders forwarded to that direction's functions.
pub(crate) fn spec(dir: Direction, a_vec4: bool, b_vec4: bool, c_vec4: bool, blk: Blocking) -> Spec {
    static CACHE: gemm::SpecCache<(Direction, bool, bool, bool, gemm::BlockShape)> = Mutex::new(Vec::new());
    gemm::memo(&CACHE, (dir, a_vec4, b_vec4, c_vec4, blk.shader_key()), || {
        let vec = |v: bool| if v { "vec4<f32>" } else { "f32" };
        let access = |name: &str, buf: &str, v: bool| {
            if v {
                format!("fn {name}_elem(e: u32) -> f32 {{ return {buf}[e / 4u][e % 4u]; }}\nfn {name}_vec(e: u32) -> vec4<f32> {{ return {buf}[e / 4u]; }}")
            } else {
                format!("fn {name}_elem(e: u32) -> f32 {{ return {buf}[e]; }}\nfn {name}_vec(e: u32) -> vec4<f32> {{ return vec4<f32>({buf}[e], {buf}[e + 1u], {buf}[e + 2u], {buf}[e + 3u]); }}")
            }
        };
        let store = if c_vec4 {
            "fn store_c(e: u32, col: u32, v: vec4<f32>) { dst[e / 4u] = v; }\nfn dst_elem(e: u32, v: f32) { dst[e / 4u][e % 4u] = v; }\nfn load_residual(e: u32, col: u32) -> vec4<f32> { return residual[e / 4u]; }"
        } else {
            "fn store_c(e: u32, col: u32, v: vec4<f32>) { for (var j = 0u; j < 4u; j++) { if (col + j < p.n) { dst[e + j] = v[j]; } } }\nfn dst_elem(e: u32, v: f32) { dst[e] = v; }\nfn load_residual(e: u32, col: u32) -> vec4<f32> { var r = vec4<f32>(0.0); for (var j = 0u; j < 4u; j++) { if (col + j < p.n) { r[j] = residual[e + j]; } } return r; }"
        };
        let d = dir.prefix();
        let krange = if dir == Direction::BackwardFilter {
            "bwf_k_range"
        } else {
            "full_k"
        };
        // K state types and their steppers: taps for A in the forward and input-gradient
        // directions, output pixels for B in the filter gradient, plain indices otherwise.
        let (ka_ty, ka, ka_next, kb_ty, kb) = match dir {
            Direction::Forward => ("TapPos", "fwd_ka", "fwd_ka_next", "u32", "index"),
            Direction::BackwardInput => ("TapPos", "bwi_ka", "bwi_ka_next", "u32", "index"),
            Direction::BackwardFilter => ("u32", "index", "index_step", "TapPos", "bwf_kb"),
        };
        Spec::new()
            .alias("T", "vec4<f32>")
            .alias("AT", vec(a_vec4))
            .alias("BT", vec(b_vec4))
            .alias("CT", vec(c_vec4))
            .bool("B_VEC4", b_vec4)
            .alias("KA", ka_ty)
            .alias("KB", kb_ty)
            .line(&access("a", "src_a", a_vec4))
            .line(&access("b", "src_b", b_vec4))
            .line(store)
            .line(&format!("fn row_info(z: u32, row: u32) -> RowInfo {{ return {d}_row_info(z, row); }}"))
            .line(&format!("fn load_a(r: RowInfo, s: KA) -> f32 {{ return {d}_load_a(r, s); }}"))
            .line(&format!("fn load_a4(r: RowInfo, s: KA) -> vec4<f32> {{ return {d}_load_a4(r, s); }}"))
            .line(&format!("fn load_b4(z: u32, s: KB, col: u32) -> vec4<f32> {{ return {d}_load_b4(z, s, col); }}"))
            .line(&format!("fn ka_start(z: u32, k: u32) -> KA {{ return {ka}_start(z, k); }}"))
            .line(&format!("fn ka_next(s: KA, step: u32) -> KA {{ return {ka_next}(s, step); }}"))
            .line(&format!("fn kb_start(z: u32, k: u32) -> KB {{ return {kb}_start(z, k); }}"))
            .line(&format!("fn kb_next(s: KB) -> KB {{ return {kb}_next(s); }}"))
            .line(&format!("fn k_range(z: u32) -> vec2<u32> {{ return {krange}(z); }}"))
            .line(&format!("fn write_out(z: u32, row: u32, col: u32, acc: vec4<f32>, e: Epi) {{ {d}_write_out(z, row, col, acc, e); }}"))
            .line(&gemm::blocked_entry(blk, a_vec4))
    })
}
