//! `--cache-from`: every source is read once when the build starts; a fault is a warning and
//! that source is left out, so a bad cache can slow a build down but never change its result.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use oci::{Digest, Reference, Store};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::{CONFIG_MEDIA_TYPE, CacheConfig, CacheEntry, INLINE_ANNOTATION, LayerBlob};
use crate::layout::Layout;
use crate::spec::CacheFrom;

/// A source that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportWarning {
    /// The ref or directory, as given.
    pub source: String,
    pub reason: String,
}

impl fmt::Display for ImportWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--cache-from {}: {}; building without it", self.source, self.reason)
    }
}

/// Where an imported layer blob can be fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobLocation {
    /// A repository of a registry (the cache ref, or the image with the inline cache).
    Registry(Reference),
    /// A local cache directory.
    Local(PathBuf),
}

/// The entries of every `--cache-from` source that could be read.
pub struct CacheImport {
    /// Key -> entry and the index of the source it came from (the first source naming a key wins).
    entries: HashMap<String, (CacheEntry, usize)>,
    by_step: HashMap<String, Vec<String>>,
    locations: Vec<BlobLocation>,
    /// Which sources list each blob.
    blob_sources: HashMap<Digest, Vec<usize>>,
    warnings: Vec<ImportWarning>,
    client: Option<Arc<registry::Client>>,
    /// Each readable source's name and config, by index (to drop a source after the fact).
    sources: Vec<(String, CacheConfig)>,
}

impl fmt::Debug for CacheImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheImport").field("entries", &self.entries.len()).field("locations", &self.locations).finish()
    }
}

impl CacheImport {
    /// An import of nothing (no `--cache-from`).
    pub fn empty() -> CacheImport {
        CacheImport {
            entries: HashMap::new(),
            by_step: HashMap::new(),
            locations: Vec::new(),
            blob_sources: HashMap::new(),
            warnings: Vec::new(),
            client: None,
            sources: Vec::new(),
        }
    }

    /// Reads every source (blocking). Cache configs go through `store` (verified there); layer
    /// blobs are not fetched.
    pub fn load(sources: &[CacheFrom], client: Arc<registry::Client>, store: &Store) -> CacheImport {
        let client2 = Arc::clone(&client);
        match client2.run(CacheImport::load_async(sources, Arc::clone(&client), store)) {
            Ok(import) => import,
            Err(e) => {
                let mut import = CacheImport::empty();
                import.warnings = sources.iter().map(|s| ImportWarning { source: s.name(), reason: e.to_string() }).collect();
                import
            }
        }
    }

    /// The async twin of [`CacheImport::load`]. Sources are read concurrently.
    pub async fn load_async(sources: &[CacheFrom], client: Arc<registry::Client>, store: &Store) -> CacheImport {
        let loads = sources.iter().map(|source| {
            let client = Arc::clone(&client);
            async move {
                match source {
                    CacheFrom::Registry { reference } => read_registry(&client, reference, store).await,
                    CacheFrom::Local { src, tag } => read_local(src, tag),
                }
            }
        });
        let results = futures::future::join_all(loads).await;
        let mut import = CacheImport::empty();
        import.client = Some(client);
        for (source, result) in sources.iter().zip(results) {
            match result {
                Ok((config, location)) => import.add(source.name(), config, location),
                Err(reason) => {
                    // The build's progress shows it (as a warning); the log need not repeat it.
                    let warning = ImportWarning { source: source.name(), reason };
                    tracing::debug!("{warning}");
                    import.warnings.push(warning);
                }
            }
        }
        import
    }

    fn add(&mut self, name: String, config: CacheConfig, location: BlobLocation) {
        let index = self.locations.len();
        self.locations.push(location);
        self.sources.push((name, config.clone()));
        for entry in config.entries {
            for layer in &entry.layers {
                let sources = self.blob_sources.entry(layer.digest.clone()).or_default();
                if !sources.contains(&index) {
                    sources.push(index);
                }
            }
            if self.entries.contains_key(&entry.key) {
                continue;
            }
            self.by_step.entry(entry.provenance.step.clone()).or_default().push(entry.key.clone());
            self.entries.insert(entry.key.clone(), (entry, index));
        }
    }

