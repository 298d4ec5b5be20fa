//! WGSL kernels: their sources, specialisation, and the registry the naga test walks.
//!
//! A kernel is one WGSL file of `shaders/` (plus shared helper files). A [`Spec`] prepends a few
//! `const` and `alias` declarations to it, so that every variant is plain, complete WGSL: what
//! naga validates offline is byte for byte what the adapter compiles, and the constants fold on
//! every backend (WGSL `override`s would leave that to each driver).

/// One WGSL kernel family.
#[derive(Debug)]
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
}

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

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Kernel {
    /// The complete WGSL text of one variant.
    pub fn source_with(&self, spec: &Spec) -> String {
        let mut s = String::with_capacity(spec.text.len() + self.source.len() + 1024);
        s += "// specialisation\n";
        s += &spec.text;
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

/// Every kernel variant wgrad can launch, for offline validation (naga) and warm-up.
pub fn all_variants() -> Vec<(&'static Kernel, Spec)> {
    let mut v = Vec::new();
    v.extend(crate::ops::fill::variants());
    v.extend(crate::ops::unary::variants());
    v.extend(crate::ops::binary::variants());
    v.extend(crate::ops::reduce::variants());
    v.extend(crate::ops::softmax::variants());
    v.extend(crate::ops::layout::variants());
    v.extend(crate::ops::cast::variants());
    v.extend(crate::ops::random::variants());
    v.extend(crate::ops::matmul::variants());
    v.extend(crate::ops::conv::variants());
    v.extend(crate::ops::depthwise::variants());
    v.extend(crate::ops::pool::variants());
    v.extend(crate::ops::lrn::variants());
    v.extend(crate::ops::upsample::variants());
    v.extend(crate::ops::batch_norm::variants());
    v.extend(crate::ops::optim::variants());
    v.extend(crate::ops::nms::variants());
    v.extend(crate::ops::resize::variants());
    v
}
