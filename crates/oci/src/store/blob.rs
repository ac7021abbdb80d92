//! Writing a blob: hash while writing to `tmp/`, then verify, fsync and rename into `blobs/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
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
///
/// Large writes are hashed on a second thread while this one copies the same bytes into the
/// file (no copy for the hasher), and a large blob's write-back
/// to disk is started as they go (a background `fdatasync` every [`WRITEBACK_EVERY`] bytes), so
/// the fsync of `commit` finds little left to do: a 256 MiB layer costs one pass of sha256, not
/// sha256 followed by a copy followed by a flush.
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    blobs_dir: PathBuf,
    /// Bytes accepted but not yet written (less than one chunk).
    buf: Vec<u8>,
    hasher: Sha256,
    /// Bytes accepted.
    written: u64,
    /// Bytes handed to the file (and the hasher).
    pushed: u64,
    /// Bytes written to the file since write-back was last started.
    unflushed: u64,
    flusher: Option<Flusher>,
}

/// Chunks handed to the file and the hasher at once.
const CHUNK: usize = 1 << 20;
/// Pieces at least this large are hashed on a second thread while they are written.
const PARALLEL_HASH: usize = 256 << 10;
/// How many bytes are written between two background starts of write-back.
pub const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts write-back of a file being written, in the background: `fdatasync` on a thread of
/// its own, so disk writes overlap with producing the rest of the blob. What is on disk is then
/// dropped from the page cache: a large blob is rarely read again soon (a push reads it at
/// disk speed), and the memory goes back to the build instead of to new page allocations.
struct Flusher {
    kick: SyncSender<u64>,
    done: JoinHandle<()>,
}

impl Flusher {
    fn start(file: &File) -> Option<Flusher> {
        let file = file.try_clone().ok()?;
        let (kick, rx) = sync_channel::<u64>(1);
        let done = std::thread::Builder::new()
            .name("blob-writeback".into())
            .spawn(move || {
                for upto in rx {
                    // Errors show up again in the final fsync of `commit`.
                    if file.sync_data().is_ok() {
                        drop_cached(&file, upto);
                    }
                }
            })
            .ok()?;
        Some(Flusher { kick, done })
    }

    /// Asks for a write-back of the first `upto` bytes unless one is already queued.
    fn kick(&self, upto: u64) {
        let _ = self.kick.try_send(upto);
    }

    fn stop(self) {
        drop(self.kick);
        let _ = self.done.join();
    }
}

