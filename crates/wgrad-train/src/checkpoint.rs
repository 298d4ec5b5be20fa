//! Training checkpoints: a model's weights, the optimizer's slots and step count, and the
//! epoch and step reached, in one safetensors file (wgrad-nn's tensor-file format, written
//! atomically), so that `fit` resumes where a run stopped.

use std::collections::HashMap;
use std::path::Path;

use wgrad_nn::checkpoint::{write_tensors, TensorFile, CHECKPOINT};
use wgrad_nn::{Error, Layer, LossScale, Result};
use wgrad_tensor::Tensor;

use crate::Trainer;

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
        let mut meta = vec![
            ("optimizer".to_string(), self.optimizer.name().to_string()),
            (
                "iterations".to_string(),
                self.optimizer.iterations().to_string(),
            ),
            ("steps".to_string(), self.steps().to_string()),
            ("epochs_done".to_string(), self.epochs_done().to_string()),
        ];
        // The dynamic loss scale is optimizer state too (Keras saves it with the
        // LossScaleOptimizer): a resumed run does not rediscover it by overflowing.
        if let Some(ls) = self.loss_scale_state() {
            meta.push(("loss_scale".to_string(), ls.to_meta()));
        }
        write_tensors(path, CHECKPOINT, tensors, meta)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] into this trainer (same
    /// model architecture and optimizer kind). `fit` then continues from the epoch reached.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = TensorFile::open(path, CHECKPOINT)?;
        let number = |k: &str| -> Result<u64> {
            file.meta(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::checkpoint(path, format!("metadata {k:?} is missing or not a number"))
            })
        };
        let (iterations, steps, epochs) = (
            number("iterations")?,
            number("steps")?,
            number("epochs_done")?,
        );
        if file.meta("optimizer") != Some(self.optimizer.name()) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "was written with optimizer {:?}, this trainer has {}",
                    file.meta("optimizer"),
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
                if per == 0 || !file.contains(&format!("optimizer/{n}/0")) {
                    continue;
                }
                let v = (0..per)
                    .map(|k| file.tensor(&format!("optimizer/{n}/{k}"), s, dev))
                    .collect::<Result<Vec<_>>>()?;
                slots.insert(i, v);
            }
        }
        let scale = match (self.loss_scale_state(), file.meta("loss_scale")) {
            (Some(_), Some(m)) => Some(LossScale::from_meta(m).ok_or_else(|| {
                Error::checkpoint(path, format!("loss_scale metadata {m:?} is malformed"))
            })?),
            _ => None,
        };
        file.load_into(&mut self.model)?;
        self.optimizer.restore(iterations, slots);
        if scale.is_some() {
            self.mixed = scale;
        }
        self.restore(steps, epochs as usize);
        Ok(())
    }
}
