//! Softmax and log-softmax along one axis (`shaders/softmax.wgsl`).

use super::launch_1d;
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::shape::{axis as resolve_axis, numel};
use crate::{DType, Result, Tensor};

kernel!(pub static SOFTMAX: "softmax" in "softmax.wgsl",
    workgroup 64,
    entries ["main"],
    blocks [SoftmaxParams]);

// The [A, K, B] view of the input, softmax along K.
params!("Params" => struct SoftmaxParams {
    a: u32,
    k: u32,
    b: u32,
    n_rows: u32,
    row: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![
        (&SOFTMAX, Spec::new().bool("LOG", false)),
        (&SOFTMAX, Spec::new().bool("LOG", true)),
    ]
}

impl Tensor {
    fn softmax_impl(&self, axis: isize, log: bool) -> Result<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].softmax_impl(axis, log))? {
            return Ok(y);
        }
        self.expect_dtype(name, DType::F32)?;
        let ax = resolve_axis(name, axis, self.rank().max(1))?;
        let shape = if self.rank() == 0 {
            vec![1]
        } else {
            self.shape().to_vec()
        };
        let (a, k, b) = (numel(&shape[..ax]), shape[ax], numel(&shape[ax + 1..]));
        // The kernel walks a row three times on one invocation; longer rows go through the
        // split reductions instead (see MAX_LOOP), in the same stable form.
        if 3 * k > super::MAX_LOOP && self.rank() > 0 {
            let ax = ax as isize;
            let shifted = self.sub(&self.max(&[ax], true)?)?;
            let e = shifted.exp()?;
            let s = e.sum(&[ax], true)?;
            return if log {
                shifted.sub(&s.log()?)
            } else {
                e.div(&s)
            };
        }
        let out = Tensor::uninit(self.device(), name, self.shape(), DType::F32)?;
        let rows = (a * b) as u64;
        let spec = Spec::new().bool("LOG", log);
        launch_1d(
            self.device(),
            &SOFTMAX,
            "main",
            &spec,
            |row| SoftmaxParams {
                a: a as u32,
                k: k as u32,
                b: b as u32,
                n_rows: rows as u32,
                row,
                ..Default::default()
            },
            &[self.bind(), out.bind()],
            rows,
        )?;
        Ok(out)
    }

    /// exp(x - max) / sum(exp(x - max)) along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_impl(axis, false)
    }

    /// x - max - log(sum(exp(x - max))) along `axis`: finite for any logits.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_impl(axis, true)
    }
}
