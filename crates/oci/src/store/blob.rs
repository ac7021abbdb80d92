//! Writing a blob: hash while writing to `tmp/`, then verify, fsync and rename into `blobs/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
/// Bytes are staged in pieces of [`PIECE`]. Where the filesystem takes `O_DIRECT`, each full
/// piece is handed to a [`Pipeline`]: one thread hashes it while two others write it to disk,
/// and this one goes on staging the next, so reading a layer, hashing it and writing it overlap
/// and a 256 MiB layer costs about one pass of sha256 (the disk keeps up with two writers). No
/// page-cache copy, no dirty pages to flush later, no memory to find for them. Elsewhere pieces
/// are hashed and written here, through the page cache, with write-back started every
/// [`WRITEBACK_EVERY`] bytes.
pub struct BlobWriter {
    file: Option<Arc<File>>,
    tmp: PathBuf,
    blobs_dir: PathBuf,
    /// Accepted bytes not handed on yet: less than one piece.
    stage: Stage,
    /// The hash of the bytes handed on, when they are hashed here (no pipeline).
    hasher: Sha256,
    /// Bytes accepted.
    written: u64,
    /// Bytes handed on to be hashed and written.
    pushed: u64,
    pipeline: Option<Pipeline>,
    /// The filesystem refused `O_DIRECT`: no pipeline.
    direct_failed: bool,
    /// Bytes written through the page cache since write-back was last started.
    unflushed: u64,
    flusher: Option<Flusher>,
}


/// Bytes hashed and written at once.
pub const PIECE: usize = 4 << 20;
/// Alignment of memory, offsets and lengths for `O_DIRECT` (a page covers every block size).
const ALIGN: usize = 4096;
/// How many bytes are written through the page cache between two background starts of write-back.
pub const WRITEBACK_EVERY: u64 = 8 << 20;

/// The staging buffer: page-aligned once it holds a large blob, so a full piece can be written
/// with `O_DIRECT` straight from it. Small blobs keep a small buffer.
struct Stage {
    buf: Vec<u8>,
    /// Where the aligned data starts in `buf` (0 for a small buffer).
    start: usize,
    len: usize,
}

