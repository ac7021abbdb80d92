//! `--cache-from`: every source is read once when the build starts; a fault is a warning and
//! that source is left out, so a bad cache can slow a build down but never change its result.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use oci::{Digest, Reference, Store};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::{
    BlobRef, CONFIG_MEDIA_TYPE, CONFIG_MEDIA_TYPE_V1, CacheConfig, CachedResult, INLINE_ANNOTATION, INLINE_ANNOTATION_V1, INLINE_PROVENANCE_ANNOTATION, LayerBlob,
    Provenance, ProvenanceDoc,
};
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
    /// Key -> result and the index of the source it came from (the first source naming a key wins).
    entries: HashMap<String, (CachedResult, usize)>,
    locations: Vec<BlobLocation>,
    /// Which sources list each blob.
    blob_sources: HashMap<Digest, Vec<usize>>,
    warnings: Vec<ImportWarning>,
    client: Option<Arc<registry::Client>>,
    /// Where fetched provenance blobs are kept (verified there).
    store: Option<Store>,
    /// Each readable source, by index (to drop a source after the fact).
    sources: Vec<Source>,
}

/// One readable source.
#[derive(Clone)]
struct Source {
    name: String,
    results: Arc<Vec<(String, CachedResult)>>,
    provenance: Arc<LazyProvenance>,
}

/// What a source read when the build started: its results, and where its provenance is.
struct Loaded {
    results: Vec<(String, CachedResult)>,
    provenance: ProvenanceAt,
}

/// A source's provenance, read the first time a step misses.
struct LazyProvenance {
    at: ProvenanceAt,
    loaded: OnceLock<Vec<Provenance>>,
}

