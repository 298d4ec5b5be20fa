//! A YOLO-style grid head (Redmon et al. 2016; the anchors and logistic outputs of YOLOv3):
//! a fully convolutional detector ends in a `[N, S_h, S_w, A·(5 + C)]` map, per cell and
//! anchor `(t_y, t_x, t_h, t_w, objectness, C class logits)`. The box centre is
//! `(cell + σ(t)) · stride`, its size `anchor · e^t`; the score of a class is
//! `σ(objectness) · σ(class logit)`.
//!
//! Training (see [`YoloGrid::encode`] and [`Loss::Yolo`](crate::Loss)): the cell holding a
//! ground-truth box's centre, with the anchor whose shape fits it best (IoU of the shapes),
//! is responsible for it. The loss is YOLO's sum of three parts with its masks —
//! `λ_coord · Σ_obj (σ(t_yx) − target)² + (t_hw − log(size/anchor))²`, the objectness's
//! binary cross-entropy (1 for responsible anchors, `λ_noobj` weight elsewhere), and the
//! classes' binary cross-entropy on responsible anchors — divided by the batch size. The
//! encoded target carries the masks as weights beside the values, so the loss is plain
//! elementwise work on the device. Decoding reads the map back, and non-max suppression per
//! class runs as the WGSL kernel.

use wgrad_tensor::{NmsOptions, Tensor};

use crate::{Error, Result};

/// One detected box: class, score, `[y0, x0, y1, x1]` in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detected {
    pub class: u32,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// The grid head's geometry and loss weights.
#[derive(Clone, Debug)]
pub struct YoloGrid {
    /// Cells `[S_h, S_w]`.
    pub grid: [usize; 2],
    /// Pixels per cell (the network's total stride).
    pub stride: f32,
    /// Anchor sizes `[h, w]` in pixels.
    pub anchors: Vec<[f32; 2]>,
    pub classes: usize,
    /// YOLO's weights: 5 for the coordinates, 0.5 for the objectness of empty anchors.
    pub lambda_coord: f32,
    pub lambda_noobj: f32,
}

impl YoloGrid {
    pub fn new(grid: [usize; 2], stride: f32, anchors: &[[f32; 2]], classes: usize) -> Self {
        YoloGrid {
            grid,
            stride,
            anchors: anchors.to_vec(),
            classes,
            lambda_coord: 5.0,
            lambda_noobj: 0.5,
        }
    }

    /// Channels of the head's output: `A·(5 + C)`.
    pub fn channels(&self) -> usize {
        self.anchors.len() * (5 + self.classes)
    }

    /// The loss that trains this head (its target from [`YoloGrid::encode`]).
    pub fn loss(&self) -> crate::Loss {
        crate::Loss::Yolo {
            anchors: self.anchors.len() as u32,
            classes: self.classes as u32,
        }
    }

    /// The training target of one image with `objects` (class, `[y0, x0, y1, x1]` pixels):
    /// `[S_h, S_w, 3·A·(5 + C)]` values — targets, squared-error weights, cross-entropy
    /// weights — for [`crate::Loss::Yolo`]. Two boxes claiming the same cell and anchor keep
    /// the larger. A class outside the head's classes is an error.
    pub fn encode(&self, objects: &[(u32, [f32; 4])]) -> Result<Vec<f32>> {
        let [sh, sw] = self.grid;
        let ch = self.channels();
        let per = 5 + self.classes;
        let mut t = vec![0f32; sh * sw * 3 * ch];
        // Every anchor's objectness is trained towards 0 unless claimed.
        for cell in 0..sh * sw {
            for a in 0..self.anchors.len() {
                t[cell * 3 * ch + 2 * ch + a * per + 4] = self.lambda_noobj;
            }
        }
        let mut claimed: Vec<f32> = vec![0.0; sh * sw * self.anchors.len()];
        for &(class, b) in objects {
            if class as usize >= self.classes {
                return Err(Error::Input {
                    what: "YoloGrid::encode",
                    reason: format!("class {class} of a {}-class head", self.classes),
                });
            }
            let (y0, x0, y1, x1) = (
                b[0].min(b[2]),
                b[1].min(b[3]),
                b[0].max(b[2]),
                b[1].max(b[3]),
            );
            let (h, w) = (y1 - y0, x1 - x0);
            if h <= 0.0 || w <= 0.0 {
                continue;
            }
            let (cy, cx) = ((y0 + y1) / 2.0 / self.stride, (x0 + x1) / 2.0 / self.stride);
            let (gy, gx) = (cy.floor() as isize, cx.floor() as isize);
            if gy < 0 || gx < 0 || gy >= sh as isize || gx >= sw as isize {
                continue;
            }
            let (gy, gx) = (gy as usize, gx as usize);
            // The anchor whose shape overlaps the box's best, both centred.
            let a = (0..self.anchors.len())
                .max_by(|&i, &j| {
                    let iou = |k: usize| {
                        let [ah, aw] = self.anchors[k];
                        let inter = ah.min(h) * aw.min(w);
                        inter / (ah * aw + h * w - inter)
                    };
                    iou(i).total_cmp(&iou(j)).then(j.cmp(&i))
                })
                .expect("at least one anchor");
            let slot = (gy * sw + gx) * self.anchors.len() + a;
            if claimed[slot] >= h * w {
                continue;
            }
            claimed[slot] = h * w;
            let base = (gy * sw + gx) * 3 * ch + a * per;
            let [ah, aw] = self.anchors[a];
            let values = [
                cy - gy as f32,
                cx - gx as f32,
                (h / ah).ln(),
                (w / aw).ln(),
                1.0,
            ];
            for (k, v) in values.into_iter().enumerate() {
                t[base + k] = v;
            }
            for k in 0..self.classes {
                t[base + 5 + k] = if k == class as usize { 1.0 } else { 0.0 };
            }
            // Weights: squared error on the four coordinates, cross-entropy on objectness and
            // classes.
            for k in 0..4 {
                t[base + ch + k] = self.lambda_coord;
            }
            t[base + 2 * ch + 4] = 1.0;
            for k in 0..self.classes {
                t[base + 2 * ch + 5 + k] = 1.0;
            }
        }
        Ok(t)
    }

