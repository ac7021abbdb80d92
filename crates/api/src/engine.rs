//! What the server needs from this machine's build engine. The server handles the transport,
//! the context mirror, auth and limits; the engine does the work, with the same code a local
//! `builder build` runs.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use snapshot::diff::Compression;
use solver::ProgressSink;

use crate::context::select::Selection;
use solver::Cancel;

/// The options of one build, as the user gave them to `builder build`.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// Its name for messages (`Dockerfile`, `docker/app.Dockerfile`).
    pub dockerfile_name: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<String>,
    /// `--output` values as written (`type=image,name=…`).
    pub outputs: Vec<String>,
    /// Secret id -> bytes. Never logged (see the `Debug` impl), never cached.
    pub secrets: HashMap<String, Vec<u8>>,
    pub no_cache: bool,
    pub platform: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub pull: bool,
    /// 0: the engine's default.
    pub max_parallelism: usize,
    /// `--ssh` agents by id (`RUN --mount=type=ssh`, `git@` sources). Not sent to a server.
    pub ssh: HashMap<String, solver::ssh::SshSource>,
    /// `--allow` entitlements the user grants (`security.insecure`, `network.host`).
    pub allow: Vec<String>,
    /// The `docker build` flags the request carries by name (see [`BuildFlags`]).
    pub options: BuildFlags,
}

/// The `docker build` flags that cross the wire as `name -> value` strings in the request's
/// `options` map (so a new flag needs no protocol change), parsed once: on the client from the
/// command line, on the server by [`BuildFlags::from_map`], which refuses what it cannot read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildFlags {
    /// `--compression` of new layers; `None`: the output's default.
    pub compression: Option<Compression>,
    /// `--push`: image outputs are pushed to their registries.
    pub push: bool,
    /// `--network none`: RUN steps that name no network get none.
    pub network_none: bool,
    /// `--add-host NAME:IP` entries, in order: `(name, ip)`.
    pub add_hosts: Vec<(String, String)>,
    /// `--cache-from` sources, all consulted.
    pub cache_from: Vec<remote_cache::CacheFrom>,
    /// `--cache-to` exports.
    pub cache_to: Vec<remote_cache::CacheTo>,
}

impl BuildFlags {
    /// The wire form: only flags that differ from the default appear.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if let Some(c) = self.compression {
            m.insert("compression".to_string(), c.name().to_string());
        }
        if self.push {
            m.insert("push".to_string(), "true".to_string());
        }
        if self.network_none {
            m.insert("network".to_string(), "none".to_string());
        }
        if !self.add_hosts.is_empty() {
            // One `NAME IP` per line.
            let lines: String = self.add_hosts.iter().map(|(n, ip)| format!("{n} {ip}\n")).collect();
            m.insert("add-host".to_string(), lines);
        }
        // One canonical spec per line (a spec has no newline).
        if !self.cache_from.is_empty() {
            m.insert("cache-from".to_string(), self.cache_from.iter().map(|c| format!("{c}\n")).collect());
        }
        if !self.cache_to.is_empty() {
            m.insert("cache-to".to_string(), self.cache_to.iter().map(|c| format!("{c}\n")).collect());
        }
        m
    }

    /// Reads the wire form. A name this engine does not know is refused rather than ignored (a
    /// newer client's `--push` silently dropped would be a wrong result).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<BuildFlags, EngineError> {
        let invalid = |flag: &str, v: &str, want: &str| EngineError::Invalid(format!("invalid --{flag} {v:?}: {want}"));
        let mut f = BuildFlags::default();
        for (k, v) in map {
            match k.as_str() {
                "compression" => f.compression = Some(Compression::parse(v).ok_or_else(|| invalid(k, v, "use gzip, zstd or uncompressed"))?),
                "push" => f.push = v.parse().map_err(|_| invalid(k, v, "use true or false"))?,
                "network" => match v.as_str() {
                    "none" => f.network_none = true,
                    "default" | "host" => f.network_none = false,
                    _ => return Err(invalid(k, v, "a build's RUN steps can use default, host or none")),
                },
                "add-host" => {
                    for line in v.lines() {
                        let bad = || invalid(k, line, "expected NAME IP");
                        let (name, ip) = line.split_once(' ').ok_or_else(bad)?;
                        if name.is_empty() || ip.parse::<std::net::IpAddr>().is_err() {
                            return Err(bad());
                        }
                        f.add_hosts.push((name.to_string(), ip.to_string()));
                    }
                }
                "cache-from" => {
                    for line in v.lines() {
                        f.cache_from.push(remote_cache::CacheFrom::parse(line).map_err(|e| EngineError::Invalid(e.to_string()))?);
                    }
                }
                "cache-to" => {
                    for line in v.lines() {
                        f.cache_to.push(remote_cache::CacheTo::parse(line).map_err(|e| EngineError::Invalid(e.to_string()))?);
                    }
                }
                other => return Err(EngineError::Unsupported(format!("this engine does not know the build option {other:?} (is the client newer than the server?)"))),
            }
        }
        Ok(f)
    }
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret_ids: Vec<&String> = self.secrets.keys().collect();
        f.debug_struct("BuildOptions")
            .field("dockerfile_name", &self.dockerfile_name)
            .field("build_args", &self.build_args)
            .field("target", &self.target)
            .field("tags", &self.tags)
            .field("outputs", &self.outputs)
            .field("secrets", &secret_ids)
            .field("no_cache", &self.no_cache)
            .field("platform", &self.platform)
            .field("labels", &self.labels)
            .field("pull", &self.pull)
            .field("max_parallelism", &self.max_parallelism)
            .field("options", &self.options)
            .field("allow", &self.allow)
            .finish()
    }
}

