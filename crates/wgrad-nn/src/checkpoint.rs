//! Weights and training checkpoints as safetensors files, written atomically: the bytes go to
//! a temporary file beside the target, are flushed to disk, and the file is renamed over the
//! target, so a crash leaves either the old file or the new one, never half of one.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use wgrad_tensor::Tensor;

use crate::{Error, Layer, Result, Trainer};

const FORMAT_KEY: &str = "format";
const WEIGHTS: &str = "wgrad-weights";
const CHECKPOINT: &str = "wgrad-checkpoint";

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
    result.map_err(io)
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
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    if let Some(f) = meta.get(FORMAT_KEY) {
        if f != format && !(format == WEIGHTS && f == CHECKPOINT) {
            return Err(bad(format!("holds {f:?}, expected {format:?}")));
        }
    }
    Ok((st, meta))
}

/// One f32 tensor of the file, checked against the shape it must have.
fn take(
    path: &Path,
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    dev: &wgrad_tensor::Device,
) -> Result<Tensor> {
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
    let data: Vec<f32> = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Tensor::from_slice(dev, &data, shape)?)
}

/// Saves every weight and state tensor of `model` under its `named_params` name.
pub fn save_weights(model: &dyn Layer, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value()))
        .collect();
    let meta = HashMap::from([(FORMAT_KEY.to_string(), WEIGHTS.to_string())]);
    let bytes = serialize(tensors, meta).map_err(|e| with_path(e, path))?;
    write_atomic(path, &bytes)
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
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (st, _) = parse(path, &bytes, WEIGHTS)?;
    load_into(model, path, &st)
}

fn load_into(model: &mut dyn Layer, path: &Path, st: &SafeTensors<'_>) -> Result<()> {
    let names: Vec<(String, Vec<usize>)> = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.shape().to_vec()))
        .collect();
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
            format!("does not match the model: missing {missing:?}, unexpected {extra:?}, mis-shaped {misshaped:?}"),
        ));
    }
    let Some(dev) = model.params().first().map(|p| p.value().device().clone()) else {
        return Ok(());
    };
    let values = names
        .iter()
        .map(|(n, s)| take(path, st, n, s, &dev))
        .collect::<Result<Vec<_>>>()?;
    for (p, v) in model.params_mut().into_iter().zip(values) {
        p.set(v);
    }
    Ok(())
}

impl<M: Layer> Trainer<M> {
    /// Saves a full training checkpoint: weights, the optimizer's slots and step count, and
    /// the epoch and step reached, so [`Trainer::load_checkpoint`] resumes where this left.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let named = self.model.named_params();
        let mut tensors: Vec<(String, &Tensor)> =
            named.iter().map(|(n, p)| (n.clone(), p.value())).collect();
        for (i, slots) in self.optimizer.slots() {
            for (k, t) in slots.iter().enumerate() {
                tensors.push((format!("optimizer/{}/{k}", named[*i].0), t));
            }
        }
        let meta = HashMap::from([
            (FORMAT_KEY.to_string(), CHECKPOINT.to_string()),
            ("optimizer".to_string(), self.optimizer.name().to_string()),
            (
                "iterations".to_string(),
                self.optimizer.iterations().to_string(),
            ),
            ("steps".to_string(), self.steps().to_string()),
            ("epochs_done".to_string(), self.epochs_done().to_string()),
        ]);
        let bytes = serialize(tensors, meta).map_err(|e| with_path(e, path))?;
        write_atomic(path, &bytes)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] into this trainer (same
    /// model architecture and optimizer kind). `fit` then continues from the epoch reached.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        let (st, meta) = parse(path, &bytes, CHECKPOINT)?;
        let number = |k: &str| -> Result<u64> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::checkpoint(path, format!("metadata {k:?} is missing or not a number"))
            })
        };
        let (iterations, steps, epochs) = (
            number("iterations")?,
            number("steps")?,
            number("epochs_done")?,
        );
        if meta.get("optimizer").map(String::as_str) != Some(self.optimizer.name()) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "was written with optimizer {:?}, this trainer has {}",
                    meta.get("optimizer"),
                    self.optimizer.name()
                ),
            ));
        }
        let named: Vec<(String, Vec<usize>)> = self
            .model
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.shape().to_vec()))
            .collect();
        let dev = self
            .model
            .params()
            .first()
            .map(|p| p.value().device().clone());
        let mut slots = HashMap::new();
        if let Some(dev) = &dev {
            let per = self.optimizer.slots_per_param();
            for (i, (n, s)) in named.iter().enumerate() {
                if per == 0 || st.tensor(&format!("optimizer/{n}/0")).is_err() {
                    continue;
                }
                let v = (0..per)
                    .map(|k| take(path, &st, &format!("optimizer/{n}/{k}"), s, dev))
                    .collect::<Result<Vec<_>>>()?;
                slots.insert(i, v);
            }
        }
        load_into(&mut self.model, path, &st)?;
        self.optimizer.restore(iterations, slots);
        self.restore(steps, epochs as usize);
        Ok(())
    }
}
