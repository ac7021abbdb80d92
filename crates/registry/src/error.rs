//! The crate's error type: each variant says which registry, image or file it is about.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be reached (after retries).
    #[error("cannot reach {url}: {reason}")]
    Connection { url: String, reason: String },

    /// The registry refused the credentials, or there were none and it wants some.
    #[error("authentication to {registry} failed: {reason}")]
    Unauthorized { registry: String, reason: String },

    /// The registry does not have the manifest or blob.
    #[error("{what} not found in {registry}")]
    NotFound { registry: String, what: String },

    /// Any other unexpected answer.
    #[error("{method} {url} failed with HTTP {status}: {message}")]
    Status { method: String, url: String, status: u16, message: String },

    /// A manifest that cannot be used: malformed JSON, an unsupported type, a wrong digest.
    #[error("bad manifest for {reference}: {reason}")]
    BadManifest { reference: String, reason: String },

    /// A blob whose bytes did not match (the store error says how); nothing was stored.
    #[error("blob {digest} from {registry} rejected: {source}")]
    BadBlob { registry: String, digest: String, source: oci::Error },

    /// The local store failed.
    #[error(transparent)]
    Store(#[from] oci::Error),

    /// `config.json` or a credential helper failed.
    #[error("credentials: {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },

    /// An I/O error on a local file.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },

    /// The blocking API could not start its runtime.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
}
