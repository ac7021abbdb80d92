//! The client side: list the context directory after `.dockerignore`, with the metadata the
//! server compares against its mirror.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use dockerfile::ignore::DockerIgnore;

use crate::context::check_path;
use crate::error::{ApiError, Result};
use crate::proto::{FileEntry, FileKind};

/// The `.dockerignore` rules a local build of `dockerfile_name` in `context` applies.
pub fn ignore_rules(context: &Path, dockerfile_name: &str) -> Result<DockerIgnore> {
    DockerIgnore::load(context, dockerfile_name).map_err(|e| ApiError::Context { path: ".dockerignore".into(), reason: e.to_string() })
}

/// Every entry of `context` not excluded by `ignore`, parents before children, sorted by name
/// within a directory. The ignore files themselves (`always`) are listed whatever the rules
/// say, so the server-side build reads the same rules.
pub fn list(context: &Path, ignore: &DockerIgnore, always: &[&str]) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    let mut dirs = std::collections::HashSet::new();
    let mut walker = walkdir::WalkDir::new(context).min_depth(1).follow_links(false).sort_by_file_name().into_iter();
    while let Some(next) = walker.next() {
        let entry = next.map_err(|e| {
            let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| context.to_path_buf());
            ApiError::Io { action: "read", path, source: e.into() }
        })?;
        let rel = entry.path().strip_prefix(context).unwrap_or(entry.path());
        let rel = rel.to_str().ok_or_else(|| ApiError::Context { path: rel.display().to_string(), reason: "the name is not UTF-8".into() })?.to_string();
        let is_dir = entry.file_type().is_dir();
        if !always.contains(&rel.as_str()) && ignore.is_excluded(&rel) {
            if is_dir && !ignore.may_reinclude_under(&rel) {
                walker.skip_current_dir();
            }
            continue;
        }
        // A kept path under an excluded directory (re-included by `!`): its parents must be listed.
        if let Some(parent) = crate::context::parent(&rel) {
            if !dirs.contains(parent) {
                ensure_parents(context, parent, &mut out, &mut dirs)?;
            }
        }
        check_path(&rel).map_err(|reason| ApiError::Context { path: rel.clone(), reason: reason.into() })?;
        let meta = entry.metadata().map_err(|e| ApiError::Io { action: "stat", path: entry.path().to_path_buf(), source: e.into() })?;
        if meta.is_dir() {
            dirs.insert(rel.clone());
        }
        if let Some(e) = entry_of(entry.path(), rel, &meta)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Lists the excluded parent directories of a re-included path (they must exist on the server).
fn ensure_parents(context: &Path, dir: &str, out: &mut Vec<FileEntry>, dirs: &mut std::collections::HashSet<String>) -> Result<()> {
    if dirs.contains(dir) {
        return Ok(());
    }
    if let Some(p) = crate::context::parent(dir) {
        ensure_parents(context, p, out, dirs)?;
    }
    dirs.insert(dir.to_string());
    let full = context.join(dir);
    let meta = std::fs::symlink_metadata(&full).map_err(ApiError::io("stat", &full))?;
    if let Some(e) = entry_of(&full, dir.to_string(), &meta)? {
        out.push(e);
    }
    Ok(())
}

fn entry_of(full: &Path, rel: String, meta: &std::fs::Metadata) -> Result<Option<FileEntry>> {
    let ft = meta.file_type();
    let (kind, size, target) = if ft.is_dir() {
        (FileKind::Dir, 0, String::new())
    } else if ft.is_symlink() {
        let t = std::fs::read_link(full).map_err(ApiError::io("read link", full))?;
        let t = t.to_str().ok_or_else(|| ApiError::Context { path: rel.clone(), reason: "the symlink target is not UTF-8".into() })?.to_string();
        (FileKind::Symlink, 0, t)
    } else if ft.is_file() {
        (FileKind::File, meta.len(), String::new())
    } else {
        // Sockets, FIFOs and devices are not part of a build context (docker skips them too).
        return Ok(None);
    };
    Ok(Some(FileEntry {
        path: rel,
        kind: kind as i32,
        mode: meta.mode() & 0o7777,
        size,
        mtime_unix_nanos: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        uid: meta.uid(),
        gid: meta.gid(),
        symlink_target: target,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_applies_dockerignore_and_keeps_parents_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("src/deep")).expect("mkdir");
        std::fs::create_dir_all(d.join("node_modules/x")).expect("mkdir");
        std::fs::write(d.join("src/deep/a.rs"), "a").expect("write");
        std::fs::write(d.join("node_modules/x/i.js"), "i").expect("write");
        std::fs::write(d.join("node_modules/keep.txt"), "k").expect("write");
        std::fs::write(d.join(".dockerignore"), "node_modules\n!node_modules/keep.txt\n").expect("write");
        std::os::unix::fs::symlink("src/deep/a.rs", d.join("link")).expect("symlink");
        let ignore = ignore_rules(d, "Dockerfile").expect("rules");
        let paths: Vec<String> = list(d, &ignore, &[".dockerignore"]).expect("list").into_iter().map(|e| e.path).collect();
        assert_eq!(paths, [".dockerignore", "link", "node_modules", "node_modules/keep.txt", "src", "src/deep", "src/deep/a.rs"]);
    }
}
