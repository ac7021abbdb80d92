//! Incremental context transfer. The client lists its context ([`walk`]); the server compares
//! the list with its mirror of the last build of that context ([`mirror`]) and asks only for
//! the files that changed; their bytes are streamed in chunks.
//!
//! A file is "unchanged" when kind, size, mtime (nanoseconds), permission bits, owner and
//! symlink target all match, the same test `rsync` and BuildKit's fsutil use. The mirror keeps
//! those facts in the files themselves (the server sets mtime, mode and owner as the client
//! reported them), so there is no separate index to go stale after a crash.

pub mod mirror;
pub mod select;
pub mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::proto::{FileEntry, FileKind};

/// Bytes per `FileChunk`: well under the message size limit, big enough to keep the pipe full.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Entries per `ContextManifest` part.
pub const MANIFEST_PART: usize = 4096;

/// Why a manifest path is refused. The server never writes outside the mirror.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.contains('\0') {
        return Err("NUL byte in path");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component (`//` or a trailing `/`)"),
            "." => return Err("`.` path component"),
            ".." => return Err("`..` path component escapes the context"),
            _ => {}
        }
    }
    Ok(())
}

/// The parent of a manifest path (`None` for a top-level entry).
pub fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

pub fn kind(e: &FileEntry) -> FileKind {
    FileKind::try_from(e.kind).unwrap_or(FileKind::Unspecified)
}

/// Makes the named pipe `e` at `path` with its mode and time. The time is set by path: opening
/// a fifo would wait for a writer.
pub fn make_fifo(path: &std::path::Path, e: &FileEntry) -> nix::Result<()> {
    let mode = nix::sys::stat::Mode::from_bits_truncate(e.mode & 0o7777);
    nix::unistd::mkfifo(path, mode)?;
    // mkfifo's mode went through the umask.
    nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, path, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)?;
    let t = nix::sys::time::TimeSpec::new(e.mtime_unix_nanos.div_euclid(1_000_000_000), e.mtime_unix_nanos.rem_euclid(1_000_000_000));
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
}

/// What changed from `before` to `now`: entries added or changed, and paths removed.
pub fn delta(before: &[FileEntry], now: &[FileEntry]) -> (Vec<FileEntry>, Vec<String>) {
    let old: HashMap<&str, &FileEntry> = before.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: HashSet<&str> = now.iter().map(|e| e.path.as_str()).collect();
    let changed = now.iter().filter(|e| old.get(e.path.as_str()) != Some(e)).cloned().collect();
    let removed = before.iter().filter(|e| !new.contains(e.path.as_str())).map(|e| e.path.clone()).collect();
    (changed, removed)
}

/// `base` with a delta applied, in path order (a parent, a prefix of its children, sorts first).
pub fn apply_delta(base: Vec<FileEntry>, changed: Vec<FileEntry>, removed: &[String]) -> Vec<FileEntry> {
    let mut all: BTreeMap<String, FileEntry> = base.into_iter().map(|e| (e.path.clone(), e)).collect();
    for r in removed {
        all.remove(r);
    }
    for e in changed {
        all.insert(e.path.clone(), e);
    }
    all.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64) -> FileEntry {
        FileEntry { path: path.into(), kind: FileKind::File as i32, size, ..Default::default() }
    }

    #[test]
    fn a_delta_applied_to_its_base_gives_the_new_list() {
        let dir = FileEntry { path: "d".into(), kind: FileKind::Dir as i32, ..Default::default() };
        let before = vec![entry("a", 1), dir.clone(), entry("d/x", 1), entry("d/y", 1)];
        let now = vec![entry("a", 2), dir, entry("d/y", 1), entry("d/z", 1)];
        let (changed, removed) = delta(&before, &now);
        assert_eq!(changed.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["a", "d/z"]);
        assert_eq!(removed, ["d/x"]);
        let mut sorted = now.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(apply_delta(before, changed, &removed), sorted);
    }

    #[test]
    fn escaping_paths_are_refused() {
        for p in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/", "", "a/\0"] {
            assert!(check_path(p).is_err(), "{p:?} must be refused");
        }
        for p in ["a", "a/b/c", "..a", "a..", ".hidden/x"] {
            assert!(check_path(p).is_ok(), "{p:?} must be accepted");
        }
    }
}
