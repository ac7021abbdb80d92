//! Results from an imported cache (`--cache-from`): a hit downloads nothing. Its layers are
//! known as blobs (digest, diffID, size) until something needs their files — a later step that
//! runs on top of them, a `COPY --from` of them, a file output — and are then fetched (verified
//! against their digest), unpacked into the machine's shared snapshot store, and recorded in the
//! local cache, so the next build on this machine is local.

use std::io::Read;
use std::path::Path;

use crate::cache::{BlobDesc, CacheIndex, LayerRef, Snapshot};
use crate::error::{Result, SolveError};
use crate::provenance::Provenance;

/// An imported cache: entries by cache key and by step, and their layer blobs on demand.
pub trait CacheSource: Send + Sync {
    /// The entry exported under `key` (64 hex digits), if a source has one.
    fn lookup(&self, key: &str) -> Option<ImportedEntry>;
    /// The provenance of every entry of the step `step` (to explain a miss; an imported cache
    /// reads its provenance blob the first time).
    fn by_step(&self, step: &str) -> Vec<Provenance>;
    /// The blob's bytes, fetched (verified against its digest) if this machine lacks them.
    fn open_blob(&self, blob: &BlobDesc) -> std::result::Result<Box<dyn Read + Send>, String>;
}

/// One step's result in an imported cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedEntry {
    /// The whole layer chain, bottom first, base image layers included.
    pub layers: Vec<BlobDesc>,
    /// When the step's result was first made (seconds since the epoch), so the image built from
    /// it is the very image the exporting machine built.
    pub created: u64,
}

/// Where a layer known only by its blob will be unpacked (relative to the state root): the
/// shared snapshot store base images use, so a layer is unpacked once per machine.
pub(crate) fn lazy_layer(index: &CacheIndex, blob: &BlobDesc) -> LayerRef {
    let dir = index.state_root().join("snapshots").join(snapshot::snapshots::Snapshots::id_of(&blob.digest));
    let rel = dir.strip_prefix(index.state_root()).map(Path::to_path_buf).unwrap_or(dir);
    LayerRef { dir: rel, blob: Some(blob.clone()) }
}

/// Makes every layer of `snapshot` present on disk, fetching those known only as blobs from
/// `source`. Returns how many were fetched.
pub fn materialize(index: &CacheIndex, source: Option<&dyn CacheSource>, snapshot: &Snapshot) -> Result<usize> {
    let mut fetched = 0;
    for l in &snapshot.layers {
        if index.abs(&l.dir).is_dir() {
            continue;
        }
        let Some(blob) = &l.blob else {
            return Err(SolveError::Other(format!("layer {} of a cached result is gone: run the build again", l.dir.display())));
        };
        let Some(source) = source else {
            return Err(SolveError::Other(format!("layer {} of an imported cache result is not on this machine, and the build has no --cache-from to fetch it from", blob.digest)));
        };
        let snapshots = snapshot::snapshots::Snapshots::open(index.state_root()).map_err(|e| SolveError::Other(format!("opening the snapshot store: {e}")))?;
        snapshots
            .ensure_layer(&blob.digest, || {
                fetched += 1;
                source.open_blob(blob).map_err(std::io::Error::other)
            })
            .map_err(|e| SolveError::Other(format!("fetching cached layer {}: {e}", blob.digest)))?;
        tracing::debug!(layer = %blob.digest, size = blob.size, "fetched a layer of an imported cache result");
    }
    Ok(fetched)
}

/// Puts into `store` the blobs among `blobs` it lacks (layers of imported results), fetched
/// from `source` and verified: an image written from imported results is then whole on this
/// machine (for `builder run`, `save`, a push elsewhere). Returns how many were fetched.
pub fn fetch_missing_blobs(store: &oci::Store, source: Option<&dyn CacheSource>, blobs: &[BlobDesc]) -> Result<usize> {
    let mut fetched = 0;
    for b in blobs {
        let digest: oci::Digest = b.digest.parse().map_err(|e| SolveError::Other(format!("layer digest {:?}: {e}", b.digest)))?;
        if store.has_blob(&digest) {
            continue;
        }
        let Some(source) = source else {
            return Err(SolveError::Other(format!("layer {digest} of an imported cache result is not on this machine, and the build has no --cache-from to fetch it from")));
        };
        let reader = source.open_blob(b).map_err(|e| SolveError::Other(format!("fetching cached layer {digest}: {e}")))?;
        if !store.has_blob(&digest) {
            store.write_blob(reader, &digest, Some(b.size)).map_err(|e| SolveError::Other(format!("storing cached layer {digest}: {e}")))?;
        }
        fetched += 1;
    }
    Ok(fetched)
}

