//! Metrics that accumulate over batches on the device (Keras's stateful metrics): the
//! segmentation [`MeanIou`] and the localization [`BoxIou`]. `update` records device work and
//! never waits; `result` reads back once.

use wgrad_graph::ops::one_hot;
use wgrad_tensor::MatmulOptions;
use wgrad_tensor::{DType, Device, Tensor};

use crate::{Error, Result};

/// Keras's `MeanIoU(num_classes)`: a confusion matrix over every labelled position; the IoU of
/// class `c` is `TP / (TP + FP + FN)`, and the mean is over the classes that occur in the
/// labels or the predictions (a class absent from both has no IoU, as in Keras).
pub struct MeanIou {
    classes: usize,
    /// `[true class, predicted class]` counts.
    confusion: Tensor,
}

impl MeanIou {
    pub fn new(device: &Device, classes: usize) -> Result<MeanIou> {
        if classes < 2 {
            return Err(Error::config("MeanIou", "needs at least two classes"));
        }
        Ok(MeanIou {
            classes,
            confusion: Tensor::zeros(device, &[classes, classes], DType::F32)?,
        })
    }

    /// Adds a batch: `scores` `[N, …, C]` (the class is their arg-max) against u32 `labels`
    /// `[N, …]`.
    pub fn update(&mut self, scores: &Tensor, labels: &Tensor) -> Result<()> {
        let shape = scores.shape();
        let c = *shape.last().unwrap_or(&0);
        if c != self.classes || labels.shape() != &shape[..shape.len() - 1] {
            return Err(Error::Input {
                what: "MeanIou",
                reason: format!(
                    "scores {shape:?} and labels {:?}: expected scores [N, …, {}] and labels of their shape without the class axis",
                    labels.shape(),
                    self.classes
                ),
            });
        }
        if labels.dtype() != DType::U32 {
            return Err(Error::Input {
                what: "MeanIou",
                reason: format!("labels must be u32 classes, got {:?}", labels.dtype()),
            });
        }
        let predicted = scores.argmax(-1, false)?;
        self.update_classes(&predicted, labels)
    }

    /// Adds a batch of predicted class ids (u32, any shape) against labels of the same shape.
    pub fn update_classes(&mut self, predicted: &Tensor, labels: &Tensor) -> Result<()> {
        if predicted.shape() != labels.shape() {
            return Err(Error::Input {
                what: "MeanIou",
                reason: format!(
                    "predicted classes {:?} and labels {:?} differ in shape",
                    predicted.shape(),
                    labels.shape()
                ),
            });
        }
        // onehot(true)ᵀ · onehot(pred) counts every (true, predicted) pair in one GEMM over
        // the positions; counts stay exact in f32 up to 2²⁴ per cell and batch.
        let t = one_hot(labels, self.classes)?;
        let p = one_hot(&predicted.to_dtype(DType::U32)?, self.classes)?;
        let counts = t.matmul_with(
            &p,
            MatmulOptions {
                transpose_a: true,
                ..Default::default()
            },
        )?;
        self.confusion = self.confusion.add(&counts)?;
        Ok(())
    }

    /// The confusion matrix, `[true][predicted]`.
    pub fn confusion(&self) -> Result<Vec<Vec<f64>>> {
        let c = self.classes;
        let v = self.confusion.to_vec::<f32>()?;
        Ok((0..c)
            .map(|i| v[i * c..(i + 1) * c].iter().map(|&x| x as f64).collect())
            .collect())
    }

    /// Per-class IoU (`None` for a class in neither labels nor predictions).
    pub fn per_class(&self) -> Result<Vec<Option<f64>>> {
        let m = self.confusion()?;
        let c = self.classes;
        Ok((0..c)
            .map(|k| {
                let tp = m[k][k];
                let row: f64 = m[k].iter().sum();
                let col: f64 = (0..c).map(|i| m[i][k]).sum();
                let union = row + col - tp;
                (union > 0.0).then(|| tp / union)
            })
            .collect())
    }

