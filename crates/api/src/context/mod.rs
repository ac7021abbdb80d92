//! Incremental context transfer. The client lists its context ([`walk`]); the server compares
//! the list with its mirror of the last build of that context ([`mirror`]) and asks only for
//! the files that changed; their bytes are streamed in chunks.
//!
//! A file is "unchanged" when kind, size, mtime (nanoseconds), permission bits, owner and
//! symlink target all match, the same test `rsync` and BuildKit's fsutil use. The mirror keeps
//! those facts in the files themselves (the server sets mtime, mode and owner as the client
//! reported them), so there is no separate index to go stale after a crash.

pub mod mirror;
pub mod walk;

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

#[cfg(test)]
mod tests {
    use super::*;

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
