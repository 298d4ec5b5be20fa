//! Bandwidth and latency of the basic paths: elementwise kernels (GB/s), host -> device upload
//! and device -> host readback (GB/s), and the fixed cost of one dispatch + sync (µs). The
//! yardstick is a native single-threaded streaming loop (`c[i] = a[i] + b[i]` over host Vecs of
//! the same size), timed in the same run: on a CPU adapter the kernels run on the same cores.
//! Run: `cargo bench --bench memory`.

mod common;

use common::{adapter_line, median, timed};
use criterion::{black_box, Throughput};
use wgrad::{DType, Device, Tensor};

const N: usize = 16 << 20; // 16 M floats, 64 MiB

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    let a = Tensor::rand_uniform(&dev, &[N], -1.0, 1.0, 1).unwrap();
    let b = Tensor::rand_uniform(&dev, &[N], -1.0, 1.0, 2).unwrap();
    dev.sync().unwrap();

    let mut g = c.benchmark_group("elementwise");
    // add reads two tensors and writes one.
    g.throughput(Throughput::Bytes(3 * 4 * N as u64));
    g.bench_function("add_16M", |bch| {
        bch.iter_custom(|iters| {
            timed("add", iters, || {
                black_box(a.add(&b).unwrap());
                dev.sync().unwrap();
            })
        })
    });
    g.throughput(Throughput::Bytes(2 * 4 * N as u64));
    g.bench_function("relu_16M", |bch| {
        bch.iter_custom(|iters| {
            timed("relu", iters, || {
                black_box(a.relu().unwrap());
                dev.sync().unwrap();
            })
        })
    });
    // The yardstick: one core streaming the same bytes. The output Vec is reused, as the
    // kernels' pooled buffers are, so neither side pays first-touch page faults.
    let (ha, hb) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let mut hc = vec![0f32; N];
    g.throughput(Throughput::Bytes(3 * 4 * N as u64));
    g.bench_function("native_add_16M", |bch| {
        bch.iter_custom(|iters| {
            timed("native_add", iters, || {
                for ((c, x), y) in hc.iter_mut().zip(&ha).zip(&hb) {
                    *c = x + y;
                }
                black_box(&mut hc);
            })
        })
    });
    g.finish();

    let host: Vec<f32> = (0..N).map(|i| i as f32).collect();
    let mut g = c.benchmark_group("transfer");
    g.throughput(Throughput::Bytes(4 * N as u64));
    g.bench_function("upload_64MiB", |bch| {
        bch.iter_custom(|iters| {
            timed("upload", iters, || {
                black_box(Tensor::from_slice(&dev, &host, &[N]).unwrap());
                dev.sync().unwrap();
            })
        })
    });
    g.bench_function("readback_64MiB", |bch| {
        bch.iter_custom(|iters| {
            timed("readback", iters, || {
                drop(black_box(a.to_vec::<f32>().unwrap()))
            })
        })
    });
    g.finish();

    let tiny = Tensor::zeros(&dev, &[4], DType::F32).unwrap();
    let mut g = c.benchmark_group("latency");
    g.bench_function("dispatch_sync", |bch| {
        bch.iter_custom(|iters| {
            timed("dispatch_sync", iters, || {
                black_box(tiny.relu().unwrap());
                dev.sync().unwrap();
            })
        })
    });
    g.bench_function("dispatch_readback", |bch| {
        bch.iter_custom(|iters| {
            timed("dispatch_readback", iters, || {
                drop(black_box(tiny.relu().unwrap().to_vec::<f32>().unwrap()))
            })
        })
    });
    g.finish();

    println!("\n{}", adapter_line(&dev));
    let gbs = |k: &str, bytes: f64| median(k).map_or(f64::NAN, |t| bytes / t / 1e9);
    println!(
        "add 16M f32:            {:8.2} GB/s",
        gbs("add", 12.0 * N as f64)
    );
    println!(
        "relu 16M f32:           {:8.2} GB/s",
        gbs("relu", 8.0 * N as f64)
    );
    let native = gbs("native_add", 12.0 * N as f64);
    println!("native add, 1 thread:   {native:8.2} GB/s (yardstick)");
    println!(
        "add / native:           {:8.2}",
        gbs("add", 12.0 * N as f64) / native
    );
    println!(
        "upload 64 MiB:          {:8.2} GB/s",
        gbs("upload", 4.0 * N as f64)
    );
    println!(
        "readback 64 MiB:        {:8.2} GB/s",
        gbs("readback", 4.0 * N as f64)
    );
    let us = |k: &str| median(k).map_or(f64::NAN, |t| t * 1e6);
    println!("dispatch + sync:        {:8.1} µs", us("dispatch_sync"));
    println!("dispatch + 16 B read:   {:8.1} µs", us("dispatch_readback"));
    c.final_summary();
}
