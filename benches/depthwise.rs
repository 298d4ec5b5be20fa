//! Depthwise convolution throughput on Xception/MobileNet-like shapes (batch 8, f32, 3×3,
//! channel multiplier 1): forward, input gradient and filter gradient, in GFLOP/s
//! (2·N·OH·OW·C·M·KH·KW per direction) and GB/s (the bytes each direction must move at least
//! once: its two operands and its result).
//! Run: `cargo bench --bench depthwise`. `WGRAD_BENCH_QUICK=1` keeps only the first shape.
//!
//! `Tensor::conv2d` routes groups == C to the direct kernel (ops/depthwise.rs), so the grouped
//! GEMM it replaced cannot be timed here any more. Measured with this bench before the routing
//! (lavapipe, 2 cores, other builds running): 3x3 [8,56,56,128] forward 2954 ms, input grad
//! 3511 ms, filter grad 1826 ms; 3x3/2 [8,112,112,64] 925, 2985 and 1422 ms (0.01-0.04 GFLOP/s).

mod common;

use common::{adapter_line, median, timed};
use criterion::{black_box, Throughput};
use wgrad::{Conv2dOptions, Device, Padding, Tensor};

struct Shape {
    name: &'static str,
    x: [usize; 4],
    k: usize,
    s: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "3x3 dw [8,56,56,128]",
        x: [8, 56, 56, 128],
        k: 3,
        s: 1,
    },
    Shape {
        name: "3x3/2 dw [8,112,112,64]",
        x: [8, 112, 112, 64],
        k: 3,
        s: 2,
    },
];

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    let quick = std::env::var("WGRAD_BENCH_QUICK").is_ok();
    let shapes = if quick { &SHAPES[..1] } else { &SHAPES[..] };
    let mut rows = Vec::new();
    for sh in shapes {
        let ch = sh.x[3];
        let opts = Conv2dOptions {
            stride: [sh.s, sh.s],
            padding: Padding::Same,
            groups: ch,
            ..Default::default()
        };
        let x = Tensor::rand_uniform(&dev, &sh.x, -1.0, 1.0, 1).unwrap();
        let w = Tensor::rand_uniform(&dev, &[sh.k, sh.k, 1, ch], -0.1, 0.1, 2).unwrap();
        let y = x.conv2d(&w, opts).unwrap();
        let dy = Tensor::rand_uniform(&dev, y.shape(), -1.0, 1.0, 3).unwrap();
        dev.sync().unwrap();
        let flops = 2 * y.numel() * sh.k * sh.k;
        let (bx, by, bw) = (
            4.0 * x.numel() as f64,
            4.0 * y.numel() as f64,
            4.0 * w.numel() as f64,
        );
        let mut g = c.benchmark_group(format!("depthwise {}", sh.name));
        g.throughput(Throughput::Elements(flops as u64));
        let key = |d: &str| format!("{}/{d}", sh.name);
        let (kf, ki, kw) = (key("forward"), key("input_grad"), key("filter_grad"));
        g.bench_function("forward", |b| {
            b.iter_custom(|it| timed(&kf, it, || synced(&dev, x.conv2d(&w, opts).unwrap())))
        });
        g.bench_function("input_grad", |b| {
            b.iter_custom(|it| {
                timed(&ki, it, || {
                    synced(&dev, dy.conv2d_backward_input(&w, x.shape(), opts).unwrap())
                })
            })
        });
        g.bench_function("filter_grad", |b| {
            b.iter_custom(|it| {
                timed(&kw, it, || {
                    synced(
                        &dev,
                        x.conv2d_backward_filter(&dy, [sh.k, sh.k], opts).unwrap(),
                    )
                })
            })
        });
        g.finish();
        // Bytes per direction: forward x + w -> y, input grad dy + w -> dx, filter grad x + dy -> dw.
        let bytes = [bx + bw + by, by + bw + bx, bx + by + bw];
        rows.push((sh.name, flops, bytes, [kf, ki, kw]));
    }

    println!("\n{}", adapter_line(&dev));
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10}",
        "shape (M = 1)",
        "fwd GF/s",
        "dx GF/s",
        "dw GF/s",
        "fwd GB/s",
        "dx GB/s",
        "dw GB/s",
        "f+dx+dw ms"
    );
    for (name, flops, bytes, keys) in &rows {
        let t: Vec<f64> = keys.iter().map(|k| median(k).unwrap_or(f64::NAN)).collect();
        println!(
            "{name:<26} {:>10.2} {:>9.2} {:>9.2} {:>10.2} {:>9.2} {:>9.2} {:>10.1}",
            *flops as f64 / t[0] / 1e9,
            *flops as f64 / t[1] / 1e9,
            *flops as f64 / t[2] / 1e9,
            bytes[0] / t[0] / 1e9,
            bytes[1] / t[1] / 1e9,
            bytes[2] / t[2] / 1e9,
            (t[0] + t[1] + t[2]) * 1e3
        );
    }
    c.final_summary();
}

/// Keeps the result alive until the work behind it has run (what each timed call measures).
fn synced(dev: &Device, t: Tensor) {
    black_box(&t);
    dev.sync().unwrap();
}
