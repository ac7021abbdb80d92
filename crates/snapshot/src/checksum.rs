//! Content checksums of files and trees, for cache keys.
//!
//! A checksum covers what a copy would reproduce: the path (relative to the tree), the type,
//! permission bits, uid/gid, the content or symlink target — never mtime, atime or ctime, so a
//! `touch` or a fresh clone keeps the cache. A [`StatCache`] remembers the content hash of a file
//! by (size, mtime, ctime, inode), so a no-op rebuild hashes metadata only.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// What a file looked like when its content was hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
            ino: m.ino(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cached {
    stamp: Stamp,
    hash: String,
}

/// path -> (stamp -> content hash). Thread-safe; persisted with [`StatCache::save`].
#[derive(Default)]
pub struct StatCache {
    entries: std::sync::Mutex<HashMap<PathBuf, Cached>>,
    dirty: std::sync::atomic::AtomicBool,
}

impl StatCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a cache written by [`StatCache::save`]; a missing or unreadable file is an empty cache.
    pub fn load(file: &Path) -> StatCache {
        let entries: HashMap<PathBuf, Cached> =
            fs::read(file).ok().and_then(|b| serde_json::from_slice::<Vec<(PathBuf, Cached)>>(&b).ok()).map(|v| v.into_iter().collect()).unwrap_or_default();
        StatCache { entries: std::sync::Mutex::new(entries), dirty: Default::default() }
    }

    /// Writes the cache atomically (temp file + fsync + rename) when it changed.
    pub fn save(&self, file: &Path) -> io::Result<()> {
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let list: Vec<(PathBuf, Cached)> = match self.entries.lock() {
            Ok(e) => e.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return Ok(()),
        };
        let bytes = serde_json::to_vec(&list).map_err(io::Error::other)?;
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, file)
    }

    /// The content hash of the regular file at `path`, from the cache when its stamp matches.
    pub fn file_hash(&self, path: &Path, meta: &fs::Metadata) -> Result<String, ChecksumError> {
        let stamp = Stamp::of(meta);
        if let Ok(e) = self.entries.lock()
            && let Some(c) = e.get(path)
                && c.stamp == stamp {
                    return Ok(c.hash.clone());
                }
        let hash = hash_file(path)?;
        if let Ok(mut e) = self.entries.lock() {
            e.insert(path.to_path_buf(), Cached { stamp, hash: hash.clone() });
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(hash)
    }
}

fn hash_file(path: &Path) -> Result<String, ChecksumError> {
    let mut h = blake3::Hasher::new();
    let f = fs::File::open(path).map_err(|e| ChecksumError::Read { path: path.to_path_buf(), source: e })?;
    h.update_reader(f).map_err(|e| ChecksumError::Read { path: path.to_path_buf(), source: e })?;
    Ok(h.finalize().to_hex().to_string())
}

/// Accumulates the checksum of a set of paths.
pub struct TreeHasher {
    h: blake3::Hasher,
    /// Leave uid/gid out (a build context: a copy from it makes everything root's, and the
    /// owners of a checkout differ from machine to machine).
    without_owners: bool,
    /// Each entry's own digest by path, when asked for (to say which file changed).
    entries: Option<Vec<(String, String)>>,
}

impl Default for TreeHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeHasher {
    pub fn new() -> Self {
        TreeHasher { h: blake3::Hasher::new(), without_owners: false, entries: None }
    }

    /// A hasher for trees whose owners do not count (see the field).
    pub fn without_owners() -> Self {
        TreeHasher { without_owners: true, ..Self::new() }
    }

    /// Also keeps every entry's digest (`kind+mode:hash`) by path, see [`TreeHasher::entries`].
    pub fn keeping_entries(mut self) -> Self {
        self.entries = Some(Vec::new());
        self
    }

    /// The entries added so far, `(path, kind and mode ":" digest of content or link target)`,
    /// when made [`TreeHasher::keeping_entries`].
    pub fn entries(&self) -> &[(String, String)] {
        self.entries.as_deref().unwrap_or_default()
    }

