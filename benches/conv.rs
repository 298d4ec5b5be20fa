//! Convolution throughput on ResNet-34's layer shapes (batch 8, f32): forward, input gradient
//! and filter gradient in GFLOP/s (2·N·OH·OW·O·KH·KW·C/groups per direction), against the
//! tuned matmul of the same GEMM size in the same run as the adapter's ceiling.
//! Run: `cargo bench --bench conv`. `WGRAD_BENCH_QUICK=1` keeps only the headline shape.

mod common;

use common::{adapter_line, median, timed};
use criterion::{black_box, Throughput};
use wgrad::{Conv2dOptions, Device, Padding, Tensor};

struct Shape {
    name: &'static str,
    hw: usize,
    c: usize,
    o: usize,
    k: usize,
    s: usize,
}

const SHAPES: [Shape; 9] = [
    Shape {
        name: "3x3 64 on 56² (headline)",
        hw: 56,
        c: 64,
        o: 64,
        k: 3,
        s: 1,
    },
    Shape {
        name: "7x7/2 64 on 224²",
        hw: 224,
        c: 3,
        o: 64,
        k: 7,
        s: 2,
    },
    Shape {
        name: "3x3/2 128 on 56²",
        hw: 56,
        c: 64,
        o: 128,
        k: 3,
        s: 2,
    },
    Shape {
        name: "3x3 128 on 28²",
        hw: 28,
        c: 128,
        o: 128,
        k: 3,
        s: 1,
    },
    Shape {
        name: "3x3 256 on 14²",
        hw: 14,
        c: 256,
        o: 256,
        k: 3,
        s: 1,
    },
    Shape {
        name: "3x3 512 on 7²",
        hw: 7,
        c: 512,
        o: 512,
        k: 3,
        s: 1,
    },
    Shape {
        name: "1x1/2 64->128 on 56²",
        hw: 56,
        c: 64,
        o: 128,
        k: 1,
        s: 2,
    },
    Shape {
        name: "1x1/2 128->256 on 28²",
        hw: 28,
        c: 128,
        o: 256,
        k: 1,
        s: 2,
    },
    Shape {
        name: "1x1/2 256->512 on 14²",
        hw: 14,
        c: 256,
        o: 512,
        k: 1,
        s: 2,
    },
];

