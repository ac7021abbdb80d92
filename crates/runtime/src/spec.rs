//! Building an OCI runtime spec with Docker's defaults from a handful of options.
//!
//! `build_spec` is what `builder run` and every RUN step of a build use; the
//! defaults (capabilities, masked paths, mounts, rlimits, seccomp) are the ones
//! `docker run` applies, so a process sees the same sandbox under either tool.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde_json::json;

use crate::error::{Error, Result};
use crate::seccomp;
use crate::user;

/// Whether the container gets its own network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Share the host's network (RUN steps, `--network host`).
    #[default]
    Host,
    /// A new, empty network namespace with only a loopback device.
    None,
}

/// Resource limits, applied through cgroups (v1 or v2, whichever has the controller).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (`--memory`); swap is limited to the same total.
    pub memory: Option<i64>,
    /// Maximum number of processes (`--pids-limit`).
    pub pids: Option<i64>,
    /// CPU quota in CPUs (`--cpus 1.5`).
    pub cpus: Option<f64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }
}

/// A container root assembled by the runtime itself, inside the container's own
/// mount namespace, so it disappears with the container even if the caller is killed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverlayRootfs {
    /// Layer directories, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// What a caller chooses about a container; everything else gets Docker's defaults.
/// Construct with `SpecOptions { rootfs, args, ..Default::default() }`.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    /// The root filesystem directory (the overlay target when `overlay` is set).
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs. PATH and HOME get defaults when missing.
    pub env: Vec<String>,
    /// Working directory inside the container; created if missing. Empty means `/`.
    pub cwd: String,
    /// "name", "uid", "uid:gid", "name:group"; empty means root.
    pub user: String,
    /// Empty means a default derived from nothing in particular ("builder").
    pub hostname: String,
    pub network: Network,
    /// Extra bind or tmpfs mounts (volumes, RUN --mount).
    pub mounts: Vec<Mount>,
    pub readonly_rootfs: bool,
    pub limits: Limits,
    /// Allocate a pseudo-terminal for the process.
    pub terminal: bool,
    /// Run a tiny init as PID 1 that forwards signals and reaps zombies (`--init`).
    pub init: bool,
    /// Assemble the root from layers inside the container's mount namespace.
    pub overlay: Option<OverlayRootfs>,
    /// The overlay's changes are thrown away (`run --rm`): skip syncing them to disk when
    /// the container ends (overlayfs `volatile`), which saves a filesystem sync per run.
    pub volatile: bool,
    /// `--add-host`: (name, ip) pairs added to the container's /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
}

/// Annotation keys of the builder's own runtime; other runtimes ignore them.
pub const ANNOTATION_INIT: &str = "org.builder.runtime.init";
pub const ANNOTATION_OVERLAY: &str = "org.builder.runtime.overlay";
pub const ANNOTATION_VOLATILE: &str = "org.builder.runtime.overlay.volatile";
/// Extra /etc/hosts lines (`IP<TAB>NAME`, one per line), added to the hosts file the runtime writes.
pub const ANNOTATION_EXTRA_HOSTS: &str = "org.builder.runtime.extra-hosts";
/// The whole /etc/resolv.conf of the container, when its network decided it.
pub const ANNOTATION_RESOLV_CONF: &str = "org.builder.runtime.resolv-conf";

