//! `--cache-to`: the entries a build made or used, written as one artifact. Blobs first (each
//! only if the target lacks it: HEAD, then a cross-repository mount, then an upload), the
//! manifest last, so a reader, or a second machine exporting to the same ref at the same time,
//! only ever sees one whole cache.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use oci::{Digest, Reference, Store};
use serde_json::json;

use crate::error::{Error, Result};
use crate::format::{
    self, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, CacheEntry, INLINE_ANNOTATION, INLINE_PROVENANCE_ANNOTATION, LayerBlob, PROVENANCE_MEDIA_TYPE,
};
use crate::layout::Layout;

/// What an export moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Distinct layer blobs the cache references.
    pub blobs: usize,
    /// Blobs the target had already.
    pub existed: usize,
    /// Blobs linked from another repository without moving them.
    pub mounted: usize,
    /// Layer blobs whose bytes were sent.
    pub uploaded: usize,
    /// Bytes sent (layer blobs and the config).
    pub bytes_uploaded: u64,
    /// The cache manifest's digest.
    pub manifest: Option<Digest>,
}

/// What the blob uploads of one export did, counted as they go.
#[derive(Default)]
struct Counts {
    existed: AtomicUsize,
    mounted: AtomicUsize,
    uploaded: AtomicUsize,
    sent: AtomicU64,
}

/// The entries to export.
#[derive(Clone, Debug, Default)]
pub struct CacheExport {
    entries: Vec<CacheEntry>,
}

/// The blobs of an export: its layers (the manifest's, in order), the config and the
/// provenance blob (both zstd-compressed JSON).
struct Documents {
    layers: Vec<LayerBlob>,
    config: Vec<u8>,
    provenance: Vec<u8>,
}

impl CacheExport {
    pub fn new(entries: Vec<CacheEntry>) -> CacheExport {
        CacheExport { entries }
    }

    pub fn entries(&self) -> &[CacheEntry] {
        &self.entries
    }

    fn documents(&self) -> Documents {
        let layers = format::blobs(&self.entries);
        let digests: Vec<Digest> = layers.iter().map(|b| b.digest.clone()).collect();
        let (mut config, provenance) = format::encode(&self.entries, &digests);
        let provenance = format::compress(&provenance.to_json());
        config.provenance = Some(Digest::sha256_of(&provenance));
        Documents { layers, config: format::compress(&config.to_json()), provenance }
    }

    /// The cache manifest: the layer blobs, then the provenance blob; the config.
    fn manifest(docs: &Documents, config_digest: &Digest) -> Vec<u8> {
        let mut layers: Vec<_> =
            docs.layers.iter().map(|b| json!({ "mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size })).collect();
        layers.push(json!({ "mediaType": PROVENANCE_MEDIA_TYPE, "digest": Digest::sha256_of(&docs.provenance).to_string(), "size": docs.provenance.len() }));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci::media::OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest.to_string(), "size": docs.config.len() },
            "layers": layers,
        });
        serde_json::to_vec(&manifest).unwrap_or_else(|_| unreachable!("plain JSON serializes"))
    }

    /// The annotations (name, value) that carry this cache inline in an image manifest whose
    /// layers are `image_layers`: the config (its blob indexes into those layers) and the
    /// provenance, both plain JSON. Entries with a layer the image lacks are left out.
    pub fn inline_annotations(&self, image_layers: &[Digest]) -> Vec<(String, String)> {
        let (config, provenance) = format::encode(&self.entries, image_layers);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap_or_default();
        vec![(INLINE_ANNOTATION.to_string(), text(config.to_json())), (INLINE_PROVENANCE_ANNOTATION.to_string(), text(provenance.to_json()))]
    }

    /// Writes the cache to `reference` (blocking). `mount_from` names, for a blob, repositories
    /// of the same registry that hold it (the image's repository, the cache it was imported
    /// from): they are mounted instead of uploaded. A blob neither the target nor those
    /// repositories have is uploaded from `store`.
    pub fn to_registry(
        &self,
        client: &registry::Client,
        reference: &Reference,
        store: &Store,
        mount_from: &(dyn Fn(&Digest) -> Vec<String> + Sync),
    ) -> Result<ExportStats> {
        client
            .run(self.to_registry_async(client, reference, store, mount_from))
            .map_err(|source| Error::registry(reference, source))?
    }

    /// The async twin of [`CacheExport::to_registry`].
    pub async fn to_registry_async(
        &self,
        client: &registry::Client,
        reference: &Reference,
        store: &Store,
        mount_from: &(dyn Fn(&Digest) -> Vec<String> + Sync),
    ) -> Result<ExportStats> {
        let counts = Counts::default();
        let docs = self.documents();
        let config = self.put_blobs_async(client, reference, store, mount_from, &docs, &|_| true, true, &counts).await?;
        self.put_manifest_async(client, reference, &docs, &config, counts).await
    }

