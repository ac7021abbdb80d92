//! The cache artifact's own JSON: a versioned [`CacheConfig`] mapping cache keys to results.

use std::collections::BTreeMap;

use oci::Digest;
use serde::{Deserialize, Serialize};

/// Media type of the cache config blob, and the artifact type of the cache manifest.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.builder.cache.config.v1+json";
/// The manifest's `artifactType` (the same as its config's media type, as OCI 1.1 suggests).
pub const ARTIFACT_TYPE: &str = CONFIG_MEDIA_TYPE;
/// The only config version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Annotation of an image manifest that carries its build's cache config inline (the config
/// JSON itself; the layers are the image's own).
pub const INLINE_ANNOTATION: &str = "dev.builder.cache.config.v1";

/// The config blob of a cache artifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub entries: Vec<CacheEntry>,
}

/// The result of one step under its cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The cache key, 64 hex digits: machine-independent, so another machine computes it too.
    pub key: String,
    /// The whole layer chain of the result, bottom first, base image layers included.
    pub layers: Vec<LayerBlob>,
    /// What went into the key, by name, for explaining misses.
    pub provenance: Provenance,
    /// When the result was first made (seconds since the epoch): a hit's image gets the very
    /// history times, so the same image digest, as on the machine that built it.
    #[serde(default)]
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

impl CacheConfig {
    /// Parses and checks a config blob. `source` names where it came from, for the error.
    pub fn parse(bytes: &[u8], source: &str) -> crate::Result<CacheConfig> {
        let bad = |reason: String| crate::Error::Malformed { source_name: source.to_string(), reason };
        #[derive(Deserialize)]
        struct Version {
            version: Option<u32>,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| bad(format!("cache config is not valid JSON: {e}")))?;
        match v.version {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(bad(format!("cache config version {other} is not supported (this build reads version {FORMAT_VERSION})")));
            }
            None => return Err(bad("cache config has no version".into())),
        }
        let config: CacheConfig = serde_json::from_slice(bytes).map_err(|e| bad(format!("malformed cache config: {e}")))?;
        for (i, entry) in config.entries.iter().enumerate() {
            if entry.key.len() != 64 || !entry.key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("entry {i}: key {:?} is not 64 hex digits", entry.key)));
            }
        }
        Ok(config)
    }

    /// The distinct layer blobs of every entry, in order of first appearance: the artifact's
    /// `layers`.
    pub fn blobs(&self) -> Vec<LayerBlob> {
        let mut seen = std::collections::HashSet::new();
        self.entries.iter().flat_map(|e| e.layers.iter()).filter(|l| seen.insert(l.digest.clone())).cloned().collect()
    }

    /// Serializes for a blob (compact, stable: entries sorted by key, so equal caches are equal bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted = self.clone();
        sorted.entries.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.entries.dedup_by(|a, b| a.key == b.key);
        serde_json::to_vec(&sorted).unwrap_or_else(|_| unreachable!("plain data serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: char, layer: &[u8]) -> CacheEntry {
        CacheEntry {
            key: key.to_string().repeat(64),
            layers: vec![LayerBlob {
                digest: Digest::sha256_of(layer),
                diff_id: Digest::sha256_of(b"diff"),
                size: layer.len() as u64,
                media_type: oci::media::OCI_LAYER_GZIP.into(),
            }],
            provenance: Provenance {
                step: "s1".into(),
                description: "[1/2] RUN true".into(),
                inputs: BTreeMap::from([("parent".into(), "ab".into())]),
            },
            created: 1_700_000_000,
        }
    }

    #[test]
    fn config_round_trips_sorted_and_deduplicated() {
        let config = CacheConfig { version: 1, entries: vec![entry('b', b"x"), entry('a', b"x"), entry('b', b"x")] };
        let parsed = CacheConfig::parse(&config.to_bytes(), "test").expect("parse");
        assert_eq!(parsed.entries.len(), 2);
        assert_eq!(parsed.entries[0].key, "a".repeat(64));
        assert_eq!(parsed.blobs().len(), 1, "one blob shared by two entries");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let e = CacheConfig::parse(br#"{"version":2,"entries":[]}"#, "reg/cache:1").expect_err("v2").to_string();
        assert_eq!(e, "reg/cache:1: cache config version 2 is not supported (this build reads version 1)");
        let e = CacheConfig::parse(b"{", "x").expect_err("json").to_string();
        assert!(e.starts_with("x: cache config is not valid JSON"), "{e}");
        let e = CacheConfig::parse(br#"{"entries":[]}"#, "x").expect_err("no version").to_string();
        assert_eq!(e, "x: cache config has no version");
        let bad = br#"{"version":1,"entries":[{"key":"zz","layers":[],"provenance":{"step":"","description":"","inputs":{}}}]}"#;
        let e = CacheConfig::parse(bad, "x").expect_err("key").to_string();
        assert_eq!(e, "x: entry 0: key \"zz\" is not 64 hex digits");
        let bad = br#"{"version":1,"entries":[{"key":"zz","layers":[{"digest":"sha256:12","diff_id":"x","size":1,"media_type":"m"}]}]}"#;
        assert!(CacheConfig::parse(bad, "x").is_err());
    }
}
