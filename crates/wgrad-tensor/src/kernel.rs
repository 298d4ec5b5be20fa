//! WGSL kernels: their sources, specialisation, and the registry the naga test walks.
//!
//! A kernel is one WGSL file of `shaders/` (plus shared helper files). A [`Spec`] prepends a few
//! `const` and `alias` declarations to it, so that every variant is plain, complete WGSL: what
//! naga validates offline is byte for byte what the adapter compiles, and the constants fold on
//! every backend (WGSL `override`s would leave that to each driver).

/// One WGSL kernel family. `file`, `entries` and `blocks` describe the family for the
/// offline checks (this crate's tests), which compare them with the shaders.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Kernel {
    /// Short name, also the pipeline label.
    pub name: &'static str,
    /// File name under `shaders/`.
    pub file: &'static str,
    /// The file's text.
    pub source: &'static str,
    /// Helper files prepended to `source` (after the spec).
    pub helpers: &'static [&'static str],
    /// Entry points the launchers use.
    pub entries: &'static [&'static str],
    /// Invocations per workgroup: the shader's `WG` (every variant starts with its
    /// declaration) and what the launcher divides the invocation count by, one number for
    /// both sides. GEMM kernels shape their 2-D workgroups of this many invocations.
    pub workgroup: u32,
    /// The Rust mirrors of the file's uniform parameter blocks (see [`params!`]); a test
    /// checks them against the WGSL structs of the same names, field by field.
    pub blocks: &'static [BlockLayout],
}

/// How Rust lays out a kernel's uniform parameter block: its WGSL struct's name, each field's
/// name, byte offset and scalar type (`u32`, `f32`, `i32`: the element type of an array
/// field) in order, and its size.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct BlockLayout {
    pub wgsl: &'static str,
    pub fields: &'static [(&'static str, usize, &'static str)],
    pub size: usize,
}

/// The scalar a Rust field type is made of: `u32` for `[[u32; 4]; 2]`.
pub(crate) const fn scalar_of(ty: &'static str) -> &'static str {
    let b = ty.as_bytes();
    let mut i = 0;
    while i + 3 <= b.len() {
        if (b[i] == b'u' || b[i] == b'f' || b[i] == b'i') && b[i + 1] == b'3' && b[i + 2] == b'2' {
            return match b[i] {
                b'u' => "u32",
                b'f' => "f32",
                _ => "i32",
            };
        }
        i += 1;
    }
    "?"
}

/// A uniform parameter block: a `#[repr(C)]` plain-old-data struct that mirrors a WGSL
/// struct field by field (declare it with [`params!`]).
pub(crate) trait Block: bytemuck::Pod {
    const LAYOUT: BlockLayout;
}

/// Declares a kernel's parameter block: `params!("Params" => struct ConvParams { n: u32, … })`
/// makes a `#[repr(C)]` `Pod` struct and its [`BlockLayout`] for the WGSL struct `Params`.
/// A WGSL `vec4<u32>` is a `[u32; 4]` here and must sit at a multiple of 16 bytes: pad with
/// fields that the WGSL struct has too, so that both sides name every word.
macro_rules! params {
    ($(#[$m:meta])* $wgsl:literal => struct $name:ident {
        $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)?
    }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fm])* pub $f: $t),*
        }

        impl $crate::kernel::Block for $name {
            const LAYOUT: $crate::kernel::BlockLayout = $crate::kernel::BlockLayout {
                wgsl: $wgsl,
                fields: &[$((
                    stringify!($f),
                    ::std::mem::offset_of!($name, $f),
                    $crate::kernel::scalar_of(stringify!($t)),
                )),*],
                size: ::std::mem::size_of::<$name>(),
            };
        }
    };
}
pub(crate) use params;

/// The declarations that specialise a kernel: constants, type aliases, function choices.
///
/// Cheap to clone and to hash (the text is shared and its hash computed once), because the
/// pipeline cache looks a spec up on every dispatch and generated GEMM bodies run to kilobytes.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    text: std::sync::Arc<str>,
    hash: u64,
}

