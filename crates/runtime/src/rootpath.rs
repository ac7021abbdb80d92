//! Opening paths inside a root directory without ever leaving it: symlinks and `..`
//! are resolved as if the root were `/` (openat2 RESOLVE_IN_ROOT).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// Opens `rel` (relative to `root`, leading `/` allowed) for reading, resolving inside `root`.
pub fn open_in_root(root: &Path, rel: &str) -> io::Result<File> {
    let dir = File::open(root)?;
    let fd = open_at_in_root(&dir, rel, OFlag::O_RDONLY | OFlag::O_CLOEXEC)?;
    Ok(File::from(fd))
}

/// Opens `rel` relative to the directory `dir`, treating `dir` as `/`.
pub fn open_at_in_root(dir: &impl AsFd, rel: &str, flags: OFlag) -> io::Result<OwnedFd> {
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new().flags(flags).mode(Mode::empty()).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir.as_fd(), rel, how).map_err(io::Error::from)
}