impl Stage {
    fn new() -> Stage {
        Stage { buf: Vec::new(), start: 0, len: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Appends as much of `data` as fits in one piece; returns how much.
    fn append(&mut self, data: &[u8]) -> usize {
        let n = (PIECE - self.len).min(data.len());
        if self.start + self.len + n > self.buf.len() {
            if self.len + n > 64 << 10 {
                self.make_large();
            } else {
                self.buf.resize(self.start + self.len + n, 0);
            }
        }
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Moves the data into a page-aligned buffer of a full piece.
    fn make_large(&mut self) {
        if self.buf.len() >= self.start + PIECE {
            return;
        }
        let mut buf = vec![0u8; PIECE + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        buf[start..start + self.len].copy_from_slice(self.data());
        self.buf = buf;
        self.start = start;
    }

    fn is_full(&self) -> bool {
        self.len == PIECE
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

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


/// Writers per pipeline: a virtual disk takes two 4 MiB writes at once faster than one.
const WRITERS: usize = 2;
/// Pieces in flight at most (buffers of [`PIECE`] bytes).
const IN_FLIGHT: usize = 4;

/// The threads behind a [`BlobWriter`] with `O_DIRECT`: full pieces go to the hashing thread
/// (in order) and to the writing threads (any order, each at its own offset); a piece's buffer
/// comes back to be staged again once both are done with it.
struct Pipeline {
    to_hash: Option<SyncSender<Arc<Stage>>>,
    to_write: Option<SyncSender<(Arc<Stage>, u64)>>,
    free: Receiver<Stage>,
    buffers: usize,
    hashing: JoinHandle<Sha256>,
    writing: Vec<JoinHandle<io::Result<()>>>,
}

impl Pipeline {
    /// Starts the threads; `None` if they cannot be started (then the caller does it all).
    fn start(hasher: Sha256, file: &Arc<File>, direct: File) -> Option<Pipeline> {
        let (to_hash, hash_rx) = sync_channel::<Arc<Stage>>(IN_FLIGHT);
        let (to_write, write_rx) = sync_channel::<(Arc<Stage>, u64)>(IN_FLIGHT);
        let (free_tx, free) = channel::<Stage>();
        let hashing = {
            let free_tx = free_tx.clone();
            std::thread::Builder::new()
                .name("blob-sha256".into())
                .spawn(move || {
                    let mut hasher = hasher;
                    for piece in hash_rx {
                        hasher.update(piece.data());
                        give_back(piece, &free_tx);
                    }
                    hasher
                })
                .ok()?
        };
        let write_rx = Arc::new(Mutex::new(write_rx));
        let direct = Arc::new(direct);
        let mut writing = Vec::new();
        for _ in 0..WRITERS {
            let (rx, free_tx, direct, file) = (Arc::clone(&write_rx), free_tx.clone(), Arc::clone(&direct), Arc::clone(file));
            let started = std::thread::Builder::new().name("blob-write".into()).spawn(move || -> io::Result<()> {
                let mut result = Ok(());
                loop {
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return Err(io::Error::other("a blob writing thread panicked")),
                    };
                    let Ok((piece, offset)) = next else { return result };
                    if result.is_ok() {
                        // A filesystem may still refuse a direct write: then through the page cache.
                        result = write_at(&direct, piece.data(), offset).or_else(|_| write_at(&file, piece.data(), offset));
                    }
                    give_back(piece, &free_tx);
                }
            });
            // With at least one writer the pipeline works; fewer is only slower.
            match started {
                Ok(h) => writing.push(h),
                Err(_) if !writing.is_empty() => break,
                Err(_) => {
                    drop(to_hash);
                    let _ = hashing.join();
                    return None;
                }
            }
        }
        Some(Pipeline { to_hash: Some(to_hash), to_write: Some(to_write), free, buffers: 0, hashing, writing })
    }

    /// Hands on a full piece written at `offset`; returns an empty buffer to stage the next in.
    fn push(&mut self, piece: Stage, offset: u64) -> io::Result<Stage> {
        let piece = Arc::new(piece);
        let lost = || io::Error::other("the blob writing threads stopped");
        self.to_hash.as_ref().ok_or_else(lost)?.send(Arc::clone(&piece)).map_err(|_| lost())?;
        self.to_write.as_ref().ok_or_else(lost)?.send((piece, offset)).map_err(|_| lost())?;
        let mut next = match self.free.try_recv() {
            Ok(buf) => buf,
            Err(_) if self.buffers < IN_FLIGHT => {
                self.buffers += 1;
                Stage::new()
            }
            Err(_) => self.free.recv().map_err(|_| lost())?,
        };
        next.clear();
        Ok(next)
    }

    /// Waits for every piece to be hashed and written; returns the hash of them all.
    fn finish(mut self) -> io::Result<Sha256> {
        drop(self.to_hash.take());
        drop(self.to_write.take());
        let mut result = Ok(());
        for w in self.writing {
            let r = w.join().unwrap_or_else(|_| Err(io::Error::other("a blob writing thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        let hasher = self.hashing.join().map_err(|_| io::Error::other("the blob hashing thread panicked"))?;
        result.map(|()| hasher)
    }
}

/// Returns a piece's buffer once the last of its two users is done with it.
fn give_back(piece: Arc<Stage>, free: &Sender<Stage>) {
    if let Some(buf) = Arc::into_inner(piece) {
        let _ = free.send(buf);
    }
}

fn write_at(f: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, offset)
}

impl BlobWriter {
    pub(super) fn create(store: &Store) -> Result<BlobWriter> {
        let tmp = store.tmp_dir().join(format!("blob-{}", unique_suffix()));
        let file = File::create(&tmp).map_err(Error::io("create temporary blob", &tmp))?;
        // The lock tells `Store::open` in other processes that this file is in use.
        fs4::fs_std::FileExt::lock_exclusive(&file).map_err(Error::io("lock temporary blob", &tmp))?;
        Ok(BlobWriter {
            file: Some(Arc::new(file)),
            tmp,
            blobs_dir: store.blobs_dir(),
            stage: Stage::new(),
            hasher: Sha256::new(),
            written: 0,
            pushed: 0,
            pipeline: None,
            direct_failed: false,
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

    /// Hands what is staged on: a full piece to the pipeline (started at the first one, if the
    /// filesystem takes `O_DIRECT`); otherwise hashed and written here.
    fn push_stage(&mut self) -> io::Result<()> {
        let len = self.stage.len;
        if len == 0 {
            return Ok(());
        }
        let Some(file) = self.file.clone() else { return Err(io::Error::other("blob already committed")) };
        let offset = self.pushed;
        if self.stage.is_full() && self.pipeline.is_none() && !self.direct_failed && offset.is_multiple_of(ALIGN as u64) {
            self.pipeline = open_direct(&self.tmp).and_then(|direct| Pipeline::start(std::mem::take(&mut self.hasher), &file, direct));
            self.direct_failed = self.pipeline.is_none();
        }
        if let Some(p) = self.pipeline.as_mut().filter(|_| self.stage.is_full()) {
            let next = p.push(std::mem::replace(&mut self.stage, Stage::new()), offset)?;
            self.stage = next;
            self.pushed += len as u64;
            return Ok(());
        }
        // The last, partial piece after a pipeline: every full one must be hashed before it.
        if let Some(p) = self.pipeline.take() {
            self.hasher = p.finish()?;
        }
        self.hasher.update(self.stage.data());
        write_at(&file, self.stage.data(), offset)?;
        self.stage.clear();
        self.pushed += len as u64;
        self.unflushed += len as u64;
        if self.unflushed >= WRITEBACK_EVERY {
            self.unflushed = 0;
            if self.flusher.is_none() {
                self.flusher = Flusher::start(&file);
            }
            if let Some(f) = &self.flusher {
                f.kick(self.pushed);
            }
        }
        Ok(())
    }

    /// Finishes the blob: fsync, check against `expected` (if given), rename into `blobs/sha256/`.
    /// On a mismatch the temporary file is deleted and nothing is stored.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<BlobInfo> {
        self.push_stage().map_err(Error::io("write temporary blob", &self.tmp))?;
        if let Some(p) = self.pipeline.take() {
            self.hasher = p.finish().map_err(Error::io("write temporary blob", &self.tmp))?;
        }
        let large = self.flusher.is_some();
        if let Some(f) = self.flusher.take() {
            f.stop();
        }
        let digest = Digest::from_hasher(std::mem::take(&mut self.hasher));
        let Some(file) = self.file.take() else { unreachable!("file is only taken by commit") };
        if let Some(expected) = expected
            && *expected != digest {
                drop(file);
                let _ = fs::remove_file(&self.tmp);
                return Err(Error::DigestMismatch { expected: expected.to_string(), actual: digest.to_string(), size: self.written });
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
        let n = self.stage.append(data);
        self.written += n as u64;
        if self.stage.is_full() {
            self.push_stage()?;
        }
        Ok(n)
    }

    /// Nothing to do: staged bytes reach the file by the next full piece or by `commit`, and
    /// nothing is visible before `commit` anyway.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The file at `path` opened again for writing with `O_DIRECT`, if the filesystem allows it.
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).custom_flags(nix::fcntl::OFlag::O_DIRECT.bits()).open(path).ok()
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // The threads let go of the file before it is deleted.
        if let Some(p) = self.pipeline.take() {
            let _ = p.finish();
        }
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
        let data: Vec<u8> = (0..(WRITEBACK_EVERY as usize + 3 * PIECE + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = store.blob_writer().expect("writer");
        for piece in data.chunks(PIECE / 3 + 1) {
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
        for (i, n) in [512usize, 4 << 20, 10, 3 << 20, 1, PIECE, PIECE - 1, 300 << 10].iter().cycle().enumerate() {
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
    fn large_blob_on_tmpfs_is_stored_whether_or_not_direct_writes_are_allowed() {
        // tmpfs refuses O_DIRECT on older kernels: the writer falls back to the page cache.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else { return };
        let store = Store::open(dir.path()).expect("open");
        let data: Vec<u8> = (0..(3 * PIECE + 7)).map(|i| (i % 241) as u8).collect();
        let mut w = store.blob_writer().expect("writer");
        w.write_all(&data).expect("write");
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
    fn a_large_blob_dropped_while_its_pieces_are_in_flight_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut w = store.blob_writer().expect("writer");
        // More pieces than the pipeline holds, and half of one staged.
        w.write_all(&vec![7u8; (IN_FLIGHT + 3) * PIECE + PIECE / 2]).expect("write");
        drop(w);
        assert_eq!(fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0, "no temporary file left");
        assert_eq!(fs::read_dir(store.blobs_dir()).expect("blobs").count(), 0, "nothing stored");
    }

    #[test]
    fn wrong_digest_stores_nothing_even_for_a_large_blob() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut w = store.blob_writer().expect("writer");
        w.write_all(&vec![1u8; 3 * PIECE]).expect("write");
        let wrong = Digest::sha256_of(b"something else");
        assert!(w.commit(Some(&wrong)).is_err());
        assert!(!store.has_blob(&wrong));
        assert_eq!(fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0, "no temporary file left");
    }
}
