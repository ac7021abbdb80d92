//! The crate's error type: each variant says what failed and on which input.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that does not follow Docker's grammar; `reason` names the bad part.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    /// A digest string that is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    /// Bytes that do not hash to the digest they were announced with. Nothing was stored.
    #[error("content does not match its digest: expected {expected}, got {actual} ({size} bytes)")]
    DigestMismatch { expected: String, actual: String, size: u64 },

    /// Bytes whose length differs from the announced size. Nothing was stored.
    #[error("content of {digest} has the wrong size: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },

    /// A blob the store does not have.
    #[error("blob {0} is not in the local store")]
    BlobNotFound(String),

    /// No local image by that name or ID.
    #[error("no such image: {0}")]
    ImageNotFound(String),

    /// An image ID prefix that matches several images.
    #[error("image ID prefix {prefix:?} is ambiguous: it matches {count} images")]
    AmbiguousId { prefix: String, count: usize },

    /// JSON in the store (or in an archive) that does not parse as what it should be.
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },

    /// A manifest index with no manifest for the wanted platform.
    #[error("no manifest for platform {wanted} (available: {available})")]
    NoMatchingPlatform { wanted: String, available: String },

    /// A platform string that is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], for example linux/amd64")]
    InvalidPlatform(String),

    /// An archive (`save`/`load`) that is not a docker or OCI image archive.
    #[error("{path}: {reason}")]
    BadArchive { path: String, reason: String },

    /// An I/O error, with the path it happened on.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Malformed { what: what.into(), reason: reason.to_string() }
    }
}
