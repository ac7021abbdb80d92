//! IPv4 subnets (`10.1.0.0/24`): parsing, membership, overlap, and the pool new networks
//! take theirs from when `--subnet` is not given.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// An IPv4 network address and prefix length; the address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        Subnet { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix }
    }

    /// `A.B.C.D/N`; host bits must be zero, as Docker asks.
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let (a, p) = text.split_once('/').ok_or_else(|| "use ADDRESS/PREFIX, such as 10.1.0.0/24".to_string())?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("prefix {p:?} is not 0-32"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("a /{prefix} network is not usable (use /8 to /30)"));
        }
        let s = Subnet::new(addr, prefix);
        if s.addr != addr {
            return Err(format!("{addr} has host bits set for /{prefix} (the network is {})", s.addr));
        }
        Ok(s)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The first host address: Docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// How many addresses the subnet has, network and broadcast included.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix as u32)
    }
}

pub(crate) fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        Subnet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The subnets `network create` picks from, in order (Docker's pools, less the default bridge's).
pub(crate) fn pool() -> impl Iterator<Item = Subnet> {
    let sixteens = (18..=29).chain([31]).map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let twenties = (0..16).map(|n| Subnet::new(Ipv4Addr::new(192, 168, n * 16, 0), 20));
    sixteens.chain(twenties)
}

/// The IPv4 routes of this network namespace (`/proc/net/route`), except the default route:
/// a new network must not take a subnet the host already reaches some other way.
pub(crate) fn host_routes() -> Vec<(String, Subnet)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the network-order value as a native integer.
            let prefix = m.count_ones() as u8;
            (prefix > 0).then(|| (f[0].to_string(), Subnet::new(Ipv4Addr::from(dest.to_ne_bytes()), prefix)))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_contains_and_overlap() {
        let a = Subnet::parse("10.1.0.0/16").unwrap();
        let b = Subnet::parse("10.1.2.0/24").unwrap();
        let c = Subnet::parse("10.2.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a) && !a.overlaps(&c));
        assert!(a.contains("10.1.255.3".parse().unwrap()) && !b.contains("10.1.3.1".parse().unwrap()));
        assert_eq!(b.first_host().to_string(), "10.1.2.1");
        assert_eq!(b.to_string(), "10.1.2.0/24");
        for (bad, why) in [("10.1.0.1/24", "host bits"), ("10.1.0.0", "ADDRESS/PREFIX"), ("10.1.0.0/33", "0-32"), ("x/24", "IPv4"), ("10.0.0.0/31", "not usable")] {
            let e = Subnet::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pool_skips_the_default_bridge() {
        let bridge = Subnet::parse("172.30.0.0/16").unwrap();
        assert!(pool().all(|s| !s.overlaps(&bridge)));
        assert_eq!(pool().next().unwrap().to_string(), "172.18.0.0/16");
    }
}
