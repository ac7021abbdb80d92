//! `builder info` (what `docker info` says of the daemon, said of the `--root` and this
//! machine) and `builder search` (a registry's repositories).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::Globals;
use crate::cmd::format::Format;
use crate::cmd::human_size;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show system-wide information: storage root and usage, images, containers by state,
    /// runtime, cgroup version, kernel, security options, registries.
    Info {
        /// A Go template over the fields (`{{.Containers}}`, `{{.CgroupVersion}}`, `{{json .}}`).
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Search a registry for repositories: `HOST[:PORT]/TERM` searches that registry's
    /// catalog, a bare TERM searches Docker Hub.
    Search {
        /// At most this many results.
        #[arg(long, default_value_t = 25)]
        limit: usize,
        /// `stars=N`, `is-official=true|false`, `is-automated=true|false`.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
        /// `table`, `json` or a Go template (`{{.Name}}`, `{{.Description}}`, `{{.StarCount}}`, `{{.IsOfficial}}`).
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate descriptions.
        #[arg(long)]
        no_trunc: bool,
        term: String,
    },
    /// Show events (containers created, started, died, destroyed; images pulled, tagged,
    /// untagged, deleted, imported) from the journal every command appends to under --root.
    /// Like `docker events`, it keeps following new events until --until (or Ctrl-C).
    Events {
        /// Only events from this time: RFC 3339, Unix seconds, or a duration before now (10m).
        #[arg(long)]
        since: Option<String>,
        /// Stop at this time (same forms); without it, follow new events.
        #[arg(long)]
        until: Option<String>,
        /// `type=container|image`, `event=ACTION`, `container=NAME|ID`, `image=NAME`.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
        /// `json` or a Go template (`{{.Type}} {{.Action}} {{.Actor.Attributes.name}}`).
        #[arg(long)]
        format: Option<String>,
    },
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        match self {
            Command::Info { format } => info(globals, format.as_deref()),
            Command::Search { limit, filters, format, no_trunc, term } => search(globals, limit, &filters, format.as_deref(), no_trunc, &term),
            Command::Events { since, until, filters, format } => events(globals, since.as_deref(), until.as_deref(), &filters, format.as_deref()),
        }
    }
}

