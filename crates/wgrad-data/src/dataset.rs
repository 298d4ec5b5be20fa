//! [`Dataset`]: an owned, in-memory set of images (f32, `N×H×W×C` row-major NHWC) and `u32`
//! labels — one class per image, or one per pixel (a segmentation mask) — with the small operations training code needs: indexing, a seeded train/validation
//! split, truncation, per-image maps, and shape helpers (crop-or-pad, bilinear resize,
//! grey→RGB) for feeding 28×28 MNIST to networks built for 32×32 RGB.

use crate::error::{Error, Result};
use crate::rng::{derive, Rng};
use crate::transform;

const SPLIT_KEY: u64 = 0x5911_7000;

/// Which half of a dataset with a fixed train/test partition to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

/// Images as f32 in NHWC order plus `u32` labels: one per image, or an `[H, W]` mask per
/// image ([`Dataset::with_masks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    images: Vec<f32>,
    labels: Vec<u32>,
    /// Labels per sample: `[]` for one class, `[H, W]` for a mask.
    label_shape: Vec<usize>,
    /// Float targets per sample (a box: `[4]`), back to back; empty when there are none.
    targets: Vec<f32>,
    target_shape: Vec<usize>,
    shape: [usize; 3],
    num_classes: usize,
    class_names: Option<Vec<String>>,
}

