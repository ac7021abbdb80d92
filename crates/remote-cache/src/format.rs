//! The cache artifact's own JSON, version 2: a [`CacheConfig`] mapping cache keys to results
//! (linear in the number of steps: each layer is described once, each entry names its top
//! layer), and a separate provenance blob for explaining misses, fetched only when a step misses.
//!
//! The build works with [`CacheEntry`] (a key, its whole layer chain, its provenance);
//! [`encode`] turns entries into the two documents, [`decode`] turns a config and the manifest's
//! layers back into [`CachedResult`]s.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use oci::Digest;
use serde::{Deserialize, Serialize};

/// Media type of the cache config blob (zstd-compressed JSON), and the artifact type of the
/// cache manifest.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.builder.cache.config.v2+json+zstd";
/// The config media type of version 1 caches (recognised as caches, refused by version).
pub const CONFIG_MEDIA_TYPE_V1: &str = "application/vnd.builder.cache.config.v1+json";
/// The manifest's `artifactType` (the same as its config's media type, as OCI 1.1 suggests).
pub const ARTIFACT_TYPE: &str = CONFIG_MEDIA_TYPE;
/// Media type of the provenance blob (zstd-compressed JSON), the manifest's last layer.
pub const PROVENANCE_MEDIA_TYPE: &str = "application/vnd.builder.cache.provenance.v2+json+zstd";
/// The only config version this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Annotation of an image manifest that carries its build's cache config inline (the config
/// JSON itself, uncompressed; its layer indexes are into the image manifest's layers).
pub const INLINE_ANNOTATION: &str = "dev.builder.cache.config.v2";
/// The annotation of a version 1 inline cache (refused by version).
pub const INLINE_ANNOTATION_V1: &str = "dev.builder.cache.config.v1";
/// Annotation carrying the inline cache's provenance JSON.
pub const INLINE_PROVENANCE_ANNOTATION: &str = "dev.builder.cache.provenance.v2";

/// One step's result as the build exports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// The cache key, 64 hex digits: machine-independent, so another machine computes it too.
    pub key: String,
    /// The whole layer chain of the result, bottom first, base image layers included.
    pub layers: Vec<LayerBlob>,
    /// What went into the key, by name, for explaining misses.
    pub provenance: Provenance,
    /// When the result was first made (seconds since the epoch): a hit's image gets the very
    /// history times, so the same image digest, as on the machine that built it.
    pub created: u64,
}

/// One step's result as an import knows it: all a hit needs, nothing downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResult {
    /// The whole layer chain, bottom first.
    pub layers: Vec<LayerBlob>,
    pub created: u64,
}

/// A layer of a cached result, as a blob: enough to use it without downloading it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerBlob {
    /// The compressed blob's digest.
    pub digest: Digest,
    /// The digest of the uncompressed tar (what the image config's `rootfs.diff_ids` lists).
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

/// Where a step's result came from: a stable id of "this step of this Dockerfile" and its
/// ingredients by name (`file:src/app.py`, `arg:VERSION`, `base:…`, `parent`, `op`), each a
/// digest, never a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// A stable id of this step of this Dockerfile, none of its inputs' contents in it.
    pub step: String,
    /// As progress shows it: `[build 3/5] COPY src/ /app`.
    pub description: String,
    /// Ingredient name -> digest.
    pub inputs: BTreeMap<String, String>,
}

/// The config blob of a cache artifact (version 2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    /// The layer chains, each layer once: a layer names its blob (an index into the manifest's
    /// `layers`) and the layer below it (an index into this list, smaller than its own).
    pub layers: Vec<ChainLayer>,
    pub entries: Vec<ConfigEntry>,
    /// The provenance blob (a layer of the manifest), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Digest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainLayer {
    pub blob: usize,
    pub diff_id: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    /// The top layer of the result's chain (none: an empty filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    #[serde(default)]
    pub created: u64,
}

/// The provenance blob: every exported step's provenance, for explaining misses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceDoc {
    pub version: u32,
    pub steps: Vec<Provenance>,
}

