//! Pull: manifest (choosing a platform from an index), then config and layers in parallel,
//! each streamed into the store and verified against its digest and size.

use std::io::Write;

use futures::{StreamExt, TryStreamExt};
use oci::spec::{ImageIndex, ImageManifest};
use oci::{Digest, Platform, Reference, Store, media};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};

use crate::client::{Client, error_chain, redact, status_error};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Manifests larger than this are refused (real ones are a few KiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What the pull Accept header lists, most preferred first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference the image is now tagged as locally.
    pub reference: Reference,
    /// Digest of the (platform) manifest that was stored.
    pub manifest_digest: Digest,
    /// Digest of the index the manifest was chosen from, if the reference named an index.
    pub index_digest: Option<Digest>,
    /// The image ID.
    pub config_digest: Digest,
    /// Bytes downloaded (blobs already in the store are not counted).
    pub downloaded_bytes: u64,
}

/// A fetched manifest document, its exact bytes and what it is.
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

impl Client {
    /// Pulls `reference` into `store` and tags it there. `platform` (`os/arch[/variant]`) picks
    /// from a multi-platform index; the default is this machine's. Blocking.
    pub fn pull(&self, reference: &Reference, platform: Option<&str>, store: &Store, progress: &dyn Progress) -> Result<PulledImage> {
        self.block_on(self.pull_async(reference, platform, store, progress))?
    }

