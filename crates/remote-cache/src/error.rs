//! The crate's error type: each variant names the flag, reference or path it is about.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--cache-from` / `--cache-to` value that cannot be used.
    #[error("invalid {flag} {value:?}: {reason}")]
    Flag { flag: &'static str, value: String, reason: String },

    /// The registry refused or failed an operation on the cache ref.
    #[error("{reference}: {source}")]
    Registry { reference: String, source: Box<registry::Error> },

    /// A cache artifact that is not one this version can use.
    #[error("{source_name}: {reason}")]
    Malformed { source_name: String, reason: String },

    /// A layer blob that no source of the import holds.
    #[error("layer blob {digest} is in none of the imported caches")]
    BlobUnknown { digest: String },

    /// A layer blob an export needs is not in the local store and cannot be mounted.
    #[error("layer blob {digest} is not in the local store")]
    BlobMissing { digest: String },

    /// The image push the export waited for failed (the build fails with its error).
    #[error("the image push failed, so the cache export was abandoned")]
    PushFailed,

    /// The local store failed.
    #[error(transparent)]
    Store(#[from] oci::Error),

    /// An I/O error on a local cache directory.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// The registry failed on `reference` (the registry's error is boxed: it is large, and every
    /// `Result` of this crate would otherwise carry its size).
    pub(crate) fn registry(reference: &impl std::fmt::Display, source: registry::Error) -> Error {
        Error::Registry { reference: reference.to_string(), source: Box::new(source) }
    }
}
