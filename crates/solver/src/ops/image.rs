//! Image ops (`FROM`): base images as snapshots. The key is the manifest digest; the layers come
//! from an [`ImageSource`] — [`StoreImages`] unpacks them from the local store once (by the
//! `snapshot` crate's shared store, in overlay's format), shared by every build and container.

use std::path::{Path, PathBuf};

use graph::ImageOp;

use crate::cache::{BlobDesc, KeyHasher, LayerRef, Snapshot};
use crate::error::{Result, SolveError};
use super::{Output, Solved};

/// Provides the layers of base images (unpacked, as overlay lower dirs).
pub trait ImageSource: Send + Sync {
    /// The snapshot of the image `op` names, and whether it was already unpacked.
    fn snapshot(&self, op: &ImageOp) -> Result<(Snapshot, bool)>;
}

/// The base image's snapshot, keyed by its manifest digest; the flag says it was unpacked already.
pub(crate) fn solve(images: &dyn ImageSource, op: &ImageOp) -> Result<(Solved, bool)> {
    let (snapshot, had) = images.snapshot(op)?;
    let mut h = KeyHasher::new();
    h.field("image", op.manifest_digest.as_bytes());
    Ok((Solved { key: h.finish(), output: Output::Snapshot { new_layers: snapshot.layers.len(), snapshot, created: 0 }, provenance: None }, had))
}

/// `FROM scratch`: no layers.
pub(crate) fn scratch() -> Solved {
    let mut h = KeyHasher::new();
    h.field("scratch", b"");
    Solved { key: h.finish(), output: Output::Snapshot { snapshot: Snapshot::default(), new_layers: 0, created: 0 }, provenance: None }
}

/// Image layers from an `oci::Store`, unpacked under `<root>/snapshots/`.
pub struct StoreImages {
    store: oci::Store,
    root: PathBuf,
    /// Fetches layers an image names but the store lacks (an image made from an imported
    /// build cache), from where the store recorded them.
    registry: Option<std::sync::Arc<registry::Client>>,
}

impl StoreImages {
    pub fn new(store: oci::Store, state_root: &Path) -> StoreImages {
        StoreImages { store, root: state_root.to_path_buf(), registry: None }
    }

    /// Lets absent layers with a recorded source be fetched through `client`.
    pub fn with_registry(mut self, client: std::sync::Arc<registry::Client>) -> StoreImages {
        self.registry = Some(client);
        self
    }

    /// Opens the layer blob `d` (`size` bytes), fetching it first if the store lacks it.
    fn open_layer(&self, d: &oci::Digest, size: u64) -> std::io::Result<std::fs::File> {
        if let Some(client) = self.registry.as_ref().filter(|_| !self.store.has_blob(d)) {
            client.fetch_recorded(&self.store, &[(d.clone(), size)], &registry::NoProgress).map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        self.store.open_blob(d).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

impl ImageSource for StoreImages {
    fn snapshot(&self, op: &ImageOp) -> Result<(Snapshot, bool)> {
        let digest: oci::Digest = op.manifest_digest.parse().map_err(|e| SolveError::Other(format!("image {}: bad digest: {e}", op.reference)))?;
        let manifest: oci::spec::ImageManifest = self.store.read_json(&digest).map_err(|e| SolveError::Other(format!("image {}: reading manifest: {e}", op.reference)))?;
        let cfg_digest: oci::Digest = manifest.config().digest().to_string().parse().map_err(|e| SolveError::Other(format!("image {}: {e}", op.reference)))?;
        let config: oci::spec::ImageConfiguration = self.store.read_json(&cfg_digest).map_err(|e| SolveError::Other(format!("image {}: reading config: {e}", op.reference)))?;
        let diff_ids = config.rootfs().diff_ids();
        // The snapshot store `builder run` uses too: each layer is unpacked once per machine.
        let snapshots = snapshot::snapshots::Snapshots::open(&self.root).map_err(|e| SolveError::Other(format!("opening the snapshot store: {e}")))?;
        let mut layers = Vec::new();
        let mut had_all = true;
        for (i, l) in manifest.layers().iter().enumerate() {
            let d: oci::Digest = l.digest().to_string().parse().map_err(|e| SolveError::Other(format!("image {}: {e}", op.reference)))?;
            let diff_id = diff_ids.get(i).cloned().unwrap_or_else(|| d.to_string());
            let layer_digest = d.to_string();
            if snapshots.get(&layer_digest).is_none() {
                had_all = false;
            }
            let dir = snapshots
                .ensure_layer(&layer_digest, || self.open_layer(&d, l.size()))
                .map_err(|e| SolveError::Other(format!("image {}: unpacking layer {layer_digest}: {e}", op.reference)))?;
            let rel = dir.strip_prefix(&self.root).map(Path::to_path_buf).unwrap_or(dir);
            layers.push(LayerRef {
                dir: rel,
                blob: Some(BlobDesc { digest: layer_digest, size: l.size(), media_type: l.media_type().to_string(), diff_id }),
            });
        }
        Ok((Snapshot { layers }, had_all))
    }
}