impl Dataset {
    /// Builds a dataset from `labels.len()` images of shape `[h, w, c]` stored back to back.
    /// Fails with [`Error::Invalid`] when `images.len() != labels.len()·h·w·c` or a label is
    /// not below `num_classes`.
    pub fn new(
        images: Vec<f32>,
        image_shape: [usize; 3],
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self> {
        let per: usize = image_shape.iter().product();
        let expected = per.checked_mul(labels.len());
        if expected != Some(images.len()) {
            return Err(Error::Invalid {
                reason: format!(
                    "{} floats for {} images of shape {:?} (expected {})",
                    images.len(),
                    labels.len(),
                    image_shape,
                    expected.map_or("overflow".to_string(), |e| e.to_string())
                ),
            });
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(Error::Invalid {
                reason: format!("label {l} of sample {i} is not below num_classes {num_classes}"),
            });
        }
        Ok(Dataset {
            images,
            labels,
            label_shape: Vec::new(),
            targets: Vec::new(),
            target_shape: Vec::new(),
            shape: image_shape,
            num_classes,
            class_names: None,
        })
    }

    /// A segmentation set: images `[N, H, W, C]` and one class per pixel, `masks` holding
    /// `N` masks of `H×W` back to back (VOC's SegmentationClass as indices). Geometric
    /// augmentation (flips, crops) moves a mask with its image; value transforms leave it.
    /// Fails with [`Error::Invalid`] when the sizes disagree or a class is not below
    /// `num_classes`.
    pub fn with_masks(
        images: Vec<f32>,
        image_shape: [usize; 3],
        masks: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self> {
        let [h, w, _] = image_shape;
        let per = h * w;
        if per == 0 || !masks.len().is_multiple_of(per) {
            return Err(Error::Invalid {
                reason: format!(
                    "{} mask values are not a whole number of {h}×{w} masks",
                    masks.len()
                ),
            });
        }
        let n = masks.len() / per;
        let first: Vec<u32> = (0..n).map(|i| masks[i * per]).collect();
        let mut ds = Dataset::new(images, image_shape, first, num_classes)?;
        if let Some((i, &l)) = masks
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(Error::Invalid {
                reason: format!(
                    "class {l} at pixel {} of mask {} is not below num_classes {num_classes}",
                    i % per,
                    i / per
                ),
            });
        }
        ds.labels = masks;
        ds.label_shape = vec![h, w];
        Ok(ds)
    }

    /// Attaches float targets, `shape` per sample (a box: `[4]`), beside the labels: what a
    /// second output's loss trains against (Keras's `fit(x, [labels, boxes])`). Fails with
    /// [`Error::Invalid`] unless there are exactly `len()·prod(shape)` values, all finite.
    pub fn with_targets(mut self, targets: Vec<f32>, shape: &[usize]) -> Result<Self> {
        let per: usize = shape.iter().product();
        if shape.is_empty() || per == 0 || targets.len() != per * self.len() {
            return Err(Error::Invalid {
                reason: format!(
                    "{} target values for {} samples of target shape {shape:?}",
                    targets.len(),
                    self.len()
                ),
            });
        }
        if let Some(i) = targets.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid {
                reason: format!("target {} of sample {} is {}", i % per, i / per, targets[i]),
            });
        }
        self.targets = targets;
        self.target_shape = shape.to_vec();
        Ok(self)
    }

    /// Float targets per sample (`[]` when the set has none).
    pub fn target_shape(&self) -> &[usize] {
        &self.target_shape
    }

    /// Every sample's float targets back to back (empty when there are none).
    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Sample `i`'s float targets (empty when the set has none).
    pub fn targets_of(&self, i: usize) -> &[f32] {
        let t: usize = self.target_shape.iter().product();
        if self.targets.is_empty() {
            return &[];
        }
        &self.targets[i * t..(i + 1) * t]
    }

    /// Attaches human-readable class names (index = class id).
    pub fn with_class_names(mut self, names: Vec<String>) -> Self {
        self.class_names = Some(names);
        self
    }

    pub fn len(&self) -> usize {
        self.labels.len() / self.label_len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Labels per sample: `[]` (one class) or `[H, W]` (a mask).
    pub fn label_shape(&self) -> &[usize] {
        &self.label_shape
    }

    /// Labels per sample (1 for a class, `H·W` for a mask).
    pub fn label_len(&self) -> usize {
        self.label_shape.iter().product()
    }

    /// Whether the labels are per-pixel masks.
    pub fn has_masks(&self) -> bool {
        !self.label_shape.is_empty()
    }

    /// `[H, W, C]` of every image.
    pub fn image_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Floats per image (`H·W·C`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// All images, NHWC, back to back.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// Every sample's labels back to back (`len()·label_len()` values).
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Image `i` (HWC) and its labels (one class, or its mask row by row), or `None` past
    /// the end.
    pub fn get(&self, i: usize) -> Option<(&[f32], &[u32])> {
        let l = self.label_len();
        let labels = self.labels.get(i * l..(i + 1) * l)?;
        let n = self.image_len();
        Some((&self.images[i * n..(i + 1) * n], labels))
    }

    /// Takes the buffers apart: `(images, [H, W, C], labels)`.
    pub fn into_parts(self) -> (Vec<f32>, [usize; 3], Vec<u32>) {
        (self.images, self.shape, self.labels)
    }

    /// A new dataset made of the samples at `indices` (in that order; repeats allowed).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let l = self.label_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len() * l);
        let mut targets = Vec::new();
        for &i in indices {
            images.extend_from_slice(&self.images[i * n..(i + 1) * n]);
            labels.extend_from_slice(&self.labels[i * l..(i + 1) * l]);
            targets.extend_from_slice(self.targets_of(i));
        }
        Dataset {
            images,
            labels,
            label_shape: self.label_shape.clone(),
            targets,
            target_shape: self.target_shape.clone(),
            shape: self.shape,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Shuffles with `seed` and cuts: the first `round(fraction·len)` samples become the
    /// training part, the rest the validation part. Same seed, same split.
    ///
    /// # Panics
    /// If `fraction` is not within `[0, 1]`.
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        assert!(
            (0.0..=1.0).contains(&fraction),
            "split fraction must be within [0, 1], got {fraction}"
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(derive(seed, SPLIT_KEY)).shuffle(&mut order);
        let cut = ((self.len() as f64) * fraction).round() as usize;
        (self.subset(&order[..cut]), self.subset(&order[cut..]))
    }

    /// The first `min(n, len)` samples.
    pub fn take(mut self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n * self.label_len());
        self.targets
            .truncate(n * self.target_shape.iter().product::<usize>());
        self
    }

    /// Applies `f` to every image in place (an `H·W·C` HWC slice), e.g. a rescale.
    pub fn map(mut self, mut f: impl FnMut(&mut [f32])) -> Dataset {
        let n = self.image_len();
        if n > 0 {
            self.images.chunks_exact_mut(n).for_each(&mut f);
        }
        self
    }

    /// Applies `f` to every pixel value, e.g. `|x| x * 2.0 - 1.0`.
    pub fn map_pixels(mut self, f: impl Fn(f32) -> f32) -> Dataset {
        self.images.iter_mut().for_each(|x| *x = f(*x));
        self
    }

    /// Centre crop or zero-pad every image to `[h, w]` (28×28 MNIST → 32×32 adds 2 zero rows
    /// and columns on each side). See [`transform::crop_or_pad`]. Masks are cropped or padded
    /// with class 0 the same way.
    pub fn crop_or_pad(&self, h: usize, w: usize) -> Dataset {
        let mut out = self.reshape_each([h, w, self.shape[2]], |img, shape| {
            transform::crop_or_pad(img, shape, [h, w])
        });
        if self.has_masks() {
            out.labels = self.map_masks(|m, s| transform::crop_or_pad(m, s, [h, w]));
            out.label_shape = vec![h, w];
        }
        out
    }

    /// Bilinear resize of every image to `[h, w]` (half-pixel centres, as TF/Keras
    /// `resize(..., "bilinear")` without antialiasing). Masks are resized by nearest
    /// neighbour, so every pixel keeps a class of the source.
    pub fn resize(&self, h: usize, w: usize) -> Dataset {
        let mut out = self.reshape_each([h, w, self.shape[2]], |img, shape| {
            transform::resize_bilinear(img, shape, [h, w])
        });
        if self.has_masks() {
            out.labels = self.map_masks(|m, s| transform::resize_nearest(m, s, [h, w]));
            out.label_shape = vec![h, w];
        }
        out
    }

    /// Applies a geometric map to every mask, seen as a one-channel image.
    fn map_masks(&self, f: impl Fn(&[f32], [usize; 3]) -> Vec<f32>) -> Vec<u32> {
        let [h, w] = [self.label_shape[0], self.label_shape[1]];
        self.labels
            .chunks_exact(h * w)
            .flat_map(|m| {
                let m: Vec<f32> = m.iter().map(|&c| c as f32).collect();
                f(&m, [h, w, 1]).into_iter().map(|c| c.round() as u32)
            })
            .collect()
    }

    /// Repeats a single channel three times (grey → RGB). Datasets that already have
    /// three channels are returned unchanged.
    ///
    /// # Panics
    /// If the images have neither 1 nor 3 channels.
    pub fn gray_to_rgb(&self) -> Dataset {
        match self.shape[2] {
            3 => self.clone(),
            1 => self.reshape_each([self.shape[0], self.shape[1], 3], |img, _| {
                img.iter().flat_map(|&v| [v, v, v]).collect()
            }),
            c => panic!("gray_to_rgb needs 1 or 3 channels, got {c}"),
        }
    }

    /// Luma of RGB images, `0.299·R + 0.587·G + 0.114·B` (ITU-R BT.601, as
    /// `tf.image.rgb_to_grayscale`). Datasets that already have one channel are returned
    /// unchanged.
    ///
    /// # Panics
    /// If the images have neither 1 nor 3 channels.
    pub fn rgb_to_gray(&self) -> Dataset {
        match self.shape[2] {
            1 => self.clone(),
            3 => self.reshape_each([self.shape[0], self.shape[1], 1], |img, _| {
                img.chunks_exact(3)
                    .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
                    .collect()
            }),
            c => panic!("rgb_to_gray needs 1 or 3 channels, got {c}"),
        }
    }

    fn reshape_each(
        &self,
        new_shape: [usize; 3],
        f: impl Fn(&[f32], [usize; 3]) -> Vec<f32>,
    ) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(self.len() * new_shape.iter().product::<usize>());
        for i in 0..self.len() {
            images.extend(f(&self.images[i * n..(i + 1) * n], self.shape));
        }
        Dataset {
            images,
            labels: self.labels.clone(),
            label_shape: self.label_shape.clone(),
            targets: self.targets.clone(),
            target_shape: self.target_shape.clone(),
            shape: new_shape,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(n: usize) -> Dataset {
        let images = (0..n * 4).map(|v| v as f32).collect();
        Dataset::new(images, [2, 2, 1], (0..n as u32).map(|i| i % 3).collect(), 3).unwrap()
    }

    #[test]
    fn new_checks_lengths_and_labels() {
        assert!(matches!(
            Dataset::new(vec![0.0; 7], [2, 2, 1], vec![0, 1], 2),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            Dataset::new(vec![0.0; 8], [2, 2, 1], vec![0, 2], 2),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn get_take_map_split() {
        let d = ds(10);
        assert_eq!(d.len(), 10);
        assert_eq!(d.get(2), Some((&[8.0, 9.0, 10.0, 11.0][..], &[2][..])));
        assert_eq!(d.get(10), None);
        let t = d.clone().take(3);
        assert_eq!(t.len(), 3);
        assert_eq!(t.images().len(), 12);
        let m = d.clone().map(|img| img[0] = -1.0);
        assert_eq!(m.get(1).unwrap().0, &[-1.0, 5.0, 6.0, 7.0]);
        let p = d.clone().map_pixels(|x| x / 2.0);
        assert_eq!(p.get(0).unwrap().0, &[0.0, 0.5, 1.0, 1.5]);

        let (a, b) = d.split(0.7, 5);
        assert_eq!((a.len(), b.len()), (7, 3));
        let mut firsts: Vec<f32> = a
            .images()
            .chunks(4)
            .chain(b.images().chunks(4))
            .map(|c| c[0])
            .collect();
        firsts.sort_by(f32::total_cmp);
        assert_eq!(firsts, (0..10).map(|i| (i * 4) as f32).collect::<Vec<_>>());
        assert_eq!(d.split(0.7, 5), (a.clone(), b));
        assert_ne!(d.split(0.7, 6).0, a);
    }

    #[test]
    fn shape_helpers() {
        let d = ds(2);
        let p = d.crop_or_pad(4, 4);
        assert_eq!(p.image_shape(), [4, 4, 1]);
        assert_eq!(
            p.get(0).unwrap().0,
            &[0., 0., 0., 0., 0., 0., 1., 0., 0., 2., 3., 0., 0., 0., 0., 0.]
        );
        let rgb = d.gray_to_rgb();
        assert_eq!(rgb.image_shape(), [2, 2, 3]);
        assert_eq!(&rgb.get(1).unwrap().0[..6], &[4., 4., 4., 5., 5., 5.]);
        // Grey survives the round trip (the luma weights sum to 1).
        let back = rgb.rgb_to_gray();
        assert_eq!(back.image_shape(), [2, 2, 1]);
        for (a, b) in back.images().iter().zip(d.images()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let colour =
            Dataset::new(vec![1.0, 0.0, 0.0, 0.0, 0.5, 1.0], [1, 2, 3], vec![0], 1).unwrap();
        let g = colour.rgb_to_gray();
        assert!((g.images()[0] - 0.299).abs() < 1e-6 && (g.images()[1] - 0.4075).abs() < 1e-6);
        let r = d.resize(4, 4);
        assert_eq!(r.image_shape(), [4, 4, 1]);
        assert_eq!(r.get(0).unwrap().0[0], 0.0);
        assert_eq!(r.get(0).unwrap().0[15], 3.0);
    }
}