/// The PATH Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths Docker hides from the container (bind of /dev/null, or an empty read-only tmpfs for directories).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Builds a complete runtime spec from `opts`, resolving the user through the rootfs's
/// /etc/passwd and /etc/group (when `overlay` is set, through the layers).
pub fn build_spec(opts: &SpecOptions) -> Result<Spec> {
    if opts.args.is_empty() {
        return Err(Error::InvalidSpec("no command given: the image has no Entrypoint or Cmd and none was passed".into()));
    }
    let lookup_roots: Vec<PathBuf> = match &opts.overlay {
        Some(o) => std::iter::once(o.upper.clone()).chain(o.lowers.iter().cloned()).collect(),
        None => vec![opts.rootfs.clone()],
    };
    let user = user::resolve_user_in_layers(&lookup_roots, &opts.user)?;
    let mut env = opts.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", hostname_or_default(&opts.hostname)));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = if opts.cwd.is_empty() { "/".to_string() } else { opts.cwd.clone() };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidSpec(format!("working directory {cwd:?} is not absolute")));
    }
    let caps = DEFAULT_CAPABILITIES;
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"})];
    if opts.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let mut mounts = default_mounts();
    for m in &opts.mounts {
        mounts.push(serde_json::to_value(m).map_err(|e| Error::InvalidSpec(e.to_string()))?);
    }
    let mut resources = serde_json::Map::new();
    if let Some(mem) = opts.limits.memory {
        resources.insert("memory".into(), json!({"limit": mem, "swap": mem}));
    }
    if let Some(pids) = opts.limits.pids {
        resources.insert("pids".into(), json!({"limit": pids}));
    }
    if let Some(cpus) = opts.limits.cpus {
        if cpus.is_nan() || cpus <= 0.0 {
            return Err(Error::InvalidSpec(format!("--cpus must be positive, got {cpus}")));
        }
        resources.insert("cpu".into(), json!({"quota": (cpus * 100_000.0) as i64, "period": 100_000u64}));
    }
    let mut annotations = serde_json::Map::new();
    if opts.init {
        annotations.insert(ANNOTATION_INIT.into(), json!("true"));
    }
    if opts.volatile {
        annotations.insert(ANNOTATION_VOLATILE.into(), json!("true"));
    }
    if !opts.extra_hosts.is_empty() {
        let lines: String = opts.extra_hosts.iter().map(|(name, ip)| format!("{ip}\t{name}\n")).collect();
        annotations.insert(ANNOTATION_EXTRA_HOSTS.into(), json!(lines));
    }
    if let Some(o) = &opts.overlay {
        let encoded = serde_json::to_string(o).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        annotations.insert(ANNOTATION_OVERLAY.into(), json!(encoded));
    }
    // Docker's 1048576, or as much as this process may give (without CAP_SYS_RESOURCE
    // a limit can't be raised above our own hard limit).
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1_048_576, |(_, hard)| hard.min(1_048_576));
    let value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.terminal,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": opts.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": true,
        },
        "root": {"path": opts.rootfs, "readonly": opts.readonly_rootfs},
        "hostname": hostname_or_default(&opts.hostname),
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp::docker_default_policy(),
        },
    });
    serde_json::from_value(value).map_err(|e| Error::InvalidSpec(format!("building spec: {e}")))
}

/// Every capability name this runtime knows, in bit order.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities this process may hand on: its bounding set (a container can get no more).
fn own_bounding_set() -> Vec<&'static str> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX);
    ALL_CAPABILITIES.iter().copied().filter(|c| crate::caps::capability_number(c).is_some_and(|n| bnd & (1u64 << n) != 0)).collect()
}

/// Lifts the sandbox as BuildKit's `security.insecure` mode (`RUN --security=insecure`) does:
/// every capability this process has, no seccomp filter, no masked or read-only /proc paths,
/// a writable /sys, and setuid programs work (no `no_new_privs`). Namespaces and mounts stay.
pub fn make_insecure(spec: &Spec) -> Result<Spec> {
    let mut v = serde_json::to_value(spec).map_err(|e| Error::InvalidSpec(format!("encoding spec: {e}")))?;
    let caps = own_bounding_set();
    if let Some(p) = v.get_mut("process").and_then(|p| p.as_object_mut()) {
        p.insert("capabilities".into(), json!({"bounding": caps, "effective": caps, "permitted": caps}));
        p.insert("noNewPrivileges".into(), json!(false));
    }
    if let Some(l) = v.get_mut("linux").and_then(|l| l.as_object_mut()) {
        l.remove("seccomp");
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    }
    if let Some(mounts) = v.get_mut("mounts").and_then(|m| m.as_array_mut()) {
        for m in mounts.iter_mut().filter(|m| m.get("destination").and_then(|d| d.as_str()) == Some("/sys")) {
            if let Some(opts) = m.get_mut("options").and_then(|o| o.as_array_mut()) {
                opts.retain(|o| o != "ro");
                opts.push(json!("rw"));
            }
        }
    }
    serde_json::from_value(v).map_err(|e| Error::InvalidSpec(format!("building insecure spec: {e}")))
}

