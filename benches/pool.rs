//! Pooling throughput on a ResNet-stem-sized activation: max-pool 3×3/2 Same on
//! [8, 112, 112, 64] forward and backward, average pooling of the same shape, and a 2× upsample
//! for scale. Run: `cargo bench --bench pool`.
//!
//! GB/s counts the bytes each kernel must move at least once: forward reads the input and
//! writes the output (+ the u32 indices for max); backward reads the output gradient (+ the
//! indices) and writes the input gradient.

mod common;

use common::{adapter_line, median, timed};
use criterion::black_box;
use wgrad::Upsample;
use wgrad::{Device, Padding, Tensor};

const SHAPE: [usize; 4] = [8, 112, 112, 64];
const POOL: [usize; 2] = [3, 3];
const STRIDE: [usize; 2] = [2, 2];

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    let x = Tensor::rand_uniform(&dev, &SHAPE, -1.0, 1.0, 1).unwrap();
    let (y, idx) = x.max_pool2d(POOL, STRIDE, Padding::Same).unwrap();
    let g = Tensor::rand_uniform(&dev, y.shape(), -1.0, 1.0, 2).unwrap();
    let gu = Tensor::rand_uniform(&dev, &[8, 224, 224, 64], -1.0, 1.0, 3).unwrap();
    dev.sync().unwrap();

    let (nx, ny) = (x.numel() as f64 * 4.0, y.numel() as f64 * 4.0);
    // (name, bytes moved, the op)
    type Run<'a> = Box<dyn Fn() -> Tensor + 'a>;
    let runs: Vec<(&str, f64, Run)> = vec![
        (
            "max_fwd",
            nx + 2.0 * ny,
            Box::new(|| x.max_pool2d(POOL, STRIDE, Padding::Same).unwrap().0),
        ),
        (
            "max_bwd",
            2.0 * ny + nx,
            Box::new(|| {
                g.max_pool2d_backward(&idx, &SHAPE, POOL, STRIDE, Padding::Same)
                    .unwrap()
            }),
        ),
        (
            "avg_fwd",
            nx + ny,
            Box::new(|| x.avg_pool2d(POOL, STRIDE, Padding::Same).unwrap()),
        ),
        (
            "avg_bwd",
            ny + nx,
            Box::new(|| {
                g.avg_pool2d_backward(&SHAPE, POOL, STRIDE, Padding::Same)
                    .unwrap()
            }),
        ),
        (
            "upsample2x_bilinear_fwd",
            nx + 4.0 * nx,
            Box::new(|| x.upsample2d([2, 2], Upsample::Bilinear).unwrap()),
        ),
        (
            "upsample2x_bilinear_bwd",
            4.0 * nx + nx,
            Box::new(|| {
                gu.upsample2d_backward(&SHAPE, [2, 2], Upsample::Bilinear)
                    .unwrap()
            }),
        ),
    ];

    let mut group = c.benchmark_group("pool_8x112x112x64");
    for (name, _, f) in &runs {
        let key = name.to_string();
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                timed(&key, iters, || {
                    black_box(f());
                    dev.sync().unwrap();
                })
            })
        });
    }
    group.finish();

    println!("\n{}", adapter_line(&dev));
    println!(
        "max/avg pool 3x3/2 Same on {SHAPE:?}; upsample 2x of the same tensor (median of samples)"
    );
    println!("{:<26} {:>10} {:>10}", "kernel", "ms", "GB/s");
    for (name, bytes, _) in &runs {
        let t = median(name).unwrap_or(f64::NAN);
        println!("{name:<26} {:>10.2} {:>10.2}", t * 1e3, bytes / t / 1e9);
    }
    c.final_summary();
}
