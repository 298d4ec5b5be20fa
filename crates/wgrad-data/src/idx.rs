//! IDX files (the MNIST format) and the MNIST / Fashion-MNIST loaders.
//!
//! An IDX file is a big-endian header — magic `0x00000803` for `u8` images (count, rows,
//! cols), `0x00000801` for `u8` labels (count) — followed by the raw bytes. Files may be gzipped
//! or not; gzip is recognised by its magic bytes `1f 8b`, never by the file name. Pixels are
//! scaled to `[0, 1]` f32 by [`read_images`] ([`read_images_u8`] keeps the bytes).
//!
//! [`mnist`] and [`fashion_mnist`] look for the four standard files
//! (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each optionally `.gz`; the `train-images.idx3-ubyte` spelling of
//! some archives is accepted too) in the directories listed in [`crate::search`]: the given
//! directory, `$WGRAD_DATA/<mnist|fashion-mnist>`, `$WGRAD_DATA`, for Fashion-MNIST
//! `/usr/share/datasets/fashion-mnist` (Debian/Ubuntu package `dataset-fashion-mnist`), then
//! the cache `~/.cache/wgrad/<name>`. Both files of a split must sit in the same directory.
//! (The Debian package installs the four standard gzipped names, e.g.
//! `/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz`.)
//!
//! When no directory holds a split, [`load`] downloads its two files from the data set's
//! canonical mirror into the cache (see [`crate::download`]: the SHA-256 of the decompressed
//! content is checked before the file is kept). Without network, or with `WGRAD_OFFLINE=1`,
//! the error lists every searched directory, says where to put the files and why the
//! download failed.

use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, Split};
use crate::download::{fetch, not_found_after, offline, Remote};
use crate::error::{maybe_gunzip, Error, Result};
use crate::search::{cache_dir, find_file, search_dirs};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images read from an IDX file, pixels scaled to `[0, 1]`, row-major `count×rows×cols`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<f32>,
}

/// Parses the header of an IDX file with `magic` and returns its dimensions and payload.
fn parse<'a>(path: &Path, bytes: &'a [u8], magic: u32) -> Result<(Vec<usize>, &'a [u8])> {
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    let got = bytes.len() as u64;
    if bytes.len() < 4 {
        return Err(Error::Truncated {
            path: path.into(),
            expected: header as u64,
            got,
        });
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        let what = if magic == IMAGES_MAGIC {
            "an IDX images file"
        } else {
            "an IDX labels file"
        };
        return Err(Error::format(
            path,
            format!("bad magic number 0x{found:08x}, expected 0x{magic:08x} for {what}"),
        ));
    }
    if bytes.len() < header {
        return Err(Error::Truncated {
            path: path.into(),
            expected: header as u64,
            got,
        });
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let payload = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::format(path, format!("dimensions {dims:?} overflow")))?;
    let expected = header as u64 + payload as u64;
    if got < expected {
        return Err(Error::Truncated {
            path: path.into(),
            expected,
            got,
        });
    }
    if got > expected {
        return Err(Error::format(
            path,
            format!(
                "{} trailing bytes after the {expected} the header {dims:?} describes",
                got - expected
            ),
        ));
    }
    Ok((dims, &bytes[header..]))
}

/// Parses the bytes of an IDX images file (raw or gzipped; `origin` names it in errors),
/// keeping the pixel bytes: `(pixels, [count, rows, cols])`.
pub fn parse_images(bytes: &[u8], origin: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = maybe_gunzip(origin, bytes.to_vec())?;
    let (dims, data) = parse(origin, &bytes, IMAGES_MAGIC)?;
    Ok((data.to_vec(), [dims[0], dims[1], dims[2]]))
}

/// Parses the bytes of an IDX labels file (raw or gzipped; `origin` names it in errors).
pub fn parse_labels(bytes: &[u8], origin: &Path) -> Result<Vec<u32>> {
    let bytes = maybe_gunzip(origin, bytes.to_vec())?;
    let (_, data) = parse(origin, &bytes, LABELS_MAGIC)?;
    Ok(data.iter().map(|&b| b as u32).collect())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads an IDX images file (raw or gzipped) keeping the bytes: `(pixels, [count, rows, cols])`.
pub fn read_images_u8(path: impl AsRef<Path>) -> Result<(Vec<u8>, [usize; 3])> {
    let path = path.as_ref();
    parse_images(&read(path)?, path)
}

/// Reads an IDX images file (raw or gzipped), scaling pixels to `[0, 1]`.
pub fn read_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let (data, [count, rows, cols]) = read_images_u8(path)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: data.iter().map(|&b| b as f32 / 255.0).collect(),
    })
}

/// Reads an IDX labels file (raw or gzipped).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    parse_labels(&read(path)?, path)
}

/// Reads a pair of IDX files into a [`Dataset`] of `rows×cols×1` images. Fails with
/// [`Error::CountMismatch`] when the counts differ and [`Error::Format`] (naming the labels
/// file) when a label is not below `num_classes`.
pub fn read_pair(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    num_classes: usize,
) -> Result<Dataset> {
    let img = read_images(images)?;
    let lab = read_labels(labels.as_ref())?;
    if img.count != lab.len() {
        return Err(Error::CountMismatch {
            images: img.count,
            labels: lab.len(),
        });
    }
    if let Some((i, l)) = lab
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        return Err(Error::format(
            labels.as_ref(),
            format!("label {l} of sample {i} is not below {num_classes}"),
        ));
    }
    Dataset::new(img.pixels, [img.rows, img.cols, 1], lab, num_classes)
}

