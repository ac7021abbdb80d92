//! The typed compose file: every key builder compose supports, each in one normal form (a
//! `command` string is split into words, short `ports`/`volumes` syntax becomes the long form,
//! list-form `environment` becomes a mapping …). `compose config` prints this model.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::forms::{self, Mapping, OneOrMany, StrOrMap, StrOrSeq};

/// Keys of the Compose specification that builder compose does not implement: naming them in
/// the error tells the user it is a known, unsupported key rather than a typo.
pub const UNSUPPORTED_COMPOSE_KEYS: &[&str] = &[
    "extends", "include",
    "logging", "platform", "pull_policy", "links", "external_links", "security_opt", "shm_size", "stdin_open", "tty", "ipc", "pid",
    "userns_mode", "cgroup_parent", "domainname", "mac_address", "storage_opt", "isolation", "cpu_shares", "cpuset", "memswap_limit",
    "mem_reservation", "oom_score_adj", "runtime", "volumes_from", "annotations", "attach", "develop", "post_start", "pre_stop", "models",
];

/// One compose file as read (before merging with the files that override it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Accepted and ignored, as Compose v2 does (2.x and 3.x files are what tutorials have).
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    #[serde(default)]
    pub configs: BTreeMap<String, Config>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "command")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "command")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "mapping")]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "env_files")]
    pub env_file: Vec<EnvFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "ports")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "expose")]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "service_networks")]
    pub networks: BTreeMap<String, ServiceNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "depends_on")]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "duration", serialize_with = "ser_duration")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "bytes")]
    pub mem_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "cpus")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "extra_hosts")]
    pub extra_hosts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "service_secrets")]
    pub secrets: Vec<ServiceSecret>,
    /// Configs, in the secrets' form; the target is always absolute (`/<source>` by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "service_configs")]
    pub configs: Vec<ServiceSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub cap_drop: Vec<String>,
    /// `HOST[:CONTAINER[:PERMISSIONS]]`, as `builder run --device` takes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "ulimits")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub dns_opt: Vec<String>,
    /// `net.core.somaxconn: 1024` or `- net.core.somaxconn=1024`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildLong {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "mapping")]
    pub args: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
}

/// `build: ./dir` or the long form; the context defaults to `.`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "StrOrMap<BuildLong>")]
pub struct Build {
    pub context: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl From<StrOrMap<BuildLong>> for Build {
    fn from(v: StrOrMap<BuildLong>) -> Self {
        match v {
            StrOrMap::Str(context) => Build { context, ..Build::default() },
            StrOrMap::Map(b) => Build {
                context: b.context.unwrap_or_else(|| ".".into()),
                dockerfile: b.dockerfile,
                args: b.args,
                target: b.target,
                cache_from: b.cache_from,
                cache_to: b.cache_to,
                labels: b.labels,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFileLong {
    pub path: String,
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

/// One published port in the long form (short-syntax ranges are expanded into one entry each).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(deserialize_with = "port_number")]
    pub target: u16,
    /// A port or a range (`8000-8010`: the first free one), absent for a random host port.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default = "ingress")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

fn tcp() -> String {
    "tcp".into()
}

fn ingress() -> String {
    "ingress".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_host_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nocopy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "bytes")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A service's mount in the long form; `source` is absent for an anonymous volume.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, try_from = "StrOrMap<ServiceVolumeLong>")]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: MountType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceVolumeLong {
    #[serde(rename = "type")]
    pub kind: MountType,
    #[serde(default)]
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub bind: Option<BindOptions>,
    #[serde(default)]
    pub volume: Option<VolumeOptions>,
    #[serde(default)]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(default)]
    pub consistency: Option<String>,
}

impl TryFrom<StrOrMap<ServiceVolumeLong>> for ServiceVolume {
    type Error = String;
    fn try_from(v: StrOrMap<ServiceVolumeLong>) -> Result<Self, String> {
        match v {
            StrOrMap::Map(l) => {
                if l.kind != MountType::Tmpfs && l.kind != MountType::Volume && l.source.is_none() {
                    return Err("a bind mount needs a `source`".into());
                }
                Ok(ServiceVolume { kind: l.kind, source: l.source, target: l.target, read_only: l.read_only, bind: l.bind, volume: l.volume, tmpfs: l.tmpfs })
            }
            StrOrMap::Str(s) => parse_volume_short(&s),
        }
    }
}

/// `[SOURCE:]TARGET[:MODE]`: a source that is a path (`/`, `.`, `~`) is a bind mount, any other
/// is a named volume; no source is an anonymous volume.
pub fn parse_volume_short(s: &str) -> Result<ServiceVolume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(format!("invalid volume {s:?} (write SOURCE:TARGET[:ro])")),
    };
    if target.is_empty() || !target.starts_with('/') {
        return Err(format!("invalid volume {s:?}: the container path {target:?} must be absolute"));
    }
    let mut read_only = false;
    let mut bind = BindOptions::default();
    let mut volume = None;
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" => bind.selinux = Some(opt.to_string()),
            "nocopy" => volume = Some(VolumeOptions { nocopy: Some(true), subpath: None }),
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => bind.propagation = Some(opt.to_string()),
            "cached" | "delegated" | "consistent" => {}
            _ => return Err(format!("invalid volume {s:?}: unknown mode {opt:?} (ro, rw, z, Z, nocopy or a propagation)")),
        }
    }
    let kind = match source {
        Some(src) if src.starts_with(['/', '.', '~']) => MountType::Bind,
        Some("") => return Err(format!("invalid volume {s:?}: empty source")),
        _ => MountType::Volume,
    };
    let bind = (kind == MountType::Bind).then_some(BindOptions { create_host_path: Some(true), ..bind });
    Ok(ServiceVolume { kind, source: source.map(str::to_string), target: target.to_string(), read_only, bind, volume, tmpfs: None })
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`; a string is `CMD-SHELL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "health_test")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "duration", serialize_with = "ser_duration")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "duration", serialize_with = "ser_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "duration", serialize_with = "ser_duration")]
    pub start_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "duration", serialize_with = "ser_duration")]
    pub start_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

