//! DataLoader: coverage, shuffling, drop_last, prefetch == synchronous, and the transforms.

use wgrad_data::rng::Rng;
use wgrad_data::transform::{self, Transform};
use wgrad_data::{Batch, DataLoader, Dataset};

/// `n` images of 2×3×1 whose first value is the sample index and the rest distinct.
fn indexed(n: usize) -> Dataset {
    let images = (0..n)
        .flat_map(|i| (0..6).map(move |k| (i * 100 + k) as f32))
        .collect();
    Dataset::new(images, [2, 3, 1], (0..n as u32).map(|i| i % 4).collect(), 4).unwrap()
}

fn ids(batch: &Batch) -> Vec<usize> {
    let per = batch.shape[1] * batch.shape[2] * batch.shape[3];
    batch
        .images
        .chunks(per)
        .map(|c| c[0] as usize / 100)
        .collect()
}

fn epoch_ids(loader: &DataLoader, epoch: u64) -> Vec<usize> {
    loader.epoch(epoch).flat_map(|b| ids(&b)).collect()
}

#[test]
fn batches_cover_every_sample_once() {
    for shuffle in [false, true] {
        let loader = DataLoader::new(indexed(10), 3).shuffle(shuffle).seed(9);
        let batches: Vec<Batch> = loader.epoch(0).collect();
        assert_eq!(loader.num_batches(), 4);
        assert_eq!(
            batches.iter().map(Batch::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        assert_eq!(batches[0].shape, [3, 2, 3, 1]);
        assert_eq!(batches[3].shape, [1, 2, 3, 1]);
        let mut seen: Vec<usize> = batches.iter().flat_map(ids).collect();
        if !shuffle {
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // Labels travel with their images.
        for b in &batches {
            for (id, l) in ids(b).into_iter().zip(&b.labels) {
                assert_eq!(*l as usize, id % 4);
            }
        }
    }
}

#[test]
fn drop_last() {
    let loader = DataLoader::new(indexed(10), 4)
        .shuffle(true)
        .seed(1)
        .drop_last(true);
    let it = loader.epoch(0);
    assert_eq!(it.len(), 2);
    let batches: Vec<Batch> = it.collect();
    assert!(batches.iter().all(|b| b.len() == 4));
    let mut seen: Vec<usize> = batches.iter().flat_map(ids).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
    // Exact multiple: nothing dropped.
    let l = DataLoader::new(indexed(8), 4).drop_last(true);
    assert_eq!(l.epoch(0).count(), 2);
}

#[test]
fn shuffle_reproducible_and_different_across_epochs() {
    let a = DataLoader::new(indexed(50), 7).shuffle(true).seed(42);
    let b = DataLoader::new(indexed(50), 7).shuffle(true).seed(42);
    let c = DataLoader::new(indexed(50), 7).shuffle(true).seed(43);
    assert_eq!(epoch_ids(&a, 0), epoch_ids(&b, 0));
    assert_eq!(epoch_ids(&a, 3), epoch_ids(&b, 3));
    assert_ne!(epoch_ids(&a, 0), epoch_ids(&a, 1));
    assert_ne!(epoch_ids(&a, 0), epoch_ids(&c, 0));
    assert_ne!(epoch_ids(&a, 0), (0..50).collect::<Vec<_>>());
    assert_eq!(epoch_ids(&a, 0), a.order(0));
}

#[test]
fn prefetch_yields_the_synchronous_batches() {
    let loader = DataLoader::new(indexed(37), 5)
        .shuffle(true)
        .seed(7)
        .transform(Transform::random_horizontal_flip())
        .transform(Transform::random_crop(1))
        .transform(Transform::rescale(0.5, 1.0));
    for epoch in 0..3 {
        let sync: Vec<Batch> = loader.epoch_sync(epoch).collect();
        for depth in [1, 2, 8] {
            let pre: Vec<Batch> = loader.epoch_prefetch(epoch, depth).collect();
            assert_eq!(pre, sync, "epoch {epoch}, depth {depth}");
        }
        assert_eq!(
            loader.clone().prefetch(0).epoch(epoch).collect::<Vec<_>>(),
            sync
        );
    }
    // Augmentation is reproducible too, and differs across epochs.
    assert_ne!(
        loader.epoch(0).collect::<Vec<_>>(),
        loader.epoch(1).collect::<Vec<_>>()
    );
    // Dropping a prefetching iterator early stops its worker (this would hang otherwise).
    let mut it = loader.epoch_prefetch(0, 1);
    assert!(it.next().is_some());
    drop(it);
}

#[test]
fn flip_is_an_exact_mirror() {
    // 2×3×2 image: value = y*10 + x + channel/10.
    let shape = [2, 3, 2];
    let img: Vec<f32> = (0..2)
        .flat_map(|y| {
            (0..3).flat_map(move |x| (0..2).map(move |c| (y * 10 + x) as f32 + c as f32 / 10.0))
        })
        .collect();
    let mut f = img.clone();
    transform::hflip(&mut f, shape);
    for y in 0..2 {
        for x in 0..3 {
            for c in 0..2 {
                assert_eq!(f[(y * 3 + x) * 2 + c], img[(y * 3 + (2 - x)) * 2 + c]);
            }
        }
    }
    let d = Dataset::new(img.clone(), shape, vec![0], 1).unwrap();
    let always = DataLoader::new(d.clone(), 1).transform(Transform::HorizontalFlip { p: 1.0 });
    assert_eq!(always.epoch(0).next().unwrap().images, f);
    let never = DataLoader::new(d, 1).transform(Transform::HorizontalFlip { p: 0.0 });
    assert_eq!(never.epoch(0).next().unwrap().images, img);
}

#[test]
fn padded_crop_shifts_content() {
    let shape = [3, 3, 1];
    let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    // Centre window: unchanged.
    assert_eq!(transform::crop_padded(&img, shape, 1, 1, 1), img);
    // Window at the padded top-left: content moves down-right by one, zeros enter.
    assert_eq!(
        transform::crop_padded(&img, shape, 1, 0, 0),
        vec![0., 0., 0., 0., 1., 2., 0., 4., 5.]
    );
    // Bottom-right: content moves up-left.
    assert_eq!(
        transform::crop_padded(&img, shape, 1, 2, 2),
        vec![5., 6., 0., 8., 9., 0., 0., 0., 0.]
    );

    // In the loader every output is one of the (2p+1)² shifts, shape kept, several used.
    let pad = 2;
    let n = 40;
    let images = (0..n).flat_map(|_| img.clone()).collect();
    let d = Dataset::new(images, shape, vec![0; n], 1).unwrap();
    let loader = DataLoader::new(d, 8)
        .seed(3)
        .transform(Transform::random_crop(pad));
    let mut offsets = Vec::new();
    for b in loader.epoch(0) {
        assert_eq!(&b.shape[1..], &[3, 3, 1]);
        for out in b.images.chunks(9) {
            let hit = (0..=2 * pad)
                .flat_map(|t| (0..=2 * pad).map(move |l| (t, l)))
                .find(|&(t, l)| transform::crop_padded(&img, shape, pad, t, l) == out)
                .expect("output is a padded crop");
            offsets.push(hit);
        }
    }
    offsets.sort();
    offsets.dedup();
    assert!(offsets.len() > 5, "{offsets:?}");
}

#[test]
fn normalize_and_rescale_math() {
    let shape = [1, 2, 2];
    let mut img = vec![1.0, 0.5, 0.0, 4.5];
    transform::normalize(&mut img, shape, &[0.5, 0.5], &[0.5, 2.0]);
    assert_eq!(img, vec![1.0, 0.0, -1.0, 2.0]);

    let d = Dataset::new(vec![1.0, 0.5, 0.0, 4.5], shape, vec![0], 1).unwrap();
    let loader = DataLoader::new(d, 1)
        .transform(Transform::rescale(2.0, -1.0))
        .transform(Transform::normalize(&[0.0, 1.0], &[1.0, 4.0]));
    assert_eq!(
        loader.epoch(0).next().unwrap().images,
        vec![1.0, -0.25, -1.0, 1.75]
    );
    // A deterministic step used directly.
    let mut r = Rng::new(5);
    let mut scratch = Vec::new();
    let mut x = vec![0.25; 4];
    Transform::rescale(4.0, 0.0).apply(&mut x, shape, &mut r, &mut scratch);
    assert_eq!(x, vec![1.0; 4]);
}

#[test]
#[should_panic(expected = "channels")]
fn normalize_with_wrong_channel_count_is_rejected() {
    let d = Dataset::new(vec![0.0; 4], [2, 2, 1], vec![0], 1).unwrap();
    let _ = DataLoader::new(d, 1).transform(Transform::normalize(&[0.5; 3], &[0.5; 3]));
}

#[test]
fn mnist_to_32x32_rgb() {
    let img: Vec<f32> = (0..28 * 28).map(|v| 1.0 + v as f32).collect();
    let d = Dataset::new(img.clone(), [28, 28, 1], vec![3], 10).unwrap();
    let p = d.crop_or_pad(32, 32).gray_to_rgb();
    assert_eq!(p.image_shape(), [32, 32, 3]);
    let out = p.get(0).unwrap().0;
    for y in 0..32 {
        for x in 0..32 {
            let inside = (2..30).contains(&y) && (2..30).contains(&x);
            let want = if inside {
                img[(y - 2) * 28 + (x - 2)]
            } else {
                0.0
            };
            assert_eq!(&out[(y * 32 + x) * 3..(y * 32 + x + 1) * 3], &[want; 3]);
        }
    }
    // And back: cropping 32 → 28 recovers the original.
    let back = d.crop_or_pad(32, 32).crop_or_pad(28, 28);
    assert_eq!(back.images(), &img[..]);
}

#[test]
fn shards_are_disjoint_equal_and_together_one_epoch() {
    for (n, replicas) in [(12, 2), (10, 3), (7, 4)] {
        for epoch in 0..2 {
            let base = DataLoader::new(indexed(n), 2).shuffle(true).seed(5);
            let whole = base.order(epoch);
            let shares: Vec<Vec<usize>> = (0..replicas)
                .map(|r| epoch_ids(&base.clone().shard(r, replicas), epoch))
                .collect();
            let per = n.div_ceil(replicas);
            for (r, s) in shares.iter().enumerate() {
                assert_eq!(s.len(), per, "replica {r} of {replicas}, {n} samples");
                // Replica r takes every replicas-th sample of the epoch's order, padded by
                // repeating its start.
                let want: Vec<usize> = (r..per * replicas)
                    .step_by(replicas)
                    .map(|i| whole[i % n])
                    .collect();
                assert_eq!(*s, want);
            }
            let mut all: Vec<usize> = shares.concat();
            all.sort();
            all.dedup();
            assert_eq!(
                all,
                (0..n).collect::<Vec<_>>(),
                "every sample is in some share"
            );
            if n % replicas == 0 {
                let total: usize = shares.iter().map(Vec::len).sum();
                assert_eq!(total, n, "disjoint when the count divides evenly");
            }
        }
    }
    // One replica is the whole epoch.
    let l = DataLoader::new(indexed(5), 2).shard(0, 1);
    assert_eq!(epoch_ids(&l, 0), (0..5).collect::<Vec<_>>());
}