/// A blob as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// The distinct layer blobs of `entries`, in order of first appearance (entries sorted by key,
/// each chain bottom first): the artifact's `layers`, before the provenance blob.
pub fn blobs(entries: &[CacheEntry]) -> Vec<LayerBlob> {
    let mut seen = std::collections::HashSet::new();
    sorted(entries).iter().flat_map(|e| e.layers.iter()).filter(|l| seen.insert(l.digest.clone())).cloned().collect()
}

/// Entries sorted by key, one per key.
fn sorted(entries: &[CacheEntry]) -> Vec<CacheEntry> {
    let mut sorted = entries.to_vec();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted.dedup_by(|a, b| a.key == b.key);
    sorted
}

/// The config and the provenance document of `entries`, the config's blob indexes into
/// `manifest_layers` (entries with a layer not among them are left out). `provenance` is the
/// provenance blob's digest the config names (none: inline, or not yet known).
pub fn encode(entries: &[CacheEntry], manifest_layers: &[Digest]) -> (CacheConfig, ProvenanceDoc) {
    let index: HashMap<&Digest, usize> = manifest_layers.iter().enumerate().map(|(i, d)| (d, i)).collect();
    let mut nodes: Vec<ChainLayer> = Vec::new();
    let mut node_of: HashMap<ChainLayer, usize> = HashMap::new();
    let mut config = CacheConfig { version: FORMAT_VERSION, ..CacheConfig::default() };
    let mut steps = Vec::new();
    'entries: for e in sorted(entries) {
        let mut parent = None;
        for l in &e.layers {
            let Some(&blob) = index.get(&l.digest) else { continue 'entries };
            let node = ChainLayer { blob, diff_id: l.diff_id.clone(), parent };
            let i = *node_of.entry(node.clone()).or_insert_with(|| {
                nodes.push(node);
                nodes.len() - 1
            });
            parent = Some(i);
        }
        config.entries.push(ConfigEntry { key: e.key.clone(), layer: parent, created: e.created });
        steps.push(e.provenance.clone());
    }
    config.layers = nodes;
    steps.sort_by(|a, b| (&a.step, &a.description, &a.inputs).cmp(&(&b.step, &b.description, &b.inputs)));
    steps.dedup();
    (config, ProvenanceDoc { version: FORMAT_VERSION, steps })
}

/// The compressed form of a config or provenance document: zstd (equal input, equal blob).
/// Keys and diffIDs are hex, which zstd's entropy coder packs better than gzip's (a 41-step
/// config: 3.2 KB against 3.8 KB); the strongest level, but for a very large cache.
pub fn compress(json: &[u8]) -> Vec<u8> {
    let level = if json.len() < (1 << 20) { 19 } else { 9 };
    zstd::bulk::compress(json, level).unwrap_or_else(|_| json.to_vec())
}

/// The JSON of a config or provenance blob: zstd- or gzip-compressed, or plain (a reader takes
/// each; what is written is zstd).
pub fn json_of(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    const LIMIT: u64 = 256 << 20;
    let mut out = Vec::new();
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(bytes)?.take(LIMIT).read_to_end(&mut out)?;
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes).take(LIMIT).read_to_end(&mut out)?;
    } else {
        return Ok(bytes.to_vec());
    }
    Ok(out)
}

fn json_bytes(bytes: &[u8], what: &str, bad: &dyn Fn(String) -> crate::Error) -> crate::Result<Vec<u8>> {
    json_of(bytes).map_err(|e| bad(format!("{what} cannot be decompressed: {e}")))
}