fn info(globals: &Globals, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let root = globals.root();
    let store = oci::Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))?;
    let containers = container::Containers::open(&root)?.list()?;
    let running = containers.iter().filter(|c| c.status == runtime::containers::Status::Running).count();
    let mut ids = std::collections::HashSet::new();
    for desc in store.list()?.into_iter().map(|(_, d)| d).chain(store.dangling()?) {
        if let Ok(i) = store.image_from_descriptor(&desc) {
            ids.insert(i.id().to_string());
        }
    }
    let (fs_size, fs_free) = nix::sys::statvfs::statvfs(&root).map(|s| (s.blocks() * s.fragment_size(), s.blocks_available() * s.fragment_size())).unwrap_or((0, 0));
    let used = solver::cache::dir_size(&root.join("blobs")) + solver::cache::dir_size(&root.join("snapshots")) + solver::cache::dir_size(&root.join("cache")) + solver::cache::dir_size(&root.join("containers"));
    let uts = nix::sys::utsname::uname().ok();
    let kernel = uts.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let arch = uts.as_ref().map(|u| u.machine().to_string_lossy().into_owned()).unwrap_or_default();
    let hostname = uts.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release").ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))).unwrap_or_else(|| "Linux".into());
    // What the runtime uses (BUILDER_CGROUP=v2 included), not just what /sys/fs/cgroup is.
    let (cgroup, hybrid) = runtime::cgroup::version().map_or((String::new(), false), |(v, h)| (v.to_string(), h));
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))).unwrap_or(0) * 1024;
    let mut insecure = vec!["127.0.0.0/8".to_string()];
    insecure.extend(globals.insecure_registries.iter().cloned());
    let value = serde_json::json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": containers.len() - running,
        "Images": ids.len(),
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", fs_type(&root)], ["Supports d_type", "true"]],
        "DockerRootDir": root.display().to_string(),
        "StorageUsage": {"Used": used, "FilesystemSize": fs_size, "FilesystemFree": fs_free},
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "DefaultRuntime": "builder",
        "Runtimes": {"builder": {"path": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default()}},
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup,
        "CgroupHybrid": hybrid,
        "KernelVersion": kernel,
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": arch,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "Name": hostname,
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "RegistryConfig": {"InsecureRegistryCIDRs": insecure, "IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": true, "Official": true}}},
    });
    let mut out = std::io::stdout().lock();
    if let Some(f) = format {
        Format::parse(Some(f), "")?.write(&mut out, &[], &[value])?;
        return Ok(ExitCode::SUCCESS);
    }
    let v = &value;
    let mut text = String::new();
    text.push_str(&format!("Server:\n Containers: {}\n  Running: {}\n  Paused: 0\n  Stopped: {}\n Images: {}\n", v["Containers"], v["ContainersRunning"], v["ContainersStopped"], v["Images"]));
    text.push_str(&format!(" Server Version: {}\n Storage Driver: overlay\n  Backing Filesystem: {}\n  Supports d_type: true\n", v["ServerVersion"].as_str().unwrap_or_default(), fs_type(&root)));
    text.push_str(&format!(" Storage Usage: {} used by builder, {} free of {}\n", human_size(used), human_size(fs_free), human_size(fs_size)));
    text.push_str(&format!(" Cgroup Driver: cgroupfs\n Cgroup Version: {cgroup}{}\n", if v["CgroupHybrid"] == true { " (hybrid: with a v2 unified mount)" } else { "" }));
    text.push_str(" Runtimes: builder\n Default Runtime: builder\n Security Options:\n  seccomp\n   Profile: builtin\n");
    text.push_str(&format!(" Kernel Version: {}\n Operating System: {}\n OSType: linux\n Architecture: {}\n CPUs: {}\n Total Memory: {:.4}GiB\n Name: {}\n", v["KernelVersion"].as_str().unwrap_or_default(), v["OperatingSystem"].as_str().unwrap_or_default(), v["Architecture"].as_str().unwrap_or_default(), v["NCPU"], mem as f64 / (1u64 << 30) as f64, v["Name"].as_str().unwrap_or_default()));
    text.push_str(&format!(" Docker Root Dir: {}\n Insecure Registries:\n", root.display()));
    for r in &insecure {
        text.push_str(&format!("  {r}\n"));
    }
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The filesystem type of `path` (`extfs`, `xfs`, `overlayfs`…), as Docker names the backing filesystem.
fn fs_type(path: &std::path::Path) -> String {
    let Ok(s) = nix::sys::statfs::statfs(path) else { return "unknown".into() };
    let t = s.filesystem_type();
    use nix::sys::statfs as fs;
    match t {
        fs::EXT4_SUPER_MAGIC => "extfs".into(),
        fs::XFS_SUPER_MAGIC => "xfs".into(),
        fs::BTRFS_SUPER_MAGIC => "btrfs".into(),
        fs::TMPFS_MAGIC => "tmpfs".into(),
        fs::OVERLAYFS_SUPER_MAGIC => "overlayfs".into(),
        other => format!("{:#x}", other.0),
    }
}

