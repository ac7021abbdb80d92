//! The shared snapshot store: each layer unpacked once into `<root>/snapshots/<id>/`
//! and used, read-only, as an overlay lower dir by every image and container.
//!
//! A snapshot appears atomically: it is unpacked into `<root>/tmp/` and renamed into
//! place, so a crash never leaves half a snapshot under its final name. Processes and
//! threads unpacking the same layer serialise on `<root>/snapshots/<id>.lock`.
//!
//! Durability without a flush on the first use of an image: a fresh snapshot's
//! `<id>.pending` marker (written before the rename) names the boot it was unpacked in. A
//! killed process loses nothing, so within that boot the snapshot is good; after a crash of
//! the machine its files may be torn, so a snapshot whose marker names another boot counts
//! as missing and is unpacked again. [`Snapshots::open`] syncs the filesystem once for
//! snapshots pending longer than a minute (written back by the kernel by then) and drops
//! their markers.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::UnpackError;
use crate::unpack::{Whiteouts, unpack};

/// The snapshot directory of a state root.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    tmp: PathBuf,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
    let path = path.to_path_buf();
    move |source| UnpackError::Io { action, path, source }
}

impl Snapshots {
    /// Opens (creating if needed) the snapshot store under the state root `root`, and makes
    /// snapshots pending for more than [`SETTLE_AGE`] durable.
    pub fn open(root: &Path) -> Result<Snapshots, UnpackError> {
        let dir = root.join("snapshots");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
        let s = Snapshots { dir, tmp };
        s.settle(SETTLE_AGE);
        Ok(s)
    }

    fn pending_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.pending"))
    }

    /// Whether the snapshot `id` is there and trustworthy (durable, or unpacked in this boot).
    fn usable(&self, id: &str) -> bool {
        if !self.dir.join(id).is_dir() {
            return false;
        }
        match std::fs::read(self.pending_path(id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(_) => false,
            Ok(b) => boot_id().is_some_and(|cur| cur.as_bytes() == b.as_slice()),
        }
    }

    /// Syncs the filesystem once if a snapshot of this boot has been pending for `min_age`,
    /// then drops those markers. Best effort: a snapshot left pending is only re-unpacked
    /// after a crash of the machine.
    pub fn settle(&self, min_age: std::time::Duration) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        let boot = boot_id();
        let ripe: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pending"))
            .filter(|e| std::fs::read(e.path()).ok().zip(boot).is_some_and(|(b, cur)| b == cur.as_bytes()))
            .filter(|e| e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= min_age))
            .map(|e| e.path())
            .collect();
        if ripe.is_empty() {
            return;
        }
        if let Ok(d) = File::open(&self.dir)
            && nix::unistd::syncfs(&d).is_err() {
                return;
            }
        for p in ripe {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The directory name of a layer: the digest's hex (with its algorithm when not sha256).
    pub fn id_of(layer_digest: &str) -> String {
        match layer_digest.split_once(':') {
            Some(("sha256", hex)) => hex.to_string(),
            Some((alg, hex)) => format!("{alg}-{hex}"),
            None => layer_digest.to_string(),
        }
    }

    /// Where the snapshot of `layer_digest` is (or would be).
    pub fn path_of(&self, layer_digest: &str) -> PathBuf {
        self.dir.join(Self::id_of(layer_digest))
    }

    /// The snapshot of `layer_digest` if it has been unpacked.
    pub fn get(&self, layer_digest: &str) -> Option<PathBuf> {
        self.usable(&Self::id_of(layer_digest)).then(|| self.path_of(layer_digest))
    }

    /// Returns the snapshot of `layer_digest`, unpacking the blob `open_blob` gives
    /// (compressed or not) the first time. `open_blob` is not called on a hit.
    pub fn ensure_layer<R: Read>(&self, layer_digest: &str, open_blob: impl FnOnce() -> io::Result<R>) -> Result<PathBuf, UnpackError> {
        let id = Self::id_of(layer_digest);
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(UnpackError::Escape { layer: layer_digest.into(), entry: id });
        }
        let target = self.dir.join(&id);
        if self.usable(&id) {
            return Ok(target);
        }
        let lock_path = self.dir.join(format!("{id}.lock"));
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err("opening lock", &lock_path))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(io_err("locking", &lock_path))?;
        if self.usable(&id) {
            return Ok(target);
        }
        if target.is_dir() {
            // Unpacked before a crash of the machine: may be torn. Unpack it again.
            let aside = self.tmp.join(format!("stale-snapshot-{id}-{}-{}", std::process::id(), unique()));
            std::fs::rename(&target, &aside).map_err(io_err("moving aside", &target))?;
            let _ = std::fs::remove_dir_all(&aside);
        }
        let work = self.tmp.join(format!("snapshot-{id}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&work).map_err(io_err("creating", &work))?;
        let result = (|| {
            let blob = open_blob().map_err(|source| UnpackError::Read { layer: layer_digest.into(), source })?;
            let stats = unpack(blob, &work, layer_digest, Whiteouts::Overlay)?;
            tracing::debug!(layer = layer_digest, entries = stats.entries, bytes = stats.bytes, "unpacked layer");
            // The layer root directory itself: readable by everyone, like an image root.
            let _ = std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755));
            // The marker first: the snapshot must never be in place without it.
            match boot_id() {
                Some(boot) => {
                    let tmp = self.tmp.join(format!("pending-{id}-{}-{}", std::process::id(), unique()));
                    std::fs::write(&tmp, boot).map_err(io_err("writing", &tmp))?;
                    std::fs::rename(&tmp, self.pending_path(&id)).map_err(io_err("renaming into place", &self.pending_path(&id)))?;
                }
                None => {
                    let d = File::open(&work).map_err(io_err("opening", &work))?;
                    nix::unistd::syncfs(&d).map_err(|e| UnpackError::Io { action: "syncing", path: work.clone(), source: e.into() })?;
                }
            }
            std::fs::rename(&work, &target).map_err(io_err("renaming into place", &target))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        result.map(|()| target)
    }
}

