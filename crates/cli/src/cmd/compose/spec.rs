//! A service's container as `builder run` arguments.
//!
//! Services join the project's networks (`PROJECT_default` unless the file says otherwise)
//! with the service name and the file's aliases as extra names, so `db:3306` reaches the `db`
//! service through the network's name server, and `ports` are published as `-p`. What is not
//! supported yet (IPv6 addresses, several address pools) is refused with the key that
//! asks for it, never silently dropped.

use anyhow::bail;
use compose::{MountType, Service};

use super::engine::Engine;

/// What `builder run` is given for a container.
pub struct RunSpec {
    pub args: Vec<String>,
}

/// The `builder run` arguments (after `run`) for container `name` of `service`.
pub fn run_args(engine: &Engine<'_>, service: &str, name: &str, command: Option<&[String]>, detach: bool) -> anyhow::Result<RunSpec> {
    let p = &engine.project;
    let Some(s) = p.services.get(service) else { bail!("no such service: {service}") };
    check_supported(p, service, s)?;
    let mut a: Vec<String> = Vec::new();
    let mut push = |k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    push("--name", name.to_string());
    for (k, v) in &s.environment {
        push("-e", format!("{k}={}", v.as_deref().unwrap_or("")));
    }
    if let Some(w) = &s.working_dir {
        push("-w", w.clone());
    }
    if let Some(u) = &s.user {
        push("-u", u.clone());
    }
    if let Some(h) = &s.hostname {
        push("--hostname", h.clone());
    }
    if let Some(m) = s.mem_limit {
        push("-m", m.to_string());
    }
    if let Some(n) = s.pids_limit {
        push("--pids-limit", n.to_string());
    }
    if let Some(c) = s.cpus {
        push("--cpus", c.to_string());
    }
    match s.network_mode.as_deref() {
        Some(mode @ ("none" | "host")) => push("--network", mode.to_string()),
        Some("bridge") => push("--network", "bridge".to_string()),
        // The first container of that service (it is started first: see depends_on).
        Some(mode) if mode.starts_with("service:") => push("--network", format!("container:{}", engine.container_name(&mode["service:".len()..], 1))),
        Some(mode) if mode.starts_with("container:") => push("--network", mode.to_string()),
        _ => {
            // Each network of the service (sorted by priority, then name, as Compose does),
            // with the service name and the file's aliases as names there.
            let mut nets: Vec<(&String, &compose::ServiceNetwork)> = s.networks.iter().collect();
            nets.sort_by_key(|(k, n)| (std::cmp::Reverse(n.priority.unwrap_or(0)), k.to_string()));
            for (key, n) in nets {
                let real = p.networks.get(key).and_then(|n| n.name.clone()).unwrap_or_else(|| format!("{}_{key}", p.name));
                let mut value = format!("name={real},alias={service}");
                for a in &n.aliases {
                    value.push_str(&format!(",alias={a}"));
                }
                if let Some(ip) = &n.ipv4_address {
                    value.push_str(&format!(",ip={ip}"));
                }
                push("--network", value);
            }
        }
    }
    for port in &s.ports {
        let host = match (&port.host_ip, &port.published) {
            (Some(ip), Some(p)) => format!("{ip}:{p}:"),
            (Some(ip), None) => format!("{ip}::"),
            (None, Some(p)) => format!("{p}:"),
            (None, None) => String::new(),
        };
        push("-p", format!("{host}{}/{}", port.target, port.protocol));
    }
    for e in &s.expose {
        push("--expose", e.clone());
    }
    for (h, ip) in &s.extra_hosts {
        push("--add-host", format!("{h}:{ip}"));
    }
    for (flag, values) in [("--dns", &s.dns), ("--dns-search", &s.dns_search), ("--dns-option", &s.dns_opt)] {
        for v in values {
            push(flag, v.clone());
        }
    }
    for (k, v) in &s.sysctls {
        push("--sysctl", format!("{k}={v}"));
    }
    // Volumes and tmpfs go through `builder run`'s own mounts: a named volume is created
    // (beforehand, with Compose's labels) and filled from the image on first use, an anonymous
    // one is made for the container, and the container is recorded as their user.
    for (i, v) in s.volumes.iter().enumerate() {
        let ro = if v.read_only { ",readonly" } else { "" };
        let mount = match (v.kind, &v.source) {
            (MountType::Bind, Some(src)) => {
                let path = std::path::Path::new(src);
                if !path.exists() && v.bind.as_ref().and_then(|b| b.create_host_path).unwrap_or(false) {
                    std::fs::create_dir_all(path).map_err(|e| anyhow::anyhow!("services.{service}.volumes[{i}]: creating {src}: {e}"))?;
                }
                format!("type=bind,source={src},target={}{ro}", v.target)
            }
            (MountType::Volume, source) => {
                let nocopy = if v.volume.as_ref().and_then(|o| o.nocopy).unwrap_or(false) { ",volume-nocopy" } else { "" };
                match source {
                    Some(vol) => {
                        let real = p.volumes.get(vol).and_then(|v| v.name.clone()).unwrap_or_else(|| vol.clone());
                        format!("type=volume,source={real},target={}{ro}{nocopy}", v.target)
                    }
                    None => format!("type=volume,target={}{ro}{nocopy}", v.target),
                }
            }
            (MountType::Tmpfs, _) => {
                let size = v.tmpfs.as_ref().and_then(|t| t.size).map(|n| format!(",tmpfs-size={n}")).unwrap_or_default();
                format!("type=tmpfs,target={}{size}", v.target)
            }
            (MountType::Bind, None) => bail!("services.{service}.volumes[{i}]: a bind mount needs a source"),
        };
        if v.target.contains(',') || v.source.as_ref().is_some_and(|s| s.contains(',')) {
            bail!("services.{service}.volumes[{i}]: a path with a comma cannot be given to --mount");
        }
        push("--mount", mount);
    }
    for mount in secret_mounts(engine, service, name, s)? {
        push("--mount", mount);
    }
    for t in &s.tmpfs {
        push("--tmpfs", t.clone());
    }
    if let Some(h) = &s.healthcheck {
        health_args(h, &mut a);
    }
    if s.init == Some(true) {
        a.push("--init".into());
    }
    // The policy applies to service containers (detached, supervised by their shim).
    if let Some(r) = s.restart.filter(|r| detach && *r != compose::RestartPolicy::No) {
        a.push("--restart".into());
        a.push(r.to_string());
    }
    if s.privileged == Some(true) {
        a.push("--privileged".into());
    }
    for (flag, values) in [("--cap-add", &s.cap_add), ("--cap-drop", &s.cap_drop), ("--device", &s.devices), ("--group-add", &s.group_add)] {
        for v in values {
            a.push(flag.into());
            a.push(v.clone());
        }
    }
    for (name, u) in &s.ulimits {
        a.push("--ulimit".into());
        a.push(format!("{name}={}:{}", u.soft, u.hard));
    }
    if s.read_only == Some(true) {
        a.push("--read-only".into());
    }
    if detach {
        a.push("-d".into());
    }
    let mut tail: Vec<String> = Vec::new();
    if let Some(ep) = &s.entrypoint {
        a.push("--entrypoint".into());
        a.push(ep.first().cloned().unwrap_or_default());
        tail.extend(ep.iter().skip(1).cloned());
    }
    a.push(engine.image_of(service));
    match command {
        Some(c) => tail.extend(c.iter().cloned()),
        None => tail.extend(s.command.iter().flatten().cloned()),
    }
    a.extend(tail);
    Ok(RunSpec { args: a })
}

