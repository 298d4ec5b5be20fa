//! CIFAR-10 and CIFAR-100 in their binary distributions.
//!
//! A file is a sequence of records: the label byte(s) — 1 for CIFAR-10; 2 for CIFAR-100,
//! coarse then fine — followed by 3072 pixel bytes in CHW order (1024 red, 1024 green,
//! 1024 blue, each row-major 32×32). Records are converted to HWC f32 in `[0, 1]`. A file whose
//! size is not a whole number of records is rejected with [`Error::Truncated`]. Gzipped files
//! are accepted (detected by magic bytes).
//!
//! Files: CIFAR-10 `data_batch_1.bin` … `data_batch_5.bin` (train) and `test_batch.bin`
//! (`cifar-10-binary.tar.gz` extracts them into `cifar-10-batches-bin/`); CIFAR-100
//! `train.bin` / `test.bin` (in `cifar-100-binary/`, with `coarse_label_names.txt` and
//! `fine_label_names.txt`, read when present). [`cifar10`] and [`cifar100`] search the given
//! directory, `$WGRAD_DATA/<cifar-10-batches-bin|cifar-100-binary>`, `$WGRAD_DATA`, then the
//! cache `~/.cache/wgrad/<same name>` (see [`crate::search`]); when none holds the files the
//! binary archive is downloaded from the CIFAR page into the cache, its MD5 checked against
//! the one published there, and extracted (`WGRAD_OFFLINE=1` turns this off).

use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, Split};
use crate::download::{fetch_archive, not_found_after, offline, read_class_names, Archive};
use crate::error::{maybe_gunzip, Error, Result};
use crate::search::{cache_dir, search_dirs};

/// Pixel bytes per record (3×32×32).
pub const RECORD_PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR-100 label to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar100Label {
    /// The 20 superclasses.
    Coarse,
    /// The 100 classes.
    Fine,
}

/// CIFAR-10's class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Decodes records with `label_bytes` leading label bytes, keeping label byte `keep`, checking
/// it is below `num_classes`. Returns HWC f32 images and labels.
fn parse_records(
    path: &Path,
    bytes: &[u8],
    label_bytes: usize,
    keep: usize,
    num_classes: usize,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let bytes = maybe_gunzip(path, bytes.to_vec())?;
    let record = label_bytes + RECORD_PIXELS;
    if bytes.is_empty() {
        return Err(Error::format(path, "empty file: no CIFAR records"));
    }
    if bytes.len() % record != 0 {
        return Err(Error::Truncated {
            path: path.into(),
            expected: bytes.len().div_ceil(record) as u64 * record as u64,
            got: bytes.len() as u64,
        });
    }
    let n = bytes.len() / record;
    let mut images = vec![0.0f32; n * RECORD_PIXELS];
    let mut labels = Vec::with_capacity(n);
    const PLANE: usize = 32 * 32;
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[keep] as u32;
        if label as usize >= num_classes {
            return Err(Error::format(
                path,
                format!("record {i}: label {label} is not below {num_classes}"),
            ));
        }
        labels.push(label);
        let px = &rec[label_bytes..];
        let out = &mut images[i * RECORD_PIXELS..(i + 1) * RECORD_PIXELS];
        for p in 0..PLANE {
            for c in 0..3 {
                out[p * 3 + c] = px[c * PLANE + p] as f32 / 255.0;
            }
        }
    }
    Ok((images, labels))
}

/// Parses the bytes of a CIFAR-10 binary file (raw or gzipped; `origin` names it in errors):
/// HWC f32 images (32×32×3 each) and labels 0..10.
pub fn parse_cifar10(bytes: &[u8], origin: &Path) -> Result<(Vec<f32>, Vec<u32>)> {
    parse_records(origin, bytes, 1, 0, 10)
}