impl CacheConfig {
    /// Serializes for a blob (compact, stable).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("plain data serializes"))
    }

    /// Parses and checks a config blob (zstd-compressed or plain JSON). `source` names where it
    /// came from, for the error.
    pub fn parse(bytes: &[u8], source: &str) -> crate::Result<CacheConfig> {
        let bad = |reason: String| crate::Error::Malformed { source_name: source.to_string(), reason };
        let bytes = json_bytes(bytes, "cache config", &bad)?;
        #[derive(Deserialize)]
        struct Version {
            version: Option<u32>,
        }
        let v: Version = serde_json::from_slice(&bytes).map_err(|e| bad(format!("cache config is not valid JSON: {e}")))?;
        match v.version {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(bad(format!("cache config version {other} is not supported (this build reads version {FORMAT_VERSION})")));
            }
            None => return Err(bad("cache config has no version".into())),
        }
        let config: CacheConfig = serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed cache config: {e}")))?;
        for (i, l) in config.layers.iter().enumerate() {
            if l.parent.is_some_and(|p| p >= i) {
                return Err(bad(format!("layer {i}: parent {} is not an earlier layer", l.parent.unwrap_or_default())));
            }
        }
        for (i, entry) in config.entries.iter().enumerate() {
            if entry.key.len() != 64 || !entry.key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("entry {i}: key {:?} is not 64 hex digits", entry.key)));
            }
            if entry.layer.is_some_and(|l| l >= config.layers.len()) {
                return Err(bad(format!("entry {i}: layer {} is not one of the {} layers", entry.layer.unwrap_or_default(), config.layers.len())));
            }
        }
        Ok(config)
    }

    /// The results of the entries, by key, their blobs resolved through `manifest_layers` (the
    /// manifest's `layers`): an index outside it is an error.
    pub fn decode(&self, manifest_layers: &[BlobRef], source: &str) -> crate::Result<Vec<(String, CachedResult)>> {
        let bad = |reason: String| crate::Error::Malformed { source_name: source.to_string(), reason };
        let mut blobs: Vec<LayerBlob> = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let b = manifest_layers
                .get(l.blob)
                .ok_or_else(|| bad(format!("cache layer {i}: blob {} is not a layer of the cache manifest ({} layers)", l.blob, manifest_layers.len())))?;
            blobs.push(LayerBlob { digest: b.digest.clone(), diff_id: l.diff_id.clone(), size: b.size, media_type: b.media_type.clone() });
        }
        let mut chains: Vec<Option<std::sync::Arc<Vec<LayerBlob>>>> = vec![None; self.layers.len()];
        let mut chain = |top: usize| -> std::sync::Arc<Vec<LayerBlob>> {
            // Parents are earlier layers, so walking down ends.
            let mut path = vec![top];
            let mut below = None;
            while let Some(&n) = path.last() {
                if let Some(c) = &chains[n] {
                    below = Some(c.clone());
                    path.pop();
                    break;
                }
                match self.layers[n].parent {
                    Some(p) => path.push(p),
                    None => break,
                }
            }
            let mut acc: Vec<LayerBlob> = below.map(|b| b.to_vec()).unwrap_or_default();
            for &n in path.iter().rev() {
                acc.push(blobs[n].clone());
                chains[n] = Some(std::sync::Arc::new(acc.clone()));
            }
            chains[top].clone().unwrap_or_default()
        };
        Ok(self
            .entries
            .iter()
            .map(|e| {
                let layers = e.layer.map(|l| chain(l).to_vec()).unwrap_or_default();
                (e.key.clone(), CachedResult { layers, created: e.created })
            })
            .collect())
    }
}