/// Where a secret's or a config's contents come from.
enum Source<'a> {
    File(&'a str),
    Variable(&'a str),
    Content(&'a str),
}

/// The service's secrets and configs as read-only bind mounts. A file is mounted as it is, as
/// Compose does; one from an environment variable or `content`, or with its own uid/gid/mode,
/// is first written to a file of the container's own under the state root (removed with the
/// container).
fn secret_mounts(engine: &Engine<'_>, service: &str, container: &str, s: &Service) -> anyhow::Result<Vec<String>> {
    let p = &engine.project;
    let mut mounts = Vec::new();
    for (kind, items) in [("secret", &s.secrets), ("config", &s.configs)] {
        for (i, item) in items.iter().enumerate() {
            let at = format!("services.{service}.{kind}s[{i}]");
            let source = if kind == "secret" {
                let Some(def) = p.secrets.get(&item.source) else { bail!("{at}: undefined secret {:?}", item.source) };
                match (&def.file, &def.environment) {
                    (Some(f), _) => Source::File(f),
                    (None, Some(v)) => Source::Variable(v),
                    (None, None) => bail!("{at}: secret {:?} has no source", item.source),
                }
            } else {
                let Some(def) = p.configs.get(&item.source) else { bail!("{at}: undefined config {:?}", item.source) };
                match (&def.file, &def.environment, &def.content) {
                    (Some(f), _, _) => Source::File(f),
                    (None, Some(v), _) => Source::Variable(v),
                    (None, None, Some(c)) => Source::Content(c),
                    (None, None, None) => bail!("{at}: config {:?} has no source", item.source),
                }
            };
            let path = mounted_file(engine, container, kind, item, source).map_err(|e| anyhow::anyhow!("{at}: {kind} {:?}: {e:#}", item.source))?;
            if path.contains(',') {
                bail!("{at}: a {kind} path with a comma cannot be given to --mount: {path}");
            }
            mounts.push(format!("type=bind,source={path},target={},readonly", item.container_path()));
        }
    }
    Ok(mounts)
}

/// The host file a secret or config is mounted from.
fn mounted_file(engine: &Engine<'_>, container: &str, kind: &str, item: &compose::ServiceSecret, source: Source<'_>) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let plain = item.uid.is_none() && item.gid.is_none() && item.mode.is_none();
    let value: Vec<u8> = match source {
        Source::File(file) if plain => {
            if !std::path::Path::new(file).is_file() {
                bail!("file {file} not found");
            }
            return Ok(file.to_string());
        }
        Source::File(file) => std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?,
        Source::Variable(var) => engine.project.variables.get(var).cloned().unwrap_or_default().into_bytes(),
        Source::Content(c) => c.as_bytes().to_vec(),
    };
    let dir = engine.secrets_dir(container);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    // Secrets keep their own names (an older state root has them so); configs get a prefix.
    let path = if kind == "secret" { dir.join(&item.source) } else { dir.join(format!("config.{}", item.source)) };
    std::fs::write(&path, value)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(item.mode.unwrap_or(0o444)))?;
    std::os::unix::fs::chown(&path, Some(item.uid.unwrap_or(0)), Some(item.gid.unwrap_or(0)))?;
    Ok(path.to_string_lossy().into_owned())
}