/// What a collection of snapshots removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotGc {
    pub removed: usize,
    pub freed_bytes: u64,
}

impl Snapshots {
    /// Every snapshot id in the store.
    pub fn ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        rd.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }

    /// The bytes of the files in snapshot `id`.
    pub fn size_of(&self, id: &str) -> u64 {
        tree_size(&self.dir.join(id))
    }

    /// Removes the snapshots not in `keep` (ids, as [`Snapshots::id_of`] names them) that were
    /// unpacked at least `min_age` ago, so that one a concurrent pull or run has just unpacked
    /// stays. A snapshot being unpacked (its lock held) stays too. Each is moved into `tmp/`
    /// first, so a crash leaves no half-removed snapshot under its name.
    pub fn collect(&self, keep: &std::collections::HashSet<String>, min_age: std::time::Duration) -> SnapshotGc {
        let mut gc = SnapshotGc::default();
        for id in self.ids() {
            if keep.contains(&id) {
                continue;
            }
            let path = self.dir.join(&id);
            let young = std::fs::metadata(&path).ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_none_or(|age| age < min_age);
            if young {
                continue;
            }
            let lock_path = self.dir.join(format!("{id}.lock"));
            let Ok(lock) = File::options().create(true).truncate(false).write(true).open(&lock_path) else { continue };
            if !matches!(fs4::fs_std::FileExt::try_lock_exclusive(&lock), Ok(true)) {
                continue;
            }
            let size = tree_size(&path);
            let aside = self.tmp.join(format!("removed-snapshot-{id}-{}-{}", std::process::id(), unique()));
            if std::fs::rename(&path, &aside).is_err() {
                continue;
            }
            let _ = std::fs::remove_file(self.pending_path(&id));
            let _ = std::fs::remove_dir_all(&aside);
            let _ = std::fs::remove_file(&lock_path);
            gc.removed += 1;
            gc.freed_bytes += size;
        }
        gc
    }
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// How long a snapshot stays pending before [`Snapshots::open`] syncs it: longer than the
/// kernel's usual write-back delay (30 s), so the sync finds little left to write.
pub const SETTLE_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The boot id of the running kernel (`/proc/sys/kernel/random/boot_id`): what a pending
/// marker records, so data not yet known to be on disk is only trusted in the boot that wrote it.
pub fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .as_deref()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
