//! Writing a blob: hash while writing to `tmp/`, then verify, fsync and rename into `blobs/`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::{Store, sync_dir};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// A blob that is in the store: its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// A blob being written. Nothing is visible in `blobs/` until [`BlobWriter::commit`]; dropping
/// the writer without committing deletes the temporary file.
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    blobs_dir: PathBuf,
    hasher: Sha256,
    written: u64,
}

/// A name no other writer (in this or another process) uses at the same time.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

impl BlobWriter {
    pub(super) fn create(store: &Store) -> Result<BlobWriter> {
        let tmp = store.tmp_dir().join(format!("blob-{}", unique_suffix()));
        let file = File::create(&tmp).map_err(Error::io("create temporary blob", &tmp))?;
        // The lock tells `Store::open` in other processes that this file is in use.
        fs4::fs_std::FileExt::lock_exclusive(&file).map_err(Error::io("lock temporary blob", &tmp))?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            tmp,
            blobs_dir: store.blobs_dir(),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The temporary file being written (for error messages).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// The digest of what has been written so far.
    pub fn digest_so_far(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }

    /// Finishes the blob: fsync, check against `expected` (if given), rename into `blobs/sha256/`.
    /// On a mismatch the temporary file is deleted and nothing is stored.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<BlobInfo> {
        let digest = Digest::from_hasher(self.hasher.clone());
        let Some(file) = self.file.take() else { unreachable!("file is only taken by commit") };
        let file =
            file.into_inner().map_err(|e| Error::Io { op: "flush temporary blob", path: self.tmp.clone(), source: e.into_error() })?;
        if let Some(expected) = expected {
            if *expected != digest {
                drop(file);
                let _ = fs::remove_file(&self.tmp);
                return Err(Error::DigestMismatch { expected: expected.to_string(), actual: digest.to_string(), size: self.written });
            }
        }
        file.sync_all().map_err(Error::io("fsync temporary blob", &self.tmp))?;
        let dest = self.blobs_dir.join(digest.hex());
        if dest.is_file() {
            // Same digest, same bytes: someone stored it already.
            drop(file);
            let _ = fs::remove_file(&self.tmp);
        } else {
            fs::rename(&self.tmp, &dest).map_err(Error::io("move blob into place", &dest))?;
            drop(file);
            sync_dir(&self.blobs_dir);
        }
        Ok(BlobInfo { digest, size: self.written })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(file) = self.file.as_mut() else { return Err(io::Error::other("blob already committed")) };
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