const N: usize = 8;

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    let quick = std::env::var("WGRAD_BENCH_QUICK").is_ok();
    let shapes = if quick { &SHAPES[..1] } else { &SHAPES[..] };
    let mut rows = Vec::new();
    for sh in shapes {
        let opts = Conv2dOptions {
            stride: [sh.s, sh.s],
            padding: Padding::Same,
            ..Default::default()
        };
        let x = Tensor::rand_uniform(&dev, &[N, sh.hw, sh.hw, sh.c], -1.0, 1.0, 1).unwrap();
        let w = Tensor::rand_uniform(&dev, &[sh.k, sh.k, sh.c, sh.o], -0.1, 0.1, 2).unwrap();
        let y = x.conv2d(&w, opts).unwrap();
        let dy = Tensor::rand_uniform(&dev, y.shape(), -1.0, 1.0, 3).unwrap();
        dev.sync().unwrap();
        let (oh, ow) = (y.shape()[1], y.shape()[2]);
        let flops = 2 * N * oh * ow * sh.o * sh.k * sh.k * sh.c;
        let mut g = c.benchmark_group(format!("conv {}", sh.name));
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
        // The same GEMM as a plain matmul: [N·OH·OW, KH·KW·C] x [KH·KW·C, O].
        let km = key("matmul");
        let a =
            Tensor::rand_uniform(&dev, &[N * oh * ow, sh.k * sh.k * sh.c], -1.0, 1.0, 4).unwrap();
        let bm = Tensor::rand_uniform(&dev, &[sh.k * sh.k * sh.c, sh.o], -1.0, 1.0, 5).unwrap();
        g.bench_function("matmul_same_gemm", |b| {
            b.iter_custom(|it| timed(&km, it, || synced(&dev, a.matmul(&bm).unwrap())))
        });
        // A matmul as wide as the input gradient's output (C columns) with the convolution's
        // FLOPs: [N·OH·OW, KH·KW·O] x [KH·KW·O, C], the ceiling that width allows.
        let kd = key("matmul_dx");
        let ad =
            Tensor::rand_uniform(&dev, &[N * oh * ow, sh.k * sh.k * sh.o], -1.0, 1.0, 8).unwrap();
        let bd = Tensor::rand_uniform(&dev, &[sh.k * sh.k * sh.o, sh.c], -1.0, 1.0, 9).unwrap();
        g.bench_function("matmul_dx_gemm", |b| {
            b.iter_custom(|it| timed(&kd, it, || synced(&dev, ad.matmul(&bd).unwrap())))
        });
        g.finish();
        rows.push((sh.name, flops, [kf, ki, kw, km, kd]));
    }
    // Transposed convolution 4x4/2 on [8,28,28,64] -> 32 channels (a segmentation decoder step).
    let xt = Tensor::rand_uniform(&dev, &[N, 28, 28, 64], -1.0, 1.0, 6).unwrap();
    let wt = Tensor::rand_uniform(&dev, &[4, 4, 32, 64], -0.1, 0.1, 7).unwrap();
    let topts = Conv2dOptions {
        stride: [2, 2],
        padding: Padding::Same,
        ..Default::default()
    };
    let yt = xt.conv2d_transpose(&wt, topts, [0, 0]).unwrap();
    let dyt = Tensor::rand_uniform(&dev, yt.shape(), -1.0, 1.0, 8).unwrap();
    let tflops = 2 * N * 28 * 28 * 64 * 16 * 32;
    let mut g = c.benchmark_group("conv_transpose 4x4/2 [8,28,28,64]->32");
    g.throughput(Throughput::Elements(tflops as u64));
    g.bench_function("forward", |b| {
        b.iter_custom(|it| {
            timed("ct/forward", it, || {
                synced(&dev, xt.conv2d_transpose(&wt, topts, [0, 0]).unwrap())
            })
        })
    });
    g.bench_function("input_grad", |b| {
        b.iter_custom(|it| {
            timed("ct/input_grad", it, || {
                synced(
                    &dev,
                    dyt.conv2d_transpose_backward_input(&wt, topts).unwrap(),
                )
            })
        })
    });
    // Its forward's GEMM as a matmul of the same FLOPs and output width (32 channels):
    // [N·28·28, 4·4·64] x [4·4·64, 32].
    let (at, bt) = (
        Tensor::rand_uniform(&dev, &[N * 28 * 28, 16 * 64], -1.0, 1.0, 10).unwrap(),
        Tensor::rand_uniform(&dev, &[16 * 64, 32], -1.0, 1.0, 11).unwrap(),
    );
    g.bench_function("matmul_same_gemm", |b| {
        b.iter_custom(|it| timed("ct/matmul", it, || synced(&dev, at.matmul(&bt).unwrap())))
    });
    g.bench_function("filter_grad", |b| {
        b.iter_custom(|it| {
            timed("ct/filter_grad", it, || {
                synced(
                    &dev,
                    xt.conv2d_transpose_backward_filter(&dyt, [4, 4], topts)
                        .unwrap(),
                )
            })
        })
    });
    g.finish();

    println!("\n{}", adapter_line(&dev));
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>10} {:>11} {:>9}",
        "shape (batch 8)",
        "fwd GF/s",
        "dx GF/s",
        "dw GF/s",
        "mm GF/s",
        "fwd/mm",
        "dx/mm",
        "dw/mm",
        "fwd ms",
        "mm_dx GF/s",
        "dx/mm_dx"
    );
    for (name, flops, keys) in &rows {
        let gf = |k: &String| median(k).map_or(f64::NAN, |t| *flops as f64 / t / 1e9);
        let v: Vec<f64> = keys.iter().map(gf).collect();
        let ms = median(&keys[0]).map_or(f64::NAN, |t| t * 1e3);
        println!(
            "{name:<26} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.0}% {:>6.0}% {:>6.0}% {ms:>10.1} {:>11.2} {:>8.0}%",
            v[0],
            v[1],
            v[2],
            v[3],
            100.0 * v[0] / v[3],
            100.0 * v[1] / v[3],
            100.0 * v[2] / v[3],
            v[4],
            100.0 * v[1] / v[4]
        );
    }
    let head = &rows[0].2;
    let total: f64 = head[..3].iter().filter_map(|k| median(k)).sum();
    println!("headline forward + both gradients: {:.1} ms", total * 1e3);
    let tg = |k: &str| median(k).map_or(f64::NAN, |t| tflops as f64 / t / 1e9);
    println!(
        "conv_transpose 4x4/2: fwd {:.2}, dx {:.2}, dw {:.2} GFLOP/s; same-GEMM matmul {:.2} (fwd/mm {:.0}%)",
        tg("ct/forward"),
        tg("ct/input_grad"),
        tg("ct/filter_grad"),
        tg("ct/matmul"),
        100.0 * tg("ct/forward") / tg("ct/matmul")
    );
    c.final_summary();
}

/// Keeps the result alive until the work behind it has run (what each timed call measures).
fn synced(dev: &Device, t: Tensor) {
    black_box(&t);
    dev.sync().unwrap();
}
