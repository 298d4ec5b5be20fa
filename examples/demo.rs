//! wgrad in one screen: open the default adapter, run a dense layer's forward pass
//! (`relu(a · b + bias)` in one fused kernel), check it against a plain f64 CPU loop, and time it.
//!
//! ```text
//! cargo run --release --example demo      # or: cargo xtask demo
//! ```

use std::process::ExitCode;
use std::time::Instant;

use wgrad::MatmulOptions;
use wgrad::{Activation, Device, Tensor};

const M: usize = 512;
const K: usize = 384;
const N: usize = 256;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> wgrad::Result<bool> {
    let dev = Device::new()?;
    let info = dev.info();
    println!(
        "adapter: {} ({:?}, {:?}), matmul strategy {:?}",
        info.name,
        info.backend,
        info.device_type,
        dev.strategy()
    );

    // Seeded random operands, generated on the device.
    let a = Tensor::rand_uniform(&dev, &[M, K], -1.0, 1.0, 1)?;
    let b = Tensor::rand_uniform(&dev, &[K, N], -1.0, 1.0, 2)?;
    let bias = Tensor::rand_uniform(&dev, &[N], -1.0, 1.0, 3)?;
    let opts = MatmulOptions {
        bias: Some(&bias),
        activation: Activation::Relu,
        ..Default::default()
    };

    // Correctness: compare with relu(a · b + bias) computed in f64 on the host.
    let got = a.matmul_with(&b, opts)?.to_vec::<f32>()?;
    let (ha, hb, hbias) = (
        a.to_vec::<f32>()?,
        b.to_vec::<f32>()?,
        bias.to_vec::<f32>()?,
    );
    let mut max_rel = 0f64;
    for i in 0..M {
        for j in 0..N {
            let mut acc = hbias[j] as f64;
            for p in 0..K {
                acc += ha[i * K + p] as f64 * hb[p * N + j] as f64;
            }
            let want = acc.max(0.0);
            let rel = (got[i * N + j] as f64 - want).abs() / want.abs().max(1.0);
            max_rel = max_rel.max(rel);
        }
    }
    println!("relu([{M}x{K}] · [{K}x{N}] + bias): max relative error vs f64 CPU {max_rel:.2e}");

    // Speed: the kernel is already compiled and warm; record `reps` products in one batch and
    // wait for them. Best of a few rounds.
    let reps = 20;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        dev.sync()?;
        let t = Instant::now();
        for _ in 0..reps {
            a.matmul_with(&b, opts)?;
        }
        dev.sync()?;
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    let flops = 2.0 * (M * K * N) as f64;
    println!(
        "fused matmul + bias + relu: {:.3} ms, {:.2} GFLOP/s",
        best * 1e3,
        flops / best / 1e9
    );

    if max_rel > 1e-4 {
        eprintln!("FAILED: error {max_rel:.2e} is above 1e-4");
        return Ok(false);
    }
    println!("ok");
    Ok(true)
}
