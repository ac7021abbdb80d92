//! The server side: a mirror of one client's context under `<root>/contexts/<id>/files`, brought
//! up to date from the client's file list. Only files whose metadata changed are requested.
//!
//! Safety: every manifest path is checked ([`check_path`]), every entry's parent must be a
//! directory listed before it, and directories the manifest lists replace whatever was at that
//! path (a symlink left from an earlier build included), so no write ever follows a symlink out
//! of the mirror.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::context::{check_path, kind, parent};
use crate::proto::{FileEntry, FileKind};

/// Why the mirror could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A manifest entry is refused: it would write outside the context, or contradicts itself.
    #[error("context path {path:?} refused: {reason}")]
    Refused { path: String, reason: String },
    #[error("context mirror: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + use<> {
    let path = path.to_path_buf();
    move |source| MirrorError::Io { action, path, source }
}

fn refused(path: &str, reason: impl Into<String>) -> MirrorError {
    MirrorError::Refused { path: path.to_string(), reason: reason.into() }
}

/// What a sync must transfer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Manifest indexes of the files whose bytes are needed, in manifest order.
    pub needed: Vec<u32>,
    /// Entries removed from the mirror because the client no longer has them (or they changed kind).
    pub removed: u64,
    /// Manifest indexes of hard links to (re)make once the files' bytes are in ([`Mirror::link`]).
    pub links: Vec<u32>,
}