/// Parses the bytes of a CIFAR-100 binary file keeping the `which` label (coarse 0..20 or
/// fine 0..100).
pub fn parse_cifar100(
    bytes: &[u8],
    origin: &Path,
    which: Cifar100Label,
) -> Result<(Vec<f32>, Vec<u32>)> {
    match which {
        Cifar100Label::Coarse => parse_records(origin, bytes, 2, 0, 20),
        Cifar100Label::Fine => parse_records(origin, bytes, 2, 1, 100),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads one CIFAR-10 binary file: HWC f32 images (32×32×3 each) and labels 0..10.
pub fn read_cifar10_file(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<u32>)> {
    let path = path.as_ref();
    parse_cifar10(&read(path)?, path)
}

/// Reads one CIFAR-100 binary file keeping the `which` label (coarse 0..20 or fine 0..100).
pub fn read_cifar100_file(
    path: impl AsRef<Path>,
    which: Cifar100Label,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let path = path.as_ref();
    parse_cifar100(&read(path)?, path, which)
}

fn cifar10_files(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

fn not_found(dirs: &[PathBuf], files: &[String], archive: &str, url: &str) -> Error {
    Error::NotFound {
        searched: dirs.to_vec(),
        hint: format!(
            "put {} in one of these directories, pass the directory explicitly, or set \
             $WGRAD_DATA; they come from {archive} at {url}",
            files.join(", ")
        ),
    }
}

/// Loads a CIFAR-10 split from the first of `dirs` holding all its files.
pub fn load_cifar10_from(split: Split, dirs: &[PathBuf]) -> Result<Dataset> {
    let files = cifar10_files(split);
    for dir in dirs {
        if files.iter().all(|f| dir.join(f).is_file()) {
            let mut images = Vec::new();
            let mut labels = Vec::new();
            for f in &files {
                let (i, l) = read_cifar10_file(dir.join(f))?;
                images.extend(i);
                labels.extend(l);
            }
            let names = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
            return Ok(Dataset::new(images, [32, 32, 3], labels, 10)?.with_class_names(names));
        }
    }
    Err(not_found(
        dirs,
        &files,
        "cifar-10-binary.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ))
}

/// Loads a CIFAR-100 split from the first of `dirs` holding its file.
pub fn load_cifar100_from(split: Split, which: Cifar100Label, dirs: &[PathBuf]) -> Result<Dataset> {
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    for dir in dirs {
        let path = dir.join(file);
        if path.is_file() {
            let (images, labels) = read_cifar100_file(&path, which)?;
            let (classes, names_file) = match which {
                Cifar100Label::Coarse => (20, "coarse_label_names.txt"),
                Cifar100Label::Fine => (100, "fine_label_names.txt"),
            };
            let mut ds = Dataset::new(images, [32, 32, 3], labels, classes)?;
            if let Ok(names) = read_class_names(&dir.join(names_file)) {
                if names.len() == classes {
                    ds = ds.with_class_names(names);
                }
            }
            return Ok(ds);
        }
    }
    Err(not_found(
        dirs,
        &[file.to_string()],
        "cifar-100-binary.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ))
}

/// The binary CIFAR-10 archive with the MD5 listed on its page.
pub const CIFAR10_ARCHIVE: Archive<'static> = Archive {
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5: "c32a1d4ab5d03f1284b67883e8d87530",
    folder: "cifar-10-batches-bin",
};

/// The binary CIFAR-100 archive with the MD5 listed on its page.
pub const CIFAR100_ARCHIVE: Archive<'static> = Archive {
    url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5: "03b5dce01913d631647c71ecec9e9cb8",
    folder: "cifar-100-binary",
};

/// `load(dirs)`; when it finds nothing and `cache_root` is given, downloads `archive` into
/// `cache_root` (MD5 checked, extracted atomically) and loads from the folder it made. A
/// failed download becomes [`Error::NotFound`] whose hint adds why.
pub fn load_or_fetch(
    dirs: &[PathBuf],
    cache_root: Option<&Path>,
    archive: &Archive<'_>,
    load: impl Fn(&[PathBuf]) -> Result<Dataset>,
) -> Result<Dataset> {
    let err = match load(dirs) {
        Err(e @ Error::NotFound { .. }) => e,
        other => return other,
    };
    let Some(root) = cache_root else {
        return Err(err);
    };
    match fetch_archive(archive, root) {
        Ok(folder) => load(&[folder]),
        Err(download) => Err(not_found_after(err, root, download)),
    }
}

fn download_root() -> Option<PathBuf> {
    if offline() {
        None
    } else {
        cache_dir()
    }
}

/// CIFAR-10 (50 000 train / 10 000 test, 32×32×3, 10 classes). `dir`: searched first; when no
/// location holds it, the binary archive is downloaded into the cache (MD5 checked).
pub fn cifar10(dir: Option<&Path>, split: Split) -> Result<Dataset> {
    let dirs = search_dirs("cifar-10-batches-bin", dir, None);
    load_or_fetch(&dirs, download_root().as_deref(), &CIFAR10_ARCHIVE, |d| {
        load_cifar10_from(split, d)
    })
}

/// CIFAR-100 with coarse (20) or fine (100) labels. `dir`: searched first.
pub fn cifar100(dir: Option<&Path>, split: Split, which: Cifar100Label) -> Result<Dataset> {
    let dirs = search_dirs("cifar-100-binary", dir, None);
    load_or_fetch(&dirs, download_root().as_deref(), &CIFAR100_ARCHIVE, |d| {
        load_cifar100_from(split, which, d)
    })
}
