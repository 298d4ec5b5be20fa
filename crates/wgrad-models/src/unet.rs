//! U-Net (Ronneberger et al., 2015) for semantic segmentation, the encoder–decoder of the
//! chapter: at each level two 3×3 "same" convolutions (conv → batch norm → ReLU, then conv
//! with bias and ReLU), a 2×2 max-pool down; a bottleneck; then per level a 2×2/2
//! `Conv2DTranspose` up, a `Concatenate` with the encoder's tensor of that size (the skip that
//! brings back the detail pooling lost), two convolutions; a 1×1 convolution to per-pixel class
//! scores. The layer names and the block are those of the Keras mini U-Net in
//! `tests/data/keras_vision.safetensors` (`enc1_conv1`, `enc1_bn1`, …, `up2`, `skip2`,
//! `dec2_conv1`, …, `pixel_classes`), so Keras's weights import by name.

use wgrad_nn::layers::{Activation, BatchNormalization, Conv2D, Conv2DTranspose, MaxPool2D};
use wgrad_nn::{Act, Concatenate, Error, Functional, Result, Tap};
use wgrad_tensor::Device;

/// Conv (no bias) → BN → ReLU → conv (bias, ReLU): the U-Net block, named `{name}_conv1` …
fn block(g: &mut Functional, x: Tap, filters: usize, name: &str) -> Result<Tap> {
    let h = g.apply_named(
        &format!("{name}_conv1"),
        Conv2D::new(filters, 3).same().use_bias(false),
        x,
    )?;
    let h = g.apply_named(&format!("{name}_bn1"), BatchNormalization::new(), h)?;
    let h = g.apply_named(&format!("{name}_relu1"), Activation(Act::Relu), h)?;
    g.apply_named(
        &format!("{name}_conv2"),
        Conv2D::new(filters, 3).same().activation(Act::Relu),
        h,
    )
}

/// A U-Net with `levels` pooling steps, `filters` channels at the first level (doubling per
/// level, the bottleneck at `filters·2^levels`), and `num_classes` per-pixel outputs: logits
/// `[N, H, W, num_classes]` (train with `sparse_categorical_crossentropy(from_logits=true)`
/// against `[N, H, W]` masks). `H` and `W` must be multiples of `2^levels`, so every skip
/// meets a decoder tensor of its own size; otherwise the error says which sizes fit. The
/// up-sampling convolutions are 2×2/2; [`UNet`] chooses other window sizes.
pub fn unet(
    dev: &Device,
    input: [usize; 3],
    num_classes: usize,
    levels: usize,
    filters: usize,
) -> Result<Functional> {
    UNet::new(levels, filters).build(dev, input, num_classes)
}

/// The U-Net's configuration, for what [`unet`] fixes: the window of each level's
/// `Conv2DTranspose` (stride 2, "same" padding, so any window doubles the size).
#[derive(Clone, Debug)]
pub struct UNet {
    levels: usize,
    filters: usize,
    up_kernels: Vec<usize>,
    widths: Option<Vec<usize>>,
}

impl UNet {
    pub fn new(levels: usize, filters: usize) -> UNet {
        UNet {
            levels,
            filters,
            up_kernels: vec![2; levels],
            widths: None,
        }
    }

    /// Channels per level, level 1 first, then the bottleneck (`levels + 1` numbers) instead
    /// of `filters` doubling per level: the deep levels see few pixels, so widening them
    /// (where the classes are told apart) costs little next to the full-resolution level.
    pub fn widths(mut self, widths: &[usize]) -> UNet {
        self.widths = Some(widths.to_vec());
        self
    }

    /// The transposed convolutions' windows, level 1 (the outermost, `up1`) first.
    pub fn up_kernels(mut self, sizes: &[usize]) -> UNet {
        self.up_kernels = sizes.to_vec();
        self
    }

    pub fn build(&self, dev: &Device, input: [usize; 3], num_classes: usize) -> Result<Functional> {
        let (levels, filters) = (self.levels, self.filters);
        let step = 1usize.checked_shl(levels as u32).unwrap_or(0);
        let config = |reason: String| Error::Config {
            layer: "unet".into(),
            reason,
        };
        if levels == 0
            || step == 0
            || !input[0].is_multiple_of(step)
            || !input[1].is_multiple_of(step)
        {
            return Err(config(format!(
                "input {}×{} must be a multiple of 2^levels = {step} in height and width (levels ≥ 1), e.g. {}×{}",
                input[0],
                input[1],
                input[0].div_ceil(step.max(1)).max(1) * step,
                input[1].div_ceil(step.max(1)).max(1) * step
            )));
        }
        if self.up_kernels.len() != levels || self.up_kernels.contains(&0) {
            return Err(config(format!(
                "{} up-sampling windows {:?} for {levels} levels (one positive size per level)",
                self.up_kernels.len(),
                self.up_kernels
            )));
        }
        let widths = match &self.widths {
            Some(w) if w.len() == levels + 1 && !w.contains(&0) => w.clone(),
            Some(w) => {
                return Err(config(format!(
                    "{} widths {w:?} for {levels} levels: give one per level and one for the bottleneck, all positive",
                    w.len()
                )))
            }
            None => (0..=levels).map(|l| filters << l).collect(),
        };
        let mut g = Functional::new(dev);
        let mut h = g.input(&input);
        let mut skips = Vec::new();
        for level in 1..=levels {
            h = block(&mut g, h, widths[level - 1], &format!("enc{level}"))?;
            skips.push(h);
            h = g.apply_named(&format!("pool{level}"), MaxPool2D::new(2), h)?;
        }
        h = block(&mut g, h, widths[levels], "bottleneck")?;
        for level in (1..=levels).rev() {
            let f = widths[level - 1];
            h = g.apply_named(
                &format!("up{level}"),
                Conv2DTranspose::new(f, self.up_kernels[level - 1])
                    .strides(2)
                    .same(),
                h,
            )?;
            let skip = skips.pop().expect("one skip per level");
            h = g.merge_named(
                &format!("skip{level}"),
                Concatenate { axis: -1 },
                &[h, skip],
            )?;
            h = block(&mut g, h, f, &format!("dec{level}"))?;
        }
        let y = g.apply_named("pixel_classes", Conv2D::new(num_classes, 1), h)?;
        g.outputs(&[y])?;
        Ok(g)
    }
}
