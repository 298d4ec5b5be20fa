//! Non-max suppression (`shaders/nms.wgsl`): TensorFlow's greedy NMS
//! (`tf.image.non_max_suppression`), its soft-NMS form (`non_max_suppression_with_scores` with
//! `soft_nms_sigma > 0`), and per-class NMS, where boxes of different classes never suppress
//! each other (torchvision's `batched_nms`).
//!
//! The result has a data-dependent length, so these ops end in a readback (soft-NMS reads a
//! done flag between batches of dispatches): detection post-processing hands its boxes to the
//! host anyway. The sequential kernels resume across dispatches within a loop budget (see
//! `shaders/nms.wgsl`), so soft-NMS takes at most `LOOP_BUDGET` boxes plus outputs.

use super::{launch_1d_bound, same_device};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static NMS: "nms" in "nms.wgsl",
    workgroup 64,
    entries [
        "rank_partial", "rank_scatter", "block_check", "block_select", "soft_init", "soft_nms"
    ],
    blocks [NmsParams]);

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&NMS, Spec::new())]
}

params!("Params" => struct NmsParams {
    // Boxes.
    n: u32,
    row: u32,
    max_out: u32,
    // Boxes of different classes never suppress each other.
    per_class: u32,
    iou_threshold: f32,
    // Candidates score strictly above it (-inf: every box).
    score_threshold: f32,
    // Soft-NMS: -0.5 / sigma; 0 for hard NMS.
    soft_scale: f32,
    // rank_partial: the first box compared against; blocks: the first position.
    j0: u32,
});

/// Iterations each sequential kernel runs per dispatch (`LOOP_BUDGET` in the shader).
const LOOP_BUDGET: usize = 32768;
/// Sorted positions per hard-NMS block (`BLOCK` in the shader).
const BLOCK: usize = 256;

/// What `non_max_suppression` keeps, as TF's arguments name it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsOptions {
    /// At most this many boxes are selected.
    pub max_output: usize,
    /// A box is dropped when its IoU with a selected box exceeds this (0..=1).
    pub iou_threshold: f32,
    /// Only boxes scoring strictly above this are candidates (TF's default: -inf).
    pub score_threshold: f32,
    /// Soft-NMS (Bodla et al.'s Gaussian decay, in TF's form): each selection multiplies an
    /// overlapping candidate's score by `exp(-0.5·iou²/σ)`; 0 is hard NMS.
    pub soft_nms_sigma: f32,
}

impl NmsOptions {
    /// Hard NMS with TF's defaults for the other arguments (iou 0.5, no score threshold).
    pub fn new(max_output: usize) -> NmsOptions {
        NmsOptions {
            max_output,
            iou_threshold: 0.5,
            score_threshold: f32::NEG_INFINITY,
            soft_nms_sigma: 0.0,
        }
    }
    pub fn iou_threshold(mut self, t: f32) -> Self {
        self.iou_threshold = t;
        self
    }
    pub fn score_threshold(mut self, t: f32) -> Self {
        self.score_threshold = t;
        self
    }
    pub fn soft_nms_sigma(mut self, s: f32) -> Self {
        self.soft_nms_sigma = s;
        self
    }
}

/// The selected boxes, best first: indices into the input and their (for soft-NMS, decayed)
/// scores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub indices: Vec<u32>,
    pub scores: Vec<f32>,
}

impl Tensor {
    /// TF's `non_max_suppression` (or `non_max_suppression_with_scores` when
    /// `opts.soft_nms_sigma > 0`) of these boxes, `[N, 4]` as (y1, x1, y2, x2) in either
    /// corner order, scored by `scores` `[N]`.
    pub fn non_max_suppression(&self, scores: &Tensor, opts: NmsOptions) -> Result<Selection> {
        nms("non_max_suppression", self, scores, None, opts)
    }

    /// Per-class NMS: as [`Tensor::non_max_suppression`], but a box only suppresses boxes of
    /// its own class (`classes` `[N]`, u32 or i32); at most `max_output` boxes in all.
    pub fn non_max_suppression_per_class(
        &self,
        scores: &Tensor,
        classes: &Tensor,
        opts: NmsOptions,
    ) -> Result<Selection> {
        nms(
            "non_max_suppression_per_class",
            self,
            scores,
            Some(classes),
            opts,
        )
    }
}

