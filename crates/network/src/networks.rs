//! The networks of one state root: the built-in `bridge`, `host` and `none`, and the
//! user-defined bridge networks of `network create`, one JSON file each under
//! `<root>/networks/defs/`. Creating and removing happen under `<root>/networks/.lock`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::subnet::Subnet;

/// The default bridge: its name, interface, subnet and gateway (the host's side).
pub const BRIDGE: &str = "bridge";
pub(crate) const BRIDGE_IFACE: &str = "builder0";
pub(crate) const BRIDGE_SUBNET: Subnet = Subnet { addr: Ipv4Addr::new(172, 30, 0, 0), prefix: 16 };
pub(crate) const BRIDGE_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);

/// A network as `network ls` / `inspect` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null` (for `none`), as Docker names them.
    pub driver: String,
    /// None for `host` and `none`.
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    /// No route out of the subnet, no NAT.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// The Linux bridge on the host; empty for `host` and `none`.
    #[serde(default)]
    pub bridge: String,
}

impl Network {
    /// A network containers get an address on (the default bridge or a user-defined one).
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// One of `bridge`, `host`, `none`.
    pub fn is_builtin(&self) -> bool {
        [BRIDGE, "host", "none"].contains(&self.name.as_str())
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewNetwork {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// A stable 64-hex id for a built-in network (FNV-1a of its name, stretched).
fn builtin_id(name: &str) -> String {
    let mut out = String::new();
    let mut h: u64 = 0xcbf29ce484222325;
    for round in 0u8..4 {
        for b in name.bytes().chain([round]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn builtins() -> Vec<Network> {
    let mk = |name: &str, driver: &str| Network {
        id: builtin_id(name),
        name: name.into(),
        driver: driver.into(),
        subnet: None,
        gateway: None,
        internal: false,
        labels: BTreeMap::new(),
        created: String::new(),
        bridge: String::new(),
    };
    let mut bridge = mk(BRIDGE, "bridge");
    bridge.subnet = Some(BRIDGE_SUBNET);
    bridge.gateway = Some(BRIDGE_GATEWAY);
    bridge.bridge = BRIDGE_IFACE.into();
    vec![bridge, mk("host", "host"), mk("none", "null")]
}

/// The networks of a state root.
#[derive(Debug, Clone)]
pub struct Networks {
    root: PathBuf,
}

impl Networks {
    pub fn open(root: &Path) -> Networks {
        Networks { root: root.to_path_buf() }
    }

    fn defs(&self) -> PathBuf {
        self.root.join("networks").join("defs")
    }

    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let dir = self.root.join("networks");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let path = dir.join(".lock");
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("opening", &path, e))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| Error::io("locking", &path, e.into()))
    }

    /// The built-in networks, then the user's by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        let mut out = builtins();
        let mut user = Vec::new();
        match std::fs::read_dir(self.defs()) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let path = e.path();
                    if path.extension().is_some_and(|x| x == "json") {
                        let text = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
                        let n: Network = serde_json::from_slice(&text).map_err(|e| Error::io("reading", &path, std::io::Error::other(e)))?;
                        user.push(n);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("reading", self.defs(), e)),
        }
        user.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(user);
        Ok(out)
    }

    /// A network by name, full id or unique id prefix (Docker's lookup order).
    pub fn get(&self, key: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&Network> = all.iter().filter(|n| !key.is_empty() && n.id.starts_with(key)).collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::UnknownNetwork(key.to_string())),
            _ => Err(Error::Ambiguous(key.to_string())),
        }
    }

    /// Creates a user-defined bridge network and its Linux bridge. Errors name the value at fault.
    pub fn create(&self, new: &NewNetwork) -> Result<Network> {
        let name = new.name.as_str();
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(Error::invalid("network name", name, "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"));
        }
        match new.driver.as_deref() {
            None | Some("bridge") => {}
            Some(d) => return Err(Error::invalid("--driver", d, "only the bridge driver is supported")),
        }
        let _lock = self.lock()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.name == name) {
            return Err(Error::Exists(name.to_string()));
        }
        let routes = crate::subnet::host_routes();
        let taken = |s: &Subnet| -> Option<String> {
            if let Some(n) = existing.iter().find(|n| n.subnet.is_some_and(|o| o.overlaps(s))) {
                return Some(format!("network {} ({})", n.name, n.subnet.map(|s| s.to_string()).unwrap_or_default()));
            }
            routes.iter().find(|(iface, r)| r.overlaps(s) && !existing.iter().any(|n| &n.bridge == iface)).map(|(iface, r)| format!("the route {r} dev {iface} of this host"))
        };
        let subnet = match &new.subnet {
            Some(text) => {
                let s = Subnet::parse(text).map_err(|why| Error::invalid("--subnet", text, why))?;
                if let Some(other) = taken(&s) {
                    return Err(Error::invalid("--subnet", text, format!("it overlaps {other}")));
                }
                s
            }
            None => crate::subnet::pool().find(|s| taken(s).is_none()).ok_or_else(|| Error::NoSubnet(name.to_string()))?,
        };
        let gateway = match &new.gateway {
            Some(text) => {
                let g: Ipv4Addr = text.parse().map_err(|_| Error::invalid("--gateway", text, "not an IPv4 address"))?;
                if !subnet.contains(g) || g == subnet.addr || u32::from(g) == u32::from(subnet.addr) + subnet.size() - 1 {
                    return Err(Error::invalid("--gateway", text, format!("not a host address of the subnet {subnet}")));
                }
                g
            }
            None => subnet.first_host(),
        };
        let id = random_id()?;
        let network = Network {
            bridge: format!("builder{}", &id[..8]),
            id,
            name: name.to_string(),
            driver: "bridge".into(),
            subnet: Some(subnet),
            gateway: Some(gateway),
            internal: new.internal,
            labels: new.labels.clone(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let defs = self.defs();
        std::fs::create_dir_all(&defs).map_err(|e| Error::io("creating", &defs, e))?;
        let path = defs.join(format!("{}.json", network.id));
        let tmp = defs.join(format!(".{}.tmp", network.id));
        let body = serde_json::to_vec_pretty(&network).map_err(|e| Error::io("encoding", &path, std::io::Error::other(e)))?;
        std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
        // The bridge takes the subnet's route now, so another root in this namespace sees it.
        if let Err(e) = crate::link::ensure_network_bridge(&network) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))?;
        events::record(&self.root, "network", "create", &network.id, &[("name", &network.name), ("type", "bridge")]);
        Ok(network)
    }

    /// Removes a user-defined network and its bridge; refused while a running container is on it.
    pub fn remove(&self, key: &str) -> Result<Network> {
        let network = self.get(key)?;
        if network.is_builtin() {
            return Err(Error::Builtin(network.name));
        }
        let _lock = self.lock()?;
        crate::reconcile(&self.root);
        let users = crate::endpoints(&self.root, &network.id);
        if let Some(r) = users.first() {
            return Err(Error::InUse { network: network.name, container: r.name.clone() });
        }
        let path = self.defs().join(format!("{}.json", network.id));
        std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        crate::link::delete_bridge(&network);
        let _ = std::fs::remove_dir_all(self.root.join("networks").join(&network.id));
        events::record(&self.root, "network", "destroy", &network.id, &[("name", &network.name), ("type", "bridge")]);
        Ok(network)
    }
}

