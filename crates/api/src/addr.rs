//! Addresses of a builder server: `tcp://HOST:PORT` or `unix:///PATH`.

use std::fmt;
use std::path::PathBuf;

use crate::error::ApiError;

/// Where a server listens or a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `HOST:PORT` (a name, an IPv4 address, or `[IPv6]`).
    Tcp(String),
    Unix(PathBuf),
}

impl Address {
    pub fn parse(s: &str) -> Result<Address, ApiError> {
        let bad = |reason: &str| ApiError::BadAddress { addr: s.to_string(), reason: reason.to_string() };
        if let Some(rest) = s.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            port.parse::<u16>().map_err(|_| bad("the port is not a number from 0 to 65535"))?;
            return Ok(Address::Tcp(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(bad("the socket path must be absolute (unix:///run/builder.sock)"));
            }
            return Ok(Address::Unix(PathBuf::from(rest)));
        }
        Err(bad("unknown scheme"))
    }

    /// The host name to check a TLS certificate against.
    pub fn host(&self) -> Option<String> {
        match self {
            Address::Tcp(hp) => {
                let (h, _) = hp.rsplit_once(':')?;
                Some(h.trim_start_matches('[').trim_end_matches(']').to_string())
            }
            Address::Unix(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(hp) => write!(f, "tcp://{hp}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_unix_addresses_parse() {
        assert_eq!(Address::parse("tcp://127.0.0.1:8765").ok(), Some(Address::Tcp("127.0.0.1:8765".into())));
        assert_eq!(Address::parse("tcp://[::1]:1").ok().and_then(|a| a.host()), Some("::1".into()));
        assert_eq!(Address::parse("unix:///run/b.sock").ok(), Some(Address::Unix("/run/b.sock".into())));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (a, want) in [("tcp://host", "missing :PORT"), ("tcp://h:99999", "port"), ("unix://rel.sock", "absolute"), ("http://x:1", "scheme")] {
            let e = Address::parse(a).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want), "{a}: {e}");
        }
    }
}
