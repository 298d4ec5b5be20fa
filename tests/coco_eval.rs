//! COCO evaluation against pycocotools: every case of `tests/data/detection_metrics.safetensors`
//! (ground truths and scored detections over several images and classes, rows
//! `(image, class, x, y, w, h[, score])`) must give COCOeval's AP@[.5:.95], AP@.5, AP@.75 and
//! AR@100 to 1e-4.

use wgrad::nn::coco::{coco_evaluate, Detection, GroundTruth};
use wgrad_testkit::oracle;

#[test]
fn pycocotools_cases_agree() {
    let cases = oracle::cases("detection_metrics");
    assert!(cases.len() >= 6, "{} cases", cases.len());
    for case in &cases {
        let (gs, gv) = case.get("gt");
        let (ds, dv) = case.get("det");
        assert_eq!((gs[1], ds[1]), (6, 7), "{}", case.name);
        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let gts: Vec<GroundTruth> = gv
            .chunks_exact(6)
            .map(|r| {
                let r = f(r);
                GroundTruth {
                    image: r[0] as u64,
                    class: r[1] as u64,
                    bbox: [r[2], r[3], r[4], r[5]],
                }
            })
            .collect();
        let dets: Vec<Detection> = dv
            .chunks_exact(7)
            .map(|r| {
                let r = f(r);
                Detection {
                    image: r[0] as u64,
                    class: r[1] as u64,
                    bbox: [r[2], r[3], r[4], r[5]],
                    score: r[6],
                }
            })
            .collect();
        let m = coco_evaluate(&gts, &dets, 100);
        let (_, ap) = case.get("ap");
        let (_, ar) = case.get("ar100");
        let got = [m.ap, m.ap50, m.ap75, m.ar];
        let want = [ap[0], ap[1], ap[2], ar[0]];
        for (name, (g, w)) in ["AP", "AP50", "AP75", "AR100"]
            .iter()
            .zip(got.iter().zip(want))
        {
            assert!(
                (g - w as f64).abs() < 1e-4,
                "{}: {name} {g} vs pycocotools {w}",
                case.name
            );
        }
    }
}
