//! The shared build cache around one build: `--cache-from` sources read before the solve, the
//! `--cache-to` exports written after it (see the `remote-cache` crate for the format).

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

/// Writes one `--cache-to` export (registry or local; inline goes into the image manifest).
/// `image_repos` are the repositories the image was pushed to: blobs there are mounted, not
/// uploaded. A failure fails the build, unless `ignore-error=true` made it a warning.
pub(crate) fn export(
    to: &CacheTo,
    entries: Vec<CacheEntry>,
    client: &registry::Client,
    store: &oci::Store,
    import: Option<&CacheImport>,
    image_repos: &[oci::Reference],
    note: &dyn Fn(String),
) -> Result<(), EngineError> {
    let export = CacheExport::new(entries);
    let result = match &to.target {
        CacheTarget::Registry { reference } => {
            let same_registry: Vec<String> =
                image_repos.iter().filter(|r| r.registry() == reference.registry()).map(|r| r.repository().to_string()).collect();
            let mount_from = |digest: &oci::Digest| -> Vec<String> {
                let mut from = same_registry.clone();
                // A blob imported lazily lives in the cache it came from.
                if let Some(import) = import {
                    for loc in import.locations_of(digest) {
                        if let remote_cache::BlobLocation::Registry(r) = loc {
                            if r.registry() == reference.registry() && !from.iter().any(|f| f == r.repository()) {
                                from.push(r.repository().to_string());
                            }
                        }
                    }
                }
                from
            };
            export.to_registry(client, reference, store, &mount_from)
        }
        CacheTarget::Local { dest, tag } => export.to_local(dest, tag, store),
        CacheTarget::Inline => return Ok(()),
    };
    match result {
        Ok(stats) => {
            note(format!(
                "exporting cache to {}: {} entries, {} blobs ({} uploaded, {} mounted, {} already there) done",
                to.name(),
                export.config().entries.len(),
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
    let (name, value) = CacheExport::new(entries).inline_annotation();
    doc["annotations"][name] = serde_json::Value::String(value);
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
