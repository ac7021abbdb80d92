//! Garbage collection: delete blobs nothing references.

use std::collections::HashSet;
use std::fs;

use oci_spec::image::{ImageIndex, ImageManifest};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media;

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub removed_blobs: usize,
    pub freed_bytes: u64,
}

impl Store {
    /// Deletes every blob not reachable from a tag or from `extra_roots` (the manifests, configs
    /// or layers that containers and the build cache use). Holds the index lock throughout, so
    /// no tag can appear in between.
    ///
    /// A blob another process has stored but not yet tagged (a pull in progress) looks
    /// unreferenced; when other processes may be running, use [`Store::gc_older_than`].
    pub fn gc(&self, extra_roots: &[Digest]) -> Result<GcStats> {
        self.gc_older_than(extra_roots, std::time::Duration::ZERO)
    }

    /// Like [`Store::gc`], but keeps blobs written less than `min_age` ago, so the work of
    /// concurrent pulls and builds survives.
    pub fn gc_older_than(&self, extra_roots: &[Digest], min_age: std::time::Duration) -> Result<GcStats> {
        let _lock = self.lock_index()?;
        let live = self.reachable(extra_roots)?;
        let dir = self.blobs_dir();
        let mut candidates = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))?.flatten() {
            let name = entry.file_name();
            let young =
                entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age < min_age);
            if young {
                continue;
            }
            if let Ok(d) = Digest::from_hex(&name.to_string_lossy()) {
                candidates.push(d);
            }
        }
        Ok(self.remove_unreachable(&candidates, &live))
    }

    /// Deletes those of `candidates` (an untagged image's blobs) that nothing else references.
    pub fn remove_if_unreferenced(&self, candidates: &[Digest], extra_roots: &[Digest]) -> Result<GcStats> {
        let _lock = self.lock_index()?;
        let live = self.reachable(extra_roots)?;
        Ok(self.remove_unreachable(candidates, &live))
    }

    fn remove_unreachable(&self, candidates: &[Digest], live: &HashSet<Digest>) -> GcStats {
        let mut stats = GcStats::default();
        for d in candidates {
            if live.contains(d) {
                continue;
            }
            let path = self.blob_path(d);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                stats.removed_blobs += 1;
                stats.freed_bytes += size;
            }
        }
        stats
    }

    /// Blobs reachable from the tags and `extra_roots`, following indexes and manifests.
    fn reachable(&self, extra_roots: &[Digest]) -> Result<HashSet<Digest>> {
        let mut todo: Vec<Digest> = extra_roots.to_vec();
        for d in self.read_index()?.manifests() {
            todo.push(Digest::try_from(d.digest())?);
        }
        let mut live = HashSet::new();
        while let Some(d) = todo.pop() {
            if !live.insert(d.clone()) {
                continue;
            }
            // Only manifests and indexes have children; anything large is a layer.
            let Some(size) = self.blob_size(&d) else { continue };
            if size > 4 * 1024 * 1024 {
                continue;
            }
            let Ok(bytes) = self.read_blob(&d) else { continue };
            match media::sniff(&bytes).as_deref() {
                Some(m) if media::is_index(m) => {
                    if let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes) {
                        todo.extend(index.manifests().iter().filter_map(|m| Digest::try_from(m.digest()).ok()));
                    }
                }
                Some(m) if media::is_manifest(m) => {
                    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) {
                        todo.extend(Digest::try_from(manifest.config().digest()).ok());
                        todo.extend(manifest.layers().iter().filter_map(|l| Digest::try_from(l.digest()).ok()));
                    }
                }
                _ => {}
            }
        }
        Ok(live)
    }
}
