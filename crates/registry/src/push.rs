//! Push: every blob the registry lacks (HEAD first, cross-repository mount when another repo of
//! the same registry has it, else a monolithic PUT or chunked PATCHes), in parallel, then the
//! manifest with its exact media type.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use oci::{Digest, Reference, Store};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};

use crate::blobs::BlobPush;
use crate::client::{Client, redact, status_error};
use crate::error::{Error, Result};
use crate::progress::Progress;

impl Client {
    /// Pushes the local image `local` to `remote` (tag or digest). Returns the manifest digest.
    /// Blocking.
    pub fn push(&self, store: &Store, local: &Reference, remote: &Reference, progress: &dyn Progress) -> Result<Digest> {
        self.block_on(self.push_async(store, local, remote, progress))?
    }

    /// The async twin of [`Client::push`]. A tag that points at a multi-platform index whose
    /// manifests are all in the store is pushed whole (every manifest, then the index); otherwise
    /// the host platform's manifest is pushed.
    pub async fn push_async(&self, store: &Store, local: &Reference, remote: &Reference, progress: &dyn Progress) -> Result<Digest> {
        self.push_with_mounts_async(store, local, remote, &[], progress).await
    }

    /// [`Client::push`], with more (blob, repository) mount candidates than the store's own tags
    /// give: blobs the store does not hold, known to be in another repository of the registry
    /// (layers of imported cache results), are mounted from there and never downloaded.
    pub fn push_with_mounts(
        &self,
        store: &Store,
        local: &Reference,
        remote: &Reference,
        extra: &[(Digest, String)],
        progress: &dyn Progress,
    ) -> Result<Digest> {
        self.block_on(self.push_with_mounts_async(store, local, remote, extra, progress))?
    }

    /// The async twin of [`Client::push_with_mounts`].
    pub async fn push_with_mounts_async(
        &self,
        store: &Store,
        local: &Reference,
        remote: &Reference,
        extra: &[(Digest, String)],
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let image = store.image(local)?;
        progress.message(&format!("The push refers to repository [{}]", remote.name()));
        let mut mounts = mount_sources(store, remote);
        mounts.extend(extra.iter().cloned());
        let mounts = Arc::new(mounts);
        if let Some(index_digest) = &image.index_digest
            && let Some(manifests) = complete_index(store, index_digest) {
                for (digest, media_type) in &manifests {
                    let one = store.image_from_descriptor(&oci::spec::Descriptor::new(media_type.as_str().into(), 0, digest.to_spec()))?;
                    self.push_image_blobs(store, remote, &one, &mounts, progress).await?;
                    self.put_manifest(store, remote, &digest.to_string(), digest, media_type).await?;
                }
                let media_type = store.manifest_descriptor(index_digest)?.media_type().to_string();
                let size = self.put_manifest(store, remote, &remote.tag_or_digest(), index_digest, &media_type).await?;
                progress.message(&format!("{}: digest: {index_digest} size: {size}", remote.tag_or_digest()));
                return Ok(index_digest.clone());
            }
        // Layers of an image made from an imported build cache may not be here yet.
        let lazy = self.prepare_lazy_layers(store, &image, remote, progress).await?;
        let mounts = if lazy.is_empty() { mounts } else { Arc::new(mounts.iter().cloned().chain(lazy).collect()) };
        self.push_image_blobs(store, remote, &image, &mounts, progress).await?;
        let size = self.put_manifest(store, remote, &remote.tag_or_digest(), &image.manifest_digest, &image.manifest_media_type).await?;
        progress.message(&format!("{}: digest: {} size: {size}", remote.tag_or_digest(), image.manifest_digest));
        Ok(image.manifest_digest)
    }

