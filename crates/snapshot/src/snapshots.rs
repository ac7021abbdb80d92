//! The shared snapshot store: each layer unpacked once into `<root>/snapshots/<id>/`
//! and used, read-only, as an overlay lower dir by every image and container.
//!
//! A snapshot appears atomically: it is unpacked into `<root>/tmp/` and renamed into
//! place, so a crash never leaves half a snapshot under its final name. Processes and
//! threads unpacking the same layer serialise on `<root>/snapshots/<id>.lock`.

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
    /// Opens (creating if needed) the snapshot store under the state root `root`.
    pub fn open(root: &Path) -> Result<Snapshots, UnpackError> {
        let dir = root.join("snapshots");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
        Ok(Snapshots { dir, tmp })
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
        let p = self.path_of(layer_digest);
        p.is_dir().then_some(p)
    }

    /// Returns the snapshot of `layer_digest`, unpacking the blob `open_blob` gives
    /// (compressed or not) the first time. `open_blob` is not called on a hit.
    pub fn ensure_layer<R: Read>(&self, layer_digest: &str, open_blob: impl FnOnce() -> io::Result<R>) -> Result<PathBuf, UnpackError> {
        let id = Self::id_of(layer_digest);
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(UnpackError::Escape { layer: layer_digest.into(), entry: id });
        }
        let target = self.dir.join(&id);
        if target.is_dir() {
            return Ok(target);
        }
        let lock_path = self.dir.join(format!("{id}.lock"));
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err("opening lock", &lock_path))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(io_err("locking", &lock_path))?;
        if target.is_dir() {
            return Ok(target);
        }
        let work = self.tmp.join(format!("snapshot-{id}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&work).map_err(io_err("creating", &work))?;
        let result = (|| {
            let blob = open_blob().map_err(|source| UnpackError::Read { layer: layer_digest.into(), source })?;
            let stats = unpack(blob, &work, layer_digest, Whiteouts::Overlay)?;
            tracing::debug!(layer = layer_digest, entries = stats.entries, bytes = stats.bytes, "unpacked layer");
            // The layer root directory itself: readable by everyone, like an image root.
            let _ = std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755));
            std::fs::rename(&work, &target).map_err(io_err("renaming into place", &target))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        result.map(|()| target)
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
