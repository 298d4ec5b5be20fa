mod common;
use wgrad::Tensor;

#[test]
fn smoke() {
    let d = common::device();
    let a = Tensor::from_slice(&d, &[1.0f32, -2.0, 3.0, 4.0, 5.0], &[5]).unwrap();
    assert_eq!(
        a.relu().unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 0.0, 3.0, 4.0, 5.0]
    );
    let b = Tensor::from_slice(&d, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    for dev in common::strategies() {
        let b = Tensor::from_slice(&dev, &b.to_vec::<f32>().unwrap(), &[2, 2]).unwrap();
        assert_eq!(
            b.matmul(&b).unwrap().to_vec::<f32>().unwrap(),
            vec![7.0, 10.0, 15.0, 22.0]
        );
    }
    let s = Tensor::arange(&d, 0.0, 2_000_000.0, 1.0)
        .unwrap()
        .sum(&[], false)
        .unwrap()
        .to_scalar()
        .unwrap();
    println!("sum {s}");
}
