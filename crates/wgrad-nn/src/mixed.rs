//! Mixed precision (Keras's `mixed_float16` policy): activations and their gradients stored
//! in f16, arithmetic in f32, f32 master weights, and a dynamic loss scale that keeps small
//! gradients from flushing to zero in f16 (Keras's `LossScaleOptimizer`).
//!
//! The storage rule lives in the tensor crate (an op given an f16 operand computes in f32 and
//! stores an f16 result), the master-weight rule in the graph (a leaf's gradient arrives in
//! the leaf's dtype); this file is the loss scale the training step applies around them.

use wgrad_tensor::{DType, Tensor, UnaryOp};

use crate::{Error, Param, Result};

/// Dynamic loss scaling as Keras's `LossScaleOptimizer`: the loss is multiplied by the scale
/// before backward and every gradient divided by it after. A step whose gradients hold an
/// inf or NaN (an f16 overflow) is skipped and halves the scale; `growth_steps` finite steps
/// in a row double it.
#[derive(Clone, Debug, PartialEq)]
pub struct LossScale {
    scale: f32,
    growth_steps: u32,
    /// Finite steps since the scale last changed.
    good_steps: u32,
    skipped: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale::dynamic()
    }
}

impl LossScale {
    /// Keras's defaults: `initial_scale=2**15`, `dynamic_growth_steps=2000`.
    pub fn dynamic() -> LossScale {
        LossScale {
            scale: 32768.0,
            growth_steps: 2000,
            good_steps: 0,
            skipped: 0,
        }
    }

    /// A dynamic scale starting at `initial` and doubling after `growth_steps` finite steps.
    pub fn new(initial: f32, growth_steps: u32) -> Result<LossScale> {
        if !(initial.is_finite() && initial > 0.0) || growth_steps == 0 {
            return Err(Error::config(
                "LossScale",
                format!(
                    "needs a finite positive initial scale and growth_steps >= 1, got {initial} and {growth_steps}"
                ),
            ));
        }
        Ok(LossScale {
            scale: initial,
            growth_steps,
            ..LossScale::dynamic()
        })
    }

    /// The factor the next step's loss is multiplied by.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Steps skipped so far because their gradients overflowed.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The state as checkpoint metadata: `scale growth_steps good_steps skipped`.
    pub fn to_meta(&self) -> String {
        format!(
            "{} {} {} {}",
            self.scale, self.growth_steps, self.good_steps, self.skipped
        )
    }

    /// The state [`LossScale::to_meta`] wrote; `None` when malformed.
    pub fn from_meta(s: &str) -> Option<LossScale> {
        let mut it = s.split_whitespace();
        let scale: f32 = it.next()?.parse().ok()?;
        let growth_steps: u32 = it.next()?.parse().ok()?;
        let good_steps: u32 = it.next()?.parse().ok()?;
        let skipped: u64 = it.next()?.parse().ok()?;
        let ok = it.next().is_none() && scale.is_finite() && scale > 0.0 && growth_steps > 0;
        ok.then_some(LossScale {
            scale,
            growth_steps,
            good_steps,
            skipped,
        })
    }

    /// Divides the gradient of every trainable weight by the scale (in f32) and adjusts the
    /// scale. Returns whether the step may be applied: false when any gradient holds an inf
    /// or NaN, and then every gradient is dropped (the step is skipped). Reads one number
    /// back from the device.
    pub fn unscale(&mut self, params: &[&Param]) -> Result<bool> {
        let inv = 1.0 / self.scale;
        let mut bad: Option<Tensor> = None;
        // Each gradient is replaced as soon as it is unscaled, so only one extra copy is
        // ever alive (a ResNet-34's gradients are 85 MB); an overflowed step drops them all.
        for p in params.iter().filter(|p| p.trainable()) {
            let Some(g) = p.grad() else { continue };
            let g = g.to_dtype(DType::F32)?.mul_scalar(inv)?;
            let count = g.unary(UnaryOp::NonFinite)?.sum(&[], false)?;
            bad = Some(match bad {
                Some(b) => b.add(&count)?,
                None => count,
            });
            p.set_grad(g);
        }
        let finite = match bad {
            Some(b) => b.to_vec::<f32>()?[0] == 0.0,
            None => true,
        };
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_steps {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            for p in params {
                p.var().zero_grad();
            }
            self.scale /= 2.0;
            self.good_steps = 0;
            self.skipped += 1;
        }
        Ok(finite)
    }
}
