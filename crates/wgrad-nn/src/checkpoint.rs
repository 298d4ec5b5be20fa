//! Weights (and the tensors of training checkpoints) as safetensors files, written atomically: the bytes go to
//! a temporary file beside the target, are flushed to disk, and the file is renamed over the
//! target, so a crash leaves either the old file or the new one, never half of one.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use wgrad_tensor::Tensor;

use crate::{Error, Layer, Result};

const FORMAT_KEY: &str = "format";
/// The `format` metadata of a weights file ([`save_weights`]).
pub const WEIGHTS: &str = "wgrad-weights";
/// The `format` metadata of a training checkpoint (wgrad-train's `Trainer::save_checkpoint`):
/// weights plus optimizer state; [`load_weights`] reads its weights.
pub const CHECKPOINT: &str = "wgrad-checkpoint";

/// The reason a file that should be safetensors is not: what the parser saw and what to do.
pub(crate) fn not_safetensors(e: impl std::fmt::Display) -> String {
    format!(
        "not a safetensors file ({e}): it is cut short or another format; write weights with \
         save_weights (or safetensors from Keras/PyTorch) and copy the file again"
    )
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::checkpoint(path, "is not a file path"))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)?;
    // The rename itself reaches the disk only with the directory's entry: without this a
    // power cut right after a save could bring back the previous file (a process kill
    // cannot). Opening a directory is not possible everywhere (Windows), hence no error.
    if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads every named tensor to the host, then serialises them with `meta`.
fn serialize(tensors: Vec<(String, &Tensor)>, meta: HashMap<String, String>) -> Result<Vec<u8>> {
    let mut host: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v = t.to_vec::<f32>()?;
        host.push((name, t.shape().to_vec(), bytemuck_bytes(&v)));
    }
    let views: Vec<(String, TensorView<'_>)> = host
        .iter()
        .map(|(n, s, b)| {
            let view =
                TensorView::new(Dtype::F32, s.clone(), b).expect("sizes agree by construction");
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Checkpoint {
        path: Default::default(),
        reason: e.to_string(),
    })
}

fn bytemuck_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    format: &str,
) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let bad = |r: String| Error::checkpoint(path, r);
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(not_safetensors(e)))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(not_safetensors(e)))?;
    if let Some(f) = meta.get(FORMAT_KEY) {
        if f != format && !(format == WEIGHTS && f == CHECKPOINT) {
            return Err(bad(format!("holds {f:?}, expected {format:?}")));
        }
    }
    Ok((st, meta))
}

/// One f32 tensor of the file, checked against the shape it must have, on the host.
fn take(path: &Path, st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let v = st
        .tensor(name)
        .map_err(|_| Error::checkpoint(path, format!("has no tensor {name:?}")))?;
    if v.dtype() != Dtype::F32 {
        return Err(Error::checkpoint(
            path,
            format!("{name}: dtype {:?}, expected F32", v.dtype()),
        ));
    }
    if v.shape() != shape {
        return Err(Error::checkpoint(
            path,
            format!(
                "{name}: shape {:?} in the file, {:?} in the model",
                v.shape(),
                shape
            ),
        ));
    }
    Ok(f32s(v.data()))
}

/// Little-endian f32s (safetensors' byte order); the length was checked by the parser.
pub(crate) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Saves every weight and state tensor of `model` under its `named_params` name.
pub fn save_weights(model: &dyn Layer, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value()))
        .collect();
    write_tensors(path, WEIGHTS, tensors, [])
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Checkpoint { reason, .. } => Error::checkpoint(path, reason),
        other => other,
    }
}

/// Loads weights saved by [`save_weights`] (or a checkpoint) into `model`. Every weight must
/// be in the file with its shape, and the file must hold no weight the model lacks; otherwise
/// the error lists the missing, extra and mis-shaped names and the model is left unchanged.
pub fn load_weights(model: &mut dyn Layer, path: impl AsRef<Path>) -> Result<()> {
    TensorFile::open(path, WEIGHTS)?.load_into(model)
}

