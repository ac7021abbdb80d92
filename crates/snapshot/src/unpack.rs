//! Unpacking a layer (tar; gzip, zstd or plain, detected by magic bytes) into a
//! directory, streamed.
//!
//! Every entry is created relative to a descriptor of its parent directory, and that
//! parent is opened with `openat2(RESOLVE_IN_ROOT)`: symlinks met on the way (from
//! this layer or earlier ones) are resolved as if the snapshot were `/`, so no entry
//! can be written outside it. Entries naming `..` are rejected outright. The final
//! component is never followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`).
//!
//! Whiteouts become overlayfs whiteouts (a 0/0 character device, and the
//! `trusted.overlay.opaque` xattr for `.wh..wh..opq`) in [`Whiteouts::Overlay`] mode,
//! for snapshots used as lower dirs; in [`Whiteouts::Apply`] mode they delete what
//! earlier layers put there, for flattening layers into one directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fchmodat, FchmodatFlags, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

use crate::error::UnpackError;

/// How whiteout entries are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// overlayfs whiteouts, for a snapshot used as an overlay lower dir.
    Overlay,
    /// Delete the whited-out paths, for applying layers on top of each other in one dir.
    Apply,
}

/// What an unpack wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Wraps `reader` in the decompressor its first bytes call for: gzip and zstd (what layers use),
/// bzip2 and xz (what build contexts on stdin may use); anything else is read as it is.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buf))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buf)?)
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(buf))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(buf))
    } else {
        Box::new(buf)
    })
}

/// Whether `head` (the first bytes of a stream) starts a tar archive, compressed or not.
pub fn is_archive(head: &[u8]) -> bool {
    let compressed: [&[u8]; 4] = [&[0x1f, 0x8b], &[0x28, 0xb5, 0x2f, 0xfd], b"BZh", &[0xfd, b'7', b'z', b'X', b'Z', 0x00]];
    compressed.iter().any(|m| head.starts_with(m)) || head.get(257..262) == Some(b"ustar")
}

/// Unpacks the layer `reader` (compressed or not) into `dest`, which must exist.
/// `layer` names the layer in error messages (a digest, a file name).
pub fn unpack(reader: impl Read, dest: &Path, layer: &str, whiteouts: Whiteouts) -> Result<UnpackStats, UnpackError> {
    let read_err = |source| UnpackError::Read { layer: layer.to_string(), source };
    let root = File::open(dest).map_err(|e| UnpackError::Io { action: "opening", path: dest.into(), source: e })?;
    let mut archive = tar::Archive::new(decompress(reader).map_err(read_err)?);
    let mut stats = UnpackStats::default();
    // Directory mtimes are set last: creating entries inside changes them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let entry_name = String::from_utf8_lossy(&raw).into_owned();
        let rel = match clean_path(Path::new(OsStr::from_bytes(&raw))) {
            Some(p) => p,
            None => return Err(UnpackError::Escape { layer: layer.into(), entry: entry_name }),
        };
        if rel.as_os_str().is_empty() {
            // The root itself ("./"): only its metadata matters; skip.
            continue;
        }
        let write_err = |source: io::Error| UnpackError::Write { layer: layer.into(), entry: entry_name.clone(), dir: dest.into(), source };
        let (parent, name) = split(&rel);
        let name = name.to_os_string();
        // Whiteouts.
        if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
            let pfd = ensure_parent(&root, parent).map_err(write_err)?;
            if hidden == b".wh..opq" {
                match whiteouts {
                    Whiteouts::Overlay => set_opaque(&pfd).map_err(write_err)?,
                    Whiteouts::Apply => clear_dir(&pfd).map_err(write_err)?,
                }
            } else {
                let hidden = OsStr::from_bytes(hidden);
                remove_any(&pfd, hidden).map_err(write_err)?;
                if whiteouts == Whiteouts::Overlay {
                    mknodat(&pfd, hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| write_err(e.into()))?;
                }
            }
            stats.entries += 1;
            continue;
        }
        let header = entry.header().clone();
        // Empty numeric fields mean 0, as in Go's archive/tar (which wrote most layers).
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let pfd = ensure_parent(&root, parent).map_err(write_err)?;
        let kind = header.entry_type();
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                match nix::sys::stat::fstatat(&pfd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                    Ok(_) => {
                        remove_any(&pfd, &name).map_err(write_err)?;
                        mkdirat(&pfd, name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(|e| write_err(e.into()))?;
                    }
                    Err(_) => mkdirat(&pfd, name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(|e| write_err(e.into()))?,
                }
                fchownat(&pfd, name.as_os_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| write_err(e.into()))?;
                fchmodat(&pfd, name.as_os_str(), mode, FchmodatFlags::FollowSymlink).map_err(|e| write_err(e.into()))?;
                set_xattrs_dir(&pfd, &name, &mut entry).map_err(write_err)?;
                dir_times.push((rel.clone(), mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                remove_any(&pfd, &name).map_err(write_err)?;
                let fd = openat(&pfd, name.as_os_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))
                    .map_err(|e| write_err(e.into()))?;
                let mut file = File::from(fd);
                stats.bytes += io::copy(&mut entry, &mut file).map_err(write_err)?;
                nix::unistd::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| write_err(e.into()))?;
                // After chown, which clears setuid bits.
                nix::sys::stat::fchmod(&file, mode).map_err(|e| write_err(e.into()))?;
                set_xattrs(&file, &mut entry).map_err(write_err)?;
                let t = TimeSpec::new(mtime, 0);
                nix::sys::stat::futimens(&file, &t, &t).map_err(|e| write_err(e.into()))?;
            }
            T::Symlink => {
                let target = entry.link_name_bytes().map(|c| c.into_owned()).unwrap_or_default();
                remove_any(&pfd, &name).map_err(write_err)?;
                // The target is stored as is: it is only ever resolved inside a root.
                symlinkat(OsStr::from_bytes(&target), &pfd, name.as_os_str()).map_err(|e| write_err(e.into()))?;
                fchownat(&pfd, name.as_os_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| write_err(e.into()))?;
                let t = TimeSpec::new(mtime, 0);
                utimensat(&pfd, name.as_os_str(), &t, &t, UtimensatFlags::NoFollowSymlink).map_err(|e| write_err(e.into()))?;
            }
            T::Link => {
                let target = entry.link_name_bytes().map(|c| c.into_owned()).unwrap_or_default();
                let Some(target_rel) = clean_path(Path::new(OsStr::from_bytes(&target))) else {
                    return Err(UnpackError::Escape { layer: layer.into(), entry: entry_name });
                };
                let (tparent, tname) = split(&target_rel);
                let tfd = open_dir_in_root(&root, tparent).map_err(write_err)?;
                remove_any(&pfd, &name).map_err(write_err)?;
                linkat(&tfd, tname, &pfd, name.as_os_str(), AtFlags::empty()).map_err(|e| write_err(e.into()))?;
            }
            T::Char | T::Block | T::Fifo => {
                remove_any(&pfd, &name).map_err(write_err)?;
                let (sflag, dev) = match kind {
                    T::Char => (SFlag::S_IFCHR, dev_of(&header)),
                    T::Block => (SFlag::S_IFBLK, dev_of(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknodat(&pfd, name.as_os_str(), sflag, mode, dev).map_err(|e| write_err(e.into()))?;
                fchownat(&pfd, name.as_os_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| write_err(e.into()))?;
            }
            // PAX/GNU long-name headers are consumed by the tar crate; others carry no file.
            _ => continue,
        }
        stats.entries += 1;
    }
    for (rel, mtime) in dir_times.iter().rev() {
        if let Ok(fd) = open_dir_in_root(&root, rel) {
            let t = TimeSpec::new(*mtime, 0);
            let _ = nix::sys::stat::futimens(&fd, &t, &t);
        }
    }
    Ok(stats)
}

fn dev_of(h: &tar::Header) -> libc::dev_t {
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

/// Normalises an entry path to a relative one; `None` if it climbs with `..`.
/// Leading `/` and `./` are dropped (contained), as Docker does.
pub fn clean_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(out)
}

fn split(rel: &Path) -> (&Path, &OsStr) {
    (rel.parent().unwrap_or(Path::new("")), rel.file_name().unwrap_or(OsStr::new("")))
}

fn in_root_how(flags: OFlag) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens directory `rel` of the root, resolving every component inside it.
fn open_dir_in_root(root: &File, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    Ok(openat2(root.as_fd(), rel, in_root_how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))?)
}