fn hostname_or_default(h: &str) -> &str {
    if h.is_empty() { "builder" } else { h }
}

fn default_mounts() -> Vec<serde_json::Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ]
}

/// A bind mount of `source` at `destination`, read-only when `readonly`.
pub fn bind_mount(source: impl Into<PathBuf>, destination: impl Into<PathBuf>, readonly: bool) -> Mount {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if readonly {
        options.push("ro".into());
    }
    let v = json!({"destination": destination.into(), "type": "bind", "source": source.into(), "options": options});
    // A fixed shape that always deserializes.
    serde_json::from_value(v).unwrap_or_default()
}

/// A tmpfs mount at `destination`.
pub fn tmpfs_mount(destination: impl Into<PathBuf>) -> Mount {
    let v = json!({"destination": destination.into(), "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]});
    serde_json::from_value(v).unwrap_or_default()
}

/// A mount of file system `fstype` from `source` at `destination` with mount(8) `options`.
pub fn fs_mount(fstype: &str, source: &str, destination: impl Into<PathBuf>, options: &[String]) -> Mount {
    let v = json!({"destination": destination.into(), "type": fstype, "source": source, "options": options});
    serde_json::from_value(v).unwrap_or_default()
}

/// Whether the spec asks for the runtime's tiny init as PID 1.
pub fn wants_init(spec: &Spec) -> bool {
    spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION_INIT)).is_some_and(|v| v == "true")
}

/// Whether the overlay's upper dir may skip syncing (its changes are thrown away).
pub fn wants_volatile(spec: &Spec) -> bool {
    spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION_VOLATILE)).is_some_and(|v| v == "true")
}

/// The overlay root the spec asks the runtime to assemble, if any.
pub fn overlay_of(spec: &Spec) -> Result<Option<OverlayRootfs>> {
    match spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION_OVERLAY)) {
        None => Ok(None),
        Some(s) => serde_json::from_str(s).map(Some).map_err(|e| Error::InvalidSpec(format!("annotation {ANNOTATION_OVERLAY}: {e}"))),
    }
}

/// Removes the builder-only overlay annotation, for runtimes that expect `root.path`
/// to be mounted already (the caller mounts the overlay there).
pub fn strip_overlay(spec: &mut Spec) {
    if let Some(mut a) = spec.annotations().clone() {
        a.remove(ANNOTATION_OVERLAY);
        spec.set_annotations(Some(a));
    }
}

/// Makes the container join the network namespace at `path` (made beforehand, with its
/// interfaces set up) instead of creating an empty one.
pub fn join_network(spec: &mut Spec, path: &Path) {
    use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType};
    let Some(mut linux) = spec.linux().clone() else { return };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    if let Ok(ns) = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path(path.to_path_buf()).build() {
        namespaces.push(ns);
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_spec_has_every_capability_no_seccomp_nothing_masked_and_a_writable_sys() {
        let spec = build_spec(&SpecOptions { rootfs: "/nonexistent".into(), args: vec!["true".into()], ..Default::default() }).expect("spec");
        let insecure = make_insecure(&spec).expect("insecure");
        let v = serde_json::to_value(&insecure).expect("encode");
        let effective: Vec<String> = serde_json::from_value(v["process"]["capabilities"]["effective"].clone()).expect("caps");
        assert!(effective.len() > DEFAULT_CAPABILITIES.len(), "{effective:?}");
        assert!(effective.iter().any(|c| c == "CAP_SYS_ADMIN"), "{effective:?}");
        assert!(v["linux"].get("seccomp").is_none());
        assert!(v["linux"].get("maskedPaths").is_none() && v["linux"].get("readonlyPaths").is_none());
        let sys = v["mounts"].as_array().expect("mounts").iter().find(|m| m["destination"] == "/sys").expect("/sys").clone();
        assert!(!sys["options"].as_array().expect("options").iter().any(|o| o == "ro"), "{sys}");
        // The ordinary spec is untouched.
        let plain = serde_json::to_value(&spec).expect("encode");
        assert!(plain["linux"].get("seccomp").is_some());
    }
}
