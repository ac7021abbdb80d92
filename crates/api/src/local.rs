//! The engine of this machine: the one parse -> lower -> solve -> export path of a build, which
//! a local `builder build` ([`LocalEngine::run_build`]) and `builder serve` ([`Engine::build`])
//! both run, with one [`solver::Solver`] shared by every build the server runs (so
//! identical steps of concurrent builds run once), the local image store and the cache index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dockerfile::lower::{ImageResolver, LowerOptions, ResolveError, ResolvedImage};
use snapshot::diff::Compression;

use crate::context::select::Selection;
use crate::engine::{BuildJob, BuildOptions, BuildOutcome, DiskUsage, DiskUsageEntry, Engine, EngineError, ImageSummary, PruneOutcome, PushOutcome};

/// How old an unreferenced blob must be before `prune` deletes it.
pub const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Builds with the state under one `--root`.
pub struct LocalEngine {
    root: PathBuf,
    store: oci::Store,
    solver: solver::Solver,
    insecure_registries: Vec<String>,
    /// The build cache's size cap (`builder serve --cache-max-size`), kept after every build.
    cache_max_size: Option<u64>,
    /// `builder serve --cache-from/--cache-to`: used by every build that names none.
    cache_defaults: (Vec<remote_cache::CacheFrom>, Vec<remote_cache::CacheTo>),
    /// A thread is already bringing the cache under its cap.
    evicting: Arc<std::sync::atomic::AtomicBool>,
}

fn failed(e: impl std::fmt::Display) -> EngineError {
    EngineError::Failed(e.to_string())
}

impl LocalEngine {
    pub fn open(root: &Path, insecure_registries: Vec<String>) -> Result<LocalEngine, EngineError> {
        std::fs::create_dir_all(root).map_err(|e| failed(format!("create state directory {}: {e}", root.display())))?;
        let store = oci::Store::open(root).map_err(failed)?;
        let client = registry::Client::new(registry::ClientOptions { insecure_registries: insecure_registries.clone(), ..Default::default() }).map_err(failed)?;
        let images = Arc::new(solver::ops::image::StoreImages::new(store.clone(), root).with_registry(Arc::new(client)));
        let solver = solver::Solver::new(root, images).map_err(failed)?;
        Ok(LocalEngine { root: root.to_path_buf(), store, solver, insecure_registries, cache_max_size: None, cache_defaults: Default::default(), evicting: Arc::default() })
    }

    fn registry(&self, extra_insecure: &[String]) -> Result<registry::Client, EngineError> {
        let mut insecure = self.insecure_registries.clone();
        insecure.extend(extra_insecure.iter().cloned());
        registry::Client::new(registry::ClientOptions { insecure_registries: insecure, ..Default::default() }).map_err(failed)
    }
}

/// Where the result of a build goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Into the store (tagged with `names`), and pushed to their registries with `push`.
    Image { names: Vec<String>, push: bool },
    /// An OCI or docker archive file (`-`: stdout).
    Archive { format: oci::archive::Format, dest: String },
    /// The final filesystem as a directory.
    Local { dest: PathBuf },
    /// The final filesystem as a tar file (`-`: stdout).
    Tar { dest: String },
}

impl Output {
    /// Whether the result is a file on the machine that runs the engine.
    pub fn is_file(&self) -> bool {
        !matches!(self, Output::Image { .. })
    }
}

