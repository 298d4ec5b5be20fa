//! [`DataLoader`]: cuts a [`Dataset`] into [`Batch`]es — optionally shuffled per epoch,
//! optionally dropping the last short batch, with per-sample [`Transform`]s — either on the
//! calling thread or on a worker thread that prepares the next batches while the consumer
//! trains (`std::thread` + a bounded `sync_channel`).
//!
//! Reproducibility: epoch `e` of a loader with seed `s` always yields the same batches. The
//! order comes from a generator seeded with (`s`, `e`), so epochs differ from one another; each
//! sample's augmentation draws from a generator seeded with (`s`, `e`, sample index), so the
//! prefetching and synchronous paths produce identical batches.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::dataset::Dataset;
use crate::rng::{derive, Rng};
use crate::transform::Transform;

const ORDER_KEY: u64 = 0x0DE2;
const AUGMENT_KEY: u64 = 0xA06;

/// One batch on the host, ready to upload: images NHWC (`shape = [N, H, W, C]`) and labels
/// (`[N]` classes, or `[N, H, W]` masks: see `label_shape`).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub shape: [usize; 4],
    pub labels: Vec<u32>,
    /// The labels' shape: `[N]` or `[N, H, W]`.
    pub label_shape: Vec<usize>,
    /// Float targets (boxes), `target_shape = [N, …]`; both empty when the set has none.
    pub targets: Vec<f32>,
    pub target_shape: Vec<usize>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }
}

/// Batches over a dataset; see the module documentation.
#[derive(Clone, Debug)]
pub struct DataLoader {
    dataset: Arc<Dataset>,
    batch_size: usize,
    drop_last: bool,
    shuffle: bool,
    seed: u64,
    transforms: Arc<Vec<Transform>>,
    prefetch: usize,
    /// `(rank, replicas)` of a data-parallel job: this loader yields only its share.
    shard: Option<(usize, usize)>,
}

impl DataLoader {
    /// A loader with no shuffle, seed 0, no transforms, keeping the last short batch, and a
    /// prefetch depth of 2.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn new(dataset: impl Into<Arc<Dataset>>, batch_size: usize) -> Self {
        assert!(batch_size > 0, "batch_size must be positive");
        DataLoader {
            dataset: dataset.into(),
            batch_size,
            drop_last: false,
            shuffle: false,
            seed: 0,
            transforms: Arc::new(Vec::new()),
            prefetch: 2,
            shard: None,
        }
    }

    /// Yields only replica `rank`'s share of every epoch, as PyTorch's `DistributedSampler`:
    /// the epoch's order (the same on every replica: same seed, same shuffle) is padded by
    /// repeating its start to a multiple of `replicas`, and replica `rank` takes every
    /// `replicas`-th sample from position `rank`. The shares are disjoint and equal in size,
    /// so every replica runs the same number of steps, and a step's batches on all replicas
    /// together are one batch `replicas` times larger.
    ///
    /// # Panics
    /// If `rank >= replicas`.
    pub fn shard(mut self, rank: usize, replicas: usize) -> Self {
        assert!(
            rank < replicas,
            "rank {rank} is not below the replica count {replicas}"
        );
        self.shard = (replicas > 1).then_some((rank, replicas));
        self
    }

    /// Samples one epoch yields (this replica's share when sharded).
    pub fn len(&self) -> usize {
        match self.shard {
            Some((_, r)) => self.dataset.len().div_ceil(r),
            None => self.dataset.len(),
        }
    }

    /// True when an epoch yields no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuffle the order every epoch (differently per epoch, reproducibly per seed).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Seed of the shuffle and of the random transforms.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Drop the last batch when it is shorter than `batch_size`.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// Batches a worker thread may have ready ahead of the consumer; 0 makes [`epoch`]
    /// synchronous.
    ///
    /// [`epoch`]: DataLoader::epoch
    pub fn prefetch(mut self, depth: usize) -> Self {
        self.prefetch = depth;
        self
    }

    /// Appends a per-sample transform (applied in the order added).
    ///
    /// # Panics
    /// If the transform does not fit the images (a `Normalize` with one entry per channel
    /// of another channel count).
    pub fn transform(mut self, t: Transform) -> Self {
        let c = self.dataset.image_shape()[2];
        assert!(
            t.supports_channels(c),
            "{t:?} does not apply to images with {c} channels"
        );
        Arc::make_mut(&mut self.transforms).push(t);
        self
    }

    /// Whether some transform moves pixels (a flip, a crop): float targets such as boxes
    /// would no longer describe the image, so training refuses that combination.
    pub fn moves_pixels(&self) -> bool {
        self.transforms.iter().any(Transform::is_geometric)
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The sample order of epoch `epoch` (identity when not shuffling; this replica's share
    /// when sharded).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            Rng::new(derive(derive(self.seed, ORDER_KEY), epoch)).shuffle(&mut order);
        }
        match self.shard {
            Some((rank, replicas)) if !order.is_empty() => {
                let padded = self.len() * replicas;
                (rank..padded)
                    .step_by(replicas)
                    .map(|i| order[i % order.len()])
                    .collect()
            }
            _ => order,
        }
    }

    fn plan(&self, epoch: u64) -> Plan {
        Plan {
            dataset: Arc::clone(&self.dataset),
            transforms: Arc::clone(&self.transforms),
            order: self.order(epoch),
            batch_size: self.batch_size,
            num_batches: self.num_batches(),
            augment_seed: derive(derive(self.seed, AUGMENT_KEY), epoch),
        }
    }

    /// The batches of epoch `epoch`: prepared on a worker thread when the prefetch depth is
    /// above 0, else on the calling thread. Dropping the iterator early stops the worker.
    pub fn epoch(&self, epoch: u64) -> Batches {
        if self.prefetch == 0 {
            self.epoch_sync(epoch)
        } else {
            self.epoch_prefetch(epoch, self.prefetch)
        }
    }

    /// The batches of epoch `epoch`, prepared on the calling thread.
    pub fn epoch_sync(&self, epoch: u64) -> Batches {
        Batches {
            next: 0,
            total: self.num_batches(),
            inner: Inner::Sync(self.plan(epoch)),
        }
    }

    /// The batches of epoch `epoch`, prepared on a worker thread at most `depth` (≥ 1) ahead.
    pub fn epoch_prefetch(&self, epoch: u64, depth: usize) -> Batches {
        let plan = self.plan(epoch);
        let total = plan.num_batches;
        let (tx, rx) = sync_channel(depth.max(1));
        let worker = std::thread::Builder::new()
            .name("wgrad-data-prefetch".into())
            .spawn(move || {
                for k in 0..plan.num_batches {
                    if tx.send(plan.batch(k)).is_err() {
                        break; // consumer dropped the iterator
                    }
                }
            });
        match worker {
            Ok(handle) => Batches {
                next: 0,
                total,
                inner: Inner::Prefetch {
                    rx: Some(rx),
                    handle: Some(handle),
                },
            },
            // No thread available: fall back to preparing batches on the caller.
            Err(_) => self.epoch_sync(epoch),
        }
    }
}

