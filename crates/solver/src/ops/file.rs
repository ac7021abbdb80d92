//! File ops (COPY, ADD, WORKDIR's mkdir): written straight into a new layer directory.
//!
//! The layer holds only what the op wrote, plus the parent directories needed to reach it
//! (with the metadata they have in the destination, so they are not a change).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use graph::{Chmod, Chown, CopyAction, FileAction, FileOp, MkdirAction, MkfileAction};

use super::local::{Excludes, LocalSource, SourceProblem, expand_source};
use super::{Output, Solved, StepCtx, local_of, snapshot_of};
use crate::cache::KeyHasher;
use crate::error::{Result, SolveError};
use crate::provenance::Provenance;
use crate::view::View;

/// Adds to the step's key (and provenance) the content of what each COPY reads from a local source.
pub(crate) fn add_to_key(ctx: &StepCtx<'_>, f: &FileOp, inputs: &[Solved], h: &mut KeyHasher, prov: &mut Provenance) -> Result<()> {
    for (n, a) in f.actions.iter().enumerate() {
        if let FileAction::Copy(c) = a
            && let Some(l) = local_of(inputs, c.source_input) {
                super::local::add_sources(ctx, l, &c.sources, &Excludes::new(&c.excludes), &format!("copy-{n}"), h, prov)?;
            }
    }
    Ok(())
}

/// Applies the actions on top of input 0 (seen through a merged view); returns the new layer's
/// directory in `work`.
pub(crate) fn execute(ctx: &StepCtx<'_>, f: &FileOp, inputs: &[Solved], work: &Path) -> Result<PathBuf> {
    let base = snapshot_of(ctx.step, inputs, 0)?;
    let dest_view = View::open(&ctx.layer_dirs(base)?, &work.join("dest"))?;
    let mut views: Vec<Option<View>> = Vec::new();
    for (i, inp) in inputs.iter().enumerate() {
        match &inp.output {
            Output::Snapshot { snapshot, .. } if i > 0 => views.push(Some(View::open(&ctx.layer_dirs(snapshot)?, &work.join(format!("src{i}")))?)),
            _ => views.push(None),
        }
    }
    let mut sources: Vec<Option<Source<'_>>> = Vec::new();
    for (i, inp) in inputs.iter().enumerate() {
        sources.push(match (&inp.output, &views[i]) {
            (Output::Local(l), _) => Some(Source::Local(l)),
            (Output::Http { dir, .. }, _) => Some(Source::Tree(dir.as_path())),
            (_, Some(view)) => Some(Source::Tree(view.path())),
            _ => None,
        });
    }
    let layer = work.join("layer");
    fs::create_dir(&layer).map_err(SolveError::io("create", &layer))?;
    let fctx = FileCtx { step: ctx.step, dest_view: dest_view.path(), sources, layer: &layer };
    for a in &f.actions {
        fctx.apply(a)?;
    }
    Ok(layer)
}

/// Where a copy reads from.
pub enum Source<'a> {
    /// The build context: `.dockerignore`d files are not there; files are owned by root.
    Local(&'a LocalSource),
    /// A stage or image (a merged view); owners are kept.
    Tree(&'a Path),
}

/// Everything a file op needs.
pub struct FileCtx<'a> {
    pub step: &'a str,
    /// The destination as it is before the op (merged view).
    pub dest_view: &'a Path,
    /// Inputs by index (index 0 is the destination itself).
    pub sources: Vec<Option<Source<'a>>>,
    /// The new layer directory.
    pub layer: &'a Path,
}

