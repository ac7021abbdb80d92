//! The cache index: cache key -> result, persistent under `<root>/cache/`.
//!
//! ```text
//! cache/index/<key>.json     a record: the layers of the result (written last, by rename)
//! cache/layers/<id>/         one layer as a directory (an overlay upper dir or a COPY's output)
//! cache/blobs/<id>.<c>.json  the blob a layer was exported as, per compression
//! cache/locks/<key>.lock     held while a key is being computed, so concurrent builds wait
//! cache/mounts/<id>/         RUN --mount=type=cache directories
//! cache/stat/<ctx>.json      stat caches of build contexts
//! cache/steps/<step>.json    recent results of one Dockerfile step, to explain a miss
//! cache/pending/<id>         a layer not known to be on disk yet: the boot it was written in
//! cache/lock                 shared by builds, exclusive for prune
//! ```
//!
//! Crash safety: a layer directory is complete before it is renamed into `layers/`, and a
//! record is written (tmp + rename) only after its layers are in place; a record whose layer is
//! missing is a miss. Readers need no lock.
//!
//! Durability without a flush per step: a new layer is not synced when it is committed (that
//! would cost a flush of everything it wrote, in the middle of the build). Instead its
//! `pending/<id>` marker, created before the layer is renamed into place, names the boot it was
//! written in. A killed process loses nothing (its writes are in the page cache), so within that
//! boot the layer is good; after a crash of the machine it may be torn, so a layer whose marker
//! names another boot (or is unreadable) is a miss and is replaced. [`CacheIndex::settle`],
//! run when a solver opens the index, syncs the filesystem once for layers older than a minute
//! (by then the kernel has written them back, so it is cheap) and removes their markers.
//! Filesystems with a metadata journal (ext4, xfs, btrfs) persist the marker no later than the
//! rename that follows it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SolveError};
use crate::provenance::Provenance;

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
    /// What went into the key, in the user's terms (for miss explanations and cache export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// How many recent results of one step the index remembers for explaining misses.
const STEP_HISTORY: usize = 4;

/// One remembered result of a step: `cache/steps/<step>.json` lists the keys of the recent ones,
/// newest first; their provenance is in their records.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StepResult {
    key: String,
}

/// How long a committed layer stays pending before [`CacheIndex::open`] syncs it: longer than
/// the kernel's usual write-back delay (30 s), so the sync finds little left to write.
pub const SETTLE_AGE: Duration = Duration::from_secs(60);

