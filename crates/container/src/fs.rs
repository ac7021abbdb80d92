//! A container's filesystem from the host: `diff` (its changes) and `cp`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{ContainerState, Containers, Status};

/// Files the runtime provides as mount points: not changes (as in docker diff / commit).
pub(crate) const PROVIDED: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// One changed path, as `docker diff` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 'A' added, 'C' changed, 'D' deleted.
    pub kind: char,
    pub path: PathBuf,
}

impl Containers {
    /// The changes of the container's filesystem against its image, sorted by path.
    pub fn diff(&self, state: &ContainerState) -> Result<Vec<Change>> {
        let upper = self.dir_of(&state.id).join("upper");
        let mut changes = Vec::new();
        walk_changes(&upper, Path::new("/"), &state.lowers, &mut changes)?;
        changes.retain(|(_, p)| !PROVIDED.iter().any(|f| p.strip_prefix("/").is_ok_and(|r| r == Path::new(f))));
        let dirs_with_changes: Vec<PathBuf> = changes.iter().filter_map(|(_, p)| p.parent().map(Path::to_path_buf)).collect();
        // A directory only copied up to hold changed children is listed only if it has some.
        changes.retain(|(k, p)| *k != 'C' || !std::fs::symlink_metadata(upper.join(p.strip_prefix("/").unwrap_or(p))).map(|m| m.is_dir()).unwrap_or(false) || dirs_with_changes.iter().any(|d| d.starts_with(p)));
        changes.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(changes.into_iter().map(|(kind, path)| Change { kind, path }).collect())
    }

    /// `cp CONTAINER:SRC DEST` or `cp SRC CONTAINER:DEST`.
    pub fn copy(&self, src: &str, dest: &str) -> Result<()> {
        let split = |s: &str| -> Option<(String, String)> {
            let (c, p) = s.split_once(':')?;
            if c.is_empty() || c.contains('/') { None } else { Some((c.to_string(), p.to_string())) }
        };
        let what = || format!("copying {src} to {dest}");
        match (split(src), split(dest)) {
            (Some((c, p)), None) => {
                let state = self.find(&c)?;
                let croot = ContainerRoot::open(self, &state)?;
                snapshot::copy::copy_out(croot.path(), &p, Path::new(dest)).map_err(|e| Error::Io { action: "copying", path: PathBuf::from(what()), source: e })?;
            }
            (None, Some((c, p))) => {
                let state = self.find(&c)?;
                let croot = ContainerRoot::open(self, &state)?;
                snapshot::copy::copy_in(Path::new(src), croot.path(), &p).map_err(|e| Error::Io { action: "copying", path: PathBuf::from(what()), source: e })?;
            }
            _ => return Err(Error::CopyArguments { src: src.to_string(), dest: dest.to_string() }),
        }
        Ok(())
    }
}

fn walk_changes(dir: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<(char, PathBuf)>) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let meta = std::fs::symlink_metadata(e.path()).map_err(|err| Error::io("reading", e.path(), err))?;
        let path = rel.join(e.file_name());
        let in_lower = lowers.iter().any(|l| std::fs::symlink_metadata(l.join(path.strip_prefix("/").unwrap_or(&path))).is_ok());
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(('D', path));
            continue;
        }
        out.push((if in_lower { 'C' } else { 'A' }, path.clone()));
        if meta.is_dir() {
            walk_changes(&e.path(), &path, lowers, out)?;
        }
    }
    Ok(())
}

/// A container's root as seen from the host: its live root while running, or its
/// layers mounted for as long as this value lives.
enum ContainerRoot {
    Live(PathBuf),
    Mounted(snapshot::MountGuard),
}

impl ContainerRoot {
    fn open(containers: &Containers, state: &ContainerState) -> Result<ContainerRoot> {
        if state.status == Status::Running
            && let Some(pid) = state.pid {
                return Ok(ContainerRoot::Live(PathBuf::from(format!("/proc/{pid}/root"))));
            }
        let dir = containers.dir_of(&state.id);
        let ov = snapshot::Overlay { lowers: state.lowers.clone(), upper: dir.join("upper"), work: dir.join("work") };
        let target = dir.join("rootfs");
        ov.mount_overlay(&target).map_err(|e| Error::io("mounting the filesystem of container", &state.name, e))?;
        Ok(ContainerRoot::Mounted(snapshot::mount::MountGuard::adopt(target)))
    }

