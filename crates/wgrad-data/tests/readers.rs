//! Readers on files the tests write themselves: IDX (raw, gzipped, every error), the named
//! loaders' search and NotFound, CIFAR-10/100 records, image folders.

mod common;

use common::{gzip, idx_images, idx_labels, TempDir};
use wgrad_data::cifar::{self, Cifar100Label};
use wgrad_data::idx::{self, FASHION_MNIST, MNIST};
use wgrad_data::{image_folder, Error, Split};

fn pixels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 37 % 256) as u8).collect()
}

#[test]
fn idx_raw_and_gzip_round_trip() {
    let dir = TempDir::new("idx-rt");
    let px = pixels(3 * 2 * 4);
    let raw = idx_images(3, 2, 4, &px);
    let a = dir.write("images-raw", &raw);
    // Gzip is detected by content: a gzipped file without .gz, and a raw file named .gz.
    let b = dir.write("images-gz-no-suffix", &gzip(&raw));
    let c = dir.write("raw-despite-name.gz", &raw);
    for p in [&a, &b, &c] {
        let img = idx::read_images(p).unwrap();
        assert_eq!((img.count, img.rows, img.cols), (3, 2, 4));
        let want: Vec<f32> = px.iter().map(|&b| b as f32 / 255.0).collect();
        assert_eq!(img.pixels, want);
        let (bytes, dims) = idx::read_images_u8(p).unwrap();
        assert_eq!((bytes, dims), (px.clone(), [3, 2, 4]));
    }
    let l_raw = dir.write("labels", &idx_labels(&[1, 0, 9]));
    let l_gz = dir.write("labels.gz", &gzip(&idx_labels(&[1, 0, 9])));
    assert_eq!(idx::read_labels(&l_raw).unwrap(), vec![1, 0, 9]);
    assert_eq!(idx::read_labels(&l_gz).unwrap(), vec![1, 0, 9]);

    let ds = idx::read_pair(&b, &l_gz, 10).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.image_shape(), [2, 4, 1]);
    assert_eq!(ds.get(2).unwrap().1, &[9]);
    assert_eq!(ds.get(1).unwrap().0[0], px[8] as f32 / 255.0);
}