/// The cache index of one state root.
#[derive(Clone, Debug)]
pub struct CacheIndex {
    root: PathBuf,
    /// When [`CacheIndex::settle`] last ran in this process (seconds since the epoch).
    last_settle: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl CacheIndex {
    /// Opens (creating) `<root>/cache`, and settles layers pending for more than
    /// [`SETTLE_AGE`] (see [`CacheIndex::settle`]).
    pub fn open(state_root: &Path) -> Result<CacheIndex> {
        let idx = CacheIndex { root: state_root.to_path_buf(), last_settle: Default::default() };
        for d in ["cache/index", "cache/layers", "cache/blobs", "cache/locks", "cache/mounts", "cache/stat", "cache/tmp", "cache/pending", "cache/steps"] {
            let p = state_root.join(d);
            fs::create_dir_all(&p).map_err(SolveError::io("create", &p))?;
        }
        match idx.settle(SETTLE_AGE) {
            Ok(st) if st != SettleStats::default() => tracing::debug!(settled = st.settled, discarded = st.discarded, "settled pending layers"),
            Ok(_) => {}
            Err(e) => tracing::warn!("making cached layers durable: {e}"),
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
        if !rec.snapshot.layers.iter().all(|l| self.layer_is_usable(&l.dir) || self.layer_can_be_fetched(l)) {
            return None;
        }
        // Last use is the record's mtime (for prune); failure to update it is harmless.
        let _ = fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
        Some(rec)
    }

    /// Stores a record (atomically).
    pub fn put(&self, key: &CacheKey, rec: &CacheRecord) -> Result<()> {
        let bytes = serde_json::to_vec(rec).map_err(|e| SolveError::Other(format!("encoding cache record: {e}")))?;
        write_atomic(&self.record_path(key), &bytes, &self.dir().join("tmp"))
    }

    /// Remembers that `key` is the latest result of the step `prov` describes (no-op for
    /// internal steps). Concurrent builds may lose each other's update: it only feeds messages.
    pub fn remember_step(&self, key: &CacheKey, prov: &Provenance) {
        let mut recent = self.step_keys(&prov.step);
        let hex = key.hex();
        if prov.step.is_empty() || recent.first().is_some_and(|r| r.key == hex) {
            // Already the latest: a cached rebuild writes nothing.
            return;
        }
        recent.retain(|r| r.key != hex);
        recent.insert(0, StepResult { key: hex });
        recent.truncate(STEP_HISTORY);
        if let Ok(bytes) = serde_json::to_vec(&recent) {
            let _ = write_atomic(&self.dir().join("steps").join(format!("{}.json", prov.step)), &bytes, &self.dir().join("tmp"));
        }
    }

    fn step_keys(&self, step: &str) -> Vec<StepResult> {
        if step.is_empty() || !step.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Vec::new();
        }
        fs::read(self.dir().join("steps").join(format!("{step}.json"))).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// The provenance of the recent results of a step still in the cache, newest first (see
    /// [`CacheIndex::remember_step`]). Reading them does not count as using them.
    pub fn step_history(&self, step: &str) -> Vec<Provenance> {
        self.step_keys(step)
            .into_iter()
            .filter(|r| r.key.len() == 64 && r.key.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter_map(|r| fs::read(self.dir().join("index").join(format!("{}.json", r.key))).ok())
            .filter_map(|b| serde_json::from_slice::<CacheRecord>(&b).ok()?.provenance)
            .collect()
    }

    /// A fresh private work directory under `cache/tmp` (same filesystem as `layers/`), locked
    /// while alive so `clean_tmp` of another process leaves it alone; deleted when dropped.
    pub fn work_dir(&self) -> Result<WorkDir> {
        let base = self.dir().join("tmp");
        let dir = tempfile::Builder::new().prefix("work-").tempdir_in(&base).map_err(SolveError::io("create work dir in", &base))?;
        let lock_path = dir.path().join(".lock");
        let lock = fs::File::create(&lock_path).map_err(SolveError::io("create", &lock_path))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(SolveError::io("lock", &lock_path))?;
        // From here on `WorkDir` removes it.
        Ok(WorkDir { path: dir.keep(), lock: Some(lock) })
    }

    /// Moves a finished layer directory into place for `key` and returns its relative path.
    /// When another build already put one there, ours is discarded and theirs is used. The
    /// layer is not synced here: see "Durability" in the module docs.
    pub fn commit_layer(&self, key: &CacheKey, dir: &Path) -> Result<PathBuf> {
        let rel = self.layer_dir_rel(key);
        let dest = self.abs(&rel);
        if dest.is_dir() {
            if self.layer_is_usable(&rel) {
                return Ok(rel);
            }
            // Written before a crash of the machine: may be torn. Move it out of the way.
            let stale = self.dir().join("tmp").join(format!("stale-{}-{}", key.layer_id(), std::process::id()));
            fs::rename(&dest, &stale).map_err(SolveError::io("move aside stale layer", &dest))?;
            let _ = fs::remove_dir_all(&stale);
        }
        match current_boot() {
            // The marker first: the layer must never be on disk without it.
            Some(boot) => write_atomic(&self.pending_path(&key.layer_id()), boot.as_bytes(), &self.dir().join("tmp"))?,
            None => sync_tree(dir),
        }
        match fs::rename(dir, &dest) {
            Ok(()) => Ok(rel),
            Err(_) if dest.is_dir() => Ok(rel),
            Err(e) => Err(SolveError::Io { op: "move layer into", path: dest, source: e }),
        }
    }

    fn pending_path(&self, layer_id: &str) -> PathBuf {
        self.dir().join("pending").join(layer_id)
    }

    /// Whether the layer directory `rel` exists and can be trusted: it is durable, or it was
    /// written in this boot of the machine.
    /// A layer not on disk that the image store holds or knows where to fetch (the result of
    /// an imported cache hit): usable, unpacked when a step needs its files.
    fn layer_can_be_fetched(&self, l: &LayerRef) -> bool {
        let Some(digest) = l.blob.as_ref().and_then(|b| b.digest.parse::<oci::Digest>().ok()) else { return false };
        !self.abs(&l.dir).exists() && oci::Store::can_supply(&self.root, &digest)
    }

    fn layer_is_usable(&self, rel: &Path) -> bool {
        if !self.abs(rel).is_dir() {
            return false;
        }
        // Only built layers (`cache/layers/<id>`) have markers here; base-image snapshots have
        // their own (see `snapshot::snapshots`).
        let Some(id) = rel.strip_prefix("cache/layers").ok().and_then(|r| r.to_str()) else { return true };
        match fs::read(self.pending_path(id)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(_) => false,
            Ok(boot) => current_boot().is_some_and(|b| b.as_bytes() == boot.as_slice()),
        }
    }

    /// Makes layers committed more than `min_age` ago durable: one syncfs(2) of the state root's
    /// filesystem, then their `pending/` markers go. Layers whose marker names another boot
    /// (written before a crash) are deleted, unless a build or prune holds the cache lock.
    pub fn settle(&self, min_age: Duration) -> Result<SettleStats> {
        self.last_settle.store(now_secs(), std::sync::atomic::Ordering::Relaxed);
        let mut stats = SettleStats::default();
        let pending = self.dir().join("pending");
        let Ok(rd) = fs::read_dir(&pending) else { return Ok(stats) };
        let boot = current_boot();
        let (mut stale, mut ripe) = (Vec::new(), Vec::new());
        // A marker that vanished was settled meanwhile (by another process): its layer is durable.
        let is_stale = |p: &Path| match fs::read(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Ok(b) => boot.is_none_or(|cur| b != cur.as_bytes()),
            Err(_) => true,
        };
        for e in rd.flatten() {
            if is_stale(&e.path()) {
                stale.push(e);
            } else if e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= min_age) {
                ripe.push(e.path());
            }
        }
        // Deleting layers of an earlier boot needs every build out of the way (a build may be
        // replacing one); markers of this boot are only ever removed, which needs no lock.
        if !stale.is_empty() {
            let path = self.dir().join("lock");
            let lock = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
            if matches!(fs4::fs_std::FileExt::try_lock_exclusive(&lock), Ok(true)) {
                for e in stale.into_iter().filter(|e| is_stale(&e.path())) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dir = self.dir().join("layers").join(&name);
                    if dir.exists() {
                        let aside = self.dir().join("tmp").join(format!("stale-{name}-{}", std::process::id()));
                        if fs::rename(&dir, &aside).is_ok() {
                            let _ = fs::remove_dir_all(&aside);
                        }
                    }
                    let _ = fs::remove_file(e.path());
                    stats.discarded += 1;
                }
            }
        }
        if !ripe.is_empty() {
            if !fsync_disabled() {
                let root = fs::File::open(self.dir()).map_err(SolveError::io("open", &self.dir()))?;
                nix::unistd::syncfs(&root).map_err(|e| SolveError::Io { op: "syncfs", path: self.dir(), source: e.into() })?;
            }
            for p in &ripe {
                let _ = fs::remove_file(p);
            }
            stats.settled = ripe.len();
        }
        Ok(stats)
    }

    /// Takes the per-key lock, so only one process computes `key` at a time.
    pub fn lock_key(&self, key: &CacheKey) -> Result<fs::File> {
        let path = self.dir().join("locks").join(format!("{}.lock", key.hex()));
        let f = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&f).map_err(SolveError::io("lock", &path))?;
        Ok(f)
    }