impl FileCtx<'_> {
    pub fn apply(&self, action: &FileAction) -> Result<()> {
        match action {
            FileAction::Copy(c) => self.copy(c),
            FileAction::Mkdir(m) => self.mkdir(m),
            FileAction::Mkfile(m) => self.mkfile(m),
        }
    }

    fn err(&self, msg: impl Into<String>) -> SolveError {
        SolveError::step(self.step, msg)
    }

    fn owner(&self, chown: &Option<Chown>) -> Result<Option<(u32, u32)>> {
        let Some(c) = chown else { return Ok(None) };
        let numeric = |s: &str| s.parse::<u32>().is_ok();
        // The destination's user database is read only when a name needs it.
        let db = if numeric(&c.user) && c.group.as_deref().is_none_or(numeric) {
            runtime::UserDb::default()
        } else {
            runtime::UserDb::read(self.dest_view).map_err(|e| self.err(e.to_string()))?
        };
        db.chown_ids(&c.user, c.group.as_deref()).map(Some).map_err(|e| self.err(e.to_string()))
    }

    fn mkdir(&self, m: &MkdirAction) -> Result<()> {
        let owner = self.owner(&m.chown)?;
        let rel = self.resolve_dest(&super::local::clean(&m.path));
        if rel.is_empty() {
            return Ok(());
        }
        self.ensure_parents(&rel, owner, 0o755)?;
        let target = self.layer.join(&rel);
        if fs::symlink_metadata(&target).is_err() {
            match fs::symlink_metadata(self.dest_view.join(&rel)) {
                Ok(existing) if existing.is_dir() => copy_dir_meta(&existing, &target)?,
                _ => {
                    fs::create_dir(&target).map_err(SolveError::io("create directory", &target))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(m.mode)).map_err(SolveError::io("chmod", &target))?;
                    if let Some((u, g)) = owner {
                        std::os::unix::fs::lchown(&target, Some(u), Some(g)).map_err(SolveError::io("chown", &target))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn mkfile(&self, m: &MkfileAction) -> Result<()> {
        let owner = self.owner(&m.chown)?;
        let rel = super::local::clean(&m.path);
        if rel.is_empty() {
            return Err(self.err("cannot write a file at /"));
        }
        self.ensure_parents(&rel, owner, 0o755)?;
        let target = self.layer.join(&rel);
        if let Ok(md) = fs::symlink_metadata(&target) {
            if md.is_dir() {
                let _ = fs::remove_dir_all(&target);
            } else {
                let _ = fs::remove_file(&target);
            }
        }
        fs::write(&target, m.data.as_bytes()).map_err(SolveError::io("write", &target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(m.mode)).map_err(SolveError::io("chmod", &target))?;
        let (u, g) = owner.unwrap_or((0, 0));
        std::os::unix::fs::lchown(&target, Some(u), Some(g)).map_err(SolveError::io("chown", &target))?;
        Ok(())
    }

    /// `rel` (clean, relative) with every symlink on the way followed inside the destination, the
    /// last component too, as BuildKit resolves a COPY/WORKDIR destination: what this op already
    /// wrote (the layer) first, then the destination as it was. `COPY a /link/` with `/link ->
    /// /real/dir` writes `/real/dir/a`; a file copied onto a symlink replaces its target.
    fn resolve_dest(&self, rel: &str) -> String {
        follow_links(rel, |here| match fs::symlink_metadata(self.layer.join(here)) {
            Ok(m) => m.file_type().is_symlink().then(|| fs::read_link(self.layer.join(here)).ok()).flatten(),
            Err(_) => fs::read_link(self.dest_view.join(here)).ok(),
        })
    }

    /// Creates the parent directories of `rel` in the layer, with the metadata they have in the
    /// destination (or `new_mode` and `owner`/root when they are new).
    fn ensure_parents(&self, rel: &str, owner: Option<(u32, u32)>, new_mode: u32) -> Result<()> {
        let comps: Vec<&str> = rel.split('/').collect();
        let mut cur = String::new();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(c);
            let target = self.layer.join(&cur);
            if fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            match fs::symlink_metadata(self.dest_view.join(&cur)) {
                Ok(m) if m.is_dir() => copy_dir_meta(&m, &target)?,
                _ => {
                    fs::create_dir(&target).map_err(SolveError::io("create directory", &target))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(new_mode)).map_err(SolveError::io("chmod", &target))?;
                    if let Some((u, g)) = owner {
                        std::os::unix::fs::lchown(&target, Some(u), Some(g)).map_err(SolveError::io("chown", &target))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn copy(&self, c: &CopyAction) -> Result<()> {
        let owner = self.owner(&c.chown)?;
        let chmod = c.chmod.clone();
        let src = self.sources.get(c.source_input).and_then(|s| s.as_ref()).ok_or_else(|| self.err("copy source input is missing"))?;
        let (root, excludes, from_context) = match src {
            Source::Local(l) => (l.dir.as_path(), l.excludes.clone(), true),
            Source::Tree(p) => (*p, Excludes::default(), false),
        };
        let user_excludes = Excludes::new(&c.excludes);
        // (which source named it, path): each source is copied on its own, as BuildKit does, so
        // hardlinks are kept between the files of one source, not across sources.
        let mut matched: Vec<(usize, String)> = Vec::new();
        let mut wildcard = false;
        for (si, s) in c.sources.iter().enumerate() {
            wildcard |= s.contains(['*', '?', '[']);
            match expand_source(root, s, &excludes) {
                Ok(paths) => {
                    if paths.is_empty() && !s.contains(['*', '?', '[']) {
                        return Err(self.err(format!("file not found: {s}")));
                    }
                    matched.extend(paths.into_iter().filter(|p| !user_excludes.is_excluded(p)).map(|p| (si, p)));
                }
                Err(SourceProblem::NotFound) => {
                    let what = if from_context { "in build context" } else { "in source stage or image" };
                    return Err(self.err(format!("failed to compute cache key: \"/{}\": not found {what}", super::local::clean(s))));
                }
                Err(SourceProblem::Excluded) => {
                    return Err(self.err(format!("failed to compute cache key: \"/{}\": not found: it is excluded by .dockerignore", super::local::clean(s))));
                }
                Err(SourceProblem::OutsideContext) => {
                    return Err(self.err(format!("forbidden path outside the build context: {s}")));
                }
            }
        }
        if matched.is_empty() && wildcard {
            return Err(self.err(format!("no source files were specified: {} matched nothing", c.sources.join(" "))));
        }
        let dest_rel = self.resolve_dest(&super::local::clean(&c.dest));
        let dest_is_dir = c.dest.ends_with('/')
            || c.dest.ends_with("/.")
            || dest_rel.is_empty()
            || fs::symlink_metadata(self.dest_view.join(&dest_rel)).map(|m| m.is_dir()).unwrap_or(false)
            || fs::symlink_metadata(self.layer.join(&dest_rel)).map(|m| m.is_dir()).unwrap_or(false);
        if matched.len() > 1 && !dest_is_dir {
            return Err(self.err(format!("When using COPY with more than one source file, the destination must be a directory and end with a /: {}", c.dest)));
        }
        // Directories the copy creates get --chmod's permission bits (BuildKit since 2025; 0755
        // before, and with a symbolic --chmod).
        let new_dir_mode = chmod.as_ref().and_then(Chmod::octal).map_or(0o755, |m| m & 0o777);
        let mut opts = CopyOpts { owner, chmod, keep_owner: !from_context, excludes: &excludes, user_excludes: &user_excludes, new_dir_mode, links: Default::default() };
        let mut current_source = usize::MAX;
        for (si, rel) in &matched {
            if *si != current_source {
                current_source = *si;
                opts.links = Default::default();
            }
            // The named source itself is followed when it is a symlink (as Docker does), but
            // only inside its root: `/etc/shadow` from a context link means <context>/etc/shadow.
            let src_path = resolve_in_root(root, rel);
            // A source that is a dangling symlink names a missing file, as in BuildKit.
            let meta = fs::symlink_metadata(&src_path).map_err(|_| {
                let target = src_path.strip_prefix(root).map(|p| p.display().to_string()).unwrap_or_default();
                self.err(format!("failed to compute cache key: \"/{target}\": not found (the symlink {rel} points to it)"))
            })?;
            // `--parents` keeps the path below the source's pivot: `a/./b/c` keeps `b/c`.
            let kept = match c.sources[*si].split_once("/./") {
                Some((pivot, _)) if c.parents => {
                    let pivot = super::local::clean(pivot);
                    rel.strip_prefix(&format!("{pivot}/")).unwrap_or(rel).to_string()
                }
                _ => rel.clone(),
            };
            if meta.is_dir() {
                let target = if c.parents && !kept.is_empty() { join_rel(&dest_rel, &kept) } else { dest_rel.clone() };
                self.make_dir_at(&target, &meta, &opts)?;
                let top = if rel.is_empty() { 0 } else { rel.len() + 1 };
                self.copy_tree(&src_path, rel, top, &target, &opts)?;
            } else {
                let base = rel.rsplit('/').next().unwrap_or(rel);
                if c.unpack_archives && !c.from_http
                    && let Some(kind) = archive_kind(&src_path) {
                        let target = if dest_rel.is_empty() { String::new() } else { dest_rel.clone() };
                        self.unpack_archive(&src_path, kind, &target, owner, new_dir_mode)?;
                        continue;
                    }
                let target = if c.parents {
                    join_rel(&dest_rel, &kept)
                } else if dest_is_dir {
                    join_rel(&dest_rel, base)
                } else {
                    dest_rel.clone()
                };
                self.ensure_parents(&target, owner, new_dir_mode)?;
                self.copy_entry(&src_path, &meta, &target, &opts)?;
            }
        }
        Ok(())
    }

    fn make_dir_at(&self, target: &str, src_meta: &fs::Metadata, opts: &CopyOpts<'_>) -> Result<()> {
        if target.is_empty() {
            return Ok(());
        }
        self.ensure_parents(target, opts.owner, opts.new_dir_mode)?;
        let path = self.layer.join(target);
        if fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
            return Ok(());
        }
        // An existing destination directory keeps its metadata; a new one is created like
        // BuildKit does: 0755 (or --chmod's bits), owned by --chown or root (only the source's
        // contents are copied).
        let _ = src_meta;
        match fs::symlink_metadata(self.dest_view.join(target)) {
            Ok(m) if m.is_dir() => copy_dir_meta(&m, &path),
            _ => {
                fs::create_dir(&path).map_err(SolveError::io("create directory", &path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(opts.new_dir_mode)).map_err(SolveError::io("chmod", &path))?;
                let (u, g) = opts.owner.unwrap_or((0, 0));
                std::os::unix::fs::lchown(&path, Some(u), Some(g)).map_err(SolveError::io("chown", &path))
            }
        }
    }

    /// `top` is the length of the copied source's own path prefix: `--exclude` patterns match
    /// paths relative to the source as well as to the context.
    fn copy_tree(&self, src_dir: &Path, src_rel: &str, top: usize, target: &str, opts: &CopyOpts<'_>) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(src_dir).map_err(SolveError::io("read directory", src_dir))?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let name = n.to_string_lossy().into_owned();
            let child_rel = join_rel(src_rel, &name);
            let excluded = opts.excludes.is_excluded(&child_rel)
                || opts.user_excludes.is_excluded(&child_rel)
                || child_rel.get(top..).is_some_and(|inner| opts.user_excludes.is_excluded(inner));
            if excluded {
                if !opts.excludes.may_reinclude() {
                    continue;
                }
                let p = src_dir.join(&n);
                if !fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
                    continue;
                }
            }
            let src = src_dir.join(&n);
            let meta = fs::symlink_metadata(&src).map_err(SolveError::io("stat", &src))?;
            let t = join_rel(target, &name);
            if meta.is_dir() {
                let path = self.layer.join(&t);
                if !path.is_dir() {
                    fs::create_dir(&path).map_err(SolveError::io("create directory", &path))?;
                }
                self.copy_tree(&src, &child_rel, top, &t, opts)?;
                // An excluded directory is only there for what a `!` pattern re-included.
                if excluded && fs::read_dir(&path).map(|mut r| r.next().is_none()).unwrap_or(false) {
                    let _ = fs::remove_dir(&path);
                    continue;
                }
                apply_meta(&path, &meta, opts, true)?;
            } else {
                self.copy_entry(&src, &meta, &t, opts)?;
            }
        }
        Ok(())
    }

    fn copy_entry(&self, src: &Path, meta: &fs::Metadata, target: &str, opts: &CopyOpts<'_>) -> Result<()> {
        let dst = self.layer.join(target);
        if let Ok(m) = fs::symlink_metadata(&dst) {
            if m.is_dir() {
                let _ = fs::remove_dir_all(&dst);
            } else {
                let _ = fs::remove_file(&dst);
            }
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(src).map_err(SolveError::io("read link", src))?;
            std::os::unix::fs::symlink(&t, &dst).map_err(SolveError::io("create symlink", &dst))?;
            let (u, g) = opts.owner.unwrap_or(if opts.keep_owner { (meta.uid(), meta.gid()) } else { (0, 0) });
            std::os::unix::fs::lchown(&dst, Some(u), Some(g)).map_err(SolveError::io("chown", &dst))?;
            let mt = filetime::FileTime::from_last_modification_time(meta);
            let _ = filetime::set_symlink_file_times(&dst, mt, mt);
            return Ok(());
        }
        if ft.is_file() {
            // A file with other links: the first copy is copied, the rest link to it.
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                let first = opts.links.borrow().get(&key).cloned();
                if let Some(first) = first
                    && fs::hard_link(self.layer.join(&first), &dst).is_ok() {
                        return Ok(());
                    }
                opts.links.borrow_mut().insert(key, target.to_string());
            }
            fs::copy(src, &dst).map_err(SolveError::io("copy to", &dst))?;
            return apply_meta(&dst, meta, opts, false);
        }
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() && meta.rdev() == 0 {
            // An overlay whiteout in a single-layer view: nothing there.
            return Ok(());
        }
        if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else if ft.is_block_device() {
                nix::sys::stat::SFlag::S_IFBLK
            } else {
                nix::sys::stat::SFlag::S_IFIFO
            };
            nix::sys::stat::mknod(&dst, kind, nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777), meta.rdev())
                .map_err(|e| SolveError::Io { op: "create device", path: dst.clone(), source: e.into() })?;
            return apply_meta(&dst, meta, opts, false);
        }
        Ok(())
    }

    fn unpack_archive(&self, src: &Path, kind: ArchiveKind, target: &str, owner: Option<(u32, u32)>, new_dir_mode: u32) -> Result<()> {
        let dest = self.layer.join(target);
        if !target.is_empty() {
            self.ensure_parents(&format!("{target}/x"), owner, new_dir_mode)?;
        }
        fs::create_dir_all(&dest).map_err(SolveError::io("create", &dest))?;
        let f = fs::File::open(src).map_err(SolveError::io("open archive", src))?;
        let reader = kind.reader(f).map_err(SolveError::io("read archive", src))?;
        let mut a = tar::Archive::new(reader);
        a.set_preserve_permissions(true);
        a.set_preserve_ownerships(true);
        a.set_preserve_mtime(true);
        a.set_overwrite(true);
        a.unpack(&dest).map_err(|e| {
            // The tar crate's message names the entry; the reason is in its source.
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            self.err(format!("unpacking {}: {msg}", src.display()))
        })
    }
}

struct CopyOpts<'a> {
    owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    keep_owner: bool,
    excludes: &'a Excludes,
    user_excludes: &'a Excludes,
    /// Mode of directories the copy creates.
    new_dir_mode: u32,
    /// (device, inode) of multiply-linked source files -> where the first one was copied.
    links: std::cell::RefCell<std::collections::HashMap<(u64, u64), String>>,
}

fn apply_meta(dst: &Path, meta: &fs::Metadata, opts: &CopyOpts<'_>, is_dir: bool) -> Result<()> {
    let (u, g) = opts.owner.unwrap_or(if opts.keep_owner { (meta.uid(), meta.gid()) } else { (0, 0) });
    std::os::unix::fs::lchown(dst, Some(u), Some(g)).map_err(SolveError::io("chown", dst))?;
    let mode = match &opts.chmod {
        Some(c) => c.apply(meta.mode() & 0o7777, is_dir),
        None => meta.mode() & 0o7777,
    };
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(SolveError::io("chmod", dst))?;
    // By path, never by opening it: opening a copied fifo would wait for a writer forever.
    let mt = filetime::FileTime::from_last_modification_time(meta);
    filetime::set_symlink_file_times(dst, mt, mt).map_err(SolveError::io("set mtime", dst))?;
    Ok(())
}

fn copy_dir_meta(m: &fs::Metadata, target: &Path) -> Result<()> {
    fs::create_dir(target).map_err(SolveError::io("create directory", target))?;
    fs::set_permissions(target, fs::Permissions::from_mode(m.mode() & 0o7777)).map_err(SolveError::io("chmod", target))?;
    std::os::unix::fs::lchown(target, Some(m.uid()), Some(m.gid())).map_err(SolveError::io("chown", target))?;
    let mt = filetime::FileTime::from_last_modification_time(m);
    let _ = filetime::set_symlink_file_times(target, mt, mt);
    Ok(())
}

/// `root/rel` with every symlink on the way followed the way a chroot would: absolute targets
/// and `..` never leave `root`. Gives up after 40 links (the rest is then taken literally).
pub(crate) fn resolve_in_root(root: &Path, rel: &str) -> PathBuf {
    root.join(follow_links(&super::local::clean(rel), |here| fs::read_link(root.join(here)).ok()))
}

/// `rel` (relative, `/`-separated) with every symlink on the way followed, `read_link` saying
/// what the path so far points to: absolute targets restart at the root and `..` stops there.
/// After 40 links the rest is taken literally.
fn follow_links(rel: &str, read_link: impl Fn(&str) -> Option<PathBuf>) -> String {
    let mut todo: Vec<String> = rel.split('/').filter(|c| !c.is_empty()).map(str::to_string).rev().collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        if c == "." {
            continue;
        }
        done.push(c);
        if links >= 40 {
            continue;
        }
        if let Some(target) = read_link(&done.join("/")) {
            links += 1;
            done.pop();
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                done.clear();
            }
            for part in t.split('/').filter(|p| !p.is_empty()).rev() {
                todo.push(part.to_string());
            }
        }
    }
    done.join("/")
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The compressions BuildKit's ADD recognizes, by their magic bytes.
#[derive(Clone, Copy)]
enum ArchiveKind {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl ArchiveKind {
    fn of_magic(head: &[u8]) -> ArchiveKind {
        if head.starts_with(&[0x1f, 0x8b]) {
            ArchiveKind::Gzip
        } else if head.starts_with(b"BZh") {
            ArchiveKind::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            ArchiveKind::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ArchiveKind::Zstd
        } else {
            ArchiveKind::Tar
        }
    }

