//! The shared build cache around one build: `--cache-from` sources read before the solve, the
//! `--cache-to` exports written after it (see the `remote-cache` crate for the format).

use std::collections::HashSet;
use std::sync::Arc;

use remote_cache::{CacheEntry, CacheExport, CacheImport, CacheTarget, CacheTo};
use snapshot::diff::Compression;

use crate::engine::EngineError;

fn failed(e: impl std::fmt::Display) -> EngineError {
    EngineError::Failed(e.to_string())
}

/// Reads every `--cache-from` source once. A source that cannot be used is a warning (through
/// `note`), never an error.
pub(crate) fn load(
    sources: &[remote_cache::CacheFrom],
    client: Arc<registry::Client>,
    store: &oci::Store,
    note: &dyn Fn(String),
) -> Option<Arc<CacheImport>> {
    if sources.is_empty() {
        return None;
    }
    let import = CacheImport::load(sources, client, store);
    for w in import.warnings() {
        note(format!("warning: {w}"));
    }
    note(format!("importing cache: {} entries from {} source(s)", import.len(), sources.len() - import.warnings().len()));
    Some(Arc::new(import))
}

/// The compression `compression=` names, as the layer exporter spells it.
pub(crate) fn compression(c: remote_cache::Compression) -> Compression {
    Compression::parse(c.as_str()).unwrap_or(Compression::Gzip)
}

/// Orders a build's cache export around its image pushes: the export learns the layers the
/// pushes carry once the images are written, and whether they were pushed once they are.
pub(crate) struct PushGate {
    state: std::sync::Mutex<GateState>,
    cv: std::sync::Condvar,
}

struct GateState {
    /// Image outputs with `--push` that have not said their layers yet.
    expected: usize,
    layers: HashSet<oci::Digest>,
    /// Blobs a push has put in a registry, and the (registry, repository) they are in.
    pushed: std::collections::HashMap<oci::Digest, (String, String)>,
    /// Set when every output is written: whether that went well.
    finished: Option<bool>,
}

