//! The container crate's error type: what failed, on which container, image, flag or path.

use std::path::PathBuf;

/// Everything that can go wrong while creating, running or inspecting a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A run option has a value that cannot be used (the flag and the value are named).
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidOption { flag: &'static str, value: String, reason: String },
    /// The image has neither Entrypoint nor Cmd and none was given.
    #[error("no command specified: image {image} has no Entrypoint or Cmd")]
    NoCommand { image: String },
    /// Another container has this name.
    #[error("the container name {name:?} is already in use")]
    NameInUse { name: String },
    /// The command needs a running container.
    #[error("container {name} is not running")]
    NotRunning { name: String },
    /// `rm` without `-f` of a running container.
    #[error("cannot remove running container {name}: stop it first or use rm -f")]
    StillRunning { name: String },
    /// The supervisor of a detached container did not report it running.
    #[error("container {id} did not start: {reason}")]
    NotStarted { id: String, reason: String },
    /// `--runtime` with `-d`: an external runtime runs in the foreground only.
    #[error("--runtime works in the foreground only")]
    ExternalDetached,
    /// `cp` needs one side to be CONTAINER:PATH.
    #[error("cp needs exactly one of SRC and DEST to be CONTAINER:PATH (got {src:?} and {dest:?})")]
    CopyArguments { src: String, dest: String },
    /// A file of the container or the host could not be read or written.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// The image could not be found locally or pulled.
    #[error("image {image}: {source}")]
    Image { image: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// A volume or mount could not be made (`-v`, `--mount`, `--tmpfs`, `--volumes-from`).
    #[error(transparent)]
    Volume(#[from] volume::Error),
    /// Unpacking a layer of the image failed.
    #[error(transparent)]
    Unpack(#[from] snapshot::error::UnpackError),
    /// Mounting the container's filesystem failed.
    #[error(transparent)]
    Mount(#[from] snapshot::error::MountError),
    /// Writing the container's changes as a layer failed.
    #[error("writing the changes of {name}: {source}")]
    Diff { name: String, source: snapshot::diff::DiffError },
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] oci::Error),
    /// Pulling from a registry failed.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// A network could not be set up (or a port not published).
    #[error(transparent)]
    Network(#[from] network::Error),
    /// The sandbox failed.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
    pub(crate) fn option(flag: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Error::InvalidOption { flag, value: value.to_string(), reason: reason.into() }
    }
    /// Like docker: 127 when the command cannot be run, 125 when the container cannot start.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Runtime(runtime::Error::Exec { .. }) => 127,
            _ => 125,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