/// `restart:`: the runtime's policy type, read and written as Docker writes it (`no`,
/// `always`, `on-failure[:N]`, `unless-stopped`).
pub use runtime::restart::RestartPolicy;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "external")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_ipv6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "external")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
}

// --- the shapes of single keys ---

fn command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Some(match StrOrSeq::<Vec<String>>::deserialize(d)? {
        StrOrSeq::Str(s) => forms::split_words(&s).map_err(serde::de::Error::custom)?,
        StrOrSeq::Seq(v) => v,
    }))
}

fn health_test<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let test = match StrOrSeq::<Vec<String>>::deserialize(d)? {
        StrOrSeq::Str(s) => vec!["CMD-SHELL".to_string(), s],
        StrOrSeq::Seq(v) => v,
    };
    match test.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL" | "NONE") | None => Ok(test),
        Some(other) => Err(serde::de::Error::custom(format!("a healthcheck test list starts with CMD, CMD-SHELL or NONE, not {other:?}"))),
    }
}

fn mapping<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    Ok(Mapping::deserialize(d)?.0)
}

fn labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Mapping::deserialize(d)?.0.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(OneOrMany::deserialize(d)?.0)
}

fn env_files<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
    Ok(match StrOrSeq::<Vec<StrOrMap<EnvFileLong>>>::deserialize(d)? {
        StrOrSeq::Str(path) => vec![EnvFile { path, required: true }],
        StrOrSeq::Seq(items) => items
            .into_iter()
            .map(|i| match i {
                StrOrMap::Str(path) => EnvFile { path, required: true },
                StrOrMap::Map(l) => EnvFile { path: l.path, required: l.required },
            })
            .collect(),
    })
}

fn expose<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)
}

fn opt_scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

fn port_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| serde::de::Error::custom(format!("invalid port {s:?} (1-65535)")))
}

fn ports<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    struct Item(Vec<Port>);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match StrOrMap::<Port>::deserialize(d)? {
                StrOrMap::Map(p) => Ok(Item(vec![p])),
                StrOrMap::Str(s) => parse_port_short(&s).map(Item).map_err(serde::de::Error::custom),
            }
        }
    }
    Ok(Vec::<Item>::deserialize(d)?.into_iter().flat_map(|i| i.0).collect())
}

