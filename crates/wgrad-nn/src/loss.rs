//! Losses: each is the batch mean of a per-sample loss, composed from graph ops so its
//! gradient comes from the ops' backward rules (the cross-entropies from logits use one fused
//! rule, softmax − one-hot, which is exact and stable for any logits).

use wgrad_graph::{ops, Var};
use wgrad_tensor::{DType, Tensor, UnaryOp};

use crate::{Act, Error, Result};

/// Keras's clipping of probabilities before a log (`backend.epsilon()`).
const EPSILON: f32 = 1e-7;

/// A training loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Integer class labels (u32 `[N]`) against `[N, C]` scores: logits when `from_logits`,
    /// otherwise probabilities (a softmax output). Dense predictions `[N, …, C]` take labels
    /// `[N, …]` (a segmentation mask): the loss is the mean over every position, as Keras's.
    SparseCategoricalCrossentropy {
        from_logits: bool,
    },
    /// One-hot (or soft) f32 targets `[N, C]`.
    CategoricalCrossentropy {
        from_logits: bool,
    },
    /// f32 targets in [0, 1] of the prediction's shape.
    BinaryCrossentropy {
        from_logits: bool,
    },
    MeanSquaredError,
    MeanAbsoluteError,
    /// Quadratic within `delta` of the target, linear beyond (Keras default delta 1).
    Huber {
        delta: f32,
    },
    /// YOLO's grid loss for a head of `anchors·(5 + classes)` channels (see
    /// [`crate::yolo`]): the target `[N, S_h, S_w, 3·channels]` holds the values, the
    /// squared-error weights and the cross-entropy weights that [`crate::YoloGrid::encode`]
    /// writes (the λ weights live in the target). Summed over cells and divided by the batch
    /// size.
    Yolo {
        anchors: u32,
        classes: u32,
    },
}

impl Loss {
    pub fn sparse_categorical_crossentropy(from_logits: bool) -> Loss {
        Loss::SparseCategoricalCrossentropy { from_logits }
    }

