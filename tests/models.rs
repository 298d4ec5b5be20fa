//! The model zoo against the reference parameter counts, and a forward/backward smoke check
//! of the residual network on a small image.

use wgrad::graph::{ops, Var};
use wgrad::models::{lenet5, resnet18, resnet34};
use wgrad::nn::{Ctx, Layer};
use wgrad::Tensor;

#[test]
fn parameter_counts_match_the_references() {
    let dev = wgrad_testkit::device();
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
    let dev = wgrad_testkit::device();
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

/// torchvision's state-dict keys of a ResNet with `blocks` basic units per stage, written out
/// from its module structure (conv1/bn1, layerN.i.conv1/bn1/conv2/bn2, downsample in the first
/// unit of stages 2-4, fc).
fn torchvision_keys(blocks: &[usize]) -> Vec<String> {
    let bn = |m: &str| {
        ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|w| format!("{m}.{w}"))
            .collect::<Vec<_>>()
    };
    let mut keys = vec!["conv1.weight".to_string()];
    keys.extend(bn("bn1"));
    for (s, &n) in blocks.iter().enumerate() {
        for i in 0..n {
            let p = format!("layer{}.{i}", s + 1);
            keys.push(format!("{p}.conv1.weight"));
            keys.extend(bn(&format!("{p}.bn1")));
            keys.push(format!("{p}.conv2.weight"));
            keys.extend(bn(&format!("{p}.bn2")));
            if i == 0 && s > 0 {
                keys.push(format!("{p}.downsample.0.weight"));
                keys.extend(bn(&format!("{p}.downsample.1")));
            }
        }
    }
    keys.extend(["fc.weight".to_string(), "fc.bias".to_string()]);
    keys.sort();
    keys
}

/// The torchvision-convention ResNets: the reference count, every weight mapped onto exactly
/// torchvision's keys, and a state dict in those names and layouts importing back.
#[test]
fn torchvision_resnets_map_onto_state_dict_keys() {
    use wgrad::models::{
        resnet18_pytorch, resnet34_pytorch, torchvision_resnet_name, RESNET18_BLOCKS,
        RESNET34_BLOCKS,
    };
    use wgrad::nn::{import_weights, predict, Import, WeightLayout};
    let dev = wgrad_testkit::device();
    let r34 = resnet34_pytorch(&dev, [32, 32, 3], 1000).unwrap();
    assert_eq!(r34.param_counts(), (21_797_672, 17_024));
    let mut mapped: Vec<String> = r34
        .named_params()
        .iter()
        .map(|(n, _)| torchvision_resnet_name(&RESNET34_BLOCKS, n))
        .collect();
    mapped.sort();
    assert_eq!(mapped, torchvision_keys(&RESNET34_BLOCKS));
    drop(r34);

    // ResNet-18's weights written as a torchvision state dict (OIHW kernels, [out, in] fc).
    let mut a = resnet18_pytorch(&dev, [32, 32, 3], 10).unwrap();
    let mut b = resnet18_pytorch(&dev, [32, 32, 3], 10).unwrap();
    let mut records: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (n, p) in a.named_params() {
        let v = p.value().to_vec::<f32>().unwrap();
        let (shape, data): (Vec<usize>, Vec<f32>) = match (p.layout(), p.shape()) {
            (WeightLayout::Conv, &[kh, kw, ci, co]) => {
                let mut d = vec![0f32; v.len()];
                for (k, x) in v.iter().enumerate() {
                    let (o, rest) = (k % co, k / co);
                    let (i, rest) = (rest % ci, rest / ci);
                    let (xw, yh) = (rest % kw, rest / kw);
                    d[((o * ci + i) * kh + yh) * kw + xw] = *x;
                }
                (vec![co, ci, kh, kw], d)
            }
            (WeightLayout::Dense, &[i, o]) => (
                vec![o, i],
                (0..o * i).map(|k| v[(k % i) * o + k / i]).collect(),
            ),
            (_, s) => (s.to_vec(), v),
        };
        let bytes = data.iter().flat_map(|f| f.to_le_bytes()).collect();
        records.push((torchvision_resnet_name(&RESNET18_BLOCKS, &n), shape, bytes));
    }
    let views: Vec<_> = records
        .iter()
        .map(|(n, s, d)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d);
            (n.clone(), view.unwrap())
        })
        .collect();
    let path = std::env::temp_dir().join(format!("wgrad-r18-{}.safetensors", std::process::id()));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    // Same seed, so b starts equal to a: scramble it, or the import would prove nothing.
    for (i, p) in b.params_mut().into_iter().enumerate() {
        p.set(Tensor::rand_uniform(&dev, p.shape(), 0.5, 1.0, 900 + i as u64).unwrap());
    }
    let rename = |n: &str| torchvision_resnet_name(&RESNET18_BLOCKS, n);
    import_weights(&mut b, &path, &Import::pytorch().rename(&rename)).unwrap();
    let _ = std::fs::remove_file(&path);
    let x = Tensor::rand_uniform(&dev, &[2, 32, 32, 3], 0.0, 1.0, 3).unwrap();
    let want = predict(&mut a, &x, 2).unwrap().to_vec::<f32>().unwrap();
    let got = predict(&mut b, &x, 2).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(want, got);
    assert!(want.iter().all(|v| v.is_finite()));
    dev.sync().unwrap();
}

/// ResNet inference folds every batch norm, and each unit's skip sum + ReLU, into the
/// convolutions' write-outs: same outputs as the layer-by-layer run with non-trivial
/// statistics, and the ResNet-18 batch runs in fewer dispatches.
#[test]
fn resnet_inference_folding_matches_the_layer_by_layer_run() {
    // Its own device: the dispatch counters must not see the other tests running in parallel.
    let dev = wgrad::Device::new().unwrap();
    let mut m = resnet18(&dev, [32, 32, 3], 10).unwrap();
    let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
    for (i, (p, n)) in m.params_mut().into_iter().zip(&names).enumerate() {
        let lo = match n.rsplit('/').next().unwrap() {
            "moving_variance" | "gamma" => 0.5,
            "moving_mean" | "beta" => -0.2,
            _ => continue,
        };
        p.set(Tensor::rand_uniform(&dev, p.shape(), lo, lo + 0.5, 300 + i as u64).unwrap());
    }
    let x = Tensor::rand_uniform(&dev, &[2, 32, 32, 3], 0.0, 1.0, 4).unwrap();
    let run = |m: &mut wgrad::nn::Functional, fold: bool| {
        wgrad::graph::no_grad(|| {
            let mut ctx = Ctx::new(false, 0);
            ctx.fold = fold;
            let d0 = dev.counters().dispatches;
            let y = m.forward(&Var::new(x.clone()), &mut ctx).unwrap();
            let d = dev.counters().dispatches - d0;
            (y.value().to_vec::<f32>().unwrap(), d)
        })
    };
    let (want, unfolded) = run(&mut m, false);
    run(&mut m, true);
    let (got, folded) = run(&mut m, true);
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    wgrad_testkit::assert_close(&got, &want, 1e-4, 1e-4);
    // 20 batch norms, 17 ReLUs after them or after the sums, 8 sums.
    assert!(
        folded + 40 <= unfolded,
        "folded {folded}, layer by layer {unfolded}"
    );
    dev.sync().unwrap();
}