fn random_id() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| Error::io("reading", "/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found_by_name_and_id_prefix_and_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::open(dir.path());
        let names: Vec<String> = nets.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none"]);
        let bridge = nets.get("bridge").unwrap();
        assert_eq!(nets.get(&bridge.id[..12]).unwrap().name, "bridge");
        assert_eq!(bridge.subnet.unwrap().to_string(), "172.30.0.0/16");
        assert!(matches!(nets.remove("host"), Err(Error::Builtin(_))));
        assert_eq!(nets.get("nosuch").unwrap_err().to_string(), "network nosuch not found");
    }

    #[test]
    fn bad_create_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::open(dir.path());
        let e = nets.create(&NewNetwork { name: "bad name".into(), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("\"bad name\""), "{e}");
        let e = nets.create(&NewNetwork { name: "n".into(), subnet: Some("10.9.0.0/16".into()), gateway: Some("10.8.0.1".into()), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("--gateway \"10.8.0.1\"") && e.contains("10.9.0.0/16"), "{e}");
        let e = nets.create(&NewNetwork { name: "n".into(), subnet: Some("172.30.5.0/24".into()), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("--subnet \"172.30.5.0/24\"") && e.contains("network bridge"), "{e}");
        let e = nets.create(&NewNetwork { name: "bridge".into(), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("bridge") && e.contains("exists"), "{e}");
    }
}
