//! Multi-object scenes built from a classification set: each canvas holds a few of its images
//! (MNIST digits, Fashion-MNIST items), scaled and pasted at random places, with what the
//! vision tasks need to learn from — every object's class and tight bounding box, and a mask
//! whose pixels are `class + 1` where an object's pixel is brighter than a threshold and 0
//! (background) elsewhere. Localization uses one object per canvas, detection several, and
//! segmentation the masks; the scenes are real images, only their layout is synthetic.
//!
//! Same source, options and seed, same canvases on every machine.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::rng::{derive, Rng};
use crate::transform::resize_bilinear;

const CANVAS_KEY: u64 = 0x00CA_27A5;

/// How [`compose`] lays out a canvas.
#[derive(Clone, Debug)]
pub struct CanvasOptions {
    /// `[H, W]` of every canvas.
    pub size: [usize; 2],
    /// Objects per canvas, drawn uniformly from `min..=max`.
    pub objects: (usize, usize),
    /// Side of a pasted object in pixels, drawn uniformly from `min..=max` (the source image is
    /// resized bilinearly to that square).
    pub scale: (usize, usize),
    /// The largest IoU two pasted squares may have (0: objects never overlap). A placement
    /// that breaks it is redrawn; after 100 tries the object is left out.
    pub max_overlap: f32,
    /// Object pixels above this value belong to the object's mask and box.
    pub threshold: f32,
    pub seed: u64,
}

impl CanvasOptions {
    /// `size` canvases with `objects` objects of side `scale`, no overlap, threshold 0.5.
    pub fn new(size: [usize; 2], objects: (usize, usize), scale: (usize, usize)) -> Self {
        CanvasOptions {
            size,
            objects,
            scale,
            max_overlap: 0.0,
            threshold: 0.5,
            seed: 0,
        }
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn max_overlap(mut self, iou: f32) -> Self {
        self.max_overlap = iou;
        self
    }
}

/// One pasted object: its class and tight box `[y0, x0, y1, x1]` in pixels (the pixel edges
/// around its mask, so `y1 - y0` is its height), and the index of its source image.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub class: u32,
    pub bbox: [f32; 4],
    pub source: usize,
}

/// Canvases with their objects and masks.
#[derive(Clone, Debug)]
pub struct Canvases {
    /// `N` canvases `[H, W, C]`, NHWC back to back, values as the source's.
    pub images: Vec<f32>,
    pub shape: [usize; 3],
    /// The objects of each canvas, in pasting order.
    pub objects: Vec<Vec<Placed>>,
    /// `N` masks `[H, W]`: 0 background, `class + 1` on an object.
    pub masks: Vec<u32>,
    /// The source's classes (the masks have one more).
    pub classes: usize,
}

impl Canvases {
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The segmentation set: images with their masks, `classes + 1` classes (0 background).
    pub fn mask_dataset(&self) -> Result<Dataset> {
        Dataset::with_masks(
            self.images.clone(),
            self.shape,
            self.masks.clone(),
            self.classes + 1,
        )
    }

    /// Canvas `i`, `[H, W, C]`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n: usize = self.shape.iter().product();
        &self.images[i * n..(i + 1) * n]
    }

    /// Mask `i`, `[H, W]`.
    pub fn mask(&self, i: usize) -> &[u32] {
        let n = self.shape[0] * self.shape[1];
        &self.masks[i * n..(i + 1) * n]
    }
}

fn square_iou(a: [usize; 3], b: [usize; 3]) -> f32 {
    // (top, left, side) squares.
    let ih = (a[0] + a[2])
        .min(b[0] + b[2])
        .saturating_sub(a[0].max(b[0]));
    let iw = (a[1] + a[2])
        .min(b[1] + b[2])
        .saturating_sub(a[1].max(b[1]));
    let inter = (ih * iw) as f32;
    inter / ((a[2] * a[2] + b[2] * b[2]) as f32 - inter)
}

