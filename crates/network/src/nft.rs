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
    # the bridges of --internal networks: nothing in or out but their own subnet
    set internal { type ifname; }
    # bridge . bridge, for each bridge network: traffic that stays on one network
    set same { type ifname . ifname; }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname @internal oifname != @internal drop
        oifname @internal iifname != @internal drop
        # one network does not reach another (Docker's DOCKER-ISOLATION chains), except
        # through a published port, which anyone who reaches the host may use
        iifname "builder*" oifname "builder*" ct status dnat accept
        iifname "builder*" oifname "builder*" iifname . oifname != @same drop
    }
    chain publish {
        meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
        meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @ports
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        # a connection from a container to the host: marked, for postrouting, where the input
        # bridge is not known when br_netfilter bridges a hairpin (a container to its own port)
        iifname "builder*" fib daddr type local ct mark set 0xb1d0
        fib daddr type local jump publish
    }
    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local jump publish
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        iifname "builder*" oifname != "builder*" iifname != @internal masquerade
        oifname "builder*" ip saddr 127.0.0.0/8 masquerade
        oifname "builder*" ct status dnat ct mark 0xb1d0 masquerade
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

/// Creates the table (once per network namespace), with `bridges` (name, internal) in the
/// sets: the `same` set lets traffic that stays on one bridge through the isolation rule,
/// `internal` seals a bridge. Elements already there are kept; one transaction, and none
/// when the table already has them all. A table of an older builder (without the `same`
/// set or the hairpin mark) is replaced.
pub(crate) fn ensure_table(bridges: &[(&str, bool)]) -> Result<()> {
    let out = Command::new("nft").args(["list", "table", "ip", TABLE]).stdout(Stdio::piped()).stderr(Stdio::null()).output();
    let (mut script, listed) = match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if text.contains("set same ") && text.contains("ct mark 0x0000b1d0") { (String::new(), text) } else { (format!("delete table ip {TABLE}\n{DEFINITION}"), String::new()) }
        }
        _ => (DEFINITION.to_string(), String::new()),
    };
    for (b, internal) in bridges {
        let pair = format!("\"{b}\" . \"{b}\"");
        if !listed.contains(&pair) {
            script.push_str(&format!("add element ip {TABLE} same {{ {pair} }}\n"));
        }
        if *internal {
            script.push_str(&format!("add element ip {TABLE} internal {{ \"{b}\" }}\n"));
        }
    }
    if script.is_empty() { Ok(()) } else { nft(&script) }
}

/// Removes a deleted network's bridge from the sets; elements already gone are fine.
pub(crate) fn remove_bridge(bridge: &str) {
    let _ = nft(&format!("delete element ip {TABLE} same {{ \"{bridge}\" . \"{bridge}\" }}\n"));
    let _ = nft(&format!("delete element ip {TABLE} internal {{ \"{bridge}\" }}\n"));
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

/// Adds the DNAT of `ports` to `ip`, all or none. Elements a dead container of another
/// state root left for the same host ports (the port itself is free: we hold it) are replaced.
pub(crate) fn add_ports(ports: &[PortBinding], ip: Ipv4Addr) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    match nft(&elements(ports, ip, "add")) {
        Ok(()) => Ok(()),
        Err(first) => {
            for p in ports {
                let key = if p.host_ip.is_unspecified() {
                    format!("delete element ip {TABLE} ports {{ {} . {} }}\n", p.proto.as_str(), p.host_port)
                } else {
                    format!("delete element ip {TABLE} ports_ip {{ {} . {} . {} }}\n", p.host_ip, p.proto.as_str(), p.host_port)
                };
                let _ = nft(&key);
            }
            nft(&elements(ports, ip, "add")).map_err(|_| first)
        }
    }
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
