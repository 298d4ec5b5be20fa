//! COCO-style detection metrics, as pycocotools' `COCOeval` computes them for boxes over all
//! object areas: AP averaged over IoU thresholds 0.50:0.05:0.95, AP at 0.50 and 0.75, and AR
//! with at most `max_dets` detections per image and class.
//!
//! The same steps as `COCOeval.evaluate` + `accumulate` + `summarize`, so the numbers agree:
//! per image and class, detections by score (stable), at most `max_dets`, each matched to the
//! unmatched ground truth it overlaps most with IoU ≥ the threshold; per class, the detections
//! of all images by score (stable, images in id order), precision made monotone from the right
//! and read at the 101 recall points 0, 0.01, …, 1 (the first point whose recall reaches the
//! threshold, 0 past the end); classes without ground truth are left out of the means. Boxes are
//! COCO's `(x, y, width, height)`; IoU is computed in f64 as pycocotools' C code does.

use std::collections::{BTreeMap, BTreeSet};

/// A ground-truth box: image id, class id and `(x, y, width, height)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroundTruth {
    pub image: u64,
    pub class: u64,
    pub bbox: [f64; 4],
}

/// A detection: image id, class id, `(x, y, width, height)` and its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub image: u64,
    pub class: u64,
    pub bbox: [f64; 4],
    pub score: f64,
}

/// COCOeval's summary numbers for boxes, all areas. Each is -1 where no class has ground
/// truth (pycocotools' convention).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CocoMetrics {
    /// AP@[.50:.95]: mean precision over the ten IoU thresholds, the recall points and the
    /// classes.
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    /// AR@max_dets: mean recall over the IoU thresholds and the classes.
    pub ar: f64,
}

/// pycocotools' `bbIou`: intersection over union of `(x, y, w, h)` boxes, in f64.
pub fn box_iou(d: &[f64; 4], g: &[f64; 4]) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    i / (d[2] * d[3] + g[2] * g[3] - i)
}

/// NumPy's `linspace(start, stop, num)`: `start + i·step`, the last value exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    (0..num)
        .map(|i| {
            if i == num - 1 {
                stop
            } else {
                i as f64 * step + start
            }
        })
        .collect()
}