    /// The async twin of [`Client::pull`].
    pub async fn pull_async(
        &self,
        reference: &Reference,
        platform: Option<&str>,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<PulledImage> {
        let platform = match platform {
            Some(p) => p.parse::<Platform>()?,
            None => Platform::host(),
        };
        let top = self.fetch_manifest(reference, &reference.tag_or_digest()).await?;
        if let Some(want) = reference.digest()
            && *want != top.digest {
                return Err(Error::BadManifest {
                    reference: reference.to_string(),
                    reason: format!("the registry sent content with digest {}, not the requested {want}", top.digest),
                });
            }
        let (manifest_doc, index_digest) = if media::is_index(&top.media_type) {
            let index: ImageIndex = serde_json::from_slice(&top.bytes)
                .map_err(|e| Error::BadManifest { reference: reference.to_string(), reason: format!("invalid image index JSON: {e}") })?;
            let chosen = oci::choose_platform(&index, &platform)
                .map_err(|e| Error::BadManifest { reference: reference.to_string(), reason: e.to_string() })?;
            let digest = Digest::try_from(chosen.digest())?;
            let doc = self.fetch_manifest(reference, &digest.to_string()).await?;
            if doc.digest != digest {
                return Err(Error::BadManifest {
                    reference: reference.to_string(),
                    reason: format!("platform manifest has digest {}, the index said {digest}", doc.digest),
                });
            }
            (doc, Some(top.digest.clone()))
        } else {
            (top, None)
        };
        if !media::is_manifest(&manifest_doc.media_type) {
            return Err(Error::BadManifest {
                reference: reference.to_string(),
                reason: format!("unsupported manifest type {:?}", manifest_doc.media_type),
            });
        }
        let manifest: ImageManifest = serde_json::from_slice(&manifest_doc.bytes)
            .map_err(|e| Error::BadManifest { reference: reference.to_string(), reason: format!("invalid image manifest JSON: {e}") })?;
        progress.message(&format!("{}: Pulling from {}", reference.tag_or_digest(), reference.familiar_name()));

        let config_digest = Digest::try_from(manifest.config().digest())?;
        let mut blobs = vec![(config_digest.clone(), manifest.config().size(), false)];
        for layer in manifest.layers() {
            blobs.push((Digest::try_from(layer.digest())?, layer.size(), true));
        }
        let downloaded: Vec<u64> = futures::stream::iter(blobs.into_iter().map(|(digest, size, is_layer)| async move {
            self.fetch_blob(reference, &digest, size, store, if is_layer { Some(progress) } else { None }).await
        }))
        .buffer_unordered(self.options.max_concurrent_transfers.max(1))
        .try_collect()
        .await?;

        // The config must be the image config JSON, or the stored image would be unusable.
        store.read_json::<oci::spec::ImageConfiguration>(&config_digest).map_err(|e| Error::BadManifest {
            reference: reference.to_string(),
            reason: format!("its config blob {config_digest} is not an image config: {e}"),
        })?;
        let stored = store.put_bytes(&manifest_doc.bytes)?;
        let mut desc = oci::spec::Descriptor::new(manifest_doc.media_type.as_str().into(), stored.size, stored.digest.to_spec());
        if let Some(index) = &index_digest {
            desc.set_annotations(Some(std::collections::HashMap::from([(oci::REPO_DIGEST_ANNOTATION.to_string(), index.to_string())])));
        }
        store.tag(reference, desc)?;
        progress.message(&format!("Digest: {}", index_digest.as_ref().unwrap_or(&stored.digest)));
        Ok(PulledImage {
            reference: reference.clone(),
            manifest_digest: stored.digest,
            index_digest,
            config_digest,
            downloaded_bytes: downloaded.iter().sum(),
        })
    }

    /// GET a manifest by tag or digest, with the exact Accept list.
    pub(crate) async fn fetch_manifest(&self, reference: &Reference, tag_or_digest: &str) -> Result<Fetched> {
        let url = format!("{}{}/manifests/{tag_or_digest}", self.base_url(reference), reference.repository());
        let scope = format!("repository:{}:pull", reference.repository());
        let mut resp = self.send(reference.registry(), &scope, |http| Ok(http.get(&url).header(ACCEPT, MANIFEST_ACCEPT))).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::NotFound { registry: reference.registry().into(), what: format!("manifest {}", reference.familiar()) });
            }
            _ => return Err(status_error("GET", &url, resp).await),
        }
        let content_type =
            resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Connection { url: url.clone(), reason: error_chain(&e) })? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_MANIFEST_BYTES {
                return Err(Error::BadManifest {
                    reference: reference.to_string(),
                    reason: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
                });
            }
        }
        let sniffed = media::sniff(&bytes);
        if sniffed.is_none() {
            let reason = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Err(e) => format!("not valid JSON: {e}"),
                Ok(_) => "JSON without mediaType, manifests or layers".into(),
            };
            return Err(Error::BadManifest { reference: reference.to_string(), reason });
        }
        let media_type = match content_type {
            Some(ct) if media::is_index(&ct) || media::is_manifest(&ct) => ct,
            _ => sniffed.unwrap_or_default(),
        };
        if media_type.starts_with("application/vnd.docker.distribution.manifest.v1") {
            return Err(Error::BadManifest {
                reference: reference.to_string(),
                reason: "Docker schema 1 manifests are not supported".into(),
            });
        }
        Ok(Fetched { digest: Digest::sha256_of(&bytes), bytes, media_type })
    }

    /// Downloads one blob into the store unless it is there. A connection that breaks mid-blob
    /// is resumed with a Range request (or restarted if the registry ignores Range). Returns the
    /// bytes downloaded.
    pub(crate) async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        store: &Store,
        progress: Option<&dyn Progress>,
    ) -> Result<u64> {
        if store.blob_size(digest) == Some(size) {
            if let Some(p) = progress {
                p.finish(digest, "Already exists");
            }
            return Ok(0);
        }
        if let Some(p) = progress {
            p.start(digest, size, "Downloading");
        }
        let url = format!("{}{}/blobs/{digest}", self.base_url(reference), reference.repository());
        let scope = format!("repository:{}:pull", reference.repository());
        let mut writer = store.blob_writer()?;
        let mut breaks = 0u32;
        'request: loop {
            let offset = writer.written();
            let mut resp = self
                .send(reference.registry(), &scope, |http| {
                    let req = http.get(&url);
                    Ok(if offset > 0 { req.header(RANGE, format!("bytes={offset}-")) } else { req })
                })
                .await?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT if offset > 0 => {}
                StatusCode::OK => {
                    if offset > 0 {
                        writer = store.blob_writer()?;
                    }
                }
                StatusCode::NOT_FOUND => {
                    return Err(Error::NotFound {
                        registry: reference.registry().into(),
                        what: format!("blob {digest} of {}", reference.familiar()),
                    });
                }
                _ => return Err(status_error("GET", &redact_str(&url), resp).await),
            }
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        if writer.written() + chunk.len() as u64 > size {
                            return Err(Error::BadBlob {
                                registry: reference.registry().into(),
                                digest: digest.to_string(),
                                source: oci::Error::SizeMismatch {
                                    digest: digest.to_string(),
                                    expected: size,
                                    actual: writer.written() + chunk.len() as u64,
                                },
                            });
                        }
                        writer.write_all(&chunk).map_err(|e| Error::Io {
                            op: "write",
                            path: writer.tmp_path().to_path_buf(),
                            source: e,
                        })?;
                        if let Some(p) = progress {
                            p.advance(digest, writer.written(), size);
                        }
                    }
                    Ok(None) => break 'request,
                    Err(e) => {
                        breaks += 1;
                        if breaks > self.options.retries {
                            return Err(Error::Connection {
                                url: redact_str(&url),
                                reason: format!("download broke off after {} of {size} bytes: {}", writer.written(), error_chain(&e)),
                            });
                        }
                        self.backoff(breaks - 1, &format!("download of {digest} broke off at {} bytes", writer.written())).await;
                        continue 'request;
                    }
                }
            }
        }
        if writer.written() != size {
            return Err(Error::BadBlob {
                registry: reference.registry().into(),
                digest: digest.to_string(),
                source: oci::Error::SizeMismatch { digest: digest.to_string(), expected: size, actual: writer.written() },
            });
        }
        writer.commit(Some(digest)).map_err(|e| Error::BadBlob {
            registry: reference.registry().into(),
            digest: digest.to_string(),
            source: e,
        })?;
        if let Some(p) = progress {
            p.finish(digest, "Pull complete");
        }
        self.counters.downloaded.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        Ok(size)
    }
}

fn redact_str(url: &str) -> String {
    reqwest::Url::parse(url).map(|u| redact(&u)).unwrap_or_else(|_| url.to_string())
}