    /// Whether the targets are u32 class labels (otherwise f32 of the prediction's shape).
    pub fn sparse(&self) -> bool {
        matches!(self, Loss::SparseCategoricalCrossentropy { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::Huber { .. } => "huber",
            Loss::Yolo { .. } => "yolo",
        }
    }

    /// The mean loss of `pred` against `target` (a scalar `Var`).
    pub fn compute(&self, pred: &Var, target: &Tensor) -> Result<Var> {
        self.check(pred, target)?;
        let t = || Var::new(target.clone());
        if self.sparse() && pred.shape().len() > 2 {
            // Per-position classification is the same loss over N·H·W rows of C scores.
            let c = pred.shape()[pred.shape().len() - 1];
            let rows = pred.shape().iter().product::<usize>() / c.max(1);
            let p = ops::reshape(pred, &[rows, c])?;
            return self.compute(&p, &target.reshape(&[rows])?);
        }
        Ok(match *self {
            Loss::SparseCategoricalCrossentropy { from_logits: true } => {
                ops::sparse_softmax_cross_entropy(pred, target)?
            }
            Loss::SparseCategoricalCrossentropy { from_logits: false } => {
                let c = pred.shape()[1];
                let onehot = Var::new(ops::one_hot(target, c)?);
                crossentropy_from_probs(pred, &onehot)?
            }
            Loss::CategoricalCrossentropy { from_logits } => {
                let logp = if from_logits {
                    ops::log_softmax(pred, -1)?
                } else {
                    return crossentropy_from_probs(pred, &t());
                };
                per_sample_mean(&ops::neg(&ops::sum(&ops::mul(&logp, &t())?, &[-1])?)?)?
            }
            Loss::BinaryCrossentropy { from_logits: true } => {
                // max(x, 0) − x·t + log(1 + e^−|x|): never overflows.
                let x = pred;
                let a = ops::relu(x)?;
                let b = ops::mul(x, &t())?;
                let c = ops::unary(
                    &ops::neg(&ops::unary(x, UnaryOp::Abs)?)?,
                    UnaryOp::Act(Act::Softplus),
                )?;
                ops::mean(&ops::add(&ops::sub(&a, &b)?, &c)?, &[])?
            }
            Loss::BinaryCrossentropy { from_logits: false } => {
                let p = ops::unary(pred, UnaryOp::Clip(EPSILON, 1.0 - EPSILON))?;
                let one_minus = |v: &Var| ops::add_scalar(&ops::neg(v)?, 1.0);
                let pos = ops::mul(&t(), &ops::log(&p)?)?;
                let neg = ops::mul(&one_minus(&t())?, &ops::log(&one_minus(&p)?)?)?;
                ops::neg(&ops::mean(&ops::add(&pos, &neg)?, &[])?)?
            }
            Loss::MeanSquaredError => ops::mse(pred, &t())?,
            Loss::MeanAbsoluteError => {
                ops::mean(&ops::unary(&ops::sub(pred, &t())?, UnaryOp::Abs)?, &[])?
            }
            Loss::Yolo { anchors, classes } => {
                yolo(pred, target, anchors as usize, classes as usize)?
            }
            Loss::Huber { delta } => {
                // q = min(|d|, δ): 0.5·q² + δ·(|d| − q) is 0.5·d² inside δ and δ(|d| − δ/2) beyond.
                let a = ops::unary(&ops::sub(pred, &t())?, UnaryOp::Abs)?;
                let q = ops::unary(&a, UnaryOp::MinimumScalar(delta))?;
                let quad = ops::mul_scalar(&ops::square(&q)?, 0.5)?;
                let lin = ops::mul_scalar(&ops::sub(&a, &q)?, delta)?;
                ops::mean(&ops::add(&quad, &lin)?, &[])?
            }
        })
    }

    /// Keras's `fit(class_weight=…)` for the sparse cross-entropy: each position's loss is
    /// multiplied by the weight of its true class, then averaged over the positions (Keras's
    /// "sum over batch size" reduction, so weights also scale the loss). A segmentation with
    /// a dominant background uses it to make the rare classes count.
    pub fn compute_class_weighted(
        &self,
        pred: &Var,
        target: &Tensor,
        class_weight: &[f32],
    ) -> Result<Var> {
        let Loss::SparseCategoricalCrossentropy { from_logits } = *self else {
            return Err(Error::Input {
                what: "class_weight",
                reason: format!(
                    "applies to sparse_categorical_crossentropy with class labels, not {}",
                    self.name()
                ),
            });
        };
        self.check(pred, target)?;
        let shape = pred.shape();
        let c = shape[shape.len() - 1];
        if class_weight.len() != c {
            return Err(Error::Input {
                what: "class_weight",
                reason: format!(
                    "{} weights for {c} classes: give one per class",
                    class_weight.len()
                ),
            });
        }
        let rows = shape.iter().product::<usize>() / c.max(1);
        let p = ops::reshape(pred, &[rows, c])?;
        let onehot = ops::one_hot(&target.reshape(&[rows])?, c)?;
        let logp = if from_logits {
            ops::log_softmax(&p, -1)?
        } else {
            ops::log(&ops::unary(&p, UnaryOp::Clip(EPSILON, 1.0 - EPSILON))?)?
        };
        let per_row = ops::neg(&ops::sum(
            &ops::mul(&logp, &Var::new(onehot.clone()))?,
            &[-1],
        )?)?;
        // w[label] for every row, as one-hot · weights on the device.
        let w = Tensor::from_slice(onehot.device(), class_weight, &[c, 1])?;
        let row_w = onehot.matmul(&w)?.reshape(&[rows])?;
        Ok(ops::mean(&ops::mul(&per_row, &Var::new(row_w))?, &[])?)
    }

    fn check(&self, pred: &Var, target: &Tensor) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Input {
                what: "loss",
                reason,
            })
        };
        if self.sparse() {
            let shape = pred.shape();
            if shape.len() < 2 {
                return bad(format!(
                    "{} needs [N, classes] (or [N, …, classes]) predictions, got {shape:?}",
                    self.name(),
                ));
            }
            let want = &shape[..shape.len() - 1];
            if target.dtype() != DType::U32 || target.shape() != want {
                return bad(format!(
                    "{} needs u32 labels of shape {want:?} (the predictions {shape:?} without their class axis), got {:?} {:?}",
                    self.name(),
                    target.dtype(),
                    target.shape()
                ));
            }
        } else if let Loss::Yolo { anchors, classes } = *self {
            let ch = anchors as usize * (5 + classes as usize);
            let p = pred.shape();
            let mut want = p.to_vec();
            if let Some(last) = want.last_mut() {
                *last *= 3;
            }
            if p.len() != 4 || p[3] != ch || target.dtype() != DType::F32 || target.shape() != want
            {
                return bad(format!(
                    "yolo needs a head output [N, S, S, {ch}] and its encoded f32 target [N, S, S, {}], got {p:?} and {:?} {:?}",
                    3 * ch,
                    target.dtype(),
                    target.shape()
                ));
            }
        } else if target.dtype() != DType::F32 || target.shape() != pred.shape() {
            return bad(format!(
                "{} needs f32 targets of the prediction's shape {:?}, got {:?} {:?}",
                self.name(),
                pred.shape(),
                target.dtype(),
                target.shape()
            ));
        }
        Ok(())
    }
}