    /// Uploads the layers and config of one image, in parallel.
    async fn push_image_blobs(
        &self,
        store: &Store,
        remote: &Reference,
        image: &oci::LocalImage,
        mounts: &Arc<Vec<(Digest, String)>>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut blobs: Vec<(Digest, u64)> = image.layers()?;
        let config_size = store.blob_size(&image.config_digest).ok_or_else(|| oci::Error::BlobNotFound(image.config_digest.to_string()))?;
        blobs.push((image.config_digest.clone(), config_size));
        futures::stream::iter(blobs.into_iter().map(|(digest, size)| {
            let mounts = Arc::clone(mounts);
            async move { self.push_blob(store, remote, &digest, size, &mounts, progress).await }
        }))
        .buffer_unordered(self.options.max_concurrent_transfers.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    /// PUTs a stored manifest (or index) under `tag_or_digest` with its exact media type.
    /// Returns its size.
    pub(crate) async fn put_manifest(
        &self,
        store: &Store,
        remote: &Reference,
        tag_or_digest: &str,
        digest: &Digest,
        media_type: &str,
    ) -> Result<usize> {
        let bytes = store.read_blob(digest)?;
        let url = format!("{}{}/manifests/{tag_or_digest}", self.base_url(remote), remote.repository());
        let scope = format!("repository:{}:pull,push", remote.repository());
        let resp =
            self.send(remote.registry(), &scope, |http| Ok(http.put(&url).header(CONTENT_TYPE, media_type).body(bytes.clone()))).await?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", &url, resp).await);
        }
        Ok(bytes.len())
    }

    async fn push_blob(
        &self,
        store: &Store,
        remote: &Reference,
        digest: &Digest,
        size: u64,
        mounts: &[(Digest, String)],
        progress: &dyn Progress,
    ) -> Result<()> {
        self.push_blob_outcome(store, remote, digest, size, mounts, false, progress).await.map(|_| ())
    }

    /// Makes `digest` exist in `remote`'s repository: nothing if it is there (HEAD), a
    /// cross-repository mount if `mounts` names another repository of the registry holding it,
    /// else an upload from the store. Says which it was. `mount_first`: with a mount candidate,
    /// try the mount before the HEAD (one request instead of two when the mount works; a mount
    /// of a blob the repository has already is a success too), and HEAD only if it fails.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn push_blob_outcome(
        &self,
        store: &Store,
        remote: &Reference,
        digest: &Digest,
        size: u64,
        mounts: &[(Digest, String)],
        mount_first: bool,
        progress: &dyn Progress,
    ) -> Result<BlobPush> {
        let base = self.base_url(remote);
        let repo = remote.repository();
        let registry = remote.registry();
        let push_scope = format!("repository:{repo}:pull,push");
        let head_url = format!("{base}{repo}/blobs/{digest}");
        let mount = mounts.iter().find(|(d, from)| d == digest && from != repo);
        let head_first = !(mount_first && mount.is_some());
        if head_first {
            let resp = self.send(registry, &push_scope, |http| Ok(http.head(&head_url))).await?;
            if resp.status().is_success() {
                progress.finish(digest, "Layer already exists");
                return Ok(BlobPush::Existed);
            }
        }

        // Cross-repository mount: the registry links the blob without any upload.
        let mut location = None;
        if let Some((_, from)) = mount {
            let url = format!("{base}{repo}/blobs/uploads/?mount={digest}&from={from}");
            let scope = format!("{push_scope} repository:{from}:pull");
            let resp = self.send(registry, &scope, |http| Ok(http.post(&url).header(CONTENT_LENGTH, 0))).await?;
            match resp.status() {
                StatusCode::CREATED => {
                    progress.finish(digest, &format!("Mounted from {from}"));
                    return Ok(BlobPush::Mounted(from.clone()));
                }
                StatusCode::ACCEPTED => location = Some(self.location(&resp, &base)?),
                _ => tracing::debug!("mount of {digest} from {from} refused: HTTP {}", resp.status()),
            }
            if !head_first {
                let resp = self.send(registry, &push_scope, |http| Ok(http.head(&head_url))).await?;
                if resp.status().is_success() {
                    progress.finish(digest, "Layer already exists");
                    return Ok(BlobPush::Existed);
                }
            }
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let url = format!("{base}{repo}/blobs/uploads/");
                let resp = self.send(registry, &push_scope, |http| Ok(http.post(&url).header(CONTENT_LENGTH, 0))).await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error("POST", &url, resp).await);
                }
                self.location(&resp, &base)?
            }
        };

        progress.start(digest, size, "Pushing");
        let path = store.blob_path(digest);
        let sent = Arc::new(AtomicU64::new(0));
        let chunk_size = self.options.chunk_size.or((size > self.options.chunked_upload_threshold).then_some(64 * 1024 * 1024));
        if let Some(chunk) = chunk_size.filter(|c| *c > 0) {
            let mut offset = 0u64;
            while offset < size {
                let len = chunk.min(size - offset);
                let url = location.clone();
                let request = self.send(registry, &push_scope, |http| {
                    let body = file_body(&path, offset, len, &sent)?;
                    Ok(http
                        .patch(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_RANGE, format!("{}-{}", offset, offset + len - 1))
                        .header(CONTENT_LENGTH, len)
                        .body(body))
                });
                let resp = with_progress(request, &sent, digest, size, progress).await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error("PATCH", &redact(&url), resp).await);
                }
                location = self.location(&resp, &base)?;
                offset += len;
            }
            let mut url = location.clone();
            url.query_pairs_mut().append_pair("digest", &digest.to_string());
            let resp = self.send(registry, &push_scope, |http| Ok(http.put(url.clone()).header(CONTENT_LENGTH, 0))).await?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error("PUT", &redact(&url), resp).await);
            }
        } else {
            let mut url = location.clone();
            url.query_pairs_mut().append_pair("digest", &digest.to_string());
            let request = self.send(registry, &push_scope, |http| {
                let body = file_body(&path, 0, size, &sent)?;
                Ok(http.put(url.clone()).header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size).body(body))
            });
            let resp = with_progress(request, &sent, digest, size, progress).await?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error("PUT", &redact(&url), resp).await);
            }
        }
        self.counters.uploaded.fetch_add(size, Ordering::Relaxed);
        progress.finish(digest, "Pushed");
        Ok(BlobPush::Uploaded)
    }

    /// The upload URL a registry answered with (relative URLs resolved against it).
    fn location(&self, resp: &reqwest::Response, base: &str) -> Result<reqwest::Url> {
        let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let base = reqwest::Url::parse(base).map_err(|e| Error::Connection { url: base.into(), reason: e.to_string() })?;
        base.join(loc).map_err(|e| Error::Status {
            method: "POST".into(),
            url: redact(resp.url()),
            status: resp.status().as_u16(),
            message: format!("bad upload Location {loc:?}: {e}"),
        })
    }
}

