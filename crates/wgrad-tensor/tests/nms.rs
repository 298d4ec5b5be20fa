//! Non-max suppression: every case of TensorFlow's `tests/data/nms.safetensors` (hard NMS and
//! soft-NMS, random and clustered boxes, swapped corners, ties, score and IoU thresholds; the
//! arguments come from the case metadata), per-class NMS against a host reference written
//! here, the oracle's IoU matrix against the same host IoU, and the typed errors.

use wgrad_tensor::{DType, NmsOptions, Tensor};
use wgrad_testkit::{box_iou_f64 as iou, device, is_invalid, is_shape, oracle, Rng};

fn options(case: &oracle::Case) -> NmsOptions {
    let p = &case.params;
    let f = |k: &str| p[k].as_f64().map(|v| v as f32);
    let mut o = NmsOptions::new(p["max_output_size"].as_u64().unwrap() as usize)
        .iou_threshold(f("iou_threshold").unwrap());
    if let Some(t) = f("score_threshold") {
        o = o.score_threshold(t);
    }
    if let Some(s) = f("soft_nms_sigma") {
        o = o.soft_nms_sigma(s);
    }
    o
}

#[test]
fn tensorflow_cases_select_the_same_boxes() {
    let dev = device();
    let cases = oracle::cases("nms");
    assert!(cases.len() >= 24, "{} cases", cases.len());
    let (mut hard, mut soft) = (0, 0);
    for case in &cases {
        let (bs, bv) = case.get("boxes");
        let (ss, sv) = case.get("scores");
        let boxes = Tensor::from_slice(&dev, bv, bs).unwrap();
        let scores = Tensor::from_slice(&dev, sv, ss).unwrap();
        let opts = options(case);
        let got = boxes.non_max_suppression(&scores, opts).unwrap();
        let (_, want) = case.get("selected_indices");
        let want: Vec<u32> = want.iter().map(|&v| v as u32).collect();
        assert_eq!(got.indices, want, "{}: {:?}", case.name, case.params);
        if case.has("selected_scores") {
            let (_, ws) = case.get("selected_scores");
            let ws: Vec<f64> = ws.iter().map(|&v| v as f64).collect();
            wgrad_testkit::assert_close(&got.scores, &ws, 1e-5, 1e-6);
        } else {
            // Hard NMS reports the boxes' own scores.
            let own: Vec<f64> = want.iter().map(|&i| sv[i as usize] as f64).collect();
            wgrad_testkit::assert_close(&got.scores, &own, 0.0, 0.0);
        }
        if opts.soft_nms_sigma > 0.0 {
            soft += 1;
        } else {
            hard += 1;
        }
    }
    assert!(hard > 0 && soft > 0, "{hard} hard, {soft} soft cases");
    dev.sync().unwrap();
}

/// The oracle's IoU matrix (TF's own) agrees with the host IoU used by the per-class reference,
/// so that reference is checked too.
#[test]
fn oracle_iou_matches_the_host_definition() {
    for case in oracle::cases("nms").iter().take(8) {
        let (bs, bv) = case.get("boxes");
        let (_, iv) = case.get("iou");
        let n = bs[0];
        for i in 0..n {
            for j in 0..n {
                let want = iv[i * n + j] as f64;
                let got = iou(&bv[4 * i..4 * i + 4], &bv[4 * j..4 * j + 4]);
                assert!(
                    (got - want).abs() < 1e-5,
                    "{} ({i}, {j}): {got} vs {want}",
                    case.name
                );
            }
        }
    }
}

/// Greedy NMS in f64 where only boxes of one class suppress each other.
fn per_class_reference(boxes: &[f32], scores: &[f32], classes: &[u32], o: NmsOptions) -> Vec<u32> {
    let n = scores.len();
    let mut idx: Vec<usize> = (0..n).filter(|&i| scores[i] > o.score_threshold).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = Vec::new();
    for i in idx {
        if kept.len() == o.max_output {
            break;
        }
        let clash = kept.iter().any(|&k| {
            classes[k] == classes[i]
                && iou(&boxes[4 * k..4 * k + 4], &boxes[4 * i..4 * i + 4]) > o.iou_threshold as f64
        });
        if !clash {
            kept.push(i);
        }
    }
    kept.into_iter().map(|i| i as u32).collect()
}

