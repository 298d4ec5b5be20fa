//! Differentiable ops: each function computes its value with the tensor kernels and records
//! its backward rule right beside it.

use wgrad_tensor::ConvEpilogue;
use wgrad_tensor::MatmulOptions;
use wgrad_tensor::Upsample;
use wgrad_tensor::{
    Activation, BinaryOp, Conv2dOptions, DType, Error, LrnParams, Padding, Result, Tensor, UnaryOp,
};

use crate::Var;

/// Sums a broadcast gradient back to `shape` (the reverse of NumPy broadcasting).
pub fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let extra = g.rank() - shape.len();
    let mut axes: Vec<isize> = (0..extra as isize).collect();
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[extra + i] != 1 {
            axes.push((extra + i) as isize);
        }
    }
    let s = if axes.is_empty() {
        g.clone()
    } else {
        g.sum(&axes, true)?
    };
    s.reshape(shape)
}

fn some(t: Tensor) -> Result<Vec<Option<Tensor>>> {
    Ok(vec![Some(t)])
}

// ---------------------------------------------------------------- elementwise

/// `x` stored as `dtype` (f32 <-> f16 for mixed precision); the gradient goes back in `x`'s
/// dtype.
pub fn cast(x: &Var, dtype: DType) -> Result<Var> {
    if x.value().dtype() == dtype {
        return Ok(x.clone());
    }
    let y = x.value().to_dtype(dtype)?;
    let from = x.value().dtype();
    Ok(Var::from_op("cast", y, &[x], move |g| {
        some(g.to_dtype(from)?)
    }))
}

/// An elementwise map; its gradient is one kernel (`Tensor::unary_backward`).
pub fn unary(x: &Var, op: UnaryOp) -> Result<Var> {
    let y = x.value().unary(op)?;
    let (xs, ys) = (x.value().clone(), y.clone());
    Ok(Var::from_op("unary", y, &[x], move |g| {
        some(g.unary_backward(op, &xs, &ys)?)
    }))
}

pub fn relu(x: &Var) -> Result<Var> {
    activation(x, Activation::Relu)
}
pub fn sigmoid(x: &Var) -> Result<Var> {
    activation(x, Activation::Sigmoid)
}
pub fn tanh(x: &Var) -> Result<Var> {
    activation(x, Activation::Tanh)
}
pub fn exp(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Exp)
}
pub fn log(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Log)
}
pub fn square(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Square)
}
pub fn neg(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Neg)
}
pub fn mul_scalar(x: &Var, s: f32) -> Result<Var> {
    unary(x, UnaryOp::Affine(s, 0.0))
}
pub fn add_scalar(x: &Var, s: f32) -> Result<Var> {
    unary(x, UnaryOp::Affine(1.0, s))
}

/// An activation as an op (the identity passes the value through; softmax is over the last
/// axis).
pub fn activation(x: &Var, act: Activation) -> Result<Var> {
    match act {
        Activation::Linear => Ok(x.clone()),
        Activation::Softmax => softmax(x, -1),
        a => unary(x, UnaryOp::Act(a)),
    }
}

/// `a op b` with NumPy broadcasting, for the arithmetic ops.
pub fn binary(a: &Var, b: &Var, op: BinaryOp) -> Result<Var> {
    let y = a.value().binary(b.value(), op)?;
    let (av, bv) = (a.value().clone(), b.value().clone());
    let (sa, sb) = (av.shape().to_vec(), bv.shape().to_vec());
    let rule = move |g: &Tensor| -> Result<Vec<Option<Tensor>>> {
        let (ga, gb) = match op {
            BinaryOp::Add => (g.clone(), g.clone()),
            BinaryOp::Sub => (g.clone(), g.neg()?),
            BinaryOp::Mul => (g.mul(&bv)?, g.mul(&av)?),
            BinaryOp::Div => (g.div(&bv)?, g.mul(&av)?.div(&bv.square()?)?.neg()?),
            BinaryOp::Maximum | BinaryOp::Minimum => {
                // The gradient goes to the operand that won; ties go to `a`.
                let mask = if op == BinaryOp::Maximum {
                    av.ge(&bv)?
                } else {
                    av.le(&bv)?
                };
                let zero = g.zeros_like()?;
                (mask.where_(g, &zero)?, mask.where_(&zero, g)?)
            }
            other => {
                return Err(Error::InvalidArgument {
                    op: "binary backward",
                    reason: format!("{other:?} has no gradient"),
                })
            }
        };
        Ok(vec![Some(sum_to(&ga, &sa)?), Some(sum_to(&gb, &sb)?)])
    };
    Ok(Var::from_op("binary", y, &[a, b], rule))
}

