//! Container networks without a daemon: the default `bridge` network (a Linux bridge, a
//! private subnet, the host as gateway, outbound NAT) and published ports as nftables DNAT
//! rules in one table builder owns (`ip builder`).
//!
//! Who owns what: the process that supervises a container (the detached shim, or the CLI in
//! the foreground) calls [`attach`] before starting it and [`Attachment::detach`] after it
//! ends. The container's network namespace is held by a descriptor of that supervisor, so
//! the kernel removes it and its veth pair when the supervisor dies, even by `kill -9`; what
//! outlives a crash (a port rule, an address lease, the record) names the supervisor's PID
//! and is cleared by [`reconcile`], which every attach runs first. Host ports are also held
//! as bound sockets by the supervisor, so a taken port is found before anything is set up.

mod error;
mod link;
mod nft;
pub mod ports;

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use ports::{PortBinding, Proto, parse_publish, publish_all};

/// The default network: its bridge, subnet and gateway (the host's side).
pub const BRIDGE: &str = "bridge";
const BRIDGE_IFACE: &str = "builder0";
const SUBNET: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 0);
const PREFIX: u8 = 16;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);

/// What a container asks of the network when it starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    pub ports: Vec<PortBinding>,
}

/// A container's place on a network, as recorded under `<root>/networks/attachments/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub container: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    /// The host end of the veth pair.
    pub veth: String,
    /// Ports with the host ports actually taken.
    pub ports: Vec<PortBinding>,
    /// The process holding the namespace and the ports.
    pub supervisor: i32,
}

/// A live attachment: the namespace descriptor and the reserved ports, held until detached.
#[derive(Debug)]
pub struct Attachment {
    pub record: Record,
    netns: OwnedFd,
    _ports: ports::Reservation,
    root: PathBuf,
}

impl Attachment {
    /// The path a runtime opens to join the container's network namespace.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.netns.as_raw_fd()))
    }

    /// Removes the port rules, the address lease and the record; the namespace and its veth
    /// go when the descriptor is dropped.
    pub fn detach(self) {
        release(&self.root, &self.record);
    }
}

fn dir(root: &Path) -> PathBuf {
    root.join("networks")
}

fn record_path(root: &Path, id: &str) -> PathBuf {
    dir(root).join("attachments").join(format!("{id}.json"))
}

/// The record of container `id`, if it is attached (for `ps`, `port`, `inspect`).
pub fn record(root: &Path, id: &str) -> Option<Record> {
    let text = std::fs::read(record_path(root, id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Puts container `id` on the default bridge: reserves the host ports, makes its network
/// namespace with `eth0` on the bridge and a default route through the host, and adds the
/// DNAT rules of its ports. On failure nothing of it is left.
pub fn attach(root: &Path, id: &str, request: &Request) -> Result<Attachment> {
    reconcile(root);
    let mut bindings = request.ports.clone();
    let reservation = ports::reserve(&mut bindings)?;
    let _lock = nft::lock()?;
    link::ensure_bridge(BRIDGE_IFACE, GATEWAY, PREFIX)?;
    nft::ensure_table()?;
    drop(_lock);
    let ip = lease(root, id)?;
    let record = Record {
        container: id.to_string(),
        network: BRIDGE.to_string(),
        ip,
        gateway: GATEWAY,
        prefix: PREFIX,
        veth: format!("bv{}", &id[..id.len().min(11)]),
        ports: bindings,
        supervisor: std::process::id() as i32,
    };
    write_record(root, &record)?;
    let netns = match link::new_netns(&record, BRIDGE_IFACE).and_then(|ns| nft::add_ports(&record.ports, record.ip).map(|()| ns)) {
        Ok(ns) => ns,
        Err(e) => {
            release(root, &record);
            return Err(e);
        }
    };
    Ok(Attachment { record, netns, _ports: reservation, root: root.to_path_buf() })
}

fn write_record(root: &Path, record: &Record) -> Result<()> {
    let path = record_path(root, &record.container);
    let parent = path.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(record).map_err(|e| Error::io("encoding", &path, std::io::Error::other(e)))?;
    std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))
}

/// Takes the lowest free address of the subnet: a file per address, made with `create_new`
/// so concurrent starts never get the same one.
fn lease(root: &Path, id: &str) -> Result<Ipv4Addr> {
    let leases = dir(root).join(BRIDGE).join("leases");
    std::fs::create_dir_all(&leases).map_err(|e| Error::io("creating", &leases, e))?;
    let base = u32::from(SUBNET);
    let size = 1u32 << (32 - PREFIX);
    for n in 2..size - 1 {
        let ip = Ipv4Addr::from(base + n);
        let path = leases.join(ip.to_string());
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(id.as_bytes()).map_err(|e| Error::io("writing", &path, e))?;
                return Ok(ip);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
    }
    Err(Error::NoAddress { network: BRIDGE.into(), subnet: format!("{SUBNET}/{PREFIX}") })
}

fn release(root: &Path, record: &Record) {
    if let Err(e) = nft::remove_ports(&record.ports, record.ip) {
        tracing::debug!("removing the port rules of {}: {e}", record.container);
    }
    let _ = std::fs::remove_file(dir(root).join(&record.network).join("leases").join(record.ip.to_string()));
    let _ = std::fs::remove_file(record_path(root, &record.container));
}

/// Clears what containers whose supervisor is gone left behind (a `kill -9`, a reboot):
/// their port rules, address leases and records.
pub fn reconcile(root: &Path) {
    let Ok(entries) = std::fs::read_dir(dir(root).join("attachments")) else { return };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read(e.path()) else { continue };
        let Ok(record) = serde_json::from_slice::<Record>(&text) else {
            let _ = std::fs::remove_file(e.path());
            continue;
        };
        if !alive(record.supervisor) {
            release(root, &record);
        }
    }
}

/// Detaches container `id` if its supervisor is gone (`rm` of a container whose shim was killed).
pub fn forget(root: &Path, id: &str) {
    if let Some(r) = record(root, id) {
        if !alive(r.supervisor) || r.supervisor == std::process::id() as i32 {
            release(root, &r);
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