/// Parses one `--output` value (`type=image|oci|docker|local|tar[,dest=…][,name=…][,push=true]`,
/// or a bare path meaning `type=local,dest=PATH`, `-` meaning a tar on stdout).
pub fn parse_output(spec: &str, tags: &[String], push: bool) -> Result<Output, EngineError> {
    let invalid = |m: String| EngineError::Invalid(m);
    if !spec.contains('=') {
        return Ok(if spec == "-" { Output::Tar { dest: "-".into() } } else { Output::Local { dest: PathBuf::from(spec) } });
    }
    let mut kv: HashMap<String, String> = HashMap::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| invalid(format!("invalid --output {spec:?}: {part:?} is not key=value")))?;
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    let kind = kv.get("type").map(String::as_str).unwrap_or("local");
    let dest = kv.get("dest").cloned();
    let need = |what: &str| invalid(format!("--output type={kind} needs dest={what}"));
    Ok(match kind {
        "image" | "registry" => {
            let mut names: Vec<String> = kv.get("name").map(|n| n.split(',').map(str::to_string).collect()).unwrap_or_default();
            if names.is_empty() {
                names = tags.to_vec();
            }
            Output::Image { names, push: push || kind == "registry" || kv.get("push").is_some_and(|v| v == "true") }
        }
        "oci" => Output::Archive { format: oci::archive::Format::Oci, dest: dest.ok_or_else(|| need("FILE"))? },
        "docker" => Output::Archive { format: oci::archive::Format::Docker, dest: dest.ok_or_else(|| need("FILE"))? },
        "local" => Output::Local { dest: PathBuf::from(dest.ok_or_else(|| need("DIR"))?) },
        "tar" => Output::Tar { dest: dest.unwrap_or_else(|| "-".into()) },
        other => return Err(invalid(format!("unknown output type {other:?}: use image, oci, docker, local or tar"))),
    })
}

/// The outputs of a build: the `--output` values, or the image named by the tags when there are
/// none.
pub fn parse_outputs(o: &BuildOptions) -> Result<Vec<Output>, EngineError> {
    let push = o.options.push;
    let mut outputs = o.outputs.iter().map(|s| parse_output(s, &o.tags, push)).collect::<Result<Vec<_>, _>>()?;
    if outputs.is_empty() {
        outputs.push(Output::Image { names: o.tags.clone(), push });
    }
    Ok(outputs)
}

impl Engine for LocalEngine {
    /// A build for a remote client. The server has pointed file outputs into a private
    /// directory of its own ([`crate::output::server_spec`]) and streams them back afterwards.
    fn build(&self, job: BuildJob) -> Result<BuildOutcome, EngineError> {
        self.run_build(job)
    }