impl PushGate {
    /// A gate for `pushes` image outputs with `--push` (none: it is open at once).
    pub(crate) fn new(pushes: usize) -> PushGate {
        PushGate { state: std::sync::Mutex::new(GateState { expected: pushes, layers: HashSet::new(), pushed: Default::default(), finished: None }), cv: std::sync::Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An image about to be pushed has these layers.
    pub(crate) fn layers(&self, layers: &[solver::cache::BlobDesc]) {
        let mut st = self.lock();
        st.layers.extend(layers.iter().filter_map(|l| l.digest.parse::<oci::Digest>().ok()));
        st.expected = st.expected.saturating_sub(1);
        self.cv.notify_all();
    }

    /// Every output is written (`ok`: and pushed).
    pub(crate) fn finish(&self, ok: bool) {
        let mut st = self.lock();
        st.finished = Some(ok);
        self.cv.notify_all();
    }

    /// The layers the pushes carry, once every pushed image said them; `None` if writing the
    /// outputs failed first (the build fails with that error; nothing is exported).
    pub(crate) fn wait_layers(&self) -> Option<HashSet<oci::Digest>> {
        let mut st = self.lock();
        while st.expected > 0 && st.finished.is_none() {
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.finished == Some(false) {
            return None;
        }
        Some(st.layers.clone())
    }

    /// An image push has put `digest` into `image`'s repository (pushed, mounted, or there
    /// already).
    pub(crate) fn blob_pushed(&self, digest: &oci::Digest, image: &oci::Reference) {
        let mut st = self.lock();
        st.pushed.entry(digest.clone()).or_insert_with(|| (image.registry().to_string(), image.repository().to_string()));
        self.cv.notify_all();
    }

    /// The repository of `registry` a push has put `digest` into, if any yet.
    pub(crate) fn repository_of(&self, digest: &oci::Digest, registry: &str) -> Option<String> {
        self.lock().pushed.get(digest).filter(|(r, _)| r == registry).map(|(_, repo)| repo.clone())
    }

    /// Blocks until some of `want` are in the registry, and returns those (every one of them
    /// once every output is written); `None` if writing the outputs failed.
    pub(crate) fn wait_ready(&self, want: &HashSet<oci::Digest>) -> Option<HashSet<oci::Digest>> {
        let mut st = self.lock();
        loop {
            match st.finished {
                Some(false) => return None,
                Some(true) => return Some(want.clone()),
                None => {}
            }
            let ready: HashSet<oci::Digest> = want.iter().filter(|d| st.pushed.contains_key(*d)).cloned().collect();
            if !ready.is_empty() {
                return Some(ready);
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// What an export needs to know of the build's image pushes.
pub(crate) struct ExportContext<'a> {
    /// The repositories the image is pushed to.
    pub image_repos: &'a [oci::Reference],
    /// The layers of the pushed images.
    pub pushed_layers: &'a HashSet<oci::Digest>,
    pub gate: &'a PushGate,
}

/// Writes one `--cache-to` export (registry or local; inline goes into the image manifest),
/// while the image is pushed: blobs the image's push carries to the same registry wait for it
/// and are then mounted from the image's repository (never uploaded twice); the others are
/// uploaded at once. A failure fails the build, unless `ignore-error=true` made it a warning.
pub(crate) fn export(
    to: &CacheTo,
    entries: Vec<CacheEntry>,
    client: &registry::Client,
    store: &oci::Store,
    import: Option<&CacheImport>,
    ctx: &ExportContext<'_>,
    note: &dyn Fn(String),
) -> Result<(), EngineError> {
    let export = CacheExport::new(entries);
    let result = match &to.target {
        CacheTarget::Registry { reference } => {
            let same_registry: Vec<String> =
                ctx.image_repos.iter().filter(|r| r.registry() == reference.registry()).map(|r| r.repository().to_string()).collect();
            let mount_from = |digest: &oci::Digest| -> Vec<String> {
                // The repository the push put it in first: a mount from it cannot miss.
                let mut from: Vec<String> = ctx.gate.repository_of(digest, reference.registry()).into_iter().collect();
                for r in &same_registry {
                    if !from.contains(r) {
                        from.push(r.clone());
                    }
                }
                // A blob imported lazily lives in the cache it came from.
                if let Some(import) = import {
                    for loc in import.locations_of(digest) {
                        if let remote_cache::BlobLocation::Registry(r) = loc
                            && r.registry() == reference.registry() && !from.iter().any(|f| f == r.repository()) {
                                from.push(r.repository().to_string());
                            }
                    }
                }
                from
            };
            let deferred: HashSet<oci::Digest> = if same_registry.is_empty() { HashSet::new() } else { ctx.pushed_layers.clone() };
            export.to_registry_alongside(client, reference, store, &mount_from, &deferred, &|want| ctx.gate.wait_ready(want))
        }
        CacheTarget::Local { dest, tag } => export.to_local(dest, tag, store),
        CacheTarget::Inline => return Ok(()),
    };
    match result {
        Ok(stats) => {
            note(format!(
                "exporting cache to {}: {} entries, {} blobs ({} uploaded, {} mounted, {} already there) done",
                to.name(),
                export.entries().len(),
                stats.blobs,
                stats.uploaded,
                stats.mounted,
                stats.existed
            ));
            Ok(())
        }
        Err(e) if to.ignore_error => {
            note(format!("warning: exporting cache to {} failed: {e} (ignore-error=true: the build result stands)", to.name()));
            Ok(())
        }
        Err(e) => Err(failed(format!("exporting cache to {}: {e}", to.name()))),
    }
}

/// Rewrites a stored image manifest with the inline cache annotation. Returns the new
/// manifest's descriptor (the image ID, its config, is unchanged).
pub(crate) fn inline(store: &oci::Store, manifest: &oci::Digest, entries: Vec<CacheEntry>) -> Result<oci::spec::Descriptor, EngineError> {
    let mut doc: serde_json::Value = store.read_json(manifest).map_err(failed)?;
    let layers: Vec<oci::Digest> = doc["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str()?.parse().ok()).collect();
    for (name, value) in CacheExport::new(entries).inline_annotations(&layers) {
        doc["annotations"][name] = serde_json::Value::String(value);
    }
    let bytes = serde_json::to_vec(&doc).map_err(failed)?;
    let stored = store.put_bytes(&bytes).map_err(failed)?;
    store.manifest_descriptor(&stored.digest).map_err(failed)
}

/// Mount candidates for pushing an image to `target`: its layers the store does not hold
/// (imported cache results), with the repositories of `target`'s registry they are known in.
pub(crate) fn mounts_for(
    import: Option<&CacheImport>,
    store: &oci::Store,
    layers: &[solver::cache::BlobDesc],
    target: &oci::Reference,
) -> Vec<(oci::Digest, String)> {
    let Some(import) = import else { return Vec::new() };
    let mut out = Vec::new();
    for layer in layers {
        let Ok(digest) = layer.digest.parse::<oci::Digest>() else { continue };
        if store.has_blob(&digest) {
            continue;
        }
        let from = import.locations_of(&digest).into_iter().find_map(|l| match l {
            remote_cache::BlobLocation::Registry(r) if r.registry() == target.registry() => Some(r.repository().to_string()),
            _ => None,
        });
        if let Some(from) = from {
            out.push((digest, from));
        }
    }
    out
}