#[test]
fn idx_errors() {
    let dir = TempDir::new("idx-err");
    // Bad magic (0x804), and a labels file read as images.
    let mut bad = idx_images(1, 1, 1, &[0]);
    bad[3] = 4;
    let p = dir.write("bad-magic", &bad);
    match idx::read_images(&p) {
        Err(Error::Format { path, reason }) => {
            assert_eq!(path, p);
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let l = dir.write("labels", &idx_labels(&[1]));
    assert!(matches!(idx::read_images(&l), Err(Error::Format { .. })));
    let i = dir.write("images", &idx_images(1, 1, 1, &[0]));
    assert!(matches!(idx::read_labels(&i), Err(Error::Format { .. })));

    // Truncated header: magic and 5 of the 12 dimension bytes.
    let p = dir.write("short-header", &idx_images(1, 2, 2, &[])[..9]);
    match idx::read_images(&p) {
        Err(Error::Truncated { expected, got, .. }) => assert_eq!((expected, got), (16, 9)),
        other => panic!("{other:?}"),
    }
    let p = dir.write("tiny", &[0, 0]);
    assert!(matches!(idx::read_images(&p), Err(Error::Truncated { .. })));

    // Truncated data: 3 images of 2×2 announced, 10 bytes given; also through gzip.
    let short = idx_images(3, 2, 2, &[7; 10]);
    for (name, bytes) in [
        ("short-data", short.clone()),
        ("short-data.gz", gzip(&short)),
    ] {
        let p = dir.write(name, &bytes);
        match idx::read_images(&p) {
            Err(Error::Truncated {
                path,
                expected,
                got,
            }) => {
                assert_eq!(path, p);
                assert_eq!((expected, got), (16 + 12, 16 + 10));
            }
            other => panic!("{other:?}"),
        }
    }
    let p = dir.write("short-labels", &idx_labels(&[1, 2, 3])[..10]);
    assert!(matches!(
        idx::read_labels(&p),
        Err(Error::Truncated {
            expected: 11,
            got: 10,
            ..
        })
    ));

    // Trailing bytes are a format error, not silently ignored.
    let mut long = idx_images(1, 1, 2, &[1, 2]);
    long.push(9);
    let p = dir.write("long", &long);
    assert!(matches!(idx::read_images(&p), Err(Error::Format { .. })));

    // Corrupt gzip stream.
    let mut gz = gzip(&idx_images(1, 1, 1, &[0]));
    let n = gz.len();
    gz.truncate(n / 2);
    let p = dir.write("corrupt.gz", &gz);
    assert!(matches!(idx::read_images(&p), Err(Error::Format { .. })));

    // Missing file.
    let missing = dir.path().join("nope");
    assert!(matches!(idx::read_images(&missing), Err(Error::Io { path, .. }) if path == missing));

    // Count mismatch and out-of-range label.
    let imgs = dir.write("imgs", &idx_images(3, 1, 1, &[1, 2, 3]));
    let labs = dir.write("labs", &idx_labels(&[0, 1]));
    assert!(matches!(
        idx::read_pair(&imgs, &labs, 10),
        Err(Error::CountMismatch {
            images: 3,
            labels: 2
        })
    ));
    let labs = dir.write("labs-range", &idx_labels(&[0, 1, 10]));
    assert!(
        matches!(idx::read_pair(&imgs, &labs, 10), Err(Error::Format { path, .. }) if path == labs)
    );
}

#[test]
fn named_loader_searches_dirs_in_order() {
    let first = TempDir::new("search-a");
    let second = TempDir::new("search-b");
    // Only the second directory has the test split (gzipped images, raw labels); the first
    // has a lone train images file, which does not make a complete split.
    first.write("t10k-images-idx3-ubyte.gz", b"never read");
    second.write(
        "t10k-images-idx3-ubyte.gz",
        &gzip(&idx_images(2, 28, 28, &pixels(2 * 784))),
    );
    second.write("t10k-labels-idx1-ubyte", &idx_labels(&[3, 8]));
    let dirs = vec![first.path().to_path_buf(), second.path().to_path_buf()];
    let ds = idx::load_from(&FASHION_MNIST, Split::Test, &dirs).unwrap();
    assert_eq!(
        (ds.len(), ds.image_shape(), ds.num_classes()),
        (2, [28, 28, 1], 10)
    );
    assert_eq!(ds.labels(), &[3, 8]);
    assert_eq!(ds.class_names().unwrap()[8], "Bag");

    // The train split is in neither: NotFound lists both directories.
    match idx::load_from(&FASHION_MNIST, Split::Train, &dirs) {
        Err(Error::NotFound { searched, hint }) => {
            assert_eq!(searched, dirs);
            assert!(hint.contains("train-images-idx3-ubyte"), "{hint}");
            assert!(
                hint.contains("apt-get install dataset-fashion-mnist"),
                "{hint}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The `train-images.idx3-ubyte` spelling of some archives is accepted too.
    second.write(
        "train-images.idx3-ubyte",
        &idx_images(1, 2, 2, &[0, 1, 2, 3]),
    );
    second.write("train-labels.idx1-ubyte", &idx_labels(&[5]));
    assert_eq!(
        idx::load_from(&MNIST, Split::Train, &dirs).unwrap().len(),
        1
    );
}

#[test]
fn not_found_lists_every_searched_path() {
    let base = TempDir::new("notfound");
    let missing = base.path().join("does-not-exist");
    let dirs = vec![missing.clone(), base.path().join("also-missing")];
    let err = idx::load_from(&MNIST, Split::Train, &dirs).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("also-missing"), "{text}");
    assert!(text.contains("WGRAD_DATA"), "{text}");
    assert!(matches!(err, Error::NotFound { ref searched, .. } if searched == &dirs));
    assert!(matches!(
        cifar::load_cifar10_from(Split::Test, &dirs),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        cifar::load_cifar100_from(Split::Test, Cifar100Label::Fine, &dirs),
        Err(Error::NotFound { .. })
    ));
}

/// One CIFAR record: label bytes then CHW pixels where channel c, pixel p holds f(c, p).
fn cifar_record(labels: &[u8], f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    for c in 0..3 {
        for p in 0..1024 {
            r.push(f(c, p));
        }
    }
    r
}

#[test]
fn cifar10_records_to_hwc() {
    let dir = TempDir::new("cifar10");
    let mut bytes = cifar_record(&[7], |c, p| ((c * 100 + p) % 256) as u8);
    bytes.extend(cifar_record(&[2], |c, _| [255, 0, 51][c]));
    let path = dir.write("test_batch.bin", &bytes);
    let (images, labels) = cifar::read_cifar10_file(&path).unwrap();
    assert_eq!(labels, vec![7, 2]);
    assert_eq!(images.len(), 2 * 3072);
    // Pixel (y=1, x=2) is p = 34: red 34, green 134, blue 234, stored HWC.
    let at = (32 + 2) * 3;
    assert_eq!(
        &images[at..at + 3],
        &[34.0 / 255.0, 134.0 / 255.0, 234.0 / 255.0]
    );
    // Second image: every pixel (1, 0, 0.2).
    assert_eq!(&images[3072 + 99 * 3..3072 + 100 * 3], &[1.0, 0.0, 0.2]);

    let ds = cifar::load_cifar10_from(Split::Test, &[dir.path().to_path_buf()]).unwrap();
    assert_eq!((ds.len(), ds.image_shape()), (2, [32, 32, 3]));
    assert_eq!(ds.class_names().unwrap()[7], "horse");

    // Train needs all five batches.
    for i in 1..=4 {
        dir.write(
            &format!("data_batch_{i}.bin"),
            &cifar_record(&[i], |_, _| 0),
        );
    }
    assert!(cifar::load_cifar10_from(Split::Train, &[dir.path().to_path_buf()]).is_err());
    dir.write("data_batch_5.bin", &cifar_record(&[5], |_, _| 0));
    let train = cifar::load_cifar10_from(Split::Train, &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(train.labels(), &[1, 2, 3, 4, 5]);

    // Truncated: one record and 10 bytes.
    let mut short = cifar_record(&[1], |_, _| 0);
    short.extend([0; 10]);
    let p = dir.write("short.bin", &short);
    match cifar::read_cifar10_file(&p) {
        Err(Error::Truncated {
            path,
            expected,
            got,
        }) => {
            assert_eq!(path, p);
            assert_eq!((expected, got), (2 * 3073, 3083));
        }
        other => panic!("{other:?}"),
    }
    let p = dir.write("bad-label.bin", &cifar_record(&[10], |_, _| 0));
    assert!(matches!(
        cifar::read_cifar10_file(&p),
        Err(Error::Format { .. })
    ));
    let p = dir.write("empty.bin", &[]);
    assert!(matches!(
        cifar::read_cifar10_file(&p),
        Err(Error::Format { .. })
    ));
}

#[test]
fn cifar100_coarse_and_fine() {
    let dir = TempDir::new("cifar100");
    let mut bytes = cifar_record(&[3, 42], |c, p| if p == 0 { [10, 20, 30][c] } else { 0 });
    bytes.extend(cifar_record(&[19, 99], |_, _| 255));
    let path = dir.write("train.bin", &bytes);
    let (images, fine) = cifar::read_cifar100_file(&path, Cifar100Label::Fine).unwrap();
    let (_, coarse) = cifar::read_cifar100_file(&path, Cifar100Label::Coarse).unwrap();
    assert_eq!(fine, vec![42, 99]);
    assert_eq!(coarse, vec![3, 19]);
    assert_eq!(
        &images[..4],
        &[10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0, 0.0]
    );
    assert_eq!(images[3072], 1.0);

    let names: String = (0..20).map(|i| format!("super{i}\n")).collect();
    dir.write("coarse_label_names.txt", names.as_bytes());
    let ds = cifar::load_cifar100_from(Split::Train, Cifar100Label::Coarse, &[dir.path().into()])
        .unwrap();
    assert_eq!(ds.num_classes(), 20);
    assert_eq!(ds.class_names().unwrap()[19], "super19");
    let ds =
        cifar::load_cifar100_from(Split::Train, Cifar100Label::Fine, &[dir.path().into()]).unwrap();
    assert_eq!((ds.num_classes(), ds.class_names()), (100, None));

    // A CIFAR-10-sized record is not a whole CIFAR-100 record.
    let p = dir.write("test.bin", &cifar_record(&[1], |_, _| 0));
    assert!(matches!(
        cifar::read_cifar100_file(&p, Cifar100Label::Fine),
        Err(Error::Truncated {
            expected: 3074,
            got: 3073,
            ..
        })
    ));
}

fn write_png(dir: &TempDir, name: &str, w: u32, h: u32, rgb: [u8; 3]) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let path = dir.path().join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(&path).unwrap();
}

#[test]
fn image_folder_two_classes() {
    let dir = TempDir::new("folder");
    write_png(&dir, "zebra/b.png", 3, 3, [0, 0, 255]);
    write_png(&dir, "cat/a.png", 2, 2, [255, 0, 0]);
    write_png(&dir, "cat/c.PNG", 4, 4, [0, 255, 0]);
    dir.write("cat/notes.txt", b"not an image");
    dir.write("README", b"ignored, not a directory");
    let ds = image_folder(dir.path(), [2, 2]).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.image_shape(), [2, 2, 3]);
    assert_eq!(ds.labels(), &[0, 0, 1]);
    assert_eq!(ds.class_names().unwrap(), &["cat", "zebra"]);
    // Uniform colours survive resizing.
    assert_eq!(ds.get(0).unwrap().0, &[1.0, 0.0, 0.0].repeat(4)[..]);
    assert_eq!(ds.get(1).unwrap().0, &[0.0, 1.0, 0.0].repeat(4)[..]);
    assert_eq!(ds.get(2).unwrap().0, &[0.0, 0.0, 1.0].repeat(4)[..]);

    // A corrupt PNG names the file.
    let bad = dir.write("zebra/broken.png", b"\x89PNG\r\n\x1a\n garbage");
    match image_folder(dir.path(), [2, 2]) {
        Err(Error::Format { path, .. }) => assert_eq!(path, bad),
        other => panic!("{other:?}"),
    }
    // No class directories; missing root.
    let empty = TempDir::new("folder-empty");
    assert!(matches!(
        image_folder(empty.path(), [2, 2]),
        Err(Error::Format { .. })
    ));
    assert!(matches!(
        image_folder(empty.path().join("missing"), [2, 2]),
        Err(Error::Io { .. })
    ));
}
