//! The runtime's error type: which step of container setup failed, and on what.

use std::path::PathBuf;

/// Everything that can go wrong while preparing, starting or supervising a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle or spec cannot be used (missing root, bad user, bad option).
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// A user or group named in the spec is not in the image's /etc/passwd or /etc/group.
    #[error("{source} of {rootfs}")]
    UnknownUser { source: crate::user::UnknownName, rootfs: PathBuf },
    /// A file of the bundle or the host could not be read or written.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// A system call of the runtime itself (outside the container) failed.
    #[error("{step}: {source}")]
    Sys { step: &'static str, source: nix::Error },
    /// The container's init failed while setting up the sandbox, before running the command.
    #[error("container setup failed: {message}: {errno}")]
    Setup { message: String, errno: nix::Error },
    /// The command could not be executed inside the container.
    #[error("exec {command:?} in the container failed: {errno}")]
    Exec { command: String, errno: nix::Error },
    /// The seccomp policy could not be compiled.
    #[error("seccomp policy: {0}")]
    Seccomp(String),
    /// A cgroup limit could not be applied.
    #[error("cgroup {path}: {message}")]
    Cgroup { path: PathBuf, message: String },
    /// An external OCI runtime (such as runc) failed.
    #[error("external runtime {runtime}: {message}")]
    External { runtime: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
    pub(crate) fn sys(step: &'static str, source: nix::Error) -> Self {
        Error::Sys { step, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
