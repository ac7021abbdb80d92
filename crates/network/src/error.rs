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
    /// `-p FIRST-LAST:PORT` and every port of the range is taken.
    #[error("no free port in {proto} {addr}:{first}-{last}: all are already allocated")]
    NoFreePort { proto: &'static str, addr: String, first: u16, last: u16 },
    /// `--network NAME` names no network.
    #[error("network {0} not found")]
    UnknownNetwork(String),
    /// A network id prefix that matches more than one network.
    #[error("network {0} is ambiguous: more than one network id starts with it")]
    Ambiguous(String),
    /// A bad value of a `network` option.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid { what: &'static str, value: String, reason: String },
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("no free subnet left in the address pools for network {0}: give one with --subnet")]
    NoSubnet(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Builtin(String),
    #[error("network {network} has active endpoints (container {container} is connected to it)")]
    InUse { network: String, container: String },
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    /// No free address is left in the network's subnet.
    #[error("no free address left in network {network} ({subnet})")]
    NoAddress { network: String, subnet: String },
    /// `--ip` names an address another container has.
    #[error("address {ip} of network {network} is already in use (by container {container})")]
    AddressInUse { network: String, ip: std::net::Ipv4Addr, container: String },
    /// An nftables command or a netlink request failed.
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Error::Invalid { what, value: value.to_string(), reason: reason.into() }
    }
    pub(crate) fn port(value: &str, reason: impl Into<String>) -> Self {
        Error::InvalidPort { value: value.to_string(), reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