impl ProvenanceDoc {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("plain data serializes"))
    }

    /// Parses a provenance blob (zstd-compressed or plain JSON).
    pub fn parse(bytes: &[u8], source: &str) -> crate::Result<ProvenanceDoc> {
        let bad = |reason: String| crate::Error::Malformed { source_name: source.to_string(), reason };
        let bytes = json_bytes(bytes, "cache provenance", &bad)?;
        let doc: ProvenanceDoc = serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed cache provenance: {e}")))?;
        if doc.version != FORMAT_VERSION {
            return Err(bad(format!("cache provenance version {} is not supported (this build reads version {FORMAT_VERSION})", doc.version)));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(name: &[u8]) -> LayerBlob {
        LayerBlob {
            digest: Digest::sha256_of(name),
            diff_id: Digest::sha256_of(&[name, b"-diff"].concat()),
            size: name.len() as u64,
            media_type: oci::media::OCI_LAYER_GZIP.into(),
        }
    }

    fn entry(key: char, layers: &[LayerBlob]) -> CacheEntry {
        CacheEntry {
            key: key.to_string().repeat(64),
            layers: layers.to_vec(),
            provenance: Provenance {
                step: format!("s{key}"),
                description: "[1/2] RUN true".into(),
                inputs: BTreeMap::from([("parent".into(), "ab".into())]),
            },
            created: 1_700_000_000,
        }
    }

    fn refs(blobs: &[LayerBlob]) -> Vec<BlobRef> {
        blobs.iter().map(|b| BlobRef { digest: b.digest.clone(), size: b.size, media_type: b.media_type.clone() }).collect()
    }

    #[test]
    fn config_is_linear_round_trips_sorted_and_deduplicated() {
        let (a, b, c) = (blob(b"a"), blob(b"b"), blob(b"c"));
        let entries = vec![entry('c', &[a.clone(), b.clone(), c.clone()]), entry('a', &[a.clone()]), entry('b', &[a.clone(), b.clone()]), entry('b', &[a.clone(), b.clone()]), entry('d', &[])];
        let blobs = blobs(&entries);
        assert_eq!(blobs, [a.clone(), b.clone(), c.clone()]);
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let (config, prov) = encode(&entries, &digests);
        assert_eq!(config.layers.len(), 3, "each layer once: {config:?}");
        assert_eq!(config.entries.len(), 4);
        assert_eq!(prov.steps.len(), 4);
        let parsed = CacheConfig::parse(&compress(&config.to_json()), "test").expect("parse");
        assert_eq!(parsed, config);
        let results = parsed.decode(&refs(&blobs), "test").expect("decode");
        let by_key: HashMap<String, CachedResult> = results.into_iter().collect();
        assert_eq!(by_key[&"c".repeat(64)].layers, [a.clone(), b.clone(), c]);
        assert_eq!(by_key[&"b".repeat(64)].layers, [a.clone(), b]);
        assert_eq!(by_key[&"a".repeat(64)].layers, [a]);
        assert!(by_key[&"d".repeat(64)].layers.is_empty());
        assert_eq!(compress(&config.to_json()), compress(&encode(&entries, &digests).0.to_json()), "equal caches are equal bytes");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &config.to_json()).expect("gzip");
        assert_eq!(CacheConfig::parse(&gz.finish().expect("gzip"), "test").expect("gzip parse"), config, "gzip is read too");
        // An index past the manifest's layers is refused.
        assert!(parsed.decode(&refs(&[blob(b"a")]), "m").expect_err("short").to_string().starts_with("m: cache layer 1: blob 1 is not a layer"));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let e = CacheConfig::parse(br#"{"version":3,"layers":[],"entries":[]}"#, "reg/cache:1").expect_err("v3").to_string();
        assert_eq!(e, "reg/cache:1: cache config version 3 is not supported (this build reads version 2)");
        let e = CacheConfig::parse(br#"{"version":1,"entries":[]}"#, "reg/cache:1").expect_err("v1").to_string();
        assert_eq!(e, "reg/cache:1: cache config version 1 is not supported (this build reads version 2)");
        let e = CacheConfig::parse(b"{", "x").expect_err("json").to_string();
        assert!(e.starts_with("x: cache config is not valid JSON"), "{e}");
        let e = CacheConfig::parse(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2], "x").expect_err("zstd").to_string();
        assert!(e.starts_with("x: cache config cannot be decompressed: "), "{e}");
        let e = CacheConfig::parse(br#"{"entries":[]}"#, "x").expect_err("no version").to_string();
        assert_eq!(e, "x: cache config has no version");
        let bad = br#"{"version":2,"layers":[],"entries":[{"key":"zz"}]}"#;
        assert_eq!(CacheConfig::parse(bad, "x").expect_err("key").to_string(), "x: entry 0: key \"zz\" is not 64 hex digits");
        let bad = format!(r#"{{"version":2,"layers":[],"entries":[{{"key":"{}","layer":0}}]}}"#, "a".repeat(64));
        assert_eq!(CacheConfig::parse(bad.as_bytes(), "x").expect_err("layer").to_string(), "x: entry 0: layer 0 is not one of the 0 layers");
        let d = Digest::sha256_of(b"d");
        let bad = format!(r#"{{"version":2,"layers":[{{"blob":0,"diff_id":"{d}","parent":0}}],"entries":[]}}"#);
        assert_eq!(CacheConfig::parse(bad.as_bytes(), "x").expect_err("cycle").to_string(), "x: layer 0: parent 0 is not an earlier layer");
        let bad = br#"{"version":2,"layers":[{"blob":0,"diff_id":"sha256:12"}],"entries":[]}"#;
        assert!(CacheConfig::parse(bad, "x").is_err());
    }
}