fn nms(
    op: &'static str,
    boxes: &Tensor,
    scores: &Tensor,
    classes: Option<&Tensor>,
    opts: NmsOptions,
) -> Result<Selection> {
    let mut all = vec![boxes, scores];
    all.extend(classes);
    same_device(op, &all)?;
    boxes.expect_dtype(op, DType::F32)?;
    scores.expect_dtype(op, DType::F32)?;
    let n = boxes.shape().first().copied().unwrap_or(0);
    let mut shapes = vec![boxes.shape(), scores.shape()];
    shapes.extend(classes.map(|c| c.shape()));
    if boxes.shape() != [n, 4] || scores.shape() != [n] || classes.is_some_and(|c| c.shape() != [n])
    {
        return Err(Error::shape(
            op,
            "boxes must be [N, 4], scores (and classes) [N]",
            &shapes,
        ));
    }
    if let Some(c) = classes {
        if !matches!(c.dtype(), DType::U32 | DType::I32) {
            return Err(Error::invalid(
                op,
                format!("classes must be u32 or i32 labels, got {:?}", c.dtype()),
            ));
        }
    }
    if !(0.0..=1.0).contains(&opts.iou_threshold) {
        return Err(Error::invalid(
            op,
            format!(
                "iou_threshold must lie in [0, 1], got {}",
                opts.iou_threshold
            ),
        ));
    }
    if !(opts.soft_nms_sigma >= 0.0 && opts.soft_nms_sigma.is_finite()) {
        return Err(Error::invalid(
            op,
            format!(
                "soft_nms_sigma must be 0 (hard NMS) or positive, got {}",
                opts.soft_nms_sigma
            ),
        ));
    }
    if opts.score_threshold.is_nan() {
        return Err(Error::invalid(
            op,
            "score_threshold is NaN (use -inf for no threshold)",
        ));
    }
    let max_out = opts.max_output.min(n);
    if max_out == 0 {
        return Ok(Selection::default());
    }
    let soft = opts.soft_nms_sigma > 0.0;
    if soft && n + max_out + 2 > LOOP_BUDGET {
        return Err(Error::invalid(
            op,
            format!(
                "soft-NMS scans every candidate per selection on one invocation and takes at most {} boxes plus outputs; got {n} boxes and max_output {max_out} (pre-filter the boxes, e.g. by score)",
                LOOP_BUDGET - 2
            ),
        ));
    }
    let dev = boxes.device();
    let mut p = NmsParams {
        n: n as u32,
        row: 0,
        max_out: max_out as u32,
        per_class: classes.is_some() as u32,
        iou_threshold: opts.iou_threshold,
        score_threshold: opts.score_threshold,
        soft_scale: if soft {
            -0.5 / opts.soft_nms_sigma
        } else {
            0.0
        },
        j0: 0,
    };
    let out_index = Tensor::zeros(dev, &[2 + max_out], DType::U32)?;
    let out_score = Tensor::uninit(dev, op, &[max_out], DType::F32)?;
    // Without classes nothing reads the binding; the scores stand in for it.
    let class_buf = classes.map_or(scores.bind(), |c| c.bind());
    let spec = Spec::new();
    // Each entry uses its own subset of the file's bindings (1 boxes, 2 scores, 3 classes,
    // 4 order, 5 mask, 6 out_index, 7 out_score, 8 scratch_u, 9 scratch_f, 10 rank,
    // 11 the scores as vec4s).
    let run = |p: &NmsParams, entry, bound: &[(u32, crate::device::View<'_>)], threads: u64| {
        let (at, bufs): (Vec<u32>, Vec<crate::device::View<'_>>) = bound.iter().copied().unzip();
        launch_1d_bound(
            dev,
            &NMS,
            entry,
            &spec,
            |row| NmsParams { row, ..*p },
            &bufs,
            Some(&at),
            threads,
        )
    };
    let read = || -> Result<Vec<u32>> { out_index.to_vec::<u32>() };
    let idx = if soft {
        let scratch_u = Tensor::uninit(dev, op, &[2 * n], DType::U32)?;
        let scratch_f = Tensor::uninit(dev, op, &[n], DType::F32)?;
        let init = [
            (2, scores.bind()),
            (6, out_index.bind()),
            (8, scratch_u.bind()),
            (9, scratch_f.bind()),
        ];
        run(&p, "soft_init", &init, n as u64)?;
        let walk = [
            (1, boxes.bind()),
            (3, class_buf),
            (6, out_index.bind()),
            (7, out_score.bind()),
            (8, scratch_u.bind()),
            (9, scratch_f.bind()),
        ];
        // The number of pops is data-dependent (candidates are re-queued): batches of
        // dispatches, each batch followed by a look at the done flag.
        loop {
            for _ in 0..8 {
                run(&p, "soft_nms", &walk, 1)?;
            }
            let idx = read()?;
            if idx[1] != 0 {
                break idx;
            }
        }
    } else {
        let order = Tensor::uninit(dev, op, &[n], DType::U32)?;
        let rank = Tensor::zeros(dev, &[n], DType::U32)?;
        let mask = Tensor::uninit(dev, op, &[BLOCK * (BLOCK / 32 + 1)], DType::U32)?;
        for j0 in (0..n).step_by(LOOP_BUDGET) {
            p.j0 = j0 as u32;
            let partial = [
                (2, scores.bind()),
                (10, rank.bind()),
                (11, scores.bind()),
            ];
            run(&p, "rank_partial", &partial, n as u64)?;
        }
        let scatter = [(4, order.bind()), (10, rank.bind())];
        run(&p, "rank_scatter", &scatter, n as u64)?;
        let check = [
            (1, boxes.bind()),
            (2, scores.bind()),
            (3, class_buf),
            (4, order.bind()),
            (5, mask.bind()),
            (6, out_index.bind()),
        ];
        let select = [
            (2, scores.bind()),
            (4, order.bind()),
            (5, mask.bind()),
            (6, out_index.bind()),
            (7, out_score.bind()),
        ];
        // Blocks past the point where max_output boxes are kept (or the scores fall below the
        // threshold) return at once; a look at the done flag every few blocks skips the rest.
        let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
        let mut idx = Vec::new();
        for batch in blocks.chunks(8) {
            for &j0 in batch {
                p.j0 = j0 as u32;
                run(&p, "block_check", &check, BLOCK as u64)?;
                run(&p, "block_select", &select, 1)?;
            }
            idx = read()?;
            if idx[1] != 0 {
                break;
            }
        }
        assert!(idx[1] != 0, "{op}: the last block ends the walk");
        idx
    };
    let count = idx[0] as usize;
    let mut sc = out_score.to_vec::<f32>()?;
    sc.truncate(count);
    Ok(Selection {
        indices: idx[2..2 + count].to_vec(),
        scores: sc,
    })
}
