//! Pooling layers.

use wgrad_graph::{ops, Var};
use wgrad_tensor::geometry_2d;
use wgrad_tensor::{Device, Padding};

use super::expect_rank;
use crate::{Ctx, Layer, Result};

/// Window, strides and padding of a pooling layer (Keras: strides default to the window).
#[derive(Clone, Copy, Debug)]
struct Window {
    pool: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
}

impl Window {
    fn out_shape(&self, kind: &'static str, input: &[usize]) -> Result<Vec<usize>> {
        let [h, w, c] = expect_rank::<3>(kind, input, "[H, W, C] images")?;
        let g = geometry_2d(kind, [h, w], self.pool, self.strides, [1, 1], self.padding)?;
        Ok(vec![g[0].output, g[1].output, c])
    }

    fn describe(&self) -> String {
        let mut s = format!("{}x{}/{}", self.pool[0], self.pool[1], self.strides[0]);
        if self.padding == Padding::Same {
            s += " same";
        }
        s
    }
}

macro_rules! window_pool {
    ($name:ident, $kind:literal, $op:path, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name(Window);

        impl $name {
            /// A square `pool` window with strides equal to it, valid padding.
            pub fn new(pool: usize) -> Self {
                $name(Window {
                    pool: [pool; 2],
                    strides: [pool; 2],
                    padding: Padding::Valid,
                })
            }
            pub fn strides(mut self, s: usize) -> Self {
                self.0.strides = [s, s];
                self
            }
            pub fn padding(mut self, p: Padding) -> Self {
                self.0.padding = p;
                self
            }
            pub fn same(self) -> Self {
                self.padding(Padding::Same)
            }
        }

        impl Layer for $name {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
                self.0.out_shape($kind, input)
            }
            fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
                Ok($op(x, self.0.pool, self.0.strides, self.0.padding)?)
            }
            fn describe(&self) -> String {
                self.0.describe()
            }
            fn hints(&self) -> Option<&dyn crate::Hints> {
                Some(self)
            }
            fn hints_mut(&mut self) -> Option<&mut dyn crate::Hints> {
                Some(self)
            }
        }
    };
}

impl crate::Hints for MaxPool2D {
    fn commutes_with_relu(&self) -> bool {
        true
    }

    fn forward_after_relu(&mut self, x: &Var, _: &mut Ctx) -> Option<Result<Var>> {
        let w = self.0;
        Some(ops::max_pool2d_relu(x, w.pool, w.strides, w.padding).map_err(Into::into))
    }
}

window_pool!(
    MaxPool2D,
    "MaxPooling2D",
    ops::max_pool2d,
    "Keras's `MaxPooling2D`: the maximum of each window (the winner's position is saved for backward)."
);
window_pool!(
    AvgPool2D,
    "AveragePooling2D",
    ops::avg_pool2d,
    "Keras's `AveragePooling2D`; with `same` padding it divides by the real cells of each window."
);

impl crate::Hints for AvgPool2D {}

macro_rules! global_pool {
    ($name:ident, $kind:literal, $op:path, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Default)]
        pub struct $name;

        impl $name {
            pub fn new() -> Self {
                $name
            }
        }

        impl Layer for $name {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn build(&mut self, _: &Device, input: &[usize], _: u64) -> Result<Vec<usize>> {
                let [_, _, c] = expect_rank::<3>($kind, input, "[H, W, C] images")?;
                Ok(vec![c])
            }
            fn forward(&mut self, x: &Var, _: &mut Ctx) -> Result<Var> {
                Ok($op(x)?)
            }
        }
    };
}

global_pool!(
    GlobalAvgPool2D,
    "GlobalAveragePooling2D",
    ops::global_avg_pool2d,
    "The mean over H and W of each channel: `[N, H, W, C]` → `[N, C]`."
);
global_pool!(
    GlobalMaxPool2D,
    "GlobalMaxPooling2D",
    ops::global_max_pool2d,
    "The maximum over H and W of each channel: `[N, H, W, C]` → `[N, C]`."
);