    /// The build-wide lock: shared while building, exclusive while pruning.
    ///
    /// A long-lived process (`builder serve`) opens the index once: when the last settle is
    /// older than [`SETTLE_AGE`], a settle starts here, on a thread of its own.
    pub fn lock_shared(&self) -> Result<fs::File> {
        let path = self.dir().join("lock");
        let f = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
        fs4::fs_std::FileExt::lock_shared(&f).map_err(SolveError::io("lock", &path))?;
        let last = self.last_settle.load(std::sync::atomic::Ordering::Relaxed);
        if now_secs().saturating_sub(last) >= SETTLE_AGE.as_secs() {
            self.last_settle.store(now_secs(), std::sync::atomic::Ordering::Relaxed);
            let idx = self.clone();
            let _ = std::thread::Builder::new().name("settle".into()).spawn(move || {
                if let Err(e) = idx.settle(SETTLE_AGE) {
                    tracing::warn!("making cached layers durable: {e}");
                }
            });
        }
        Ok(f)
    }

    /// The build-wide lock held exclusively: no build runs until it is dropped (prune, GC).
    pub fn lock_exclusive(&self) -> Result<fs::File> {
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
    /// The removal itself runs on a background thread (see [`WorkDir`]).
    pub fn clean_tmp(&self) {
        let base = self.dir().join("tmp");
        let Ok(rd) = fs::read_dir(&base) else { return };
        let mut stale = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            // A work dir of a live build is locked by it (see `WorkDir`).
            let lock = p.join(".lock");
            if let Ok(f) = fs::File::open(&lock) {
                if !matches!(fs4::fs_std::FileExt::try_lock_exclusive(&f), Ok(true)) {
                    continue;
                }
            } else if e.metadata().ok().and_then(|m| m.modified().ok()).is_some_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(60)) {
                // Being created right now.
                continue;
            }
            stale.push(p);
        }
        if !stale.is_empty() {
            remove_in_background(stale, None);
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
        self.evict(all, Some(Duration::from_secs(48 * 3600)), keep_storage)
    }

