//! The device's Philox4x32-10 generator against a host implementation of the same algorithm.

use crate::{close, down};
use wgrad_tensor::Tensor;
use wgrad_testkit::device;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 as Random123 defines it, with a native 64-bit product.
fn philox(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for _ in 0..10 {
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// The 4 words of element block `b` for `seed` (counter (b, 0, 0, 0), key = seed's halves).
fn words(n: usize, seed: u64) -> Vec<u32> {
    (0..n.div_ceil(4))
        .flat_map(|b| philox([b as u32, 0, 0, 0], [seed as u32, (seed >> 32) as u32]))
        .take(n)
        .collect()
}

fn unit(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[test]
fn philox_known_answers() {
    // Random123's kat_vectors for philox4x32_10.
    assert_eq!(
        philox([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn uniform_is_bit_exact() {
    let d = device();
    for seed in [0u64, 42, 0x1234_5678_9abc_def0, u64::MAX] {
        for (low, high) in [(0.0f32, 1.0f32), (-2.0, 3.0), (10.0, 10.5)] {
            for n in [1usize, 3, 4, 7, 1031] {
                let got = down(&Tensor::rand_uniform(&d, &[n], low, high, seed).unwrap());
                for (i, (&g, w)) in got.iter().zip(words(n, seed)).enumerate() {
                    let u = unit(w);
                    // A driver may contract u * (high - low) + low into one fma; both roundings
                    // are the formula, nothing else is.
                    let plain = u * (high - low) + low;
                    let fused = u.mul_add(high - low, low);
                    assert!(
                        g.to_bits() == plain.to_bits() || g.to_bits() == fused.to_bits(),
                        "seed {seed}, [{low}, {high}), n {n}, element {i}: got {g}, want {plain}"
                    );
                }
            }
        }
    }
}

#[test]
fn normal_matches_host_box_muller() {
    let d = device();
    for seed in [0u64, 7, 0xdead_beef_0000_0001] {
        for (mean, std) in [(0.0f32, 1.0f32), (3.0, 0.5)] {
            for n in [1usize, 6, 8, 1031] {
                let got = down(&Tensor::rand_normal(&d, &[n], mean, std, seed).unwrap());
                let w = words(n.div_ceil(4) * 4, seed);
                let want: Vec<f64> = w
                    .chunks(4)
                    .flat_map(|c| {
                        let eps = 1.0 / 16_777_216.0;
                        let r0 = (-2.0 * (unit(c[0]) as f64 + eps).ln()).sqrt();
                        let r1 = (-2.0 * (unit(c[2]) as f64 + eps).ln()).sqrt();
                        let t0 = std::f64::consts::TAU * unit(c[1]) as f64;
                        let t1 = std::f64::consts::TAU * unit(c[3]) as f64;
                        [r0 * t0.cos(), r0 * t0.sin(), r1 * t1.cos(), r1 * t1.sin()]
                    })
                    .take(n)
                    .map(|z| z * std as f64 + mean as f64)
                    .collect();
                close(
                    &format!("normal seed {seed} n {n}"),
                    &got,
                    &want,
                    1e-5,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn seeds_decide_the_stream() {
    let d = device();
    let a = down(&Tensor::rand_uniform(&d, &[3, 5, 7], 0.0, 1.0, 9).unwrap());
    let b = down(&Tensor::rand_uniform(&d, &[3, 5, 7], 0.0, 1.0, 9).unwrap());
    let c = down(&Tensor::rand_uniform(&d, &[3, 5, 7], 0.0, 1.0, 10).unwrap());
    // The high half of the seed is part of the key too.
    let e = down(&Tensor::rand_uniform(&d, &[3, 5, 7], 0.0, 1.0, 9 | 1 << 32).unwrap());
    assert_eq!(a, b);
    assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 3);
    assert!(a.iter().zip(&e).filter(|(x, y)| x == y).count() < 3);
    let n1 = down(&Tensor::rand_normal(&d, &[101], 0.0, 1.0, 5).unwrap());
    let n2 = down(&Tensor::rand_normal(&d, &[101], 0.0, 1.0, 5).unwrap());
    let n3 = down(&Tensor::rand_normal(&d, &[101], 0.0, 1.0, 6).unwrap());
    assert_eq!(n1, n2);
    assert!(n1.iter().zip(&n3).filter(|(x, y)| x == y).count() < 3);
    // A prefix of a longer tensor is the shorter tensor: values depend on the index only.
    let long = down(&Tensor::rand_uniform(&d, &[1031], 0.0, 1.0, 9).unwrap());
    assert_eq!(&long[..a.len()], &a[..]);
}