/// Indices of `v` sorted by descending score, equal scores in their original order (NumPy's
/// `argsort(-score, kind="mergesort")`).
fn by_score(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// A detection's score and box.
type Scored = (f64, [f64; 4]);

/// One image and class after matching: per IoU threshold, whether each kept detection found a
/// ground truth; the kept detections' scores; the number of ground truths.
struct Matched {
    scores: Vec<f64>,
    hit: Vec<Vec<bool>>,
    gts: usize,
}

fn match_image(
    gts: &[[f64; 4]],
    dets: &[(f64, [f64; 4])],
    max_dets: usize,
    thrs: &[f64],
) -> Matched {
    let scores: Vec<f64> = dets.iter().map(|d| d.0).collect();
    let order: Vec<usize> = by_score(&scores).into_iter().take(max_dets).collect();
    let mut hit = vec![vec![false; order.len()]; thrs.len()];
    for (t, &thr) in thrs.iter().enumerate() {
        let mut taken = vec![false; gts.len()];
        for (di, &d) in order.iter().enumerate() {
            // The best unmatched ground truth with IoU ≥ thr (pycocotools starts the search at
            // min(thr, 1 − 1e-10) and keeps the first of equals).
            let mut best = thr.min(1.0 - 1e-10);
            let mut m = None;
            for (g, gt) in gts.iter().enumerate() {
                if taken[g] {
                    continue;
                }
                let iou = box_iou(&dets[d].1, gt);
                if iou < best {
                    continue;
                }
                best = iou;
                m = Some(g);
            }
            if let Some(g) = m {
                taken[g] = true;
                hit[t][di] = true;
            }
        }
    }
    Matched {
        scores: order.iter().map(|&d| scores[d]).collect(),
        hit,
        gts: gts.len(),
    }
}

/// COCOeval (`iouType="bbox"`, all areas, `maxDets` = `max_dets`) of `dets` against `gts`.
pub fn coco_evaluate(gts: &[GroundTruth], dets: &[Detection], max_dets: usize) -> CocoMetrics {
    let iou_thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    // (class, image) -> boxes, in input order; BTreeMaps give pycocotools' sorted id order.
    let mut g_by: BTreeMap<(u64, u64), Vec<[f64; 4]>> = BTreeMap::new();
    let mut d_by: BTreeMap<(u64, u64), Vec<Scored>> = BTreeMap::new();
    for g in gts {
        g_by.entry((g.class, g.image)).or_default().push(g.bbox);
    }
    for d in dets {
        d_by.entry((d.class, d.image))
            .or_default()
            .push((d.score, d.bbox));
    }
    let classes: BTreeSet<u64> = g_by.keys().chain(d_by.keys()).map(|k| k.0).collect();
    let images: BTreeSet<u64> = g_by.keys().chain(d_by.keys()).map(|k| k.1).collect();
    let (mut precision, mut recall): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (
        vec![Vec::new(); iou_thrs.len()],
        vec![Vec::new(); iou_thrs.len()],
    );
    for &c in &classes {
        let matched: Vec<Matched> = images
            .iter()
            .filter_map(|&i| {
                let g = g_by.get(&(c, i)).map_or(&[][..], |v| &v[..]);
                let d = d_by.get(&(c, i)).map_or(&[][..], |v| &v[..]);
                (!g.is_empty() || !d.is_empty()).then(|| match_image(g, d, max_dets, &iou_thrs))
            })
            .collect();
        let npig: usize = matched.iter().map(|m| m.gts).sum();
        if npig == 0 {
            continue;
        }
        let scores: Vec<f64> = matched
            .iter()
            .flat_map(|m| m.scores.iter().copied())
            .collect();
        let order = by_score(&scores);
        for (t, (p_t, r_t)) in precision.iter_mut().zip(&mut recall).enumerate() {
            let hits: Vec<bool> = matched
                .iter()
                .flat_map(|m| m.hit[t].iter().copied())
                .collect();
            let (mut tp, mut fp) = (0f64, 0f64);
            let mut rc = Vec::with_capacity(order.len());
            let mut pr = Vec::with_capacity(order.len());
            for &d in &order {
                if hits[d] {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
                rc.push(tp / npig as f64);
                pr.push(tp / (fp + tp + f64::EPSILON));
            }
            r_t.push(rc.last().copied().unwrap_or(0.0));
            for i in (1..pr.len()).rev() {
                if pr[i] > pr[i - 1] {
                    pr[i - 1] = pr[i];
                }
            }
            for &r in &rec_thrs {
                let at = rc.partition_point(|&x| x < r);
                p_t.push(pr.get(at).copied().unwrap_or(0.0));
            }
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            -1.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let all = |m: &[Vec<f64>]| mean(&m.concat());
    let at = |m: &[Vec<f64>], thr: f64| {
        let t = (0..iou_thrs.len())
            .min_by(|&a, &b| {
                (iou_thrs[a] - thr)
                    .abs()
                    .total_cmp(&(iou_thrs[b] - thr).abs())
            })
            .expect("ten thresholds");
        mean(&m[t])
    };
    CocoMetrics {
        ap: all(&precision),
        ap50: at(&precision, 0.5),
        ap75: at(&precision, 0.75),
        ar: all(&recall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(image: u64, class: u64, b: [f64; 4]) -> GroundTruth {
        GroundTruth {
            image,
            class,
            bbox: b,
        }
    }
    fn det(image: u64, class: u64, b: [f64; 4], score: f64) -> Detection {
        Detection {
            image,
            class,
            bbox: b,
            score,
        }
    }

    #[test]
    fn perfect_detections_score_one_and_none_score_zero() {
        let g = [
            gt(1, 1, [0.0, 0.0, 10.0, 10.0]),
            gt(2, 1, [5.0, 5.0, 4.0, 8.0]),
        ];
        let d: Vec<Detection> = g
            .iter()
            .map(|g| det(g.image, g.class, g.bbox, 0.9))
            .collect();
        let m = coco_evaluate(&g, &d, 100);
        assert_eq!((m.ap, m.ap50, m.ap75, m.ar), (1.0, 1.0, 1.0, 1.0));
        let m = coco_evaluate(&g, &[], 100);
        assert_eq!((m.ap, m.ar), (0.0, 0.0));
        let m = coco_evaluate(&[], &d, 100);
        assert_eq!(
            (m.ap, m.ar),
            (-1.0, -1.0),
            "no ground truth: undefined, as pycocotools"
        );
    }

    #[test]
    fn a_match_needs_iou_at_least_the_threshold() {
        let g = [gt(1, 1, [0.0, 0.0, 10.0, 10.0])];
        let ap = |b: [f64; 4]| {
            let m = coco_evaluate(&g, &[det(1, 1, b, 0.5)], 100);
            (m.ap, m.ap50, m.ap75)
        };
        // IoU 1/3 matches at no threshold; exactly 1/2 at 0.50 (≥, as pycocotools); 0.58 at
        // 0.50 and 0.55: AP@[.5:.95] is the share of thresholds matched.
        assert_eq!(ap([5.0, 0.0, 10.0, 10.0]), (0.0, 0.0, 0.0));
        // Precision is tp / (tp + fp + ε) as pycocotools', a hair under 1.
        let (a, a50, a75) = ap([0.0, 0.0, 10.0, 5.0]);
        assert!((a50 - 1.0).abs() < 1e-12 && a75 == 0.0, "{a50} {a75}");
        assert!((a - 0.1).abs() < 1e-12, "{a}");
        let (a, _, _) = ap([0.0, 0.0, 10.0, 5.8]);
        assert!((a - 0.2).abs() < 1e-12, "{a}");
    }

    #[test]
    fn iou_is_pycocotools_bbiou() {
        assert_eq!(
            box_iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 1.0, 2.0, 2.0]),
            1.0 / 7.0
        );
        assert_eq!(box_iou(&[0.0, 0.0, 1.0, 1.0], &[1.0, 0.0, 1.0, 1.0]), 0.0);
    }
}