fn search(globals: &Globals, limit: usize, filters: &[String], format: Option<&str>, no_trunc: bool, term: &str) -> anyhow::Result<ExitCode> {
    if limit == 0 || limit > 100 {
        bail!("--limit {limit}: the limit must be between 1 and 100");
    }
    let (mut min_stars, mut official, mut automated) = (0u64, None, None);
    for f in filters {
        let Some((k, v)) = f.split_once('=') else { bail!("bad format of filter {f:?} (expected name=value)") };
        let flag = |v: &str| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(anyhow::anyhow!("invalid filter '{f}': {k} is true or false")),
        };
        match k {
            "stars" => min_stars = v.parse().with_context(|| format!("invalid filter '{f}': stars is a number"))?,
            "is-official" => official = Some(flag(v)?),
            "is-automated" => automated = Some(flag(v)?),
            _ => bail!("invalid filter '{k}' (search takes stars, is-official, is-automated)"),
        }
    }
    // `host[:port]/term` names a registry (a first part with a dot or colon, or localhost).
    let (registry, what) = match term.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => (host.to_string(), rest.to_string()),
        _ => ("docker.io".to_string(), term.to_string()),
    };
    let client = registry::Client::new(registry::ClientOptions { insecure_registries: globals.insecure_registries.clone(), retries: 0, ..Default::default() })?;
    let shown = if registry == "docker.io" { "Docker Hub (index.docker.io)".to_string() } else { registry.clone() };
    let results = client.search(&registry, &what, limit).with_context(|| format!("searching {shown} for {what:?}"))?;
    let rows: Vec<serde_json::Value> = results
        .into_iter()
        .filter(|r| r.stars >= min_stars && official.is_none_or(|o| o == r.official) && automated.is_none_or(|a| a == r.automated))
        .map(|r| {
            let description = if no_trunc || r.description.chars().count() <= 45 { r.description.clone() } else { format!("{}…", r.description.chars().take(44).collect::<String>()) };
            serde_json::json!({"Name": r.name, "Description": description, "StarCount": r.stars.to_string(), "IsOfficial": if r.official { "[OK]" } else { "" }, "IsAutomated": if r.automated { "[OK]" } else { "" }})
        })
        .collect();
    let f = Format::parse(format, "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}")?;
    f.write(&mut std::io::stdout().lock(), &[("Name", "NAME"), ("Description", "DESCRIPTION"), ("StarCount", "STARS"), ("IsOfficial", "OFFICIAL"), ("IsAutomated", "AUTOMATED")], &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// A time as `--since`/`--until` take it, in Unix nanoseconds.
fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_nanos_opt().unwrap_or(0));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let units = [("ms", 1e-3), ("h", 3600.0), ("m", 60.0), ("s", 1.0)];
    let (n, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map(|i| s.split_at(i)).unwrap_or((s, ""));
    let secs = units.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f).zip(n.parse::<f64>().ok()).map(|(f, n)| n * f);
    let Some(secs) = secs else { bail!("{flag} {s:?}: not a time (RFC 3339, Unix seconds, or a duration such as 10m)") };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    Ok(now - (secs * 1e9) as i64)
}

fn events(globals: &Globals, since: Option<&str>, until: Option<&str>, filters: &[String], format: Option<&str>) -> anyhow::Result<ExitCode> {
    let root = globals.root();
    let since = since.map(|s| parse_time("--since", s)).transpose()?;
    let until = until.map(|s| parse_time("--until", s)).transpose()?;
    let mut wanted: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else { bail!("bad format of filter {f:?} (expected name=value)") };
        match k {
            "type" | "event" | "container" | "image" | "network" | "volume" => wanted.entry(k).or_default().push(v),
            _ => bail!("invalid filter '{k}' (events take type, event, container, image, network, volume)"),
        }
    }
    let matches = |e: &events::Event| {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str).unwrap_or("");
        wanted.iter().all(|(k, vs)| {
            vs.iter().any(|v| match *k {
                "type" => e.kind == *v,
                "event" => e.action == *v,
                "container" => (e.kind == "container" && (attr("name") == *v || e.actor.id.starts_with(v))) || (e.kind == "network" && attr("container").starts_with(v)),
                "network" => e.kind == "network" && (attr("name") == *v || e.actor.id.starts_with(v)),
                "volume" => e.kind == "volume" && e.actor.id == *v,
                _ => (e.kind == "image" && (attr("name") == *v || e.actor.id == *v)) || (e.kind == "container" && attr("image") == *v),
            })
        })
    };
    // Without --format: Docker's line, `TIME TYPE ACTION ID (k=v, …)`.
    let template = format.map(|f| Format::parse(Some(f), "")).transpose()?;
    let mut out = std::io::stdout().lock();
    let mut offset = 0;
    // Without --since, a follow starts at the end, as `docker events` shows only new events.
    if since.is_none() && until.is_none() {
        offset = events::read_from(&root, 0)?.1;
    }
    loop {
        let (batch, next) = events::read_from(&root, offset)?;
        offset = next;
        for e in batch.iter().filter(|e| since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u)).filter(|e| matches(e)) {
            match &template {
                Some(t) => t.write(&mut out, &[], &[serde_json::to_value(e)?])?,
                None => {
                    let when = chrono::DateTime::from_timestamp_nanos(e.time_nano).format("%Y-%m-%dT%H:%M:%S%.9fZ");
                    let attrs: Vec<String> = e.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    writeln!(out, "{when} {} {} {} ({})", e.kind, e.action, e.actor.id, attrs.join(", "))?;
                }
            }
        }
        out.flush()?;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        if until.is_some_and(|u| now > u) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