    /// The names of the readable sources that list the blob `digest`.
    pub fn sources_of(&self, digest: &Digest) -> Vec<String> {
        self.blob_sources.get(digest).into_iter().flatten().map(|i| self.sources[*i].0.clone()).collect()
    }

    /// This import without the sources named in `drop` (a source found to be bad during the
    /// build, e.g. a layer that does not match its digest): their entries are gone, and the
    /// entries of the other sources that they had shadowed are back.
    pub fn without(&self, drop: &[String]) -> CacheImport {
        let mut out = CacheImport::empty();
        out.client = self.client.clone();
        out.warnings = self.warnings.clone();
        for ((name, config), location) in self.sources.iter().zip(&self.locations) {
            if !drop.contains(name) {
                out.add(name.clone(), config.clone(), location.clone());
            }
        }
        out
    }

    /// The sources that were left out.
    pub fn warnings(&self) -> &[ImportWarning] {
        &self.warnings
    }

    /// How many entries the readable sources hold.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of a cache key (64 hex digits).
    pub fn lookup(&self, key_hex: &str) -> Option<&CacheEntry> {
        self.entries.get(key_hex).map(|(e, _)| e)
    }

    /// Every entry of the same step of the same Dockerfile (for explaining a miss).
    pub fn by_step(&self, step: &str) -> Vec<&CacheEntry> {
        self.by_step.get(step).into_iter().flatten().filter_map(|k| self.lookup(k)).collect()
    }

    /// Where a blob can be fetched from, best first (registries before directories: a registry
    /// blob can be mounted instead of moved).
    pub fn locations(&self, blob: &LayerBlob) -> Vec<BlobLocation> {
        self.locations_of(&blob.digest)
    }

    /// [`CacheImport::locations`] by digest.
    pub fn locations_of(&self, digest: &Digest) -> Vec<BlobLocation> {
        let mut out: Vec<BlobLocation> = self.blob_sources.get(digest).into_iter().flatten().map(|i| self.locations[*i].clone()).collect();
        out.sort_by_key(|l| matches!(l, BlobLocation::Local(_)));
        out
    }

