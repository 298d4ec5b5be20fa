//! Host-side data for wgrad: datasets, readers, augmentation and a prefetching loader.
//!
//! This crate knows nothing of GPUs (no wgpu, no wgrad-tensor): it produces plain host batches
//! ([`Batch`]: `Vec<f32>` images in NHWC order with their `[N, H, W, C]` shape, and `Vec<u32>`
//! labels) that training code uploads.
//!
//! - [`Dataset`]: owned images (f32, NHWC) + labels, with `get`, `split`, `take`, `map`,
//!   crop-or-pad / resize / grey→RGB helpers (e.g. MNIST 28×28×1 → 32×32×3 for ResNet).
//! - Readers, all returning the typed [`Error`] (never panicking on bad files):
//!   [`idx`] (MNIST format, raw or gzipped) with [`mnist`] and [`fashion_mnist`];
//!   [`cifar`] (CIFAR-10/100 binary) with [`cifar10`] and [`cifar100`];
//!   [`folder`] ([`image_folder`]: `root/<class>/*.png|jpg`).
//! - [`DataLoader`]: batch size, `drop_last`, seeded per-epoch shuffle, per-sample
//!   [`Transform`]s (random flip, random padded crop, normalize, rescale), batches prepared on
//!   a worker thread ahead of the consumer. Same seed and epoch → same batches.
//!
//! # Where named datasets are looked for
//!
//! [`mnist`], [`fashion_mnist`], [`cifar10`] and [`cifar100`] search, in order: the directory
//! passed in; `$WGRAD_DATA/<name>`; `$WGRAD_DATA`; a system directory (Fashion-MNIST only:
//! `/usr/share/datasets/fashion-mnist`, installed by `apt-get install dataset-fashion-mnist`);
//! the cache `$XDG_CACHE_HOME/wgrad/<name>` or `~/.cache/wgrad/<name>`. `<name>` is `mnist`,
//! `fashion-mnist`, `cifar-10-batches-bin` or `cifar-100-binary`. When none holds the files the
//! error is [`Error::NotFound`], listing every searched directory and saying where to put the
//! files. MNIST and Fashion-MNIST are then downloaded from their canonical mirrors into the
//! cache ([`download`]: the SHA-256 of the decompressed content is verified, the file is
//! renamed into place only once complete; `WGRAD_OFFLINE=1` disables it); without network
//! the not-found error also says why the download failed. CIFAR-10/100 are downloaded as
//! their binary tarballs (the MD5 published with them checked) and extracted into the cache. The `*_from` /
//! `load_*_from` functions take the search list explicitly and never download.
//!
//! ```no_run
//! use wgrad_data::{fashion_mnist, DataLoader, Split, Transform};
//! let train = fashion_mnist(None, Split::Train)?.crop_or_pad(32, 32);
//! let loader = DataLoader::new(train, 128)
//!     .shuffle(true)
//!     .seed(42)
//!     .drop_last(true)
//!     .transform(Transform::random_horizontal_flip())
//!     .transform(Transform::random_crop(4));
//! for epoch in 0..10 {
//!     for batch in loader.epoch(epoch) {
//!         let _ = (batch.shape, &batch.images, &batch.labels); // upload and train
//!     }
//! }
//! # Ok::<(), wgrad_data::Error>(())
//! ```

pub mod annotations;
pub mod canvas;
pub mod cifar;
mod dataset;
pub mod download;
mod error;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod masks;
pub mod rng;
pub mod search;
pub mod transform;

pub use annotations::{coco_folder, yolo_folder};
pub use canvas::{compose, CanvasOptions, Canvases, Placed};
pub use cifar::{cifar10, cifar100, Cifar100Label};
pub use dataset::{Dataset, Split};
pub use error::{Error, Result};
pub use folder::image_folder;
pub use idx::{fashion_mnist, mnist};
pub use loader::{Batch, Batches, DataLoader};
pub use masks::MaskFolder;
pub use transform::Transform;
