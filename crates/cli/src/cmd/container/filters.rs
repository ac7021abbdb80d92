//! `ps --filter KEY=VALUE`, as Docker reads it: values of one key are alternatives (any may
//! match) except labels (all must), different keys must all match. Keys: id, name, label, status, exited, ancestor,
//! before, since, volume, network, health, publish, expose.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use container::{ContainerState, Containers, Status};

const KEYS: [&str; 13] = ["id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume", "network", "health", "publish", "expose"];
const STATUSES: [&str; 7] = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];
const HEALTH: [&str; 4] = ["starting", "healthy", "unhealthy", "none"];

/// The filters of one `ps`, by key.
#[derive(Debug, Default)]
pub(super) struct PsFilters {
    by_key: BTreeMap<String, Vec<String>>,
    names: Vec<regex::Regex>,
}

impl PsFilters {
    /// Reads `--filter` values; an unknown key or a bad value is an error naming it.
    pub fn parse(flags: &[String]) -> anyhow::Result<PsFilters> {
        let mut f = PsFilters::default();
        for flag in flags {
            let Some((key, value)) = flag.split_once('=') else { bail!("invalid --filter {flag:?}: expected KEY=VALUE") };
            let key = key.trim().to_ascii_lowercase();
            if !KEYS.contains(&key.as_str()) {
                bail!("invalid --filter {flag:?}: unknown key {key:?} (one of {})", KEYS.join(", "));
            }
            match key.as_str() {
                "status" if !STATUSES.contains(&value) => bail!("invalid --filter {flag:?}: status is one of {}", STATUSES.join(", ")),
                "health" if !HEALTH.contains(&value) => bail!("invalid --filter {flag:?}: health is one of {}", HEALTH.join(", ")),
                "exited" if value.parse::<i32>().is_err() => bail!("invalid --filter {flag:?}: exited takes an exit code"),
                "name" => f.names.push(regex::Regex::new(value).with_context(|| format!("invalid --filter {flag:?}: a name filter is a regular expression"))?),
                _ => {}
            }
            f.by_key.entry(key).or_default().push(value.to_string());
        }
        Ok(f)
    }

    /// Whether the filters pick containers of every state (`status=exited` lists stopped
    /// containers without `-a`, as Docker does).
    pub fn selects_states(&self) -> bool {
        self.by_key.contains_key("status") || self.by_key.contains_key("exited")
    }

    /// Whether container `c` passes every filter.
    pub fn matches(&self, containers: &Containers, c: &ContainerState) -> anyhow::Result<bool> {
        for (key, values) in &self.by_key {
            let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
            let ok = match key.as_str() {
                "id" => any(&|v| c.id.starts_with(v)),
                // Docker matches names with their leading slash.
                "name" => self.names.iter().any(|r| r.is_match(&c.name) || r.is_match(&format!("/{}", c.name))),
                "label" => {
                    let labels = container::Settings::load(&containers.dir_of(&c.id)).unwrap_or_default().config.labels;
                    // Unlike the other keys, every label filter must match (Docker's MatchKVList).
                    values.iter().all(|v| match v.split_once('=') {
                        Some((k, want)) => labels.get(k).is_some_and(|l| l == want),
                        None => labels.contains_key(v),
                    })
                }
                "status" => any(&|v| v == super::ps::state_name(c)),
                "exited" => c.status == Status::Exited && any(&|v| v.parse::<i32>().ok() == c.exit_code),
                "ancestor" => any(&|v| ancestor_matches(c, v)),
                "before" | "since" => {
                    let mut ok = false;
                    for v in values {
                        let other = containers.find(v).with_context(|| format!("--filter {key}={v}"))?;
                        ok |= if key == "before" { c.created < other.created } else { c.created > other.created };
                    }
                    ok
                }
                "volume" => {
                    let mounts = container::mounts::of_container(&containers.dir_of(&c.id)).unwrap_or_default();
                    any(&|v| mounts.iter().any(|m| m.name.as_deref() == Some(v) || m.destination == v || m.source == std::path::Path::new(v)))
                }
                "network" => {
                    let mode = container::Settings::load(&containers.dir_of(&c.id)).unwrap_or_default().host_config.network_mode;
                    let mode = if mode == network::BRIDGE { "bridge".to_string() } else { mode };
                    any(&|v| v == mode)
                }
                "health" => {
                    let h = super::ps::health_of(containers, c);
                    any(&|v| h.map_or("none", |h| h.as_str()) == v)
                }
                "publish" | "expose" => {
                    let settings = container::Settings::load(&containers.dir_of(&c.id)).unwrap_or_default();
                    let published: Vec<(u16, u16, &str)> = containers.ports(c).iter().map(|p| (p.host_port, p.container_port, p.proto.as_str())).collect();
                    any(&|v| {
                        let (port, proto) = v.split_once('/').unwrap_or((v, "tcp"));
                        let Ok(port) = port.parse::<u16>() else { return false };
                        if key == "publish" {
                            published.iter().any(|(host, _, p)| *host == port && *p == proto)
                        } else {
                            settings.config.exposed_ports.contains_key(&format!("{port}/{proto}"))
                        }
                    })
                }
                _ => true,
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `ancestor=busybox`, `busybox:test`, an image ID or its prefix.
fn ancestor_matches(c: &ContainerState, v: &str) -> bool {
    let with_tag = |s: &str| if s.rsplit('/').next().is_some_and(|last| last.contains(':')) { s.to_string() } else { format!("{s}:latest") };
    let id = c.image_id.strip_prefix("sha256:").unwrap_or(&c.image_id);
    let v_id = v.strip_prefix("sha256:").unwrap_or(v);
    with_tag(&c.image) == with_tag(v) || c.image == v || (v_id.len() >= 4 && id.starts_with(v_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_are_named() {
        let err = PsFilters::parse(&["colour=red".into()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("colour=red") && err.contains("unknown key"), "{err}");
        let err = PsFilters::parse(&["status=sleeping".into()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("status is one of"), "{err}");
        assert!(PsFilters::parse(&["name".into()]).is_err());
        assert!(PsFilters::parse(&["name=web".into(), "status=running".into()]).is_ok());
    }
}
