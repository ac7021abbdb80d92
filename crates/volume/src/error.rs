//! What can go wrong with a volume, with a kind a caller can match on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is not one Docker would accept for a local volume.
    #[error("{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed (at least 2 characters); to bind mount a host directory, use an absolute path")]
    InvalidName { name: String },
    #[error("no such volume: {name}")]
    NotFound { name: String },
    #[error("a volume named {name} already exists")]
    Exists { name: String },
    /// Containers (even stopped ones) still refer to the volume.
    #[error("volume {name} is in use by container {}; remove the container first (builder rm {})", .users.join(", "), .users.first().map(String::as_str).unwrap_or(""))]
    InUse { name: String, users: Vec<String> },
    /// Only the `local` driver exists.
    #[error("volume driver {driver:?} is not available (only \"local\")")]
    UnknownDriver { driver: String },
    /// A driver option the local driver does not take.
    #[error("invalid option {option:?} for the local volume driver (it takes type, device, o)")]
    InvalidOption { option: String },
    /// A `--filter` that cannot be read.
    #[error("invalid filter {filter:?}: {reason}")]
    InvalidFilter { filter: String, reason: String },
    /// A `-v`, `--mount`, `--tmpfs` or `--volumes-from` value that cannot be used.
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidMount { flag: String, value: String, reason: String },
    /// Two mounts at one container path.
    #[error("duplicate mount point: {destination}")]
    DuplicateMount { destination: String },
    /// `--mount type=bind` of a host path that does not exist (Docker does not create it).
    #[error("bind source path does not exist: {}", .path.display())]
    BindSourceMissing { path: PathBuf },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// A metadata file that is not what this crate wrote.
    #[error("reading {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}
