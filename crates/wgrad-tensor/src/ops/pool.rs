//! 2-D max and average pooling over NHWC f32 tensors, forward and backward, and the global
//! pools (`shaders/pool.wgsl`).
//!
//! Semantics are TensorFlow/Keras's: padded cells never win a max and are not counted by an
//! average (with `Same` padding an edge window divides by its real cells only). Backward
//! kernels are gathers, one invocation per input cell, so no float atomics are needed.

use super::image::{nhwc, nhwc_shape, vector_spec, width};
use super::launch_1d;
use super::window::{geometry_2d, AxisGeometry, Padding};
use crate::kernel::{kernel, params, Kernel, Spec};
use crate::{DType, Error, Result, Tensor};

kernel!(pub static POOL: "pool" in "pool.wgsl",
    workgroup 64,
    entries ["max_fwd", "max_bwd", "max_bwd_windows", "avg_fwd", "avg_bwd", "global_bwd"],
    blocks [PoolParams]);

params!("Params" => struct PoolParams {
    n_threads: u32,
    row: u32,
    // Input height, width, and channels / V.
    h: u32,
    w: u32,
    c4: u32,
    // Output height, width.
    oh: u32,
    ow: u32,
    // Window.
    kh: u32,
    kw: u32,
    // Stride.
    sh: u32,
    sw: u32,
    // Padding before (top, left).
    pt: u32,
    pl: u32,
    // Channels.
    c: u32,
    // Global pools: 1 / (H * W) for average, 1 for max.
    scale: f32,
    // Global pools: 1 routes the gradient to idx (max), 0 spreads it (average).
    use_idx: u32,
    // max_fwd: 1 pools relu(x) (see `Tensor::max_pool2d_relu`).
    relu: u32,
});

pub(crate) fn variants() -> Vec<(&'static Kernel, Spec)> {
    vec![(&POOL, vector_spec(1)), (&POOL, vector_spec(4))]
}