/// Removes the mirrors under `<state_root>/contexts/` not used for `max_age` (a mirror's
/// directory is touched by every build that uses it). Returns how many went and their bytes.
pub fn remove_unused_mirrors(state_root: &Path, max_age: Duration) -> Result<(u64, u64), MirrorError> {
    let dir = state_root.join("contexts");
    let Ok(read) = fs::read_dir(&dir) else { return Ok((0, 0)) };
    let now = SystemTime::now();
    let (mut count, mut bytes) = (0, 0);
    for e in read.flatten() {
        let Ok(m) = e.metadata() else { continue };
        let age = m.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
        if m.is_dir() && age >= max_age {
            let size: u64 = walkdir::WalkDir::new(e.path()).into_iter().flatten().filter_map(|f| f.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum();
            fs::remove_dir_all(e.path()).map_err(io("remove", &e.path()))?;
            count += 1;
            bytes += size;
        }
    }
    Ok((count, bytes))
}

/// One client's context on the server.
pub struct Mirror {
    dir: PathBuf,
    files: PathBuf,
    tmp: PathBuf,
    /// Only root can give files the client's owner; otherwise owners are not compared.
    as_root: bool,
}

impl Mirror {
    /// The mirror for `context_key` (any string; it is hashed into a directory name).
    pub fn open(state_root: &Path, context_key: &str) -> Result<Mirror, MirrorError> {
        let id = blake3::hash(context_key.as_bytes()).to_hex();
        let dir = state_root.join("contexts").join(&id.as_str()[..32]);
        let files = dir.join("files");
        let tmp = dir.join("tmp");
        // Nothing of a mirror is synced to disk (a sync would also flush every layer the builds
        // wrote, which cost a second per build); a mirror written before the machine last
        // started may have lost bytes, so it starts empty and the next sync sends everything.
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let boot_file = dir.join("boot");
        if fs::read_to_string(&boot_file).ok().is_some_and(|b| b != boot) {
            let _ = fs::remove_dir_all(&files);
            let _ = fs::remove_file(dir.join(MANIFEST_FILE));
        }
        fs::create_dir_all(&files).map_err(io("create", &files))?;
        if !boot.is_empty() {
            fs::write(&boot_file, &boot).map_err(io("write", &boot_file))?;
        }
        // Leftovers of an interrupted transfer are never part of the mirror, nor are the
        // Dockerfile and output directories of a session that did not end (the caller holds the
        // mirror's lock: no session of this context is running).
        let _ = fs::remove_dir_all(&tmp);
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("dockerfile-") || name.starts_with("outputs-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
        Ok(Mirror { dir, files, tmp, as_root: nix::unistd::geteuid().is_root() })
    }

    /// The directory builds read: the client's context as of the last sync.
    pub fn files_dir(&self) -> &Path {
        &self.files
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks the manifest, removes what the client no longer has, creates directories and
    /// symlinks, and returns the files whose bytes are needed.
    pub fn plan(&self, entries: &[FileEntry]) -> Result<Plan, MirrorError> {
        let by_path = validate(entries)?;
        let mut plan = Plan { removed: self.remove_stale(entries, &by_path)?, ..Default::default() };
        for (i, e) in entries.iter().enumerate() {
            self.apply_entry(i, e, &mut plan)?;
        }
        Ok(plan)
    }

    /// Like [`Mirror::plan`] for a delta against `base`, the list the mirror matches (the one
    /// stored by the last sync): touches only the removed and changed paths instead of walking
    /// the whole tree. Returns the plan and the new whole list; `needed` indexes that list.
    pub fn plan_delta(&self, base: Vec<FileEntry>, changed: Vec<FileEntry>, removed: &[String]) -> Result<(Plan, Vec<FileEntry>), MirrorError> {
        let base_paths: std::collections::HashSet<String> = base.iter().map(|e| e.path.clone()).collect();
        let mut changed_paths: Vec<String> = changed.iter().map(|e| e.path.clone()).collect();
        let merged = crate::context::apply_delta(base, changed, removed);
        let by_path = validate(&merged)?;
        let mut plan = Plan::default();
        // Removals first, while every parent is still the directory the base list says it is.
        for r in removed {
            check_path(r).map_err(|reason| refused(r, reason))?;
            if !base_paths.contains(r) {
                return Err(refused(r, "removed, but it was not in the list the delta is against"));
            }
            if by_path.contains_key(r.as_str()) {
                continue;
            }
            let path = self.files.join(r);
            if let Ok(m) = fs::symlink_metadata(&path) {
                remove_any(&path, &m)?;
                plan.removed += 1;
            }
        }
        changed_paths.sort();
        for p in &changed_paths {
            let i = by_path[p.as_str()];
            self.apply_entry(i, &merged[i], &mut plan)?;
        }
        plan.needed.sort_unstable();
        // A file received again is a new inode: the links to it are made again too.
        let renewed: std::collections::HashSet<&str> = plan.needed.iter().map(|&i| merged[i as usize].path.as_str()).collect();
        for (i, e) in merged.iter().enumerate() {
            if renewed.contains(e.hardlink_to.as_str()) {
                plan.links.push(u32::try_from(i).map_err(|_| refused(&e.path, "too many entries"))?);
            }
        }
        plan.links.sort_unstable();
        plan.links.dedup();
        Ok((plan, merged))
    }

    /// Makes the mirror's `e` what the list says, except file contents: a file that differs
    /// goes into `plan.needed`. Whatever of another kind is in the way is removed first.
    fn apply_entry(&self, i: usize, e: &FileEntry, plan: &mut Plan) -> Result<(), MirrorError> {
        let path = self.files.join(&e.path);
        let existing = fs::symlink_metadata(&path).ok();
        match kind(e) {
            FileKind::Dir => match &existing {
                Some(m) if m.is_dir() => {}
                other => {
                    if let Some(m) = other {
                        remove_any(&path, m)?;
                    }
                    fs::create_dir(&path).map_err(io("create directory", &path))?;
                }
            },
            FileKind::Symlink => {
                let same = existing.as_ref().is_some_and(|m| m.file_type().is_symlink()) && fs::read_link(&path).ok().as_deref() == Some(Path::new(&e.symlink_target));
                if !same {
                    if let Some(m) = &existing {
                        remove_any(&path, m)?;
                    }
                    std::os::unix::fs::symlink(&e.symlink_target, &path).map_err(io("create symlink", &path))?;
                }
                if self.as_root {
                    std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(io("chown", &path))?;
                }
            }
            FileKind::File if !e.hardlink_to.is_empty() => {
                if let Some(m) = existing.as_ref().filter(|m| !m.is_file()) {
                    remove_any(&path, m)?;
                }
                plan.links.push(u32::try_from(i).map_err(|_| refused(&e.path, "too many entries"))?);
            }
            FileKind::File => {
                let same = match &existing {
                    Some(m) if m.is_file() => self.file_matches(m, e),
                    Some(m) => {
                        remove_any(&path, m)?;
                        false
                    }
                    None => false,
                };
                if !same {
                    plan.needed.push(u32::try_from(i).map_err(|_| refused(&e.path, "too many entries"))?);
                }
            }
            FileKind::Fifo => {
                if let Some(m) = &existing {
                    remove_any(&path, m)?;
                }
                super::make_fifo(&path, e).map_err(|errno| MirrorError::Io { action: "create fifo", path: path.clone(), source: errno.into() })?;
                if self.as_root {
                    std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(io("chown", &path))?;
                }
            }
            FileKind::Unspecified => return Err(refused(&e.path, "unknown file kind")),
        }
        Ok(())
    }

    fn file_matches(&self, m: &fs::Metadata, e: &FileEntry) -> bool {
        let mtime = m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec());
        m.file_type().is_file()
            && m.len() == e.size
            && mtime == e.mtime_unix_nanos
            && m.mode() & 0o7777 == e.mode
            && (!self.as_root || (m.uid() == e.uid && m.gid() == e.gid))
    }

    /// Removes mirror entries that are not in the manifest or changed kind (or symlink target).
    fn remove_stale(&self, entries: &[FileEntry], by_path: &HashMap<&str, usize>) -> Result<u64, MirrorError> {
        let mut removed = 0;
        let mut walker = walkdir::WalkDir::new(&self.files).min_depth(1).follow_links(false).into_iter();
        while let Some(next) = walker.next() {
            let entry = next.map_err(|e| MirrorError::Io { action: "read", path: self.files.clone(), source: e.into() })?;
            let rel = entry.path().strip_prefix(&self.files).unwrap_or(entry.path());
            let ft = entry.file_type();
            let keep = rel.to_str().and_then(|r| by_path.get(r)).is_some_and(|&i| {
                let e = &entries[i];
                match kind(e) {
                    FileKind::Dir => ft.is_dir(),
                    FileKind::File => ft.is_file(),
                    FileKind::Symlink => ft.is_symlink() && fs::read_link(entry.path()).ok().as_deref() == Some(Path::new(&e.symlink_target)),
                    FileKind::Fifo => std::os::unix::fs::FileTypeExt::is_fifo(&ft),
                    FileKind::Unspecified => false,
                }
            });
            if keep {
                continue;
            }
            removed += 1;
            if ft.is_dir() {
                fs::remove_dir_all(entry.path()).map_err(io("remove", entry.path()))?;
                walker.skip_current_dir();
            } else {
                fs::remove_file(entry.path()).map_err(io("remove", entry.path()))?;
            }
        }
        Ok(removed)
    }

    /// Starts receiving the bytes of `entry` (a file the plan asked for).
    pub fn receive(&self, entry: &FileEntry) -> Result<IncomingFile, MirrorError> {
        let file = tempfile::NamedTempFile::new_in(&self.tmp).map_err(io("create temp file in", &self.tmp))?;
        Ok(IncomingFile { file, dest: self.files.join(&entry.path), written: 0 })
    }

    /// Makes the hard links the plan lists (`links`, indexes of `entries`), now that the files
    /// they link to are complete. A link must name an earlier plain file of the list.
    pub fn link(&self, entries: &[FileEntry], links: &[u32]) -> Result<(), MirrorError> {
        if links.is_empty() {
            return Ok(());
        }
        let position: HashMap<&str, usize> = entries.iter().enumerate().map(|(i, e)| (e.path.as_str(), i)).collect();
        for &i in links {
            let Some(e) = entries.get(i as usize) else { continue };
            let to = e.hardlink_to.as_str();
            check_path(to).map_err(|reason| refused(&e.path, format!("hard link to {to:?}: {reason}")))?;
            let target_ok = position.get(to).is_some_and(|&j| j < i as usize && kind(&entries[j]) == FileKind::File && entries[j].hardlink_to.is_empty());
            if !target_ok {
                return Err(refused(&e.path, format!("hard link to {to:?}, which is not an earlier file of the context")));
            }
            let path = self.files.join(&e.path);
            if let Ok(m) = fs::symlink_metadata(&path) {
                remove_any(&path, &m)?;
            }
            // link(2) does not follow a symlink in its last component, and every parent is a
            // directory the plan made.
            fs::hard_link(self.files.join(to), &path).map_err(io("link", &path))?;
        }
        Ok(())
    }

    /// Gives directories their mode and owner once everything below them is written.
    pub fn finish<'a>(&self, entries: impl IntoIterator<Item = &'a FileEntry>) -> Result<(), MirrorError> {
        for e in entries.into_iter().filter(|e| kind(e) == FileKind::Dir) {
            let path = self.files.join(&e.path);
            if self.as_root {
                std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(io("chown", &path))?;
            }
            // Without root, keep the directory writable so the next sync can update it.
            let mode = if self.as_root { e.mode } else { e.mode | 0o700 };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io("chmod", &path))?;
        }
        Ok(())
    }
}

