//! Layers an image names but the store does not hold yet (results of an imported build cache):
//! fetched, verified by digest, from where the store recorded them ([`oci::BlobSource`]) when a
//! command needs their bytes. A push to the registry that holds them mounts them instead.

use oci::{Digest, LocalImage, Reference, Store};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::progress::Progress;

impl Client {
    /// Makes every layer of `image` present in `store`, fetching the absent ones from their
    /// recorded sources. Returns how many were fetched. Blocking.
    pub fn fetch_missing_layers(&self, store: &Store, image: &LocalImage, progress: &dyn Progress) -> Result<usize> {
        let missing = store.missing_layers(image)?;
        if missing.is_empty() {
            return Ok(0);
        }
        self.block_on(self.fetch_recorded_async(store, &missing, progress))?
    }

    /// Fetches each of `blobs` (digest, size) the store lacks from its recorded source.
    /// Blocking.
    pub fn fetch_recorded(&self, store: &Store, blobs: &[(Digest, u64)], progress: &dyn Progress) -> Result<usize> {
        self.block_on(self.fetch_recorded_async(store, blobs, progress))?
    }

    /// The async twin of [`Client::fetch_recorded`].
    pub async fn fetch_recorded_async(&self, store: &Store, blobs: &[(Digest, u64)], progress: &dyn Progress) -> Result<usize> {
        let mut fetched = 0;
        for (digest, size) in blobs {
            if store.has_blob(digest) {
                continue;
            }
            let source = recorded_source(store, digest)?;
            progress.start(digest, *size, "Fetching");
            self.download_blob_async(&source, digest, *size, store).await?;
            progress.finish(digest, "Fetched");
            fetched += 1;
        }
        Ok(fetched)
    }

    /// Mount candidates for pushing `image` to `remote`: its absent layers recorded in another
    /// repository of `remote`'s registry. The absent layers recorded elsewhere are fetched
    /// first (a mount cannot cross registries).
    pub(crate) async fn prepare_lazy_layers(&self, store: &Store, image: &LocalImage, remote: &Reference, progress: &dyn Progress) -> Result<Vec<(Digest, String)>> {
        let mut mounts = Vec::new();
        let mut fetch = Vec::new();
        for (digest, size) in store.missing_layers(image)? {
            match store.blob_source(&digest) {
                // In the target repository itself: the push's HEAD finds it there.
                Some(s) if s.registry == remote.registry() && s.repository == remote.repository() => {}
                Some(s) if s.registry == remote.registry() => mounts.push((digest, s.repository)),
                _ => fetch.push((digest, size)),
            }
        }
        self.fetch_recorded_async(store, &fetch, progress).await?;
        Ok(mounts)
    }
}

/// The recorded source of an absent blob, as a reference to fetch it with.
fn recorded_source(store: &Store, digest: &Digest) -> Result<Reference> {
    let source = store.blob_source(digest).ok_or_else(|| Error::Store(oci::Error::BlobNotFound(format!("{digest} (and no registry is recorded to fetch it from)"))))?;
    source.reference().map_err(Error::Store)
}
