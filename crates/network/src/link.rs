//! Links, addresses and routes, through iproute2 (`ip -batch`, one process per namespace).

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::Record;
use crate::error::{Error, Result};

/// Runs `ip -batch -` with `lines`, in the calling thread's network namespace.
fn ip_batch(lines: &str) -> Result<()> {
    let command = || format!("ip -batch: {}", lines.trim().replace('\n', "; "));
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command { command: command(), message: e.to_string() })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(lines.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Command { command: command(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Command { command: command(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| Error::io("writing", path, e))
}

/// Creates the bridge (once) with the gateway address, and turns on forwarding and
/// `route_localnet`, so DNAT of `127.0.0.1:PORT` to a container is routed.
pub(crate) fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    if !std::path::Path::new("/sys/class/net").join(name).exists() || std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/route_localnet")).is_err() {
        let _ = ip_batch(&format!("link add {name} type bridge\naddr add {gateway}/{prefix} dev {name}\nlink set {name} up\n"));
    }
    sysctl("net.ipv4.ip_forward", "1")?;
    sysctl(&format!("net.ipv4.conf.{name}.route_localnet"), "1")
}

/// Makes a network namespace for the container, with `lo` up and `eth0` (the peer of the
/// record's veth, whose host end joins `bridge`) holding the record's address and route.
/// The returned descriptor keeps the namespace alive.
pub(crate) fn new_netns(record: &Record, bridge: &str) -> Result<OwnedFd> {
    let supervisor = std::process::id();
    let inside = format!(
        "link set lo up\nlink add eth0 type veth peer name {veth} netns {supervisor}\naddr add {ip}/{prefix} dev eth0\nlink set eth0 up\nroute add default via {gw}\n",
        veth = record.veth,
        ip = record.ip,
        prefix = record.prefix,
        gw = record.gateway
    );
    // A thread of our own enters the new namespace; what it spawns starts there too.
    let netns = std::thread::spawn(move || -> Result<OwnedFd> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("creating", "a network namespace", e.into()))?;
        let ns = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| Error::io("opening", "/proc/thread-self/ns/net", e))?;
        ip_batch(&inside)?;
        Ok(OwnedFd::from(ns))
    })
    .join()
    .map_err(|_| Error::Command { command: "setting up the network namespace".into(), message: "the thread panicked".into() })??;
    let _ = netns.as_raw_fd();
    ip_batch(&format!("link set {veth} master {bridge}\nlink set {veth} type bridge_slave hairpin on\nlink set {veth} up\n", veth = record.veth))?;
    Ok(netns)
}
