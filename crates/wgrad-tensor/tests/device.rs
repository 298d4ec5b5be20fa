//! The device machinery: command batching, buffer pool reuse, upload ordering, counters.

use wgrad_tensor::{DType, Device, Tensor};

/// A buffer freed while a recorded dispatch still reads it, then reused by an upload, must not
/// be overwritten before that dispatch runs.
#[test]
fn upload_into_a_reused_buffer_waits_for_pending_readers() {
    let dev = Device::new().unwrap();
    let a: Vec<f32> = (0..1000).map(|i| i as f32 - 500.0).collect();
    let b = vec![7.0f32; 1000];
    let before = dev.counters();
    let t1 = Tensor::from_slice(&dev, &a, &[1000]).unwrap();
    let y = t1.relu().unwrap();
    drop(t1);
    let t2 = Tensor::from_slice(&dev, &b, &[1000]).unwrap();
    assert_eq!(
        dev.memory_stats().buffers_created,
        2,
        "t2 must take t1's pooled buffer"
    );
    assert_eq!(
        dev.counters().submits,
        before.submits,
        "nothing is submitted before a readback"
    );
    let want: Vec<f32> = a.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(y.to_vec::<f32>().unwrap(), want);
    assert_eq!(t2.to_vec::<f32>().unwrap(), b);
}

#[test]
fn ops_record_without_round_trips_until_a_readback() {
    let dev = Device::new().unwrap();
    let x = Tensor::rand_uniform(&dev, &[64, 64], -1.0, 1.0, 3).unwrap();
    let c0 = dev.counters();
    let mut y = x.clone();
    for _ in 0..20 {
        y = y.matmul(&x).unwrap().tanh().unwrap().add(&x).unwrap();
    }
    let c1 = dev.counters();
    assert_eq!(c1.submits, c0.submits);
    assert_eq!(c1.readbacks, c0.readbacks);
    assert_eq!(c1.dispatches - c0.dispatches, 60);
    let v = y.sum(&[], false).unwrap().to_scalar().unwrap();
    assert!(v.is_finite());
    let c2 = dev.counters();
    assert_eq!(c2.readbacks - c1.readbacks, 1);
    assert_eq!(c2.submits - c1.submits, 1);
}

#[test]
fn long_batches_submit_on_their_own() {
    let dev = Device::new().unwrap();
    let x = Tensor::zeros(&dev, &[16], DType::F32).unwrap();
    let c0 = dev.counters();
    let mut y = x.clone();
    for _ in 0..(wgrad_tensor::MAX_BATCH + 10) {
        y = y.add_scalar(1.0).unwrap();
    }
    assert!(
        dev.counters().submits > c0.submits,
        "a full batch is submitted"
    );
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![(wgrad_tensor::MAX_BATCH + 10) as f32; 16]
    );
}

#[test]
fn the_pool_reuses_buffers_and_reports_memory() {
    let dev = Device::new().unwrap();
    let step = |dev: &Device| {
        let a = Tensor::ones(dev, &[256, 300], DType::F32).unwrap();
        let b = a.mul_scalar(2.0).unwrap().relu().unwrap();
        b.sum(&[], false).unwrap().to_scalar().unwrap()
    };
    assert_eq!(step(&dev), 2.0 * 256.0 * 300.0);
    let created = dev.memory_stats().buffers_created;
    for _ in 0..5 {
        step(&dev);
    }
    let st = dev.memory_stats();
    assert_eq!(
        st.buffers_created, created,
        "steady state allocates nothing new"
    );
    assert_eq!(st.in_use, 0, "every tensor was dropped");
    assert!(
        st.peak >= 2 * 256 * 300 * 4,
        "peak {} counts two live activations",
        st.peak
    );
    assert!(st.cached > 0);
    dev.clear_cache();
    assert_eq!(dev.memory_stats().cached, 0);
}

#[test]
fn reshape_is_a_view_and_checks_sizes() {
    let dev = wgrad_testkit::device();
    let t = Tensor::arange(&dev, 0.0, 12.0, 1.0).unwrap();
    let r = t.reshape(&[3, 4]).unwrap();
    assert!(r.shares_buffer(&t));
    assert_eq!(r.reshape(&[2, usize::MAX]).unwrap().shape(), &[2, 6]);
    assert_eq!(
        r.to_vec::<f32>().unwrap(),
        (0..12).map(|i| i as f32).collect::<Vec<_>>()
    );
    assert!(matches!(
        t.reshape(&[5, 2]),
        Err(wgrad_tensor::Error::Shape { .. })
    ));
}

#[test]
fn selection_by_name_filter_fails_with_a_typed_error() {
    match Device::open(Some("no adapter is called this")) {
        Err(wgrad_tensor::Error::NoAdapter { detail }) => {
            assert!(detail.contains("found"), "{detail}")
        }
        other => panic!("expected NoAdapter, got {other:?}"),
    }
}