/// A file being received: written to the mirror's temp dir, moved into place when complete.
pub struct IncomingFile {
    file: tempfile::NamedTempFile,
    dest: PathBuf,
    written: u64,
}

impl IncomingFile {
    pub fn write(&mut self, data: &[u8]) -> Result<(), MirrorError> {
        self.file.write_all(data).map_err(io("write", self.file.path()))?;
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Sets owner, mode and mtime as the client reported them and renames the file into place.
    pub fn commit(self, entry: &FileEntry, as_root: bool) -> Result<(), MirrorError> {
        let f: &File = self.file.as_file();
        let tmp = self.file.path().to_path_buf();
        if as_root {
            std::os::unix::fs::fchown(f, Some(entry.uid), Some(entry.gid)).map_err(io("chown", &tmp))?;
        }
        f.set_permissions(fs::Permissions::from_mode(entry.mode)).map_err(io("chmod", &tmp))?;
        let mtime = mtime_of(entry.mtime_unix_nanos);
        f.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime)).map_err(io("set times of", &tmp))?;
        // The destination's parent is a directory the plan created; rename never follows a
        // symlink in its last component.
        self.file.persist(&self.dest).map_err(|e| MirrorError::Io { action: "rename into", path: self.dest.clone(), source: e.error })?;
        Ok(())
    }
}

