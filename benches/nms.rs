//! Non-max suppression at 10,000 boxes (hard NMS, IoU 0.5, up to 100 or 1,000 kept) and
//! soft-NMS at 1,000 boxes, against a plain single-threaded Rust greedy NMS on the host in the
//! same run (sort by score, then each candidate against the boxes kept so far) — the usual CPU
//! implementation. Run: `cargo bench --bench nms`.

mod common;

use common::{adapter_line, median, profile_once, timed};
use criterion::black_box;
use wgrad::{Device, NmsOptions, Tensor};

/// Boxes of side 2–12 scattered over a 200x200 field: a detector's raw output scale.
fn boxes(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut s = seed;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut b = Vec::with_capacity(4 * n);
    let mut sc = Vec::with_capacity(n);
    for _ in 0..n {
        let (y, x) = (next() * 200.0, next() * 200.0);
        let (h, w) = (2.0 + next() * 10.0, 2.0 + next() * 10.0);
        b.extend([y, x, y + h, x + w]);
        sc.push(next());
    }
    (b, sc)
}

fn iou(a: &[f32], b: &[f32]) -> f32 {
    let area = |v: &[f32]| (v[2] - v[0]) * (v[3] - v[1]);
    let ih = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iw = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ih * iw;
    inter / (area(a) + area(b) - inter)
}

fn host_nms(b: &[f32], s: &[f32], max_out: usize, thr: f32) -> Vec<u32> {
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
    let mut kept: Vec<usize> = Vec::new();
    for i in idx {
        if kept.len() == max_out {
            break;
        }
        if kept
            .iter()
            .all(|&k| iou(&b[4 * k..4 * k + 4], &b[4 * i..4 * i + 4]) <= thr)
        {
            kept.push(i);
        }
    }
    kept.into_iter().map(|i| i as u32).collect()
}

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    let mut rows = Vec::new();
    for (n, max_out, sigma) in [
        (10_000usize, 100usize, 0.0f32),
        (10_000, 1000, 0.0),
        (1000, 100, 0.5),
    ] {
        let (b, s) = boxes(n, 0x9e3779b97f4a7c15 ^ n as u64);
        let tb = Tensor::from_slice(&dev, &b, &[n, 4]).unwrap();
        let ts = Tensor::from_slice(&dev, &s, &[n]).unwrap();
        let o = NmsOptions::new(max_out).soft_nms_sigma(sigma);
        let got = tb.non_max_suppression(&ts, o).unwrap();
        if sigma == 0.0 {
            assert_eq!(
                got.indices,
                host_nms(&b, &s, max_out, 0.5),
                "the bench checks itself"
            );
        }
        let label = format!(
            "nms_{n}_max{max_out}{}",
            if sigma > 0.0 { "_soft" } else { "" }
        );
        profile_once(&dev, &label, || {
            black_box(tb.non_max_suppression(&ts, o).unwrap());
        });
        let mut g = c.benchmark_group(&label);
        let key = format!("{label}/wgrad");
        g.bench_function("wgrad", |bch| {
            bch.iter_custom(|iters| {
                timed(&key, iters, || {
                    black_box(tb.non_max_suppression(&ts, o).unwrap());
                })
            })
        });
        if sigma == 0.0 {
            let key = format!("{label}/host");
            g.bench_function("host", |bch| {
                bch.iter_custom(|iters| {
                    timed(&key, iters, || {
                        black_box(host_nms(&b, &s, max_out, 0.5));
                    })
                })
            });
        }
        g.finish();
        rows.push((label, got.indices.len()));
    }
    println!("\n{}", adapter_line(&dev));
    println!(
        "{:<28} {:>6} {:>12} {:>14}",
        "case", "kept", "wgrad ms", "host loop ms"
    );
    for (label, kept) in rows {
        let ms = |s: &str| median(&format!("{label}/{s}")).map_or(f64::NAN, |t| t * 1e3);
        println!(
            "{label:<28} {kept:>6} {:>12.2} {:>14.2}",
            ms("wgrad"),
            ms("host")
        );
    }
    c.final_summary();
}