    /// The uncompressed bytes of `f`.
    fn reader(self, f: fs::File) -> std::io::Result<Box<dyn Read>> {
        Ok(match self {
            ArchiveKind::Tar => Box::new(f),
            ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
            ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(f)),
            ArchiveKind::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(f)),
            ArchiveKind::Zstd => Box::new(zstd::stream::read::Decoder::new(f)?),
        })
    }
}

/// ADD unpacks local files that are tar archives (plain, gzip, bzip2, xz or zstd); anything else is copied
/// as it is, as BuildKit does: a compressed file counts only when what it holds starts with a
/// valid tar header (`notes.txt.gz` is copied, not unpacked).
fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let mut f = fs::File::open(path).ok()?;
    let mut magic = [0u8; 6];
    let n = read_full(&mut f, &mut magic);
    let kind = ArchiveKind::of_magic(&magic[..n]);
    let mut reader = kind.reader(fs::File::open(path).ok()?).ok()?;
    let mut head = [0u8; 512];
    (read_full(&mut reader, &mut head) == 512 && is_tar_header(&head)).then_some(kind)
}

/// Reads until `buf` is full or the input ends (or fails); how many bytes were read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Whether a 512-byte block is a tar header: its checksum field matches (the sum of its bytes
/// with that field read as spaces), as Go's tar reader checks before anything else.
fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field.iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else { return false };
    let sum: u32 = block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) }).sum();
    sum == stored
}