/// The `--cache-from` sources of a build, as `remote-cache` reads them, and the blob sources
/// the image store recorded (so a local cache entry made from an imported hit, whose layers
/// were never fetched, can be fetched in a later build without any `--cache-from`). A fetched
/// blob lands in the image store (verified there), so a later push of an image with it moves
/// nothing again.
pub struct ImportedCache {
    import: Option<std::sync::Arc<remote_cache::CacheImport>>,
    store: oci::Store,
    client: std::sync::Arc<registry::Client>,
    /// Layers of the import that could not be fetched (or did not match their digest), and why.
    refused: std::sync::Mutex<Vec<(oci::Digest, String)>>,
}

impl ImportedCache {
    pub fn new(import: Option<std::sync::Arc<remote_cache::CacheImport>>, store: oci::Store, client: std::sync::Arc<registry::Client>) -> ImportedCache {
        ImportedCache { import, store, client, refused: Default::default() }
    }

    /// The layers of the import this solve could not use (fetch failed, or the bytes did not
    /// match their digest) and why: the sources that list them must be left out of a retry.
    pub fn take_refused(&self) -> Vec<(oci::Digest, String)> {
        match self.refused.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    /// Records in the image store where each absent layer of a hit can be fetched (its first
    /// registry location), so an image made of it is whole on demand after this build.
    fn record_sources(&self, import: &remote_cache::CacheImport, layers: &[remote_cache::LayerBlob]) {
        for l in layers {
            if self.store.has_blob(&l.digest) || self.store.blob_source(&l.digest).is_some() {
                continue;
            }
            let from = import.locations_of(&l.digest).into_iter().find_map(|loc| match loc {
                remote_cache::BlobLocation::Registry(r) => Some(r),
                remote_cache::BlobLocation::Local(_) => None,
            });
            if let Some(r) = from {
                let source = oci::BlobSource { registry: r.registry().to_string(), repository: r.repository().to_string(), size: l.size };
                if let Err(e) = self.store.record_blob_source(&l.digest, &source) {
                    tracing::warn!("recording where layer {} can be fetched: {e}", l.digest);
                }
            }
        }
    }
}

impl CacheSource for ImportedCache {
    fn lookup(&self, key: &str) -> Option<ImportedEntry> {
        let import = self.import.as_deref()?;
        let e = import.lookup(key)?;
        self.record_sources(import, &e.layers);
        let layers = e
            .layers
            .iter()
            .map(|l| BlobDesc { digest: l.digest.to_string(), size: l.size, media_type: l.media_type.clone(), diff_id: l.diff_id.to_string() })
            .collect();
        Some(ImportedEntry { layers, created: e.created })
    }

    fn by_step(&self, step: &str) -> Vec<Provenance> {
        let Some(import) = &self.import else { return Vec::new() };
        import.by_step(step)
    }

    fn open_blob(&self, blob: &BlobDesc) -> std::result::Result<Box<dyn Read + Send>, String> {
        let parse = |d: &str| d.parse::<oci::Digest>().map_err(|e| format!("layer digest {d:?}: {e}"));
        let layer = remote_cache::LayerBlob { digest: parse(&blob.digest)?, diff_id: parse(&blob.diff_id)?, size: blob.size, media_type: blob.media_type.clone() };
        if !self.store.has_blob(&layer.digest) {
            match &self.import {
                Some(import) if !import.locations_of(&layer.digest).is_empty() => {
                    if let Err(e) = import.fetch_blob(&layer, &self.store) {
                        if let Ok(mut r) = self.refused.lock() {
                            r.push((layer.digest.clone(), e.to_string()));
                        }
                        return Err(e.to_string());
                    }
                }
                _ => {
                    self.client.fetch_recorded(&self.store, &[(layer.digest.clone(), layer.size)], &registry::NoProgress).map_err(|e| e.to_string())?;
                }
            }
        }
        let f = self.store.open_blob(&layer.digest).map_err(|e| e.to_string())?;
        Ok(Box::new(f))
    }
}
