//! What a container was created with, in Docker's words: the `Config` and `HostConfig` of
//! `docker inspect`, written once to `settings.json` in the container's directory when it is
//! created. `inspect` prints them, `ps --filter label=…` and the health checker read them.
//! Runtime state (running, exit code, health) lives elsewhere: this file never changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const FILE: &str = "settings.json";

/// The container's settings, as recorded at create time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Settings {
    /// The first word of the command (`Path` in `docker inspect`).
    pub path: String,
    /// The rest of the command.
    pub args: Vec<String>,
    pub config: Config,
    pub host_config: HostConfig,
}

/// Docker's container `Config`: the image's config merged with the run options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, Empty>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// `{}` in Docker's JSON (the value of a set's keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Docker's `Healthcheck`: durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`; empty inherits the image's.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Docker's `HostConfig`: how the container is run on this host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    pub log_config: LogConfig,
    pub network_mode: String,
    pub port_bindings: BTreeMap<String, Vec<HostPort>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volumes_from: Option<Vec<String>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    pub memory: i64,
    pub nano_cpus: i64,
    pub pids_limit: Option<i64>,
    pub devices: Vec<DeviceMapping>,
    pub ulimits: Vec<Ulimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tmpfs: BTreeMap<String, String>,
}

/// `--log-driver` and `--log-opt`: only `json-file`, with its rotation (`max-size`, `max-file`) and
/// record attributes (`labels`, `labels-regex`, `env`, `env-regex`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { kind: "json-file".into(), config: BTreeMap::new() }
    }
}

/// One host side of a published port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPort {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

/// `--device HOST[:CONTAINER[:PERMISSIONS]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Settings {
    /// Writes the settings of the container in `dir` (tmp + rename: never half a file).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::io("encoding", &path, std::io::Error::other(e)))?;
        std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))
    }

    /// The settings of the container in `dir`; a container made before they were recorded
    /// has the defaults.
    pub fn load(dir: &Path) -> Result<Settings> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::io("reading", &path, std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }
}

/// `--label KEY=VALUE` (or `KEY`, an empty value) and `--label-file` lines, in order: a later
/// one wins, as in Docker.
pub fn parse_labels(labels: &[String], files: &[std::path::PathBuf]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut add = |flag: &'static str, l: &str| -> Result<()> {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.trim().is_empty() {
            return Err(Error::option(flag, l, "expected KEY=VALUE with a key"));
        }
        out.insert(k.to_string(), v.to_string());
        Ok(())
    };
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io("reading label file", f, e))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            add("--label-file", line)?;
        }
    }
    for l in labels {
        add("--label", l)?;
    }
    Ok(out)
}

/// A Go duration as Docker's flags take it (`30s`, `1m30s`, `500ms`, `1h`), in nanoseconds.
pub fn parse_duration(flag: &'static str, s: &str) -> Result<i64> {
    match units::parse_duration(s.trim()) {
        Ok(ns) if ns >= 0 => Ok(ns),
        _ => Err(Error::option(flag, s, "use a duration such as 30s, 1m30s or 500ms")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_bad_ones() {
        assert_eq!(parse_duration("--health-interval", "30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("--health-interval", "1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("--health-interval", "500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration("--health-interval", "1.5s").unwrap(), 1_500_000_000);
        let err = parse_duration("--health-timeout", "10").unwrap_err().to_string();
        assert_eq!(err, "invalid --health-timeout \"10\": use a duration such as 30s, 1m30s or 500ms");
        assert!(parse_duration("--health-timeout", "5x").is_err());
        assert!(parse_duration("--health-timeout", "").is_err());
    }

    #[test]
    fn labels_from_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("labels");
        std::fs::write(&f, "# comment\na=from-file\nb=2\n").unwrap();
        let l = parse_labels(&["a=flag".into(), "empty".into()], &[f]).unwrap();
        assert_eq!(l.get("a").unwrap(), "flag");
        assert_eq!(l.get("b").unwrap(), "2");
        assert_eq!(l.get("empty").unwrap(), "");
        assert!(parse_labels(&["=x".into()], &[]).unwrap_err().to_string().contains("--label \"=x\""));
    }
}