    /// Boxes of a head output `[N, S_h, S_w, A·(5 + C)]` (read back once), per image, with
    /// score `σ(obj)·σ(class)` above `opts`' score threshold, then per-class NMS on the device
    /// with `opts`.
    pub fn detect(&self, output: &Tensor, opts: NmsOptions) -> Result<Vec<Vec<Detected>>> {
        let [sh, sw] = self.grid;
        let ch = self.channels();
        let shape = output.shape();
        if shape.len() != 4 || shape[1..] != [sh, sw, ch] {
            return Err(Error::Input {
                what: "YoloGrid::detect",
                reason: format!(
                    "head output {shape:?}, expected [N, {sh}, {sw}, {ch}] for this grid"
                ),
            });
        }
        let v = output.to_vec::<f32>()?;
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let per = 5 + self.classes;
        let mut all = Vec::with_capacity(shape[0]);
        for img in v.chunks_exact(sh * sw * ch) {
            let mut boxes = Vec::new();
            let mut scores = Vec::new();
            let mut classes = Vec::new();
            for gy in 0..sh {
                for gx in 0..sw {
                    for (a, [ah, aw]) in self.anchors.iter().enumerate() {
                        let p = &img[(gy * sw + gx) * ch + a * per..][..per];
                        let obj = sig(p[4]);
                        let cy = (gy as f32 + sig(p[0])) * self.stride;
                        let cx = (gx as f32 + sig(p[1])) * self.stride;
                        let (h, w) = (
                            ah * p[2].clamp(-8.0, 8.0).exp(),
                            aw * p[3].clamp(-8.0, 8.0).exp(),
                        );
                        for c in 0..self.classes {
                            let s = obj * sig(p[5 + c]);
                            if s > opts.score_threshold {
                                boxes.extend([
                                    cy - h / 2.0,
                                    cx - w / 2.0,
                                    cy + h / 2.0,
                                    cx + w / 2.0,
                                ]);
                                scores.push(s);
                                classes.push(c as u32);
                            }
                        }
                    }
                }
            }
            if scores.is_empty() {
                all.push(Vec::new());
                continue;
            }
            let dev = output.device();
            let n = scores.len();
            let bt = Tensor::from_slice(dev, &boxes, &[n, 4])?;
            let st = Tensor::from_slice(dev, &scores, &[n])?;
            let ct = Tensor::from_slice(dev, &classes, &[n])?;
            let sel = bt.non_max_suppression_per_class(&st, &ct, opts)?;
            all.push(
                sel.indices
                    .iter()
                    .zip(&sel.scores)
                    .map(|(&i, &score)| {
                        let i = i as usize;
                        Detected {
                            class: classes[i],
                            score,
                            bbox: [
                                boxes[4 * i],
                                boxes[4 * i + 1],
                                boxes[4 * i + 2],
                                boxes[4 * i + 3],
                            ],
                        }
                    })
                    .collect(),
            );
        }
        Ok(all)
    }
}