/// Paths a layer for `rel` needs (for tests).
#[allow(dead_code)]
fn layer_path(layer: &Path, rel: &str) -> PathBuf {
    layer.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(sources: &[&str], dest: &str) -> CopyAction {
        CopyAction {
            source_input: 1,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.into(),
            chown: None,
            chmod: None,
            unpack_archives: false,
            parents: false,
            excludes: vec![],
            from_http: false,
        }
    }

    struct Fixture {
        ctx: tempfile::TempDir,
        dest: tempfile::TempDir,
        layer: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let f = Fixture { ctx: tempfile::tempdir().expect("tmp"), dest: tempfile::tempdir().expect("tmp"), layer: tempfile::tempdir().expect("tmp") };
        fs::create_dir_all(f.ctx.path().join("dir/sub")).expect("mkdir");
        fs::write(f.ctx.path().join("a.txt"), "a").expect("w");
        fs::write(f.ctx.path().join("b.txt"), "b").expect("w");
        fs::write(f.ctx.path().join("dir/sub/c"), "c").expect("w");
        fs::write(f.ctx.path().join("ignored"), "i").expect("w");
        fs::create_dir_all(f.dest.path().join("etc")).expect("mkdir");
        fs::write(f.dest.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").expect("w");
        fs::write(f.dest.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("w");
        f
    }

    fn run(f: &Fixture, action: CopyAction) -> Result<()> {
        let local = LocalSource { name: "context".into(), dir: f.ctx.path().to_path_buf(), excludes: Excludes::new(&["ignored".to_string()]) };
        let ctx = FileCtx { step: "COPY", dest_view: f.dest.path(), sources: vec![None, Some(Source::Local(&local))], layer: f.layer.path() };
        ctx.apply(&FileAction::Copy(action))
    }

    #[test]
    fn directory_copies_its_contents_and_file_to_slash_goes_inside() {
        let f = fixture();
        run(&f, copy(&["dir"], "/app")).expect("copy dir");
        assert_eq!(fs::read_to_string(f.layer.path().join("app/sub/c")).expect("read"), "c");
        run(&f, copy(&["a.txt"], "/app/")).expect("copy file");
        assert!(f.layer.path().join("app/a.txt").is_file());
        run(&f, copy(&["b.txt"], "/renamed")).expect("copy file to name");
        assert_eq!(fs::read_to_string(f.layer.path().join("renamed")).expect("read"), "b");
    }

    #[test]
    fn wildcards_need_a_directory_and_ignored_files_are_missing() {
        let f = fixture();
        let e = run(&f, copy(&["*.txt"], "/one")).expect_err("needs dir");
        assert!(e.to_string().contains("must be a directory"), "{e}");
        run(&f, copy(&["*.txt"], "/many/")).expect("glob");
        assert!(f.layer.path().join("many/a.txt").is_file() && f.layer.path().join("many/b.txt").is_file());
        let e = run(&f, copy(&["ignored"], "/x")).expect_err("excluded");
        assert!(e.to_string().contains(".dockerignore"), "{e}");
        let e = run(&f, copy(&["missing"], "/x")).expect_err("missing");
        assert!(e.to_string().contains("\"/missing\": not found"), "{e}");
    }

    #[test]
    fn chown_by_name_and_chmod_apply() {
        let f = fixture();
        let mut c = copy(&["a.txt"], "/o/");
        c.chown = Some(Chown { user: "app".into(), group: Some("staff".into()) });
        c.chmod = Some(Chmod::parse("640").expect("octal"));
        run(&f, c).expect("copy");
        let m = fs::metadata(f.layer.path().join("o/a.txt")).expect("stat");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 50, 0o640));
    }

    #[test]
    fn chown_of_a_numeric_user_is_its_own_group_and_a_name_takes_its_primary_group() {
        let f = fixture();
        let mut c = copy(&["a.txt"], "/n/");
        c.chown = Some(Chown { user: "4242".into(), group: None });
        run(&f, c).expect("copy");
        let m = fs::metadata(f.layer.path().join("n/a.txt")).expect("stat");
        assert_eq!((m.uid(), m.gid()), (4242, 4242));
        let mut c = copy(&["b.txt"], "/n/");
        c.chown = Some(Chown { user: "app".into(), group: None });
        run(&f, c).expect("copy");
        let m = fs::metadata(f.layer.path().join("n/b.txt")).expect("stat");
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
    }

    #[test]
    fn chown_to_a_missing_user_or_group_names_it_and_the_file() {
        let f = fixture();
        let mut c = copy(&["a.txt"], "/o/");
        c.chown = Some(Chown { user: "ghost".into(), group: None });
        let e = run(&f, c).expect_err("no such user").to_string();
        assert!(e.contains("unable to find user ghost: no matching entries in /etc/passwd"), "{e}");
        let mut c = copy(&["a.txt"], "/o/");
        c.chown = Some(Chown { user: "app".into(), group: Some("ghosts".into()) });
        let e = run(&f, c).expect_err("no such group").to_string();
        assert!(e.contains("unable to find group ghosts: no matching entries in /etc/group"), "{e}");
    }

    #[test]
    fn chown_reads_a_symlinked_passwd_inside_the_destination_never_the_hosts() {
        let f = fixture();
        let outside = tempfile::NamedTempFile::new().expect("tmp");
        fs::write(outside.path(), "evil:x:7:7::/:/bin/sh\n").expect("w");
        fs::remove_file(f.dest.path().join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink(outside.path(), f.dest.path().join("etc/passwd")).expect("link");
        let mut c = copy(&["a.txt"], "/o/");
        c.chown = Some(Chown { user: "evil".into(), group: None });
        let e = run(&f, c).expect_err("the host's file is not the image's").to_string();
        assert!(e.contains("unable to find user evil"), "{e}");
    }
}

#[cfg(test)]
mod symlink_tests {
    use super::*;

    #[test]
    fn a_symlinked_source_never_leaves_its_root() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir(d.path().join("etc")).expect("mkdir");
        fs::write(d.path().join("etc/shadow"), "inside").expect("write");
        std::os::unix::fs::symlink("/etc/shadow", d.path().join("abs")).expect("link");
        std::os::unix::fs::symlink("../../../../etc/shadow", d.path().join("up")).expect("link");
        std::os::unix::fs::symlink("abs", d.path().join("chain")).expect("link");
        std::os::unix::fs::symlink("/", d.path().join("rootlink")).expect("link");
        for l in ["abs", "up", "chain", "rootlink/etc/shadow"] {
            assert_eq!(fs::read_to_string(resolve_in_root(d.path(), l)).expect("read"), "inside", "{l}");
        }
    }
}
