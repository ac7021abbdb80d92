//! What `--privileged`, `--cap-add/--cap-drop`, `--ulimit`, `--device` and `--group-add` change
//! in a container's spec, read and checked before anything is written, then applied to the
//! spec `runtime::build_spec` made with Docker's defaults.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::settings::{DeviceMapping, Ulimit};

/// The security flags of one `run`, read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Security {
    pub privileged: bool,
    /// The capability set, when the flags change Docker's default one.
    pub capabilities: Option<Vec<String>>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub ulimits: Vec<Ulimit>,
    pub devices: Vec<DeviceMapping>,
    pub group_add: Vec<String>,
}

/// Every capability name the kernel of this machine has, as `CAP_…`.
fn all_capabilities() -> Vec<String> {
    let last = runtime::caps::kernel_last_cap().min(runtime::caps::LAST_KNOWN_CAP);
    (0..=last).filter_map(cap_name).collect()
}

fn cap_name(n: u32) -> Option<String> {
    const NAMES: [&str; 41] = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
        "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN",
        "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
        "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ];
    NAMES.get(n as usize).map(|s| format!("CAP_{s}"))
}

/// `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`; `ALL` stays.
fn normalize(flag: &'static str, name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    match runtime::caps::capability_number(&full) {
        Some(_) => Ok(full),
        None => Err(Error::option(flag, name, "unknown capability (a name such as NET_ADMIN, SYS_TIME or ALL)")),
    }
}

/// Docker's rule (moby's TweakCapabilities): `--cap-add ALL` gives every capability but the
/// dropped ones; `--cap-drop ALL` keeps only the added ones; otherwise the default set minus
/// the dropped plus the added.
fn capability_set(add: &[String], drop: &[String]) -> Vec<String> {
    let mut caps: Vec<String> = if add.iter().any(|a| a == "ALL") {
        all_capabilities()
    } else if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        runtime::spec::DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    caps.retain(|c| !drop.contains(c));
    for a in add.iter().filter(|a| *a != "ALL") {
        if !caps.contains(a) {
            caps.push(a.clone());
        }
    }
    caps
}

