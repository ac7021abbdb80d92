//! Container networks without a daemon: the default `bridge` network (a Linux bridge, a
//! private subnet, the host as gateway, outbound NAT), user-defined bridge networks with an
//! embedded name server, and published ports as nftables DNAT rules in one table builder
//! owns (`ip builder`).
//!
//! Who owns what: the process that supervises a container (the detached shim, or the CLI in
//! the foreground) calls [`attach`] before starting it and [`Attachment::detach`] after it
//! ends. The container's network namespace is held by a descriptor of that supervisor, so
//! the kernel removes it and its veth pairs when the supervisor dies, even by `kill -9`; what
//! outlives a crash (a port rule, an address lease, the record) names the supervisor's PID
//! and is cleared by [`reconcile`], which every attach runs first. Host ports are also held
//! as bound sockets by the supervisor, so a taken port is found before anything is set up.
//! On a user-defined network the supervisor also answers DNS at 127.0.0.11 ([`dns`]).

pub mod dns;
mod error;
mod link;
mod netlink;
pub mod networks;
mod nft;
pub mod ports;
pub mod resolv;
pub mod subnet;

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use networks::{BRIDGE, Network, Networks, NewNetwork};
pub use ports::{PortBinding, Proto, parse_publish, publish_all};
pub use subnet::Subnet;

/// What a container asks of the network when it starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    pub ports: Vec<PortBinding>,
    /// The networks to join, first one first (its address gets the published ports and
    /// the default route); none means the default bridge.
    #[serde(default)]
    pub networks: Vec<Join>,
    /// `--dns`: where the embedded name server forwards names it does not know (default:
    /// the host's servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
}

/// One network a container joins, with its extra names there (`--network-alias`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Join {
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`: this address instead of the lowest free one (user-defined networks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
}

/// Checks that `ip` can be asked for on `net` (`--ip`, compose's `ipv4_address`): a
/// user-defined network, inside its subnet, neither its gateway nor its network or broadcast
/// address. Whether it is free is known when the container starts.
pub fn check_address(net: &Network, ip: Ipv4Addr) -> Result<()> {
    let bad = |why: String| Err(Error::invalid("--ip", &ip.to_string(), why));
    let (Some(subnet), Some(gateway)) = (net.subnet, net.gateway) else { return bad(format!("network {} has no addresses", net.name)) };
    if net.name == BRIDGE || !net.is_bridge() {
        return bad("a fixed address is supported on user-defined networks only (Docker's rule)".into());
    }
    if !subnet.contains(ip) {
        return bad(format!("not in the subnet {subnet} of network {}", net.name));
    }
    let n = u32::from(ip) - u32::from(subnet.addr);
    if ip == gateway || n == 0 || n == subnet.size() - 1 {
        return bad(format!("the {} of network {}", if ip == gateway { "gateway" } else if n == 0 { "network address" } else { "broadcast address" }, net.name));
    }
    Ok(())
}

/// A container's interface on one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub network_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The host end of the veth pair, and the bridge it is on.
    pub veth: String,
    pub bridge: String,
    /// The interface inside the container (`eth0`, `eth1`…).
    pub ifname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub internal: bool,
    /// A user-defined network: names resolve through the embedded server.
    #[serde(default)]
    pub dns: bool,
}

/// A container's place on its networks, as recorded under `<root>/networks/attachments/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub container: String,
    /// The container's name when it started (what the name server answers to).
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    /// Ports with the host ports actually taken.
    pub ports: Vec<PortBinding>,
    /// The process holding the namespace and the ports.
    pub supervisor: i32,
}

impl Record {
    /// The address published ports lead to: on the first network with a way out.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.endpoints.iter().find(|e| !e.internal).or(self.endpoints.first()).map(|e| e.ip)
    }
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

    /// The `/etc/resolv.conf` the container gets on these networks.
    pub fn resolv_conf(&self) -> String {
        if self.record.endpoints.iter().any(|e| e.dns) { resolv::for_user_network() } else { resolv::for_bridge() }
    }

    /// Removes the port rules, the address leases and the record (as it is now: `network
    /// connect` may have added endpoints); the namespace and its veths go when the
    /// descriptor is dropped.
    pub fn detach(self) {
        let now = record(&self.root, &self.record.container).filter(|r| r.supervisor == self.record.supervisor).unwrap_or(self.record);
        release(&self.root, &now);
        for ep in &now.endpoints {
            journal(&self.root, "disconnect", ep, &now.container);
        }
    }
}