/// Window geometry of a pool, with pooling's extra rule: explicit padding narrower than the
/// window, so that every window holds at least one real cell (Same padding always does).
fn geometry(
    op: &'static str,
    hw: [usize; 2],
    pool: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> Result<[AxisGeometry; 2]> {
    let g = geometry_2d(op, hw, pool, stride, [1, 1], padding)?;
    for (a, k) in g.iter().zip(pool) {
        if a.pad_before >= k || a.pad_after >= k {
            return Err(Error::invalid(
                op,
                format!(
                    "padding ({}, {}) must be smaller than the window of {k}: a window would hold only padding",
                    a.pad_before, a.pad_after
                ),
            ));
        }
    }
    Ok(g)
}

/// The parameter block of a windowed pool (its `row` is set at launch).
fn pool_params(
    threads: usize,
    x: [usize; 4],
    g: &[AxisGeometry; 2],
    pool: [usize; 2],
    stride: [usize; 2],
    v: usize,
) -> PoolParams {
    PoolParams {
        n_threads: threads as u32,
        row: 0,
        h: x[1] as u32,
        w: x[2] as u32,
        c4: (x[3] / v) as u32,
        oh: g[0].output as u32,
        ow: g[1].output as u32,
        kh: pool[0] as u32,
        kw: pool[1] as u32,
        sh: stride[0] as u32,
        sw: stride[1] as u32,
        pt: g[0].pad_before as u32,
        pl: g[1].pad_before as u32,
        c: x[3] as u32,
        scale: 1.0,
        use_idx: 0,
        relu: 0,
    }
}

/// Launches one entry of `pool.wgsl` over `p.n_threads` vectors of `v` channels.
fn launch(
    t: &Tensor,
    entry: &'static str,
    v: usize,
    p: &PoolParams,
    buffers: &[crate::device::View<'_>],
) -> Result<()> {
    let threads = p.n_threads as u64;
    launch_1d(
        t.device(),
        &POOL,
        entry,
        &vector_spec(v),
        |row| PoolParams { row, ..*p },
        buffers,
        threads,
    )
}

impl Tensor {
    /// Max pooling of an NHWC tensor with a `pool` window moved by `stride`. Returns the output
    /// and, for [`max_pool2d_backward`](Tensor::max_pool2d_backward), the position of each
    /// maximum as a u32 tensor of the output's shape. Positions follow TensorFlow's
    /// `MaxPoolWithArgmax` without the batch: `(h * W + w) * C + c`, the flat index inside one
    /// image. Padded cells never win; ties go to the first cell in row-major window order.
    pub fn max_pool2d(
        &self,
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<(Tensor, Tensor)> {
        self.max_pool("max_pool2d", pool, stride, padding, false)
    }

    /// `max_pool2d(relu(self))` without computing `relu(self)`: the two commute, so the ReLU
    /// runs on the pooled output. The indices name no cell for a window whose maximum is not
    /// positive, so [`max_pool2d_backward`](Tensor::max_pool2d_backward) with them is the
    /// gradient of the composition, equal to the ReLU's gradient after the pool's.
    pub fn max_pool2d_relu(
        &self,
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<(Tensor, Tensor)> {
        self.max_pool("max_pool2d_relu", pool, stride, padding, true)
    }

    fn max_pool(
        &self,
        op: &'static str,
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        relu: bool,
    ) -> Result<(Tensor, Tensor)> {
        if super::cast::any_half(&[self]) {
            let (y, idx) = self.widened()?.max_pool(op, pool, stride, padding, relu)?;
            return Ok((y.narrowed()?, idx));
        }
        let x = nhwc(op, self)?;
        let g = geometry(op, [x[1], x[2]], pool, stride, padding)?;
        let out_shape = [x[0], g[0].output, g[1].output, x[3]];
        let out = Tensor::uninit(self.device(), op, &out_shape, DType::F32)?;
        let idx = Tensor::uninit(self.device(), op, &out_shape, DType::U32)?;
        let v = width(x[3]);
        let p = PoolParams {
            relu: relu as u32,
            ..pool_params(out.numel() / v, x, &g, pool, stride, v)
        };
        launch(
            self,
            "max_fwd",
            v,
            &p,
            &[self.bind(), out.bind(), idx.bind()],
        )?;
        Ok((out, idx))
    }

    /// Gradient of [`max_pool2d`](Tensor::max_pool2d) with respect to its input: `self` is the
    /// gradient of the output, `indices` the positions `max_pool2d` returned, `input_shape` the
    /// input's shape, and `pool`, `stride`, `padding` those of the forward call (the kernel
    /// needs them to know which windows can contain each input cell). Each input cell sums the
    /// gradients of the windows whose maximum it was.
    pub fn max_pool2d_backward(
        &self,
        indices: &Tensor,
        input_shape: &[usize],
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<Tensor> {
        let op = "max_pool2d_backward";
        if let Some(dx) = super::cast::via_f32(&[self], |t| {
            t[0].max_pool2d_backward(indices, input_shape, pool, stride, padding)
        })? {
            return Ok(dx);
        }
        let go = nhwc(op, self)?;
        indices.expect_dtype(op, DType::U32)?;
        super::same_device(op, &[self, indices])?;
        if indices.shape() != self.shape() {
            return Err(Error::shape(
                op,
                "indices must have the gradient's shape",
                &[self.shape(), indices.shape()],
            ));
        }
        let x = nhwc_shape(op, input_shape)?;
        let g = geometry(op, [x[1], x[2]], pool, stride, padding)?;
        check_grad(op, go, [x[0], g[0].output, g[1].output, x[3]], input_shape)?;
        let v = width(x[3]);
        let disjoint = stride[0] >= pool[0] && stride[1] >= pool[1];
        if disjoint {
            // Windows tile the input exactly when they touch and run past its far edge.
            let covers = |a: &AxisGeometry, k: usize, s: usize, n: usize| {
                s == k && a.output * s >= n + a.pad_before
            };
            let dx = if covers(&g[0], pool[0], stride[0], x[1])
                && covers(&g[1], pool[1], stride[1], x[2])
            {
                Tensor::uninit(self.device(), op, input_shape, DType::F32)?
            } else {
                Tensor::zeros(self.device(), input_shape, DType::F32)?
            };
            let p = pool_params(self.numel() / v, x, &g, pool, stride, v);
            let views = [self.bind(), dx.bind(), indices.bind()];
            launch(self, "max_bwd_windows", v, &p, &views)?;
            return Ok(dx);
        }
        let dx = Tensor::uninit(self.device(), op, input_shape, DType::F32)?;
        let p = pool_params(dx.numel() / v, x, &g, pool, stride, v);
        launch(
            self,
            "max_bwd",
            v,
            &p,
            &[self.bind(), dx.bind(), indices.bind()],
        )?;
        Ok(dx)
    }

    /// Average pooling of an NHWC tensor. Each output is the mean of the real (non-padded)
    /// cells of its window: TensorFlow/Keras's rule for `Same` padding, applied to explicit
    /// padding too.
    pub fn avg_pool2d(
        &self,
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<Tensor> {
        let op = "avg_pool2d";
        if let Some(y) =
            super::cast::via_f32(&[self], |t| t[0].avg_pool2d(pool, stride, padding))?
        {
            return Ok(y);
        }
        let x = nhwc(op, self)?;
        let g = geometry(op, [x[1], x[2]], pool, stride, padding)?;
        let out_shape = [x[0], g[0].output, g[1].output, x[3]];
        let out = Tensor::uninit(self.device(), op, &out_shape, DType::F32)?;
        let v = width(x[3]);
        let p = pool_params(out.numel() / v, x, &g, pool, stride, v);
        launch(self, "avg_fwd", v, &p, &[self.bind(), out.bind()])?;
        Ok(out)
    }

    /// Gradient of [`avg_pool2d`](Tensor::avg_pool2d) with respect to its input (`self` is the
    /// gradient of the output): each input cell sums grad / count over the windows holding it.
    pub fn avg_pool2d_backward(
        &self,
        input_shape: &[usize],
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<Tensor> {
        let op = "avg_pool2d_backward";
        if let Some(dx) = super::cast::via_f32(&[self], |t| {
            t[0].avg_pool2d_backward(input_shape, pool, stride, padding)
        })? {
            return Ok(dx);
        }
        let go = nhwc(op, self)?;
        let x = nhwc_shape(op, input_shape)?;
        let g = geometry(op, [x[1], x[2]], pool, stride, padding)?;
        check_grad(op, go, [x[0], g[0].output, g[1].output, x[3]], input_shape)?;
        let dx = Tensor::uninit(self.device(), op, input_shape, DType::F32)?;
        let v = width(x[3]);
        let p = pool_params(dx.numel() / v, x, &g, pool, stride, v);
        launch(self, "avg_bwd", v, &p, &[self.bind(), dx.bind()])?;
        Ok(dx)
    }

    /// Mean over height and width: [N, H, W, C] -> [N, C] (Keras GlobalAveragePooling2D).
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].global_avg_pool2d())? {
            return Ok(y);
        }
        let x = nhwc("global_avg_pool2d", self)?;
        empty_image("global_avg_pool2d", x)?;
        // The reduce kernel already splits long H*W runs across invocations.
        self.mean(&[1, 2], false)
    }

    /// Maximum over height and width: [N, H, W, C] -> [N, C] (Keras GlobalMaxPooling2D).
    pub fn global_max_pool2d(&self) -> Result<Tensor> {
        if let Some(y) = super::cast::via_f32(&[self], |t| t[0].global_max_pool2d())? {
            return Ok(y);
        }
        let x = nhwc("global_max_pool2d", self)?;
        empty_image("global_max_pool2d", x)?;
        self.max(&[1, 2], false)
    }

    /// Gradient of [`global_avg_pool2d`](Tensor::global_avg_pool2d): `self` is [N, C], the
    /// result `input_shape` with grad / (H * W) in every cell.
    pub fn global_avg_pool2d_backward(&self, input_shape: &[usize]) -> Result<Tensor> {
        let op = "global_avg_pool2d_backward";
        if let Some(dx) =
            super::cast::via_f32(&[self], |t| t[0].global_avg_pool2d_backward(input_shape))?
        {
            return Ok(dx);
        }
        let x = nhwc_shape(op, input_shape)?;
        self.global_backward(op, x, None)
    }

    /// Gradient of [`global_max_pool2d`](Tensor::global_max_pool2d) given its `input`: `self`
    /// ([N, C]) goes to the first maximum of each (n, c) in row-major (h, w) order, zero
    /// elsewhere.
    pub fn global_max_pool2d_backward(&self, input: &Tensor) -> Result<Tensor> {
        let op = "global_max_pool2d_backward";
        if let Some(dx) =
            super::cast::via_f32(&[self, input], |t| t[0].global_max_pool2d_backward(&t[1]))?
        {
            return Ok(dx);
        }
        let x = nhwc(op, input)?;
        super::same_device(op, &[self, input])?;
        empty_image(op, x)?;
        // argmax over the flattened H*W axis: the reduce kernel keeps the lowest index on ties.
        let idx = input
            .reshape(&[x[0], x[1] * x[2], x[3]])?
            .argmax(1, false)?;
        self.global_backward(op, x, Some(&idx))
    }

    fn global_backward(
        &self,
        op: &'static str,
        x: [usize; 4],
        idx: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.expect_dtype(op, DType::F32)?;
        if self.shape() != [x[0], x[3]] {
            return Err(Error::shape(
                op,
                "gradient must be [N, C] of the input [N, H, W, C]",
                &[self.shape(), &x],
            ));
        }
        let dx = Tensor::uninit(self.device(), op, &x, DType::F32)?;
        let v = width(x[3]);
        let hw = x[1] * x[2];
        let dummy = self.device().dummy(0);
        let (scale, use_idx, ib) = match idx {
            Some(i) => (1.0f32, 1, i.bind()),
            None => (1.0 / hw.max(1) as f32, 0, dummy),
        };
        // No window: oh, ow, kh, kw, sh, sw, pt and pl stay 0.
        let p = PoolParams {
            n_threads: (dx.numel() / v) as u32,
            h: x[1] as u32,
            w: x[2] as u32,
            c4: (x[3] / v) as u32,
            c: x[3] as u32,
            scale,
            use_idx,
            ..Default::default()
        };
        launch(self, "global_bwd", v, &p, &[self.bind(), dx.bind(), ib])?;
        Ok(dx)
    }
}

/// Global pools of an image with no pixels have no value.
fn empty_image(op: &'static str, x: [usize; 4]) -> Result<()> {
    if x[1] * x[2] == 0 {
        return Err(Error::shape(op, "image has no pixels", &[&x]));
    }
    Ok(())
}

/// Checks a gradient's shape against the output shape the forward op would have produced.
fn check_grad(
    op: &'static str,
    got: [usize; 4],
    want: [usize; 4],
    input_shape: &[usize],
) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("gradient shape must be the forward output's {want:?}"),
            &[&got, input_shape],
        ));
    }
    Ok(())
}