fn load_into(model: &mut dyn Layer, path: &Path, st: &SafeTensors<'_>) -> Result<()> {
    let names: Vec<(String, Vec<usize>)> = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.shape().to_vec()))
        .collect();
    let host = weights(path, st, &names)?;
    let Some(dev) = model.params().first().map(|p| p.value().device().clone()) else {
        return Ok(());
    };
    let values = host
        .iter()
        .zip(&names)
        .map(|(v, (_, s))| Ok(Tensor::from_slice(&dev, v, s)?))
        .collect::<Result<Vec<_>>>()?;
    for (p, v) in model.params_mut().into_iter().zip(values) {
        p.set(v);
    }
    Ok(())
}

/// The values of the weights `names` (name, shape) from the file, checked all at once.
fn weights(
    path: &Path,
    st: &SafeTensors<'_>,
    names: &[(String, Vec<usize>)],
) -> Result<Vec<Vec<f32>>> {
    let in_file: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("optimizer/"))
        .map(|n| n.to_string())
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .filter(|(n, _)| !in_file.contains(n))
        .map(|(n, _)| n.as_str())
        .collect();
    let extra: Vec<&str> = in_file
        .iter()
        .filter(|f| !names.iter().any(|(n, _)| n == *f))
        .map(|s| s.as_str())
        .collect();
    let misshaped: Vec<String> = names
        .iter()
        .filter_map(|(n, s)| {
            let v = st.tensor(n).ok()?;
            (v.shape() != s.as_slice())
                .then(|| format!("{n} (file {:?}, model {:?})", v.shape(), s))
        })
        .collect();
    if !missing.is_empty() || !extra.is_empty() || !misshaped.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!("does not match the model: missing {missing:?}, unexpected {extra:?}, mis-shaped {misshaped:?} (was it saved from another architecture? build the same layers, or use import_weights to rename)"),
        ));
    }
    names.iter().map(|(n, s)| take(path, st, n, s)).collect()
}

/// Writes named tensors and string metadata as a safetensors file of `format` (atomically,
/// see [`write_atomic`]): the building block of weights files and training checkpoints.
pub fn write_tensors(
    path: &Path,
    format: &str,
    tensors: Vec<(String, &Tensor)>,
    meta: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    let mut meta: HashMap<String, String> = meta.into_iter().collect();
    meta.insert(FORMAT_KEY.to_string(), format.to_string());
    let bytes = serialize(tensors, meta).map_err(|e| with_path(e, path))?;
    write_atomic(path, &bytes)
}

/// A safetensors file read back: its metadata, and its f32 tensors by name, each checked
/// against the shape the reader expects (errors name the file and the tensor).
pub struct TensorFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl TensorFile {
    /// Reads `path`, which must be a safetensors file of `format` (a weights reader also
    /// accepts a checkpoint).
    pub fn open(path: impl AsRef<Path>, format: &str) -> Result<TensorFile> {
        let path = path.as_ref();
        TensorFile::from_bytes(read_file(path)?, path, format)
    }

    /// Parses the bytes of a safetensors file of `format` (`origin` names it in errors).
    pub fn from_bytes(bytes: Vec<u8>, origin: &Path, format: &str) -> Result<TensorFile> {
        let (_, meta) = parse(origin, &bytes, format)?;
        Ok(TensorFile {
            path: origin.to_path_buf(),
            bytes,
            meta,
        })
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("parsed when opened")
    }

    /// The file's path, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata entry.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }

    /// Whether the file holds a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    /// The f32 tensor `name`, which must have `shape`, uploaded to `dev`.
    pub fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        dev: &wgrad_tensor::Device,
    ) -> Result<Tensor> {
        Ok(Tensor::from_slice(dev, &self.host(name, shape)?, shape)?)
    }

    /// The values of the f32 tensor `name`, which must have `shape`.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        take(&self.path, &self.st(), name, shape)
    }

    /// The values of the weights `names` (name, shape; `optimizer/` tensors are not weights):
    /// every one must be present with its shape and the file must hold no other weight, or
    /// the error lists the missing, extra and mis-shaped names ([`load_weights`]' rule).
    pub fn weights(&self, names: &[(String, Vec<usize>)]) -> Result<Vec<Vec<f32>>> {
        weights(&self.path, &self.st(), names)
    }

    /// Loads every weight of `model` from the file (as [`load_weights`] does; tensors under
    /// `optimizer/` are not weights).
    pub fn load_into(&self, model: &mut dyn Layer) -> Result<()> {
        load_into(model, &self.path, &self.st())
    }
}
