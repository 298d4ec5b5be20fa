//! Kernel choices by measurement (src/tune.rs): a split-K product's slice count is timed at
//! its first use, kept in `$WGRAD_CACHE_DIR/tune.json` under this adapter's key, read back by
//! a later device instead of timing again, and left to the heuristic under `WGRAD_TUNE=0`.
//! Whatever is chosen, the product is the same. One test, because it sets the process's
//! environment.

use wgrad_tensor::{Device, Tensor};
use wgrad_testkit::{assert_close, matmul_ref, Rng};

/// A dense layer's forward at a small batch: too few output blocks, so K is split.
const M: usize = 8;
const K: usize = 8192;
const N: usize = 16;

fn product(dev: &Device, a: &[f32], b: &[f32]) -> Vec<f32> {
    let ta = Tensor::from_slice(dev, a, &[M, K]).unwrap();
    let tb = Tensor::from_slice(dev, b, &[K, N]).unwrap();
    ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap()
}

fn entries(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    match serde_json::from_str(&text).unwrap() {
        serde_json::Value::Object(m) => m,
        v => panic!("not a table: {v}"),
    }
}

#[test]
fn split_k_slices_are_timed_once_per_adapter_and_persisted() {
    let dir = std::env::temp_dir().join(format!("wgrad-tune-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("WGRAD_CACHE_DIR", &dir);
    std::env::remove_var("WGRAD_TUNE");
    let file = dir.join("tune.json");
    let mut rng = Rng::new(11);
    let a = rng.vec(M * K, -1.0, 1.0);
    let b = rng.vec(K * N, -1.0, 1.0);
    let want = matmul_ref(&a, &b, M, K, N);
    let tol = 1e-5 * (K as f64).sqrt();

    // First device: times the candidates, writes the file.
    let dev = Device::new().unwrap();
    assert_close(&product(&dev, &a, &b), &want, 1e-5, tol);
    assert_eq!(dev.counters().tuned, 1, "one shape timed");
    let table = entries(&file);
    assert_eq!(table.len(), 1, "one adapter: {table:?}");
    let (key, dev_entries) = table.iter().next().unwrap();
    assert!(key.contains(&dev.info().name), "{key}");
    let (what, rec) = dev_entries.as_object().unwrap().iter().next().unwrap();
    assert!(what.contains("[8, 8192] x [8192, 16]"), "{what}");
    let choice = rec["choice"].as_u64().unwrap();
    let times = rec["ms"].as_object().unwrap();
    assert!(times.len() >= 2, "a candidate set: {rec}");
    assert!(times.contains_key(&choice.to_string()), "{rec}");
    let fastest = times
        .iter()
        .min_by(|x, y| x.1.as_f64().unwrap().total_cmp(&y.1.as_f64().unwrap()))
        .unwrap();
    assert_eq!(fastest.0, &choice.to_string(), "the fastest wins: {rec}");
    // Same shape again on the same device: no second timing.
    assert_close(&product(&dev, &a, &b), &want, 1e-5, tol);
    assert_eq!(dev.counters().tuned, 1);

    // A second device (a later process, as far as the table knows) reads the choice.
    let again = Device::new().unwrap();
    assert_close(&product(&again, &a, &b), &want, 1e-5, tol);
    assert_eq!(again.counters().tuned, 0, "read from {}", file.display());

    // A damaged file is replaced, not trusted and not fatal.
    std::fs::write(&file, "{ not json").unwrap();
    let fresh = Device::new().unwrap();
    assert_close(&product(&fresh, &a, &b), &want, 1e-5, tol);
    assert_eq!(fresh.counters().tuned, 1);
    assert_eq!(entries(&file).len(), 1);

    // Tuning off: the heuristic's count, nothing timed, nothing written.
    std::fs::remove_file(&file).unwrap();
    std::env::set_var("WGRAD_TUNE", "0");
    let off = Device::new().unwrap();
    assert_close(&product(&off, &a, &b), &want, 1e-5, tol);
    assert_eq!(off.counters().tuned, 0);
    assert!(!file.exists());
    std::env::remove_var("WGRAD_TUNE");
    let _ = std::fs::remove_dir_all(&dir);
}