    /// The size cap of a long-lived cache (`builder serve --cache-max-size`): evicts the least
    /// recently used entries until the cache is at most `max_bytes` (layers no remaining entry
    /// names go with them). Does nothing while a build holds the cache (`None`): the caller
    /// tries again later, so a running build never loses a layer it reads.
    pub fn enforce_max_size(&self, max_bytes: u64) -> Result<Option<PruneStats>> {
        let path = self.dir().join("lock");
        let lock = fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(SolveError::io("open lock", &path))?;
        if !matches!(fs4::fs_std::FileExt::try_lock_exclusive(&lock), Ok(true)) {
            return Ok(None);
        }
        let size: u64 = self.records()?.iter().map(|r| r.size).sum::<u64>() + dir_size(&self.dir().join("mounts"));
        if size <= max_bytes {
            return Ok(Some(PruneStats::default()));
        }
        self.evict(false, None, Some(max_bytes)).map(Some)
    }

    /// Removes entries: all, those unused for longer than `max_age`, then the least recently
    /// used while the cache is larger than `keep_storage`. The caller holds the exclusive lock.
    fn evict(&self, all: bool, max_age: Option<Duration>, keep_storage: Option<u64>) -> Result<PruneStats> {
        let mut records = self.records()?;
        let mut stats = PruneStats::default();
        let cutoff = max_age.map(|a| SystemTime::now() - a).unwrap_or(SystemTime::UNIX_EPOCH);
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
        if all {
            let steps = self.dir().join("steps");
            let _ = fs::remove_dir_all(&steps);
            let _ = fs::create_dir_all(&steps);
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
                let _ = fs::remove_file(self.pending_path(&e.file_name().to_string_lossy()));
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
    path: PathBuf,
    lock: Option<fs::File>,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    /// Deletes the directory on a thread of its own: removing a tree costs milliseconds per
    /// directory where the filesystem discards freed blocks at once (the overlay work dir alone
    /// has four), which would otherwise delay the next step. The lock is held until the tree
    /// is gone; what a process exit interrupts is removed by a later [`CacheIndex::clean_tmp`].
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        let lock = self.lock.take();
        remove_in_background(vec![path], lock);
    }
}

/// Removes directories (or files) on a detached thread; inline if no thread can be started.
fn remove_in_background(paths: Vec<PathBuf>, keep_alive: Option<fs::File>) {
    fn remove(paths: &[PathBuf]) {
        for p in paths {
            if p.is_dir() {
                let _ = fs::remove_dir_all(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
    let inline = paths.clone();
    let spawned = std::thread::Builder::new().name("remove-tmp".into()).spawn(move || {
        remove(&paths);
        drop(keep_alive);
    });
    if spawned.is_err() {
        remove(&inline);
    }
}

/// What [`CacheIndex::settle`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettleStats {
    /// Layers made durable.
    pub settled: usize,
    /// Layers from an earlier boot that were deleted.
    pub discarded: usize,
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

/// Whether `BUILDER_NO_FSYNC` is set (and not empty): skip flushes, for benchmarks of CPU work.
fn fsync_disabled() -> bool {
    std::env::var_os("BUILDER_NO_FSYNC").is_some_and(|v| !v.is_empty())
}

/// The boot id of the running kernel: what a `pending/` marker records.
fn current_boot() -> Option<&'static str> {
    snapshot::snapshots::boot_id()
}

/// Makes a finished layer durable before it becomes visible, where the boot id is unknown (no
/// `pending/` marker possible): one syncfs(2) of its filesystem.
/// Skipped when BUILDER_NO_FSYNC is set.
fn sync_tree(dir: &Path) {
    if fsync_disabled() {
        return;
    }
    if let Ok(f) = fs::File::open(dir) {
        let _ = nix::unistd::syncfs(&f);
    }
}

/// Writes `bytes` to `dest` with tmp + rename, so readers see the old or the new file, never
/// half of one. No fsync: every file written here is a record or marker that reads as a cache
/// miss when it is missing or torn (after a power loss), and the layers a record names are
/// durable or marked pending (see the module docs).
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
        let rec = CacheRecord { snapshot: Snapshot { layers: vec![LayerRef { dir: rel.clone(), blob: None }] }, new_layers: 1, size: 1, description: "RUN x".into(), created: now_secs(), provenance: None };
        idx.put(&k, &rec).expect("put");
        let again = CacheIndex::open(root.path()).expect("reopen");
        assert_eq!(again.get(&k).expect("hit").snapshot, rec.snapshot);
        assert!(again.get(&key("b")).is_none());
        fs::remove_dir_all(root.path().join(&rel)).expect("rm layer");
        assert!(again.get(&k).is_none(), "a record whose layer is gone must be a miss");
    }

    fn commit_one(idx: &CacheIndex, k: &CacheKey, content: &[u8]) -> PathBuf {
        let work = idx.work_dir().expect("work");
        let layer = work.path().join("layer");
        fs::create_dir(&layer).expect("mkdir");
        fs::write(layer.join("f"), content).expect("write");
        let rel = idx.commit_layer(k, &layer).expect("commit");
        let rec = CacheRecord { snapshot: Snapshot { layers: vec![LayerRef { dir: rel.clone(), blob: None }] }, new_layers: 1, size: 1, description: "RUN x".into(), created: now_secs(), provenance: None };
        idx.put(k, &rec).expect("put");
        rel
    }

    #[test]
    fn layer_written_before_a_machine_crash_is_a_miss_and_is_replaced() {
        let root = tempfile::tempdir().expect("tmp");
        let idx = CacheIndex::open(root.path()).expect("open");
        let k = key("crash");
        let rel = commit_one(&idx, &k, b"old");
        assert!(idx.get(&k).is_some(), "a layer of this boot is trusted before it is synced");
        // As if the machine rebooted since: the marker names another boot.
        fs::write(idx.pending_path(&k.layer_id()), b"another-boot").expect("marker");
        assert!(idx.get(&k).is_none(), "an unsynced layer of an earlier boot may be torn");
        commit_one(&idx, &k, b"new");
        assert!(idx.get(&k).is_some());
        assert_eq!(fs::read(root.path().join(&rel).join("f")).expect("read"), b"new");
    }

    #[test]
    fn settle_makes_layers_durable_and_drops_those_of_an_earlier_boot() {
        let root = tempfile::tempdir().expect("tmp");
        let idx = CacheIndex::open(root.path()).expect("open");
        let (mine, old) = (key("mine"), key("old"));
        commit_one(&idx, &mine, b"1");
        let old_rel = commit_one(&idx, &old, b"2");
        fs::write(idx.pending_path(&old.layer_id()), b"").expect("torn marker");
        let st = idx.settle(Duration::from_secs(3600)).expect("settle");
        assert_eq!(st, SettleStats { settled: 0, discarded: 1 }, "fresh layers stay pending");
        assert!(!root.path().join(old_rel).exists());
        assert!(idx.pending_path(&mine.layer_id()).exists());
        let st = idx.settle(Duration::ZERO).expect("settle");
        assert_eq!(st, SettleStats { settled: 1, discarded: 0 });
        assert!(!idx.pending_path(&mine.layer_id()).exists());
        assert!(idx.get(&mine).is_some(), "a settled layer is trusted in any boot");
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
        let rec = CacheRecord { snapshot: Snapshot { layers: vec![LayerRef { dir: rel.clone(), blob: None }] }, new_layers: 1, size: 1000, description: "RUN x".into(), created: now_secs(), provenance: None };
        idx.put(&k, &rec).expect("put");
        assert_eq!(idx.usage().expect("du").records, 1);
        let st = idx.prune(false, None).expect("prune");
        assert_eq!(st.records, 0, "a fresh record is kept by a plain prune");
        let st = idx.prune(true, None).expect("prune all");
        assert_eq!((st.records, st.layers), (1, 1));
        assert!(!root.path().join(rel).exists());
        assert_eq!(idx.usage().expect("du").records, 0);
    }

    #[test]
    fn the_size_cap_evicts_the_least_recently_used_and_waits_for_running_builds() {
        let root = tempfile::tempdir().expect("tmp");
        let idx = CacheIndex::open(root.path()).expect("open");
        let mut rels = Vec::new();
        for (n, name) in ["old", "used", "new"].iter().enumerate() {
            let k = key(name);
            let work = idx.work_dir().expect("work");
            let layer = work.path().join("layer");
            fs::create_dir(&layer).expect("mkdir");
            fs::write(layer.join("f"), vec![0u8; 1000]).expect("write");
            let rel = idx.commit_layer(&k, &layer).expect("commit");
            let rec = CacheRecord { snapshot: Snapshot { layers: vec![LayerRef { dir: rel.clone(), blob: None }] }, new_layers: 1, size: 1000, description: format!("RUN {name}"), created: now_secs(), provenance: None };
            idx.put(&k, &rec).expect("put");
            // Made an hour apart, oldest first.
            let f = fs::File::options().write(true).open(idx.record_path(&k)).expect("record");
            f.set_modified(SystemTime::now() - Duration::from_secs(3600 * (3 - n as u64))).expect("mtime");
            rels.push(rel);
        }
        // Using a record makes it the most recent.
        assert!(idx.get(&key("used")).is_some());
        let building = idx.lock_shared().expect("shared");
        assert_eq!(idx.enforce_max_size(2000).expect("cap"), None, "a running build holds the cache");
        drop(building);
        let st = idx.enforce_max_size(2000).expect("cap").expect("evicted");
        assert_eq!((st.records, st.layers), (1, 1));
        assert!(idx.get(&key("old")).is_none() && !root.path().join(&rels[0]).exists(), "the least recently used goes");
        assert!(idx.get(&key("used")).is_some() && idx.get(&key("new")).is_some());
        assert_eq!(idx.enforce_max_size(2000).expect("cap"), Some(PruneStats::default()), "within the cap nothing goes");
    }
}