#[test]
fn per_class_nms_suppresses_within_a_class_only() {
    let dev = device();
    let mut rng = Rng::new(7);
    // Boxes around a few centres (classes overlap each other heavily), or spread over a 60x60
    // field so that most of 3,000 are kept: that walk spans twelve blocks and two batches.
    for (n, classes_n, max_out, field) in [
        (1usize, 1u32, 3usize, 4.0f32),
        (37, 3, 12, 4.0),
        (300, 5, 60, 4.0),
        (3000, 4, 3000, 60.0),
    ] {
        let mut boxes = Vec::with_capacity(4 * n);
        for _ in 0..n {
            let (cy, cx) = (
                rng.uniform(0.0, field).floor(),
                rng.uniform(0.0, field).floor(),
            );
            let (h, w) = (rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5));
            let (y, x) = (cy + rng.uniform(-0.3, 0.3), cx + rng.uniform(-0.3, 0.3));
            boxes.extend([y, x, y + h, x + w]);
        }
        let scores = rng.vec(n, 0.0, 1.0);
        let classes: Vec<u32> = (0..n)
            .map(|_| (rng.next_u64() % classes_n as u64) as u32)
            .collect();
        let o = NmsOptions::new(max_out)
            .iou_threshold(0.4)
            .score_threshold(0.05);
        let want = per_class_reference(&boxes, &scores, &classes, o);
        let b = Tensor::from_slice(&dev, &boxes, &[n, 4]).unwrap();
        let s = Tensor::from_slice(&dev, &scores, &[n]).unwrap();
        let c = Tensor::from_slice(&dev, &classes, &[n]).unwrap();
        let got = b.non_max_suppression_per_class(&s, &c, o).unwrap();
        assert_eq!(got.indices, want, "n {n}");
        if field > 10.0 {
            // Kept boxes from many of the 256-position blocks, and more than one batch of them.
            assert!(want.len() > 2048, "{} kept", want.len());
        }
        // One class alone is plain NMS.
        let one = Tensor::from_slice(&dev, &vec![0u32; n], &[n]).unwrap();
        let a = b.non_max_suppression_per_class(&s, &one, o).unwrap();
        assert_eq!(a, b.non_max_suppression(&s, o).unwrap(), "n {n}");
    }
    dev.sync().unwrap();
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dev = device();
    let boxes = Tensor::zeros(&dev, &[5, 4], DType::F32).unwrap();
    let scores = Tensor::zeros(&dev, &[5], DType::F32).unwrap();
    let o = NmsOptions::new(3);
    is_shape(boxes.non_max_suppression(&Tensor::zeros(&dev, &[4], DType::F32).unwrap(), o));
    is_shape(
        Tensor::zeros(&dev, &[5, 3], DType::F32)
            .unwrap()
            .non_max_suppression(&scores, o),
    );
    is_invalid(boxes.non_max_suppression(&scores, o.iou_threshold(1.5)));
    is_invalid(boxes.non_max_suppression(&scores, o.soft_nms_sigma(-1.0)));
    is_invalid(boxes.non_max_suppression(&scores, o.score_threshold(f32::NAN)));
    let float_classes = Tensor::zeros(&dev, &[5], DType::F32).unwrap();
    is_invalid(boxes.non_max_suppression_per_class(&scores, &float_classes, o));
    wgrad_testkit::is_dtype(
        Tensor::zeros(&dev, &[5, 4], DType::I32)
            .unwrap()
            .non_max_suppression(&scores, o),
    );
    // Nothing to select is an empty selection, not an error.
    let none = boxes
        .non_max_suppression(&scores, NmsOptions::new(0))
        .unwrap();
    assert!(none.indices.is_empty() && none.scores.is_empty());
    let empty = Tensor::zeros(&dev, &[0, 4], DType::F32).unwrap();
    let no_scores = Tensor::zeros(&dev, &[0], DType::F32).unwrap();
    assert!(empty
        .non_max_suppression(&no_scores, o)
        .unwrap()
        .indices
        .is_empty());
    dev.sync().unwrap();
}