pub fn add(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Add)
}
pub fn sub(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Sub)
}
pub fn mul(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Mul)
}
pub fn div(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Div)
}

// ---------------------------------------------------------------- shape

pub fn reshape(x: &Var, shape: &[usize]) -> Result<Var> {
    let y = x.value().reshape(shape)?;
    let s = x.shape().to_vec();
    Ok(Var::from_op("reshape", y, &[x], move |g| {
        some(g.reshape(&s)?)
    }))
}

pub fn permute(x: &Var, perm: &[usize]) -> Result<Var> {
    let y = x.value().permute(perm)?;
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    Ok(Var::from_op("permute", y, &[x], move |g| {
        some(g.permute(&inv)?)
    }))
}

/// Elements `start..end` along `axis`; the gradient pads the slice back with zeros.
pub fn slice(x: &Var, axis: isize, start: usize, end: usize) -> Result<Var> {
    let y = x.value().slice(axis, start, end)?;
    let shape = x.shape().to_vec();
    let ax = if axis < 0 {
        (axis + shape.len() as isize) as usize
    } else {
        axis as usize
    };
    Ok(Var::from_op("slice", y, &[x], move |g| {
        let dev = g.device();
        let mut parts = Vec::new();
        let mut before = shape.clone();
        before[ax] = start;
        let mut after = shape.clone();
        after[ax] = shape[ax] - end;
        let zb = Tensor::zeros(dev, &before, DType::F32)?;
        let za = Tensor::zeros(dev, &after, DType::F32)?;
        if start > 0 {
            parts.push(&zb);
        }
        parts.push(g);
        if end < shape[ax] {
            parts.push(&za);
        }
        some(Tensor::concat(&parts, ax as isize)?)
    }))
}

/// Joins along `axis`; each input's gradient is its slice of the output gradient.
pub fn concat(xs: &[&Var], axis: isize) -> Result<Var> {
    let values: Vec<&Tensor> = xs.iter().map(|v| v.value()).collect();
    let y = Tensor::concat(&values, axis)?;
    let lens: Vec<usize> = xs
        .iter()
        .map(|v| {
            let r = v.shape().len() as isize;
            v.shape()[if axis < 0 {
                (axis + r) as usize
            } else {
                axis as usize
            }]
        })
        .collect();
    Ok(Var::from_op("concat", y, xs, move |g| {
        let mut start = 0;
        let mut out = Vec::new();
        for l in &lens {
            out.push(Some(g.slice(axis, start, start + l)?));
            start += l;
        }
        Ok(out)
    }))
}

// ---------------------------------------------------------------- reductions

/// Broadcasts a reduced gradient (keepdims shape) back over `shape`.
fn expand(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    Tensor::zeros(g.device(), shape, DType::F32)?.add(g)
}

fn keep_shape(shape: &[usize], axes: &[isize]) -> Vec<usize> {
    let r = shape.len() as isize;
    let ax: Vec<usize> = if axes.is_empty() {
        (0..shape.len()).collect()
    } else {
        axes.iter()
            .map(|&a| if a < 0 { (a + r) as usize } else { a as usize })
            .collect()
    };
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if ax.contains(&i) { 1 } else { d })
        .collect()
}

pub fn sum(x: &Var, axes: &[isize]) -> Result<Var> {
    let y = x.value().sum(axes, false)?;
    let shape = x.shape().to_vec();
    let keep = keep_shape(&shape, axes);
    Ok(Var::from_op("sum", y, &[x], move |g| {
        some(expand(&g.reshape(&keep)?, &shape)?)
    }))
}

pub fn mean(x: &Var, axes: &[isize]) -> Result<Var> {
    let y = x.value().mean(axes, false)?;
    let shape = x.shape().to_vec();
    let keep = keep_shape(&shape, axes);
    let count = (shape.iter().product::<usize>() / keep.iter().product::<usize>().max(1)).max(1);
    Ok(Var::from_op("mean", y, &[x], move |g| {
        some(expand(&g.reshape(&keep)?, &shape)?.mul_scalar(1.0 / count as f32)?)
    }))
}

// ---------------------------------------------------------------- softmax and losses

pub fn softmax(x: &Var, axis: isize) -> Result<Var> {
    let y = x.value().softmax(axis)?;
    let ys = y.clone();
    Ok(Var::from_op("softmax", y, &[x], move |g| {
        let dot = g.mul(&ys)?.sum(&[axis], true)?;
        some(g.sub(&dot)?.mul(&ys)?)
    }))
}

