//! Reductions over single, multiple, negative and all axes, against f64 loops.

use crate::{close, down, numel, strides_of, unravel, up};
use wgrad_tensor::{ReduceOp, Tensor};
use wgrad_testkit::Rng;

/// Reference reduction of `x` (shape `shape`) over the resolved axes `ax`. Arg-reductions
/// return positions along their one axis, first on ties.
fn reduce_ref(
    op: ReduceOp,
    x: &[f32],
    shape: &[usize],
    ax: &[usize],
    keepdims: bool,
) -> (Vec<usize>, Vec<f64>) {
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !ax.contains(d)).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let ks = strides_of(&kept_shape);
    let n_out = numel(&kept_shape);
    let count: usize = ax.iter().map(|&d| shape[d]).product();
    let init = match op {
        ReduceOp::Max | ReduceOp::ArgMax => f64::NEG_INFINITY,
        ReduceOp::Min | ReduceOp::ArgMin => f64::INFINITY,
        _ => 0.0,
    };
    let mut acc = vec![init; n_out];
    let mut pos = vec![usize::MAX; n_out];
    for (i, &v) in x.iter().enumerate() {
        let idx = unravel(i, shape);
        let o: usize = kept.iter().zip(&ks).map(|(&d, &s)| idx[d] * s).sum();
        let v = v as f64;
        match op {
            ReduceOp::Sum | ReduceOp::Mean => acc[o] += v,
            ReduceOp::Max => acc[o] = acc[o].max(v),
            ReduceOp::Min => acc[o] = acc[o].min(v),
            ReduceOp::ArgMax | ReduceOp::ArgMin => {
                let better = if op == ReduceOp::ArgMax {
                    v > acc[o]
                } else {
                    v < acc[o]
                };
                if pos[o] == usize::MAX || better {
                    acc[o] = v;
                    pos[o] = idx[ax[0]];
                }
            }
        }
    }
    let vals = match op {
        ReduceOp::Mean => acc.iter().map(|s| s / count as f64).collect(),
        ReduceOp::ArgMax | ReduceOp::ArgMin => pos.iter().map(|&p| p as f64).collect(),
        _ => acc,
    };
    let out_shape = (0..shape.len())
        .filter_map(|d| {
            if ax.contains(&d) {
                keepdims.then_some(1)
            } else {
                Some(shape[d])
            }
        })
        .collect();
    (out_shape, vals)
}

fn resolve(axes: &[isize], rank: usize) -> Vec<usize> {
    if axes.is_empty() {
        return (0..rank).collect();
    }
    let mut v: Vec<usize> = axes
        .iter()
        .map(|&a| {
            if a < 0 {
                (a + rank as isize) as usize
            } else {
                a as usize
            }
        })
        .collect();
    v.sort_unstable();
    v
}

fn check(op: ReduceOp, x: &[f32], shape: &[usize], axes: &[isize], keepdims: bool) {
    let t = up(x, shape).reduce(op, axes, keepdims).unwrap();
    let (want_shape, want) = reduce_ref(op, x, shape, &resolve(axes, shape.len()), keepdims);
    let ctx = format!("{op:?} of {shape:?} over {axes:?}, keepdims {keepdims}");
    assert_eq!(t.shape(), &want_shape[..], "{ctx}");
    match op {
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            let got = t.to_vec::<u32>().unwrap();
            let want: Vec<u32> = want.iter().map(|&p| p as u32).collect();
            assert_eq!(got, want, "{ctx}");
        }
        _ => close(&ctx, &down(&t), &want, 1e-5, 1e-5),
    }
}

const OPS: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min];