fn dir(root: &Path) -> PathBuf {
    root.join("networks")
}

pub(crate) fn attachments_dir(root: &Path) -> PathBuf {
    dir(root).join("attachments")
}

fn record_path(root: &Path, id: &str) -> PathBuf {
    attachments_dir(root).join(format!("{id}.json"))
}

/// The record of container `id`, if it is attached (for `ps`, `port`, `inspect`).
pub fn record(root: &Path, id: &str) -> Option<Record> {
    let text = std::fs::read(record_path(root, id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The records whose supervisor is alive.
pub(crate) fn live_records(root: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(attachments_dir(root)) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice::<Record>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|r| alive(r.supervisor))
        .collect()
}

/// The running containers on network `network_id` (for `network inspect` and `rm`).
pub fn endpoints(root: &Path, network_id: &str) -> Vec<Record> {
    live_records(root).into_iter().filter(|r| r.endpoints.iter().any(|e| e.network_id == network_id)).collect()
}

/// Where a network's address leases live: under the root for user-defined networks; for
/// the default bridge, which every state root of this network namespace shares, in /run
/// keyed by the namespace (so two roots never hand out the same address on `builder0`).
fn lease_dir(root: &Path, net: &Network) -> PathBuf {
    if net.name == BRIDGE {
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
        PathBuf::from(format!("/run/builder/netns-{ns}/bridge/leases"))
    } else {
        dir(root).join(&net.id).join("leases")
    }
}

fn new_endpoint(root: &Path, id: &str, net: &Network, join: &Join, index: usize, supervisor: i32) -> Result<Endpoint> {
    let (Some(subnet), Some(gateway)) = (net.subnet, net.gateway) else { return Err(Error::UnknownNetwork(net.name.clone())) };
    let ip = match join.ip {
        Some(ip) => {
            check_address(net, ip)?;
            lease_address(&lease_dir(root, net), net, ip, id, supervisor)?
        }
        None => lease(&lease_dir(root, net), net, subnet, gateway, id, supervisor)?,
    };
    Ok(Endpoint {
        network_id: net.id.clone(),
        network: net.name.clone(),
        ip,
        prefix: subnet.prefix,
        gateway,
        veth: format!("bv{}{}", &id[..id.len().min(7)], &net.id[..net.id.len().min(4)]),
        bridge: net.bridge.clone(),
        ifname: format!("eth{index}"),
        aliases: join.aliases.clone(),
        internal: net.internal,
        dns: net.name != BRIDGE,
    })
}

/// Makes the networks' bridges and the nftables table exist (after a reboot, in a new namespace).
fn ensure(networks: &[Network]) -> Result<()> {
    let _lock = nft::lock()?;
    for n in networks {
        if let (Some(s), Some(g)) = (n.subnet, n.gateway) {
            link::ensure_bridge(&n.bridge, g, s.prefix)?;
        }
    }
    let bridges: Vec<(&str, bool)> = networks.iter().filter(|n| !n.bridge.is_empty()).map(|n| (n.bridge.as_str(), n.internal)).collect();
    nft::ensure_table(&bridges)
}

/// Puts container `id` (named `name`) on its networks: reserves the host ports, makes its
/// network namespace with one interface per network and a default route through the host,
/// adds the DNAT rules of its ports and, on a user-defined network, starts the name server.
/// On failure nothing of it is left.
pub fn attach(root: &Path, id: &str, name: &str, request: &Request) -> Result<Attachment> {
    reconcile(root);
    let nets = Networks::open(root);
    let joins = if request.networks.is_empty() { vec![Join { network: BRIDGE.into(), ..Default::default() }] } else { request.networks.clone() };
    let mut networks = Vec::new();
    for j in &joins {
        let n = nets.get(&j.network)?;
        if !n.is_bridge() {
            return Err(Error::invalid("--network", &j.network, "host and none cannot be combined with other networks"));
        }
        networks.push(n);
    }
    let mut bindings = request.ports.clone();
    let reservation = ports::reserve(&mut bindings)?;
    ensure(&networks)?;
    let supervisor = std::process::id() as i32;
    let mut record = Record { container: id.to_string(), name: name.to_string(), endpoints: Vec::new(), ports: bindings, supervisor };
    for (i, (n, j)) in networks.iter().zip(&joins).enumerate() {
        match new_endpoint(root, id, n, j, i, supervisor) {
            Ok(e) => record.endpoints.push(e),
            Err(e) => {
                release(root, &record);
                return Err(e);
            }
        }
    }
    // The name server's sockets are bound on every bridge network, the default one too: a
    // container `network connect`ed later to a user-defined network then gets its names at
    // once (its resolv.conf is rewritten to 127.0.0.11), as Docker starts its resolver then.
    let made = write_record(root, &record).and_then(|()| link::new_netns(&record.endpoints, true)).and_then(|ns| {
        let ip = record.ip().unwrap_or(Ipv4Addr::UNSPECIFIED);
        nft::add_ports(&record.ports, ip).map(|()| ns)
    });
    let (netns, sockets) = match made {
        Ok(x) => x,
        Err(e) => {
            release(root, &record);
            return Err(e);
        }
    };
    if let Some((udp, tcp)) = sockets {
        let upstreams = if request.dns.is_empty() { resolv::upstreams() } else { request.dns.iter().map(|ip| std::net::SocketAddr::new(*ip, 53)).collect() };
        dns::serve(udp, tcp, root.to_path_buf(), id.to_string(), upstreams);
    }
    for ep in &record.endpoints {
        journal(root, "connect", ep, id);
    }
    Ok(Attachment { record, netns, _ports: reservation, root: root.to_path_buf() })
}

/// A `network connect`/`disconnect` event in the root's journal, as Docker reports them
/// (the network's id, its name and type, the container's id).
fn journal(root: &Path, action: &str, ep: &Endpoint, container: &str) {
    events::record(root, "network", action, &ep.network_id, &[("container", container), ("name", &ep.network), ("type", "bridge")]);
}

/// Connects the running container `id`, whose first process is `pid`, to one more network.
pub fn connect(root: &Path, id: &str, pid: i32, join: &Join) -> Result<Endpoint> {
    let nets = Networks::open(root);
    let net = nets.get(&join.network)?;
    if !net.is_bridge() {
        return Err(Error::invalid("network", &join.network, "a running container cannot be connected to host or none"));
    }
    let mut record = record(root, id).filter(|r| alive(r.supervisor)).ok_or_else(|| Error::invalid("container", id, "it shares the host's network (or has none), so it cannot be connected to a network"))?;
    if record.endpoints.iter().any(|e| e.network_id == net.id) {
        return Err(Error::AlreadyConnected { container: record.name, network: net.name });
    }
    ensure(std::slice::from_ref(&net))?;
    let index = (0..).find(|i| !record.endpoints.iter().any(|e| e.ifname == format!("eth{i}"))).unwrap_or(0);
    // Leased in the supervisor's name: the address goes when the supervisor does.
    let ep = new_endpoint(root, id, &net, join, index, record.supervisor)?;
    let route = record.endpoints.iter().all(|e| e.internal) && !ep.internal;
    if let Err(e) = link::add_link(Path::new(&format!("/proc/{pid}/ns/net")), &ep, route) {
        let _ = std::fs::remove_file(lease_dir(root, &net).join(ep.ip.to_string()));
        return Err(e);
    }
    record.endpoints.push(ep.clone());
    write_record(root, &record)?;
    journal(root, "connect", &ep, id);
    Ok(ep)
}

/// Points the container's `/etc/resolv.conf` (the bundle's file at `path`, bind-mounted
/// into it) at the embedded server, after [`connect`] put it on its first user-defined
/// network; the server forwards other names to the host's servers, as the file did before.
/// The file is rewritten in place: the bind mount holds its inode.
/// `body` is the new file ([`resolv::for_user_network`], with the container's `--dns*` options).
pub fn use_embedded_dns(path: &Path, body: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old.lines().any(|l| l.split_whitespace().eq(["nameserver", "127.0.0.11"]))) {
        return Ok(());
    }
    std::fs::write(path, body).map_err(|e| Error::io("writing", path, e))
}

/// Disconnects the running container `id` (first process `pid`) from a network.
pub fn disconnect(root: &Path, id: &str, pid: i32, network: &str) -> Result<()> {
    let net = Networks::open(root).get(network)?;
    let Some(mut record) = record(root, id).filter(|r| alive(r.supervisor)) else {
        return Err(Error::NotConnected { container: id.to_string(), network: net.name });
    };
    let Some(i) = record.endpoints.iter().position(|e| e.network_id == net.id) else {
        return Err(Error::NotConnected { container: record.name, network: net.name });
    };
    let ep = record.endpoints.remove(i);
    link::remove_link(Path::new(&format!("/proc/{pid}/ns/net")), &ep.ifname)?;
    let _ = std::fs::remove_file(lease_dir(root, &net).join(ep.ip.to_string()));
    journal(root, "disconnect", &ep, id);
    write_record(root, &record)
}

fn write_record(root: &Path, record: &Record) -> Result<()> {
    let path = record_path(root, &record.container);
    let parent = path.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec_pretty(record).map_err(|e| Error::io("encoding", &path, std::io::Error::other(e)))?;
    std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))
}