/// `nofile=1024[:2048]` (Docker's names; `-1` is unlimited).
fn parse_ulimit(value: &str) -> Result<Ulimit> {
    const NAMES: [&str; 15] = ["core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"];
    let bad = |why: &str| Error::option("--ulimit", value, why.to_string());
    let (name, limits) = value.split_once('=').ok_or_else(|| bad("expected NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
    if !NAMES.contains(&name) {
        return Err(bad(&format!("unknown limit {name:?} (one of {})", NAMES.join(", "))));
    }
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let num = |s: &str| s.trim().parse::<i64>().map_err(|_| bad("the limits are numbers (-1 for unlimited)"));
    let (soft, hard) = (num(soft)?, num(hard)?);
    let as_u = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if as_u(soft) > as_u(hard) {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok(Ulimit { name: name.to_string(), soft, hard })
}

/// `/dev/fuse`, `/dev/sda:/dev/xvda`, `/dev/sda:/dev/xvda:rwm`, `/dev/sda:r`.
fn parse_device(value: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = value.split(':').collect();
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perms(p) => (*h, *c, *p),
        _ => return Err(Error::option("--device", value, "expected HOST_PATH[:CONTAINER_PATH][:PERMISSIONS]")),
    };
    if !container.starts_with('/') {
        return Err(Error::option("--device", value, "the container path must be absolute"));
    }
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(host).map_err(|e| Error::option("--device", value, format!("{host}: {e}")))?;
    if !(meta.file_type().is_char_device() || meta.file_type().is_block_device()) {
        return Err(Error::option("--device", value, format!("{host} is not a device")));
    }
    Ok(DeviceMapping { path_on_host: host.to_string(), path_in_container: container.to_string(), cgroup_permissions: perms.to_string() })
}

impl Security {
    /// Reads the flags; a bad value is an error naming the flag and the value.
    pub fn parse(opts: &crate::RunOptions) -> Result<Security> {
        let cap_add = opts.cap_add.iter().map(|c| normalize("--cap-add", c)).collect::<Result<Vec<_>>>()?;
        let cap_drop = opts.cap_drop.iter().map(|c| normalize("--cap-drop", c)).collect::<Result<Vec<_>>>()?;
        let capabilities = (!cap_add.is_empty() || !cap_drop.is_empty()).then(|| capability_set(&cap_add, &cap_drop));
        Ok(Security {
            privileged: opts.privileged,
            capabilities,
            cap_add,
            cap_drop,
            ulimits: opts.ulimits.iter().map(|u| parse_ulimit(u)).collect::<Result<_>>()?,
            devices: opts.devices.iter().map(|d| parse_device(d)).collect::<Result<_>>()?,
            group_add: opts.group_add.clone(),
        })
    }

    /// Applies the flags to `spec`; `layers` (top first) resolve `--group-add` names.
    pub fn apply(&self, spec: runtime::Spec, layers: &[PathBuf]) -> Result<runtime::Spec> {
        let mut spec = if self.privileged { runtime::spec::make_insecure(&spec)? } else { spec };
        let mut v = serde_json::to_value(&spec).map_err(|e| Error::io("encoding", "the container's spec", std::io::Error::other(e)))?;
        if let (Some(caps), false) = (&self.capabilities, self.privileged) {
            v["process"]["capabilities"] = serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
        }
        if !self.ulimits.is_empty() {
            let mut rlimits: Vec<serde_json::Value> = v["process"]["rlimits"].as_array().cloned().unwrap_or_default();
            for u in &self.ulimits {
                let kind = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
                rlimits.retain(|r| r["type"] != kind.as_str());
                let n = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
                rlimits.push(serde_json::json!({"type": kind, "soft": n(u.soft), "hard": n(u.hard)}));
            }
            v["process"]["rlimits"] = serde_json::Value::Array(rlimits);
        }
        if !self.group_add.is_empty() {
            let mut gids: Vec<u32> = serde_json::from_value(v["process"]["user"]["additionalGids"].clone()).unwrap_or_default();
            for g in &self.group_add {
                let gid = match g.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => runtime::user::resolve_user_in_layers(layers, &format!("0:{g}")).map_err(|_| Error::option("--group-add", g, "no such group in the image's /etc/group"))?.gid,
                };
                if !gids.contains(&gid) {
                    gids.push(gid);
                }
            }
            v["process"]["user"]["additionalGids"] = serde_json::json!(gids);
        }
        if let Some(mounts) = v["mounts"].as_array_mut() {
            // A device is its host node bound in (the container's /dev is a tmpfs without nodev).
            for d in &self.devices {
                let mut options = vec!["bind"];
                if !d.cgroup_permissions.contains('w') {
                    options.push("ro");
                }
                mounts.push(serde_json::json!({"destination": d.path_in_container, "type": "bind", "source": d.path_on_host, "options": options}));
            }
        }
        if !self.privileged {
            // Docker's device cgroup: every node may be made (`m`), only these opened, and the
            // `--device` nodes with the permissions given.
            let mut rules = default_device_rules();
            for d in &self.devices {
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let meta = std::fs::metadata(&d.path_on_host).map_err(|e| Error::option("--device", &d.path_on_host, e.to_string()))?;
                let kind = if meta.file_type().is_block_device() { "b" } else { "c" };
                let (major, minor) = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
                rules.push(serde_json::json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": d.cgroup_permissions}));
            }
            v["linux"]["resources"]["devices"] = serde_json::Value::Array(rules);
        }
        spec = serde_json::from_value(v).map_err(|e| Error::io("decoding", "the container's spec", std::io::Error::other(e)))?;
        Ok(spec)
    }
}

/// The device rules of every (unprivileged) container, as Docker's: deny all, allow `mknod`
/// of any node, and the nodes a container's /dev has: null, zero, full, random, urandom, tty,
/// console, ptmx, the pty slaves and tun; fuse stays denied.
fn default_device_rules() -> Vec<serde_json::Value> {
    let mut rules = vec![serde_json::json!({"allow": false, "access": "rwm"}), serde_json::json!({"allow": true, "type": "c", "access": "m"}), serde_json::json!({"allow": true, "type": "b", "access": "m"})];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200)] {
        rules.push(serde_json::json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}));
    }
    rules.push(serde_json::json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    rules
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_dockers_rules() {
        let n = |l: &[&str]| l.iter().map(|s| normalize("--cap-add", s).unwrap()).collect::<Vec<_>>();
        let set = capability_set(&n(&["net_admin"]), &n(&["CHOWN"]));
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()) && !set.contains(&"CAP_CHOWN".to_string()) && set.contains(&"CAP_KILL".to_string()));
        assert_eq!(capability_set(&n(&["SYS_TIME"]), &n(&["ALL"])), ["CAP_SYS_TIME"]);
        let all = capability_set(&n(&["ALL"]), &n(&["CAP_SYS_ADMIN"]));
        assert!(all.contains(&"CAP_SYS_MODULE".to_string()) && !all.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(normalize("--cap-add", "FLY").unwrap_err().to_string().contains("invalid --cap-add \"FLY\""));
    }

    #[test]
    fn ulimits_and_devices_are_checked() {
        assert_eq!(parse_ulimit("nofile=1024:2048").unwrap(), Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 });
        assert_eq!(parse_ulimit("nproc=10").unwrap().hard, 10);
        assert!(parse_ulimit("files=1").unwrap_err().to_string().contains("unknown limit"));
        assert!(parse_ulimit("nofile=10:5").unwrap_err().to_string().contains("above the hard"));
        assert_eq!(parse_device("/dev/null:/dev/mynull:r").unwrap().cgroup_permissions, "r");
        assert_eq!(parse_device("/dev/null").unwrap().path_in_container, "/dev/null");
        assert!(parse_device("/etc/passwd").unwrap_err().to_string().contains("not a device"));
    }
}
