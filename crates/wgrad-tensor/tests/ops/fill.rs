//! Constant fills, ranges and `zeros_like`, for every dtype.

use crate::{close, down, up};
use half::f16;
use wgrad_tensor::{DType, Tensor};
use wgrad_testkit::device;

const SHAPES: [&[usize]; 5] = [&[], &[1], &[7], &[2, 3, 5], &[1031]];

#[test]
fn full_zeros_ones_for_every_dtype() {
    let d = device();
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        for (v, kind) in [(0.0, "zeros"), (1.0, "ones"), (-3.5, "full"), (2.0, "full")] {
            let make = |dtype| {
                match kind {
                    "zeros" => Tensor::zeros(&d, shape, dtype),
                    "ones" => Tensor::ones(&d, shape, dtype),
                    _ => Tensor::full(&d, shape, v, dtype),
                }
                .unwrap()
            };
            let ctx = format!("{kind}({v}) {shape:?}");
            let t = make(DType::F32);
            assert_eq!((t.shape(), t.dtype()), (shape, DType::F32), "{ctx}");
            assert_eq!(down(&t), vec![v as f32; n], "{ctx} f32");
            let t = make(DType::F16);
            assert_eq!((t.shape(), t.dtype()), (shape, DType::F16), "{ctx}");
            let h: Vec<u16> = t
                .to_vec::<f16>()
                .unwrap()
                .iter()
                .map(|h| h.to_bits())
                .collect();
            assert_eq!(h, vec![f16::from_f64(v).to_bits(); n], "{ctx} f16");
            let t = make(DType::I32);
            assert_eq!((t.shape(), t.dtype()), (shape, DType::I32), "{ctx}");
            assert_eq!(t.to_vec::<i32>().unwrap(), vec![v as i32; n], "{ctx} i32");
            let t = make(DType::U32);
            assert_eq!((t.shape(), t.dtype()), (shape, DType::U32), "{ctx}");
            assert_eq!(t.to_vec::<u32>().unwrap(), vec![v as u32; n], "{ctx} u32");
        }
    }
    let t = Tensor::full(&d, &[5], -7.0, DType::I32).unwrap();
    assert_eq!(t.to_vec::<i32>().unwrap(), [-7; 5]);
    let t = Tensor::full(&d, &[3], 4_000_000_000.0, DType::U32).unwrap();
    assert_eq!(t.to_vec::<u32>().unwrap(), [4_000_000_000; 3]);
    let t = Tensor::full(&d, &[3], 0.1, DType::F16).unwrap();
    assert_eq!(t.to_vec::<f16>().unwrap(), [f16::from_f64(0.1); 3]);
}

#[test]
fn arange_f32_matches_numpy() {
    let d = device();
    for (start, stop, step) in [
        (0.0f32, 10.0f32, 1.0f32),
        (0.0, 10.0, 0.5),
        (-3.0, 4.1, 0.7),
        (5.0, -3.0, -0.7),
        (1.0, 1.0, 1.0),
        (2.0, 1.0, 1.0),
        (0.25, 1031.0, 1.0),
    ] {
        let t = Tensor::arange(&d, start, stop, step).unwrap();
        let n = ((stop as f64 - start as f64) / step as f64).ceil().max(0.0) as usize;
        assert_eq!(t.shape(), &[n], "arange({start}, {stop}, {step})");
        let want: Vec<f64> = (0..n)
            .map(|i| start as f64 + i as f64 * step as f64)
            .collect();
        close(
            &format!("arange({start}, {stop}, {step})"),
            &down(&t),
            &want,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn arange_i32_matches_numpy() {
    let d = device();
    for (start, stop, step) in [
        (0, 10, 1),
        (-5, 17, 3),
        (10, -7, -4),
        (3, 3, 1),
        (4, 1, 2),
        (-1031, 0, 1),
    ] {
        let t = Tensor::arange_i32(&d, start, stop, step).unwrap();
        assert_eq!(t.dtype(), DType::I32);
        let want: Vec<i32> = if step > 0 {
            (start..stop).step_by(step as usize).collect()
        } else {
            (stop + 1..=start).rev().step_by((-step) as usize).collect()
        };
        assert_eq!(
            t.to_vec::<i32>().unwrap(),
            want,
            "arange_i32({start}, {stop}, {step})"
        );
    }
}

#[test]
fn zeros_like_takes_shape_dtype_and_device() {
    // A recycled pool buffer with garbage in it must still come back zeroed.
    let garbage: Vec<i32> = (0..105).map(|i| i * 7 - 300).collect();
    drop(up(&garbage, &[3, 5, 7]));
    let t = up(&garbage, &[3, 5, 7]);
    let z = t.zeros_like().unwrap();
    assert_eq!((z.shape(), z.dtype()), (&[3usize, 5, 7][..], DType::I32));
    assert!(z.device() == t.device());
    assert_eq!(z.to_vec::<i32>().unwrap(), vec![0; 105]);
    let h = up(&[f16::from_f32(3.0); 5], &[5]);
    let z = h.zeros_like().unwrap();
    assert_eq!(z.dtype(), DType::F16);
    assert_eq!(z.to_vec::<f16>().unwrap(), vec![f16::ZERO; 5]);
    let o = up(&[9.0f32; 3], &[3]).ones_like().unwrap();
    assert_eq!(down(&o), [1.0; 3]);
}
