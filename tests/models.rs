//! The model zoo against the reference parameter counts, and a forward/backward smoke check
//! of the residual network on a small image.

mod common;
use wgrad::graph::{ops, Var};
use wgrad::models::{lenet5, resnet18, resnet34};
use wgrad::nn::{Ctx, Layer};
use wgrad::Tensor;

#[test]
fn parameter_counts_match_the_references() {
    let dev = common::device();
    // Keras's summary of the seeds' ResNet-34 with a 10-class head (224×224×3; the count does
    // not depend on the image size, so a small image keeps the test light).
    let r34 = resnet34(&dev, [32, 32, 3], 10).unwrap();
    assert_eq!(r34.param_counts(), (21_289_802, 17_024));
    // ResNet-18 with a 1000-class head: 11,689,512 in torchvision (whose BN statistics are
    // buffers, not parameters): trainable here, moving statistics apart.
    let r18 = resnet18(&dev, [32, 32, 3], 1000).unwrap();
    let (tr, non) = r18.param_counts();
    assert_eq!(tr, 11_689_512);
    assert_eq!(
        non,
        2 * (64 + 2 * 2 * 64 + 4 * 128 + 4 * 256 + 4 * 512 + 128 + 256 + 512)
    );
    // LeNet-5 on 32×32×1: 156 + 2,416 + 48,120 + 10,164 + 850.
    assert_eq!(
        lenet5(&dev, [32, 32, 1], 10).unwrap().param_counts(),
        (61_706, 0)
    );
    // Building queued the weights' initialisation: let it finish before the process exits
    // (lavapipe's queue thread still running at exit once crashed this test binary).
    dev.sync().unwrap();
}

#[test]
fn resnet18_runs_forward_and_backward_on_a_small_image() {
    let dev = common::device();
    let mut m = resnet18(&dev, [16, 16, 3], 5).unwrap();
    assert_eq!(m.output_shape(), &[5]);
    let x = Var::new(Tensor::rand_uniform(&dev, &[2, 16, 16, 3], 0.0, 1.0, 3).unwrap());
    let y = m.forward(&x, &mut Ctx::new(true, 1)).unwrap();
    assert_eq!(y.shape(), &[2, 5]);
    ops::mean(&ops::square(&y).unwrap(), &[])
        .unwrap()
        .backward()
        .unwrap();
    let with_grad = m.params().iter().filter(|p| p.grad().is_some()).count();
    let trainable = m.params().iter().filter(|p| p.trainable()).count();
    assert_eq!(
        with_grad, trainable,
        "every trainable weight gets a gradient"
    );
    assert!(m
        .named_params()
        .iter()
        .any(|(n, _)| n == "residual_unit_2/skip/conv2d/kernel"));
    dev.sync().unwrap();
}
