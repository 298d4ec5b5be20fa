//! The compile-ahead helper (src/ahead.rs): on lavapipe it compiles a new GEMM pipeline on a
//! device of its own, the product the user asked for is unchanged, announced work
//! (`Device::announce_pipelines`) records nothing and reaches the helper, and
//! `WGRAD_COMPILE_AHEAD=0` turns it off. (That it shortens a first step is measured by
//! `cargo run --release --example first_step`, not here.)

use std::time::{Duration, Instant};

use wgrad_tensor::{Device, Tensor};
use wgrad_testkit::{assert_close, matmul_ref, Rng};

#[test]
fn helper_compiles_new_gemm_pipelines_and_can_be_turned_off() {
    std::env::remove_var("WGRAD_COMPILE_AHEAD");
    let dev = Device::new().unwrap();
    let info = dev.info();
    let lavapipe = info.backend == wgpu::Backend::Vulkan
        && info.device_type == wgpu::DeviceType::Cpu
        && info.driver.to_lowercase().contains("llvmpipe");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cache_off = std::env::var("MESA_SHADER_CACHE_DISABLE")
        .map(|v| matches!(v.as_str(), "1" | "true" | "on"))
        .unwrap_or(false);
    let expected = lavapipe && cores >= 2 && !cache_off;
    assert_eq!(
        dev.compiles_ahead(),
        expected,
        "adapter {info:?}, {cores} cores"
    );

    // Past gemm's small-product threshold, so the 16 x 16 register block is compiled.
    let (m, k, n) = (136, 132, 128);
    let mut rng = Rng::new(7);
    let a = rng.vec(m * k, -1.0, 1.0);
    let b = rng.vec(k * n, -1.0, 1.0);
    let ta = Tensor::from_slice(&dev, &a, &[m, k]).unwrap();
    let tb = Tensor::from_slice(&dev, &b, &[k, n]).unwrap();
    let got = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
    assert_close(
        &got,
        &matmul_ref(&a, &b, m, k, n),
        1e-5,
        1e-5 * (k as f64).sqrt(),
    );
    if expected {
        let start = Instant::now();
        while dev.counters().compiled_ahead == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "the helper compiled nothing in 300 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(dev.counters().compiled_ahead >= 1);
    } else {
        assert_eq!(dev.counters().compiled_ahead, 0);
    }

    // Announced work creates its pipelines (and hands them to the helper) and records
    // nothing; the same work run afterwards is right.
    let (m2, k2, n2) = (72, 36, 20);
    let a2 = rng.vec(m2 * k2, -1.0, 1.0);
    let b2 = rng.vec(k2 * n2, -1.0, 1.0);
    let ta2 = Tensor::from_slice(&dev, &a2, &[m2, k2]).unwrap();
    let tb2 = Tensor::from_slice(&dev, &b2, &[k2, n2]).unwrap();
    dev.sync().unwrap();
    let before = dev.counters();
    let want = matmul_ref(&a, &b, m, k, n);
    let announced = dev.announce_pipelines(|| {
        // Another thread's work on the same device meanwhile runs as usual.
        std::thread::scope(|s| {
            s.spawn(|| {
                let got = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
                assert_close(&got, &want, 1e-5, 1e-5 * (k as f64).sqrt());
            });
        });
        ta2.matmul(&tb2).unwrap()
    });
    let after = dev.counters();
    // The other thread's product is the one dispatch recorded.
    assert_eq!(
        after.dispatches,
        before.dispatches + 1,
        "announcing recorded a dispatch"
    );
    assert!(
        after.pipelines > before.pipelines,
        "announcing created no pipeline"
    );
    drop(announced);
    if expected {
        let start = Instant::now();
        while dev.counters().compiled_ahead <= before.compiled_ahead {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "the announced pipeline never reached the helper"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let got = ta2.matmul(&tb2).unwrap().to_vec::<f32>().unwrap();
    assert!(dev.counters().dispatches > after.dispatches);
    assert_close(
        &got,
        &matmul_ref(&a2, &b2, m2, k2, n2),
        1e-5,
        1e-5 * (k2 as f64).sqrt(),
    );

    std::env::set_var("WGRAD_COMPILE_AHEAD", "0");
    let off = Device::new().unwrap();
    assert!(!off.compiles_ahead());
    let got = Tensor::from_slice(&off, &a, &[m, k])
        .unwrap()
        .matmul(&Tensor::from_slice(&off, &b, &[k, n]).unwrap())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_close(
        &got,
        &matmul_ref(&a, &b, m, k, n),
        1e-5,
        1e-5 * (k as f64).sqrt(),
    );
    assert_eq!(off.counters().compiled_ahead, 0);
}
