//! Matmul throughput for both strategies against a plain single-threaded Rust loop of the same
//! size. Run: `cargo bench --bench matmul` (add `-- --quick` style criterion args as usual).

mod common;

use common::{adapter_line, median, timed};
use criterion::{black_box, Throughput};
use wgrad::{Device, Strategy, Tensor};

/// The plain reference: i-k-j order so the inner loop streams rows of B and C (the compiler
/// vectorises it); one thread.
fn rust_matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    c.fill(0.0);
    for i in 0..m {
        let crow = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let av = a[i * k + p];
            let brow = &b[p * n..(p + 1) * n];
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv += av * bv;
            }
        }
    }
}

const SHAPES: [(usize, usize, usize); 3] = [(256, 256, 256), (1024, 1024, 1024), (512, 2048, 1024)];

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    for &(m, k, n) in &SHAPES {
        let flops = 2 * m * k * n;
        let label = format!("matmul_{m}x{k}x{n}");
        let mut g = c.benchmark_group(&label);
        g.throughput(Throughput::Elements(flops as u64));
        for (sname, strategy) in [
            ("blocked", Strategy::RegisterBlocked),
            ("tiled", Strategy::Tiled),
        ] {
            let d = dev.with_strategy(strategy);
            let a = Tensor::rand_uniform(&d, &[m, k], -1.0, 1.0, 1).unwrap();
            let b = Tensor::rand_uniform(&d, &[k, n], -1.0, 1.0, 2).unwrap();
            d.sync().unwrap();
            let key = format!("{label}/{sname}");
            g.bench_function(sname, |bch| {
                bch.iter_custom(|iters| {
                    timed(&key, iters, || {
                        black_box(a.matmul(&b).unwrap());
                        d.sync().unwrap();
                    })
                })
            });
        }
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let mut out = vec![0f32; m * n];
        let key = format!("{label}/rust_loop");
        g.bench_function("rust_loop", |bch| {
            bch.iter_custom(|iters| {
                timed(&key, iters, || {
                    rust_matmul(black_box(&a), black_box(&b), &mut out, m, k, n)
                })
            })
        });
        g.finish();
    }
    println!("\n{}", adapter_line(&dev));
    println!(
        "{:<24} {:>14} {:>14} {:>14} {:>16}",
        "shape", "blocked GF/s", "tiled GF/s", "rust GF/s", "blocked/rust"
    );
    for &(m, k, n) in &SHAPES {
        let label = format!("matmul_{m}x{k}x{n}");
        let gf = |s: &str| {
            median(&format!("{label}/{s}")).map_or(f64::NAN, |t| 2.0 * (m * k * n) as f64 / t / 1e9)
        };
        let (bl, ti, ru) = (gf("blocked"), gf("tiled"), gf("rust_loop"));
        println!(
            "{:<24} {bl:>14.2} {ti:>14.2} {ru:>14.2} {:>15.2}x",
            format!("{m}x{k}x{n}"),
            bl / ru
        );
    }
    c.final_summary();
}
