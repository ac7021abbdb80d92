//! Base images from the local store as snapshots: each layer unpacked once into a directory
//! in overlay's format (whiteouts as 0/0 character devices, opaque directories marked with
//! `trusted.overlay.opaque`), shared by every build that uses it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use graph::ImageOp;

use crate::cache::{BlobDesc, LayerRef, Snapshot};
use crate::error::{Result, SolveError};
use crate::solve::ImageSource;

/// Image layers from an `oci::Store`, unpacked under `<root>/cache/base/`.
pub struct StoreImages {
    store: oci::Store,
    root: PathBuf,
}

impl StoreImages {
    pub fn new(store: oci::Store, state_root: &Path) -> StoreImages {
        StoreImages { store, root: state_root.to_path_buf() }
    }

    fn unpack(&self, digest: &oci::Digest, media_type: &str, dest_rel: &Path) -> Result<()> {
        let dest = self.root.join(dest_rel);
        if dest.is_dir() {
            return Ok(());
        }
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(SolveError::io("create", &parent))?;
        let tmp = tempfile::Builder::new().prefix(".unpack-").tempdir_in(&parent).map_err(SolveError::io("create temp dir in", &parent))?;
        let blob = self.store.open_blob(digest).map_err(|e| SolveError::Other(format!("opening layer {digest}: {e}")))?;
        let reader: Box<dyn Read> = if media_type.ends_with("gzip") || media_type.contains("tar.gzip") || media_type.ends_with(".gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(blob)))
        } else if media_type.ends_with("zstd") {
            Box::new(zstd::stream::read::Decoder::new(blob).map_err(SolveError::io("read layer", dest.clone()))?)
        } else {
            let mut b = std::io::BufReader::new(blob);
            // Docker media types say "tar.gzip"; sniff the magic to be sure.
            let head = std::io::BufRead::fill_buf(&mut b).map_err(SolveError::io("read layer", dest.clone()))?;
            if head.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::MultiGzDecoder::new(b)) } else { Box::new(b) }
        };
        unpack_layer(reader, tmp.path()).map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            SolveError::Other(format!("unpacking layer {digest}: {e}{cause}"))
        })?;
        let kept = tmp.keep();
        if fs::rename(&kept, &dest).is_err() {
            // Another build unpacked it first.
            let _ = fs::remove_dir_all(&kept);
        }
        Ok(())
    }
}

impl ImageSource for StoreImages {
    fn snapshot(&self, op: &ImageOp) -> Result<(Snapshot, bool)> {
        let digest: oci::Digest = op.manifest_digest.parse().map_err(|e| SolveError::Other(format!("image {}: bad digest: {e}", op.reference)))?;
        let manifest: oci::spec::ImageManifest = self.store.read_json(&digest).map_err(|e| SolveError::Other(format!("image {}: reading manifest: {e}", op.reference)))?;
        let cfg_digest: oci::Digest = manifest.config().digest().to_string().parse().map_err(|e| SolveError::Other(format!("image {}: {e}", op.reference)))?;
        let config: oci::spec::ImageConfiguration = self.store.read_json(&cfg_digest).map_err(|e| SolveError::Other(format!("image {}: reading config: {e}", op.reference)))?;
        let diff_ids = config.rootfs().diff_ids();
        let mut layers = Vec::new();
        let mut had_all = true;
        for (i, l) in manifest.layers().iter().enumerate() {
            let d: oci::Digest = l.digest().to_string().parse().map_err(|e| SolveError::Other(format!("image {}: {e}", op.reference)))?;
            let diff_id = diff_ids.get(i).cloned().unwrap_or_else(|| d.to_string());
            let id = diff_id.trim_start_matches("sha256:");
            let rel = PathBuf::from("cache/base").join(&id[..16.min(id.len())]);
            if !self.root.join(&rel).is_dir() {
                had_all = false;
                self.unpack(&d, &l.media_type().to_string(), &rel)?;
            }
            layers.push(LayerRef {
                dir: rel,
                blob: Some(BlobDesc { digest: d.to_string(), size: l.size(), media_type: l.media_type().to_string(), diff_id }),
            });
        }
        Ok((Snapshot { layers }, had_all))
    }
}

/// Unpacks a layer tar into `dest` in overlay's format. Paths are confined to `dest`.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> std::io::Result<()> {
    let mut a = tar::Archive::new(reader);
    a.set_preserve_permissions(true);
    // Owners are set below: the tar crate rejects empty numeric uid/gid fields, which some
    // layer writers produce and Docker reads as 0.
    a.set_preserve_ownerships(false);
    a.set_preserve_mtime(true);
    a.set_unpack_xattrs(true);
    a.set_overwrite(true);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in a.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if name == ".wh..wh..opq" {
            let dir = dest.join(&parent);
            fs::create_dir_all(&dir)?;
            xattr::set(&dir, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let dir = dest.join(&parent);
            fs::create_dir_all(&dir)?;
            let target = dir.join(hidden);
            if target.exists() || fs::symlink_metadata(&target).is_ok() {
                if target.is_dir() { fs::remove_dir_all(&target)? } else { fs::remove_file(&target)? }
            }
            nix::sys::stat::mknod(&target, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)?;
            continue;
        }
        if entry.header().entry_type() == tar::EntryType::Directory {
            if let Ok(m) = entry.header().mtime() {
                dirs.push((path.clone(), m));
            }
        }
        let uid = entry.header().uid().unwrap_or(0) as u32;
        let gid = entry.header().gid().unwrap_or(0) as u32;
        let mode = entry.header().mode().unwrap_or(0o644);
        let kind = entry.header().entry_type();
        if entry.unpack_in(dest)? && kind != tar::EntryType::Link {
            let target = dest.join(&path);
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
            // chown clears set-id bits: put the mode back.
            if !kind.is_symlink() && mode & 0o7000 != 0 {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o7777))?;
            }
        }
    }
    // Directory mtimes change as their children are written; set them last.
    for (p, m) in dirs.into_iter().rev() {
        let _ = filetime::set_symlink_file_times(dest.join(p), filetime::FileTime::from_unix_time(m as i64, 0), filetime::FileTime::from_unix_time(m as i64, 0));
    }
    Ok(())
}
