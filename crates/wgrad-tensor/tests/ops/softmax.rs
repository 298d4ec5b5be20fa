//! Softmax and log-softmax along any axis, against the f64 max-shifted formula.

use crate::{close, down, numel, strides_of, up};
use wgrad_testkit::Rng;

/// (softmax, log_softmax) along `axis` of `shape`, in f64.
fn softmax_ref(x: &[f32], shape: &[usize], axis: usize) -> (Vec<f64>, Vec<f64>) {
    let st = strides_of(shape);
    let k = shape[axis];
    let mut sm = vec![0f64; x.len()];
    let mut lsm = vec![0f64; x.len()];
    for start in 0..x.len() {
        // Visit each row once, from its first element.
        if !(start / st[axis]).is_multiple_of(k) {
            continue;
        }
        let at = |j: usize| start + j * st[axis];
        let m = (0..k)
            .map(|j| x[at(j)] as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = (0..k).map(|j| (x[at(j)] as f64 - m).exp()).sum();
        for j in 0..k {
            let v = x[at(j)] as f64 - m;
            sm[at(j)] = v.exp() / s;
            lsm[at(j)] = v - s.ln();
        }
    }
    (sm, lsm)
}

fn check(x: &[f32], shape: &[usize], axis: isize) {
    let ax = if axis < 0 {
        (axis + shape.len() as isize) as usize
    } else {
        axis as usize
    };
    let (want_sm, want_lsm) = softmax_ref(x, shape, ax);
    let t = up(x, shape);
    let sm = t.softmax(axis).unwrap();
    let lsm = t.log_softmax(axis).unwrap();
    assert_eq!(sm.shape(), shape);
    assert_eq!(lsm.shape(), shape);
    let ctx = format!("{shape:?} along {axis}");
    let got_sm = down(&sm);
    let got_lsm = down(&lsm);
    assert!(
        got_sm.iter().chain(&got_lsm).all(|v| v.is_finite()),
        "{ctx}: non-finite"
    );
    close(&format!("softmax {ctx}"), &got_sm, &want_sm, 1e-5, 1e-6);
    close(
        &format!("log_softmax {ctx}"),
        &got_lsm,
        &want_lsm,
        1e-5,
        1e-5,
    );
}

#[test]
fn softmax_along_last_and_other_axes() {
    let mut rng = Rng::new(41);
    let cases: [(&[usize], &[isize]); 5] = [
        (&[4, 10], &[-1, 1, 0, -2]),
        (&[3, 5, 7], &[0, 1, 2, -1]),
        (&[1031], &[0, -1]),
        (&[2, 1, 3], &[1, 2]),
        (&[2, 3, 4, 5], &[0, 2, 3]),
    ];
    for (shape, axes) in cases {
        let x = rng.vec(numel(shape), -6.0, 6.0);
        for &axis in axes {
            check(&x, shape, axis);
        }
    }
}

#[test]
fn huge_logits_stay_finite() {
    let x = [
        1000.0f32, 0.0, -1000.0, 1000.0, 1000.0, 999.0, -1000.0, -1000.0, -999.0, 1e38, 0.0, -1e38,
    ];
    check(&x, &[4, 3], -1);
    check(&x, &[4, 3], 0);
    check(&x, &[2, 3, 2], 1);
    let got = down(&up(&x[..3], &[3]).softmax(0).unwrap());
    assert_eq!(got, [1.0, 0.0, 0.0]);
}

#[test]
fn softmax_of_a_scalar_is_one() {
    let t = up(&[42.0f32], &[]);
    assert_eq!(t.softmax(0).unwrap().shape(), &[] as &[usize]);
    assert_eq!(down(&t.softmax(-1).unwrap()), [1.0]);
    assert_eq!(down(&t.log_softmax(0).unwrap()), [0.0]);
}

#[test]
fn more_rows_than_one_grid_dimension_holds() {
    // 65,535 workgroups of 64 rows per grid dimension: past that the dispatch folds into a
    // second dimension and every kernel rebuilds its row index; rows of length 1 keep it cheap.
    let rows = 65_535 * 64 + 133;
    let x: Vec<f32> = (0..rows).map(|i| (i % 1000) as f32).collect();
    let t = up(&x, &[rows, 1]);
    let sm = down(&t.softmax(1).unwrap());
    assert!(sm.iter().all(|&v| v == 1.0), "some rows missed");
    let lsm = down(&t.log_softmax(-1).unwrap());
    assert!(lsm.iter().all(|&v| v == 0.0), "some rows missed");
}
