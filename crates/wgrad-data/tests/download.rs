//! Downloading into the cache, against a local HTTP server the test runs (no network needed):
//! verified content lands atomically, a wrong checksum or a cut connection leaves nothing
//! behind, an unreachable mirror turns into a not-found error that says why.

mod common;

use common::{gzip, idx_images, idx_labels, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use wgrad_data::download::{fetch, sha256_hex, Remote};
use wgrad_data::idx::{self, IdxSpec};
use wgrad_data::{Error, Split};

/// One canned answer: status line, declared length (may lie, to cut a body short), body.
#[derive(Clone)]
struct Reply {
    status: &'static str,
    declared_len: usize,
    body: Vec<u8>,
}

fn ok(body: Vec<u8>) -> Reply {
    Reply {
        status: "200 OK",
        declared_len: body.len(),
        body,
    }
}

/// Serves `routes` (path → reply; anything else gets 404) on 127.0.0.1 until the test ends.
/// Returns the base URL `http://127.0.0.1:PORT/`.
fn serve(routes: Vec<(&'static str, Reply)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Drain the headers up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let reply = routes
                .iter()
                .find(|(p, _)| path == format!("/{p}"))
                .map(|(_, r)| r.clone())
                .unwrap_or(Reply {
                    status: "404 Not Found",
                    declared_len: 0,
                    body: Vec::new(),
                });
            let head = format!(
                "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reply.status, reply.declared_len
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&reply.body);
        }
    });
    base
}

