//! The engine of this machine: the same parse -> lower -> solve -> export path a local
//! `builder build` takes, with one [`solver::Solver`] shared by every build the server runs (so
//! identical steps of concurrent builds run once), the local image store and the cache index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dockerfile::lower::{ImageResolver, LowerOptions, ResolvedImage};
use snapshot::diff::Compression;

use crate::engine::{BuildJob, BuildOutcome, DiskUsage, DiskUsageEntry, Engine, EngineError, ImageSummary, PruneOutcome, PushOutcome};

/// Builds with the state under one `--root`.
pub struct LocalEngine {
    root: PathBuf,
    store: oci::Store,
    solver: solver::Solver,
    insecure_registries: Vec<String>,
}

fn failed(e: impl std::fmt::Display) -> EngineError {
    EngineError::Failed(e.to_string())
}

impl LocalEngine {
    pub fn open(root: &Path, insecure_registries: Vec<String>) -> Result<LocalEngine, EngineError> {
        std::fs::create_dir_all(root).map_err(|e| failed(format!("create state directory {}: {e}", root.display())))?;
        let store = oci::Store::open(root).map_err(failed)?;
        let images = Arc::new(solver::base::StoreImages::new(store.clone(), root));
        let solver = solver::Solver::new(root, images).map_err(failed)?;
        Ok(LocalEngine { root: root.to_path_buf(), store, solver, insecure_registries })
    }

    fn registry(&self, extra_insecure: &[String]) -> Result<registry::Client, EngineError> {
        let mut insecure = self.insecure_registries.clone();
        insecure.extend(extra_insecure.iter().cloned());
        registry::Client::new(registry::ClientOptions { insecure_registries: insecure, ..Default::default() }).map_err(failed)
    }
}

/// Where the image of a remote build goes. Files (`local`, `tar`, `oci`, `docker` outputs) would
/// have to travel back to the client; this server keeps images in its store and pushes them.
struct ImageOutput {
    names: Vec<String>,
    push: bool,
}

fn parse_outputs(outputs: &[String], tags: &[String]) -> Result<ImageOutput, EngineError> {
    let mut out = ImageOutput { names: tags.to_vec(), push: false };
    for spec in outputs {
        let mut kind = "local";
        let mut names = Vec::new();
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("type", v)) => kind = v,
                Some(("name", v)) => names.push(v.to_string()),
                Some(("push", v)) => out.push |= v == "true",
                _ => {}
            }
        }
        match kind {
            "image" | "registry" => {
                out.push |= kind == "registry";
                if !names.is_empty() {
                    out.names = names;
                }
            }
            other => {
                return Err(EngineError::Unsupported(format!(
                    "--output type={other} is not available for remote builds (the result stays on the server); use type=image or type=registry"
                )));
            }
        }
    }
    Ok(out)
}

