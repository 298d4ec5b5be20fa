//! The YOLO-style grid head: encoding ground truth into cells and anchors, the masked loss
//! against an f64 evaluation of YOLO's formula (and its gradient against finite differences),
//! decoding plus per-class NMS on the device returning the encoded boxes, and typed errors.

use wgrad::graph::Var;
use wgrad::nn::YoloGrid;
use wgrad::{NmsOptions, Tensor};
use wgrad_testkit::{check_gradient, close_scalar, Fd, Rng};

/// Per image, its objects as (class, `[y0, x0, y1, x1]` pixels).
type Objects = Vec<Vec<(u32, [f32; 4])>>;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// YOLO's loss written out per cell and anchor in f64, from the raw boxes (not the encoding).
fn reference(g: &YoloGrid, pred: &[f32], objects: &[Vec<(u32, [f32; 4])>]) -> f64 {
    let [sh, sw] = g.grid;
    let (per, ch) = (5 + g.classes, g.channels());
    let mut total = 0.0;
    for (n, objs) in objects.iter().enumerate() {
        // Responsible (cell, anchor) per object: centre cell, best-shape anchor.
        let mut resp: Vec<Option<(u32, [f64; 4])>> = vec![None; sh * sw * g.anchors.len()];
        for &(c, b) in objs {
            let (h, w) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
            let cy = (b[0] + b[2]) as f64 / 2.0 / g.stride as f64;
            let cx = (b[1] + b[3]) as f64 / 2.0 / g.stride as f64;
            let best = (0..g.anchors.len())
                .map(|a| {
                    let [ah, aw] = g.anchors[a].map(|v| v as f64);
                    let i = ah.min(h) * aw.min(w);
                    (i / (ah * aw + h * w - i), a)
                })
                .fold((-1.0, 0), |m, v| if v.0 > m.0 { v } else { m })
                .1;
            let [ah, aw] = g.anchors[best].map(|v| v as f64);
            let slot = (cy.floor() as usize * sw + cx.floor() as usize) * g.anchors.len() + best;
            resp[slot] = Some((c, [cy.fract(), cx.fract(), (h / ah).ln(), (w / aw).ln()]));
        }
        for cell in 0..sh * sw {
            for a in 0..g.anchors.len() {
                let p = &pred[(n * sh * sw + cell) * ch + a * per..][..per];
                let p: Vec<f64> = p.iter().map(|&v| v as f64).collect();
                let bce = |x: f64, t: f64| -(t * sig(x).ln() + (1.0 - t) * (1.0 - sig(x)).ln());
                match resp[cell * g.anchors.len() + a] {
                    Some((c, t)) => {
                        let coord = (sig(p[0]) - t[0]).powi(2)
                            + (sig(p[1]) - t[1]).powi(2)
                            + (p[2] - t[2]).powi(2)
                            + (p[3] - t[3]).powi(2);
                        total += g.lambda_coord as f64 * coord + bce(p[4], 1.0);
                        for k in 0..g.classes {
                            total += bce(p[5 + k], if k == c as usize { 1.0 } else { 0.0 });
                        }
                    }
                    None => total += g.lambda_noobj as f64 * bce(p[4], 0.0),
                }
            }
        }
    }
    total / objects.len() as f64
}

fn scene() -> (YoloGrid, Objects) {
    let g = YoloGrid::new([4, 5], 8.0, &[[10.0, 6.0], [6.0, 12.0]], 3);
    let objects = vec![
        vec![(1, [2.0, 3.0, 13.0, 9.0]), (2, [20.0, 18.0, 26.0, 31.0])],
        vec![(0, [9.0, 25.0, 30.0, 37.0])],
    ];
    (g, objects)
}

fn encoded(g: &YoloGrid, objects: &[Vec<(u32, [f32; 4])>]) -> Tensor {
    let dev = wgrad_testkit::device();
    let t: Vec<f32> = objects.iter().flat_map(|o| g.encode(o).unwrap()).collect();
    let [sh, sw] = g.grid;
    Tensor::from_slice(&dev, &t, &[objects.len(), sh, sw, 3 * g.channels()]).unwrap()
}

