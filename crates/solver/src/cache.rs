//! The cache index: cache key -> result, persistent under `<root>/cache/`.
//!
//! ```text
//! cache/index/<key>.json     a record: the layers of the result (written last, by rename)
//! cache/layers/<id>/         one layer as a directory (an overlay upper dir or a COPY's output)
//! cache/blobs/<id>.<c>.json  the blob a layer was exported as, per compression
//! cache/locks/<key>.lock     held while a key is being computed, so concurrent builds wait
//! cache/mounts/<id>/         RUN --mount=type=cache directories
//! cache/stat/<ctx>.json      stat caches of build contexts
//! cache/lock                 shared by builds, exclusive for prune
//! ```
//!
//! Crash safety: a layer directory is complete before it is renamed into `layers/`, and a
//! record is written (tmp + fsync + rename) only after its layers are in place; a record whose
//! layer is missing is a miss. Readers need no lock.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SolveError};

/// A cache key: blake3 over the op (volatile fields removed), the input keys and the content
/// checksums of files the op reads.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The short id used for layer directories: overlay's mount options are limited to one
    /// page, so 40 lower dirs need short paths.
    pub fn layer_id(&self) -> String {
        self.hex()[..16].to_string()
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.hex()[..12])
    }
}

/// Incremental construction of a cache key.
pub struct KeyHasher(blake3::Hasher);

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    pub fn new() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"builder-cache-v1\0");
        KeyHasher(h)
    }
    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.0.update(name.as_bytes());
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }
    pub fn finish(&self) -> CacheKey {
        CacheKey(*self.0.finalize().as_bytes())
    }
}

/// A compressed blob made from a layer directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobDesc {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
}

/// One layer of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The layer directory, relative to the state root.
    pub dir: PathBuf,
    /// Layers of base images already have a blob in the store; built layers get one on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobDesc>,
}

/// A filesystem result: a stack of layers, bottom first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub layers: Vec<LayerRef>,
}

/// What the index stores under a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheRecord {
    pub snapshot: Snapshot,
    /// How many layers at the top of `snapshot` this step added (0 or 1; more for merges).
    pub new_layers: usize,
    /// Bytes of the new layers on disk.
    pub size: u64,
    pub description: String,
    pub created: u64,
}

/// The cache index of one state root.
#[derive(Clone, Debug)]
pub struct CacheIndex {
    root: PathBuf,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl CacheIndex {
    /// Opens (creating) `<root>/cache`.
    pub fn open(state_root: &Path) -> Result<CacheIndex> {
        let idx = CacheIndex { root: state_root.to_path_buf() };
        for d in ["cache/index", "cache/layers", "cache/blobs", "cache/locks", "cache/mounts", "cache/stat", "cache/tmp"] {
            let p = state_root.join(d);
            fs::create_dir_all(&p).map_err(SolveError::io("create", &p))?;
        }
        Ok(idx)
    }

    pub fn state_root(&self) -> &Path {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        self.dir().join("index").join(format!("{}.json", key.hex()))
    }

    /// Where the layer a step with `key` makes lives (relative to the state root).
    pub fn layer_dir_rel(&self, key: &CacheKey) -> PathBuf {
        PathBuf::from("cache/layers").join(key.layer_id())
    }

    pub fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The record for `key`, if present and all its layers exist. Marks it used.
    pub fn get(&self, key: &CacheKey) -> Option<CacheRecord> {
        let path = self.record_path(key);
        let bytes = fs::read(&path).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        if !rec.snapshot.layers.iter().all(|l| self.abs(&l.dir).is_dir()) {
            return None;
        }
        // Last use is the record's mtime (for prune); failure to update it is harmless.
        let _ = fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
        Some(rec)
    }

    /// Stores a record (atomically).
    pub fn put(&self, key: &CacheKey, rec: &CacheRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| SolveError::Other(format!("encoding cache record: {e}")))?;
        write_atomic(&self.record_path(key), &bytes, &self.dir().join("tmp"))
    }

    /// A fresh private work directory under `cache/tmp` (same filesystem as `layers/`), locked
    /// while alive so `clean_tmp` of another process leaves it alone; deleted when dropped.
    pub fn work_dir(&self) -> Result<WorkDir> {
        let base = self.dir().join("tmp");
        let dir = tempfile::Builder::new().prefix("work-").tempdir_in(&base).map_err(SolveError::io("create work dir in", &base))?;
        let lock_path = dir.path().join(".lock");
        let lock = fs::File::create(&lock_path).map_err(SolveError::io("create", &lock_path))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(SolveError::io("lock", &lock_path))?;
        Ok(WorkDir { dir, _lock: lock })
    }