#[test]
fn reductions_over_axis_sets() {
    let mut rng = Rng::new(31);
    let shape = [5, 7, 3];
    let x = rng.vec(numel(&shape), -2.0, 2.0);
    let axis_sets: [&[isize]; 12] = [
        &[0],
        &[1],
        &[2],
        &[-1],
        &[-3],
        &[0, 1],
        &[1, 2],
        &[0, 2],
        &[2, 0],
        &[-1, 0],
        &[0, 1, 2],
        &[],
    ];
    for op in OPS {
        for axes in axis_sets {
            for keepdims in [false, true] {
                check(op, &x, &shape, axes, keepdims);
            }
        }
    }
    let shape = [3, 2, 5, 4];
    let x = rng.vec(numel(&shape), -2.0, 2.0);
    for op in OPS {
        for axes in [&[1, 3][..], &[0, 2, 3], &[0, 3], &[-2, -4]] {
            check(op, &x, &shape, axes, false);
            check(op, &x, &shape, axes, true);
        }
    }
}

#[test]
fn reductions_with_long_axes_take_several_passes() {
    let mut rng = Rng::new(32);
    // K above the split threshold, with one and several outputs, and a reduced run in the
    // middle; the last three keep wider rows (a convolution's bias gradient sums [N·H·W, C]).
    for shape in [
        [1usize, 4099, 1],
        [3, 1000, 1],
        [2, 700, 3],
        [1, 4099, 8],
        [2, 700, 12],
        [1, 2000, 64],
    ] {
        let x = rng.vec(numel(&shape), -1.0, 1.0);
        for op in OPS {
            check(op, &x, &shape, &[1], false);
        }
        check(ReduceOp::Sum, &x, &shape, &[], true);
    }
}

#[test]
fn arg_reductions_on_every_axis_with_ties() {
    let mut rng = Rng::new(33);
    // Small integers make ties common, so the first-index rule is exercised.
    for shape in [
        &[5usize, 7, 3][..],
        &[13],
        &[3, 1000],
        &[2, 300, 3],
        &[1, 1],
    ] {
        let x: Vec<f32> = rng
            .vec(numel(shape), 0.0, 4.0)
            .iter()
            .map(|v| v.floor())
            .collect();
        for op in [ReduceOp::ArgMax, ReduceOp::ArgMin] {
            for axis in 0..shape.len() as isize {
                check(op, &x, shape, &[axis], false);
                check(op, &x, shape, &[axis - shape.len() as isize], true);
            }
        }
    }
    // All equal: position 0 wins, also across the partial results of a split pass.
    let ones = vec![1.0f32; 5000];
    let t = up(&ones, &[5000]);
    assert_eq!(t.argmax(0, false).unwrap().to_vec::<u32>().unwrap(), [0]);
    assert_eq!(t.argmin(-1, false).unwrap().to_vec::<u32>().unwrap(), [0]);
}

#[test]
fn million_element_reductions() {
    let n = 1_000_003;
    let mut rng = Rng::new(34);
    let mut x = rng.vec(n, 0.0, 1.0);
    let t = up(&x, &[n]);
    let want: f64 = x.iter().map(|&v| v as f64).sum();
    // f32 partial sums of ~64 terms, then ~15k partials: relative error well under 1e-5.
    close(
        "sum of 1M",
        &[t.sum(&[], false).unwrap().to_scalar().unwrap()],
        &[want],
        1e-5,
        0.0,
    );
    close(
        "mean of 1M",
        &[t.mean(&[0], false).unwrap().to_scalar().unwrap()],
        &[want / n as f64],
        1e-5,
        0.0,
    );
    // Planted extremes, twice each: the first position must win.
    x[777_777] = 2.0;
    x[900_001] = 2.0;
    x[123_457] = -1.0;
    x[999_999] = -1.0;
    let t = up(&x, &[n]);
    assert_eq!(t.max(&[], false).unwrap().to_scalar().unwrap(), 2.0);
    assert_eq!(t.min(&[0], false).unwrap().to_scalar().unwrap(), -1.0);
    assert_eq!(
        t.argmax(0, false).unwrap().to_vec::<u32>().unwrap(),
        [777_777]
    );
    assert_eq!(
        t.argmin(0, false).unwrap().to_vec::<u32>().unwrap(),
        [123_457]
    );
}