impl Engine for LocalEngine {
    fn build(&self, job: BuildJob) -> Result<BuildOutcome, EngineError> {
        let o = &job.options;
        let invalid = |e: &dyn std::fmt::Display| EngineError::Invalid(e.to_string());
        let df = dockerfile::Dockerfile::parse(&o.dockerfile, &o.dockerfile_name).map_err(|e| invalid(&e))?;
        let ignore = dockerfile::ignore::DockerIgnore::load(&job.context_dir, &o.dockerfile_name).map_err(|e| invalid(&e))?;
        let output = parse_outputs(&o.outputs, &o.tags)?;
        let mut build_args = o.build_args.clone();
        let source_date_epoch = build_args
            .get("SOURCE_DATE_EPOCH")
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().map_err(|_| EngineError::Invalid(format!("SOURCE_DATE_EPOCH {s:?} is not a number of seconds"))))
            .transpose()?;
        if let Some(e) = source_date_epoch {
            build_args.entry("SOURCE_DATE_EPOCH".into()).or_insert_with(|| e.to_string());
        }
        let platform = o.platform.clone().unwrap_or_else(|| oci::Platform::host().to_string());
        let lowered = {
            let mut resolver = StoreResolver { engine: self, pull: o.pull, progress: job.progress.clone() };
            let opts = LowerOptions { build_args, target: o.target.clone(), platform, no_cache: o.no_cache, labels: o.labels.clone(), context_excludes: ignore.patterns() };
            dockerfile::lower::lower(&df, &opts, &mut resolver).map_err(|e| invalid(&e))?
        };
        let mut locals = HashMap::new();
        locals.insert("context".to_string(), job.context_dir.clone());
        let req = solver::SolveRequest {
            definition: &lowered.definition,
            targets: vec![lowered.target],
            locals,
            secrets: o.secrets.clone(),
            // The local build's default: steps mostly wait on I/O and processes.
            max_parallelism: if o.max_parallelism > 0 { o.max_parallelism } else { (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2).max(4) },
            progress: job.progress.clone(),
            cancel: job.cancel.clone(),
        };
        let solved = self.solver.solve(&req).map_err(|e| match e {
            solver::SolveError::Cancelled => EngineError::Cancelled,
            e => failed(format!("{e}{}", failing_location(&lowered.definition, &e))),
        })?;
        let Some(solver::Solved { output: solver::Output::Snapshot { snapshot, .. }, .. }) = solved.get(&lowered.target).cloned() else {
            return Err(failed("the build produced no filesystem"));
        };
        let new_layers: HashMap<graph::VertexDigest, usize> = solved
            .iter()
            .filter_map(|(d, s)| match &s.output {
                solver::Output::Snapshot { new_layers, .. } => Some((*d, *new_layers)),
                _ => None,
            })
            .collect();
        // When each step's result was made: a cached rebuild writes the same image.
        let made_at: HashMap<graph::VertexDigest, u64> = solved
            .iter()
            .filter_map(|(d, s)| match &s.output {
                solver::Output::Snapshot { created, .. } => Some((*d, *created)),
                _ => None,
            })
            .collect();
        let progress = job.progress.clone();
        let note = move |m: String| progress(solver::Event::Note { message: m });
        let compression = match o.options.get("compression") {
            Some(c) => Compression::parse(c).ok_or_else(|| EngineError::Invalid(format!("invalid --compression {c:?}: use gzip, zstd or uncompressed")))?,
            None if output.push => Compression::Gzip,
            None => Compression::Uncompressed,
        };
        let opts = solver::export::ExportOptions { compression, source_date_epoch };
        let exported = solver::export::export_image_with_times(self.solver.index(), &self.store, &snapshot, &lowered.image, &new_layers, &made_at, &opts, &note).map_err(failed)?;
        note(format!("writing image {} done", exported.config_digest));
        let manifest: oci::Digest = exported.manifest_digest.parse().map_err(failed)?;
        let desc = self.store.manifest_descriptor(&manifest).map_err(failed)?;
        let mut tags = Vec::new();
        for n in &output.names {
            let r = oci::Reference::parse(n).map_err(|e| EngineError::Invalid(format!("invalid tag {n:?}: {e}")))?;
            self.store.tag(&r, desc.clone()).map_err(failed)?;
            note(format!("naming to {r} done"));
            tags.push(r.to_string());
        }
        if output.push {
            if output.names.is_empty() {
                return Err(EngineError::Invalid("--push needs a name: give -t NAME".into()));
            }
            let client = self.registry(&[])?;
            for n in &output.names {
                let r = oci::Reference::parse(n).map_err(failed)?;
                let d = client.push(&self.store, &r, &r, &NoteProgress(&note)).map_err(|e| failed(format!("pushing {r}: {e}")))?;
                note(format!("pushing {r} done ({d})"));
            }
        }
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("image.id".to_string(), exported.config_digest.clone());
        metadata.insert("image.config_digest".to_string(), exported.config_digest.clone());
        Ok(BuildOutcome { image_digest: exported.manifest_digest, tags, metadata })
    }

    fn images(&self) -> Result<Vec<ImageSummary>, EngineError> {
        let mut out = Vec::new();
        for (reference, desc) in self.store.list().map_err(failed)? {
            let Ok(image) = self.store.image_from_descriptor(&desc) else { continue };
            let created = image.config.created().clone().unwrap_or_default();
            let created_unix = chrono::DateTime::parse_from_rfc3339(&created).map(|t| t.timestamp()).unwrap_or(0);
            out.push(ImageSummary {
                reference: reference.to_string(),
                id: image.id().to_string(),
                manifest_digest: image.manifest_digest.to_string(),
                size: image.size(),
                created_unix,
            });
        }
        Ok(out)
    }

    fn push(&self, reference: &str, destination: Option<&str>, insecure_registries: &[String], note: &(dyn Fn(String) + Send + Sync)) -> Result<PushOutcome, EngineError> {
        let local = oci::Reference::parse(reference).map_err(|e| EngineError::Invalid(format!("invalid reference {reference:?}: {e}")))?;
        let remote = match destination {
            Some(d) => oci::Reference::parse(d).map_err(|e| EngineError::Invalid(format!("invalid reference {d:?}: {e}")))?,
            None => local.clone(),
        };
        self.store.image(&local).map_err(|e| EngineError::NotFound(format!("{reference}: {e}")))?;
        let client = self.registry(insecure_registries)?;
        let digest = client.push(&self.store, &local, &remote, &NoteProgress(&|m| note(m))).map_err(|e| failed(format!("pushing {remote}: {e}")))?;
        Ok(PushOutcome { reference: remote.to_string(), digest: digest.to_string() })
    }

    fn prune(&self, all: bool, keep_storage: Option<u64>) -> Result<PruneOutcome, EngineError> {
        let stats = self.solver.index().prune(all, keep_storage).map_err(failed)?;
        let mut details = std::collections::BTreeMap::new();
        details.insert("layers".to_string(), stats.layers.to_string());
        Ok(PruneOutcome { records_removed: stats.records as u64, bytes_freed: stats.bytes, details })
    }

    fn disk_usage(&self) -> Result<DiskUsage, EngineError> {
        let usage = self.solver.index().usage().map_err(failed)?;
        let entries = usage
            .entries
            .iter()
            .map(|e| DiskUsageEntry {
                kind: "cache".into(),
                id: e.key.clone(),
                size: e.size,
                description: e.description.clone(),
                last_used_unix: e.last_used.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
            })
            .collect();
        let total = usage.layer_bytes + usage.mount_bytes;
        Ok(DiskUsage { entries, total, reclaimable: total, layer_bytes: usage.layer_bytes, mount_bytes: usage.mount_bytes })
    }

    fn platforms(&self) -> Vec<String> {
        vec![oci::Platform::host().to_string()]
    }
}

