//! The client side: list the context directory after `.dockerignore`, with the metadata the
//! server compares against its mirror.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use dockerignore::DockerIgnore;

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

/// One pass over the context: directories are read by a few threads at once (a context walk
/// is mostly `stat` calls, which the kernel serves from its caches in parallel).
fn list_once(context: &Path, ignore: &DockerIgnore, always: &[&str], selection: &Selection) -> Result<Vec<FileEntry>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    let work = Work { queue: Mutex::new((vec![String::new()], 0)), ready: Condvar::new(), failed: Mutex::new(None) };
    let mut inodes: HashMap<String, (u64, u64)> = HashMap::new();
    let mut out: Vec<FileEntry> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(|| work.run(context, ignore, always, selection))).collect();
        let mut out = Vec::new();
        for h in handles {
            let (entries, linked) = h.join().unwrap_or_default();
            out.extend(entries);
            inodes.extend(linked);
        }
        out
    });
    if let Some(e) = work.failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // A kept path under an excluded directory (re-included by `!`): its parents must be listed.
    let mut dirs: HashSet<String> = out.iter().filter(|e| e.kind == FileKind::Dir as i32).map(|e| e.path.clone()).collect();
    let orphans: Vec<String> = out.iter().filter_map(|e| crate::context::parent(&e.path)).filter(|p| !dirs.contains(*p)).map(str::to_string).collect();
    for parent in orphans {
        ensure_parents(context, &parent, &mut out, &mut dirs)?;
    }
    // Path order puts every directory before what it holds.
    out.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // Files with several names: the first (in path order) is sent, the others link to it.
    if !inodes.is_empty() {
        let mut first: HashMap<(u64, u64), String> = HashMap::new();
        for e in out.iter_mut() {
            let Some(inode) = inodes.get(&e.path) else { continue };
            match first.get(inode) {
                Some(f) => e.hardlink_to = f.clone(),
                None => {
                    first.insert(*inode, e.path.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The directories still to read (relative; `""` is the context) and how many are being read.
struct Work {
    queue: Mutex<(Vec<String>, usize)>,
    ready: Condvar,
    failed: Mutex<Option<ApiError>>,
}

/// A file's (device, inode), to find its other names.
type Inode = (u64, u64);

impl Work {
    /// Reads directories until there are none left (or one failed); returns the entries kept,
    /// and the inode of each file that has several names.
    fn run(&self, context: &Path, ignore: &DockerIgnore, always: &[&str], selection: &Selection) -> (Vec<FileEntry>, Vec<(String, Inode)>) {
        let mut out = Vec::new();
        let mut linked = Vec::new();
        loop {
            let dir = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(d) = q.0.pop() {
                        q.1 += 1;
                        break Some(d);
                    }
                    if q.1 == 0 {
                        break None;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(dir) = dir else {
                self.ready.notify_all();
                return (out, linked);
            };
            let mut subdirs = Vec::new();
            let result = read_dir(context, &dir, ignore, always, selection, &mut out, &mut subdirs, &mut linked);
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.1 -= 1;
            match result {
                Ok(()) => q.0.extend(subdirs),
                Err(e) => {
                    // Stop everyone: the first error is the answer.
                    q.0.clear();
                    let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                    f.get_or_insert(e);
                }
            }
            drop(q);
            self.ready.notify_all();
        }
    }
}

/// Lists the entries of one directory the build can read; directories to descend go to `subdirs`.
#[allow(clippy::too_many_arguments)]
fn read_dir(
    context: &Path,
    dir: &str,
    ignore: &DockerIgnore,
    always: &[&str],
    selection: &Selection,
    out: &mut Vec<FileEntry>,
    subdirs: &mut Vec<String>,
    linked: &mut Vec<(String, (u64, u64))>,
) -> Result<()> {
    let full_dir = if dir.is_empty() { context.to_path_buf() } else { context.join(dir) };
    let read = std::fs::read_dir(&full_dir).map_err(ApiError::io("read", &full_dir))?;
    for entry in read {
        let entry = entry.map_err(ApiError::io("read", &full_dir))?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| ApiError::Context { path: entry.path().display().to_string(), reason: "the name is not UTF-8".into() })?;
        let rel = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
        let is_dir = entry.file_type().map_err(ApiError::io("stat", entry.path()))?.is_dir();
        let always_sent = always.contains(&rel.as_str());
        if !always_sent && !selection.covers(&rel) && !selection.leads_to(&rel) {
            // Not read by the build, and no selected path is below it.
            continue;
        }
        if !always_sent && ignore.is_excluded(&rel) {
            if is_dir && ignore.may_reinclude_under(&rel) {
                subdirs.push(rel);
            }
            continue;
        }
        check_path(&rel).map_err(|reason| ApiError::Context { path: rel.clone(), reason: reason.into() })?;
        let meta = entry.metadata().map_err(ApiError::io("stat", entry.path()))?;
        if meta.is_dir() {
            subdirs.push(rel.clone());
        }
        if meta.is_file() && meta.nlink() > 1 {
            linked.push((rel.clone(), (meta.dev(), meta.ino())));
        }
        if let Some(e) = entry_of(&entry.path(), rel, &meta)? {
            out.push(e);
        }
    }
    Ok(())
}

/// Lists the excluded parent directories of a re-included path (they must exist on the server).
fn ensure_parents(context: &Path, dir: &str, out: &mut Vec<FileEntry>, dirs: &mut HashSet<String>) -> Result<()> {
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
    } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
        // A local COPY copies a named pipe, so the server's copy of the context has it too.
        (FileKind::Fifo, 0, String::new())
    } else {
        // Sockets and devices are not part of a build context (docker skips them too).
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
        hardlink_to: String::new(),
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

    #[test]
    fn a_file_with_several_names_is_listed_once_and_linked_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("b"), "linked").expect("write");
        std::fs::hard_link(d.join("b"), d.join("a")).expect("link");
        std::fs::hard_link(d.join("b"), d.join("sub/c")).expect("link");
        let ignore = ignore_rules(d, "Dockerfile").expect("rules");
        let listed: Vec<(String, String)> = list(d, &ignore, &[], &Selection::Everything).expect("list").into_iter().map(|e| (e.path, e.hardlink_to)).collect();
        assert_eq!(listed, [("a".to_string(), String::new()), ("b".into(), "a".into()), ("sub".into(), String::new()), ("sub/c".into(), "a".into())]);
    }
}
