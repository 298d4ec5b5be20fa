//! `tf.image.resize` against TensorFlow: every case of `tests/data/resize.safetensors`
//! (bilinear, nearest, area, bicubic, antialiased bilinear; up- and down-sampling; the method,
//! size and antialias flag from the case metadata), and the typed errors.

use wgrad_tensor::{DType, ResizeMethod, Tensor};
use wgrad_testkit::{close, device, is_dtype, is_invalid, is_shape, oracle};

fn method(name: &str) -> ResizeMethod {
    match name {
        "bilinear" => ResizeMethod::Bilinear,
        "nearest" => ResizeMethod::Nearest,
        "area" => ResizeMethod::Area,
        "bicubic" => ResizeMethod::Bicubic,
        other => panic!("resize method {other:?} has no wgrad counterpart in this test"),
    }
}

#[test]
fn tensorflow_cases_agree() {
    let dev = device();
    let cases: Vec<_> = oracle::cases("resize")
        .into_iter()
        .filter(|c| c.has("input") && c.params.get("method").is_some())
        .collect();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let mut methods = std::collections::BTreeSet::new();
    for case in &cases {
        let (xs, xv) = case.get("input");
        let (ys, yv) = case.get("output");
        let size = case.pair("size");
        let m = method(case.str("method"));
        let aa = case.params["antialias"].as_bool().unwrap();
        let x = Tensor::from_slice(&dev, xv, xs).unwrap();
        let y = x.resize(size, m, aa).unwrap();
        assert_eq!(y.shape(), ys, "{}", case.name);
        let want: Vec<f64> = yv.iter().map(|&v| v as f64).collect();
        let got = y.to_vec::<f32>().unwrap();
        close(
            &format!("{} {:?}", case.name, case.params),
            &got,
            &want,
            1e-4,
            1e-5,
        );
        methods.insert(format!("{m:?}/{aa}"));
    }
    assert!(methods.len() >= 5, "{methods:?}");
    dev.sync().unwrap();
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dev = device();
    let x = Tensor::zeros(&dev, &[1, 4, 4, 3], DType::F32).unwrap();
    is_invalid(x.resize([0, 3], ResizeMethod::Bilinear, false));
    is_shape(Tensor::zeros(&dev, &[4, 4, 3], DType::F32).unwrap().resize(
        [2, 2],
        ResizeMethod::Area,
        false,
    ));
    is_dtype(
        Tensor::zeros(&dev, &[1, 4, 4, 3], DType::I32)
            .unwrap()
            .resize([2, 2], ResizeMethod::Nearest, false),
    );
    dev.sync().unwrap();
}

/// `keras.applications`' `preprocess_input` for the three conventions of the file's
/// `preprocess` metadata (family -> mode).
#[test]
fn keras_preprocess_input_agrees() {
    use wgrad_tensor::Preprocess;
    let dev = device();
    let case = oracle::cases("resize")
        .into_iter()
        .find(|c| c.name == "preprocess")
        .expect("the preprocess cases");
    let modes = case.params.as_object().unwrap();
    assert_eq!(modes.len(), 3);
    for (family, mode) in modes {
        let mode = match mode.as_str().unwrap() {
            "caffe" => Preprocess::Caffe,
            "tf" => Preprocess::Tf,
            "torch" => Preprocess::Torch,
            other => panic!("mode {other:?}"),
        };
        let (xs, xv) = case.get(&format!("{family}.input"));
        let (_, yv) = case.get(&format!("{family}.output"));
        let x = Tensor::from_slice(&dev, xv, xs).unwrap();
        let got = x.preprocess_input(mode).unwrap().to_vec::<f32>().unwrap();
        let want: Vec<f64> = yv.iter().map(|&v| v as f64).collect();
        wgrad_testkit::assert_close(&got, &want, 1e-5, 1e-4);
    }
    is_shape(
        Tensor::zeros(&dev, &[1, 2, 2, 4], DType::F32)
            .unwrap()
            .preprocess_input(Preprocess::Tf),
    );
}