    /// Adds one entry: `rel` is the path as the checksum should name it.
    pub fn add_entry(&mut self, rel: &str, path: &Path, meta: &fs::Metadata, stat: &StatCache) -> Result<(), ChecksumError> {
        let ft = meta.file_type();
        let (kind, body) = if ft.is_dir() {
            ("d", String::new())
        } else if ft.is_symlink() {
            let t = fs::read_link(path).map_err(|e| ChecksumError::Read { path: path.to_path_buf(), source: e })?;
            ("l", t.to_string_lossy().into_owned())
        } else if ft.is_file() {
            ("f", stat.file_hash(path, meta)?)
        } else {
            ("o", format!("{}", meta.rdev()))
        };
        let (uid, gid) = if self.without_owners { (0, 0) } else { (meta.uid(), meta.gid()) };
        let line = format!("{kind}\0{rel}\0{:o}\0{uid}\0{gid}\0{body}\n", meta.mode() & 0o7777);
        self.h.update(line.as_bytes());
        if let Some(entries) = &mut self.entries {
            entries.push((rel.to_string(), format!("{kind}{:o}:{}", meta.mode() & 0o7777, &blake3::hash(body.as_bytes()).to_hex()[..16])));
        }
        Ok(())
    }

    /// Adds a free-form marker (e.g. "this source matched nothing").
    pub fn add_marker(&mut self, s: &str) {
        self.h.update(b"m\0");
        self.h.update(s.as_bytes());
        self.h.update(b"\n");
    }

    pub fn finish(self) -> String {
        self.h.finalize().to_hex().to_string()
    }
}

/// The checksum of the tree at `root/rel` (a file, symlink or directory, recursively), skipping
/// paths (relative to `root`) for which `excluded` says true. Entries are visited in byte order.
pub fn checksum_path(root: &Path, rel: &str, excluded: &dyn Fn(&str) -> bool, stat: &StatCache, out: &mut TreeHasher) -> Result<(), ChecksumError> {
    let path = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    let meta = fs::symlink_metadata(&path).map_err(|e| ChecksumError::Read { path: path.clone(), source: e })?;
    out.add_entry(rel, &path, &meta, stat)?;
    if meta.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&path)
            .map_err(|e| ChecksumError::Read { path: path.clone(), source: e })?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for n in names {
            let child = if rel.is_empty() { n.to_string_lossy().into_owned() } else { format!("{rel}/{}", n.to_string_lossy()) };
            if excluded(&child) {
                continue;
            }
            checksum_path(root, &child, excluded, stat, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(root: &Path, stat: &StatCache) -> String {
        let mut h = TreeHasher::new();
        checksum_path(root, "", &|_| false, stat, &mut h).expect("checksum");
        h.finish()
    }

    #[test]
    fn touch_keeps_checksum_but_content_and_mode_change_it() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("a"), b"one").expect("write");
        let stat = StatCache::new();
        let first = sum(d.path(), &stat);
        let f = fs::File::options().write(true).open(d.path().join("a")).expect("open");
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60)).expect("touch");
        assert_eq!(first, sum(d.path(), &stat));
        fs::write(d.path().join("a"), b"two").expect("write");
        let changed = sum(d.path(), &stat);
        assert_ne!(first, changed);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_ne!(changed, sum(d.path(), &stat));
    }

    #[test]
    fn excluded_paths_do_not_count_and_stat_cache_persists() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("keep"), b"1").expect("write");
        fs::write(d.path().join("skip"), b"1").expect("write");
        let stat = StatCache::new();
        let mut h = TreeHasher::new();
        checksum_path(d.path(), "", &|p| p == "skip", &stat, &mut h).expect("sum");
        let a = h.finish();
        fs::write(d.path().join("skip"), b"2").expect("write");
        let mut h = TreeHasher::new();
        checksum_path(d.path(), "", &|p| p == "skip", &stat, &mut h).expect("sum");
        assert_eq!(a, h.finish());
        let file = d.path().join("stat.json");
        stat.save(&file).expect("save");
        let loaded = StatCache::load(&file);
        assert_eq!(loaded.entries.lock().map(|e| e.len()).unwrap_or(0), 1, "only the file that was read is remembered");
    }
}