/// A named IDX dataset: where to look and what to tell the user when it is missing.
#[derive(Clone, Copy, Debug)]
pub struct IdxSpec {
    /// Sub-directory name under `$WGRAD_DATA` and the cache.
    pub name: &'static str,
    /// A system-wide directory, searched after `$WGRAD_DATA`.
    pub system_dir: Option<&'static str>,
    pub class_names: &'static [&'static str],
    /// Where the files come from, for the not-found message.
    pub source_hint: &'static str,
    /// Base URL of the canonical mirror (ending in `/`), holding the four standard `.gz` names.
    pub mirror: &'static str,
    /// SHA-256 of the decompressed content of train images, train labels, test images and test
    /// labels, in that order.
    pub sha256: [&'static str; 4],
}

/// MNIST handwritten digits.
pub const MNIST: IdxSpec = IdxSpec {
    name: "mnist",
    system_dir: None,
    class_names: &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    source_hint: "download them from https://storage.googleapis.com/cvdf-datasets/mnist/ \
                  (mirror of http://yann.lecun.com/exdb/mnist/)",
    mirror: "https://storage.googleapis.com/cvdf-datasets/mnist/",
    sha256: [
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ],
};

/// Zalando's Fashion-MNIST.
pub const FASHION_MNIST: IdxSpec = IdxSpec {
    name: "fashion-mnist",
    system_dir: Some("/usr/share/datasets/fashion-mnist"),
    class_names: &[
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    source_hint: "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them into \
                  /usr/share/datasets/fashion-mnist; or download them from \
                  http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    mirror: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    sha256: [
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ],
};

/// Accepted file names for one split: `(images, labels)`, each in preference order.
fn file_names(split: Split) -> (Vec<String>, Vec<String>) {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let variants = |kind: &str, idx: &str| {
        let mut v = Vec::new();
        for base in [
            format!("{prefix}-{kind}-{idx}-ubyte"),
            format!("{prefix}-{kind}.{idx}-ubyte"),
        ] {
            v.push(format!("{base}.gz"));
            v.push(base);
        }
        v
    };
    (variants("images", "idx3"), variants("labels", "idx1"))
}

/// Loads one split of `spec` from the first of `dirs` that holds both of its files.
/// Returns [`Error::NotFound`] listing `dirs` when none does.
pub fn load_from(spec: &IdxSpec, split: Split, dirs: &[PathBuf]) -> Result<Dataset> {
    let (image_names, label_names) = file_names(split);
    for dir in dirs {
        if let (Some(images), Some(labels)) =
            (find_file(dir, &image_names), find_file(dir, &label_names))
        {
            let names = spec.class_names.iter().map(|s| s.to_string()).collect();
            return Ok(read_pair(images, labels, spec.class_names.len())?.with_class_names(names));
        }
    }
    Err(Error::NotFound {
        searched: dirs.to_vec(),
        hint: format!(
            "put {} and {} (gzipped or not) in one of these directories, pass the directory \
             explicitly, or set $WGRAD_DATA; {}",
            image_names[1], label_names[1], spec.source_hint
        ),
    })
}

/// Loads one split of `spec`, searching `dir` then the default locations (see the module
/// documentation), and downloading into the cache when none holds it.
pub fn load(spec: &IdxSpec, dir: Option<&Path>, split: Split) -> Result<Dataset> {
    let dirs = search_dirs(spec.name, dir, spec.system_dir.map(Path::new));
    let cache = if offline() {
        None
    } else {
        cache_dir().map(|c| c.join(spec.name))
    };
    load_or_fetch(spec, split, &dirs, cache.as_deref())
}

/// [`load_from`] `dirs`; when none holds the split and `cache` is given, downloads the split's
/// two files from `spec.mirror` into `cache` (verified by [`Remote::sha256`]) and loads them.
/// A failed download becomes [`Error::NotFound`], whose hint adds why the download failed.
pub fn load_or_fetch(
    spec: &IdxSpec,
    split: Split,
    dirs: &[PathBuf],
    cache: Option<&Path>,
) -> Result<Dataset> {
    let err = match load_from(spec, split, dirs) {
        Err(e @ Error::NotFound { .. }) => e,
        other => return other,
    };
    let Some(cache) = cache else { return Err(err) };
    let (image_names, label_names) = file_names(split);
    let (ih, lh) = match split {
        Split::Train => (spec.sha256[0], spec.sha256[1]),
        Split::Test => (spec.sha256[2], spec.sha256[3]),
    };
    let fetched = [(&image_names[0], ih), (&label_names[0], lh)]
        .into_iter()
        .map(|(file, sha256)| {
            let url = format!("{}{file}", spec.mirror);
            fetch(
                &Remote {
                    file,
                    url: &url,
                    sha256,
                },
                cache,
            )
        })
        .collect::<Result<Vec<PathBuf>>>();
    match fetched {
        Ok(paths) => {
            let names = spec.class_names.iter().map(|s| s.to_string()).collect();
            Ok(read_pair(&paths[0], &paths[1], spec.class_names.len())?.with_class_names(names))
        }
        Err(download) => Err(not_found_after(err, cache, download)),
    }
}

/// MNIST, 28×28×1 images in `[0, 1]`, 10 classes. `dir`: a directory to search first.
pub fn mnist(dir: Option<&Path>, split: Split) -> Result<Dataset> {
    load(&MNIST, dir, split)
}

/// Fashion-MNIST, 28×28×1 images in `[0, 1]`, 10 classes. `dir`: a directory to search first.
pub fn fashion_mnist(dir: Option<&Path>, split: Split) -> Result<Dataset> {
    load(&FASHION_MNIST, dir, split)
}
