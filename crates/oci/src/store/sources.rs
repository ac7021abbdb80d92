//! Where a blob the store does not hold yet can be fetched: layers of images made from an
//! imported build cache are known by digest until a command needs their bytes (`run`, `save`,
//! a push to another registry). `blob-sources/<hex>.json` records the registry and repository
//! that hold each one; the `registry` crate fetches from there (verified by digest). No
//! credentials are recorded: a fetch uses the same auth as any other pull.

use std::path::PathBuf;

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// A registry repository that holds a blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlobSource {
    /// `host[:port]` as in an image reference.
    pub registry: String,
    pub repository: String,
    /// The blob's size in bytes (what a fetch must deliver).
    pub size: u64,
}

impl BlobSource {
    /// The source as an image reference to fetch with (`registry/repository`).
    pub fn reference(&self) -> Result<crate::Reference> {
        crate::Reference::parse(&format!("{}/{}", self.registry, self.repository))
    }
}

impl Store {
    fn sources_dir(&self) -> PathBuf {
        self.root.join("blob-sources")
    }

    /// Records where the absent blob `digest` can be fetched. The newest record wins.
    pub fn record_blob_source(&self, digest: &Digest, source: &BlobSource) -> Result<()> {
        let dir = self.sources_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let bytes = serde_json::to_vec(source).map_err(|e| Error::malformed("blob source", e))?;
        self.write_file_atomic(&dir.join(format!("{}.json", digest.hex())), &bytes)
    }

    /// Where `digest` can be fetched, if a source was recorded.
    pub fn blob_source(&self, digest: &Digest) -> Option<BlobSource> {
        let bytes = std::fs::read(self.sources_dir().join(format!("{}.json", digest.hex()))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the store at `root` holds the blob `digest` or has a recorded source for it,
    /// without opening the store.
    pub fn can_supply(root: &std::path::Path, digest: &Digest) -> bool {
        let store = Store { root: root.to_path_buf() };
        store.has_blob(digest) || store.sources_dir().join(format!("{}.json", digest.hex())).is_file()
    }

    /// The layers of `image` the store does not hold (digest, size), bottom first.
    pub fn missing_layers(&self, image: &crate::LocalImage) -> Result<Vec<(Digest, u64)>> {
        Ok(image.layers()?.into_iter().filter(|(d, _)| !self.has_blob(d)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_source_is_read_back_and_the_newest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().expect("digest");
        assert_eq!(store.blob_source(&d), None);
        let one = BlobSource { registry: "127.0.0.1:5000".into(), repository: "farm/cache".into(), size: 7 };
        store.record_blob_source(&d, &one).expect("record");
        assert_eq!(store.blob_source(&d), Some(one.clone()));
        assert_eq!(one.reference().expect("reference").to_string(), "127.0.0.1:5000/farm/cache:latest");
        let two = BlobSource { repository: "other/repo".into(), ..one };
        store.record_blob_source(&d, &two).expect("record");
        assert_eq!(store.blob_source(&d), Some(two));
    }
}
