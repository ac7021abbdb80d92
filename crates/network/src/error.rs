//! The network crate's error type.

use std::path::PathBuf;

/// What went wrong while parsing, setting up or tearing down a container's network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `-p` value that cannot be used.
    #[error("invalid --publish {value:?}: {reason}")]
    InvalidPort { value: String, reason: String },
    /// The host port is held by another container or process.
    #[error("port {proto} {addr}:{port} is already allocated ({source})")]
    PortTaken { proto: &'static str, addr: String, port: u16, source: std::io::Error },
    /// `--network NAME` names no network.
    #[error("network {0} not found")]
    UnknownNetwork(String),
    /// No free address is left in the network's subnet.
    #[error("no free address left in network {network} ({subnet})")]
    NoAddress { network: String, subnet: String },
    /// A command of iproute2 or nftables failed.
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
    pub(crate) fn port(value: &str, reason: impl Into<String>) -> Self {
        Error::InvalidPort { value: value.to_string(), reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
