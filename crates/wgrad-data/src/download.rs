//! Fetching a dataset file into the cache, verified before it is kept.
//!
//! The named loaders call [`fetch`] when no searched directory holds their files. A file is
//! accepted only when the SHA-256 of its *decompressed* bytes matches the one recorded here:
//! mirrors and distribution packages re-compress the same IDX data (Debian's `.gz` files differ
//! byte for byte from the canonical archives), so hashing the content is what identifies the
//! data set, whichever gzip produced the file. The download is written to a temporary file in
//! the target directory and renamed into place only after it has been verified, so an
//! interrupted or corrupt download never leaves a file the next run would trust.
//!
//! Set `WGRAD_OFFLINE=1` to never touch the network (the loaders then fail with the
//! not-found message at once).

use crate::error::{read_gzip_bytes, Error, Result};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable that disables downloading when set to anything but `0` or empty.
pub const OFFLINE_VAR: &str = "WGRAD_OFFLINE";

/// One file of a data set as published: where it lives and what its content hashes to.
#[derive(Clone, Copy, Debug)]
pub struct Remote<'a> {
    /// File name in the cache directory (also the last URL segment for the canonical mirrors).
    pub file: &'a str,
    /// Full URL of the (possibly gzipped) file.
    pub url: &'a str,
    /// Lower-case hex SHA-256 of the file's bytes after gunzipping (of the bytes themselves
    /// when the file is not gzipped).
    pub sha256: &'a str,
}

/// Whether `WGRAD_OFFLINE` forbids downloads.
pub fn offline() -> bool {
    std::env::var_os(OFFLINE_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// A loader's not-found error `err` with why downloading into `dir` failed added to its hint
/// (other errors pass through).
pub(crate) fn not_found_after(err: Error, dir: &Path, download: Error) -> Error {
    match err {
        Error::NotFound { searched, hint } => Error::NotFound {
            searched,
            hint: format!(
                "{hint}. Downloading into {} failed: {download} (set {OFFLINE_VAR}=1 to skip the \
                 download)",
                dir.display()
            ),
        },
        other => other,
    }
}

/// One class name per non-empty line of a text file (CIFAR's `*_label_names.txt`, or a
/// user's labels file).
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Lower-case hex of a digest.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Downloads `remote` into `dir` (created if needed) and returns the path of the verified file.
/// An existing file of that name whose content already verifies is kept without a download.
///
/// Errors: [`Error::Download`] when the server cannot be reached or answers with an error
/// status; [`Error::Checksum`] when the content does not hash to `remote.sha256` (nothing is
/// left in `dir` then); [`Error::Io`] when `dir` cannot be written.
pub fn fetch(remote: &Remote<'_>, dir: &Path) -> Result<PathBuf> {
    let dest = dir.join(remote.file);
    if dest.is_file() {
        if let Ok(bytes) = std::fs::read(&dest) {
            if content_sha256(&dest, &bytes).is_ok_and(|h| h == remote.sha256) {
                return Ok(dest);
            }
        }
    }
    let bytes = get(remote.url)?;
    let got = content_sha256(Path::new(remote.url), &bytes)?;
    if got != remote.sha256 {
        return Err(Error::Checksum {
            url: remote.url.to_string(),
            expected: remote.sha256.to_string(),
            got,
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(&dest, &bytes)?;
    Ok(dest)
}

/// A gzipped tarball as published, verified by the MD5 its publisher lists, that extracts
/// into one top-level folder (CIFAR's `cifar-10-batches-bin/`).
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    pub url: &'a str,
    /// Lower-case hex MD5 of the `.tar.gz` file itself (the archives are the canonical files,
    /// not re-compressed copies, so the publisher's digest applies).
    pub md5: &'a str,
    /// The folder the archive extracts to.
    pub folder: &'a str,
}

/// Lower-case hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// Downloads `archive`, checks its MD5, and extracts it into `root` (created if needed);
/// returns `root/<folder>`. Extraction goes to a temporary folder in `root` that is renamed
/// into place only when complete, so a cut download or a full disk never leaves a partial
/// data set behind. An existing `root/<folder>` is returned as it is.
///
/// Errors: as [`fetch`], plus [`Error::Format`] for an archive that is not a gzipped tar or
/// lacks `folder`.
pub fn fetch_archive(archive: &Archive<'_>, root: &Path) -> Result<PathBuf> {
    let dest = root.join(archive.folder);
    if dest.is_dir() {
        return Ok(dest);
    }
    let bytes = get(archive.url)?;
    let got = md5_hex(&bytes);
    if got != archive.md5 {
        return Err(Error::Checksum {
            url: archive.url.to_string(),
            expected: archive.md5.to_string(),
            got,
        });
    }
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let tmp = root.join(format!(
        ".{}.{}.partial",
        archive.folder,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        // `unpack` refuses entries that would land outside `tmp` (absolute or `..` paths).
        tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]))
            .unpack(&tmp)
            .map_err(|e| {
                Error::format(Path::new(archive.url), format!("not a gzipped tar: {e}"))
            })?;
        let inner = tmp.join(archive.folder);
        if !inner.is_dir() {
            return Err(Error::format(
                Path::new(archive.url),
                format!("the archive has no folder {:?}", archive.folder),
            ));
        }
        std::fs::rename(&inner, &dest).map_err(|e| Error::io(&dest, e))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| dest)
}

/// SHA-256 of the content: gunzipped when the bytes are gzip, as they are on every mirror.
fn content_sha256(path: &Path, bytes: &[u8]) -> Result<String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Ok(sha256_hex(&read_gzip_bytes(path, bytes)?))
    } else {
        Ok(sha256_hex(bytes))
    }
}

/// The whole body of `url`, with a progress bar on stderr when the server gives a length.
fn get(url: &str) -> Result<Vec<u8>> {
    let fail = |reason: String| Error::Download {
        url: url.to_string(),
        reason,
    };
    // Connect quickly or not at all (an offline machine should fail in seconds), but allow a
    // slow link minutes for the body: CIFAR-sized archives are 160 MB.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(30 * 60)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let len = response.body().content_length();
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("static template")
            .progress_chars("=> "),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    }
    .with_message(format!("downloading {url}"));
    let mut reader = response.body_mut().as_reader();
    let mut bytes = Vec::with_capacity(len.unwrap_or(0) as usize);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut chunk).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        bar.set_position(bytes.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(n) = len {
        if bytes.len() as u64 != n {
            return Err(fail(format!(
                "connection closed after {} of {n} bytes",
                bytes.len()
            )));
        }
    }
    Ok(bytes)
}

/// Writes `bytes` to `dest` through a temporary file in the same directory and a rename, so
/// `dest` is either absent or complete.
fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dest.with_file_name(format!(
        ".{}.{}.partial",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(dest, e));
    }
    Ok(())
}
