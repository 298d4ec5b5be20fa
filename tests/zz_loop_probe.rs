mod common;
use wgrad::Tensor;
#[test]
fn probe() {
    let dev = common::device();
    for k in [60_000usize, 70_000, 140_000, 300_000] {
        let a = vec![1.0f32; 2 * k];
        let b = vec![1.0f32; k * 4];
        let ta = Tensor::from_slice(&dev, &a, &[2, k]).unwrap();
        let tb = Tensor::from_slice(&dev, &b, &[k, 4]).unwrap();
        let c = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
        let s = Tensor::from_slice(&dev, &a, &[2 * k])
            .unwrap()
            .sum(&[], false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        println!("k {k}: matmul {:?} sum {:?}", &c[..2], s);
    }
}
