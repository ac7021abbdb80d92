//! A cache as an OCI image layout directory (`type=local`): `oci-layout`, `index.json` naming
//! the cache manifest by its tag, `blobs/sha256/`. Written with tmp + fsync + rename, so a
//! reader (or a CI cache action copying it) never sees half a file.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci::Digest;
use serde_json::{Value, json};

use crate::error::{Error, Result};

pub(crate) struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout { dir: dir.to_path_buf() }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// The manifest `tag` names in `index.json`: its bytes, verified, and its digest.
    pub fn read_tag(&self, tag: &str) -> Result<(Vec<u8>, Digest)> {
        let index_path = self.dir.join("index.json");
        let bytes = fs::read(&index_path).map_err(Error::io("read", &index_path))?;
        let bad = |reason: String| Error::Malformed { source_name: index_path.display().to_string(), reason };
        let index: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let entry = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"][oci::REF_NAME_ANNOTATION].as_str() == Some(tag))
            .ok_or_else(|| bad(format!("no manifest tagged {tag:?}")))?;
        let digest: Digest = entry["digest"].as_str().unwrap_or_default().parse().map_err(|e| bad(format!("manifest {tag:?}: {e}")))?;
        Ok((self.read_blob(&digest)?, digest))
    }

    /// A whole (small) blob, verified against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(Error::io("read", &path))?;
        let actual = Digest::sha256_of(&bytes);
        if actual != *digest {
            return Err(Error::Malformed {
                source_name: path.display().to_string(),
                reason: format!("content has digest {actual}, not {digest}"),
            });
        }
        Ok(bytes)
    }

    fn tmp_path(&self) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        self.dir.join(format!(".tmp-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
    }

    /// Fills a tmp file with `fill`, fsyncs it and renames it to `dest`.
    fn write_atomic(&self, dest: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
        let parent = dest.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
        let tmp = self.tmp_path();
        let result = (|| {
            let mut f = File::create(&tmp)?;
            fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, dest)?;
            File::open(parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(Error::io("write", dest))
    }

    /// Stores `bytes` as a blob. Returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        let dest = self.blob_path(&digest);
        if !dest.is_file() {
            self.write_atomic(&dest, |f| f.write_all(bytes))?;
        }
        Ok(digest)
    }

    /// Copies a blob in (nothing if the layout has it already).
    pub fn put_blob_from(&self, digest: &Digest, mut src: impl Read) -> Result<bool> {
        let dest = self.blob_path(digest);
        if dest.is_file() {
            return Ok(false);
        }
        self.write_atomic(&dest, |f| std::io::copy(&mut src, f).map(|_| ()))?;
        Ok(true)
    }

    /// Points `tag` at a manifest in `index.json` (other tags stay), and writes `oci-layout`.
    pub fn set_tag(&self, tag: &str, digest: &Digest, size: u64, media_type: &str) -> Result<()> {
        let layout = self.dir.join("oci-layout");
        if !layout.is_file() {
            self.write_atomic(&layout, |f| f.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#))?;
        }
        let index_path = self.dir.join("index.json");
        let mut manifests: Vec<Value> = fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["manifests"].as_array().cloned())
            .unwrap_or_default();
        manifests.retain(|m| m["annotations"][oci::REF_NAME_ANNOTATION].as_str() != Some(tag));
        manifests.push(json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
            "annotations": { oci::REF_NAME_ANNOTATION: tag },
        }));
        let index = json!({ "schemaVersion": 2, "mediaType": oci::media::OCI_INDEX, "manifests": manifests });
        let bytes = serde_json::to_vec_pretty(&index).unwrap_or_else(|_| unreachable!("plain JSON serializes"));
        self.write_atomic(&index_path, |f| f.write_all(&bytes))
    }
}