    fn path(&self) -> &Path {
        match self {
            ContainerRoot::Live(p) => p,
            ContainerRoot::Mounted(g) => g.target(),
        }
    }
}

impl Containers {
    /// Writes the container's whole filesystem (its image's layers with its changes on top)
    /// as a tar to `out` (`export`), running or not. As in Docker, the container's init layer
    /// lies between the two: the mount points Docker's daemon gives every container.
    pub fn export(&self, state: &ContainerState, out: impl std::io::Write) -> Result<()> {
        let dir = self.dir_of(&state.id);
        let init = init_layer(&dir, &state.lowers)?;
        let view = dir.join(format!("export.{}", std::process::id()));
        std::fs::create_dir_all(&view).map_err(|e| Error::io("creating", &view, e))?;
        let lowers = std::iter::once(init).chain(state.lowers.iter().cloned()).collect();
        let ov = snapshot::Overlay { lowers, upper: dir.join("upper"), work: dir.join("work") };
        let result = ov.mount_read_only(&view).map_err(|e| Error::io("mounting the filesystem of container", &state.name, e)).and_then(|guard| {
            let opts = snapshot::diff::DiffOptions { compression: snapshot::diff::Compression::Uncompressed, threads: 1, ..Default::default() };
            let written = snapshot::diff::write_tar_unhashed(guard.target(), out, &opts);
            drop(guard);
            written.map(drop).map_err(|e| Error::io("exporting the filesystem of container", &state.name, std::io::Error::other(e)))
        });
        let _ = std::fs::remove_dir(&view);
        result
    }
}

/// What Docker's daemon puts in every container's init layer (`daemon/initlayer`): mount
/// points, all empty, over whatever the image has there.
pub(crate) const INIT_LAYER: [(&str, InitEntry); 10] = [
    ("dev/pts", InitEntry::Dir),
    ("dev/shm", InitEntry::Dir),
    ("proc", InitEntry::Dir),
    ("sys", InitEntry::Dir),
    (".dockerenv", InitEntry::File),
    ("etc/resolv.conf", InitEntry::File),
    ("etc/hosts", InitEntry::File),
    ("etc/hostname", InitEntry::File),
    ("dev/console", InitEntry::File),
    ("etc/mtab", InitEntry::Symlink("/proc/mounts")),
];

#[derive(Debug, Clone, Copy)]
pub(crate) enum InitEntry {
    Dir,
    File,
    Symlink(&'static str),
}

/// The container's init layer (`<container>/init`), made the first time it is needed. A
/// directory it needs that the image has keeps the image's mode and owner.
fn init_layer(dir: &Path, lowers: &[PathBuf]) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::os::unix::fs::PermissionsExt;
    let init = dir.join("init");
    // Made whole under another name, then renamed: if it is there, it is complete.
    if init.is_dir() {
        return Ok(init);
    }
    let partial = dir.join(format!("init.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let mode = |target: &Path, mode: u32| std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("setting the mode of", target, e));
    let make_dir = |rel: &Path| -> Result<()> {
        let target = partial.join(rel);
        if target.exists() {
            return Ok(());
        }
        std::fs::DirBuilder::new().mode(0o755).create(&target).map_err(|e| Error::io("creating", &target, e))?;
        match lowers.iter().find_map(|l| std::fs::metadata(l.join(rel)).ok().filter(|m| m.is_dir())) {
            Some(meta) => {
                mode(&target, meta.mode() & 0o7777)?;
                std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid())).map_err(|e| Error::io("setting the owner of", &target, e))
            }
            None => mode(&target, 0o755),
        }
    };
    make_dir(Path::new(""))?;
    for (path, entry) in INIT_LAYER {
        let rel = Path::new(path);
        let mut parent = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            make_dir(&parent)?;
        }
        let target = partial.join(rel);
        match entry {
            InitEntry::Dir => make_dir(rel)?,
            InitEntry::File => {
                drop(std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(&target).map_err(|e| Error::io("creating", &target, e))?);
                mode(&target, 0o755)?;
            }
            InitEntry::Symlink(to) => std::os::unix::fs::symlink(to, &target).map_err(|e| Error::io("creating", &target, e))?,
        }
    }
    if let Err(e) = std::fs::rename(&partial, &init) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another export made it at the same moment.
        if !init.is_dir() {
            return Err(Error::io("renaming into place", &init, e));
        }
    }
    Ok(init)
}