/// `--label KEY=VALUE` for each of `labels`.
pub fn label_args(labels: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    labels.iter().flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")]).collect()
}

/// The service's `healthcheck:` as `builder run` flags; unset fields keep the image's.
fn health_args(h: &compose::Healthcheck, a: &mut Vec<String>) {
    if h.disable || h.test.first().is_some_and(|t| t == "NONE") {
        a.push("--no-healthcheck".into());
        return;
    }
    if !h.test.is_empty() {
        a.push("--health-test".into());
        a.push(serde_json::to_string(&h.test).unwrap_or_default());
    }
    let ms = |d: std::time::Duration| format!("{}ms", d.as_millis().max(1));
    for (flag, d) in [("--health-interval", h.interval), ("--health-timeout", h.timeout), ("--health-start-period", h.start_period), ("--health-start-interval", h.start_interval)] {
        if let Some(d) = d {
            a.push(flag.into());
            a.push(ms(d));
        }
    }
    if let Some(r) = h.retries {
        a.push("--health-retries".into());
        a.push(r.to_string());
    }
}

/// Refuses what the runtime cannot honour yet, naming the key.
fn check_supported(p: &compose::Project, service: &str, s: &Service) -> anyhow::Result<()> {
    const NOT_YET: &str = "is not supported by builder compose yet";
    for name in s.networks.keys() {
        if let Some(ip) = s.networks[name].ipv6_address.as_ref() {
            bail!("services.{service}.networks.{name}: an IPv6 address ({ip}) {NOT_YET}");
        }
        if let Some(ip) = s.networks[name].ipv4_address.as_ref()
            && ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            bail!("services.{service}.networks.{name}.ipv4_address: {ip:?} is not an IPv4 address");
        }
        if p.networks.get(name).is_some_and(|n| n.ipam.as_ref().is_some_and(|i| i.config.len() > 1)) {
            bail!("networks.{name}.ipam.config: more than one pool {NOT_YET}");
        }
    }
    Ok(())
}
