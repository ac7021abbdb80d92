//! Published ports: `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]` (ranges too) parsed into
//! bindings, and the host ports held while the container runs.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port. `host_port` 0 means "any free port" until the port is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// The host address it answers on; 0.0.0.0 for all of them.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    /// `-p 8000-8010:80`: the last host port to try, from `host_port` up (0: just `host_port`).
    /// Reserving picks the first free one and clears this.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
    pub container_port: u16,
    pub proto: Proto,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

impl std::fmt::Display for PortBinding {
    /// As `docker ps` / `docker port` print it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}->{}/{}", self.host_ip, self.host_port, self.container_port, self.proto.as_str())
    }
}

fn port_range(value: &str, text: &str, allow_zero: bool) -> Result<(u16, u16)> {
    let one = |t: &str| -> Result<u16> {
        let n: u32 = t.parse().map_err(|_| Error::port(value, format!("{t:?} is not a port number")))?;
        if n > 65535 || (n == 0 && !allow_zero) {
            return Err(Error::port(value, format!("port {n} is out of range (1-65535)")));
        }
        Ok(n as u16)
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(Error::port(value, format!("the range {text} ends before it starts")));
            }
            Ok((a, b))
        }
        None => {
            let p = one(text)?;
            Ok((p, p))
        }
    }
}

/// Parses one `-p` value into its bindings (one per port of a range).
pub fn parse_publish(value: &str) -> Result<Vec<PortBinding>> {
    let (spec, proto) = match value.rsplit_once('/') {
        Some((s, "tcp")) => (s, Proto::Tcp),
        Some((s, "udp")) => (s, Proto::Udp),
        Some((_, p)) => return Err(Error::port(value, format!("protocol {p:?} is not tcp or udp"))),
        None => (value, Proto::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(Error::port(value, "use [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]")),
    };
    let host_ip: Ipv4Addr = if ip.is_empty() { Ipv4Addr::UNSPECIFIED } else { ip.parse().map_err(|_| Error::port(value, format!("{ip:?} is not an IPv4 address")))? };
    let (c0, c1) = port_range(value, container, false)?;
    let (h0, h1) = if host.is_empty() { (0, 0) } else { port_range(value, host, true)? };
    let count = c1 - c0;
    if count == 0 && h1 > h0 {
        // One container port on a range of host ports: Docker's "the first free one of these".
        return Ok(vec![PortBinding { host_ip, host_port: h0, host_port_end: h1, container_port: c0, proto }]);
    }
    if !host.is_empty() && h1 - h0 != count && h0 != h1 {
        return Err(Error::port(value, "the host and container port ranges differ in size"));
    }
    Ok((0..=count)
        .map(|i| PortBinding {
            host_ip,
            host_port: if h0 == 0 { 0 } else if h0 == h1 { h0 } else { h0 + i },
            host_port_end: 0,
            container_port: c0 + i,
            proto,
        })
        .collect())
}

/// `EXPOSE`d port keys of an image config (`80/tcp`, `53/udp`) for `-P`: each on a random host port.
pub fn publish_all(exposed: &[String]) -> Vec<PortBinding> {
    exposed
        .iter()
        .filter_map(|k| {
            let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let proto = if proto == "udp" { Proto::Udp } else { Proto::Tcp };
            Some(PortBinding { host_ip: Ipv4Addr::UNSPECIFIED, host_port: 0, host_port_end: 0, container_port: p.parse().ok()?, proto })
        })
        .collect()
}

/// Host ports held (bound, never listening) for as long as the container runs: nothing else
/// on the host can take them, and a port already taken is found before anything is set up.
/// The traffic itself never reaches these sockets: nftables rewrites it to the container.
#[derive(Debug)]
pub struct Reservation {
    _sockets: Vec<OwnedFd>,
}

/// Binds every port of `bindings` (choosing free ones for port 0) and fills in the ports.
pub fn reserve(bindings: &mut [PortBinding]) -> Result<Reservation> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
    let mut sockets = Vec::new();
    for b in bindings.iter_mut() {
        let kind = if b.proto == Proto::Tcp { SockType::Stream } else { SockType::Datagram };
        let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None).map_err(|e| Error::io("creating a socket for", format!("port {}", b.host_port), e.into()))?;
        let last = b.host_port_end.max(b.host_port);
        let mut bound = None;
        for port in b.host_port..=last {
            match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(SocketAddrV4::new(b.host_ip, port))) {
                Ok(()) => {
                    bound = Some(port);
                    break;
                }
                Err(e) if port == last => {
                    return Err(if last == b.host_port {
                        Error::PortTaken { proto: b.proto.as_str(), addr: b.host_ip.to_string(), port: b.host_port, source: e.into() }
                    } else {
                        Error::NoFreePort { proto: b.proto.as_str(), addr: b.host_ip.to_string(), first: b.host_port, last }
                    });
                }
                Err(_) => {}
            }
        }
        b.host_port = bound.unwrap_or(b.host_port);
        b.host_port_end = 0;
        // Bound, not listening: a connection that comes before the DNAT rule is refused (and
        // retried by the client) instead of being accepted by a socket nobody reads. Without
        // SO_REUSEADDR on ours, nobody else can bind the port, with or without theirs.
        if b.host_port == 0 {
            let got: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).map_err(|e| Error::io("reading the port of", "a new socket", e.into()))?;
            b.host_port = got.port();
        }
        sockets.push(fd);
    }
    Ok(Reservation { _sockets: sockets })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms_as_docker_reads_them() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(p, [PortBinding { host_ip: Ipv4Addr::UNSPECIFIED, host_port: 8080, host_port_end: 0, container_port: 80, proto: Proto::Tcp }]);
        let p = parse_publish("8000-8010:80").unwrap();
        assert_eq!((p.len(), p[0].host_port, p[0].host_port_end, p[0].container_port), (1, 8000, 8010, 80));
        assert_eq!(parse_publish("80").unwrap()[0].host_port, 0);
        let p = parse_publish("127.0.0.1::53/udp").unwrap();
        assert_eq!((p[0].host_ip, p[0].host_port, p[0].proto), (Ipv4Addr::LOCALHOST, 0, Proto::Udp));
        let p = parse_publish("9000-9001:80-81").unwrap();
        assert_eq!(p.iter().map(|b| (b.host_port, b.container_port)).collect::<Vec<_>>(), [(9000, 80), (9001, 81)]);
        assert_eq!(p[1].to_string(), "0.0.0.0:9001->81/tcp");
    }

    #[test]
    fn bad_publish_values_are_named() {
        for (v, why) in [("99999:80", "out of range"), ("abc", "not a port number"), ("80/sctp", "not tcp or udp"), ("1:2:3:4", "use [IP:]"), ("x.y::80", "IPv4"), ("90-80:90-80", "ends before")] {
            let e = parse_publish(v).unwrap_err().to_string();
            assert!(e.contains(&format!("{v:?}")) && e.contains(why), "{v}: {e}");
        }
    }
}
