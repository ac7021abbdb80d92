//! The nftables table builder owns, `ip builder`: outbound NAT for the bridge networks and the
//! DNAT of published ports, kept as elements of two maps so adding or removing a container's
//! ports is one atomic transaction that touches nothing else.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::ports::PortBinding;

pub(crate) const TABLE: &str = "builder";

const DEFINITION: &str = r#"table ip builder {
    # proto . host port -> container address . port (published on every host address)
    map ports { type inet_proto . inet_service : ipv4_addr . inet_service; }
    # host address . proto . host port -> container address . port (-p IP:PORT:PORT)
    map ports_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
    chain publish {
        meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
        meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @ports
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local jump publish
    }
    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local jump publish
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        iifname "builder*" oifname != "builder*" masquerade
        oifname "builder*" ip saddr 127.0.0.0/8 masquerade
        iifname "builder*" oifname "builder*" ct status dnat masquerade
    }
}
"#;

fn nft(script: &str) -> Result<()> {
    let command = || format!("nft -f -: {}", script.lines().next().unwrap_or("").trim());
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command { command: command(), message: e.to_string() })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Command { command: command(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Command { command: command(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

/// Serializes table and bridge creation between builder processes.
pub(crate) fn lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = "/run/builder-network.lock";
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io("opening", path, e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| Error::io("locking", path, e.into()))
}

/// Creates the table (once per network namespace).
pub(crate) fn ensure_table() -> Result<()> {
    let exists = Command::new("nft").args(["list", "table", "ip", TABLE]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if exists { Ok(()) } else { nft(DEFINITION) }
}

fn elements(ports: &[PortBinding], ip: Ipv4Addr, verb: &str) -> String {
    let mut out = String::new();
    for p in ports {
        let proto = p.proto.as_str();
        if p.host_ip.is_unspecified() {
            out.push_str(&format!("{verb} element ip {TABLE} ports {{ {proto} . {} : {ip} . {} }}\n", p.host_port, p.container_port));
        } else {
            out.push_str(&format!("{verb} element ip {TABLE} ports_ip {{ {} . {proto} . {} : {ip} . {} }}\n", p.host_ip, p.host_port, p.container_port));
        }
    }
    out
}

/// Adds the DNAT of `ports` to `ip`, all or none.
pub(crate) fn add_ports(ports: &[PortBinding], ip: Ipv4Addr) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    nft(&elements(ports, ip, "add"))
}

/// Removes the DNAT of `ports`; elements already gone (a reboot) are skipped.
pub(crate) fn remove_ports(ports: &[PortBinding], ip: Ipv4Addr) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    if nft(&elements(ports, ip, "delete")).is_ok() {
        return Ok(());
    }
    for p in ports {
        let _ = nft(&elements(std::slice::from_ref(p), ip, "delete"));
    }
    Ok(())
}
