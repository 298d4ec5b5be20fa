//! Every bad input returns its typed error, never a panic or a GPU fault.

use crate::up;
use wgrad_tensor::{DType, Device, Error, ReduceOp, Tensor};
use wgrad_testkit::device;

fn f(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    up(&vec![1.0f32; n], shape)
}

#[track_caller]
fn shape_err(r: wgrad_tensor::Result<Tensor>, op: &str) {
    match r {
        Err(Error::Shape { op: o, .. }) => assert_eq!(o, op),
        other => panic!("expected Error::Shape from {op}, got {other:?}"),
    }
}

#[track_caller]
fn invalid(r: wgrad_tensor::Result<Tensor>, op: &str) {
    match r {
        Err(Error::InvalidArgument { op: o, .. }) => assert_eq!(o, op),
        other => panic!("expected Error::InvalidArgument from {op}, got {other:?}"),
    }
}

#[track_caller]
fn dtype_err(r: wgrad_tensor::Result<Tensor>, got: DType) {
    match r {
        Err(Error::Dtype { got: g, .. }) => assert_eq!(g, got),
        other => panic!("expected Error::Dtype, got {other:?}"),
    }
}

#[test]
fn broadcast_mismatch_is_a_shape_error() {
    shape_err(f(&[2, 3]).add(&f(&[3, 2])), "binary");
    shape_err(f(&[4]).lt(&f(&[3])), "binary");
    shape_err(f(&[2, 3, 4]).mul(&f(&[2, 4])), "binary");
    let mask = up(&[1u32, 0], &[2]);
    shape_err(mask.where_(&f(&[3]), &f(&[1])), "where");
    match f(&[2, 3]).add(&f(&[3, 2])) {
        Err(Error::Shape { shapes, .. }) => assert_eq!(shapes, vec![vec![2, 3], vec![3, 2]]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_dtype_is_a_dtype_error() {
    let i = up(&[1i32, 2, 3], &[3]);
    let u = up(&[1u32, 2, 3], &[3]);
    dtype_err(i.add(&f(&[3])), DType::I32);
    dtype_err(f(&[3]).add(&i), DType::I32);
    dtype_err(i.relu(), DType::I32);
    dtype_err(u.exp(), DType::U32);
    dtype_err(i.sum(&[], false), DType::I32);
    dtype_err(i.softmax(-1), DType::I32);
    dtype_err(f(&[3]).where_(&f(&[3]), &f(&[3])), DType::F32);
    dtype_err(u.where_(&i, &f(&[3])), DType::I32);
    dtype_err(Tensor::concat(&[&f(&[3]), &i], 0), DType::I32);
    match f(&[3]).to_vec::<i32>() {
        Err(Error::Dtype { got, .. }) => assert_eq!(got, DType::F32),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tensors_of_two_devices_do_not_mix() {
    let other = Device::new().unwrap();
    assert!(other != device());
    let b = Tensor::from_slice(&other, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let a = f(&[3]);
    let mismatch = |r: wgrad_tensor::Result<Tensor>| match r {
        Err(Error::DeviceMismatch { .. }) => {}
        other => panic!("expected Error::DeviceMismatch, got {other:?}"),
    };
    mismatch(a.add(&b));
    mismatch(b.sub(&a));
    mismatch(Tensor::concat(&[&a, &b], 0));
    mismatch(up(&[1u32, 0, 1], &[3]).where_(&a, &b));
    // The second device works on its own.
    assert_eq!(b.add(&b).unwrap().to_vec::<f32>().unwrap(), [2.0, 4.0, 6.0]);
}

#[test]
fn oversized_tensor_is_refused_before_allocating() {
    // A private device, so no other test's allocations move its counters.
    let d = Device::new().unwrap();
    let before = d.memory_stats();
    let limit = d.max_tensor_bytes();
    let elems = (limit / 4 + 1) as usize;
    for shape in [&[elems][..], &[1 << 20, 1 << 20]] {
        match Tensor::zeros(&d, shape, DType::F32) {
            Err(Error::TooLarge {
                bytes, limit: l, ..
            }) => {
                assert!(bytes > l);
                assert_eq!(l, limit);
            }
            other => panic!("expected Error::TooLarge for {shape:?}, got {other:?}"),
        }
    }
    assert_eq!(
        d.memory_stats(),
        before,
        "a refused tensor must not allocate"
    );
    // Halves take two bytes each: the limit counts bytes, not elements.
    let at_limit = (limit / 2) as usize;
    match Tensor::zeros(&d, &[at_limit + 2], DType::F16) {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("expected Error::TooLarge, got {other:?}"),
    }
}

#[test]
fn wrong_data_length() {
    let d = device();
    match Tensor::from_slice(&d, &[1.0f32, 2.0, 3.0], &[2, 2]) {
        Err(Error::DataLength { len, expected, .. }) => assert_eq!((len, expected), (3, 4)),
        other => panic!("expected Error::DataLength, got {other:?}"),
    }
    match Tensor::from_slice::<i32>(&d, &[], &[]) {
        Err(Error::DataLength { len, expected, .. }) => assert_eq!((len, expected), (0, 1)),
        other => panic!("expected Error::DataLength, got {other:?}"),
    }
}

#[test]
fn bad_axes() {
    let t = f(&[2, 3, 4]);
    invalid(t.sum(&[3], false), "reduce");
    invalid(t.sum(&[-4], false), "reduce");
    invalid(t.max(&[1, -2], false), "reduce");
    invalid(t.argmax(5, false), "reduce");
    invalid(t.softmax(3), "softmax");
    invalid(t.log_softmax(-4), "log_softmax");
    invalid(t.transpose(0, 3), "transpose");
    invalid(t.slice(-4, 0, 1), "slice");
    invalid(Tensor::concat(&[&t, &t], 3), "concat");
    invalid(Tensor::concat(&[], 0), "concat");
}

#[test]
fn arg_reductions_take_one_axis() {
    let t = f(&[2, 3, 4]);
    invalid(t.reduce(ReduceOp::ArgMax, &[0, 1], false), "reduce");
    invalid(t.reduce(ReduceOp::ArgMin, &[1, 2], true), "reduce");
    invalid(t.reduce(ReduceOp::ArgMax, &[], false), "reduce");
}

#[test]
fn bad_permutations() {
    let t = f(&[2, 3, 4]);
    invalid(t.permute(&[0, 1]), "permute");
    invalid(t.permute(&[0, 1, 1]), "permute");
    invalid(t.permute(&[0, 1, 3]), "permute");
    invalid(t.permute(&[0, 1, 2, 3]), "permute");
    shape_err(f(&[5]).t(), "t");
}

#[test]
fn slice_out_of_range() {
    let t = f(&[2, 3, 4]);
    invalid(t.slice(1, 0, 4), "slice");
    invalid(t.slice(2, 3, 2), "slice");
    invalid(t.slice(0, 3, 3), "slice");
}

#[test]
fn concat_with_mismatched_extents() {
    shape_err(Tensor::concat(&[&f(&[2, 3]), &f(&[2, 4])], 0), "concat");
    shape_err(Tensor::concat(&[&f(&[2, 3]), &f(&[2, 3, 1])], 0), "concat");
}

#[test]
fn reshape_to_a_wrong_size() {
    let t = f(&[2, 3, 4]);
    shape_err(t.reshape(&[5, 5]), "reshape");
    shape_err(t.reshape(&[5, usize::MAX]), "reshape");
    invalid(t.reshape(&[usize::MAX, usize::MAX]), "reshape");
    assert_eq!(t.reshape(&[4, usize::MAX]).unwrap().shape(), &[4, 6]);
}

#[test]
fn bad_generator_and_range_arguments() {
    let d = device();
    invalid(Tensor::rand_uniform(&d, &[3], 1.0, 0.0, 1), "rand_uniform");
    invalid(
        Tensor::rand_uniform(&d, &[3], 0.0, f32::INFINITY, 1),
        "rand_uniform",
    );
    invalid(Tensor::rand_normal(&d, &[3], 0.0, -1.0, 1), "rand_normal");
    invalid(
        Tensor::rand_normal(&d, &[3], f32::NAN, 1.0, 1),
        "rand_normal",
    );
    invalid(Tensor::arange(&d, 0.0, 1.0, 0.0), "arange");
    invalid(Tensor::arange(&d, 0.0, f32::INFINITY, 1.0), "arange");
    invalid(Tensor::arange_i32(&d, 0, 1, 0), "arange_i32");
}

#[test]
fn rank_above_eight_is_refused() {
    shape_err(Tensor::zeros(&device(), &[1; 9], DType::F32), "full");
    shape_err(f(&[2, 3]).reshape(&[1, 1, 1, 1, 1, 1, 1, 2, 3]), "reshape");
}

#[test]
fn to_scalar_of_many_elements() {
    match f(&[2]).to_scalar() {
        Err(Error::Shape { op, .. }) => assert_eq!(op, "to_scalar"),
        other => panic!("expected Error::Shape, got {other:?}"),
    }
    assert_eq!(f(&[1, 1]).to_scalar().unwrap(), 1.0);
}
