//! The one tolerance rule of the test suite, and the typed-error checks.

use wgrad_tensor::{Error, Result};

/// Asserts |got − want| ≤ atol + rtol·|want| elementwise (NaN must meet NaN, ±∞ the same
/// infinity), naming the case `ctx` and the first offending element.
#[track_caller]
pub fn close(ctx: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{ctx}: length mismatch (got {}, want {})",
        got.len(),
        want.len()
    );
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        assert!(
            within(g, w, rtol, atol),
            "{ctx}: element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// [`close`] for one value.
#[track_caller]
pub fn close_scalar(ctx: &str, got: f64, want: f64, rtol: f64, atol: f64) {
    assert!(
        within(got, want, rtol, atol),
        "{ctx}: got {got}, want {want} (rtol {rtol}, atol {atol})"
    );
}

/// [`close`] without a case name, for single-case tests.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    close("", got, want, rtol, atol)
}

fn within(g: f64, w: f64, rtol: f64, atol: f64) -> bool {
    if w.is_nan() {
        g.is_nan()
    } else if w.is_infinite() {
        g == w
    } else {
        (g - w).abs() <= atol + rtol * w.abs()
    }
}

/// The typed error a bad call must return.
#[track_caller]
pub fn is_shape<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(Error::Shape { .. })),
        "expected Error::Shape, got {r:?}"
    );
}

#[track_caller]
pub fn is_invalid<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "expected Error::InvalidArgument, got {r:?}"
    );
}

#[track_caller]
pub fn is_dtype<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(Error::Dtype { .. })),
        "expected Error::Dtype, got {r:?}"
    );
}