impl PartialEq for Spec {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (std::sync::Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for Spec {}

impl std::hash::Hash for Spec {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Spec {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(self, decl: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let text: String = format!("{}{decl}\n", self.text);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Spec {
            hash: h.finish(),
            text: text.into(),
        }
    }

    /// `const NAME: u32 = V;`
    pub fn u32(self, name: &str, v: u32) -> Self {
        self.push(&format!("const {name}: u32 = {v}u;"))
    }

    /// `const NAME: bool = V;`
    pub fn bool(self, name: &str, v: bool) -> Self {
        self.push(&format!("const {name}: bool = {v};"))
    }

    /// `alias NAME = TY;`
    pub fn alias(self, name: &str, ty: &str) -> Self {
        self.push(&format!("alias {name} = {ty};"))
    }

    /// Any other declaration, e.g. a one-line function picking an op.
    pub fn line(self, decl: &str) -> Self {
        self.push(decl)
    }

    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Kernel {
    /// The complete WGSL text of one variant.
    pub fn source_with(&self, spec: &Spec) -> String {
        let mut s = String::with_capacity(spec.text.len() + self.source.len() + 1024);
        s += "// specialisation\n";
        s += &format!("const WG: u32 = {}u;\n", self.workgroup);
        s += &spec.text;
        s += GRID;
        s.push('\n');
        for h in self.helpers {
            s += h;
            s.push('\n');
        }
        s += self.source;
        s
    }
}

macro_rules! shader {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shaders/",
            $file
        ))
    };
}
pub(crate) use shader;

/// Declares a kernel family's [`Kernel`] in one statement:
///
/// ```text
/// kernel!(pub static LRN: "lrn" in "lrn.wgsl", workgroup 64,
///     entries ["lrn_forward", "lrn_backward"], blocks [LrnBlock]);
/// ```
///
/// `blocks` names the family's [`params!`] structs (their layouts are what the naga test
/// checks), `helpers` the files of `shaders/` prepended after the spec.
macro_rules! kernel {
    ($vis:vis static $id:ident: $name:literal in $file:literal, workgroup $wg:expr,
     entries [$($e:literal),* $(,)?], blocks [$($b:ty),* $(,)?]
     $(, helpers [$($h:literal),* $(,)?])? $(,)?) => {
        $vis static $id: $crate::kernel::Kernel = $crate::kernel::Kernel {
            name: $name,
            file: $file,
            source: $crate::kernel::shader!($file),
            helpers: &[$($($crate::kernel::shader!($h)),*)?],
            entries: &[$($e),*],
            workgroup: $wg,
            blocks: &[$(<$b as $crate::kernel::Block>::LAYOUT),*],
        };
    };
}
pub(crate) use kernel;

/// `grid_index`, the folded 1-D index every grid kernel starts from.
const GRID: &str = shader!("common/grid.wgsl");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::all_variants;
    use naga::{AddressSpace, Module, TypeInner};

    /// Compares a Rust block with the WGSL struct of its name in `module`: the same fields
    /// in the same order at the same offsets, and the same size.
    fn compare(block: &BlockLayout, module: &Module) -> Result<(), String> {
        let ty = module
            .types
            .iter()
            .map(|(_, t)| t)
            .find(|t| t.name.as_deref() == Some(block.wgsl))
            .ok_or_else(|| format!("no WGSL struct {}", block.wgsl))?;
        let TypeInner::Struct { members, span } = &ty.inner else {
            return Err(format!("{} is not a struct", block.wgsl));
        };
        let wgsl: Vec<(&str, usize, &str)> = members
            .iter()
            .map(|m| {
                let name = m.name.as_deref().unwrap_or("?");
                (name, m.offset as usize, scalar(module, m.ty))
            })
            .collect();
        if wgsl != block.fields {
            return Err(format!(
                "fields (name, offset, scalar) differ:\n  Rust {:?}\n  WGSL {wgsl:?}",
                block.fields
            ));
        }
        if *span as usize != block.size {
            return Err(format!("size: Rust {} bytes, WGSL {span}", block.size));
        }
        Ok(())
    }