    /// [`CacheExport::to_registry`] alongside an image push to the same registry: the blobs in
    /// `deferred` (the image's layers) are mounted from the image's repository as soon as the
    /// push has put them there, while it goes on (never uploaded twice); every other blob, the
    /// config and the provenance go at once. `wait_ready` is given the deferred blobs still to
    /// do and blocks until some of them are in the image's repository, and returns those (all
    /// of them once the push is done; `None`: the push failed, nothing more is written). The
    /// manifest goes last.
    pub fn to_registry_alongside(
        &self,
        client: &registry::Client,
        reference: &Reference,
        store: &Store,
        mount_from: &(dyn Fn(&Digest) -> Vec<String> + Sync),
        deferred: &HashSet<Digest>,
        wait_ready: &dyn Fn(&HashSet<Digest>) -> Option<HashSet<Digest>>,
    ) -> Result<ExportStats> {
        let wrap = |source| Error::registry(reference, source);
        let counts = Counts::default();
        let docs = self.documents();
        let now = |d: &Digest| !deferred.contains(d);
        let config = client.run(self.put_blobs_async(client, reference, store, mount_from, &docs, &now, true, &counts)).map_err(wrap)??;
        let mut todo: HashSet<Digest> = docs.layers.iter().filter(|b| deferred.contains(&b.digest)).map(|b| b.digest.clone()).collect();
        while !todo.is_empty() {
            let ready: HashSet<Digest> = wait_ready(&todo).ok_or(Error::PushFailed)?.into_iter().filter(|d| todo.contains(d)).collect();
            if ready.is_empty() {
                continue;
            }
            let pick = |d: &Digest| ready.contains(d);
            client.run(self.put_blobs_async(client, reference, store, mount_from, &docs, &pick, false, &counts)).map_err(wrap)??;
            todo.retain(|d| !ready.contains(d));
        }
        client.run(self.put_manifest_async(client, reference, &docs, &config, counts)).map_err(wrap)?
    }