    /// Moves a finished layer directory into place for `key` and returns its relative path.
    /// When another build already put one there, ours is discarded and theirs is used.
    pub fn commit_layer(&self, key: &CacheKey, dir: &Path) -> Result<PathBuf> {
        let rel = self.layer_dir_rel(key);
        let dest = self.abs(&rel);
        if dest.is_dir() {
            return Ok(rel);
        }
        sync_tree(dir);
        match fs::rename(dir, &dest) {
            Ok(()) => Ok(rel),
            Err(_) if dest.is_dir() => Ok(rel),
            Err(e) => Err(SolveError::Io { op: "move layer into", path: dest, source: e }),
        }
    }

    /// Takes the per-key lock, so only one process computes `key` at a time.
    pub fn lock_key(&self, key: &CacheKey) -> Result<fs::File> {
        let path = self.dir().join("locks").join(format!("{}.lock", key.hex()));
        let f = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&f).map_err(SolveError::io("lock", &path))?;
        Ok(f)
    }

    /// The build-wide lock: shared while building, exclusive while pruning.
    pub fn lock_shared(&self) -> Result<fs::File> {
        let path = self.dir().join("lock");
        let f = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
        fs4::fs_std::FileExt::lock_shared(&f).map_err(SolveError::io("lock", &path))?;
        Ok(f)
    }

    fn lock_exclusive(&self) -> Result<fs::File> {
        let path = self.dir().join("lock");
        let f = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&f).map_err(SolveError::io("lock", &path))?;
        Ok(f)
    }

    /// The blob a layer was exported as with `compression`, if known.
    pub fn layer_blob(&self, layer_dir: &Path, compression: &str) -> Option<BlobDesc> {
        let id = layer_dir.file_name()?.to_string_lossy().into_owned();
        let bytes = fs::read(self.dir().join("blobs").join(format!("{id}.{compression}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn set_layer_blob(&self, layer_dir: &Path, compression: &str, blob: &BlobDesc) -> Result<()> {
        let id = layer_dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = serde_json::to_vec(blob).map_err(|e| SolveError::Other(e.to_string()))?;
        write_atomic(&self.dir().join("blobs").join(format!("{id}.{compression}.json")), &bytes, &self.dir().join("tmp"))
    }

    /// Directory of a `RUN --mount=type=cache` with `id`.
    pub fn mount_dir(&self, id: &str) -> PathBuf {
        let h = blake3::hash(id.as_bytes()).to_hex();
        self.dir().join("mounts").join(&h[..16])
    }

    /// File of the stat cache for a context directory.
    pub fn stat_file(&self, context: &Path) -> PathBuf {
        let h = blake3::hash(context.as_os_str().as_encoded_bytes()).to_hex();
        self.dir().join("stat").join(format!("{}.json", &h[..16]))
    }

    /// Removes leftovers of killed builds in `cache/tmp` (directories no live build holds).
    pub fn clean_tmp(&self) {
        let base = self.dir().join("tmp");
        let Ok(rd) = fs::read_dir(&base) else { return };
        for e in rd.flatten() {
            let p = e.path();
            // A work dir of a live build is locked by it (see `WorkDir`).
            let lock = p.join(".lock");
            if let Ok(f) = fs::File::open(&lock) {
                if fs4::fs_std::FileExt::try_lock_exclusive(&f).is_err() {
                    continue;
                }
            } else if e.metadata().ok().and_then(|m| m.modified().ok()).is_some_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(60)) {
                // Being created right now.
                continue;
            }
            if p.is_dir() {
                let _ = fs::remove_dir_all(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }

    /// Disk usage: (records, bytes of layers, bytes of cache mounts).
    pub fn usage(&self) -> Result<Usage> {
        let records = self.records()?;
        let layers = dir_size(&self.dir().join("layers"));
        let mounts = dir_size(&self.dir().join("mounts"));
        Ok(Usage { records: records.len(), layer_bytes: layers, mount_bytes: mounts, entries: records })
    }

    fn records(&self) -> Result<Vec<UsageEntry>> {
        let dir = self.dir().join("index");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(SolveError::io("read", &dir))?.flatten() {
            let p = e.path();
            let Some(key) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
            let last_used = e.metadata().ok().and_then(|m| m.modified().ok()).unwrap_or(SystemTime::UNIX_EPOCH);
            let Ok(rec) = fs::read(&p).map_err(|_| ()).and_then(|b| serde_json::from_slice::<CacheRecord>(&b).map_err(|_| ())) else {
                out.push(UsageEntry { key, path: p, last_used, size: 0, description: "(unreadable)".into(), layers: vec![] });
                continue;
            };
            let new: Vec<PathBuf> = rec.snapshot.layers.iter().rev().take(rec.new_layers).map(|l| l.dir.clone()).collect();
            out.push(UsageEntry { key, path: p, last_used, size: rec.size, description: rec.description, layers: new });
        }
        out.sort_by_key(|e| e.last_used);
        Ok(out)
    }

    /// Removes cache entries: all of them (`all`), those unused for 48 hours, and then the least
    /// recently used until the cache is at most `keep_storage` bytes. Layer directories no
    /// remaining record uses are deleted. Waits for running builds to finish.
    pub fn prune(&self, all: bool, keep_storage: Option<u64>) -> Result<PruneStats> {
        let _lock = self.lock_exclusive()?;
        let mut records = self.records()?;
        let mut stats = PruneStats::default();
        let cutoff = SystemTime::now() - Duration::from_secs(48 * 3600);
        let mut total: u64 = records.iter().map(|r| r.size).sum::<u64>() + dir_size(&self.dir().join("mounts"));
        let mut keep = Vec::new();
        for r in records.drain(..) {
            let too_big = keep_storage.is_some_and(|k| total > k);
            let remove = all || r.last_used < cutoff || too_big;
            if remove {
                let _ = fs::remove_file(&r.path);
                stats.records += 1;
                total = total.saturating_sub(r.size);
            } else {
                keep.push(r);
            }
        }
        if all || keep_storage.is_some_and(|k| total > k) {
            let m = self.dir().join("mounts");
            stats.bytes += dir_size(&m);
            let _ = fs::remove_dir_all(&m);
            let _ = fs::create_dir_all(&m);
        }
        // Layers still named by a remaining record (any record names all of its layers).
        let mut used = std::collections::HashSet::new();
        let dir = self.dir().join("index");
        for e in fs::read_dir(&dir).map_err(SolveError::io("read", &dir))?.flatten() {
            if let Ok(rec) = fs::read(e.path()).map_err(|_| ()).and_then(|b| serde_json::from_slice::<CacheRecord>(&b).map_err(|_| ())) {
                for l in rec.snapshot.layers {
                    if let Some(n) = l.dir.file_name() {
                        used.insert(n.to_os_string());
                    }
                }
            }
        }
        let layers = self.dir().join("layers");
        for e in fs::read_dir(&layers).map_err(SolveError::io("read", &layers))?.flatten() {
            if !used.contains(&e.file_name()) {
                stats.bytes += dir_size(&e.path());
                let _ = fs::remove_dir_all(e.path());
                let _ = fs::remove_file(self.dir().join("blobs").join(format!("{}.gzip.json", e.file_name().to_string_lossy())));
                let _ = fs::remove_file(self.dir().join("blobs").join(format!("{}.zstd.json", e.file_name().to_string_lossy())));
                let _ = fs::remove_file(self.dir().join("blobs").join(format!("{}.uncompressed.json", e.file_name().to_string_lossy())));
                stats.layers += 1;
            }
        }
        self.clean_tmp();
        Ok(stats)
    }

    /// Store blobs the cache still names: base-image layers of every record's snapshot and the
    /// blobs exported for its built layers. Image-store GC keeps these as roots.
    pub fn referenced_blobs(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let index = self.dir().join("index");
        for e in fs::read_dir(&index).map_err(SolveError::io("read", &index))?.flatten() {
            if let Ok(rec) = fs::read(e.path()).map_err(|_| ()).and_then(|b| serde_json::from_slice::<CacheRecord>(&b).map_err(|_| ())) {
                out.extend(rec.snapshot.layers.into_iter().filter_map(|l| l.blob.map(|b| b.digest)));
            }
        }
        let blobs = self.dir().join("blobs");
        if let Ok(rd) = fs::read_dir(&blobs) {
            for e in rd.flatten() {
                if let Ok(desc) = fs::read(e.path()).map_err(|_| ()).and_then(|b| serde_json::from_slice::<BlobDesc>(&b).map_err(|_| ())) {
                    out.push(desc.digest);
                }
            }
        }
        Ok(out)
    }

    /// New records written since `created` (for tests and `du`).
    pub fn record_count(&self) -> usize {
        fs::read_dir(self.dir().join("index")).map(|rd| rd.count()).unwrap_or(0)
    }
}

/// A private directory for one step's work in progress.
pub struct WorkDir {
    dir: tempfile::TempDir,
    _lock: fs::File,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneStats {
    pub records: usize,
    pub layers: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct UsageEntry {
    pub key: String,
    pub path: PathBuf,
    pub last_used: SystemTime,
    pub size: u64,
    pub description: String,
    pub layers: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Usage {
    pub records: usize,
    pub layer_bytes: u64,
    pub mount_bytes: u64,
    pub entries: Vec<UsageEntry>,
}

/// Bytes of regular files below `dir` (0 when missing).
pub fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Makes a finished layer durable before it becomes visible: one syncfs(2) of its filesystem
/// (one journal commit, where an fsync per file would cost one each).
/// Skipped when BUILDER_NO_FSYNC is set.
fn sync_tree(dir: &Path) {
    if std::env::var_os("BUILDER_NO_FSYNC").is_some() {
        return;
    }
    if let Ok(f) = fs::File::open(dir) {
        let _ = nix::unistd::syncfs(&f);
    }
}

/// Writes `bytes` to `dest` with tmp + rename, so readers see the old or the new file, never
/// half of one. No fsync: every file written here is a record that reads as a cache miss when
/// it is missing or torn (after a power loss), and the layers it names were synced before.
pub fn write_atomic(dest: &Path, bytes: &[u8], tmp_dir: &Path) -> Result<()> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dest.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tmp_dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(SolveError::io("create", &tmp))?;
    f.write_all(bytes).map_err(SolveError::io("write", &tmp))?;
    drop(f);
    fs::rename(&tmp, dest).map_err(SolveError::io("rename into", dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CacheKey {
        let mut h = KeyHasher::new();
        h.field("t", s.as_bytes());
        h.finish()
    }

    #[test]
    fn record_survives_reopen_and_missing_layer_is_a_miss() {
        let root = tempfile::tempdir().expect("tmp");
        let idx = CacheIndex::open(root.path()).expect("open");
        let k = key("a");
        let work = idx.work_dir().expect("work");
        let layer = work.path().join("layer");
        fs::create_dir(&layer).expect("mkdir");
        fs::write(layer.join("f"), b"x").expect("write");
        let rel = idx.commit_layer(&k, &layer).expect("commit");
        let rec = CacheRecord { snapshot: Snapshot { layers: vec![LayerRef { dir: rel.clone(), blob: None }] }, new_layers: 1, size: 1, description: "RUN x".into(), created: now_secs() };
        idx.put(&k, &rec).expect("put");
        let again = CacheIndex::open(root.path()).expect("reopen");
        assert_eq!(again.get(&k).expect("hit").snapshot, rec.snapshot);
        assert!(again.get(&key("b")).is_none());
        fs::remove_dir_all(root.path().join(&rel)).expect("rm layer");
        assert!(again.get(&k).is_none(), "a record whose layer is gone must be a miss");
    }

    #[test]
    fn prune_all_removes_records_and_layers() {
        let root = tempfile::tempdir().expect("tmp");
        let idx = CacheIndex::open(root.path()).expect("open");
        let k = key("p");
        let work = idx.work_dir().expect("work");
        let layer = work.path().join("layer");
        fs::create_dir(&layer).expect("mkdir");
        fs::write(layer.join("f"), vec![0u8; 1000]).expect("write");
        let rel = idx.commit_layer(&k, &layer).expect("commit");
        let rec = CacheRecord { snapshot: Snapshot { layers: vec![LayerRef { dir: rel.clone(), blob: None }] }, new_layers: 1, size: 1000, description: "RUN x".into(), created: now_secs() };
        idx.put(&k, &rec).expect("put");
        assert_eq!(idx.usage().expect("du").records, 1);
        let st = idx.prune(false, None).expect("prune");
        assert_eq!(st.records, 0, "a fresh record is kept by a plain prune");
        let st = idx.prune(true, None).expect("prune all");
        assert_eq!((st.records, st.layers), (1, 1));
        assert!(!root.path().join(rel).exists());
        assert_eq!(idx.usage().expect("du").records, 0);
    }
}
