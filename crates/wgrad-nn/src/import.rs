//! Loading weights trained elsewhere: Keras and PyTorch tensors, saved as safetensors, mapped
//! onto a wgrad model by name.
//!
//! A wgrad weight is named `<layer>/<weight>` (`conv1/kernel`, `bn1/moving_mean`; nested
//! models add their own prefix), which is Keras's naming when the model's layers carry Keras's
//! names ([`crate::Sequential::add_named`], [`crate::Functional::apply_named`]). wgrad keeps
//! Keras's layouts, so a Keras file loads as it is. PyTorch state dicts differ in names
//! (`conv1.weight`, `bn1.running_mean`) and layouts (NCHW/OIHW kernels, `[out, in]` linear
//! weights); [`Framework::PyTorch`] renames and transposes them on load, guided by each
//! weight's [`WeightLayout`]. A custom `rename` maps whatever else differs (module paths).
//!
//! Nothing is assigned unless every weight of the model is found with the right shape: the
//! error ([`Error::Import`]) lists the missing, unexpected and mis-shaped names all at once.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use wgrad_tensor::Tensor;

use crate::{Error, Layer, Result, WeightLayout};

/// Where the tensors come from: decides the default renaming and the layout conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framework {
    /// Keras / TensorFlow: names `<layer>/<weight>` and layouts as wgrad's.
    Keras,
    /// PyTorch state dicts: `<module>.<weight|bias|running_mean|running_var>`, OIHW kernels,
    /// `[out, in]` linear weights.
    PyTorch,
}

/// How to find each of the model's weights in a file.
pub struct Import<'a> {
    pub framework: Framework,
    /// Prefix of the file's names, stripped before matching (`mini_resnet/`; empty: none).
    pub prefix: String,
    /// Maps a wgrad weight name to the name in the file (after the framework's default
    /// renaming, which it replaces when set).
    pub rename: Option<&'a dyn Fn(&str) -> String>,
    /// File tensors (names after the prefix) that no weight claims but that are not errors:
    /// exact names, or `*suffix` patterns (PyTorch's `*num_batches_tracked` is always ignored).
    pub ignore: Vec<String>,
}

impl Import<'static> {
    pub fn keras() -> Import<'static> {
        Import {
            framework: Framework::Keras,
            prefix: String::new(),
            rename: None,
            ignore: Vec::new(),
        }
    }

    pub fn pytorch() -> Import<'static> {
        Import {
            framework: Framework::PyTorch,
            ..Import::keras()
        }
    }
}

impl<'a> Import<'a> {
    pub fn prefix(mut self, p: &str) -> Self {
        self.prefix = p.to_string();
        self
    }

    pub fn rename<'b>(self, f: &'b dyn Fn(&str) -> String) -> Import<'b>
    where
        'a: 'b,
    {
        Import {
            rename: Some(f),
            ..self
        }
    }

    pub fn ignore(mut self, names: &[&str]) -> Self {
        self.ignore.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// The file's name for the wgrad weight `name`.
    fn source_name(&self, name: &str) -> String {
        match (self.rename, self.framework) {
            (Some(f), _) => f(name),
            (None, Framework::Keras) => name.to_string(),
            (None, Framework::PyTorch) => pytorch_name(name),
        }
    }

    fn ignored(&self, name: &str) -> bool {
        let always = self.framework == Framework::PyTorch && name.ends_with("num_batches_tracked");
        always
            || self.ignore.iter().any(|p| match p.strip_prefix('*') {
                Some(suffix) => name.ends_with(suffix),
                None => p == name,
            })
    }
}

/// PyTorch's name for a wgrad weight: `/` becomes `.`, and Keras's weight names become
/// PyTorch's (`kernel`/`gamma` → `weight`, `beta` → `bias`, `moving_mean` → `running_mean`,
/// `moving_variance` → `running_var`).
pub fn pytorch_name(name: &str) -> String {
    let (path, weight) = name.rsplit_once('/').unwrap_or(("", name));
    let weight = pytorch_weight(weight);
    if path.is_empty() {
        weight.to_string()
    } else {
        format!("{}.{weight}", path.replace('/', "."))
    }
}

/// PyTorch's name for a Keras weight name (`kernel`/`gamma` → `weight`, `beta` → `bias`,
/// `moving_mean` → `running_mean`, `moving_variance` → `running_var`; others unchanged).
pub fn pytorch_weight(keras: &str) -> &str {
    match keras {
        "kernel" | "gamma" => "weight",
        "beta" => "bias",
        "moving_mean" => "running_mean",
        "moving_variance" => "running_var",
        w => w,
    }
}

/// The shape a weight of `shape` (wgrad layout) has in `framework`.
fn source_shape(framework: Framework, layout: WeightLayout, shape: &[usize]) -> Vec<usize> {
    match (framework, layout, shape) {
        (Framework::PyTorch, WeightLayout::Dense, [i, o]) => vec![*o, *i],
        (Framework::PyTorch, WeightLayout::Conv | WeightLayout::ConvTranspose, [kh, kw, a, b]) => {
            vec![*b, *a, *kh, *kw]
        }
        (Framework::PyTorch, WeightLayout::Depthwise, [kh, kw, c, m]) => vec![c * m, 1, *kh, *kw],
        _ => shape.to_vec(),
    }
}