/// A streaming request body: `len` bytes of the blob file from `offset`, counting progress.
fn file_body(path: &std::path::Path, offset: u64, len: u64, sent: &Arc<AtomicU64>) -> Result<reqwest::Body> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| Error::Io { op: "open blob", path: path.to_path_buf(), source: e })?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::Io { op: "seek", path: path.to_path_buf(), source: e })?;
    sent.store(offset, Ordering::Relaxed);
    // Read on a blocking thread, in 1 MiB pieces, so big layers never sit in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let path_owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        let mut file = file;
        while left > 0 {
            let mut buf = vec![0u8; left.min(1 << 20) as usize];
            match file.read_exact(&mut buf) {
                Ok(()) => {
                    left -= buf.len() as u64;
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), format!("{}: {e}", path_owned.display()))));
                    return;
                }
            }
        }
    });
    let sent = Arc::clone(sent);
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).map(move |item| {
        if let Ok(buf) = &item {
            sent.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        item
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Runs `fut` (a request whose body counts into `sent`) and reports progress while it runs.
async fn with_progress<F: std::future::Future>(
    fut: F,
    sent: &AtomicU64,
    digest: &Digest,
    total: u64,
    progress: &dyn Progress,
) -> F::Output {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            out = &mut fut => {
                progress.advance(digest, sent.load(Ordering::Relaxed), total);
                return out;
            }
            _ = tick.tick() => progress.advance(digest, sent.load(Ordering::Relaxed), total),
        }
    }
}

/// Blobs that other local tags of the same registry (other repositories) contain: candidates
/// for a cross-repository mount, as (blob, repository).
fn mount_sources(store: &Store, remote: &Reference) -> Vec<(Digest, String)> {
    let mut out = Vec::new();
    let Ok(tags) = store.list() else { return out };
    for (r, desc) in tags {
        if r.registry() != remote.registry() || r.repository() == remote.repository() {
            continue;
        }
        let Ok(image) = store.image_from_descriptor(&desc) else {
            continue;
        };
        let Ok(layers) = image.layers() else { continue };
        out.extend(layers.into_iter().map(|(d, _)| (d, r.repository().to_string())));
        out.push((image.config_digest.clone(), r.repository().to_string()));
    }
    out
}

/// The manifests of a stored index (digest, media type), if every one of them and all their
/// blobs are in the store.
fn complete_index(store: &Store, index: &Digest) -> Option<Vec<(Digest, String)>> {
    let index: oci::spec::ImageIndex = store.read_json(index).ok()?;
    let mut out = Vec::new();
    for d in index.manifests() {
        let digest = Digest::try_from(d.digest()).ok()?;
        let image = store.image_from_descriptor(d).ok()?;
        if !image.blobs().ok()?.iter().all(|b| store.has_blob(b)) {
            return None;
        }
        out.push((digest, d.media_type().to_string()));
    }
    Some(out)
}
