//! What ends a pretrained family's network, as Keras's `include_top` and `pooling`
//! arguments choose it: the classifier (`include_top=True`), or the base alone for transfer
//! learning — its last feature map, or that map pooled to one vector per image.

use wgrad_nn::layers::{Dense, GlobalAvgPool2D, GlobalMaxPool2D};
use wgrad_nn::{Functional, Result, Tap};

/// The end of a zoo network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Top {
    /// `include_top=True`: global average pool and a `predictions` layer of this many classes
    /// (logits).
    Classes(usize),
    /// `include_top=False, pooling=None`: the last feature map `[H, W, C]`.
    FeatureMap,
    /// `include_top=False, pooling="avg"`: the map's global average, `[C]` (`avg_pool`).
    Avg,
    /// `include_top=False, pooling="max"`: its global maximum, `[C]` (`max_pool`).
    Max,
}

/// Ends `g` at `h` as `top` says, with Keras's layer names, and declares the output.
pub(crate) fn finish(g: &mut Functional, h: Tap, top: Top) -> Result<()> {
    let y = match top {
        Top::Classes(n) => {
            let h = g.apply_named("avg_pool", GlobalAvgPool2D::new(), h)?;
            g.apply_named("predictions", Dense::new(n), h)?
        }
        Top::FeatureMap => h,
        Top::Avg => g.apply_named("avg_pool", GlobalAvgPool2D::new(), h)?,
        Top::Max => g.apply_named("max_pool", GlobalMaxPool2D::new(), h)?,
    };
    g.outputs(&[y])?;
    Ok(())
}