impl LocalEngine {
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// `\n  at Dockerfile:LINE` for the step that failed, when the error names it (as a local build says).
fn failing_location(def: &graph::Definition, e: &solver::SolveError) -> String {
    let msg = e.to_string();
    for v in def.vertices.values() {
        if !v.meta.description.is_empty() && msg.starts_with(&v.meta.description) {
            if let Some(l) = &v.meta.location {
                return format!("\n  at {l}");
            }
        }
    }
    String::new()
}

/// Registry progress as build notes (what the client renders).
struct NoteProgress<'a>(&'a (dyn Fn(String) + Send + Sync));

impl registry::Progress for NoteProgress<'_> {
    fn start(&self, _: &oci::Digest, _: u64, _: &str) {}
    fn advance(&self, _: &oci::Digest, _: u64, _: u64) {}
    fn finish(&self, digest: &oci::Digest, status: &str) {
        let d = digest.to_string();
        (self.0)(format!("{}: {status}", d.get(..19).unwrap_or(&d)));
    }
    fn message(&self, text: &str) {
        (self.0)(text.to_string());
    }
}


/// Base images from the store, pulled when missing (or always with `--pull`). The same rules as
/// the local build's resolver.
struct StoreResolver<'a> {
    engine: &'a LocalEngine,
    pull: bool,
    progress: solver::ProgressSink,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&mut self, reference: &str, platform: &str) -> Result<ResolvedImage, String> {
        let r = oci::Reference::parse(reference).map_err(|e| e.to_string())?;
        let store = &self.engine.store;
        let local = if self.pull { None } else { store.image(&r).ok() };
        let image = match local {
            Some(i) => i,
            None => {
                let client = self.engine.registry(&[]).map_err(|e| e.to_string())?;
                let progress = self.progress.clone();
                let note = move |m: String| progress(solver::Event::Note { message: m });
                client.pull(&r, Some(platform), store, &NoteProgress(&note)).map_err(|e| format!("image not found locally and pulling it failed: {e}"))?;
                store.image(&r).map_err(|e| e.to_string())?
            }
        };
        let cfg = serde_json::to_value(&image.config).map_err(|e| e.to_string())?;
        let config = cfg.get("config").cloned().map(serde_json::from_value).transpose().map_err(|e| format!("image config of {reference}: {e}"))?.unwrap_or_default();
        let history = cfg.get("history").cloned().map(serde_json::from_value).transpose().map_err(|e| format!("image history of {reference}: {e}"))?.unwrap_or_default();
        let s = |k: &str| cfg.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Ok(ResolvedImage {
            reference: r.to_string(),
            manifest_digest: image.manifest_digest.to_string(),
            config,
            history,
            architecture: s("architecture"),
            os: s("os"),
            variant: cfg.get("variant").and_then(|v| v.as_str()).map(str::to_string),
        })
    }
}