/// Opens (creating as needed, mode 0755) the parent directory `rel` inside the root.
/// Missing directories behind a symlink (even a dangling, absolute one) are created
/// where the link points *inside* the root: components are resolved one by one,
/// symlinks expanded by hand, `..` clamped at the root.
fn ensure_parent(root: &File, rel: &Path) -> io::Result<OwnedFd> {
    match open_dir_in_root(root, rel) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let strict = |path: &Path| -> io::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
        let how = OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        Ok(openat2(root.as_fd(), path, how)?)
    };
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = rel.components().map(|c| c.as_os_str().to_os_string()).collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == "." || c == "/" || c.is_empty() {
            continue;
        }
        if c == ".." {
            resolved.pop();
            continue;
        }
        let dir = strict(&resolved)?;
        match nix::sys::stat::fstatat(&dir, c.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => resolved.push(&c),
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = nix::fcntl::readlinkat(&dir, c.as_os_str())?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for t in target.components().rev() {
                    pending.push_front(t.as_os_str().to_os_string());
                }
            }
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(nix::errno::Errno::ENOENT) => {
                mkdirat(&dir, c.as_os_str(), Mode::from_bits_truncate(0o755))?;
                resolved.push(&c);
            }
            Err(e) => return Err(e.into()),
        }
    }
    strict(&resolved)
}

/// Removes whatever is at `name` in `dir` (a file, a link, or a whole tree).
fn remove_any(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(nix::errno::Errno::EISDIR) => {
            let sub = openat(dir, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
            clear_dir(&sub)?;
            unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Empties a directory (for an opaque whiteout applied in place).
fn clear_dir(dir: &OwnedFd) -> io::Result<()> {
    let dup = dir.try_clone()?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let names: Vec<std::ffi::OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        remove_any(dir, &n)?;
    }
    Ok(())
}

fn set_opaque(dir: &OwnedFd) -> io::Result<()> {
    fsetxattr(dir, b"trusted.overlay.opaque\0", b"y")
}

fn fsetxattr(fd: &impl AsFd, name_nul: &[u8], value: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: name is NUL-terminated; value pointer and length describe the slice.
    let r = unsafe { libc::fsetxattr(fd.as_fd().as_raw_fd(), name_nul.as_ptr().cast(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// PAX `SCHILY.xattr.*` records of an entry.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                let mut n = name.to_vec();
                n.push(0);
                out.push((n, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn set_xattrs<R: Read>(file: &File, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
    for (name, value) in xattrs(entry)? {
        fsetxattr(file, &name, &value)?;
    }
    Ok(())
}

fn set_xattrs_dir<R: Read>(parent: &OwnedFd, name: &OsStr, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
    let list = xattrs(entry)?;
    if list.is_empty() {
        return Ok(());
    }
    let fd = openat(parent, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    for (n, v) in list {
        fsetxattr(&fd, &n, &v)?;
    }
    Ok(())
}