#[test]
fn scalar_and_unit_reductions() {
    let s = up(&[3.5f32], &[]);
    assert_eq!(down(&s.sum(&[], false).unwrap()), [3.5]);
    assert_eq!(s.sum(&[], true).unwrap().shape(), &[] as &[usize]);
    let x = [1.5f32, -2.0, 4.0];
    let t = up(&x, &[1, 3, 1]);
    check(ReduceOp::Sum, &x, &[1, 3, 1], &[0], true);
    check(ReduceOp::Max, &x, &[1, 3, 1], &[2], false);
    assert_eq!(t.mean(&[], true).unwrap().shape(), &[1, 1, 1]);
}

fn variance_ref(
    x: &[f32],
    shape: &[usize],
    ax: &[usize],
    keepdims: bool,
) -> (Vec<usize>, Vec<f64>) {
    let (mshape, mean) = reduce_ref(ReduceOp::Mean, x, shape, ax, true);
    let ms = strides_of(&mshape);
    let mut sq = vec![0f64; mean.len()];
    for (i, &v) in x.iter().enumerate() {
        let idx = unravel(i, shape);
        let o: usize = (0..shape.len())
            .map(|d| if ax.contains(&d) { 0 } else { idx[d] * ms[d] })
            .sum();
        sq[o] += (v as f64 - mean[o]).powi(2);
    }
    let count: usize = ax.iter().map(|&d| shape[d]).product();
    let out_shape = reduce_ref(ReduceOp::Mean, x, shape, ax, keepdims).0;
    (out_shape, sq.iter().map(|s| s / count as f64).collect())
}

#[test]
fn biased_variance() {
    let mut rng = Rng::new(35);
    let shape = [6, 7, 5];
    // An offset mean: E[x^2] - E[x]^2 would lose most digits here.
    let x: Vec<f32> = rng
        .vec(numel(&shape), -1.0, 1.0)
        .iter()
        .map(|v| v + 100.0)
        .collect();
    for axes in [&[0isize][..], &[1], &[-1], &[0, 2], &[]] {
        for keepdims in [false, true] {
            let t = up(&x, &shape).variance(axes, keepdims).unwrap();
            let (ws, want) = variance_ref(&x, &shape, &resolve(axes, 3), keepdims);
            assert_eq!(t.shape(), &ws[..]);
            close(
                &format!("variance over {axes:?}"),
                &down(&t),
                &want,
                1e-4,
                1e-6,
            );
        }
    }
}

#[test]
fn reductions_of_a_permuted_input() {
    // The reduce launcher permutes non-contiguous axes itself; feed it an already permuted
    // tensor too, so both copies are covered.
    let mut rng = Rng::new(36);
    let x = rng.vec(4 * 3 * 5, -1.0, 1.0);
    let t: Tensor = up(&x, &[4, 3, 5]).permute(&[2, 0, 1]).unwrap();
    let xp: Vec<f32> = (0..60)
        .map(|i| {
            let [k, a, b] = unravel(i, &[5, 4, 3])[..] else {
                unreachable!()
            };
            x[a * 15 + b * 5 + k]
        })
        .collect();
    let got = down(&t.sum(&[0, 2], false).unwrap());
    let (_, want) = reduce_ref(ReduceOp::Sum, &xp, &[5, 4, 3], &[0, 2], false);
    close("sum of permuted", &got, &want, 1e-5, 1e-5);
}

#[test]
fn empty_reductions() {
    let d = wgrad_testkit::device();
    let e = Tensor::zeros(&d, &[0, 3], wgrad_tensor::DType::F32).unwrap();
    // NumPy: the sum over nothing is 0; the max over nothing has no value.
    let s = e.sum(&[0], false).unwrap();
    assert_eq!(s.shape(), &[3]);
    assert_eq!(down(&s), [0.0; 3]);
    let s = e.sum(&[1], true).unwrap();
    assert_eq!(s.shape(), &[0, 1]);
    assert!(down(&s).is_empty());
    assert!(matches!(
        e.max(&[0], false),
        Err(wgrad_tensor::Error::Shape { .. })
    ));
    assert!(matches!(
        e.argmax(0, false),
        Err(wgrad_tensor::Error::Shape { .. })
    ));
}
