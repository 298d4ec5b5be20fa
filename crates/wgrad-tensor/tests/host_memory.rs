//! Host memory stays flat over many dispatches of the kernels a training step repeats. On
//! lavapipe a by-value copy of a uniform array inside a shader once grew the process by
//! ~180 KB per dispatch (55 MB over this loop); this test catches any kernel that regresses.
//! One test in its own binary, so no other test's allocations move the figure.

use wgrad_tensor::{DType, Tensor};

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn repeated_dispatches_do_not_grow_host_memory() {
    let dev = wgrad_testkit::device();
    let x = Tensor::rand_uniform(&dev, &[64, 784], -1.0, 1.0, 1).unwrap();
    let row = Tensor::ones(&dev, &[784], DType::F32).unwrap();
    let col = Tensor::ones(&dev, &[64, 1], DType::F32).unwrap();
    let step = |i: usize| {
        // Broadcasting binaries, a generic permute and a masked select: the strided kernels.
        let y = x.add(&row).unwrap().mul(&col).unwrap();
        let z = y
            .reshape(&[64, 28, 28])
            .unwrap()
            .permute(&[1, 0, 2])
            .unwrap();
        let m = x.gt(&col).unwrap();
        let _ = (z, m.where_(&x, &row).unwrap());
        dev.flush();
        if i.is_multiple_of(20) {
            dev.sync().unwrap();
        }
    };
    for i in 0..50 {
        step(i);
    }
    dev.sync().unwrap();
    let Some(before) = rss_kib() else {
        eprintln!("no /proc/self/status here: nothing to measure");
        return;
    };
    for i in 0..300 {
        step(i);
    }
    dev.sync().unwrap();
    let grown = rss_kib().unwrap() as i64 - before as i64;
    assert!(
        grown < 16 * 1024,
        "host memory grew {grown} KiB over 300 steps of strided kernels"
    );
}