    /// Fetches a layer blob into `store`, verified against its digest and size (nothing if the
    /// store has it). Returns the bytes moved. Blocking.
    pub fn fetch_blob(&self, blob: &LayerBlob, store: &Store) -> Result<u64> {
        if store.blob_size(&blob.digest) == Some(blob.size) {
            return Ok(0);
        }
        let mut last = Error::BlobUnknown { digest: blob.digest.to_string() };
        for location in self.locations(blob) {
            let result = match &location {
                BlobLocation::Registry(reference) => match &self.client {
                    Some(client) => client
                        .run(client.download_blob_async(reference, &blob.digest, blob.size, store))
                        .and_then(|r| r)
                        .map_err(|source| Error::registry(reference, source)),
                    None => Err(Error::BlobUnknown { digest: blob.digest.to_string() }),
                },
                BlobLocation::Local(dir) => {
                    let path = Layout::new(dir).blob_path(&blob.digest);
                    std::fs::File::open(&path)
                        .map_err(Error::io("open", &path))
                        .and_then(|f| store.write_blob(f, &blob.digest, Some(blob.size)).map_err(Error::from))
                        .map(|_| blob.size)
                }
            };
            match result {
                Ok(n) => return Ok(n),
                Err(e) => {
                    tracing::debug!("fetching cached layer {} from {location:?}: {e}", blob.digest);
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// Reads a cache artifact, or an image with an inline cache, from a registry.
async fn read_registry(client: &registry::Client, reference: &Reference, store: &Store) -> Result<(CacheConfig, BlobLocation), String> {
    let mut manifest = client.manifest_async(reference).await.map_err(|e| describe(&e))?;
    if oci::media::is_index(&manifest.media_type) {
        // An image index: the inline cache is in the manifest of this machine's platform.
        let index: oci::spec::ImageIndex = serde_json::from_slice(&manifest.bytes).map_err(|e| format!("malformed image index: {e}"))?;
        let chosen = oci::choose_platform(&index, &oci::Platform::host()).map_err(|e| e.to_string())?;
        let digest = Digest::try_from(chosen.digest()).map_err(|e| e.to_string())?;
        manifest = client.manifest_async(&reference.with_digest(digest)).await.map_err(|e| describe(&e))?;
    }
    let doc: Value = serde_json::from_slice(&manifest.bytes).map_err(|e| format!("malformed manifest: {e}"))?;
    let config_type = doc["config"]["mediaType"].as_str().unwrap_or_default();
    let name = reference.to_string();
    let config = if config_type == CONFIG_MEDIA_TYPE {
        let digest: Digest =
            doc["config"]["digest"].as_str().unwrap_or_default().parse().map_err(|e| format!("cache manifest config: {e}"))?;
        let size = doc["config"]["size"].as_u64().ok_or("cache manifest config has no size")?;
        client.download_blob_async(reference, &digest, size, store).await.map_err(|e| describe(&e))?;
        let bytes = store.read_blob(&digest).map_err(|e| e.to_string())?;
        let config = CacheConfig::parse(&bytes, &name).map_err(|e| strip_source(e, &name))?;
        check_layers_listed(&config, &doc)?;
        config
    } else if let Some(inline) = doc["annotations"][INLINE_ANNOTATION].as_str() {
        let config = CacheConfig::parse(inline.as_bytes(), &name).map_err(|e| strip_source(e, &name))?;
        check_layers_listed(&config, &doc)?;
        config
    } else if oci::media::is_manifest(&manifest.media_type) && !config_type.is_empty() {
        return Err("it is an image without an inline cache (build it with --cache-to type=inline)".into());
    } else {
        return Err(format!("it is not a build cache (config media type {config_type:?})"));
    };
    Ok((config, BlobLocation::Registry(reference.clone())))
}

/// Every blob an entry names must be a layer of the artifact: it is what makes the registry keep
/// them (and what a cross-repository mount can rely on).
fn check_layers_listed(config: &CacheConfig, doc: &Value) -> Result<(), String> {
    let listed: std::collections::HashSet<&str> =
        doc["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str()).collect();
    for blob in config.blobs() {
        if !listed.contains(blob.digest.to_string().as_str()) {
            return Err(format!("cache entry layer {} is not a layer of the cache manifest", blob.digest));
        }
    }
    Ok(())
}

fn read_local(src: &std::path::Path, tag: &str) -> Result<(CacheConfig, BlobLocation), String> {
    let layout = Layout::new(src);
    let name = src.display().to_string();
    let (bytes, _) = layout.read_tag(tag).map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("malformed manifest: {e}"))?;
    if doc["config"]["mediaType"].as_str() != Some(CONFIG_MEDIA_TYPE) {
        return Err(format!("it is not a build cache (config media type {:?})", doc["config"]["mediaType"]));
    }
    let digest: Digest = doc["config"]["digest"].as_str().unwrap_or_default().parse().map_err(|e| format!("cache manifest config: {e}"))?;
    let config_bytes = layout.read_blob(&digest).map_err(|e| e.to_string())?;
    let config = CacheConfig::parse(&config_bytes, &name).map_err(|e| strip_source(e, &name))?;
    check_layers_listed(&config, &doc)?;
    Ok((config, BlobLocation::Local(src.to_path_buf())))
}

/// The reason of a registry error in the words a warning needs.
fn describe(e: &registry::Error) -> String {
    match e {
        registry::Error::NotFound { .. } => "not found in the registry".into(),
        other => other.to_string(),
    }
}

/// A config error without its `source: ` prefix (the warning names the source already).
fn strip_source(e: Error, name: &str) -> String {
    let s = e.to_string();
    s.strip_prefix(&format!("{name}: ")).map(String::from).unwrap_or(s)
}
