//! Fused optimizer updates (`shaders/optim.wgsl`) against an f64 reference of each rule,
//! three steps in a row so the slots carry over, on odd and vec4-sized lengths.

use wgrad_tensor::{DType, Tensor, Update};
use wgrad_testkit::{assert_close, Rng};

/// One step of `u` in f64: (new parameter, new slots).
fn reference(u: Update, w: &[f64], g: &[f64], slots: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = w.len();
    let mut out = vec![0.0; n];
    let mut s: Vec<Vec<f64>> = slots.to_vec();
    for i in 0..n {
        match u {
            Update::Sgd { lr, decay } => out[i] = w[i] * (1.0 - decay as f64) - lr as f64 * g[i],
            Update::SgdMomentum {
                lr,
                momentum,
                nesterov,
                decay,
            } => {
                let (wi, gi) = (w[i] * (1.0 - decay as f64), g[i]);
                let v = momentum as f64 * s[0][i] - lr as f64 * gi;
                s[0][i] = v;
                out[i] = if nesterov {
                    wi + momentum as f64 * v - lr as f64 * gi
                } else {
                    wi + v
                };
            }
            Update::RmsProp {
                lr,
                rho,
                epsilon,
                decay,
                momentum,
                centered,
            } => {
                let (gi, rho) = (g[i], rho as f64);
                let v = rho * s[0][i] + (1.0 - rho) * gi * gi;
                s[0][i] = v;
                let mut denom = v + epsilon as f64;
                if centered {
                    let mg = rho * s[1][i] + (1.0 - rho) * gi;
                    s[1][i] = mg;
                    denom -= mg * mg;
                }
                let increment = lr as f64 * gi / denom.sqrt();
                let wd = w[i] * (1.0 - decay as f64);
                out[i] = if momentum > 0.0 {
                    let k = s.len() - 1;
                    let m = momentum as f64 * s[k][i] + increment;
                    s[k][i] = m;
                    wd - m
                } else {
                    wd - increment
                };
            }
            Update::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                decay,
            } => {
                let m = beta1 as f64 * s[0][i] + (1.0 - beta1 as f64) * g[i];
                let v = beta2 as f64 * s[1][i] + (1.0 - beta2 as f64) * g[i] * g[i];
                s[0][i] = m;
                s[1][i] = v;
                out[i] = w[i] * (1.0 - decay as f64) - lr as f64 * m / (v.sqrt() + epsilon as f64);
            }
            Update::Nadam {
                lr,
                decay,
                beta1,
                beta2,
                epsilon,
                c1,
                c2,
                c3,
            } => {
                let m = beta1 as f64 * s[0][i] + (1.0 - beta1 as f64) * g[i];
                let v = beta2 as f64 * s[1][i] + (1.0 - beta2 as f64) * g[i] * g[i];
                s[0][i] = m;
                s[1][i] = v;
                let mhat = c1 as f64 * m + c2 as f64 * g[i];
                out[i] = w[i] * (1.0 - decay as f64)
                    - lr as f64 * mhat / ((c3 as f64 * v).sqrt() + epsilon as f64);
            }
        }
    }
    (out, s)
}

#[test]
fn every_rule_matches_the_f64_reference_over_three_steps() {
    let dev = wgrad_testkit::device();
    let rules = [
        Update::Sgd {
            lr: 0.1,
            decay: 0.0,
        },
        Update::Sgd {
            lr: 0.05,
            decay: 0.01,
        },
        Update::SgdMomentum {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            decay: 0.0,
        },
        Update::SgdMomentum {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            decay: 1e-3,
        },
        Update::RmsProp {
            lr: 1e-2,
            rho: 0.9,
            epsilon: 1e-7,
            decay: 0.0,
            momentum: 0.0,
            centered: false,
        },
        Update::RmsProp {
            lr: 1e-3,
            rho: 0.8,
            epsilon: 1e-2,
            decay: 2e-3,
            momentum: 0.0,
            centered: false,
        },
        Update::RmsProp {
            lr: 1e-2,
            rho: 0.9,
            epsilon: 1e-7,
            decay: 0.0,
            momentum: 0.8,
            centered: false,
        },
        Update::RmsProp {
            lr: 1e-2,
            rho: 0.9,
            epsilon: 1e-2,
            decay: 1e-3,
            momentum: 0.0,
            centered: true,
        },
        Update::RmsProp {
            lr: 1e-2,
            rho: 0.7,
            epsilon: 1e-2,
            decay: 0.0,
            momentum: 0.5,
            centered: true,
        },
        Update::Adam {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            decay: 0.0,
        },
        Update::Adam {
            lr: 1e-2,
            beta1: 0.8,
            beta2: 0.99,
            epsilon: 1e-6,
            decay: 4e-3,
        },
        Update::Nadam {
            lr: 1e-2,
            decay: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            c1: 9.1,
            c2: 0.95,
            c3: 1000.0,
        },
    ];
    for n in [1usize, 7, 64, 1031] {
        for (k, &u) in rules.iter().enumerate() {
            let mut rng = Rng::new(10 * n as u64 + k as u64);
            let w0 = rng.vec(n, -1.0, 1.0);
            let mut w = Tensor::from_slice(&dev, &w0, &[n]).unwrap();
            let mut slots: Vec<Tensor> = (0..u.slots())
                .map(|_| Tensor::zeros(&dev, &[n], DType::F32).unwrap())
                .collect();
            let mut rw: Vec<f64> = w0.iter().map(|&x| x as f64).collect();
            let mut rs: Vec<Vec<f64>> = vec![vec![0.0; n]; u.slots()];
            for _ in 0..3 {
                let g = rng.vec(n, -2.0, 2.0);
                let gt = Tensor::from_slice(&dev, &g, &[n]).unwrap();
                let refs: Vec<&Tensor> = slots.iter().collect();
                let (nw, ns) = w.optimizer_update(&gt, &refs, u).unwrap();
                (w, slots) = (nw, ns);
                let gd: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                (rw, rs) = reference(u, &rw, &gd, &rs);
            }
            assert_close(&w.to_vec::<f32>().unwrap(), &rw, 1e-5, 1e-6);
            for (s, r) in slots.iter().zip(&rs) {
                assert_close(&s.to_vec::<f32>().unwrap(), r, 1e-5, 1e-6);
            }
        }
    }
}

#[test]
fn bad_operands_are_typed_errors() {
    let dev = wgrad_testkit::device();
    let w = Tensor::zeros(&dev, &[4], DType::F32).unwrap();
    let g3 = Tensor::zeros(&dev, &[3], DType::F32).unwrap();
    let sgd = Update::Sgd {
        lr: 0.1,
        decay: 0.0,
    };
    assert!(matches!(
        w.optimizer_update(&g3, &[], sgd),
        Err(wgrad_tensor::Error::Shape { .. })
    ));
    let gi = Tensor::zeros(&dev, &[4], DType::I32).unwrap();
    assert!(matches!(
        w.optimizer_update(&gi, &[], sgd),
        Err(wgrad_tensor::Error::Dtype { .. })
    ));
    let adam = Update::Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
        decay: 0.0,
    };
    assert!(matches!(
        w.optimizer_update(&w, &[&w], adam),
        Err(wgrad_tensor::Error::InvalidArgument { .. })
    ));
}