/// Takes the lowest free address of the subnet (see [`take`]).
fn lease(leases: &Path, net: &Network, subnet: Subnet, gateway: Ipv4Addr, id: &str, supervisor: i32) -> Result<Ipv4Addr> {
    std::fs::create_dir_all(leases).map_err(|e| Error::io("creating", leases, e))?;
    let base = u32::from(subnet.addr);
    for n in 1..subnet.size() - 1 {
        let ip = Ipv4Addr::from(base + n);
        if ip != gateway && take(leases, ip, id, supervisor)? {
            return Ok(ip);
        }
    }
    Err(Error::NoAddress { network: net.name.clone(), subnet: subnet.to_string() })
}

/// Takes the address `ip` asked for, or says who holds it.
fn lease_address(leases: &Path, net: &Network, ip: Ipv4Addr, id: &str, supervisor: i32) -> Result<Ipv4Addr> {
    std::fs::create_dir_all(leases).map_err(|e| Error::io("creating", leases, e))?;
    if take(leases, ip, id, supervisor)? {
        return Ok(ip);
    }
    let holder = std::fs::read_to_string(leases.join(ip.to_string())).ok().and_then(|t| t.split_whitespace().nth(1).map(str::to_string)).unwrap_or_default();
    Err(Error::AddressInUse { network: net.name.clone(), ip, container: holder[..holder.len().min(12)].to_string() })
}

