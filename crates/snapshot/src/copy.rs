//! `cp` between a host path and a path inside a container root, never leaving the
//! root: every path inside it is resolved with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink in the container cannot redirect a copy to the host.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, mkdirat};

fn in_root(root: &File, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(openat2(root.as_fd(), rel, how)?)
}

/// Copies `path` (file or directory tree) from inside `root` to the host path `dest`.
/// Like `docker cp`: into `dest` if it is an existing directory, else as `dest`.
pub fn copy_out(root: &Path, path: &str, dest: &Path) -> io::Result<()> {
    let root = File::open(root)?;
    let src = File::from(in_root(&root, Path::new(path), OFlag::O_RDONLY)?);
    let name = Path::new(path).file_name().unwrap_or(OsStr::new("root"));
    let target = if dest.is_dir() { dest.join(name) } else { dest.to_path_buf() };
    copy_fd_out(&src, &target)
}

fn copy_fd_out(src: &File, target: &Path) -> io::Result<()> {
    let meta = src.metadata()?;
    if meta.is_dir() {
        std::fs::create_dir_all(target)?;
        let dir = nix::dir::Dir::from_fd(src.as_fd().try_clone_to_owned()?)?;
        let mut names = Vec::new();
        let mut dir = dir;
        for e in dir.iter().flatten() {
            let n = std::ffi::OsStr::new(std::str::from_utf8(e.file_name().to_bytes()).unwrap_or("")).to_os_string();
            if n != "." && n != ".." && !n.is_empty() {
                names.push(n);
            }
        }
        for n in names {
            let st = nix::sys::stat::fstatat(src.as_fd(), n.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                let t = nix::fcntl::readlinkat(src.as_fd(), n.as_os_str())?;
                let _ = std::fs::remove_file(target.join(&n));
                std::os::unix::fs::symlink(t, target.join(&n))?;
                continue;
            }
            let child = File::from(openat(src.as_fd(), n.as_os_str(), OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?);
            copy_fd_out(&child, &target.join(&n))?;
        }
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if meta.is_file() {
        let mut out = File::create(target)?;
        io::copy(&mut &*src, &mut out)?;
        out.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Copies the host path `src` (file or tree) to `path` inside `root`: into it if it is an
/// existing directory there, else as it.
pub fn copy_in(src: &Path, root: &Path, path: &str) -> io::Result<()> {
    let root = File::open(root)?;
    let p = Path::new(path);
    let (parent, name) = match in_root(&root, p, OFlag::O_DIRECTORY | OFlag::O_RDONLY) {
        Ok(dir) => (dir, src.file_name().unwrap_or(OsStr::new("file")).to_os_string()),
        Err(_) => {
            let parent = p.parent().unwrap_or(Path::new("/"));
            let name = p.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no file name in {path}")))?;
            (in_root(&root, parent, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?, name.to_os_string())
        }
    };
    copy_into_dir(src, &parent, &name)
}

fn copy_into_dir(src: &Path, parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let _ = nix::unistd::unlinkat(parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat(&std::fs::read_link(src)?, parent, name)?;
    } else if ft.is_dir() {
        match mkdirat(parent, name, Mode::from_bits_truncate(meta.mode() & 0o7777)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = openat(parent, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_into_dir(&e.path(), &dir, &e.file_name())?;
        }
    } else if ft.is_file() {
        let fd = openat(parent, name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(meta.mode() & 0o7777))?;
        let mut out = File::from(fd);
        io::copy(&mut File::open(src)?, &mut out)?;
        out.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}
