//! The local content store: an OCI image layout at the state root.

mod blob;
mod gc;
mod image;
mod sources;
mod tags;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use blob::{BlobInfo, BlobWriter};
pub use gc::GcStats;
pub use image::{LocalImage, choose_platform};
pub use sources::BlobSource;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// How old an entry of `tmp/` not named by a PID must be before `open` deletes it (another
/// process may still be filling a fresh one).
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// An OCI image layout on disk, shared safely by concurrent processes.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`: `oci-layout`, `index.json`, `blobs/sha256/`
    /// and `tmp/`. Leftovers of killed processes in `tmp/` are removed.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf() };
        for dir in [store.root.clone(), store.blobs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_file_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock_index()?;
            if !store.index_path().exists() {
                store.write_file_atomic(&store.index_path(), tags::EMPTY_INDEX.as_bytes())?;
            }
        }
        store.clear_stale_tmp();
        Ok(store)
    }

    /// The state root this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/tmp`: scratch space on the same filesystem as the blobs, so a finished file can be
    /// renamed into place. Anything here not locked or fresh is deleted by the next `open`.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a stored blob, or None if it is absent.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::Io { op: "open blob", path, source: e },
        })
    }

    /// Reads a whole (small) blob: manifests, configs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut bytes).map_err(Error::io("read blob", self.blob_path(digest)))?;
        Ok(bytes)
    }

    /// Reads a JSON blob as `T`.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::malformed(format!("JSON blob {digest}"), e))
    }

    /// A writer for a new blob, hashing as it goes; `commit` makes it visible.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::create(self)
    }

    /// Copies `reader` into the store and verifies it is `expected` (and `expected_size` bytes,
    /// when given). On any mismatch nothing is stored.
    pub fn write_blob(&self, mut reader: impl Read, expected: &Digest, expected_size: Option<u64>) -> Result<BlobInfo> {
        let mut w = self.blob_writer()?;
        std::io::copy(&mut reader, &mut w).map_err(Error::io("write blob", w.tmp_path().to_path_buf()))?;
        if let Some(size) = expected_size
            && w.written() != size {
                return Err(Error::SizeMismatch { digest: expected.to_string(), expected: size, actual: w.written() });
            }
        w.commit(Some(expected))
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobInfo> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(Error::io("write blob", w.tmp_path().to_path_buf()))?;
        w.commit(None)
    }

    /// Serializes `value` as compact JSON (the bytes its digest covers) and stores it.
    pub fn put_json(&self, value: &impl serde::Serialize) -> Result<BlobInfo> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::malformed("JSON to store", e))?;
        self.put_bytes(&bytes)
    }

    /// Writes a small file with tmp + fsync + rename + directory fsync.
    pub(crate) fn write_file_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_dir().join(format!("file-{}", blob::unique_suffix()));
        let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(Error::io("write", &tmp))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::Io { op: "rename into place", path: dest.to_path_buf(), source: e }
        })?;
        if let Some(parent) = dest.parent() {
            sync_dir(parent);
        }
        Ok(())
    }

    /// Deletes what killed processes left in `tmp/`. Our own work files carry their writer's
    /// PID in their name and are removed once that process is gone; anything else (other
    /// crates' work dirs and files) once it is older than an hour and, for files, unlocked.
    fn clear_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let stale = match owner_pid(&entry.file_name().to_string_lossy()) {
                Some(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
                None => {
                    let old =
                        meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).is_some_and(|age| age > STALE_TMP_AGE);
                    // A live BlobWriter-style user holds an exclusive lock on its file.
                    old && (meta.is_dir() || File::open(&path).is_ok_and(|f| fs4::fs_std::FileExt::try_lock_exclusive(&f).is_ok_and(|l| l)))
                }
            };
            if stale {
                tracing::debug!(path = %path.display(), "removing stale temporary file");
                let _ = if meta.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            }
        }
    }
}

/// The PID in the name of one of this crate's work files (`blob-PID-…`, `file-PID-…`,
/// `save-PID-…`, `load-PID-…`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = ["blob-", "file-", "save-", "load-"].iter().find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok()
}

/// fsyncs a directory so a rename in it survives a crash. Best effort.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A file name no other writer uses at the same time (pid, counter, time).
pub(crate) fn unique_name() -> String {
    blob::unique_suffix()
}
