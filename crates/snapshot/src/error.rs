//! Errors of unpacking layers and mounting roots (issue 4's part of the crate).

use std::path::PathBuf;

/// What went wrong while turning a layer into a directory or assembling a root.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer stream could not be read or is not a valid tar.
    #[error("reading layer {layer}: {source}")]
    Read { layer: String, source: std::io::Error },
    /// An entry would land outside the snapshot (`..`, or a link pointing out).
    #[error("layer {layer}: entry {entry:?} escapes the snapshot directory")]
    Escape { layer: String, entry: String },
    /// Writing an entry failed.
    #[error("layer {layer}: writing {entry:?} into {dir}: {source}")]
    Write { layer: String, entry: String, dir: PathBuf, source: std::io::Error },
    /// A filesystem operation on the snapshot store failed.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

/// Mounting an overlay or its fallback failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting overlay at {target}: {source}")]
    Overlay { target: PathBuf, source: std::io::Error },
    #[error("copying layers into {target} (overlay unavailable): {source}")]
    Copy { target: PathBuf, source: std::io::Error },
}