pub fn log_softmax(x: &Var, axis: isize) -> Result<Var> {
    let y = x.value().log_softmax(axis)?;
    let ys = y.clone();
    Ok(Var::from_op("log_softmax", y, &[x], move |g| {
        let total = g.sum(&[axis], true)?;
        some(g.sub(&ys.exp()?.mul(&total)?)?)
    }))
}

/// One-hot rows of `labels` (u32 `[N]`) over `classes`, as f32 `[N, classes]`.
pub fn one_hot(labels: &Tensor, classes: usize) -> Result<Tensor> {
    let dev = labels.device();
    let l = labels.to_dtype(DType::F32)?.reshape(&[labels.numel(), 1])?;
    let c = Tensor::arange(dev, 0.0, classes as f32, 1.0)?;
    l.eq(&c)?.to_dtype(DType::F32)
}

/// Mean sparse categorical cross-entropy of `logits` `[N, C]` against u32 `labels` `[N]`,
/// computed from log-softmax (stable for any logits). Gradient: (softmax − one-hot) / N.
pub fn sparse_softmax_cross_entropy(logits: &Var, labels: &Tensor) -> Result<Var> {
    let op = "sparse_softmax_cross_entropy";
    let (n, c) = match logits.shape() {
        [n, c] => (*n, *c),
        s => {
            return Err(Error::Shape {
                op,
                reason: "logits must be [N, classes]".into(),
                shapes: vec![s.to_vec()],
            })
        }
    };
    if labels.shape() != [n] || labels.dtype() != DType::U32 {
        return Err(Error::Shape {
            op,
            reason: format!("labels must be u32 [{n}]"),
            shapes: vec![labels.shape().to_vec()],
        });
    }
    let lsm = logits.value().log_softmax(-1)?;
    let onehot = one_hot(labels, c)?;
    let loss = lsm
        .mul(&onehot)?
        .sum(&[], false)?
        .mul_scalar(-1.0 / n as f32)?;
    Ok(Var::from_op(op, loss, &[logits], move |g| {
        // g is a scalar: broadcast it over the rows.
        some(
            lsm.exp()?
                .sub(&onehot)?
                .mul(g)?
                .mul_scalar(1.0 / n as f32)?,
        )
    }))
}

/// Mean squared error over all elements.
pub fn mse(pred: &Var, target: &Var) -> Result<Var> {
    mean(&square(&sub(pred, target)?)?, &[])
}

// ---------------------------------------------------------------- dense and convolution

/// `a · b` over the last two axes (batched); gradients `g · bᵀ` and `aᵀ · g`, summed over
/// broadcast batch axes.
pub fn matmul(a: &Var, b: &Var) -> Result<Var> {
    let y = a.value().matmul(b.value())?;
    let (av, bv) = (a.value().clone(), b.value().clone());
    Ok(Var::from_op("matmul", y, &[a, b], move |g| {
        let ga = g.matmul_with(
            &bv,
            MatmulOptions {
                transpose_b: true,
                ..Default::default()
            },
        )?;
        let gb = av.matmul_with(
            g,
            MatmulOptions {
                transpose_a: true,
                ..Default::default()
            },
        )?;
        Ok(vec![
            Some(sum_to(&ga, av.shape())?),
            Some(sum_to(&gb, bv.shape())?),
        ])
    }))
}

/// What the GEMM-shaped layer ops (dense, conv2d) share: `act` split into what the GEMM's
/// write-out applies (identity, ReLU, leaky ReLU: piecewise linear, so their derivative reads
/// off the output) and what must follow as its own op; the inputs with the optional bias; and
/// the backward through the fused part. `forward` runs the GEMM with the fused activation;
/// `grads(gz, need_x)` returns the data and weight gradients (the data gradient, a GEMM as
/// large as the forward, is skipped for a first layer's input: `need_x` false); the bias
/// gradient is `gz` summed over `bias_axes`.
fn fused_gemm(
    name: &'static str,
    [x, w]: [&Var; 2],
    b: Option<&Var>,
    act: Activation,
    bias_axes: &'static [isize],
    forward: impl FnOnce(Activation) -> Result<Tensor>,
    // (gradient of x if needed, of w, and of b when the rule computed it on the way).
    grads: impl FnOnce(&Tensor, bool, bool) -> Result<(Option<Tensor>, Tensor, Option<Tensor>)>
        + Send
        + 'static,
) -> Result<Var> {
    let fused = act.fused_slope().is_some();
    let fused_act = if fused { act } else { Activation::Linear };
    let z = forward(fused_act)?;
    let zs = z.clone();
    let has_bias = b.is_some();
    let need_x = x.requires_grad();
    let mut inputs = vec![x, w];
    inputs.extend(b);
    let y = Var::from_op(name, z, &inputs, move |g| {
        let gz = g.activation_backward(fused_act, &zs, &zs)?;
        let (gx, gw, gb) = grads(&gz, need_x, has_bias)?;
        let mut out = vec![gx, Some(gw)];
        if has_bias {
            out.push(Some(match gb {
                Some(gb) => gb,
                None => gz.sum(bias_axes, false)?,
            }));
        }
        Ok(out)
    });
    if fused {
        Ok(y)
    } else {
        activation(&y, act)
    }
}

