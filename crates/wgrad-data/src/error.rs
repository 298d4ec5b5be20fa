//! The crate's one error type. Every reader returns [`Error`] with the offending path, so a
//! failure on user data is never a panic and always says which file was wrong and how.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while finding, reading or assembling a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read (missing file, permissions, a directory listing).
    #[error("{}: {source}{}", path.display(), crate::error::io_hint(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not what it claims to be: bad magic number, impossible header,
    /// corrupt gzip stream, undecodable image, out-of-range label, trailing bytes.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// The file is shorter than its header (or record size) says it must be.
    #[error("{}: truncated: expected {expected} bytes, got {got}; the file is cut short: download or copy it again", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    /// An images file and its labels file disagree on the number of samples.
    #[error("{images} images but {labels} labels")]
    CountMismatch { images: usize, labels: usize },
    /// No searched location holds the dataset's files.
    #[error("dataset files not found; searched: {}. {hint}", list_paths(.searched))]
    NotFound {
        searched: Vec<PathBuf>,
        hint: String,
    },
    /// A download could not be completed: no network, unknown host, an HTTP error status or a
    /// connection cut short.
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    /// A download does not hash to the published digest (SHA-256 of an IDX file's content,
    /// MD5 of a CIFAR archive); it was discarded.
    #[error("download of {url} is corrupt: its digest is {got}, expected {expected}")]
    Checksum {
        url: String,
        expected: String,
        got: String,
    },
    /// Buffers handed to [`crate::Dataset::new`] do not describe a dataset (length not
    /// N·H·W·C, label out of range).
    #[error("invalid dataset: {reason}")]
    Invalid { reason: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes `1f 8b`
/// (detected by content, never by file name).
/// `bytes` gunzipped when they start with gzip's magic, else as they are.
pub(crate) fn maybe_gunzip(path: &std::path::Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_gzip_bytes(path, &bytes)
    } else {
        Ok(bytes)
    }
}

/// Gunzips `bytes` (read from `path`, named in the error).
pub(crate) fn read_gzip_bytes(path: &std::path::Path, bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| Error::format(path, format!("corrupt or truncated gzip stream: {e}")))?;
    Ok(out)
}

/// What to do about an I/O error whose cause a user can fix.
pub(crate) fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => " (check the path, or create the file first)",
        std::io::ErrorKind::PermissionDenied => " (check the file's permissions)",
        _ => "",
    }
}
