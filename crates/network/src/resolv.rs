//! The `/etc/resolv.conf` a container gets, as Docker writes it: the host's file for the host
//! network; without the host's loopback name servers (unusable from another network
//! namespace) on the default bridge, falling back to systemd-resolved's upstream list and
//! then to Google's public servers; the embedded server 127.0.0.11 on user-defined networks.

use std::net::{IpAddr, SocketAddr};

/// systemd-resolved's list of the real upstream servers, used when /etc/resolv.conf only
/// names its stub (127.0.0.53).
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";
/// Docker's defaults when no usable server is left.
const DEFAULT_SERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

fn host_file() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

fn nameserver(line: &str) -> Option<IpAddr> {
    let mut w = line.split_whitespace();
    (w.next() == Some("nameserver")).then(|| w.next()?.parse().ok()).flatten()
}

/// `text` with loopback name servers dropped; Docker's defaults if none is left.
pub fn filter_loopback(text: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in text.lines() {
        match nameserver(line) {
            Some(ip) if ip.is_loopback() => continue,
            Some(_) => servers += 1,
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for s in DEFAULT_SERVERS {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    out
}

/// For a container with a network namespace of its own on the default bridge (or `none`).
pub fn for_bridge() -> String {
    let host = host_file();
    let only_loopback = {
        let servers: Vec<IpAddr> = host.lines().filter_map(nameserver).collect();
        !servers.is_empty() && servers.iter().all(IpAddr::is_loopback)
    };
    match std::fs::read_to_string(RESOLVED_UPSTREAM) {
        Ok(upstream) if only_loopback => filter_loopback(&upstream),
        _ => filter_loopback(&host),
    }
}

/// For a container on a user-defined network: the embedded server, the host's search
/// domains and options, and `ndots:0` as Docker sets it.
pub fn for_user_network() -> String {
    let host = host_file();
    let mut out = String::from("nameserver 127.0.0.11\n");
    for line in host.lines() {
        if line.starts_with("search ") || line.starts_with("domain ") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let options: Vec<&str> = host.lines().filter_map(|l| l.strip_prefix("options ")).flat_map(str::split_whitespace).filter(|o| !o.starts_with("ndots:")).collect();
    out.push_str(&format!("options {}\n", options.iter().copied().chain(["ndots:0"]).collect::<Vec<_>>().join(" ")));
    out
}

/// Where the embedded server sends names it does not know: the host's servers as the
/// host itself uses them (the forwarder runs in the host's namespace, so 127.0.0.53 works).
pub fn upstreams() -> Vec<SocketAddr> {
    let servers: Vec<SocketAddr> = host_file().lines().filter_map(nameserver).map(|ip| SocketAddr::new(ip, 53)).collect();
    if servers.is_empty() { DEFAULT_SERVERS.iter().filter_map(|s| s.parse().ok()).map(|ip| SocketAddr::new(ip, 53)).collect() } else { servers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_are_dropped_and_defaults_fill_in() {
        let text = "search example.org\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n";
        assert_eq!(filter_loopback(text), "search example.org\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        let text = "nameserver 127.0.0.1\nnameserver 10.0.0.2\n";
        assert_eq!(filter_loopback(text), "nameserver 10.0.0.2\n");
    }

    #[test]
    fn user_networks_use_the_embedded_server() {
        let text = for_user_network();
        assert!(text.starts_with("nameserver 127.0.0.11\n") && text.ends_with("ndots:0\n"), "{text}");
        assert_eq!(text.matches("nameserver").count(), 1);
    }
}
