//! Single documents and blobs, for callers that move content which is not a plain image (the
//! build cache artifact): fetch a manifest by reference, ask whether a blob exists, download one
//! blob into the store, make one blob exist in a repository (HEAD, mount, upload), PUT a
//! manifest's exact bytes.

use oci::{Digest, Reference, Store};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::client::{Client, status_error};
use crate::error::Result;
use crate::progress::Progress;

/// A manifest (or index) as the registry sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The exact bytes (their digest is the manifest's digest).
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

/// How a blob came to be in the target repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it already.
    Existed,
    /// Linked from another repository of the same registry, without any upload.
    Mounted(String),
    /// Its bytes were uploaded.
    Uploaded,
}

impl Client {
    /// GETs the manifest `reference` names (tag or digest), verified against the digest when
    /// the reference has one.
    pub async fn manifest_async(&self, reference: &Reference) -> Result<Manifest> {
        let fetched = self.fetch_manifest(reference, &reference.tag_or_digest()).await?;
        if let Some(want) = reference.digest()
            && *want != fetched.digest {
                return Err(crate::Error::BadManifest {
                    reference: reference.to_string(),
                    reason: format!("the registry sent content with digest {}, not the requested {want}", fetched.digest),
                });
            }
        Ok(Manifest { bytes: fetched.bytes, digest: fetched.digest, media_type: fetched.media_type })
    }

    /// Whether `repository`'s repository holds the blob (HEAD).
    pub async fn blob_exists_async(&self, repository: &Reference, digest: &Digest) -> Result<bool> {
        let url = format!("{}{}/blobs/{digest}", self.base_url(repository), repository.repository());
        let scope = format!("repository:{}:pull", repository.repository());
        let resp = self.send(repository.registry(), &scope, |http| Ok(http.head(&url))).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error("HEAD", &url, resp).await),
        }
    }

    /// Downloads one blob of `repository` into `store` (nothing if the store has it), verified
    /// against its digest and size. Returns the bytes downloaded.
    pub async fn download_blob_async(&self, repository: &Reference, digest: &Digest, size: u64, store: &Store) -> Result<u64> {
        self.fetch_blob(repository, digest, size, store, None).await
    }

    /// Makes the stored blob `digest` exist in `repository`'s repository: a cross-repository
    /// mount from the first of `mount_from` (other repositories of the same registry; one
    /// request, and a success also when the repository has the blob already), else HEAD, else
    /// an upload from `store`. Without `mount_from`: HEAD, else an upload.
    pub async fn put_blob_async(
        &self,
        repository: &Reference,
        store: &Store,
        digest: &Digest,
        size: u64,
        mount_from: &[String],
        progress: &dyn Progress,
    ) -> Result<BlobPush> {
        let mounts: Vec<(Digest, String)> = mount_from.iter().map(|from| (digest.clone(), from.clone())).collect();
        self.push_blob_outcome(store, repository, digest, size, &mounts, true, progress).await
    }

    /// PUTs `bytes` as the manifest `reference` (its tag, or its digest) with `media_type`.
    /// Returns the manifest's digest.
    pub async fn put_manifest_bytes_async(&self, reference: &Reference, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let url = format!("{}{}/manifests/{}", self.base_url(reference), reference.repository(), reference.tag_or_digest());
        let scope = format!("repository:{}:pull,push", reference.repository());
        let body = bytes.to_vec();
        let resp =
            self.send(reference.registry(), &scope, |http| Ok(http.put(&url).header(CONTENT_TYPE, media_type).body(body.clone()))).await?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", &url, resp).await);
        }
        Ok(Digest::sha256_of(bytes))
    }

    /// Runs an async operation of this client from blocking code (see the crate docs).
    pub fn run<F>(&self, f: F) -> Result<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        self.block_on(f)
    }
}