/// YOLO's loss from the encoded target: squared error on the coordinates (σ on the centre
/// offsets), binary cross-entropy with logits on objectness and classes, each weighted by the
/// target's masks, summed and divided by the batch.
fn yolo(pred: &Var, target: &Tensor, anchors: usize, classes: usize) -> Result<Var> {
    let per = 5 + classes;
    let ch = anchors * per;
    let t = Var::new(target.slice(-1, 0, ch)?);
    let w_sq = Var::new(target.slice(-1, ch, 2 * ch)?);
    let w_bce = Var::new(target.slice(-1, 2 * ch, 3 * ch)?);
    // 1 on each anchor's two centre offsets: those are compared after a sigmoid.
    let centre: Vec<f32> = (0..ch)
        .map(|k| if k % per < 2 { 1.0 } else { 0.0 })
        .collect();
    let centre = Var::new(Tensor::from_slice(target.device(), &centre, &[ch])?);
    let sig = ops::sigmoid(pred)?;
    let mixed = ops::add(pred, &ops::mul(&centre, &ops::sub(&sig, pred)?)?)?;
    let sq = ops::mul(&w_sq, &ops::square(&ops::sub(&mixed, &t)?)?)?;
    // max(x, 0) − x·t + log(1 + e^−|x|), as the binary cross-entropy from logits.
    let x = pred;
    let bce = ops::add(
        &ops::sub(&ops::relu(x)?, &ops::mul(x, &t)?)?,
        &ops::unary(
            &ops::neg(&ops::unary(x, UnaryOp::Abs)?)?,
            UnaryOp::Act(Act::Softplus),
        )?,
    )?;
    let total = ops::add(&sq, &ops::mul(&w_bce, &bce)?)?;
    let n = pred.shape()[0].max(1) as f32;
    Ok(ops::mul_scalar(&ops::sum(&total, &[])?, 1.0 / n)?)
}

/// −Σ t·log(clip(p)) per sample, averaged over the batch.
fn crossentropy_from_probs(p: &Var, t: &Var) -> Result<Var> {
    let p = ops::unary(p, UnaryOp::Clip(EPSILON, 1.0 - EPSILON))?;
    per_sample_mean(&ops::neg(&ops::sum(&ops::mul(&ops::log(&p)?, t)?, &[-1])?)?)
}

fn per_sample_mean(v: &Var) -> Result<Var> {
    Ok(ops::mean(v, &[])?)
}
