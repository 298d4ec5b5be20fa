//! Training steps of the small CNNs on the default adapter, and the ops that dominate
//! them. Run: `cargo bench --bench training`.
//!
//! A step is forward + loss + backward + optimizer update + `sync()` on a fixed batch of 64
//! 28×28×1 images (uploads and data loading excluded; `examples/fashion_mnist.rs` and
//! `examples/mnist.rs` report the whole loop's images/second).

mod common;

use common::{adapter_line, median, timed};
use criterion::black_box;
use wgrad::models::{chollet_mnist, fashion_course};
use wgrad::nn::{Loss, Optimizer, Trainer};
use wgrad::MatmulOptions;
use wgrad::{Activation, Conv2dOptions, Device, Padding, Tensor, UnaryOp, Update};

const BATCH: usize = 64;

fn main() {
    let mut c = common::criterion();
    let dev = Device::new().expect("an adapter");
    let x = Tensor::rand_uniform(&dev, &[BATCH, 28, 28, 1], 0.0, 1.0, 1).unwrap();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 10).collect();
    let y = Tensor::from_slice(&dev, &labels, &[BATCH]).unwrap();
    let loss = Loss::sparse_categorical_crossentropy(true);
    let mut course = Trainer::new(
        fashion_course(&dev, 10, 0).unwrap(),
        Optimizer::adam(1e-3),
        loss,
    );
    let mut chollet = Trainer::new(
        chollet_mnist(&dev, 10, false, 0).unwrap(),
        Optimizer::rmsprop(1e-3),
        loss,
    );

    // The course model's costliest ops, on its own shapes.
    let w = Tensor::rand_uniform(&dev, &[3, 3, 1, 64], -0.3, 0.3, 2).unwrap();
    let o = Conv2dOptions::default();
    let h = x.conv2d(&w, o).unwrap();
    let (p, idx) = h.max_pool2d([2, 2], [2, 2], Padding::Valid).unwrap();
    let f = p.reshape(&[BATCH, 10816]).unwrap();
    let w1 = Tensor::rand_uniform(&dev, &[10816, 128], -0.02, 0.02, 3).unwrap();
    let z = f.matmul(&w1).unwrap();
    let (m1, m2) = (w1.zeros_like().unwrap(), w1.zeros_like().unwrap());
    let g1 = Tensor::rand_uniform(&dev, &[10816, 128], -1.0, 1.0, 4).unwrap();
    let adam = Update::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
        decay: 0.0,
    };
    let tb = MatmulOptions {
        transpose_b: true,
        ..Default::default()
    };
    let ta = MatmulOptions {
        transpose_a: true,
        ..Default::default()
    };
    dev.sync().unwrap();

    type Run<'a> = Box<dyn FnMut() + 'a>;
    let mut runs: Vec<(&str, Run)> = vec![
        (
            "course_train_step",
            Box::new(|| drop(course.train_step(&x, &y).unwrap())),
        ),
        (
            "chollet_train_step",
            Box::new(|| drop(chollet.train_step(&x, &y).unwrap())),
        ),
        (
            "conv3x3_1to64_fwd",
            Box::new(|| drop(black_box(x.conv2d(&w, o).unwrap()))),
        ),
        (
            "conv3x3_1to64_dw",
            Box::new(|| drop(black_box(x.conv2d_backward_filter(&h, [3, 3], o).unwrap()))),
        ),
        (
            "relu_bwd_26x26x64",
            Box::new(|| {
                drop(black_box(
                    h.unary_backward(UnaryOp::Act(Activation::Relu), &h, &h)
                        .unwrap(),
                ))
            }),
        ),
        (
            "maxpool2_fwd",
            Box::new(|| {
                drop(black_box(
                    h.max_pool2d([2, 2], [2, 2], Padding::Valid).unwrap(),
                ))
            }),
        ),
        (
            "maxpool2_bwd",
            Box::new(|| {
                drop(black_box(
                    p.max_pool2d_backward(&idx, h.shape(), [2, 2], [2, 2], Padding::Valid)
                        .unwrap(),
                ))
            }),
        ),
        (
            "dense_10816x128_fwd",
            Box::new(|| drop(black_box(f.matmul(&w1).unwrap()))),
        ),
        (
            "dense_10816x128_dx",
            Box::new(|| drop(black_box(z.matmul_with(&w1, tb).unwrap()))),
        ),
        (
            "dense_10816x128_dw",
            Box::new(|| drop(black_box(f.matmul_with(&z, ta).unwrap()))),
        ),
        (
            "transpose_43264x64",
            Box::new(|| drop(black_box(h.reshape(&[43264, 64]).unwrap().t().unwrap()))),
        ),
        (
            "adam_1.38M",
            Box::new(|| {
                drop(black_box(
                    w1.optimizer_update(&g1, &[&m1, &m2], adam).unwrap(),
                ))
            }),
        ),
    ];

    let mut group = c.benchmark_group("training");
    for (name, f) in runs.iter_mut() {
        let key = name.to_string();
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                timed(&key, iters, || {
                    f();
                    dev.sync().unwrap();
                })
            })
        });
    }
    group.finish();

    println!("\n{}", adapter_line(&dev));
    println!("batch {BATCH} of 28x28x1 (median of samples)");
    println!("{:<24} {:>10} {:>10}", "what", "ms", "img/s");
    for (name, _) in &runs {
        let t = median(name).unwrap_or(f64::NAN);
        let rate = if name.ends_with("train_step") {
            format!("{:.0}", BATCH as f64 / t)
        } else {
            String::new()
        };
        println!("{name:<24} {:>10.2} {:>10}", t * 1e3, rate);
    }
    let course_step = &mut runs[0].1;
    common::profile_once(&dev, "course train step", course_step);
    c.final_summary();
}