/// A base URL where nothing listens: the port of a listener that was bound and dropped.
fn dead_base() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    base
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn sha256_matches_known_vector() {
    // FIPS 180-2 test vector.
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn fetch_keeps_verified_content_and_reuses_it_offline() {
    let raw = idx_labels(&[3, 1, 4, 1, 5]);
    let gz = gzip(&raw);
    let base = serve(vec![("labels.gz", ok(gz.clone()))]);
    let cache = TempDir::new("dl-ok");
    let dir = cache.path().join("nested").join("fashion");
    let url = format!("{base}labels.gz");
    // The hash is of the decompressed content, so any gzip of the same bytes verifies.
    let remote = Remote {
        file: "labels.gz",
        url: &url,
        sha256: &sha256_hex(&raw),
    };
    let path = fetch(&remote, &dir).unwrap();
    assert_eq!(path, dir.join("labels.gz"));
    assert_eq!(std::fs::read(&path).unwrap(), gz);
    assert_eq!(files_in(&dir), vec!["labels.gz"], "no temporary file left");
    assert_eq!(idx::read_labels(&path).unwrap(), vec![3, 1, 4, 1, 5]);

    // A verified file in place is used without the network.
    let offline = Remote {
        url: "http://127.0.0.1:1/unreachable.gz",
        ..remote
    };
    assert_eq!(fetch(&offline, &dir).unwrap(), path);
}

#[test]
fn checksum_mismatch_leaves_nothing_and_replaces_a_corrupt_cached_file() {
    let raw = idx_labels(&[1, 2]);
    let base = serve(vec![("l.gz", ok(gzip(&raw)))]);
    let cache = TempDir::new("dl-bad");
    let url = format!("{base}l.gz");
    let wrong = sha256_hex(b"something else");
    match fetch(
        &Remote {
            file: "l.gz",
            url: &url,
            sha256: &wrong,
        },
        cache.path(),
    ) {
        Err(Error::Checksum {
            url: u,
            expected,
            got,
        }) => {
            assert_eq!(u, url);
            assert_eq!(expected, wrong);
            assert_eq!(got, sha256_hex(&raw));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );

    // A corrupt file already in the cache is not trusted: it is downloaded again.
    let stale = cache.write("l.gz", b"garbage");
    let good = fetch(
        &Remote {
            file: "l.gz",
            url: &url,
            sha256: &sha256_hex(&raw),
        },
        cache.path(),
    )
    .unwrap();
    assert_eq!(good, stale);
    assert_eq!(idx::read_labels(&good).unwrap(), vec![1, 2]);
}

#[test]
fn http_errors_and_cut_connections_are_download_errors() {
    let body = gzip(&idx_labels(&[7; 100]));
    let cut = Reply {
        status: "200 OK",
        declared_len: body.len() + 1000,
        body: body.clone(),
    };
    let base = serve(vec![("cut.gz", cut)]);
    let cache = TempDir::new("dl-err");
    let sha = sha256_hex(&idx_labels(&[7; 100]));
    for (file, what) in [("missing.gz", "404"), ("cut.gz", "")] {
        let url = format!("{base}{file}");
        match fetch(
            &Remote {
                file,
                url: &url,
                sha256: &sha,
            },
            cache.path(),
        ) {
            Err(Error::Download { url: u, reason }) => {
                assert_eq!(u, url);
                assert!(reason.contains(what), "{reason}");
            }
            other => panic!("{file}: expected a download error, got {other:?}"),
        }
    }
    let url = format!("{}x.gz", dead_base());
    let err = fetch(
        &Remote {
            file: "x.gz",
            url: &url,
            sha256: &sha,
        },
        cache.path(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );
}

fn spec(mirror: String, sha256: [String; 4]) -> IdxSpec {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let [a, b, c, d] = sha256.map(leak);
    IdxSpec {
        name: "tiny",
        system_dir: None,
        class_names: &["a", "b", "c"],
        source_hint: "they come from the test's server",
        mirror: leak(mirror),
        sha256: [a, b, c, d],
    }
}

#[test]
fn loader_downloads_a_missing_split_into_the_cache() {
    let px: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 11) as u8).collect();
    let images = idx_images(2, 3, 3, &px);
    let labels = idx_labels(&[2, 0]);
    let base = serve(vec![
        ("t10k-images-idx3-ubyte.gz", ok(gzip(&images))),
        ("t10k-labels-idx1-ubyte.gz", ok(gzip(&labels))),
    ]);
    let hashes = [
        sha256_hex(b"train images not served"),
        sha256_hex(b"train labels not served"),
        sha256_hex(&images),
        sha256_hex(&labels),
    ];
    let spec = spec(base, hashes);
    let empty = TempDir::new("dl-search");
    let cache = TempDir::new("dl-cache");
    let dirs = vec![empty.path().to_path_buf()];
    let ds = idx::load_or_fetch(&spec, Split::Test, &dirs, Some(cache.path())).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.image_shape(), [3, 3, 1]);
    assert_eq!(ds.get(0).unwrap().1, &[2]);
    assert_eq!(ds.get(1).unwrap().0[0], px[9] as f32 / 255.0);
    assert_eq!(
        files_in(cache.path()),
        vec!["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    );
    // Without a cache (offline mode) nothing is downloaded: the plain not-found error.
    let err = idx::load_or_fetch(&spec, Split::Train, &dirs, None).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[test]
fn unreachable_mirror_says_where_to_put_the_files_and_why_download_failed() {
    let spec = spec(dead_base(), std::array::from_fn(|i| sha256_hex(&[i as u8])));
    let empty = TempDir::new("dl-dead");
    let cache = TempDir::new("dl-dead-cache");
    let dirs = vec![empty.path().to_path_buf()];
    match idx::load_or_fetch(&spec, Split::Train, &dirs, Some(cache.path())) {
        Err(e @ Error::NotFound { .. }) => {
            let msg = e.to_string();
            for want in [
                empty.path().to_str().unwrap(),
                "train-images-idx3-ubyte",
                "Downloading into",
                cache.path().to_str().unwrap(),
                "WGRAD_OFFLINE",
            ] {
                assert!(msg.contains(want), "{want:?} missing from: {msg}");
            }
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(files_in(cache.path()).is_empty());
}

#[test]
fn md5_matches_known_vector() {
    // RFC 1321 test suite.
    assert_eq!(
        wgrad_data::download::md5_hex(b"abc"),
        "900150983cd24fb0d6963f7d28e17f72"
    );
}

/// A CIFAR-10-shaped `.tar.gz`: `cifar-10-batches-bin/` with the six batch files, batch `i`
/// holding one record of label `i` whose pixels are all `10·i`.
fn cifar_tarball(folder: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let names: Vec<String> = (1..=5)
        .map(|i| format!("data_batch_{i}.bin"))
        .chain(["test_batch.bin".to_string()])
        .collect();
    for (i, name) in names.iter().enumerate() {
        let mut record = vec![i as u8];
        record.extend(std::iter::repeat_n(10 * i as u8, 3072));
        let mut header = tar::Header::new_gnu();
        header.set_size(record.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("{folder}/{name}"), &record[..])
            .unwrap();
    }
    gzip(&tar.into_inner().unwrap())
}

#[test]
fn cifar_archive_is_checked_extracted_and_loaded() {
    use wgrad_data::cifar::{load_cifar10_from, load_or_fetch};
    use wgrad_data::download::{md5_hex, Archive};
    let good = cifar_tarball("cifar-10-batches-bin");
    let other = cifar_tarball("something-else");
    let base = serve(vec![
        ("c.tgz", ok(good.clone())),
        ("o.tgz", ok(other.clone())),
    ]);
    let empty = TempDir::new("cifar-none");
    let dirs = vec![empty.path().to_path_buf()];

    // A wrong digest: the archive is refused and nothing is extracted.
    let cache = TempDir::new("cifar-bad");
    let url = format!("{base}c.tgz");
    let bad = Archive {
        url: &url,
        md5: "00000000000000000000000000000000",
        folder: "cifar-10-batches-bin",
    };
    let err = load_or_fetch(&dirs, Some(cache.path()), &bad, |d| {
        load_cifar10_from(Split::Test, d)
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("00000000000000000000000000000000"),
        "{err}"
    );
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );

    // An archive without the expected folder is a format error, also leaving nothing.
    let ourl = format!("{base}o.tgz");
    let wrong = Archive {
        url: &ourl,
        md5: &md5_hex(&other),
        folder: "cifar-10-batches-bin",
    };
    let err = load_or_fetch(&dirs, Some(cache.path()), &wrong, |d| {
        load_cifar10_from(Split::Test, d)
    })
    .unwrap_err();
    assert!(err.to_string().contains("cifar-10-batches-bin"), "{err}");
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );

    // The real thing: verified, extracted into <cache>/cifar-10-batches-bin, loaded.
    let archive = Archive {
        url: &url,
        md5: &md5_hex(&good),
        folder: "cifar-10-batches-bin",
    };
    let train = load_or_fetch(&dirs, Some(cache.path()), &archive, |d| {
        load_cifar10_from(Split::Train, d)
    })
    .unwrap();
    assert_eq!(train.len(), 5);
    assert_eq!(train.labels(), &[0, 1, 2, 3, 4]);
    assert_eq!(train.get(3).unwrap().0[0], 30.0 / 255.0);
    assert_eq!(files_in(cache.path()), vec!["cifar-10-batches-bin"]);
    // Now cached: the test split loads without the server being asked for anything new.
    let dead = format!("{}c.tgz", dead_base());
    let offline = Archive {
        url: &dead,
        ..archive
    };
    let test = load_or_fetch(&dirs, Some(cache.path()), &offline, |d| {
        load_cifar10_from(Split::Test, d)
    })
    .unwrap();
    assert_eq!((test.len(), test.labels()[0]), (1, 5));
}
