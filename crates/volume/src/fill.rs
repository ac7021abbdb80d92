//! Copying an image directory into a new volume with everything a file carries: owner,
//! mode, times, extended attributes, symlinks, hard links and device nodes.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use crate::{Error, Result};

/// Copies the tree at `src` to the new directory `dst`. Symlinks are copied as links,
/// never followed, so content of the image cannot point the copy elsewhere on the host.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    // The top may be a /proc/self/fd link to the directory: followed, and only there.
    let meta = fs::metadata(src).map_err(Error::io("reading", src))?;
    copy_entry(src, &meta, dst, &mut links)
}

fn copy_entry(src: &Path, meta: &fs::Metadata, dst: &Path, links: &mut HashMap<(u64, u64), std::path::PathBuf>) -> Result<()> {
    let ft = meta.file_type();
    if !ft.is_dir() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, dst).map_err(Error::io("linking", dst));
        }
        links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
    }
    if ft.is_dir() {
        fs::create_dir(dst).map_err(Error::io("creating", dst))?;
        for entry in fs::read_dir(src).map_err(Error::io("listing", src))? {
            let entry = entry.map_err(Error::io("listing", src))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(Error::io("reading", &path))?;
            copy_entry(&path, &meta, &dst.join(entry.file_name()), links)?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(Error::io("reading", src))?;
        std::os::unix::fs::symlink(target, dst).map_err(Error::io("creating", dst))?;
    } else if ft.is_file() {
        // copy_file_range underneath: the kernel copies, reflinks where it can.
        fs::copy(src, dst).map_err(Error::io("copying to", dst))?;
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            // A socket means nothing without its process.
            return Ok(());
        };
        mknod(dst, kind, Mode::from_bits_truncate(meta.mode()), meta.rdev()).map_err(|e| Error::Io { action: "creating", path: dst.to_path_buf(), source: e.into() })?;
    }
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(Error::io("setting the owner of", dst))?;
    if !ft.is_symlink() {
        // After chown, which clears set-id bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(Error::io("setting the mode of", dst))?;
    }
    if let Ok(names) = xattr::list(src) {
        for name in names {
            if let Ok(Some(value)) = xattr::get(src, &name) {
                // A file system without that namespace (trusted.* as non-root): skip it.
                let _ = xattr::set(dst, &name, &value);
            }
        }
    }
    // Last: writing the children changed the directory's times.
    let (atime, mtime) = (TimeSpec::new(meta.atime(), meta.atime_nsec()), TimeSpec::new(meta.mtime(), meta.mtime_nsec()));
    utimensat(nix::fcntl::AT_FDCWD, dst, &atime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(|e| Error::Io { action: "setting the times of", path: dst.to_path_buf(), source: e.into() })?;
    Ok(())
}