#[test]
fn yolo_loss_matches_the_formula_and_its_gradient() {
    let dev = wgrad_testkit::device();
    let (g, objects) = scene();
    let target = encoded(&g, &objects);
    let [sh, sw] = g.grid;
    let shape = [2, sh, sw, g.channels()];
    let pv = Rng::new(5).vec(shape.iter().product(), -2.0, 2.0);
    let loss = g.loss();
    let run = |p: &[f32]| -> (f64, Var) {
        let x = Var::param(Tensor::from_slice(&dev, p, &shape).unwrap());
        let l = loss.compute(&x, &target).unwrap();
        (l.value().to_vec::<f32>().unwrap()[0] as f64, {
            l.backward().unwrap();
            x
        })
    };
    let (got, x) = run(&pv);
    let want = reference(&g, &pv, &objects);
    close_scalar("loss", got, want, 1e-4, 0.0);
    let grad = x.grad().unwrap().to_vec::<f32>().unwrap();
    let fd = Fd::new(1e-2).at_most(pv.len() / 5);
    check_gradient("d/dp", &pv, &grad, fd, |p| reference(&g, p, &objects));
    // Wrong targets are typed input errors that say what the target must be.
    let bad = Tensor::zeros(&dev, &[2, sh, sw, g.channels()], wgrad::DType::F32).unwrap();
    let p = Var::new(Tensor::from_slice(&dev, &pv, &shape).unwrap());
    let e = loss.compute(&p, &bad).unwrap_err().to_string();
    assert!(e.contains("encoded"), "{e}");
    assert!(g.encode(&[(3, [0.0, 0.0, 4.0, 4.0])]).is_err());
}

#[test]
fn decoding_a_perfect_prediction_returns_the_boxes() {
    let dev = wgrad_testkit::device();
    let (g, objects) = scene();
    let [sh, sw] = g.grid;
    let (per, ch) = (5 + g.classes, g.channels());
    // Logits that decode exactly to the targets: logit of the centre offsets, the log-sizes,
    // a confident objectness and class where a box is, unlikely everywhere else.
    let mut pred = Vec::new();
    for o in &objects {
        let t = g.encode(o).unwrap();
        for cell in 0..sh * sw {
            let row = &t[cell * 3 * ch..][..3 * ch];
            for a in 0..g.anchors.len() {
                let v = &row[a * per..][..per];
                let has = v[4] == 1.0;
                let logit =
                    |p: f32| (p.clamp(1e-4, 1.0 - 1e-4) / (1.0 - p.clamp(1e-4, 1.0 - 1e-4))).ln();
                pred.extend([
                    logit(v[0]),
                    logit(v[1]),
                    v[2],
                    v[3],
                    if has { 8.0 } else { -8.0 },
                ]);
                pred.extend(
                    (0..g.classes).map(|k| if has && v[5 + k] == 1.0 { 8.0 } else { -8.0 }),
                );
            }
        }
    }
    let out = Tensor::from_slice(&dev, &pred, &[2, sh, sw, ch]).unwrap();
    let found = g
        .detect(&out, NmsOptions::new(10).score_threshold(0.5))
        .unwrap();
    for (dets, want) in found.iter().zip(&objects) {
        assert_eq!(dets.len(), want.len(), "{dets:?}");
        for &(class, b) in want {
            let d = dets
                .iter()
                .find(|d| d.class == class)
                .unwrap_or_else(|| panic!("class {class} missing in {dets:?}"));
            for k in 0..4 {
                assert!((d.bbox[k] - b[k]).abs() < 0.05, "{:?} vs {b:?}", d.bbox);
            }
            assert!(d.score > 0.99);
        }
    }
    let wrong = Tensor::zeros(&dev, &[2, sh + 1, sw, ch], wgrad::DType::F32).unwrap();
    assert!(g.detect(&wrong, NmsOptions::new(10)).is_err());
    dev.sync().unwrap();
}