/// Drops the first `len` bytes of `file` from the page cache (they are on disk). Best effort.
fn drop_cached(file: &File, len: u64) {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let _ = nix::fcntl::posix_fadvise(file, 0, len, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
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
            file: Some(file),
            tmp,
            blobs_dir: store.blobs_dir(),
            buf: Vec::new(),
            hasher: Sha256::new(),
            written: 0,
            pushed: 0,
            unflushed: 0,
            flusher: None,
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

    /// Hashes `data` and writes it to the file, both at once for a large piece.
    fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(file) = self.file.as_mut() else { return Err(io::Error::other("blob already committed")) };
        if data.len() >= PARALLEL_HASH {
            let mut state = self.hasher.clone();
            self.hasher = std::thread::scope(|s| {
                let hashing = std::thread::Builder::new().name("blob-sha256".into()).spawn_scoped(s, move || {
                    state.update(data);
                    state
                });
                let written = file.write_all(data);
                let state = match hashing {
                    Ok(h) => h.join().map_err(|_| io::Error::other("the hashing thread panicked"))?,
                    // Without a thread, hash here.
                    Err(_) => {
                        let mut state = self.hasher.clone();
                        state.update(data);
                        state
                    }
                };
                written.map(|()| state)
            })?;
        } else {
            self.hasher.update(data);
            file.write_all(data)?;
        }
        self.pushed += data.len() as u64;
        self.unflushed += data.len() as u64;
        if self.unflushed >= WRITEBACK_EVERY {
            self.unflushed = 0;
            if self.flusher.is_none() {
                self.flusher = self.file.as_ref().and_then(Flusher::start);
            }
            if let Some(f) = &self.flusher {
                f.kick(self.pushed);
            }
        }
        Ok(())
    }

    /// Writes out what is buffered.
    fn push_buffered(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.push(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// Finishes the blob: fsync, check against `expected` (if given), rename into `blobs/sha256/`.
    /// On a mismatch the temporary file is deleted and nothing is stored.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<BlobInfo> {
        self.push_buffered().map_err(Error::io("write temporary blob", &self.tmp))?;
        let large = self.flusher.is_some();
        if let Some(f) = self.flusher.take() {
            f.stop();
        }
        let digest = Digest::from_hasher(std::mem::take(&mut self.hasher));
        let Some(file) = self.file.take() else { unreachable!("file is only taken by commit") };
        if let Some(expected) = expected {
            if *expected != digest {
                drop(file);
                let _ = fs::remove_file(&self.tmp);
                return Err(Error::DigestMismatch { expected: expected.to_string(), actual: digest.to_string(), size: self.written });
            }
        }
        file.sync_all().map_err(Error::io("fsync temporary blob", &self.tmp))?;
        if large {
            drop_cached(&file, self.written);
        }
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
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.file.is_none() {
            return Err(io::Error::other("blob already committed"));
        }
        if data.len() >= CHUNK {
            // A large piece goes straight through, without a copy into the buffer.
            self.push_buffered()?;
            self.push(data)?;
            self.written += data.len() as u64;
            return Ok(data.len());
        }
        let n = (CHUNK - self.buf.len()).min(data.len());
        if self.buf.capacity() < self.buf.len() + n {
            // Small blobs stay small; large ones fill whole chunks.
            let want = if self.pushed > 0 || data.len() >= CHUNK { CHUNK } else { self.buf.len() + n };
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == CHUNK {
            self.push_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push_buffered()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blob_written_in_odd_pieces_is_stored_whole_with_its_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        // Past several chunks and one write-back start; not a multiple of either.
        let data: Vec<u8> = (0..(WRITEBACK_EVERY as usize + 3 * CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = store.blob_writer().expect("writer");
        for piece in data.chunks(CHUNK / 3 + 1) {
            w.write_all(piece).expect("write");
        }
        let want = Digest::sha256_of(&data);
        let info = w.commit(Some(&want)).expect("commit");
        assert_eq!(info, BlobInfo { digest: want.clone(), size: data.len() as u64 });
        assert_eq!(store.read_blob(&want).expect("read"), data);
    }

    #[test]
    fn large_and_small_writes_mixed_give_the_digest_of_the_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let data: Vec<u8> = (0..(40usize << 20)).map(|i| (i * 13 % 253) as u8).collect();
        let mut w = store.blob_writer().expect("writer");
        let mut at = 0;
        for (i, n) in [512usize, 4 << 20, 10, 3 << 20, 1, CHUNK, CHUNK - 1, 300 << 10].iter().cycle().enumerate() {
            if at == data.len() || i > 1000 {
                break;
            }
            let end = (at + n).min(data.len());
            w.write_all(&data[at..end]).expect("write");
            at = end;
        }
        assert_eq!(at, data.len());
        let info = w.commit(None).expect("commit");
        assert_eq!(info.digest, Digest::sha256_of(&data));
        assert_eq!(store.read_blob(&info.digest).expect("read"), data);
    }

    #[test]
    fn small_blob_with_a_flush_in_the_middle_keeps_every_byte() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut w = store.blob_writer().expect("writer");
        w.write_all(b"hello ").expect("write");
        w.flush().expect("flush");
        w.write_all(b"world").expect("write");
        let info = w.commit(None).expect("commit");
        assert_eq!(info.digest, Digest::sha256_of(b"hello world"));
        assert_eq!(store.read_blob(&info.digest).expect("read"), b"hello world");
    }

    #[test]
    fn wrong_digest_stores_nothing_even_for_a_large_blob() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut w = store.blob_writer().expect("writer");
        w.write_all(&vec![1u8; 3 * CHUNK]).expect("write");
        let wrong = Digest::sha256_of(b"something else");
        assert!(w.commit(Some(&wrong)).is_err());
        assert!(!store.has_blob(&wrong));
        assert_eq!(fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0, "no temporary file left");
    }
}