/// `n` canvases of objects drawn from `source` (any images; each canvas takes its objects'
/// channels from the source). Fails with [`Error::Invalid`] when the options cannot work: an
/// empty source, an object range with min above max, objects larger than the canvas.
pub fn compose(source: &Dataset, n: usize, o: &CanvasOptions) -> Result<Canvases> {
    let invalid = |reason: String| Err(Error::Invalid { reason });
    let [h, w] = o.size;
    let [_, _, c] = source.image_shape();
    if source.is_empty() || source.has_masks() {
        return invalid("compose needs a non-empty set of class-labelled images".into());
    }
    if o.objects.0 > o.objects.1 || o.scale.0 > o.scale.1 || o.scale.0 == 0 {
        return invalid(format!(
            "object count {:?} and side {:?} must be ranges min..=max (side ≥ 1)",
            o.objects, o.scale
        ));
    }
    if o.scale.1 > h.min(w) {
        return invalid(format!(
            "objects up to {} px do not fit a {h}×{w} canvas",
            o.scale.1
        ));
    }
    let [sh, sw, _] = source.image_shape();
    let mut rng = Rng::new(derive(o.seed, CANVAS_KEY));
    let range = |lo: usize, hi: usize, rng: &mut Rng| lo + rng.below((hi - lo + 1) as u64) as usize;
    let per = h * w * c;
    let mut images = vec![0f32; n * per];
    let mut masks = vec![0u32; n * h * w];
    let mut objects = Vec::with_capacity(n);
    for i in 0..n {
        let canvas = &mut images[i * per..(i + 1) * per];
        let mask = &mut masks[i * h * w..(i + 1) * h * w];
        let count = range(o.objects.0, o.objects.1, &mut rng);
        let mut placed: Vec<[usize; 3]> = Vec::new();
        let mut objs = Vec::new();
        for _ in 0..count {
            let src = rng.below(source.len() as u64) as usize;
            let side = range(o.scale.0, o.scale.1, &mut rng);
            let spot = (0..100).find_map(|_| {
                let s = [
                    rng.below((h - side + 1) as u64) as usize,
                    rng.below((w - side + 1) as u64) as usize,
                    side,
                ];
                placed
                    .iter()
                    .all(|p| square_iou(*p, s) <= o.max_overlap)
                    .then_some(s)
            });
            let Some([top, left, side]) = spot else {
                continue;
            };
            placed.push([top, left, side]);
            let (img, label) = source.get(src).expect("index below len");
            let obj = if [sh, sw] == [side, side] {
                img.to_vec()
            } else {
                resize_bilinear(img, [sh, sw, c], [side, side])
            };
            let (mut y0, mut x0, mut y1, mut x1) = (usize::MAX, usize::MAX, 0, 0);
            for y in 0..side {
                for x in 0..side {
                    let (cy, cx) = (top + y, left + x);
                    let px = &obj[(y * side + x) * c..][..c];
                    let dst = &mut canvas[(cy * w + cx) * c..][..c];
                    for (d, &s) in dst.iter_mut().zip(px) {
                        *d = d.max(s);
                    }
                    // An object's pixel: its brightest channel above the threshold.
                    if px.iter().cloned().fold(f32::MIN, f32::max) > o.threshold {
                        mask[cy * w + cx] = label[0] + 1;
                        (y0, x0) = (y0.min(cy), x0.min(cx));
                        (y1, x1) = (y1.max(cy + 1), x1.max(cx + 1));
                    }
                }
            }
            if y0 == usize::MAX {
                // Nothing above the threshold (a blank source image): its square is the box.
                (y0, x0, y1, x1) = (top, left, top + side, left + side);
            }
            objs.push(Placed {
                class: label[0],
                bbox: [y0 as f32, x0 as f32, y1 as f32, x1 as f32],
                source: src,
            });
        }
        objects.push(objs);
    }
    Ok(Canvases {
        images,
        shape: [h, w, c],
        objects,
        masks,
        classes: source.num_classes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten 6×6 "digits": a bright 4×4 block of value 0.5 + class/20 in a dark frame.
    fn source() -> Dataset {
        let mut images = Vec::new();
        for class in 0..10 {
            for y in 0..6 {
                for x in 0..6 {
                    let inside = (1..5).contains(&y) && (1..5).contains(&x);
                    images.push(if inside {
                        0.55 + class as f32 / 20.0
                    } else {
                        0.1
                    });
                }
            }
        }
        Dataset::new(images, [6, 6, 1], (0..10).collect(), 10).unwrap()
    }

    #[test]
    fn boxes_masks_and_pixels_agree() {
        let src = source();
        let o = CanvasOptions::new([20, 24], (1, 3), (6, 6)).seed(7);
        let a = compose(&src, 40, &o).unwrap();
        let b = compose(&src, 40, &o).unwrap();
        assert_eq!(a.images, b.images);
        assert_eq!(a.objects, b.objects);
        let mut total = 0;
        for i in 0..a.len() {
            let objs = &a.objects[i];
            assert!((1..=3).contains(&objs.len()), "{}", objs.len());
            total += objs.len();
            let (img, mask) = (a.image(i), a.mask(i));
            for p in objs {
                // The bright block of a 6×6 paste is 4×4, exactly the tight box.
                let [y0, x0, y1, x1] = p.bbox.map(|v| v as usize);
                assert_eq!((y1 - y0, x1 - x0), (4, 4));
                for y in y0..y1 {
                    for x in x0..x1 {
                        assert_eq!(mask[y * 24 + x], p.class + 1);
                        assert!((img[y * 24 + x] - (0.55 + p.class as f32 / 20.0)).abs() < 1e-6);
                    }
                }
            }
            // Every foreground pixel lies in some box; none overlap (max_overlap 0).
            let fg = mask.iter().filter(|&&m| m > 0).count();
            assert_eq!(fg, 16 * objs.len());
        }
        assert!(total > 40);
        let ds = a.mask_dataset().unwrap();
        assert_eq!(
            (ds.len(), ds.num_classes(), ds.label_shape()),
            (40, 11, &[20usize, 24][..])
        );
        // Another seed, other canvases.
        let c = compose(&src, 40, &o.clone().seed(8)).unwrap();
        assert_ne!(a.objects, c.objects);
    }

    #[test]
    fn impossible_layouts_are_invalid() {
        let src = source();
        let bad = |o: CanvasOptions| matches!(compose(&src, 1, &o), Err(Error::Invalid { .. }));
        assert!(bad(CanvasOptions::new([8, 8], (1, 1), (9, 9))));
        assert!(bad(CanvasOptions::new([8, 8], (3, 1), (4, 4))));
        assert!(bad(CanvasOptions::new([8, 8], (1, 1), (0, 4))));
        let empty = src.clone().take(0);
        let o = CanvasOptions::new([8, 8], (1, 1), (4, 4));
        assert!(compose(&empty, 1, &o).is_err());
    }
}
