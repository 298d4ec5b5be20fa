//! The one error type of wgrad-nn.

use std::path::PathBuf;

/// Errors raised while building, training, saving or loading models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device, shape or dtype error from a tensor op.
    #[error(transparent)]
    Tensor(#[from] wgrad_tensor::Error),

    /// A layer was configured or connected in a way it cannot work.
    #[error("{layer}: {reason}")]
    Config { layer: String, reason: String },

    /// A batch does not fit the model (input shape, label count, label range).
    #[error("{what}: {reason}")]
    Input { what: &'static str, reason: String },

    /// A weights or checkpoint file is malformed, or does not match the model.
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    /// Imported weights do not fit the model: every missing, unexpected and mis-shaped tensor
    /// is listed (nothing was assigned).
    #[error("{}: weights do not fit the model: {}", path.display(), crate::import::describe(missing, unexpected, misshaped))]
    Import {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<String>,
    },

    /// A training-curve plot could not be drawn or written.
    #[error("{path}: could not write the plot: {reason}")]
    Plot { path: PathBuf, reason: String },

    /// Reading or writing a file failed.
    #[error("{path}: {source}{}", io_hint(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Result with wgrad-nn's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A layer or model configured wrongly (`layer` names it).
    pub fn config(layer: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config {
            layer: layer.into(),
            reason: reason.into(),
        }
    }

    /// A build error re-addressed to the model's name for the layer (`conv2d_1 (Conv2D)`).
    pub(crate) fn in_layer(self, name: &str, kind: &str) -> Error {
        match self {
            Error::Config { reason, .. } => Error::config(format!("{name} ({kind})"), reason),
            Error::Tensor(t) => Error::config(format!("{name} ({kind})"), t.to_string()),
            other => other,
        }
    }

    /// A weights or checkpoint file that cannot be used.
    pub fn checkpoint(path: &std::path::Path, reason: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// What to do about an I/O error whose cause a user can fix.
pub(crate) fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => " (check the path, or create the file first)",
        std::io::ErrorKind::PermissionDenied => " (check the file's permissions)",
        std::io::ErrorKind::StorageFull => " (free space on that disk, or write elsewhere)",
        _ => "",
    }
}
