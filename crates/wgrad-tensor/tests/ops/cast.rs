//! Dtype conversions: f16 against the `half` crate bit for bit, integer conversions against
//! Rust's `as` (truncation toward zero, exact where representable).

use crate::up;
use half::f16;
use wgrad_tensor::DType;
use wgrad_testkit::Rng;

#[test]
fn f16_to_f32_for_every_bit_pattern() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    // Odd length too: the last word holds a single half.
    for n in [all.len(), all.len() - 1] {
        let got = up(&all[..n], &[n]).to_dtype(DType::F32).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        let got = got.to_vec::<f32>().unwrap();
        for (h, g) in all[..n].iter().zip(&got) {
            let w = h.to_f32();
            if w.is_nan() {
                assert!(g.is_nan(), "{:#06x}: got {g}", h.to_bits());
            } else {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{:#06x}: got {g}, want {w}",
                    h.to_bits()
                );
            }
        }
    }
}

#[test]
fn f32_to_f16_rounds_as_the_half_crate() {
    let mut rng = Rng::new(61);
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        -65504.0,
        6.1035156e-5,
        5.9604645e-8,
        -5.9604645e-8,
        // Halfway cases: ties go to the even neighbour.
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        2049.0,
        2051.0,
        0.1,
        1.0 / 3.0,
        // Just below and above f16's subnormal steps.
        1e-5,
        3e-8,
        9e-8,
        1e-4,
        // Past f16's range: 65519 still rounds down to the largest finite half, 65520 up to inf.
        65519.0,
        65520.0,
        -70000.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    // Random magnitudes over f16's whole finite range, both signs.
    for _ in 0..997 {
        let e = rng.uniform(-25.0, 15.9);
        let s = if rng.next_u64().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        x.push(s * 2f32.powf(e) * rng.uniform(1.0, 2.0) / 2.0);
    }
    for n in [x.len(), x.len() - 1, 1, 3, 4] {
        let t = up(&x[..n], &[n]).to_dtype(DType::F16).unwrap();
        assert_eq!(t.dtype(), DType::F16);
        assert_eq!(t.shape(), &[n]);
        let got = t.to_vec::<f16>().unwrap();
        for (i, (&v, g)) in x[..n].iter().zip(&got).enumerate() {
            let w = f16::from_f32(v);
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "element {i}: {v:e} gave {g}, want {w}"
            );
        }
    }
}

#[test]
fn f32_nan_to_f16_stays_nan() {
    let got = up(&[f32::NAN, 1.0, -f32::NAN], &[3])
        .to_dtype(DType::F16)
        .unwrap()
        .to_vec::<f16>()
        .unwrap();
    assert!(got[0].is_nan() && got[2].is_nan(), "{got:?}");
    assert_eq!(got[1], f16::ONE);
}

#[test]
fn f16_round_trip_through_f32_is_exact() {
    let finite: Vec<f16> = (0..=u16::MAX)
        .map(f16::from_bits)
        .filter(|h| h.is_finite())
        .step_by(7)
        .collect();
    for n in [finite.len(), finite.len() - 1] {
        let back = up(&finite[..n], &[n])
            .to_dtype(DType::F32)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
            .to_vec::<f16>()
            .unwrap();
        let want: Vec<u16> = finite[..n].iter().map(|h| h.to_bits()).collect();
        let got: Vec<u16> = back.iter().map(|h| h.to_bits()).collect();
        assert_eq!(got, want, "length {n}");
    }
}

#[test]
fn f32_to_i32_truncates_toward_zero() {
    let x = [
        0.0f32,
        -0.0,
        0.4,
        -0.4,
        0.5,
        -0.5,
        0.99,
        -0.99,
        1.0,
        -1.0,
        2.7,
        -2.7,
        123456.9,
        -123456.9,
        16777216.0,
        -2147483520.0,
        2147483520.0,
    ];
    let got = up(&x, &[x.len()]).to_dtype(DType::I32).unwrap();
    assert_eq!(got.dtype(), DType::I32);
    let want: Vec<i32> = x.iter().map(|&v| v as i32).collect();
    assert_eq!(got.to_vec::<i32>().unwrap(), want);
}

#[test]
fn integer_to_f32() {
    let i = [
        0i32,
        1,
        -1,
        7,
        -7,
        16_777_216,
        -16_777_216,
        16_777_217,
        -16_777_219,
        i32::MAX,
        i32::MIN,
    ];
    let got = up(&i, &[i.len()])
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = i.iter().map(|&v| v as f32).collect();
    assert_eq!(got, want, "i32 -> f32");
    let u = [
        0u32,
        1,
        7,
        16_777_217,
        2_147_483_648,
        4_000_000_001,
        u32::MAX,
    ];
    let got = up(&u, &[u.len()])
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = u.iter().map(|&v| v as f32).collect();
    assert_eq!(got, want, "u32 -> f32");
}

#[test]
fn f32_to_u32_truncates() {
    let x = [0.0f32, 0.3, 0.99, 1.0, 2.5, 1e6 + 0.5, 3e9, 16777217.0];
    let got = up(&x, &[x.len()]).to_dtype(DType::U32).unwrap();
    assert_eq!(got.dtype(), DType::U32);
    let want: Vec<u32> = x.iter().map(|&v| v as u32).collect();
    assert_eq!(got.to_vec::<u32>().unwrap(), want);
}

#[test]
fn i32_and_u32_reinterpret_bits() {
    let i = [0i32, 1, -1, 123, -123, i32::MIN, i32::MAX];
    let u = up(&i, &[7]).to_dtype(DType::U32).unwrap();
    assert_eq!(u.dtype(), DType::U32);
    let want: Vec<u32> = i.iter().map(|&v| v as u32).collect();
    assert_eq!(u.to_vec::<u32>().unwrap(), want);
    let back = u.to_dtype(DType::I32).unwrap();
    assert_eq!(back.to_vec::<i32>().unwrap(), i);
}

#[test]
fn f16_to_integers_go_through_f32() {
    let h: Vec<f16> = [-3.75f32, -0.5, 0.0, 2.5, 1000.9, 7.0, -7.0]
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let got = up(&h, &[7])
        .to_dtype(DType::I32)
        .unwrap()
        .to_vec::<i32>()
        .unwrap();
    let want: Vec<i32> = h.iter().map(|v| v.to_f32() as i32).collect();
    assert_eq!(got, want);
    let i = [-3i32, 0, 5, 2049, 65504];
    let got = up(&i, &[5])
        .to_dtype(DType::F16)
        .unwrap()
        .to_vec::<f16>()
        .unwrap();
    let want: Vec<u16> = i
        .iter()
        .map(|&v| f16::from_f32(v as f32).to_bits())
        .collect();
    assert_eq!(got.iter().map(|h| h.to_bits()).collect::<Vec<_>>(), want);
}

#[test]
fn same_dtype_is_a_no_op() {
    let t = up(&[1.0f32, 2.0], &[2]);
    let c = t.to_dtype(DType::F32).unwrap();
    assert!(c.shares_buffer(&t));
}