/// `src` (in `framework`'s layout) rearranged into wgrad's `shape`.
fn to_wgrad(framework: Framework, layout: WeightLayout, src: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    match (framework, layout, shape) {
        (Framework::PyTorch, WeightLayout::Dense, &[i, o]) => {
            for r in 0..o {
                for c in 0..i {
                    out[c * o + r] = src[r * i + c];
                }
            }
        }
        // Conv: [O, I, KH, KW] -> [KH, KW, I, O]; ConvTranspose: [I, O, KH, KW] -> [KH, KW, O, I]:
        // the same axis reversal of the last two onto the first two.
        (Framework::PyTorch, WeightLayout::Conv | WeightLayout::ConvTranspose, &[kh, kw, a, b]) => {
            for y in 0..kh {
                for x in 0..kw {
                    for i in 0..a {
                        for j in 0..b {
                            out[((y * kw + x) * a + i) * b + j] =
                                src[((j * a + i) * kh + y) * kw + x];
                        }
                    }
                }
            }
        }
        // Depthwise: PyTorch's output channel c·m + j is input channel c's j-th filter.
        (Framework::PyTorch, WeightLayout::Depthwise, &[kh, kw, c, m]) => {
            for y in 0..kh {
                for x in 0..kw {
                    for ch in 0..c {
                        for j in 0..m {
                            out[((y * kw + x) * c + ch) * m + j] =
                                src[((ch * m + j) * kh + y) * kw + x];
                        }
                    }
                }
            }
        }
        _ => out.copy_from_slice(src),
    }
    out
}

/// Loads the weights of `model` from the safetensors file at `path` (see the module docs).
pub fn import_weights(
    model: &mut dyn Layer,
    path: impl AsRef<Path>,
    how: &Import<'_>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::checkpoint(path, crate::checkpoint::not_safetensors(e)))?;
    import_tensors(model, &st, path, how)
}

/// [`import_weights`] from tensors already parsed (`origin` names them in errors).
pub fn import_tensors(
    model: &mut dyn Layer,
    st: &SafeTensors<'_>,
    origin: &Path,
    how: &Import<'_>,
) -> Result<()> {
    let wanted: Vec<(String, WeightLayout, Vec<usize>)> = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.layout(), p.shape().to_vec()))
        .collect();
    let host = import_values(st, origin, how, &wanted)?;
    let Some(dev) = model.params().first().map(|p| p.value().device().clone()) else {
        return Ok(());
    };
    let values = host
        .iter()
        .zip(&wanted)
        .map(|(v, (_, _, shape))| Ok(Tensor::from_slice(&dev, v, shape)?))
        .collect::<Result<Vec<_>>>()?;
    for (p, v) in model.params_mut().into_iter().zip(values) {
        p.set(v);
    }
    Ok(())
}

/// The host side of [`import_tensors`]: the values of the weights `wanted` (wgrad name,
/// layout, wgrad shape), found in `st` as `how` says and rearranged into wgrad's layouts.
pub fn import_values(
    st: &SafeTensors<'_>,
    origin: &Path,
    how: &Import<'_>,
    wanted: &[(String, WeightLayout, Vec<usize>)],
) -> Result<Vec<Vec<f32>>> {
    let in_file: HashMap<String, String> = st
        .names()
        .into_iter()
        .filter_map(|full| {
            full.strip_prefix(how.prefix.as_str())
                .map(|short| (short.to_string(), full.to_string()))
        })
        .collect();
    let (mut missing, mut misshaped) = (Vec::new(), Vec::new());
    let mut claimed = HashSet::new();
    for (name, layout, shape) in wanted {
        let src = how.source_name(name);
        let Some(full) = in_file.get(&src) else {
            missing.push(format!("{name} (as {}{src})", how.prefix));
            continue;
        };
        claimed.insert(src.clone());
        let v = st.tensor(full).expect("listed by names()");
        let want = source_shape(how.framework, *layout, shape);
        if v.dtype() != Dtype::F32 || v.shape() != want.as_slice() {
            misshaped.push(format!(
                "{full}: {:?} {:?} in the file, {want:?} F32 expected for {name} {shape:?}",
                v.dtype(),
                v.shape()
            ));
        }
    }
    let mut unexpected: Vec<String> = in_file
        .iter()
        .filter(|(short, _)| !claimed.contains(*short) && !how.ignored(short))
        .map(|(_, full)| full.clone())
        .collect();
    unexpected.sort();
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        return Err(Error::Import {
            path: origin.to_path_buf(),
            missing,
            unexpected,
            misshaped,
        });
    }
    Ok(wanted
        .iter()
        .map(|(name, layout, shape)| {
            let v = st
                .tensor(&in_file[&how.source_name(name)])
                .expect("checked");
            let src = crate::checkpoint::f32s(v.data());
            to_wgrad(how.framework, *layout, &src, shape)
        })
        .collect())
}

/// Names in an import error, one list per line.
pub(crate) fn describe(missing: &[String], unexpected: &[String], misshaped: &[String]) -> String {
    let mut parts = Vec::new();
    for (what, names) in [
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
    ] {
        if !names.is_empty() {
            parts.push(format!("{what} ({}): {}", names.len(), names.join(", ")));
        }
    }
    parts.join("; ")
}
