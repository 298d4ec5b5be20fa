//! Binary ops with NumPy broadcasting, comparison masks and `where_`.

use crate::{close, down, numel, strides_of, unravel, up};
use wgrad_tensor::{BinaryOp, DType, Tensor};
use wgrad_testkit::Rng;

/// NumPy broadcasting, written independently of `wgrad_tensor::shape::broadcast`.
fn bshape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; r - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (a, b) = (pad(a), pad(b));
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| {
            assert!(
                x == y || x == 1 || y == 1,
                "test bug: shapes do not broadcast"
            );
            x.max(y)
        })
        .collect()
}

/// Flat offset into a tensor of `shape` for output multi-index `idx` (right-aligned).
fn offset(shape: &[usize], idx: &[usize]) -> usize {
    let st = strides_of(shape);
    let off = idx.len() - shape.len();
    (0..shape.len())
        .map(|d| {
            if shape[d] == 1 {
                0
            } else {
                idx[off + d] * st[d]
            }
        })
        .sum()
}

fn binary_ref(op: BinaryOp, x: f64, y: f64) -> f64 {
    use BinaryOp::*;
    let b = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        Add => x + y,
        Sub => x - y,
        Mul => x * y,
        Div => x / y,
        // Rust's powf is C's pow, whose special cases NumPy shares.
        Pow => x.powf(y),
        Maximum => x.max(y),
        Minimum => x.min(y),
        Eq => b(x == y),
        Ne => b(x != y),
        Lt => b(x < y),
        Le => b(x <= y),
        Gt => b(x > y),
        Ge => b(x >= y),
    }
}

/// Operands for `op`: small integers for comparisons (so ties happen), non-zero divisors, and
/// for pow a mix of integral and fractional exponents over negative and positive bases.
fn operands(op: BinaryOp, na: usize, nb: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let mut a = rng.vec(na, -3.0, 3.0);
    let mut b = rng.vec(nb, -3.0, 3.0);
    if op.is_comparison() {
        a.iter_mut().for_each(|v| *v = v.round());
        b.iter_mut().for_each(|v| *v = v.round());
    }
    match op {
        BinaryOp::Div => b.iter_mut().for_each(|v| *v += 0.2f32.copysign(*v)),
        BinaryOp::Pow => {
            for (i, v) in b.iter_mut().enumerate() {
                if i.is_multiple_of(2) {
                    *v = v.round();
                }
            }
            // Keep bases away from zero: 0 to a negative power is an infinity whose sign
            // depends on -0.0, which no kernel input here produces on purpose.
            a.iter_mut().for_each(|v| *v += 0.1f32.copysign(*v));
        }
        _ => {}
    }
    (a, b)
}

fn run(op: BinaryOp, sa: &[usize], sb: &[usize], rng: &mut Rng) {
    let (a, b) = operands(op, numel(sa), numel(sb), rng);
    let out = up(&a, sa).binary(&up(&b, sb), op).unwrap();
    let shape = bshape(sa, sb);
    assert_eq!(out.shape(), &shape[..], "{op:?} {sa:?} {sb:?}");
    let want: Vec<f64> = (0..numel(&shape))
        .map(|i| {
            let idx = unravel(i, &shape);
            binary_ref(op, a[offset(sa, &idx)] as f64, b[offset(sb, &idx)] as f64)
        })
        .collect();
    let ctx = format!("{op:?} of {sa:?} and {sb:?}");
    if op.is_comparison() {
        assert_eq!(out.dtype(), DType::U32, "{ctx}");
        let got = out.to_vec::<u32>().unwrap();
        let want: Vec<u32> = want.iter().map(|&w| w as u32).collect();
        assert_eq!(got, want, "{ctx}");
    } else {
        assert_eq!(out.dtype(), DType::F32, "{ctx}");
        close(&ctx, &down(&out), &want, 1e-5, 1e-6);
    }
}

const CASES: [(&[usize], &[usize]); 14] = [
    (&[1], &[1]),
    (&[3], &[3]),
    (&[4], &[4]),
    (&[7], &[7]),
    (&[1031], &[1031]),
    (&[16, 16], &[16, 16]),
    (&[3, 1, 5], &[4, 5]),
    (&[4, 5], &[3, 1, 5]),
    (&[1], &[2, 3]),
    (&[2, 3], &[1]),
    (&[], &[2, 3]),
    (&[2, 3], &[]),
    (&[], &[]),
    (&[2, 3, 4], &[3, 1]),
];

#[test]
fn every_binary_op_with_broadcasting() {
    let mut rng = Rng::new(21);
    for op in BinaryOp::ALL {
        for (sa, sb) in CASES {
            run(op, sa, sb, &mut rng);
        }
    }
}

#[test]
fn broadcasting_at_higher_rank() {
    let mut rng = Rng::new(22);
    for op in [BinaryOp::Sub, BinaryOp::Div, BinaryOp::Lt] {
        run(op, &[2, 1, 3, 1, 5], &[7, 1, 4, 1], &mut rng);
        run(op, &[1, 6, 1], &[5, 1, 1, 9], &mut rng);
    }
}