/// `act(x · w + b)` for x `[N, in]`, w `[in, out]`, b `[out]`, with identity/ReLU/leaky ReLU
/// fused into the matmul's write-out.
pub fn dense(x: &Var, w: &Var, b: Option<&Var>, act: Activation) -> Result<Var> {
    let (xv, wv) = (x.value().clone(), w.value().clone());
    let forward = |fused| {
        x.value().matmul_with(
            w.value(),
            MatmulOptions {
                bias: b.map(|b| b.value()),
                activation: fused,
                ..Default::default()
            },
        )
    };
    fused_gemm(
        "dense",
        [x, w],
        b,
        act,
        &[0],
        forward,
        move |gz, need_x, _| {
            let gx = need_x
                .then(|| {
                    gz.matmul_with(
                        &wv,
                        MatmulOptions {
                            transpose_b: true,
                            ..Default::default()
                        },
                    )
                })
                .transpose()?;
            let gw = xv.matmul_with(
                gz,
                MatmulOptions {
                    transpose_a: true,
                    ..Default::default()
                },
            )?;
            Ok((gx, gw, None))
        },
    )
}

/// `act(conv2d(x, w) + b)` (NHWC, HWIO), identity/ReLU/leaky ReLU fused into the write-out.
pub fn conv2d(
    x: &Var,
    w: &Var,
    b: Option<&Var>,
    act: Activation,
    opts: Conv2dOptions,
) -> Result<Var> {
    let (xv, wv) = (x.value().clone(), w.value().clone());
    let forward = |fused| {
        let epi = ConvEpilogue {
            bias: b.map(|b| b.value()),
            activation: fused,
            ..Default::default()
        };
        x.value().conv2d_fused(w.value(), &epi, opts)
    };
    fused_gemm(
        "conv2d",
        [x, w],
        b,
        act,
        &[0, 1, 2],
        forward,
        move |gz, need_x, need_b| {
            let gx = need_x
                .then(|| gz.conv2d_backward_input(&wv, xv.shape(), opts))
                .transpose()?;
            let kernel = [wv.shape()[0], wv.shape()[1]];
            if need_b {
                // A few-tap filter's gradient kernel sums the bias gradient on the same walk.
                let (gw, gb) = xv.conv2d_backward_filter_and_bias(gz, kernel, opts)?;
                return Ok((gx, gw, Some(gb)));
            }
            Ok((gx, xv.conv2d_backward_filter(gz, kernel, opts)?, None))
        },
    )
}

/// Keras `Conv2DTranspose` (filter `[KH, KW, out, in]`) with optional bias.
pub fn conv2d_transpose(
    x: &Var,
    w: &Var,
    b: Option<&Var>,
    opts: Conv2dOptions,
    output_padding: [usize; 2],
) -> Result<Var> {
    let mut z = x
        .value()
        .conv2d_transpose(w.value(), opts, output_padding)?;
    if let Some(b) = b {
        z = z.add(b.value())?;
    }
    let (xv, wv) = (x.value().clone(), w.value().clone());
    let has_bias = b.is_some();
    let mut inputs = vec![x, w];
    if let Some(b) = b {
        inputs.push(b);
    }
    Ok(Var::from_op("conv2d_transpose", z, &inputs, move |g| {
        let gx = g.conv2d_transpose_backward_input(&wv, opts)?;
        let gw = xv.conv2d_transpose_backward_filter(g, [wv.shape()[0], wv.shape()[1]], opts)?;
        let mut out = vec![Some(gx), Some(gw)];
        if has_bias {
            out.push(Some(g.sum(&[0, 1, 2], false)?));
        }
        Ok(out)
    }))
}

// ---------------------------------------------------------------- pooling and resizing