    /// The mean IoU over the classes that occur.
    pub fn result(&self) -> Result<f64> {
        let ious: Vec<f64> = self.per_class()?.into_iter().flatten().collect();
        Ok(if ious.is_empty() {
            0.0
        } else {
            ious.iter().sum::<f64>() / ious.len() as f64
        })
    }

    pub fn reset(&mut self) -> Result<()> {
        self.confusion = Tensor::zeros(self.confusion.device(), &[self.classes; 2], DType::F32)?;
        Ok(())
    }
}

/// Mean IoU of predicted against true boxes, one box per image (`[N, 4]`, corners
/// `(y0, x0, y1, x1)` in either order), for classification + localization. Boxes without area
/// overlap nothing (IoU 0), as in `tf.image.non_max_suppression`.
pub struct BoxIou {
    sum: Tensor,
    count: usize,
}

impl BoxIou {
    pub fn new(device: &Device) -> Result<BoxIou> {
        Ok(BoxIou {
            sum: Tensor::zeros(device, &[1], DType::F32)?,
            count: 0,
        })
    }

    /// Adds a batch's IoUs (device ops only); returns them, `[N]`.
    pub fn update(&mut self, predicted: &Tensor, truth: &Tensor) -> Result<Tensor> {
        let iou = box_iou(predicted, truth)?;
        self.sum = self.sum.add(&iou.sum(&[], false)?.reshape(&[1])?)?;
        self.count += predicted.shape()[0];
        Ok(iou)
    }

    pub fn result(&self) -> Result<f64> {
        let s = self.sum.to_vec::<f32>()?[0] as f64;
        Ok(s / self.count.max(1) as f64)
    }
}

/// Row-wise IoU of two `[N, 4]` box tensors on the device.
pub fn box_iou(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let ok = |t: &Tensor| t.rank() == 2 && t.shape()[1] == 4 && t.dtype() == DType::F32;
    if !ok(a) || !ok(b) || a.shape() != b.shape() {
        return Err(Error::Input {
            what: "box_iou",
            reason: format!(
                "needs two f32 [N, 4] box tensors of one shape, got {:?} {:?} and {:?} {:?}",
                a.dtype(),
                a.shape(),
                b.dtype(),
                b.shape()
            ),
        });
    }
    let col = |t: &Tensor, i: usize| t.slice(1, i, i + 1);
    // Sorted corners: lo = min, hi = max per axis, so either corner order works.
    let corners = |t: &Tensor| -> Result<[Tensor; 4]> {
        let (y0, x0, y1, x1) = (col(t, 0)?, col(t, 1)?, col(t, 2)?, col(t, 3)?);
        Ok([
            y0.minimum(&y1)?,
            x0.minimum(&x1)?,
            y0.maximum(&y1)?,
            x0.maximum(&x1)?,
        ])
    };
    let [ay0, ax0, ay1, ax1] = corners(a)?;
    let [by0, bx0, by1, bx1] = corners(b)?;
    let area_a = ay1.sub(&ay0)?.mul(&ax1.sub(&ax0)?)?;
    let area_b = by1.sub(&by0)?.mul(&bx1.sub(&bx0)?)?;
    let ih = ay1
        .minimum(&by1)?
        .sub(&ay0.maximum(&by0)?)?
        .maximum_scalar(0.0)?;
    let iw = ax1
        .minimum(&bx1)?
        .sub(&ax0.maximum(&bx0)?)?
        .maximum_scalar(0.0)?;
    let inter = ih.mul(&iw)?;
    let union = area_a.add(&area_b)?.sub(&inter)?;
    // Empty unions give 0/0: the guard makes them 0 rather than NaN.
    let iou = inter.div(&union.maximum_scalar(1e-12)?)?;
    Ok(iou.reshape(&[a.shape()[0]])?)
}