    fn context_selection(&self, options: &BuildOptions, progress: solver::ProgressSink) -> Result<Selection, EngineError> {
        // `.dockerignore` does not change which paths a source names, only what is read there
        // (the client applies it).
        let lowered = self.lower(options, Vec::new(), &progress)?;
        Ok(crate::context::select::from_definition(&lowered.definition, lowered.target))
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

    /// Prunes the build cache, then removes image-store blobs that no tag, container or
    /// remaining cache entry references (blobs younger than [`GC_GRACE`] stay: a concurrent
    /// build or pull may not have tagged them yet).
    fn prune(&self, all: bool, keep_storage: Option<u64>) -> Result<PruneOutcome, EngineError> {
        let stats = self.solver.index().prune(all, keep_storage).map_err(failed)?;
        let mut roots: Vec<oci::Digest> = Vec::new();
        for digest in self.solver.index().referenced_blobs().map_err(failed)? {
            roots.extend(digest.parse::<oci::Digest>().ok());
        }
        let containers = runtime::containers::ContainerStore::open(&self.root).and_then(|c| c.list()).map_err(failed)?;
        for container in containers {
            // A container runs from unpacked snapshots; keep its image's config so it still names
            // what it was made from, and its manifest when a tag still reaches it.
            roots.extend(container.image_id.parse::<oci::Digest>().ok());
        }
        let gc = self.store.gc_older_than(&roots, GC_GRACE).map_err(failed)?;
        let mut details = std::collections::BTreeMap::new();
        details.insert("layers".to_string(), stats.layers.to_string());
        details.insert("blobs".to_string(), gc.removed_blobs.to_string());
        Ok(PruneOutcome { records_removed: stats.records as u64, bytes_freed: stats.bytes + gc.freed_bytes, details })
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

    /// Runs one build to every output it names: the one build pipeline of this project, used by
    /// a local `builder build` and (through [`Engine::build`]) by `builder serve`.
    ///
    /// `metadata["image.id"]` of the outcome is the image ID (config digest) when an image or
    /// an archive was written.
    pub fn run_build(&self, job: BuildJob) -> Result<BuildOutcome, EngineError> {
        // Held until the outputs are written: a prune or the size cap never takes a layer from
        // under a build's export.
        let held = self.solver.index().lock_shared().map_err(failed)?;
        let result = self.build_holding_cache(job);
        drop(held);
        self.keep_cache_under_cap();
        result
    }

    /// Caps the build cache at `max` bytes (least recently used entries go first), checked after
    /// every build; `None` for no cap.
    pub fn set_cache_max_size(&mut self, max: Option<u64>) {
        self.cache_max_size = max;
    }

    /// The shared cache a farm member imports from and exports to when a build names none
    /// (each list applies on its own: a build with `--cache-from` of its own still exports to
    /// the default `--cache-to`).
    pub fn set_cache_defaults(&mut self, from: Vec<remote_cache::CacheFrom>, to: Vec<remote_cache::CacheTo>) {
        self.cache_defaults = (from, to);
    }

    /// Evicts least recently used cache entries beyond the cap, on a thread of its own, once no
    /// build holds the cache (retrying for a few minutes while builds run).
    fn keep_cache_under_cap(&self) {
        let Some(max) = self.cache_max_size else { return };
        if self.evicting.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (index, evicting) = (self.solver.index().clone(), self.evicting.clone());
        let started = std::thread::Builder::new().name("cache-cap".into()).spawn(move || {
            for _ in 0..60 {
                match index.enforce_max_size(max) {
                    Ok(Some(st)) => {
                        if st.records > 0 {
                            tracing::info!(records = st.records, layers = st.layers, bytes = st.bytes, max, "build cache over its cap: least recently used entries removed");
                        }
                        break;
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_secs(5)),
                    Err(e) => {
                        tracing::warn!("keeping the build cache under {max} bytes: {e}");
                        break;
                    }
                }
            }
            evicting.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        if started.is_err() {
            self.evicting.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn build_holding_cache(&self, mut job: BuildJob) -> Result<BuildOutcome, EngineError> {
        if job.options.options.cache_from.is_empty() {
            job.options.options.cache_from = self.cache_defaults.0.clone();
        }
        if job.options.options.cache_to.is_empty() {
            job.options.options.cache_to = self.cache_defaults.1.clone();
        }
        let o = &job.options;
        let invalid = |e: &dyn std::fmt::Display| EngineError::Invalid(e.to_string());
        let outputs = parse_outputs(o)?;
        let compression = o.options.compression;
        let ignore = dockerignore::DockerIgnore::load(&job.context_dir, &o.dockerfile_name).map_err(|e| invalid(&e))?;
        let source_date_epoch = source_date_epoch(o)?;
        let lowered = self.lower(o, ignore.patterns(), &job.progress)?;
        let mut locals = HashMap::new();
        locals.insert("context".to_string(), job.context_dir.clone());
        // Why steps missed the cache, for the result metadata (`cache.misses`).
        let misses: Arc<Misses> = Arc::default();
        let solve_progress: solver::ProgressSink = {
            let (inner, misses) = (job.progress.clone(), misses.clone());
            Arc::new(move |e: solver::Event| {
                if let solver::Event::CacheMiss { vertex, reason, earlier } = &e
                    && let Ok(mut m) = misses.lock() {
                        m.push((*vertex, reason.clone(), *earlier));
                    }
                inner(e)
            })
        };
        // The imported caches (`--cache-from`), read once (a bad source is a warning): hits
        // download nothing until their files are needed.
        let cache_client = Arc::new(self.registry(&[])?);
        let early_note = |m: String| (job.progress)(solver::Event::Note { message: m });
        let mut cache_import = crate::shared_cache::load(&o.options.cache_from, cache_client.clone(), &self.store, &early_note);
        let grants = solver::Grants { ssh: o.ssh.clone(), allow_insecure: o.allow.iter().any(|a| a == "security.insecure") };
        let (solved, cache_from) = loop {
            // Always there: a local cache entry made from an earlier build's imported hit may
            // name layers this machine never fetched (the store recorded where they are).
            let imported = Arc::new(solver::remote::ImportedCache::new(cache_import.clone(), self.store.clone(), cache_client.clone()));
            let cache_from: Option<Arc<dyn solver::remote::CacheSource>> = Some(imported.clone());
            let req = solver::SolveRequest {
                definition: &lowered.definition,
                targets: vec![lowered.target],
                locals: locals.clone(),
                secrets: o.secrets.clone(),
                max_parallelism: if o.max_parallelism > 0 { o.max_parallelism } else { default_parallelism() },
                progress: solve_progress.clone(),
                cancel: job.cancel.clone(),
                cache_from: cache_from.clone(),
            };
            let e = match self.solver.solve_with(&req, &grants) {
                Ok(solved) => break (solved, cache_from),
                Err(solver::SolveError::Cancelled) => return Err(EngineError::Cancelled),
                Err(e) => e,
            };
            // A layer of an imported cache that could not be fetched, or did not match its
            // digest: its sources are left out (a warning each), and the build runs again
            // without them. A bad cache slows a build down; it never fails it or changes it.
            let refused = imported.take_refused();
            let Some(import) = cache_import.as_deref().filter(|_| !refused.is_empty()) else {
                return Err(failed(format!("{e}{}", failing_location(&lowered.definition, &e))));
            };
            let mut drop: Vec<String> = Vec::new();
            for (digest, reason) in &refused {
                for name in import.sources_of(digest) {
                    if !drop.contains(&name) {
                        let reason = reason.strip_prefix(&format!("{name}: ")).unwrap_or(reason);
                        early_note(format!("warning: {}", remote_cache::ImportWarning { source: name.clone(), reason: format!("layer {digest}: {reason}") }));
                        drop.push(name);
                    }
                }
            }
            if drop.is_empty() {
                return Err(failed(format!("{e}{}", failing_location(&lowered.definition, &e))));
            }
            cache_import = Some(Arc::new(import.without(&drop)));
            // The failed solve stopped its own steps through the build's cancel flag.
            job.cancel.reset();
        };
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
        let export = |comp: Compression| {
            let opts = solver::export::ExportOptions { compression: comp, source_date_epoch };
            solver::export::export_image_with_times(self.solver.index(), &self.store, &snapshot, &lowered.image, &new_layers, &made_at, &opts, &note).map_err(failed)
        };
        let mut outcome = BuildOutcome::default();
        if let Some(m) = cache_misses(&lowered.definition, &misses) {
            outcome.metadata.insert("cache.misses".into(), m);
        }
        outcome.metadata.insert("cache.steps".into(), cache_steps(&lowered.definition, &solved));
        if o.options.cache_to.iter().any(|c| c.target == remote_cache::CacheTarget::Inline) && !outputs.iter().any(|o| matches!(o, Output::Image { .. })) {
            return Err(EngineError::Invalid("--cache-to type=inline needs an image output (it travels in the image's manifest)".into()));
        }
        // The `--cache-to` exports run while the outputs are written and pushed: blobs only the
        // cache has are uploaded during the image push, the image's own blobs are mounted from
        // its repository once it is pushed (nothing is uploaded twice), the manifest goes last.
        let exports: Vec<&remote_cache::CacheTo> = o.options.cache_to.iter().filter(|c| c.target != remote_cache::CacheTarget::Inline).collect();
        let mut image_repos: Vec<oci::Reference> = Vec::new();
        for out in &outputs {
            if let Output::Image { names, push: true } = out {
                for n in names {
                    image_repos.push(oci::Reference::parse(n).map_err(|e| EngineError::Invalid(format!("invalid tag {n:?}: {e}")))?);
                }
            }
        }
        let gate = crate::shared_cache::PushGate::new(outputs.iter().filter(|o| matches!(o, Output::Image { push: true, .. })).count());
        let export_cache = || -> Result<(), EngineError> {
            let Some(pushed_layers) = gate.wait_layers() else { return Ok(()) };
            for to in &exports {
                let opts = solver::export::ExportOptions { compression: crate::shared_cache::compression(to.compression), source_date_epoch };
                let entries = solver::export::cache_entries(self.solver.index(), &self.store, &lowered.definition, &solved, lowered.target, (to.mode, &opts), &note).map_err(failed)?;
                let ctx = crate::shared_cache::ExportContext { image_repos: &image_repos, pushed_layers: &pushed_layers, gate: &gate };
                crate::shared_cache::export(to, entries, &cache_client, &self.store, cache_import.as_deref(), &ctx, &note)?;
            }
            Ok(())
        };
        let mut write_outputs = || -> Result<(), EngineError> {
            for out in &outputs {
                match out {
                    Output::Image { names, push } => {
                        if *push && names.is_empty() {
                            return Err(EngineError::Invalid("--push needs a name: give -t NAME".into()));
                        }
                        let image_compression = compression.unwrap_or(if *push { Compression::Gzip } else { Compression::Uncompressed });
                        let mut exported = export(image_compression)?;
                        // Layers of imported cache results stay where they are: the store recorded
                        // their registry, and `run`, `save` or a push fetch (or mount) them when
                        // they need the bytes. Those from a `type=local` cache are copied now.
                        let unrecorded: Vec<solver::cache::BlobDesc> = exported
                            .layers
                            .iter()
                            .filter(|l| l.digest.parse::<oci::Digest>().is_ok_and(|d| !self.store.has_blob(&d) && self.store.blob_source(&d).is_none()))
                            .cloned()
                            .collect();
                        let fetched = solver::remote::fetch_missing_blobs(&self.store, cache_from.as_deref(), &unrecorded).map_err(failed)?;
                        if fetched > 0 {
                            note(format!("fetching {fetched} cached layers done"));
                        }
                        note(format!("writing image {} done", exported.config_digest));
                        let manifest: oci::Digest = exported.manifest_digest.parse().map_err(failed)?;
                        let mut desc = self.store.manifest_descriptor(&manifest).map_err(failed)?;
                        if o.options.cache_to.iter().any(|c| c.target == remote_cache::CacheTarget::Inline) {
                            // The image's own layers carry the cache: entries in the image's compression.
                            let opts = solver::export::ExportOptions { compression: image_compression, source_date_epoch };
                            let entries = solver::export::cache_entries(self.solver.index(), &self.store, &lowered.definition, &solved, lowered.target, (remote_cache::Mode::Min, &opts), &note).map_err(failed)?;
                            note(format!("writing inline cache: {} entries", entries.len()));
                            desc = crate::shared_cache::inline(&self.store, &manifest, entries)?;
                            exported.manifest_digest = desc.digest().to_string();
                        }
                        for n in names {
                            let r = oci::Reference::parse(n).map_err(|e| EngineError::Invalid(format!("invalid tag {n:?}: {e}")))?;
                            self.store.tag(&r, desc.clone()).map_err(failed)?;
                            note(format!("naming to {r} done"));
                            outcome.tags.push(r.to_string());
                        }
                        if *push {
                            // The cache export may now upload what the image does not carry.
                            gate.layers(&exported.layers);
                            for n in names {
                                let r = oci::Reference::parse(n).map_err(failed)?;
                                // Lazy layers are mounted from the cache's repository when it is in
                                // the same registry, else fetched first (see `registry::Client::push`).
                                let mounts = crate::shared_cache::mounts_for(cache_import.as_deref(), &self.store, &exported.layers, &r);
                                // Each blob the push puts there may be mounted into the cache at once.
                                let progress = GateProgress { inner: NoteProgress(&note), gate: &gate, image: &r };
                                let d = cache_client.push_with_mounts(&self.store, &r, &r, &mounts, &progress).map_err(|e| failed(format!("pushing {r}: {e}")))?;
                                note(format!("pushing {r} done ({d})"));
                                }
                        }
                        outcome.record_image(&exported);
                    }
                    Output::Archive { format, dest } => {
                        let exported = export(compression.unwrap_or(Compression::Gzip))?;
                        // An archive carries every layer's bytes.
                        solver::remote::fetch_missing_blobs(&self.store, cache_from.as_deref(), &exported.layers).map_err(failed)?;
                        let manifest: oci::Digest = exported.manifest_digest.parse().map_err(failed)?;
                        let desc = self.store.manifest_descriptor(&manifest).map_err(failed)?;
                        let image = self.store.image_from_descriptor(&desc).map_err(failed)?;
                        let name = o.tags.first().map(|t| oci::Reference::parse(t).map_err(|e| EngineError::Invalid(format!("invalid tag {t:?}: {e}")))).transpose()?;
                        let images = [(name, image)];
                        if dest == "-" {
                            oci::archive::save(&self.store, &images, *format, std::io::stdout().lock()).map_err(|e| failed(format!("writing the archive to stdout: {e}")))?;
                        } else {
                            write_file(Path::new(dest), |f| oci::archive::save(&self.store, &images, *format, f).map_err(|e| e.to_string()))?;
                        }
                        note(format!("exporting to {dest} done"));
                        outcome.record_image(&exported);
                    }
                    Output::Local { dest } => {
                        self.solver.materialize(&snapshot, cache_from.as_deref()).map_err(failed)?;
                        solver::export::export_local(self.solver.index(), &snapshot, dest).map_err(|e| failed(format!("copying files to {}: {e}", dest.display())))?;
                        note(format!("copying files to {} done", dest.display()));
                    }
                    Output::Tar { dest } => {
                        self.solver.materialize(&snapshot, cache_from.as_deref()).map_err(failed)?;
                        if dest == "-" {
                            solver::export::export_tar(self.solver.index(), &snapshot, std::io::stdout(), source_date_epoch).map_err(|e| failed(format!("writing the tar to stdout: {e}")))?;
                        } else {
                            // Straight to `dest`, which may be a device or a pipe (`/dev/stdout`).
                            let f = std::fs::File::create(dest).map_err(|e| failed(format!("creating {dest}: {e}")))?;
                            solver::export::export_tar(self.solver.index(), &snapshot, std::io::BufWriter::new(f), source_date_epoch).map_err(|e| failed(format!("writing {dest}: {e}")))?;
                        }
                        note(format!("sending tarball to {dest} done"));
                    }
                }
            }
            Ok(())
        };
        let (written, exported) = std::thread::scope(|s| {
            let exporter = (!exports.is_empty()).then(|| s.spawn(export_cache));
            let written = write_outputs();
            gate.finish(written.is_ok());
            let exported = exporter.map(|t| t.join().unwrap_or_else(|_| Err(failed("the cache export thread panicked")))).unwrap_or(Ok(()));
            (written, exported)
        });
        written?;
        exported?;
        // What this build moved through its registry client (cache import, export and push),
        // so a fully cached `--push` can be seen to move only manifests and configs.
        let (down, up) = cache_client.transferred();
        outcome.metadata.insert("registry.bytes_downloaded".into(), down.to_string());
        outcome.metadata.insert("registry.bytes_uploaded".into(), up.to_string());
        Ok(outcome)
    }
}

/// The cache misses of a build as they happened: (step, reason, earlier step).
type Misses = std::sync::Mutex<Vec<(graph::VertexDigest, String, Option<graph::VertexDigest>)>>;

/// The cache misses of a build as JSON: `[{"step": "[2/3] COPY app.py /", "reason": "app.py:
/// content changed"}]`, an earlier step named by its description.
fn cache_misses(def: &graph::Definition, misses: &Misses) -> Option<String> {
    let misses = misses.lock().ok()?;
    if misses.is_empty() {
        return None;
    }
    let describe = |d: &graph::VertexDigest| def.vertices.get(d).map(|v| v.meta.description.clone()).unwrap_or_default();
    let list: Vec<serde_json::Value> = misses
        .iter()
        .map(|(v, reason, earlier)| {
            let reason = match earlier {
                Some(e) => format!("{reason} ({})", describe(e)),
                None => reason.clone(),
            };
            serde_json::json!({ "step": describe(v), "reason": reason })
        })
        .collect();
    serde_json::to_string(&list).ok()
}

/// Every shown step's cache key as JSON, `[{"step": "[2/3] COPY app.py /", "key": "…"}]` in
/// step order: the same Dockerfile, context content, args and base image give the same keys on
/// any machine.
fn cache_steps(def: &graph::Definition, solved: &HashMap<graph::VertexDigest, solver::Solved>) -> String {
    let mut steps: Vec<(&str, String)> = solved
        .iter()
        .filter_map(|(d, s)| def.vertices.get(d).filter(|v| !v.meta.description.is_empty()).map(|v| (v.meta.description.as_str(), s.key.hex())))
        .collect();
    steps.sort();
    let list: Vec<serde_json::Value> = steps.into_iter().map(|(step, key)| serde_json::json!({ "step": step, "key": key })).collect();
    serde_json::to_string(&list).unwrap_or_default()
}

/// `SOURCE_DATE_EPOCH` from the build args, checked.
fn source_date_epoch(o: &BuildOptions) -> Result<Option<i64>, EngineError> {
    o.build_args
        .get("SOURCE_DATE_EPOCH")
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| EngineError::Invalid(format!("SOURCE_DATE_EPOCH {s:?} is not a number of seconds"))))
        .transpose()
}

impl LocalEngine {
    /// Parses and lowers the Dockerfile of `o` for its target, resolving (and when needed
    /// pulling) base images: the build graph a build runs and its context selection comes from.
    fn lower(&self, o: &BuildOptions, context_excludes: Vec<String>, progress: &solver::ProgressSink) -> Result<dockerfile::lower::LoweredBuild, EngineError> {
        let invalid = |e: &dyn std::fmt::Display| EngineError::Invalid(e.to_string());
        let df = dockerfile::Dockerfile::parse(&o.dockerfile, &o.dockerfile_name).map_err(|e| invalid(&e))?;
        let mut build_args = o.build_args.clone();
        if let Some(e) = source_date_epoch(o)? {
            build_args.entry("SOURCE_DATE_EPOCH".into()).or_insert_with(|| e.to_string());
        }
        let platform = o.platform.clone().unwrap_or_else(dockerfile::lower::build_platform);
        let mut resolver = StoreResolver { engine: self, pull: o.pull, progress: progress.clone() };
        let opts = LowerOptions {
            build_args,
            target: o.target.clone(),
            platform,
            no_cache: o.no_cache,
            labels: o.labels.clone(),
            context_excludes,
            network_none: o.options.network_none,
            extra_hosts: o.options.add_hosts.clone(),
        };
        dockerfile::lower::lower(&df, &opts, &mut resolver).map_err(|e| invalid(&e))
    }
}

impl BuildOutcome {
    fn record_image(&mut self, exported: &solver::export::ExportedImage) {
        self.image_digest = exported.manifest_digest.clone();
        self.metadata.insert("image.id".to_string(), exported.config_digest.clone());
        self.metadata.insert("image.config_digest".to_string(), exported.config_digest.clone());
    }
}

/// Writes `dest` through a temporary file beside it, renamed into place when complete: a
/// failed build leaves no half-written file.
fn write_file(dest: &Path, write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), String>) -> Result<(), EngineError> {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let f = std::fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        f.sync_all().map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dest).map_err(|e| format!("writing {}: {e}", dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(failed)
}

/// Twice the CPUs, at least 4: most steps wait on I/O, the network or `sleep`, and BuildKit
/// puts no limit at all.
pub fn default_parallelism() -> usize {
    (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2).max(4)
}

/// `\n  at Dockerfile:LINE` of the step that failed, when it has one.
fn failing_location(def: &graph::Definition, e: &solver::SolveError) -> String {
    match e.vertex().and_then(|d| def.vertices.get(&d)).and_then(|v| v.meta.location.as_ref()) {
        Some(l) => format!("\n  at {l}"),
        None => String::new(),
    }
}

/// Registry progress as build notes (what the client renders).
struct NoteProgress<'a>(&'a (dyn Fn(String) + Send + Sync));

/// A push's progress that also tells the cache export which blobs are in the registry.
struct GateProgress<'a> {
    inner: NoteProgress<'a>,
    gate: &'a crate::shared_cache::PushGate,
    image: &'a oci::Reference,
}

impl registry::Progress for GateProgress<'_> {
    fn start(&self, digest: &oci::Digest, size: u64, action: &str) {
        self.inner.start(digest, size, action);
    }
    fn advance(&self, digest: &oci::Digest, done: u64, total: u64) {
        self.inner.advance(digest, done, total);
    }
    fn finish(&self, digest: &oci::Digest, status: &str) {
        self.gate.blob_pushed(digest, self.image);
        self.inner.finish(digest, status);
    }
    fn message(&self, text: &str) {
        self.inner.message(text);
    }
}

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
    fn resolve(&mut self, reference: &str, platform: &str) -> Result<ResolvedImage, ResolveError> {
        let r = oci::Reference::parse(reference).map_err(|e| ResolveError::BadReference(e.to_string()))?;
        let store_failed = |e: &dyn std::fmt::Display| ResolveError::Store(e.to_string());
        let bad = |what: &'static str| move |e: serde_json::Error| ResolveError::BadConfig { reference: reference.to_string(), what, reason: e.to_string() };
        let store = &self.engine.store;
        let local = if self.pull { None } else { store.image(&r).ok() };
        let image = match local {
            Some(i) => i,
            None => {
                let client = self.engine.registry(&[]).map_err(|e| store_failed(&e))?;
                let progress = self.progress.clone();
                let note = move |m: String| progress(solver::Event::Note { message: m });
                client.pull(&r, Some(platform), store, &NoteProgress(&note)).map_err(|e| ResolveError::Pull(e.to_string()))?;
                store.image(&r).map_err(|e| store_failed(&e))?
            }
        };
        // The config as stored: Docker fields such as OnBuild are not in the OCI types.
        let raw = store.read_blob(&image.config_digest).map_err(|e| store_failed(&e))?;
        let cfg: serde_json::Value = serde_json::from_slice(&raw).map_err(bad("config"))?;
        let config = cfg.get("config").cloned().map(serde_json::from_value).transpose().map_err(bad("config"))?.unwrap_or_default();
        let history = cfg.get("history").cloned().map(serde_json::from_value).transpose().map_err(bad("history"))?.unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Vec<String> {
        vec!["app:1".to_string()]
    }

    #[test]
    fn output_specs_parse_as_builder_build_documents_them() {
        assert_eq!(parse_output("out", &tags(), false).unwrap(), Output::Local { dest: PathBuf::from("out") });
        assert_eq!(parse_output("-", &tags(), false).unwrap(), Output::Tar { dest: "-".into() });
        assert_eq!(parse_output("type=tar", &tags(), false).unwrap(), Output::Tar { dest: "-".into() });
        assert_eq!(parse_output("type=image", &tags(), true).unwrap(), Output::Image { names: tags(), push: true });
        assert_eq!(parse_output("type=registry,name=r/a:2", &tags(), false).unwrap(), Output::Image { names: vec!["r/a:2".into()], push: true });
        assert_eq!(parse_output("type=oci,dest=i.tar", &tags(), false).unwrap(), Output::Archive { format: oci::archive::Format::Oci, dest: "i.tar".into() });
        assert!(matches!(parse_output("type=docker", &tags(), false), Err(EngineError::Invalid(m)) if m.contains("needs dest=FILE")));
        assert!(matches!(parse_output("type=zip,dest=x", &tags(), false), Err(EngineError::Invalid(m)) if m.contains("unknown output type \"zip\"")));
        assert!(matches!(parse_output("type=local,dest", &tags(), false), Err(EngineError::Invalid(m)) if m.contains("is not key=value")));
    }

    #[test]
    fn no_output_means_the_tagged_image_and_push_comes_from_the_options() {
        let mut o = BuildOptions { tags: tags(), ..Default::default() };
        o.options.push = true;
        assert_eq!(parse_outputs(&o).unwrap(), [Output::Image { names: tags(), push: true }]);
    }

    #[test]
    fn the_context_selection_follows_build_args() {
        let root = tempfile::tempdir().expect("tempdir");
        let engine = LocalEngine::open(root.path(), Vec::new()).expect("engine");
        let mut o = BuildOptions { dockerfile: b"FROM scratch\nARG DIR=src\nCOPY ${DIR}/ /app/\n".to_vec(), dockerfile_name: "Dockerfile".into(), ..Default::default() };
        let sel = Engine::context_selection(&engine, &o, Arc::new(|_| {})).expect("selection");
        assert_eq!(sel, Selection::Paths(vec!["src".into()]));
        o.build_args.insert("DIR".into(), ".".into());
        assert_eq!(Engine::context_selection(&engine, &o, Arc::new(|_| {})).expect("selection"), Selection::Everything);
        o.dockerfile = b"FROM scratch\nCOPY x /\nRUN --bad\n".to_vec();
        assert!(matches!(Engine::context_selection(&engine, &o, Arc::new(|_| {})), Err(EngineError::Invalid(_))));
    }
}
