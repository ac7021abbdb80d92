//! Assembling a root from layer snapshots with overlayfs, unmounted when the guard drops.
//!
//! Mounts use the new mount API (`fsopen` + one `fsconfig("lowerdir+")` per layer),
//! which has no limit on the number of layers; the classic `mount(2)` option string
//! is limited to a page. If overlayfs cannot be used at all, the layers are copied
//! into the target instead (slow, logged at debug level).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::MountError;

/// An overlay: read-only layers (top first) under one writable upper dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// A mounted root; unmounts (lazily if busy) when dropped.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    /// Takes charge of an overlay already mounted at `target` (unmounted on drop).
    pub fn adopt(target: PathBuf) -> MountGuard {
        MountGuard { target, mounted: true }
    }
    pub fn target(&self) -> &Path {
        &self.target
    }
    /// False when the layers were copied because overlayfs was unavailable.
    pub fn is_overlay(&self) -> bool {
        self.mounted
    }
    /// Unmounts now, reporting errors.
    pub fn unmount(mut self) -> io::Result<()> {
        self.mounted = false;
        unmount(&self.target)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount(&self.target);
        }
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn unmount(target: &Path) -> io::Result<()> {
    let t = cstring(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    // Busy: detach now, the kernel finishes when the last user goes.
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl Overlay {
    /// Mounts the overlay at `target` (an existing directory).
    pub fn mount(&self, target: &Path) -> Result<MountGuard, MountError> {
        match self.mount_overlay(target).or_else(|e| self.mount_legacy(target).map_err(|_| e)) {
            Ok(()) => Ok(MountGuard { target: target.into(), mounted: true }),
            Err(err) => {
                tracing::debug!(target = %target.display(), error = %err, "overlayfs unavailable, copying layers instead");
                self.copy_into(target).map_err(|source| MountError::Copy { target: target.into(), source })?;
                Ok(MountGuard { target: target.into(), mounted: false })
            }
        }
    }

    /// Mounts with overlayfs only (no fallback).
    pub fn mount_overlay(&self, target: &Path) -> io::Result<()> {
        self.mount_with(target, true)
    }

    /// Only the lower dirs: a read-only overlay.
    fn mount_lowers(&self, target: &Path) -> io::Result<()> {
        self.mount_with(target, false)
    }

    fn mount_with(&self, target: &Path, with_upper: bool) -> io::Result<()> {
        if self.lowers.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an overlay needs at least one lower dir"));
        }
        let set = |fs: i32, key: &std::ffi::CStr, value: &Path| -> io::Result<()> {
            let v = cstring(value)?;
            // SAFETY: fs is our fs context; key and value are valid C strings.
            let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs, 1 /* FSCONFIG_SET_STRING */, key.as_ptr(), v.as_ptr(), 0) };
            if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
        };
        // SAFETY: "overlay" is a valid C string.
        let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), libc::FSOPEN_CLOEXEC) };
        if fs < 0 {
            return Err(io::Error::last_os_error());
        }
        let fs = fs as i32;
        let result = (|| {
            for l in &self.lowers {
                set(fs, c"lowerdir+", l)?;
            }
            if with_upper {
                set(fs, c"upperdir", &self.upper)?;
                set(fs, c"workdir", &self.work)?;
            }
            // SAFETY: FSCONFIG_CMD_CREATE (6) with no pointers.
            if unsafe { libc::syscall(libc::SYS_fsconfig, fs, 6, 0usize, 0usize, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fs is our configured context.
            let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs, libc::FSMOUNT_CLOEXEC, 0) };
            if mnt < 0 {
                return Err(io::Error::last_os_error());
            }
            let t = cstring(target)?;
            // SAFETY: mnt is a detached mount; MOVE_MOUNT_F_EMPTY_PATH (4) attaches it at t.
            let r = unsafe { libc::syscall(libc::SYS_move_mount, mnt, c"".as_ptr(), libc::AT_FDCWD, t.as_ptr(), 4) };
            let err = io::Error::last_os_error();
            // SAFETY: closing our descriptor.
            unsafe { libc::close(mnt as i32) };
            if r < 0 { Err(err) } else { Ok(()) }
        })();
        // SAFETY: closing our descriptor.
        unsafe { libc::close(fs) };
        result
    }

    /// Mounts the upper dir over the layers as one read-only view at `target` (no upper
    /// dir of its own, so it may be made while the container runs on the same dirs), for
    /// reading the container's whole filesystem (`export`).
    pub fn mount_read_only(&self, target: &Path) -> io::Result<MountGuard> {
        let view = Overlay { lowers: std::iter::once(self.upper.clone()).chain(self.lowers.iter().cloned()).collect(), upper: PathBuf::new(), work: PathBuf::new() };
        view.mount_lowers(target).or_else(|e| {
            let lowers: Vec<String> = view.lowers.iter().map(|l| l.display().to_string()).collect();
            let opts = format!("lowerdir={}", lowers.join(":"));
            if opts.len() >= 4000 {
                return Err(e);
            }
            let (o, t) = (CString::new(opts)?, cstring(target)?);
            // SAFETY: valid C strings for the whole call.
            let r = unsafe { libc::mount(c"overlay".as_ptr(), t.as_ptr(), c"overlay".as_ptr(), libc::MS_RDONLY, o.as_ptr().cast()) };
            if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
        })?;
        Ok(MountGuard { target: target.into(), mounted: true })
    }

    /// Kernels before 6.8 (no `lowerdir+`): mount(2) with an option string, which must
    /// fit in a page.
    fn mount_legacy(&self, target: &Path) -> io::Result<()> {
        let lowers: Vec<String> = self.lowers.iter().map(|l| l.display().to_string()).collect();
        let opts = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), self.upper.display(), self.work.display());
        if opts.len() >= 4000 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many layers for mount(2) options"));
        }
        let (o, t) = (CString::new(opts)?, cstring(target)?);
        // SAFETY: valid C strings for the whole call.
        let r = unsafe { libc::mount(c"overlay".as_ptr(), t.as_ptr(), c"overlay".as_ptr(), 0, o.as_ptr().cast()) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// The fallback: lowers copied bottom to top into `target`, whiteouts applied,
    /// then the upper dir's current content on top.
    pub fn copy_into(&self, target: &Path) -> io::Result<()> {
        for layer in self.lowers.iter().rev().chain(std::iter::once(&self.upper)) {
            copy_layer(layer, target)?;
        }
        Ok(())
    }
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(p) = cstring(dir) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and a stack buffer of the given size.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

fn copy_layer(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        if is_whiteout(&meta) {
            remove(&to)?;
            continue;
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            if std::fs::symlink_metadata(&to).map(|m| !m.is_dir()).unwrap_or(false) || is_opaque(&from) {
                remove(&to)?;
            }
            if !to.exists() {
                std::fs::create_dir(&to)?;
            }
            copy_layer(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        } else {
            remove(&to)?;
            if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            } else if ft.is_file() {
                std::fs::copy(&from, &to)?;
            } else {
                // Devices, fifos, sockets: recreate the node.
                let t = cstring(&to)?;
                // SAFETY: valid C string.
                if unsafe { libc::mknod(t.as_ptr(), meta.mode(), meta.rdev()) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        if ft.is_file() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

fn remove(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
    }
}