/// Leases one address: a file per address (holding the supervisor's PID and the container),
/// made with `create_new` so concurrent starts never get the same one. A lease whose
/// supervisor is dead is taken over. False: someone else holds it.
fn take(leases: &Path, ip: Ipv4Addr, id: &str, supervisor: i32) -> Result<bool> {
    let path = leases.join(ip.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(format!("{supervisor} {id}\n").as_bytes()).map_err(|e| Error::io("writing", &path, e))?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).ok().and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok());
                // Only a complete lease of a dead process is stale (a new one may be half written).
                if holder.is_some_and(|pid| !alive(pid)) {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                return Ok(false);
            }
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
    }
    Ok(false)
}

fn release(root: &Path, record: &Record) {
    if let Some(Err(e)) = record.ip().map(|ip| nft::remove_ports(&record.ports, ip)) {
        tracing::debug!("removing the port rules of {}: {e}", record.container);
    }
    let nets = Networks::open(root);
    for ep in &record.endpoints {
        if let Ok(net) = nets.get(&ep.network_id) {
            let path = lease_dir(root, &net).join(ep.ip.to_string());
            // Only our own lease: after a crash another container may hold the address now.
            let ours = std::fs::read_to_string(&path).is_ok_and(|t| t.split_whitespace().nth(1) == Some(record.container.as_str()));
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let _ = std::fs::remove_file(record_path(root, &record.container));
}

/// Clears what containers whose supervisor is gone left behind (a `kill -9`, a reboot):
/// their port rules, address leases and records.
pub fn reconcile(root: &Path) {
    let Ok(entries) = std::fs::read_dir(attachments_dir(root)) else { return };
    for e in entries.flatten() {
        if e.path().extension().is_none_or(|x| x != "json") {
            continue;
        }
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
    if let Some(r) = record(root, id).filter(|r| !alive(r.supervisor) || r.supervisor == std::process::id() as i32) {
        release(root, &r);
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