pub fn max_pool2d(x: &Var, pool: [usize; 2], stride: [usize; 2], padding: Padding) -> Result<Var> {
    let (y, idx) = x.value().max_pool2d(pool, stride, padding)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op("max_pool2d", y, &[x], move |g| {
        some(g.max_pool2d_backward(&idx, &shape, pool, stride, padding)?)
    }))
}

/// `max_pool2d(relu(x))` in one pass over `x` (ReLU and max commute, so the ReLU runs on the
/// pooled output); the backward is max-pooling's, through indices that name no cell where the
/// window's maximum was not positive.
pub fn max_pool2d_relu(
    x: &Var,
    pool: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> Result<Var> {
    let (y, idx) = x.value().max_pool2d_relu(pool, stride, padding)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op("max_pool2d_relu", y, &[x], move |g| {
        some(g.max_pool2d_backward(&idx, &shape, pool, stride, padding)?)
    }))
}

pub fn avg_pool2d(x: &Var, pool: [usize; 2], stride: [usize; 2], padding: Padding) -> Result<Var> {
    let y = x.value().avg_pool2d(pool, stride, padding)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op("avg_pool2d", y, &[x], move |g| {
        some(g.avg_pool2d_backward(&shape, pool, stride, padding)?)
    }))
}

pub fn global_avg_pool2d(x: &Var) -> Result<Var> {
    let y = x.value().global_avg_pool2d()?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op("global_avg_pool2d", y, &[x], move |g| {
        some(g.global_avg_pool2d_backward(&shape)?)
    }))
}

pub fn global_max_pool2d(x: &Var) -> Result<Var> {
    let y = x.value().global_max_pool2d()?;
    let xv = x.value().clone();
    Ok(Var::from_op("global_max_pool2d", y, &[x], move |g| {
        some(g.global_max_pool2d_backward(&xv)?)
    }))
}

pub fn upsample2d(x: &Var, factor: [usize; 2], mode: Upsample) -> Result<Var> {
    let y = x.value().upsample2d(factor, mode)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op("upsample2d", y, &[x], move |g| {
        some(g.upsample2d_backward(&shape, factor, mode)?)
    }))
}

// ---------------------------------------------------------------- normalisation and dropout

/// Training-mode batch normalisation over all axes but the last. Returns the output and the
/// batch mean and (biased) variance, for the caller's moving averages.
pub fn batch_norm_train(
    x: &Var,
    gamma: &Var,
    beta: &Var,
    epsilon: f32,
) -> Result<(Var, Tensor, Tensor)> {
    let r = x
        .value()
        .batch_norm_train(gamma.value(), beta.value(), epsilon)?;
    let (xv, gv, mean, inv_std) = (
        x.value().clone(),
        gamma.value().clone(),
        r.mean.clone(),
        r.inv_std.clone(),
    );
    let y = Var::from_op("batch_norm", r.output, &[x, gamma, beta], move |g| {
        let (dx, dg, db) = g.batch_norm_backward(&xv, &gv, &mean, &inv_std)?;
        Ok(vec![Some(dx), Some(dg), Some(db)])
    });
    Ok((y, r.mean, r.variance))
}

/// Local response normalisation across the channels of an NHWC tensor (TensorFlow's
/// `tf.nn.local_response_normalization`, see [`LrnParams`]). The rule saves only the input:
/// the backward kernel recomputes the window sums from it.
pub fn lrn(x: &Var, params: LrnParams) -> Result<Var> {
    let y = x.value().lrn(params)?;
    let xv = x.value().clone();
    Ok(Var::from_op("lrn", y, &[x], move |g| {
        some(g.lrn_backward(&xv, params)?)
    }))
}

/// Inverted dropout: zeroes each element with probability `rate` and scales the rest by
/// 1/(1 − rate); the mask comes from the device's seeded generator.
pub fn dropout(x: &Var, rate: f32, seed: u64) -> Result<Var> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::InvalidArgument {
            op: "dropout",
            reason: format!("rate {rate} must be in [0, 1)"),
        });
    }
    if rate == 0.0 {
        return Ok(x.clone());
    }
    let dev = x.value().device();
    let u = Tensor::rand_uniform(dev, x.shape(), 0.0, 1.0, seed)?;
    let keep = u.ge(&Tensor::full(dev, &[1], rate as f64, DType::F32)?)?;
    let scale = keep.to_dtype(DType::F32)?.mul_scalar(1.0 / (1.0 - rate))?;
    let y = x.value().mul(&scale)?;
    Ok(Var::from_op("dropout", y, &[x], move |g| {
        some(g.mul(&scale)?)
    }))
}