#[test]
fn pow_follows_numpy_semantics() {
    let bases = [
        -2.0f32, -2.0, -2.0, -2.0, -0.5, 3.0, 0.0, 0.0, -4.0, 2.0, -1.0,
    ];
    let exps = [3.0f32, 2.0, 0.5, 0.0, -1.0, -2.0, 0.0, 2.0, 1.5, 0.0, -3.0];
    let want = [
        -8.0f64,
        4.0,
        f64::NAN,
        1.0,
        -2.0,
        1.0 / 9.0,
        1.0,
        0.0,
        f64::NAN,
        1.0,
        -1.0,
    ];
    let got = down(&up(&bases, &[11]).pow(&up(&exps, &[11])).unwrap());
    close("pow, scalar path", &got, &want, 1e-6, 0.0);
    // The same values through the vec4 path (length 8) and the broadcasting path.
    let got = down(&up(&bases[..8], &[8]).pow(&up(&exps[..8], &[8])).unwrap());
    close("pow, vec4 path", &got, &want[..8], 1e-6, 0.0);
    let got = down(
        &up(&[-2.0f32, 4.0, -0.25], &[3, 1])
            .pow(&up(&[2.0f32, 0.5, 0.0, -1.0], &[4]))
            .unwrap(),
    );
    let want = [
        4.0,
        f64::NAN,
        1.0,
        -0.5,
        16.0,
        2.0,
        1.0,
        0.25,
        0.0625,
        f64::NAN,
        1.0,
        -4.0,
    ];
    close("pow, broadcast", &got, &want, 1e-6, 0.0);
}

#[test]
fn comparisons_give_u32_masks_of_zero_and_one() {
    let a = up(&[1.0f32, 2.0, 3.0, f32::NAN, -0.0], &[5]);
    let b = up(&[2.0f32, 2.0, 2.0, 1.0, 0.0], &[5]);
    let m = |op| a.binary(&b, op).unwrap().to_vec::<u32>().unwrap();
    // NaN compares unequal to everything, as IEEE and NumPy; -0.0 == 0.0.
    assert_eq!(m(BinaryOp::Eq), [0, 1, 0, 0, 1]);
    assert_eq!(m(BinaryOp::Ne), [1, 0, 1, 1, 0]);
    assert_eq!(m(BinaryOp::Lt), [1, 0, 0, 0, 0]);
    assert_eq!(m(BinaryOp::Le), [1, 1, 0, 0, 1]);
    assert_eq!(m(BinaryOp::Gt), [0, 0, 1, 0, 0]);
    assert_eq!(m(BinaryOp::Ge), [0, 1, 1, 0, 1]);
}

fn where_ref(
    mask: &[u32],
    sm: &[usize],
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
) -> (Vec<usize>, Vec<f64>) {
    let shape = bshape(&bshape(sm, sa), sb);
    let v = (0..numel(&shape))
        .map(|i| {
            let idx = unravel(i, &shape);
            if mask[offset(sm, &idx)] != 0 {
                a[offset(sa, &idx)] as f64
            } else {
                b[offset(sb, &idx)] as f64
            }
        })
        .collect();
    (shape, v)
}

#[test]
fn where_picks_with_broadcasting() {
    let mut rng = Rng::new(23);
    let cases: [[&[usize]; 3]; 6] = [
        [&[7], &[7], &[7]],
        [&[8], &[8], &[8]],
        [&[3, 1], &[1, 4], &[2, 1, 1]],
        [&[2, 3, 4], &[], &[4]],
        [&[], &[5], &[2, 5]],
        [&[1, 5], &[3, 1], &[1]],
    ];
    for [sm, sa, sb] in cases {
        // Any non-zero word selects `on_true`, not only 1.
        let mask: Vec<u32> = (0..numel(sm))
            .map(|_| [0, 1, 0, 7, u32::MAX][(rng.next_u64() % 5) as usize])
            .collect();
        let a = rng.vec(numel(sa), -5.0, 5.0);
        let b = rng.vec(numel(sb), -5.0, 5.0);
        let got = up(&mask, sm).where_(&up(&a, sa), &up(&b, sb)).unwrap();
        let (shape, want) = where_ref(&mask, sm, &a, sa, &b, sb);
        assert_eq!(got.shape(), &shape[..]);
        close(
            &format!("where {sm:?} {sa:?} {sb:?}"),
            &down(&got),
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn where_with_a_mask_from_a_comparison() {
    let mut rng = Rng::new(24);
    let x = rng.vec(2 * 3 * 5, -1.0, 1.0);
    let t = up(&x, &[2, 3, 5]);
    let zero = Tensor::scalar(&wgrad_testkit::device(), 0.0).unwrap();
    // relu as where(x > 0, x, 0)
    let got = down(&t.gt(&zero).unwrap().where_(&t, &zero).unwrap());
    let want: Vec<f64> = x.iter().map(|&v| (v as f64).max(0.0)).collect();
    close("where(x > 0, x, 0)", &got, &want, 0.0, 0.0);
}

#[test]
fn empty_operands_give_empty_results() {
    let a = Tensor::zeros(&wgrad_testkit::device(), &[0, 3], DType::F32).unwrap();
    let b = up(&[1.0f32, 2.0, 3.0], &[3]);
    let s = a.add(&b).unwrap();
    assert_eq!(s.shape(), &[0, 3]);
    assert!(down(&s).is_empty());
    assert_eq!(a.lt(&b).unwrap().shape(), &[0, 3]);
}
