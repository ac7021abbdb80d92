//! Diff a directory (an overlay upper dir, or a directory a COPY wrote) into an OCI layer tar.
//!
//! Overlay records a deleted path as a 0/0 character device and a replaced directory with the
//! `trusted.overlay.opaque=y` xattr; the layer spells those as `.wh.NAME` and `.wh..wh..opq`.
//! Entries are written in byte order of their paths with normalized metadata (no user/group
//! names, no atime/ctime, mtimes clamped to SOURCE_DATE_EPOCH when given), so the same tree
//! always gives the same bytes. The diffID (sha256 of the tar) and the blob digest (sha256 of
//! the compressed bytes) are computed in the same pass that writes the blob.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// How layer blobs are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "uncompressed" | "none" => Some(Compression::Uncompressed),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing layer tar (entry {path}): {source}")]
    Write { path: String, source: io::Error },
    #[error("compressing layer: {0}")]
    Compress(io::Error),
}

/// Options for [`write_layer`].
#[derive(Clone, Debug)]
pub struct DiffOptions {
    pub compression: Compression,
    /// Clamp every mtime to this (seconds since the epoch).
    pub source_date_epoch: Option<i64>,
    /// Lower dirs (top first). A directory of the upper dir that exists in a lower with the same
    /// mode and owner and is not opaque was only copied up to hold its children: it is left
    /// out, so a RUN that changes nothing gives an empty layer.
    pub lowers: Vec<PathBuf>,
    /// Worker threads for compression (1 = inline).
    pub threads: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions { compression: Compression::Gzip, source_date_epoch: None, lowers: Vec::new(), threads: default_threads() }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The result of writing one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDiff {
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:…` of the blob as written.
    pub digest: String,
    /// Size of the blob as written.
    pub size: u64,
    pub compression: Compression,
    /// Number of tar entries; 0 means the layer changes nothing and should be omitted.
    pub entries: u64,
}

impl LayerDiff {
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
    pub fn media_type(&self) -> &'static str {
        self.compression.media_type()
    }
}

/// True when `dir` holds nothing a layer would record (see [`DiffOptions::lowers`]).
pub fn is_empty_diff(dir: &Path, lowers: &[PathBuf]) -> Result<bool, DiffError> {
    let mut empty = true;
    walk(dir, lowers, &mut |_| {
        empty = false;
        Ok(false)
    })?;
    Ok(empty)
}

/// Writes the layer for `dir` to `out` and returns its digests. Streams: nothing is held in
/// memory beyond one compression block per worker.
pub fn write_layer(dir: &Path, out: impl Write + Send, opts: &DiffOptions) -> Result<LayerDiff, DiffError> {
    if opts.compression == Compression::Uncompressed {
        // The blob is the tar: one hash gives both digests.
        let (mut w, entries, diff_id) = write_tar(dir, CountingWriter { inner: out, count: 0 }, opts)?;
        w.flush().map_err(DiffError::Compress)?;
        return Ok(LayerDiff { digest: diff_id.clone(), diff_id, size: w.count, compression: opts.compression, entries });
    }
    let counted = HashingWriter::new(out);
    let (compressed, entries, diff_id) = match opts.compression {
        Compression::Gzip => {
            let enc = ParallelGzip::new(counted, opts.threads.max(1));
            let (enc, entries, diff_id) = write_tar(dir, enc, opts)?;
            (enc.finish().map_err(DiffError::Compress)?, entries, diff_id)
        }
        // Zstd (uncompressed returned above).
        _ => {
            let enc = zstd::stream::write::Encoder::new(counted, 3).map_err(DiffError::Compress)?;
            let (enc, entries, diff_id) = write_tar(dir, enc, opts)?;
            (enc.finish().map_err(DiffError::Compress)?, entries, diff_id)
        }
    };
    let (mut inner, size, digest) = compressed.finish_hash();
    inner.flush().map_err(DiffError::Compress)?;
    Ok(LayerDiff { diff_id, digest, size, compression: opts.compression, entries })
}

/// Writes the uncompressed layer tar of `dir` to `out` without hashing it, for a sink that
/// computes the digest itself (the store's blob writer): an uncompressed layer's diffID is its
/// blob digest, and hashing a large layer twice costs as much as writing it. Same bytes as
/// [`write_layer`] with [`Compression::Uncompressed`]. Returns the number of tar entries.
pub fn write_tar_unhashed<W: Write>(dir: &Path, out: W, opts: &DiffOptions) -> Result<(W, u64), DiffError> {
    let (mut w, entries) = write_entries(dir, out, opts)?;
    w.flush().map_err(|e| DiffError::Write { path: "<end of archive>".into(), source: e })?;
    Ok((w, entries))
}

/// Counts bytes on their way to `inner`.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tar through a hashing writer; returns the inner writer, entry count and diffID.
fn write_tar<W: Write>(dir: &Path, w: W, opts: &DiffOptions) -> Result<(W, u64, String), DiffError> {
    let (hashing, entries) = write_entries(dir, HashingWriter::new(w), opts)?;
    let (w, _, diff_id) = hashing.finish_hash();
    Ok((w, entries, diff_id))
}

/// Writes the tar of `dir` to `w`; returns the writer and the entry count.
fn write_entries<W: Write>(dir: &Path, w: W, opts: &DiffOptions) -> Result<(W, u64), DiffError> {
    let mut tar = tar::Builder::new(w);
    tar.mode(tar::HeaderMode::Complete);
    let mut entries = 0u64;
    let mut hardlinks: HashMap<(u64, u64), String> = HashMap::new();
    let mut scratch = Vec::new();
    walk(dir, &opts.lowers, &mut |item| {
        entries += 1;
        append(&mut tar, item, opts.source_date_epoch, &mut hardlinks, &mut scratch)?;
        Ok(true)
    })?;
    let w = tar.into_inner().map_err(|e| DiffError::Write { path: "<end of archive>".into(), source: e })?;
    Ok((w, entries))
}

/// One thing the layer records.
enum Item<'a> {
    /// A file, directory, symlink or device at `rel` (no trailing slash).
    Entry { rel: &'a str, path: &'a Path, meta: &'a fs::Metadata },
    /// `rel` was deleted.
    Whiteout { rel: &'a str },
    /// Everything the lowers had below directory `rel` is hidden.
    Opaque { rel: &'a str },
}

/// Walks `dir` in byte order of names, calling `f` for each item; stops early when `f` says so.
fn walk(dir: &Path, lowers: &[PathBuf], f: &mut dyn FnMut(Item<'_>) -> Result<bool, DiffError>) -> Result<(), DiffError> {
    walk_dir(dir, "", lowers, f).map(|_| ())
}

fn read_sorted(dir: &Path) -> Result<Vec<std::ffi::OsString>, DiffError> {
    let rd = fs::read_dir(dir).map_err(|e| DiffError::Read { path: dir.to_path_buf(), source: e })?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DiffError::Read { path: dir.to_path_buf(), source: e })?;
        names.push(e.file_name());
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names)
}

fn walk_dir(dir: &Path, prefix: &str, lowers: &[PathBuf], f: &mut dyn FnMut(Item<'_>) -> Result<bool, DiffError>) -> Result<bool, DiffError> {
    for name in read_sorted(dir)? {
        let name_str = name.to_string_lossy();
        let rel = if prefix.is_empty() { name_str.to_string() } else { format!("{prefix}/{name_str}") };
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| DiffError::Read { path: path.clone(), source: e })?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            if !f(Item::Whiteout { rel: &rel })? {
                return Ok(false);
            }
            continue;
        }
        if ft.is_dir() {
            let opaque = is_opaque(&path);
            let unchanged = !opaque && lowers.iter().any(|l| same_dir(&l.join(&rel), &meta));
            if !unchanged && !f(Item::Entry { rel: &rel, path: &path, meta: &meta })? {
                return Ok(false);
            }
            if opaque && !f(Item::Opaque { rel: &rel })? {
                return Ok(false);
            }
            if !walk_dir(&path, &rel, lowers, f)? {
                return Ok(false);
            }
            continue;
        }
        if !f(Item::Entry { rel: &rel, path: &path, meta: &meta })? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_opaque(path: &Path) -> bool {
    matches!(xattr::get(path, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

fn same_dir(lower: &Path, upper: &fs::Metadata) -> bool {
    match fs::symlink_metadata(lower) {
        Ok(m) => m.is_dir() && m.mode() == upper.mode() && m.uid() == upper.uid() && m.gid() == upper.gid(),
        Err(_) => false,
    }
}

fn clamp(mtime: i64, epoch: Option<i64>) -> u64 {
    let t = match epoch {
        Some(e) if mtime > e => e,
        _ => mtime,
    };
    t.max(0) as u64
}

fn base_header(meta: &fs::Metadata, epoch: Option<i64>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid() as u64);
    h.set_gid(meta.gid() as u64);
    h.set_mtime(clamp(meta.mtime(), epoch));
    h.set_size(0);
    h
}

/// A whiteout or opaque marker: an empty regular file, mode 0644, as the OCI layer spec has them.
fn append_marker<W: Write>(tar: &mut tar::Builder<W>, path: &str, epoch: Option<i64>) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(clamp(0, epoch));
    h.set_size(0);
    tar.append_data(&mut h, path, io::empty())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    item: Item<'_>,
    epoch: Option<i64>,
    hardlinks: &mut HashMap<(u64, u64), String>,
    scratch: &mut Vec<u8>,
) -> Result<(), DiffError> {
    let werr = |rel: &str| {
        let rel = rel.to_string();
        move |e: io::Error| DiffError::Write { path: rel, source: e }
    };
    match item {
        Item::Whiteout { rel } => {
            let (parent, name) = split(rel);
            append_marker(tar, &join(parent, &format!(".wh.{name}")), epoch).map_err(werr(rel))
        }
        Item::Opaque { rel } => append_marker(tar, &format!("{rel}/.wh..wh..opq"), epoch).map_err(werr(rel)),
        Item::Entry { rel, path, meta } => {
            let ft = meta.file_type();
            let mut h = base_header(meta, epoch);
            if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, format!("{rel}/"), io::empty()).map_err(werr(rel))?;
            } else if ft.is_symlink() {
                let target = fs::read_link(path).map_err(|e| DiffError::Read { path: path.to_path_buf(), source: e })?;
                h.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut h, rel, &target).map_err(werr(rel))?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = hardlinks.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return tar.append_link(&mut h, rel, &first).map_err(werr(rel));
                    }
                    hardlinks.insert(key, rel.to_string());
                }
                append_xattrs(tar, path, rel)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(meta.len());
                let mut f = fs::File::open(path).map_err(|e| DiffError::Read { path: path.to_path_buf(), source: e })?;
                // The header (with the path, long names included) from the tar crate; the content
                // copied here in pieces of up to 4 MiB, where the crate would copy 8 KiB at a time.
                tar.append_data(&mut h, rel, io::empty()).map_err(werr(rel))?;
                copy_content(&mut f, tar.get_mut(), meta.len(), path, rel, scratch)?;
            } else if ft.is_char_device() || ft.is_block_device() {
                h.set_entry_type(if ft.is_char_device() { tar::EntryType::Char } else { tar::EntryType::Block });
                let rdev = meta.rdev();
                h.set_device_major(libc::major(rdev)).map_err(werr(rel))?;
                h.set_device_minor(libc::minor(rdev)).map_err(werr(rel))?;
                tar.append_data(&mut h, rel, io::empty()).map_err(werr(rel))?;
            } else if ft.is_fifo() {
                h.set_entry_type(tar::EntryType::Fifo);
                tar.append_data(&mut h, rel, io::empty()).map_err(werr(rel))?;
            }
            // Sockets are not recorded in layers (as Docker does).
            Ok(())
        }
    }
}

/// Writes exactly `size` bytes of `f` and the zero padding to the next 512-byte block: the body
/// of the tar entry whose header said `size`. A file that changed size since it was looked at
/// is an error (the archive would not match its headers).
fn copy_content(f: &mut fs::File, out: &mut dyn Write, size: u64, path: &Path, rel: &str, buf: &mut Vec<u8>) -> Result<(), DiffError> {
    use std::io::Read;
    let read_err = |e: io::Error| DiffError::Read { path: path.to_path_buf(), source: e };
    let write_err = |e: io::Error| DiffError::Write { path: rel.to_string(), source: e };
    let changed = || DiffError::Read { path: path.to_path_buf(), source: io::Error::other("the file changed size while its layer was written") };
    // Large pieces: a blob writer hashes each on a second thread while writing it.
    let want = (size as usize).clamp(8 << 10, 4 << 20);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        let got = match f.read(&mut buf[..n]) {
            Ok(0) => return Err(changed()),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        out.write_all(&buf[..got]).map_err(write_err)?;
        left -= got as u64;
    }
    if f.read(&mut buf[..1]).map_err(read_err)? != 0 {
        return Err(changed());
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize]).map_err(write_err)
}

/// File capabilities must survive into the layer (ping, etc.); other xattrs are dropped.
fn append_xattrs<W: Write>(tar: &mut tar::Builder<W>, path: &Path, rel: &str) -> Result<(), DiffError> {
    if let Ok(Some(cap)) = xattr::get(path, "security.capability") {
        let key = "SCHILY.xattr.security.capability";
        tar.append_pax_extensions([(key, cap.as_slice())]).map_err(|e| DiffError::Write { path: rel.to_string(), source: e })?;
    }
    Ok(())
}

fn split(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") }
}

/// A writer that hashes (sha256) and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), count: 0 }
    }
    /// Returns the inner writer, the byte count and `sha256:<hex>`.
    pub fn finish_hash(self) -> (W, u64, String) {
        (self.inner, self.count, format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Gzip on several cores: the stream is cut into fixed-size blocks, each compressed as its own
/// gzip member on a worker thread, and the members are written in order. A multi-member gzip
/// file is plain gzip to every reader (RFC 1952), and fixed blocks keep the output deterministic.
pub struct ParallelGzip<W: Write> {
    out: W,
    threads: usize,
    buf: Vec<u8>,
    /// Blocks waiting to be compressed together, one per worker.
    batch: Vec<Vec<u8>>,
}

const GZIP_BLOCK: usize = 1 << 20;

impl<W: Write> ParallelGzip<W> {
    pub fn new(out: W, threads: usize) -> Self {
        ParallelGzip { out, threads, buf: Vec::with_capacity(GZIP_BLOCK), batch: Vec::new() }
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let compressed: Vec<io::Result<Vec<u8>>> = if batch.len() == 1 {
            batch.iter().map(|b| gzip_block(b)).collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = batch.iter().map(|b| s.spawn(move || gzip_block(b))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("gzip worker panicked"))))
                    .collect()
            })
        };
        for c in compressed {
            self.out.write_all(&c?)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.batch.is_empty() {
            let b = std::mem::take(&mut self.buf);
            self.batch.push(b);
        }
        self.flush_batch()?;
        Ok(self.out)
    }
}

fn gzip_block(data: &[u8]) -> io::Result<Vec<u8>> {
    // A fixed header (no mtime, no name) keeps members reproducible.
    let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::with_capacity(data.len() / 2 + 64), flate2::Compression::new(6));
    enc.write_all(data)?;
    enc.finish()
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_BLOCK {
            let b = std::mem::replace(&mut self.buf, Vec::with_capacity(GZIP_BLOCK));
            self.batch.push(b);
            if self.batch.len() >= self.threads {
                self.flush_batch()?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries_of(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (p, e.header().entry_type(), e.header().mtime().unwrap_or(0))
            })
            .collect()
    }

    #[test]
    fn upper_dir_becomes_sorted_tar_with_whiteouts_and_opaque_dirs() {
        let d = tempfile::tempdir().expect("tmp");
        let up = d.path();
        fs::create_dir_all(up.join("b/sub")).expect("mkdir");
        fs::write(up.join("b/sub/f"), b"hello").expect("write");
        fs::write(up.join("a"), b"x").expect("write");
        std::os::unix::fs::symlink("a", up.join("c")).expect("symlink");
        nix::sys::stat::mknod(&up.join("gone"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).expect("mknod");
        fs::create_dir(up.join("opq")).expect("mkdir");
        xattr::set(up.join("opq"), "trusted.overlay.opaque", b"y").expect("xattr");
        let mut out = Vec::new();
        let opts = DiffOptions { compression: Compression::Uncompressed, ..Default::default() };
        let diff = write_layer(up, &mut out, &opts).expect("diff");
        let names: Vec<String> = entries_of(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(names, vec!["a", "b/", "b/sub/", "b/sub/f", "c", ".wh.gone", "opq/", "opq/.wh..wh..opq"]);
        assert_eq!(diff.diff_id, diff.digest);
        assert_eq!(diff.size, out.len() as u64);
        assert_eq!(diff.diff_id, format!("sha256:{}", hex::encode(Sha256::digest(&out))));
    }

    #[test]
    fn same_tree_gives_same_digests_and_gzip_diff_id_matches_uncompressed() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir(d.path().join("dir")).expect("mkdir");
        // Larger than one gzip block so several members are written.
        let big: Vec<u8> = (0..3 * GZIP_BLOCK + 17).map(|i| (i % 251) as u8).collect();
        fs::write(d.path().join("dir/big"), &big).expect("write");
        let plain = write_layer(d.path(), io::sink(), &DiffOptions { compression: Compression::Uncompressed, ..Default::default() }).expect("plain");
        let mut gz = Vec::new();
        let g = write_layer(d.path(), &mut gz, &DiffOptions { compression: Compression::Gzip, threads: 2, ..Default::default() }).expect("gzip");
        let g2 = write_layer(d.path(), io::sink(), &DiffOptions { compression: Compression::Gzip, threads: 2, ..Default::default() }).expect("gzip");
        assert_eq!(plain.diff_id, g.diff_id);
        assert_eq!(g, g2);
        let mut un = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut un).expect("gunzip");
        assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&un))), plain.diff_id);
        let z = write_layer(d.path(), io::sink(), &DiffOptions { compression: Compression::Zstd, ..Default::default() }).expect("zstd");
        assert_eq!(z.diff_id, plain.diff_id);
    }

    #[test]
    fn unhashed_tar_is_the_uncompressed_layer() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir(d.path().join("dir")).expect("mkdir");
        fs::write(d.path().join("dir/f"), vec![7u8; 3000]).expect("write");
        let mut hashed = Vec::new();
        let opts = DiffOptions { compression: Compression::Uncompressed, source_date_epoch: Some(5), ..Default::default() };
        let diff = write_layer(d.path(), &mut hashed, &opts).expect("diff");
        let (plain, entries) = write_tar_unhashed(d.path(), Vec::new(), &opts).expect("tar");
        assert_eq!(plain, hashed);
        assert_eq!(entries, diff.entries);
    }

    #[test]
    fn file_contents_of_every_size_round_trip_through_the_layer() {
        let d = tempfile::tempdir().expect("tmp");
        let sizes = [0usize, 1, 511, 512, 513, (1 << 20) + 3, 3 << 20];
        for (i, n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..*n).map(|b| (b * 31 + i) as u8).collect();
            fs::write(d.path().join(format!("f{i}")), data).expect("write");
        }
        let mut out = Vec::new();
        write_layer(d.path(), &mut out, &DiffOptions { compression: Compression::Uncompressed, ..Default::default() }).expect("diff");
        assert_eq!(out.len() % 512, 0);
        let mut a = tar::Archive::new(&out[..]);
        let mut seen = 0;
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut got = Vec::new();
            e.read_to_end(&mut got).expect("read");
            assert_eq!(got, fs::read(d.path().join(&name)).expect("read"), "{name}");
            seen += 1;
        }
        assert_eq!(seen, sizes.len());
    }

    #[test]
    fn mtimes_are_clamped_to_source_date_epoch() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("f"), b"x").expect("write");
        let mut out = Vec::new();
        let opts = DiffOptions { compression: Compression::Uncompressed, source_date_epoch: Some(1000), ..Default::default() };
        write_layer(d.path(), &mut out, &opts).expect("diff");
        assert_eq!(entries_of(&out), vec![("f".to_string(), tar::EntryType::Regular, 1000)]);
    }

    #[test]
    fn directory_only_copied_up_is_not_a_change() {
        let lower = tempfile::tempdir().expect("tmp");
        let upper = tempfile::tempdir().expect("tmp");
        fs::create_dir(lower.path().join("etc")).expect("mkdir");
        fs::create_dir(upper.path().join("etc")).expect("mkdir");
        let lowers = vec![lower.path().to_path_buf()];
        assert!(is_empty_diff(upper.path(), &lowers).expect("check"));
        fs::write(upper.path().join("etc/new"), b"1").expect("write");
        assert!(!is_empty_diff(upper.path(), &lowers).expect("check"));
    }
}