/// The file list of the last complete sync, so the next one can be a delta.
const MANIFEST_FILE: &str = "manifest.pb";

impl Mirror {
    /// The file list stored by the last complete sync, if its generation is `generation`.
    pub fn stored_manifest(&self, generation: &str) -> Option<Vec<FileEntry>> {
        use prost::Message;
        if generation.is_empty() {
            return None;
        }
        let bytes = fs::read(self.dir.join(MANIFEST_FILE)).ok()?;
        if generation_of(&bytes) != generation {
            return None;
        }
        crate::proto::ContextManifest::decode(bytes.as_slice()).ok().map(|m| m.entries)
    }

    /// Forgets the stored file list: the mirror is about to change.
    pub fn forget_manifest(&self) -> Result<(), MirrorError> {
        let path = self.dir.join(MANIFEST_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MirrorError::Io { action: "remove", path, source: e }),
            _ => Ok(()),
        }
    }

    /// Stores the file list the mirror now matches; returns its generation.
    pub fn store_manifest(&self, entries: &[FileEntry]) -> Result<String, MirrorError> {
        use prost::Message;
        let bytes = crate::proto::ContextManifest { entries: entries.to_vec(), ..Default::default() }.encode_to_vec();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.tmp).map_err(io("create temp file in", &self.tmp))?;
        tmp.write_all(&bytes).map_err(io("write", tmp.path()))?;
        // Not synced: see `Mirror::open` (a mirror from an earlier boot is not trusted).
        let dest = self.dir.join(MANIFEST_FILE);
        tmp.persist(&dest).map_err(|e| MirrorError::Io { action: "rename into", path: dest, source: e.error })?;
        Ok(generation_of(&bytes))
    }

    /// Whether files get the client's owner (the server runs as root).
    pub fn as_root(&self) -> bool {
        self.as_root
    }
}

fn remove_any(path: &Path, m: &fs::Metadata) -> Result<(), MirrorError> {
    if m.is_dir() { fs::remove_dir_all(path).map_err(io("remove", path)) } else { fs::remove_file(path).map_err(io("remove", path)) }
}

fn generation_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().as_str()[..32].to_string()
}