    /// Makes the layer blobs `pick` selects (and the config and provenance blobs, with
    /// `documents`) exist in the target: HEAD, then a mount, then an upload. Returns the config
    /// blob's digest.
    #[allow(clippy::too_many_arguments)]
    async fn put_blobs_async(
        &self,
        client: &registry::Client,
        reference: &Reference,
        store: &Store,
        mount_from: &(dyn Fn(&Digest) -> Vec<String> + Sync),
        docs: &Documents,
        pick: &(dyn Fn(&Digest) -> bool + Sync),
        documents: bool,
        counts: &Counts,
    ) -> Result<Digest> {
        let wrap = |source: registry::Error| Error::registry(reference, source);
        let config = store.put_bytes(&docs.config)?;
        let mut work: Vec<(Digest, u64, bool)> = docs.layers.iter().filter(|b| pick(&b.digest)).map(|b| (b.digest.clone(), b.size, false)).collect();
        if documents {
            let provenance = store.put_bytes(&docs.provenance)?;
            work.push((config.digest.clone(), config.size, true));
            work.push((provenance.digest, provenance.size, true));
        }
        let Counts { existed, mounted, uploaded, sent } = counts;
        futures::stream::iter(work.into_iter().map(|(digest, size, is_doc)| async move {
            let from: Vec<String> = mount_from(&digest).into_iter().filter(|r| r != reference.repository()).collect();
            if !store.has_blob(&digest) && from.is_empty() {
                // Not here, nowhere to mount from: only fine if the target has it already.
                if client.blob_exists_async(reference, &digest).await.map_err(wrap)? {
                    existed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                return Err(Error::BlobMissing { digest: digest.to_string() });
            }
            let outcome = client.put_blob_async(reference, store, &digest, size, &from, &registry::NoProgress).await.map_err(wrap)?;
            if outcome == registry::BlobPush::Uploaded {
                sent.fetch_add(size, Ordering::Relaxed);
            }
            // The counts are of layer blobs; the config and provenance are this cache's own.
            if !is_doc {
                match outcome {
                    registry::BlobPush::Existed => existed.fetch_add(1, Ordering::Relaxed),
                    registry::BlobPush::Mounted(_) => mounted.fetch_add(1, Ordering::Relaxed),
                    registry::BlobPush::Uploaded => uploaded.fetch_add(1, Ordering::Relaxed),
                };
            }
            Ok::<(), Error>(())
        }))
        // Mounts and HEADs are small requests: several at once keep the registry busy.
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(config.digest)
    }

    async fn put_manifest_async(&self, client: &registry::Client, reference: &Reference, docs: &Documents, config: &Digest, counts: Counts) -> Result<ExportStats> {
        let manifest = CacheExport::manifest(docs, config);
        let digest = client.put_manifest_bytes_async(reference, &manifest, oci::media::OCI_MANIFEST).await.map_err(|source| Error::registry(reference, source))?;
        tracing::info!("exported {} cache entries to {reference} as {digest}", self.entries.len());
        Ok(ExportStats {
            blobs: docs.layers.len(),
            existed: counts.existed.into_inner(),
            mounted: counts.mounted.into_inner(),
            uploaded: counts.uploaded.into_inner(),
            bytes_uploaded: counts.sent.into_inner(),
            manifest: Some(digest),
        })
    }

    /// Writes the cache into the OCI layout `dest`, tagged `tag` (blobs copied from `store`).
    pub fn to_local(&self, dest: &Path, tag: &str, store: &Store) -> Result<ExportStats> {
        let layout = Layout::new(dest);
        let mut stats = ExportStats::default();
        let docs = self.documents();
        stats.blobs = docs.layers.len();
        for blob in &docs.layers {
            if layout.blob_path(&blob.digest).is_file() {
                stats.existed += 1;
                continue;
            }
            let file = store.open_blob(&blob.digest).map_err(|e| match e {
                oci::Error::BlobNotFound(d) => Error::BlobMissing { digest: d },
                other => Error::Store(other),
            })?;
            layout.put_blob_from(&blob.digest, file)?;
            stats.uploaded += 1;
            stats.bytes_uploaded += blob.size;
        }
        layout.put_bytes(&docs.provenance)?;
        let config_digest = layout.put_bytes(&docs.config)?;
        let manifest = CacheExport::manifest(&docs, &config_digest);
        let digest = layout.put_bytes(&manifest)?;
        layout.set_tag(tag, &digest, manifest.len() as u64, oci::media::OCI_MANIFEST)?;
        stats.manifest = Some(digest);
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Provenance;
    use crate::import::CacheImport;
    use crate::spec::CacheFrom;
    use std::sync::Arc;

    #[test]
    fn local_round_trip_and_verified_fetch() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store_a = Store::open(&tmp.path().join("a")).expect("store a");
        let layer = store_a.put_bytes(b"pretend this is a gzip tar").expect("blob");
        let blob = LayerBlob {
            digest: layer.digest.clone(),
            diff_id: Digest::sha256_of(b"tar"),
            size: layer.size,
            media_type: oci::media::OCI_LAYER_GZIP.into(),
        };
        let entry = CacheEntry {
            key: "ab".repeat(32),
            layers: vec![blob.clone()],
            provenance: Provenance { step: "step-1".into(), description: "[1/1] RUN x".into(), inputs: Default::default() },
            created: 1,
        };
        let dir = tmp.path().join("cache");
        let stats = CacheExport::new(vec![entry.clone()]).to_local(&dir, "latest", &store_a).expect("export");
        assert_eq!((stats.blobs, stats.uploaded), (1, 1));
        let again = CacheExport::new(vec![entry.clone()]).to_local(&dir, "latest", &store_a).expect("export again");
        assert_eq!((again.existed, again.uploaded), (1, 0), "a second export copies nothing");

        let store_b = Store::open(&tmp.path().join("b")).expect("store b");
        let client = Arc::new(registry::Client::new(Default::default()).expect("client"));
        let import = CacheImport::load(&[CacheFrom::Local { src: dir.clone(), tag: "latest".into() }], client.clone(), &store_b);
        assert!(import.warnings().is_empty(), "{:?}", import.warnings());
        assert_eq!(import.lookup(&entry.key), Some(&crate::CachedResult { layers: vec![blob.clone()], created: 1 }));
        assert!(!store_b.has_blob(&blob.digest), "a lookup fetches nothing");
        assert_eq!(import.by_step("step-1"), [entry.provenance.clone()], "the provenance blob, read on demand");
        assert!(import.by_step("step-2").is_empty());
        assert_eq!(import.fetch_blob(&blob, &store_b).expect("fetch"), blob.size);
        assert!(store_b.has_blob(&blob.digest));

        // A blob whose bytes do not match its digest is refused, and nothing is stored.
        let store_c = Store::open(&tmp.path().join("c")).expect("store c");
        std::fs::write(Layout::new(&dir).blob_path(&blob.digest), b"tampered").expect("tamper");
        let import = CacheImport::load(&[CacheFrom::Local { src: dir.clone(), tag: "latest".into() }], client.clone(), &store_c);
        assert!(import.fetch_blob(&blob, &store_c).is_err());
        assert!(!store_c.has_blob(&blob.digest));

        // A missing directory is a warning naming it.
        let import = CacheImport::load(&[CacheFrom::Local { src: tmp.path().join("nope"), tag: "latest".into() }], client, &store_c);
        assert!(import.is_empty());
        let w = import.warnings()[0].to_string();
        assert!(
            w.starts_with(&format!(
                "--cache-from {}: read {}",
                tmp.path().join("nope").display(),
                tmp.path().join("nope/index.json").display()
            )),
            "{w}"
        );
        assert!(w.ends_with("; building without it"), "{w}");
    }
}