/// Everything needed to build any batch of one epoch, shareable with a worker thread.
struct Plan {
    dataset: Arc<Dataset>,
    transforms: Arc<Vec<Transform>>,
    order: Vec<usize>,
    batch_size: usize,
    num_batches: usize,
    augment_seed: u64,
}

impl Plan {
    fn batch(&self, k: usize) -> Batch {
        let start = k * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let idx = &self.order[start..end];
        let shape = self.dataset.image_shape();
        let per = self.dataset.image_len();
        let mut images = Vec::with_capacity(idx.len() * per);
        let mut labels = Vec::with_capacity(idx.len() * self.dataset.label_len());
        let mut scratch = Vec::new();
        let mut mask = Vec::new();
        let masks = self.dataset.has_masks();
        for &i in idx {
            let Some((img, label)) = self.dataset.get(i) else {
                unreachable!("order holds indices below len")
            };
            let at = images.len();
            images.extend_from_slice(img);
            if self.transforms.is_empty() {
                labels.extend_from_slice(label);
                continue;
            }
            mask.clear();
            mask.extend(label.iter().map(|&c| c as f32));
            let mut rng = Rng::new(derive(self.augment_seed, i as u64));
            for t in self.transforms.iter() {
                // The mask replays the image's draws, so a flip or crop moves both alike.
                let draws = rng.clone();
                t.apply(&mut images[at..], shape, &mut rng, &mut scratch);
                if masks && t.is_geometric() {
                    let mut same = draws;
                    t.apply(&mut mask, [shape[0], shape[1], 1], &mut same, &mut scratch);
                }
            }
            labels.extend(mask.iter().map(|&c| c.round() as u32));
        }
        let mut label_shape = vec![idx.len()];
        label_shape.extend_from_slice(self.dataset.label_shape());
        let targets: Vec<f32> = idx
            .iter()
            .flat_map(|&i| self.dataset.targets_of(i).iter().copied())
            .collect();
        let target_shape = if self.dataset.target_shape().is_empty() {
            Vec::new()
        } else {
            let mut t = vec![idx.len()];
            t.extend_from_slice(self.dataset.target_shape());
            t
        };
        Batch {
            images,
            shape: [idx.len(), shape[0], shape[1], shape[2]],
            labels,
            label_shape,
            targets,
            target_shape,
        }
    }
}

enum Inner {
    Sync(Plan),
    Prefetch {
        rx: Option<Receiver<Batch>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// Iterator over one epoch's batches (see [`DataLoader::epoch`]).
pub struct Batches {
    next: usize,
    total: usize,
    inner: Inner,
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let batch = match &mut self.inner {
            Inner::Sync(plan) => Some(plan.batch(self.next)),
            Inner::Prefetch { rx, handle } => {
                match rx.as_ref().and_then(|r| r.recv().ok()) {
                    Some(b) => Some(b),
                    None => {
                        // The worker stopped early: it can only have panicked. Re-raise its
                        // panic here instead of ending the epoch silently short.
                        if let Some(h) = handle.take() {
                            if let Err(p) = h.join() {
                                std::panic::resume_unwind(p);
                            }
                        }
                        None
                    }
                }
            }
        };
        self.next += 1;
        batch
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next.min(self.total);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Inner::Prefetch { rx, handle } = &mut self.inner {
            drop(rx.take()); // unblocks a worker waiting in send()
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