fn mtime_of(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

/// Checks every path and the shape of the tree: unique paths, each entry's parent a directory
/// listed before it.
fn validate(entries: &[FileEntry]) -> Result<HashMap<&str, usize>, MirrorError> {
    let mut by_path: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        check_path(&e.path).map_err(|r| refused(&e.path, r))?;
        if kind(e) == FileKind::Unspecified {
            return Err(refused(&e.path, "unknown file kind"));
        }
        if let Some(p) = parent(&e.path) {
            match by_path.get(p) {
                Some(&pi) if kind(&entries[pi]) == FileKind::Dir => {}
                Some(_) => return Err(refused(&e.path, format!("its parent {p:?} is not a directory (a symlink cannot lead out of the context)"))),
                None => return Err(refused(&e.path, format!("its parent directory {p:?} is not listed before it"))),
            }
        }
        if by_path.insert(&e.path, i).is_some() {
            return Err(refused(&e.path, "listed twice"));
        }
    }
    Ok(by_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, mtime: i64) -> FileEntry {
        FileEntry { path: path.into(), kind: FileKind::File as i32, mode: 0o644, size, mtime_unix_nanos: mtime, uid: 0, gid: 0, ..Default::default() }
    }

    fn dir(path: &str) -> FileEntry {
        FileEntry { path: path.into(), kind: FileKind::Dir as i32, mode: 0o755, ..Default::default() }
    }

    fn link(path: &str, target: &str) -> FileEntry {
        FileEntry { path: path.into(), kind: FileKind::Symlink as i32, mode: 0o777, symlink_target: target.into(), ..Default::default() }
    }

    fn sync(m: &Mirror, entries: &[FileEntry], content: impl Fn(&str) -> Vec<u8>) -> Plan {
        let plan = m.plan(entries).expect("plan");
        for &i in &plan.needed {
            let e = &entries[i as usize];
            let mut inc = m.receive(e).expect("receive");
            inc.write(&content(&e.path)).expect("write");
            inc.commit(e, m.as_root()).expect("commit");
        }
        m.finish(entries).expect("finish");
        plan
    }

    #[test]
    fn second_sync_asks_only_for_the_changed_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "host:/src/app").expect("open");
        let mut entries = vec![dir("src"), file("src/a", 1, 10), file("src/b", 1, 10), link("l", "src/a")];
        let first = sync(&m, &entries, |_| b"x".to_vec());
        assert_eq!(first.needed, [1, 2]);
        entries[2] = file("src/b", 2, 20);
        let second = sync(&m, &entries, |_| b"yy".to_vec());
        assert_eq!(second.needed, [2]);
        assert_eq!(fs::read(m.files_dir().join("src/b")).expect("read"), b"yy");
        assert_eq!(fs::read_link(m.files_dir().join("l")).expect("readlink"), Path::new("src/a"));
    }

    #[test]
    fn a_delta_touches_only_what_changed_and_refuses_removals_outside_its_base() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "k").expect("open");
        let base = vec![dir("d"), file("d/x", 1, 1), file("d/y", 1, 1), link("l", "/etc")];
        sync(&m, &base, |_| b"1".to_vec());
        let (plan, merged) = m.plan_delta(base.clone(), vec![file("d/y", 2, 2), file("n", 1, 1)], &["d/x".to_string()]).expect("delta");
        assert_eq!(plan.needed.iter().map(|&i| merged[i as usize].path.as_str()).collect::<Vec<_>>(), ["d/y", "n"]);
        assert_eq!(plan.removed, 1);
        assert!(!m.files_dir().join("d/x").exists());
        let err = m.plan_delta(base, Vec::new(), &["l/passwd".to_string()]).expect_err("not in the base");
        assert!(err.to_string().contains("not in the list"), "{err}");
    }

    #[test]
    fn unused_mirrors_are_removed_and_recent_ones_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "old").expect("open");
        sync(&m, &[file("f", 3, 1)], |_| b"abc".to_vec());
        assert_eq!(remove_unused_mirrors(root.path(), Duration::from_secs(3600)).expect("gc"), (0, 0), "used just now");
        let (count, bytes) = remove_unused_mirrors(root.path(), Duration::ZERO).expect("gc");
        assert_eq!(count, 1);
        assert!(bytes >= 3);
        assert!(!m.dir().exists());
    }

    #[test]
    fn a_stored_file_list_is_found_by_its_generation_only() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "k").expect("open");
        let entries = vec![dir("d"), file("d/x", 1, 1)];
        let generation = m.store_manifest(&entries).expect("store");
        assert_eq!(m.stored_manifest(&generation), Some(entries));
        assert_eq!(m.stored_manifest("0000"), None);
        m.forget_manifest().expect("forget");
        assert_eq!(m.stored_manifest(&generation), None);
    }

    #[test]
    fn files_the_client_no_longer_has_are_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "k").expect("open");
        sync(&m, &[dir("d"), file("d/x", 1, 1), file("y", 1, 1)], |_| b"1".to_vec());
        let plan = sync(&m, &[file("y", 1, 1)], |_| b"1".to_vec());
        assert_eq!(plan.removed, 1, "the directory d (with d/x) goes");
        assert!(!m.files_dir().join("d").exists());
        assert!(plan.needed.is_empty());
    }

    #[test]
    fn a_symlinked_directory_cannot_lead_writes_outside() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "k").expect("open");
        let err = m.plan(&[link("etc", "/etc"), file("etc/passwd", 1, 1)]).expect_err("must refuse");
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = m.plan(&[file("../escape", 1, 1)]).expect_err("must refuse");
        assert!(err.to_string().contains(".."), "{err}");
        let err = m.plan(&[file("/abs", 1, 1)]).expect_err("must refuse");
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn a_symlink_left_from_last_build_is_replaced_by_a_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let m = Mirror::open(root.path(), "k").expect("open");
        sync(&m, &[link("d", outside.path().to_str().expect("utf8"))], |_| Vec::new());
        sync(&m, &[dir("d"), file("d/f", 1, 1)], |_| b"z".to_vec());
        assert!(!outside.path().join("f").exists(), "the write must not follow the old symlink");
        assert_eq!(fs::read(m.files_dir().join("d/f")).expect("read"), b"z");
    }

    #[test]
    fn hard_links_are_made_on_the_server_without_their_bytes() {
        let root = tempfile::tempdir().expect("root");
        let m = Mirror::open(root.path(), "links").expect("mirror");
        let mut b = file("b", 6, 1_000_000_000);
        b.hardlink_to = "a".into();
        let entries = vec![file("a", 6, 1_000_000_000), b];
        let plan = m.plan(&entries).expect("plan");
        assert_eq!(plan.needed, [0], "only the first name's bytes are asked for");
        assert_eq!(plan.links, [1]);
        let mut f = m.receive(&entries[0]).expect("receive");
        f.write(b"linked").expect("write");
        f.commit(&entries[0], false).expect("commit");
        m.link(&entries, &plan.links).expect("link");
        let (a, bm) = (fs::metadata(m.files_dir().join("a")).expect("a"), fs::metadata(m.files_dir().join("b")).expect("b"));
        assert_eq!((a.ino(), a.nlink()), (bm.ino(), 2));
        // A link to a path that is not an earlier file of the list is refused.
        let mut bad = file("c", 6, 0);
        bad.hardlink_to = "../../etc/passwd".into();
        assert!(m.link(&[bad.clone()], &[0]).is_err());
        bad.hardlink_to = "d".into();
        assert!(m.link(&[bad, file("d", 1, 0)], &[0]).is_err());
    }

    #[test]
    fn a_mirror_written_before_the_machine_started_is_not_trusted() {
        let root = tempfile::tempdir().expect("root");
        let m = Mirror::open(root.path(), "boot").expect("mirror");
        fs::write(m.files_dir().join("a"), "a").expect("write");
        let generation = m.store_manifest(&[file("a", 1, 0)]).expect("store");
        assert!(Mirror::open(root.path(), "boot").expect("reopen").stored_manifest(&generation).is_some(), "same boot: kept");
        fs::write(m.dir().join("boot"), "an earlier boot\n").expect("write");
        let again = Mirror::open(root.path(), "boot").expect("reopen");
        assert!(again.stored_manifest(&generation).is_none() && !again.files_dir().join("a").exists(), "earlier boot: emptied");
    }
}
