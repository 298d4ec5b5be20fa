//! Reductions longer than lavapipe's loop limiter: Mesa 22.3 ends an invocation's loops after
//! 65,535 iterations in all, without an error, so a kernel that walks a long reduction on one
//! invocation returns a truncated result there (a 4.5M-long matmul gave 4,194,240 per output,
//! a 30,000-class softmax summed to 0.18). The launchers split such loops; these cases check
//! the results against f64 references on whatever adapter runs the tests.

use wgrad_tensor::Tensor;
use wgrad_testkit::{assert_close, device};

#[test]
fn a_matmul_with_millions_of_k_steps_sums_them_all() {
    let dev = device();
    let k = 4_500_000usize;
    let a: Vec<f32> = (0..k).map(|i| 0.5 + (i % 7) as f32 / 10.0).collect();
    let b: Vec<f32> = (0..k * 4).map(|i| 0.25 + (i % 5) as f32 / 8.0).collect();
    let mut want = vec![0f64; 4];
    for (p, &av) in a.iter().enumerate() {
        for (j, w) in want.iter_mut().enumerate() {
            *w += av as f64 * b[p * 4 + j] as f64;
        }
    }
    let ta = Tensor::from_slice(&dev, &a, &[1, k]).unwrap();
    let tb = Tensor::from_slice(&dev, &b, &[k, 4]).unwrap();
    let got = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
    assert_close(&got, &want, 1e-4, 0.0);
}

#[test]
fn softmax_over_tens_of_thousands_of_classes() {
    let dev = device();
    for n in [20_000usize, 70_001] {
        let x: Vec<f32> = (0..2 * n)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let t = Tensor::from_slice(&dev, &x, &[2, n]).unwrap();
        for log in [false, true] {
            let got = if log {
                t.log_softmax(-1)
            } else {
                t.softmax(-1)
            };
            let got = got.unwrap().to_vec::<f32>().unwrap();
            let mut want = Vec::with_capacity(2 * n);
            for row in x.chunks(n) {
                let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
                let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
                want.extend(row.iter().map(|&v| {
                    let z = v as f64 - m;
                    if log {
                        z - s.ln()
                    } else {
                        z.exp() / s
                    }
                }));
            }
            assert_close(&got, &want, 1e-4, 1e-7);
        }
    }
    dev.sync().unwrap();
}