fn port_range(s: &str, what: &str, whole: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port {whole:?}: {what} {s:?} is not a port or a range (1-65535)");
    let one = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]`, with ranges (`9090-9091:8080-8081`) expanded into
/// one entry per port as Compose does.
pub fn parse_port_short(s: &str) -> Result<Vec<Port>, String> {
    let (addr, protocol) = match s.rsplit_once('/') {
        Some((a, p)) if matches!(p, "tcp" | "udp" | "sctp") => (a, p),
        Some((_, p)) => return Err(format!("invalid port {s:?}: unknown protocol {p:?} (tcp, udp or sctp)")),
        None => (s, "tcp"),
    };
    let (host_ip, rest) = if let Some(r) = addr.strip_prefix('[') {
        let (ip, rest) = r.split_once("]:").ok_or_else(|| format!("invalid port {s:?}: unclosed [ in the host address"))?;
        (Some(ip.to_string()), rest)
    } else {
        match addr.matches(':').count() {
            0 | 1 => (None, addr),
            2 => {
                let (ip, rest) = addr.split_once(':').unwrap_or_default();
                (Some(ip.to_string()), rest)
            }
            _ => return Err(format!("invalid port {s:?} (write [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL])")),
        }
    };
    let (published, target) = match rest.rsplit_once(':') {
        Some((p, t)) => (Some(p), t),
        None => (None, rest),
    };
    let (t0, t1) = port_range(target, "the container port", s)?;
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let port = |target: u16, published: Option<String>| Port {
        target,
        published,
        host_ip: host_ip.clone(),
        protocol: protocol.to_string(),
        mode: "ingress".into(),
        name: None,
        app_protocol: None,
    };
    match published.filter(|p| !p.is_empty()) {
        None => Ok((t0..=t1).map(|t| port(t, None)).collect()),
        Some(p) => {
            let (p0, p1) = port_range(p, "the host port", s)?;
            if p1 - p0 == t1 - t0 {
                Ok((t0..=t1).zip(p0..=p1).map(|(t, p)| port(t, Some(p.to_string()))).collect())
            } else if t0 == t1 {
                Ok(vec![port(t0, Some(p.to_string()))])
            } else {
                Err(format!("invalid port {s:?}: the host range and the container range differ in length"))
            }
        }
    }
}

fn service_networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ServiceNetwork>, D::Error> {
    Ok(match forms::MapOrSeq::<BTreeMap<String, Option<ServiceNetwork>>, Vec<String>>::deserialize(d)? {
        forms::MapOrSeq::Map(m) => m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect(),
        forms::MapOrSeq::Seq(v) => v.into_iter().map(|k| (k, ServiceNetwork::default())).collect(),
    })
}

fn depends_on<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Dependency>, D::Error> {
    Ok(match forms::MapOrSeq::<BTreeMap<String, Option<Dependency>>, Vec<String>>::deserialize(d)? {
        forms::MapOrSeq::Map(m) => m.into_iter().map(|(k, v)| (k, v.unwrap_or(Dependency { required: true, ..Dependency::default() }))).collect(),
        forms::MapOrSeq::Seq(v) => v.into_iter().map(|k| (k, Dependency { required: true, ..Dependency::default() })).collect(),
    })
}

fn extra_hosts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(match forms::MapOrSeq::<BTreeMap<String, String>, Vec<String>>::deserialize(d)? {
        forms::MapOrSeq::Map(m) => m,
        forms::MapOrSeq::Seq(items) => {
            let mut m = BTreeMap::new();
            for item in items {
                // `host:ip` or `host=ip`; the IP may be IPv6, so split at the first separator.
                let (h, ip) = item
                    .split_once('=')
                    .or_else(|| item.split_once(':'))
                    .ok_or_else(|| serde::de::Error::custom(format!("invalid extra host {item:?} (write HOST:IP)")))?;
                m.insert(h.to_string(), ip.trim_start_matches('[').trim_end_matches(']').to_string());
            }
            m
        }
    })
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    forms::parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
}

fn ser_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&forms::format_duration(*d)),
        None => s.serialize_none(),
    }
}

fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    units::parse_bytes(&s).map(Some).map_err(serde::de::Error::custom)
}

fn cpus<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse::<f64>().ok().filter(|c| *c >= 0.0).map(Some).ok_or_else(|| serde::de::Error::custom(format!("invalid cpus {s:?} (a number such as 0.5)")))
}

/// `external: true`, or the legacy `external: {name: …}` of 3.x files.
fn external<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Legacy {
        #[allow(dead_code)]
        name: Option<String>,
    }
    match StrOrMap::<Legacy>::deserialize(d)? {
        StrOrMap::Str(s) => match s.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("external must be true or false, not {s:?}"))),
        },
        StrOrMap::Map(_) => Ok(true),
    }
}

/// A top-level secret: its value comes from a file or from a variable of the environment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Swarm's secret store, which a daemonless builder has no equivalent of: refused when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "external")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A top-level config: its contents come from a file, a variable of the environment, or the
/// file itself (`content`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Swarm's config store, which a daemonless builder has no equivalent of: refused when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "external")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSecretLong {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar")]
    pub mode: Option<String>,
}

/// A secret given to a service, in the long form: mounted read-only at `target` (a name
/// under `/run/secrets/`, or an absolute path).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSecret {
    pub source: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl ServiceSecret {
    /// Where the secret appears inside the container.
    pub fn container_path(&self) -> String {
        if self.target.starts_with('/') {
            self.target.clone()
        } else {
            format!("/run/secrets/{}", self.target)
        }
    }
}

fn service_secrets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ServiceSecret>, D::Error> {
    use serde::de::Error;
    secrets_or_configs(d, "secrets", |target| {
        if target.is_empty() || (!target.starts_with('/') && target.contains('/')) {
            return Err(D::Error::custom(format!("secrets: target {target:?} must be a file name (under /run/secrets) or an absolute path")));
        }
        Ok(target)
    })
}

/// A config's target is a path in the container; a relative one starts at `/`, as Compose
/// mounts a config at `/<name>` by default.
fn service_configs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ServiceSecret>, D::Error> {
    use serde::de::Error;
    secrets_or_configs(d, "configs", |target| {
        if target.is_empty() {
            return Err(D::Error::custom("configs: the target is empty"));
        }
        Ok(if target.starts_with('/') { target } else { format!("/{target}") })
    })
}

fn secrets_or_configs<'de, D: serde::Deserializer<'de>>(d: D, key: &str, target: impl Fn(String) -> Result<String, D::Error>) -> Result<Vec<ServiceSecret>, D::Error> {
    use serde::de::Error;
    let number = |field: &str, v: Option<String>, radix: u32| -> Result<Option<u32>, D::Error> {
        v.map(|v| u32::from_str_radix(v.trim_start_matches("0o"), radix).map_err(|_| D::Error::custom(format!("{key}: {field} {v:?} is not a number"))))
            .transpose()
    };
    Vec::<StrOrMap<ServiceSecretLong>>::deserialize(d)?
        .into_iter()
        .map(|item| match item {
            StrOrMap::Str(source) => Ok(ServiceSecret { target: target(source.clone())?, source, uid: None, gid: None, mode: None }),
            StrOrMap::Map(l) => {
                let t = target(l.target.unwrap_or_else(|| l.source.clone()))?;
                // `mode` is octal as Compose writes it (0440); YAML 1.2 reads 0440 as the number 440.
                Ok(ServiceSecret { source: l.source, target: t, uid: number("uid", l.uid, 10)?, gid: number("gid", l.gid, 10)?, mode: number("mode", l.mode, 8)? })
            }
        })
        .collect()
}

/// One `ulimits:` entry: `nofile: 1024` (soft and hard the same) or `nofile: {soft: 1024, hard: 2048}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ulimit {
    pub soft: u64,
    pub hard: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UlimitLong {
    #[serde(deserialize_with = "scalar")]
    soft: String,
    #[serde(deserialize_with = "scalar")]
    hard: String,
}

fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_scalar(d).map(Option::unwrap_or_default)
}

fn ulimits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Ulimit>, D::Error> {
    use serde::de::Error;
    let limit = |name: &str, v: &str| v.trim().parse::<u64>().map_err(|_| D::Error::custom(format!("ulimits.{name}: {v:?} is not a number")));
    let mut out = BTreeMap::new();
    for (name, v) in BTreeMap::<String, StrOrMap<UlimitLong>>::deserialize(d)? {
        let u = match v {
            StrOrMap::Str(n) => {
                let n = limit(&name, &n)?;
                Ulimit { soft: n, hard: n }
            }
            StrOrMap::Map(l) => Ulimit { soft: limit(&name, &l.soft)?, hard: limit(&name, &l.hard)? },
        };
        if u.soft > u.hard {
            return Err(D::Error::custom(format!("ulimits.{name}: soft limit {} is above the hard limit {}", u.soft, u.hard)));
        }
        out.insert(name, u);
    }
    Ok(out)
}
