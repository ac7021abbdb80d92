//! The client side: list the context directory after `.dockerignore`, with the metadata the
//! server compares against its mirror.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use dockerfile::ignore::DockerIgnore;

use crate::context::check_path;
use crate::context::select::{self, Selection};
use crate::error::{ApiError, Result};
use crate::proto::{FileEntry, FileKind};

/// The `.dockerignore` rules a local build of `dockerfile_name` in `context` applies.
pub fn ignore_rules(context: &Path, dockerfile_name: &str) -> Result<DockerIgnore> {
    DockerIgnore::load(context, dockerfile_name).map_err(|e| ApiError::Context { path: ".dockerignore".into(), reason: e.to_string() })
}

/// The entries of `context` the build can read: those `selection` covers, not excluded by
/// `ignore`, with their parent directories; parents before children, sorted by name within a
/// directory. Symlinks met there widen the selection to their targets (the build may follow
/// them). The ignore files and the Dockerfile (`always`) are listed whatever the rules say, so
/// the server-side build reads the same rules.
pub fn list(context: &Path, ignore: &DockerIgnore, always: &[&str], selection: &Selection) -> Result<Vec<FileEntry>> {
    let mut selection = selection.clone();
    // Each round adds the targets of the symlinks found; a chain of links ends in a few rounds.
    for _ in 0..16 {
        let entries = list_once(context, ignore, always, &selection)?;
        if selection == Selection::Everything {
            return Ok(entries);
        }
        match select::symlink_targets(&entries, &selection) {
            Some(more) if more.is_empty() => return Ok(entries),
            Some(more) => selection = select::widen(&selection, more),
            None => selection = Selection::Everything,
        }
    }
    list_once(context, ignore, always, &Selection::Everything)
}

fn list_once(context: &Path, ignore: &DockerIgnore, always: &[&str], selection: &Selection) -> Result<Vec<FileEntry>> {
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
        if !always.contains(&rel.as_str()) && !selection.covers(&rel) {
            // Not read by the build; a directory on the way to a selected path is listed (the
            // server needs it) and walked, any other is skipped whole.
            let on_the_way = selection.leads_to(&rel);
            if is_dir && !on_the_way {
                walker.skip_current_dir();
            }
            if !on_the_way {
                continue;
            }
        }
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
        let paths: Vec<String> = list(d, &ignore, &[".dockerignore"], &Selection::Everything).expect("list").into_iter().map(|e| e.path).collect();
        assert_eq!(paths, [".dockerignore", "link", "node_modules", "node_modules/keep.txt", "src", "src/deep", "src/deep/a.rs"]);
    }

    #[test]
    fn listing_a_selection_walks_only_its_paths_and_follows_symlinks_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in ["src/app/main.rs", "src/other.rs", "big/data.bin", "shared/s.txt", "shared/t.txt", "Dockerfile"] {
            std::fs::create_dir_all(d.join(f).parent().expect("parent")).expect("mkdir");
            std::fs::write(d.join(f), f).expect("write");
        }
        std::os::unix::fs::symlink("../../shared/s.txt", d.join("src/app/link")).expect("symlink");
        let ignore = ignore_rules(d, "Dockerfile").expect("rules");
        let selection = Selection::Paths(vec!["src/app".into()]);
        let paths: Vec<String> = list(d, &ignore, &["Dockerfile"], &selection).expect("list").into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["Dockerfile", "shared", "shared/s.txt", "src", "src/app", "src/app/link", "src/app/main.rs"]);
    }
}
