//! A process that ends while the adapter still runs queued work exits cleanly: a child
//! records and submits seconds of matmuls on the shared default device, then returns from
//! `main` without waiting; its exit status must be success, every time (a test binary once
//! died with SIGSEGV after all its tests had passed, when the software adapter's threads
//! outlived the process's teardown).
//!
//! A third kind of child exits while the compile-ahead helper (src/ahead.rs) is inside
//! LLVM: it records its first GEMMs on a fresh Mesa shader cache and returns at once.
//!
//! `harness = false`: with `WGRAD_EXIT_CHILD` set this binary is the child.

use std::process::Command;

use wgrad_tensor::Tensor;

const RUNS: usize = 12;
const MODES: [&str; 3] = ["shared", "dropped", "compiling"];

fn child(mode: &str) {
    if mode == "compiling" {
        let dev = wgrad_tensor::default_device().unwrap();
        // Three register-blocked products the cache has never seen (the parent gave this
        // child an empty one): the helper is compiling when main returns.
        let a = Tensor::from_slice(&dev, &vec![0.5f32; 192 * 192], &[192, 192]).unwrap();
        let c = a.matmul(&a).unwrap();
        let _ = a.matmul_with(
            &c,
            wgrad_tensor::MatmulOptions {
                transpose_a: true,
                ..Default::default()
            },
        );
        let _ = c.matmul_with(
            &a,
            wgrad_tensor::MatmulOptions {
                transpose_b: true,
                ..Default::default()
            },
        );
        dev.flush();
        // And a device of its own, dropped at once: its helper releases its device while
        // the process exits.
        let own = wgrad_tensor::Device::new().unwrap();
        let b = Tensor::from_slice(&own, &vec![0.25f32; 160 * 160], &[160, 160]).unwrap();
        let _ = b.matmul(&b).unwrap();
        own.flush();
        drop((b, own));
        println!("child returns");
        return;
    }
    let dropped = mode == "dropped";
    let dev = wgrad_tensor::default_device().unwrap();
    let n = 384;
    let a = Tensor::from_slice(&dev, &vec![0.5f32; n * n], &[n, n]).unwrap();
    let mut x = a.clone();
    for _ in 0..40 {
        x = x.matmul(&a).unwrap().mul_scalar(1.0 / n as f32).unwrap();
    }
    // Submitted, not waited for: the adapter is busy when main returns.
    dev.flush();
    if dropped {
        // Also the case of a device the program made itself and dropped while it works.
        let own = wgrad_tensor::Device::new().unwrap();
        let b = Tensor::from_slice(&own, &vec![0.5f32; n * n], &[n, n]).unwrap();
        let mut y = b.clone();
        for _ in 0..40 {
            y = y.matmul(&b).unwrap();
        }
        own.flush();
        drop((y, b, own));
    }
    println!("child returns");
}

fn main() {
    if let Ok(mode) = std::env::var("WGRAD_EXIT_CHILD") {
        child(&mode);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for run in 0..RUNS {
        let mode = MODES[run % MODES.len()];
        let cache = std::env::temp_dir().join(format!("wgrad-exit-{}-{run}", std::process::id()));
        let mut cmd = Command::new(&exe);
        cmd.env("WGRAD_EXIT_CHILD", mode);
        if mode == "compiling" {
            cmd.env("MESA_SHADER_CACHE_DIR", &cache);
        }
        let out = cmd.output().unwrap();
        let _ = std::fs::remove_dir_all(&cache);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("child returns"),
            "run {run} ({mode}): the child ended with {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("clean_exit: {RUNS} processes ended with work queued on the adapter, all cleanly");
}