    /// The scalar a WGSL type is made of (through vectors and arrays).
    fn scalar(module: &Module, ty: naga::Handle<naga::Type>) -> &'static str {
        let s = match module.types[ty].inner {
            TypeInner::Scalar(s) | TypeInner::Vector { scalar: s, .. } => s,
            TypeInner::Array { base, .. } => return scalar(module, base),
            _ => return "?",
        };
        match (s.kind, s.width) {
            (naga::ScalarKind::Uint, 4) => "u32",
            (naga::ScalarKind::Float, 4) => "f32",
            (naga::ScalarKind::Sint, 4) => "i32",
            _ => "?",
        }
    }

    fn parse(kernel: &Kernel, spec: &Spec) -> Module {
        let src = kernel.source_with(spec);
        naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", kernel.name, e.emit_to_string(&src)))
    }

    /// Every uniform struct of every kernel variant has a Rust mirror with its layout, and
    /// every mirror a kernel lists is one of its uniforms: a field added, dropped or moved on
    /// one side fails here, without an adapter.
    #[test]
    fn parameter_blocks_match_their_wgsl_structs() {
        let mut checked = std::collections::BTreeSet::new();
        for (kernel, spec) in all_variants() {
            let module = parse(kernel, &spec);
            let uniforms: Vec<&str> = module
                .global_variables
                .iter()
                .filter(|(_, v)| v.space == AddressSpace::Uniform)
                .map(|(_, v)| module.types[v.ty].name.as_deref().unwrap_or("?"))
                .collect();
            for u in &uniforms {
                assert!(
                    kernel.blocks.iter().any(|b| b.wgsl == *u),
                    "{}: the uniform struct {u} has no Rust block in `blocks`",
                    kernel.name
                );
            }
            for b in kernel.blocks {
                assert!(
                    uniforms.contains(&b.wgsl),
                    "{}: lists a block for {}, which no uniform uses",
                    kernel.name,
                    b.wgsl
                );
                if let Err(e) = compare(b, &module) {
                    panic!("{} ({}): {e}", kernel.name, b.wgsl);
                }
                checked.insert((kernel.name, b.wgsl));
            }
        }
        assert!(checked.len() >= 20, "only {} blocks checked", checked.len());
    }

    /// Every 1-D entry point, and the generated blocked GEMM, runs `kernel.workgroup`
    /// invocations per workgroup, the number its launcher divides by. Tile-shaped 2-D
    /// workgroups (the tiled GEMM's 16×16, the transpose's 8×8) are launched per output tile
    /// instead, and single-invocation entries (NMS's sequential walks) by one workgroup.
    #[test]
    fn workgroups_have_the_size_their_launchers_assume() {
        let mut entries = 0;
        for (kernel, spec) in all_variants() {
            let module = parse(kernel, &spec);
            for e in &module.entry_points {
                let [x, y, z] = e.workgroup_size;
                let one_d = x > 1 && y == 1 && z == 1;
                if one_d || e.name == "gemm_blocked" {
                    assert_eq!(x * y * z, kernel.workgroup, "{}::{}", kernel.name, e.name);
                    entries += 1;
                }
            }
        }
        assert!(entries >= 40, "only {entries} entry points checked");
    }

    /// The comparison catches two fields swapped, a missing trailing pad and an f32 where the
    /// shader has a u32.
    #[test]
    fn a_misordered_block_is_caught() {
        let module = parse(&crate::ops::fill::FILL, &Spec::new());
        const TAIL: [(&str, usize, &str); 4] = [
            ("base", 16, "u32"),
            ("pad0", 20, "u32"),
            ("pad1", 24, "u32"),
            ("pad2", 28, "u32"),
        ];
        let with_tail = |head: [(&'static str, usize, &'static str); 4]| -> &'static [_] {
            Box::leak(
                head.into_iter()
                    .chain(TAIL)
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        };
        let good = BlockLayout {
            wgsl: "Params",
            fields: with_tail([
                ("n", 0, "u32"),
                ("row", 4, "u32"),
                ("word", 8, "u32"),
                ("step", 12, "u32"),
            ]),
            size: 32,
        };
        assert_eq!(compare(&good, &module), Ok(()));
        let swapped = BlockLayout {
            fields: with_tail([
                ("n", 0, "u32"),
                ("row", 4, "u32"),
                ("step", 8, "u32"),
                ("word", 12, "u32"),
            ]),
            ..good
        };
        assert!(compare(&swapped, &module).is_err());
        let short = BlockLayout {
            fields: &good.fields[..7],
            size: 28,
            ..good
        };
        assert!(compare(&short, &module).is_err());
        let float = BlockLayout {
            fields: with_tail([
                ("n", 0, "u32"),
                ("row", 4, "u32"),
                ("word", 8, "f32"),
                ("step", 12, "u32"),
            ]),
            ..good
        };
        assert!(compare(&float, &module).is_err());
    }
}