/// One build for the engine to run.
pub struct BuildJob {
    pub options: BuildOptions,
    /// The build context (the server's mirror of the client's directory).
    pub context_dir: PathBuf,
    /// The Dockerfile written to a private directory (its `<name>.dockerignore` beside it, when
    /// the client had one).
    pub dockerfile_path: PathBuf,
    pub progress: ProgressSink,
    /// Set when the client went away or the server is shutting down.
    pub cancel: Arc<Cancel>,
}

/// What a build produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildOutcome {
    /// Manifest digest of the image (empty when the output was not an image).
    pub image_digest: String,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

/// An image in the engine's store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSummary {
    /// `repo:tag`, empty for an untagged image.
    pub reference: String,
    pub id: String,
    pub manifest_digest: String,
    pub size: u64,
    pub created_unix: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub reference: String,
    pub digest: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    pub records_removed: u64,
    pub bytes_freed: u64,
    pub details: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskUsageEntry {
    pub kind: String,
    pub id: String,
    pub size: u64,
    pub description: String,
    pub last_used_unix: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub entries: Vec<DiskUsageEntry>,
    pub total: u64,
    pub reclaimable: u64,
    pub layer_bytes: u64,
    pub mount_bytes: u64,
}

/// Why the engine could not do what was asked; the kind becomes the gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is wrong (a bad Dockerfile, an unknown target, a bad flag value).
    #[error("{0}")]
    Invalid(String),
    /// An image or other named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The build was cancelled.
    #[error("build cancelled")]
    Cancelled,
    /// This engine does not do that.
    #[error("{0}")]
    Unsupported(String),
    /// The work itself failed (a RUN exited non-zero, a registry refused a push, …).
    #[error("{0}")]
    Failed(String),
}

/// The build engine of this machine. Methods block; the server calls them on blocking threads.
pub trait Engine: Send + Sync + 'static {
    fn build(&self, job: BuildJob) -> Result<BuildOutcome, EngineError>;
    /// The context paths a build with `options` can read (its base images resolved, and pulled
    /// when missing or with `pull`; progress goes to `progress`). A server asks before the
    /// context is transferred, so only those paths cross the network.
    fn context_selection(&self, options: &BuildOptions, progress: ProgressSink) -> Result<Selection, EngineError> {
        let _ = (options, progress);
        Ok(Selection::Everything)
    }
    fn images(&self) -> Result<Vec<ImageSummary>, EngineError>;
    fn push(&self, reference: &str, destination: Option<&str>, insecure_registries: &[String], note: &(dyn Fn(String) + Send + Sync)) -> Result<PushOutcome, EngineError>;
    fn prune(&self, all: bool, keep_storage: Option<u64>) -> Result<PruneOutcome, EngineError>;
    fn disk_usage(&self) -> Result<DiskUsage, EngineError>;
    /// Platforms this engine builds for (`linux/amd64`).
    fn platforms(&self) -> Vec<String>;
}
