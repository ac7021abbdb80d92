//! `builder ps`.

use std::process::ExitCode;

use container::{ContainerState, Containers, Status};

use super::filters;

/// What `ps` was asked for.
pub(super) struct PsArgs {
    pub all: bool,
    pub quiet: bool,
    pub filters: Vec<String>,
    pub format: Option<String>,
    pub last: Option<usize>,
    pub latest: bool,
    pub size: bool,
    pub no_trunc: bool,
}

/// The default columns of `docker ps` (and `-s`).
const TABLE: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
const TITLES: [(&str, &str); 14] = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

pub(super) fn ps(containers: &Containers, a: &PsArgs) -> anyhow::Result<ExitCode> {
    let filters = filters::PsFilters::parse(&a.filters)?;
    let all_states = a.all || a.latest || a.last.is_some() || filters.selects_states();
    let everything = containers.list()?;
    let mut list: Vec<ContainerState> = Vec::new();
    for c in &everything {
        if (all_states || c.status == Status::Running) && filters.matches(containers, c)? {
            list.push(c.clone());
        }
    }
    // Newest first, as listed; -n N and -l keep the N (1) last created.
    if let Some(n) = a.last.or(a.latest.then_some(1)) {
        list.truncate(n);
    }
    let default = if a.size { format!("{TABLE}\\t{{{{.Size}}}}") } else { TABLE.to_string() };
    // As Docker's CLI: a template that shows the size (or every field) has it computed.
    let size = a.size || a.format.as_deref().is_some_and(|f| f.contains("Size") || f.contains("json"));
    let key = |c: &ContainerState| if a.no_trunc { c.id.clone() } else { c.id[..12].to_string() };
    crate::cmd::format::list(&list, a.quiet, key, a.format.as_deref(), &default, &TITLES, |c| row(containers, c, a.no_trunc, size))?;
    Ok(ExitCode::SUCCESS)
}

/// One container as the fields of Docker's `ps --format`.
fn row(containers: &Containers, c: &ContainerState, no_trunc: bool, size: bool) -> serde_json::Value {
    let dir = containers.dir_of(&c.id);
    let settings = container::Settings::load(&dir).unwrap_or_default();
    let mut cmd = c.command.join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
    }
    let labels: Vec<String> = settings.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mounts: Vec<String> = container::mounts::of_container(&dir)
        .unwrap_or_default()
        .iter()
        .map(|m| m.name.clone().map(|n| if !no_trunc && n.len() > 15 { format!("{}…", &n[..15]) } else { n }).unwrap_or_else(|| m.source.display().to_string()))
        .collect();
    let volumes = container::mounts::of_container(&dir).unwrap_or_default().iter().filter(|m| m.name.is_some()).count();
    let created = chrono::DateTime::parse_from_rfc3339(&c.created).map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default();
    let mut network = settings.host_config.network_mode.clone();
    if network == network::BRIDGE {
        network = "bridge".into();
    }
    let size_text = if size {
        let rw = dir_size(&dir.join("upper"));
        let image: u64 = c.lowers.iter().map(|l| dir_size(l)).sum();
        format!("{} (virtual {})", crate::cmd::human_size(rw), crate::cmd::human_size(rw + image))
    } else {
        String::new()
    };
    serde_json::json!({
        "ID": if no_trunc { c.id.clone() } else { c.id[..12].to_string() },
        "Image": c.image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": created,
        "RunningFor": format!("{} ago", human_duration(&c.created)),
        "Ports": ports_text(containers, c),
        "State": state_name(c),
        "Status": status_text(c, health_of(containers, c)),
        "Size": size_text,
        "Names": c.name,
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": network,
        "Platform": null,
        "LocalVolumes": volumes.to_string(),
    })
}

/// `running`, `paused`, `exited`, `created`: Docker's State column and `status=` filter.
pub(super) fn state_name(c: &ContainerState) -> &'static str {
    match c.status {
        Status::Created => "created",
        Status::Running if c.paused => "paused",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// The health status of a running container with a health check.
pub(super) fn health_of(containers: &Containers, c: &ContainerState) -> Option<container::health::HealthStatus> {
    if c.status != Status::Running {
        return None;
    }
    let dir = containers.dir_of(&c.id);
    let has_check = container::Settings::load(&dir).ok()?.config.healthcheck.is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
    has_check.then(|| container::health::Health::load(&dir).map(|h| h.status).unwrap_or(container::health::HealthStatus::Starting))
}

/// Bytes of the regular files under `dir` (hard links once): `ps -s` and `inspect -s`.
pub(crate) fn dir_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))))
        .map(|m| m.len())
        .sum()
}

fn human_duration(since: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(since) else { return "unknown".into() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86400 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn status_text(s: &ContainerState, health: Option<container::health::HealthStatus>) -> String {
    use container::health::HealthStatus;
    let health = match health {
        None => "",
        Some(HealthStatus::Starting) => " (health: starting)",
        Some(HealthStatus::Healthy) => " (healthy)",
        Some(HealthStatus::Unhealthy) => " (unhealthy)",
    };
    match s.status {
        Status::Created => "Created".into(),
        Status::Running if s.paused => format!("Up {}{health} (Paused)", human_duration(s.started_at.as_deref().unwrap_or(&s.created))),
        Status::Running => format!("Up {}{health}", human_duration(s.started_at.as_deref().unwrap_or(&s.created))),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code.unwrap_or(0), human_duration(s.finished_at.as_deref().unwrap_or(&s.created))),
    }
}

/// `0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp`, as the PORTS column of `docker ps`.
fn ports_text(containers: &Containers, c: &ContainerState) -> String {
    containers.ports(c).iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `builder port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 0.0.0.0:8080` lines.
pub(super) fn port(containers: &Containers, key: &str, which: Option<&str>) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    let ports = containers.ports(&state);
    let wanted = which.map(|w| if w.contains('/') { w.to_string() } else { format!("{w}/tcp") });
    let mut found = false;
    for p in &ports {
        let key = format!("{}/{}", p.container_port, p.proto.as_str());
        match &wanted {
            Some(w) if *w != key => {}
            Some(_) => {
                println!("{}:{}", p.host_ip, p.host_port);
                found = true;
            }
            None => println!("{key} -> {}:{}", p.host_ip, p.host_port),
        }
    }
    if let Some(w) = wanted.filter(|_| !found) {
        anyhow::bail!("no public port '{w}' published for {}", state.name);
    }
    Ok(ExitCode::SUCCESS)
}