enum ProvenanceAt {
    None,
    /// Carried inline (the image manifest's annotation).
    Inline(Vec<Provenance>),
    /// A blob of the cache artifact.
    Blob { digest: Digest, size: u64 },
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
            locations: Vec::new(),
            blob_sources: HashMap::new(),
            warnings: Vec::new(),
            client: None,
            store: None,
            sources: Vec::new(),
        }
    }

    /// Reads every source (blocking). Cache configs go through `store` (verified there); layer
    /// blobs and provenance blobs are not fetched.
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
        import.store = Some(store.clone());
        for (source, result) in sources.iter().zip(results) {
            match result {
                Ok((loaded, location)) => {
                    let provenance = Arc::new(LazyProvenance { at: loaded.provenance, loaded: OnceLock::new() });
                    import.add(Source { name: source.name(), results: Arc::new(loaded.results), provenance }, location);
                }
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

    fn add(&mut self, source: Source, location: BlobLocation) {
        let index = self.locations.len();
        self.locations.push(location);
        for (key, result) in source.results.iter() {
            for layer in &result.layers {
                let sources = self.blob_sources.entry(layer.digest.clone()).or_default();
                if !sources.contains(&index) {
                    sources.push(index);
                }
            }
            self.entries.entry(key.clone()).or_insert_with(|| (result.clone(), index));
        }
        self.sources.push(source);
    }

    /// The names of the readable sources that list the blob `digest`.
    pub fn sources_of(&self, digest: &Digest) -> Vec<String> {
        self.blob_sources.get(digest).into_iter().flatten().map(|i| self.sources[*i].name.clone()).collect()
    }

    /// This import without the sources named in `drop` (a source found to be bad during the
    /// build, e.g. a layer that does not match its digest): their entries are gone, and the
    /// entries of the other sources that they had shadowed are back.
    pub fn without(&self, drop: &[String]) -> CacheImport {
        let mut out = CacheImport::empty();
        out.client = self.client.clone();
        out.store = self.store.clone();
        out.warnings = self.warnings.clone();
        for (source, location) in self.sources.iter().zip(&self.locations) {
            if !drop.contains(&source.name) {
                out.add(source.clone(), location.clone());
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

    /// The result of a cache key (64 hex digits).
    pub fn lookup(&self, key_hex: &str) -> Option<&CachedResult> {
        self.entries.get(key_hex).map(|(e, _)| e)
    }

    /// The provenance of every entry of the same step of the same Dockerfile (for explaining a
    /// miss). The first call reads each source's provenance blob (blocking; verified against
    /// its digest); a source whose provenance cannot be read explains nothing.
    pub fn by_step(&self, step: &str) -> Vec<Provenance> {
        let mut out = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let all = source.provenance.loaded.get_or_init(|| match self.read_provenance(&source.provenance.at, &self.locations[i], &source.name) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("--cache-from {}: reading its provenance (to explain a cache miss): {e}", source.name);
                    Vec::new()
                }
            });
            out.extend(all.iter().filter(|p| p.step == step).cloned());
        }
        out
    }

    fn read_provenance(&self, at: &ProvenanceAt, location: &BlobLocation, name: &str) -> Result<Vec<Provenance>> {
        let (digest, size) = match at {
            ProvenanceAt::None => return Ok(Vec::new()),
            ProvenanceAt::Inline(p) => return Ok(p.clone()),
            ProvenanceAt::Blob { digest, size } => (digest, *size),
        };
        let bytes = match location {
            BlobLocation::Registry(reference) => {
                let (Some(client), Some(store)) = (&self.client, &self.store) else { return Ok(Vec::new()) };
                client
                    .run(client.download_blob_async(reference, digest, size, store))
                    .and_then(|r| r)
                    .map_err(|source| Error::registry(reference, source))?;
                store.read_blob(digest)?
            }
            BlobLocation::Local(dir) => Layout::new(dir).read_blob(digest)?,
        };
        tracing::debug!(source = name, bytes = bytes.len(), "read the provenance of an imported cache");
        Ok(ProvenanceDoc::parse(&bytes, name)?.steps)
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
async fn read_registry(client: &registry::Client, reference: &Reference, store: &Store) -> Result<(Loaded, BlobLocation), String> {
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
    let loaded = if config_type == CONFIG_MEDIA_TYPE || config_type == CONFIG_MEDIA_TYPE_V1 {
        let (digest, size) = config_descriptor(&doc)?;
        client.download_blob_async(reference, &digest, size, store).await.map_err(|e| describe(&e))?;
        let bytes = store.read_blob(&digest).map_err(|e| e.to_string())?;
        artifact(&bytes, &doc, &name)?
    } else if let Some(inline) = doc["annotations"][INLINE_ANNOTATION].as_str().or(doc["annotations"][INLINE_ANNOTATION_V1].as_str()) {
        let config = CacheConfig::parse(inline.as_bytes(), &name).map_err(|e| strip_source(e, &name))?;
        let results = config.decode(&manifest_layers(&doc)?, &name).map_err(|e| strip_source(e, &name))?;
        let provenance = match doc["annotations"][INLINE_PROVENANCE_ANNOTATION].as_str() {
            Some(p) => ProvenanceAt::Inline(ProvenanceDoc::parse(p.as_bytes(), &name).map_err(|e| strip_source(e, &name))?.steps),
            None => ProvenanceAt::None,
        };
        Loaded { results, provenance }
    } else if oci::media::is_manifest(&manifest.media_type) && !config_type.is_empty() {
        return Err("it is an image without an inline cache (build it with --cache-to type=inline)".into());
    } else {
        return Err(format!("it is not a build cache (config media type {config_type:?})"));
    };
    Ok((loaded, BlobLocation::Registry(reference.clone())))
}

fn config_descriptor(doc: &Value) -> Result<(Digest, u64), String> {
    let digest: Digest = doc["config"]["digest"].as_str().unwrap_or_default().parse().map_err(|e| format!("cache manifest config: {e}"))?;
    let size = doc["config"]["size"].as_u64().ok_or("cache manifest config has no size")?;
    Ok((digest, size))
}

/// The manifest's `layers`: every blob a config names is one of them (it is what makes the
/// registry keep them, and what a cross-repository mount can rely on).
fn manifest_layers(doc: &Value) -> Result<Vec<BlobRef>, String> {
    let mut out = Vec::new();
    for (i, l) in doc["layers"].as_array().into_iter().flatten().enumerate() {
        let digest: Digest = l["digest"].as_str().unwrap_or_default().parse().map_err(|e| format!("cache manifest layer {i}: {e}"))?;
        let size = l["size"].as_u64().ok_or_else(|| format!("cache manifest layer {i} has no size"))?;
        out.push(BlobRef { digest, size, media_type: l["mediaType"].as_str().unwrap_or_default().to_string() });
    }
    Ok(out)
}

/// A cache artifact's results from its config blob and manifest; its provenance blob is left
/// where it is until a miss needs it.
fn artifact(config_bytes: &[u8], doc: &Value, name: &str) -> Result<Loaded, String> {
    let config = CacheConfig::parse(config_bytes, name).map_err(|e| strip_source(e, name))?;
    let layers = manifest_layers(doc)?;
    let results = config.decode(&layers, name).map_err(|e| strip_source(e, name))?;
    let provenance = match &config.provenance {
        None => ProvenanceAt::None,
        Some(digest) => {
            let blob = layers.iter().find(|l| &l.digest == digest).ok_or_else(|| format!("cache provenance {digest} is not a layer of the cache manifest"))?;
            ProvenanceAt::Blob { digest: digest.clone(), size: blob.size }
        }
    };
    Ok(Loaded { results, provenance })
}

fn read_local(src: &std::path::Path, tag: &str) -> Result<(Loaded, BlobLocation), String> {
    let layout = Layout::new(src);
    let name = src.display().to_string();
    let (bytes, _) = layout.read_tag(tag).map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("malformed manifest: {e}"))?;
    let config_type = doc["config"]["mediaType"].as_str().unwrap_or_default();
    if config_type != CONFIG_MEDIA_TYPE && config_type != CONFIG_MEDIA_TYPE_V1 {
        return Err(format!("it is not a build cache (config media type {config_type:?})"));
    }
    let (digest, _) = config_descriptor(&doc)?;
    let config_bytes = layout.read_blob(&digest).map_err(|e| e.to_string())?;
    Ok((artifact(&config_bytes, &doc, &name)?, BlobLocation::Local(src.to_path_buf())))
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
