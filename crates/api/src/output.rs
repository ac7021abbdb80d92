//! File outputs of a remote build (`--output type=local|tar|oci|docker`) across the wire.
//!
//! The server builds into a private directory ([`server_spec`] rewrites each file output to a
//! path there), the engine writes it with the code a local build runs, then [`send`] streams it
//! back in chunks. The client's [`OutputWriter`] writes what arrives where the user asked, the
//! way the local build writes it: a `type=local` tree like `cp -a --no-preserve=ownership`
//! (modes, times, symlinks, hard links; files owned by the user), a tar on `dest` as it comes
//! (so `dest` may be a pipe), an archive through a temporary file renamed when complete, `-` on
//! stdout. Nothing is held whole in memory.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::context::{CHUNK_SIZE, check_path};
use crate::engine::EngineError;
use crate::error::{ApiError, Result};
use crate::local::{Output, parse_output};
use crate::proto::{FileEntry, FileKind, OutputPart};

/// What a file output is, as both ends see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory tree.
    Local,
    /// One file: a tar, or an OCI / docker archive.
    File,
}

/// A file output the server produces in its private directory, to stream back.
#[derive(Clone, Debug)]
pub struct ServerOutput {
    /// Index in the request's `outputs`.
    pub index: u32,
    pub kind: Kind,
    pub path: PathBuf,
}

/// The request's outputs with every file output pointed into `dir` (the server's private
/// directory), and the outputs to stream back. Specs that do not parse are kept: the build
/// reports them as a local build would.
pub fn server_spec(outputs: &[String], tags: &[String], dir: &Path) -> (Vec<String>, Vec<ServerOutput>) {
    let mut specs = Vec::new();
    let mut back = Vec::new();
    for (i, spec) in outputs.iter().enumerate() {
        let path = dir.join(format!("output-{i}"));
        let (kind, new) = match parse_output(spec, tags, false) {
            Ok(Output::Local { .. }) => (Kind::Local, format!("type=local,dest={}", path.display())),
            Ok(Output::Tar { .. }) => (Kind::File, format!("type=tar,dest={}", path.display())),
            Ok(Output::Archive { format: oci::archive::Format::Oci, .. }) => (Kind::File, format!("type=oci,dest={}", path.display())),
            Ok(Output::Archive { format: oci::archive::Format::Docker, .. }) => (Kind::File, format!("type=docker,dest={}", path.display())),
            Ok(Output::Image { .. }) | Err(_) => {
                specs.push(spec.clone());
                continue;
            }
        };
        specs.push(new);
        back.push(ServerOutput { index: u32::try_from(i).unwrap_or(u32::MAX), kind, path });
    }
    (specs, back)
}

/// `ev` with the server's output paths in notes (`copying files to /srv/…/output-0 done`) put
/// back as the client wrote them, so the progress reads as a local build's.
pub fn client_paths_in(ev: solver::Event, outputs: &[ServerOutput], specs: &[String]) -> solver::Event {
    let solver::Event::Note { mut message } = ev else { return ev };
    for o in outputs {
        let dest = match specs.get(o.index as usize).map(|s| parse_output(s, &[], false)) {
            Some(Ok(Output::Local { dest })) => dest.display().to_string(),
            Some(Ok(Output::Tar { dest } | Output::Archive { dest, .. })) => dest,
            _ => continue,
        };
        message = message.replace(&o.path.display().to_string(), &dest);
    }
    solver::Event::Note { message }
}

fn failed(action: &str, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Failed(format!("output: {action} {}: {e}", path.display()))
}

/// Streams one produced output through `emit` (which fails when the client went away). Blocks.
pub fn send(out: &ServerOutput, mut emit: impl FnMut(OutputPart) -> bool) -> Result<(), EngineError> {
    let gone = || EngineError::Cancelled;
    match out.kind {
        Kind::File => {
            let mut f = File::open(&out.path).map_err(|e| failed("open", &out.path, e))?;
            stream_data(&mut f, &out.path, out.index, &mut emit)?;
        }
        Kind::Local => {
            let root_meta = fs::symlink_metadata(&out.path).map_err(|e| failed("stat", &out.path, e))?;
            let mut root = entry_of(String::new(), &root_meta);
            root.kind = FileKind::Dir as i32;
            if !emit(OutputPart { output: out.index, entry: Some(root), ..Default::default() }) {
                return Err(gone());
            }
            let mut links: HashMap<(u64, u64), String> = HashMap::new();
            for e in walkdir::WalkDir::new(&out.path).min_depth(1).follow_links(false).sort_by_file_name() {
                let e = e.map_err(|e| failed("read", &out.path, e))?;
                let rel = e.path().strip_prefix(&out.path).unwrap_or(e.path());
                let Some(rel) = rel.to_str() else {
                    return Err(failed("send", e.path(), "the name is not UTF-8"));
                };
                let meta = e.path().symlink_metadata().map_err(|err| failed("stat", e.path(), err))?;
                let ft = meta.file_type();
                if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
                    // Devices, FIFOs and sockets: the client makes regular files only.
                    tracing::debug!("output: skipping special file {}", e.path().display());
                    continue;
                }
                let mut entry = entry_of(rel.to_string(), &meta);
                if ft.is_symlink() {
                    let t = fs::read_link(e.path()).map_err(|err| failed("read link", e.path(), err))?;
                    entry.symlink_target = t.to_str().ok_or_else(|| failed("send", e.path(), "the link target is not UTF-8"))?.to_string();
                }
                if ft.is_file() && meta.nlink() > 1 {
                    if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                        let part = OutputPart { output: out.index, entry: Some(entry), hardlink_to: first.clone(), ..Default::default() };
                        if !emit(part) {
                            return Err(gone());
                        }
                        continue;
                    }
                    links.insert((meta.dev(), meta.ino()), rel.to_string());
                }
                if !emit(OutputPart { output: out.index, entry: Some(entry), ..Default::default() }) {
                    return Err(gone());
                }
                if ft.is_file() && meta.len() > 0 {
                    let mut f = File::open(e.path()).map_err(|err| failed("open", e.path(), err))?;
                    stream_data(&mut f, e.path(), out.index, &mut emit)?;
                }
            }
        }
    }
    if !emit(OutputPart { output: out.index, done: true, ..Default::default() }) {
        return Err(gone());
    }
    Ok(())
}

fn stream_data(f: &mut File, path: &Path, index: u32, emit: &mut impl FnMut(OutputPart) -> bool) -> Result<(), EngineError> {
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = f.read(&mut buf).map_err(|e| failed("read", path, e))?;
        if n == 0 {
            return Ok(());
        }
        if !emit(OutputPart { output: index, data: buf[..n].to_vec().into(), ..Default::default() }) {
            return Err(EngineError::Cancelled);
        }
    }
}

fn entry_of(path: String, meta: &fs::Metadata) -> FileEntry {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::File
    };
    FileEntry {
        path,
        kind: kind as i32,
        mode: meta.mode() & 0o7777,
        size: if ft.is_file() { meta.len() } else { 0 },
        mtime_unix_nanos: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        uid: 0,
        gid: 0,
        symlink_target: String::new(),
        hardlink_to: String::new(),
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApiError + use<> {
    ApiError::io(action, path.to_path_buf())
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::Protocol(format!("file output: {}", m.into()))
}

fn time_of(nanos: i64) -> std::time::SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

/// Where one output is being written on the client.
enum Sink {
    /// Not started yet.
    Pending,
    Stdout(std::io::Stdout),
    /// A tar written straight to `dest` (it may be a device or a pipe).
    Direct(std::io::BufWriter<File>, PathBuf),
    /// An archive written to a temporary file beside `dest`, renamed when complete.
    Staged(tempfile::NamedTempFile, PathBuf),
    Tree(Box<Tree>),
    Done,
}

/// A `type=local` tree being written.
struct Tree {
    dest: PathBuf,
    /// Directories of this output (relative; `""` is `dest`), with mode and time to set when
    /// the output is complete (after their contents, as `cp -a` does).
    dirs: Vec<(String, u32, i64)>,
    known_dirs: std::collections::HashSet<String>,
    /// Regular files this output wrote: the only possible hard link targets.
    files: std::collections::HashSet<String>,
    /// The file being written and its entry.
    file: Option<(File, FileEntry, u64)>,
}

/// Writes the file outputs of a remote build on the client, as a local build writes them.
pub struct OutputWriter {
    outputs: Vec<(Output, Sink)>,
}

impl OutputWriter {
    /// The outputs the request names (`--output` values, client paths).
    pub fn new(specs: &[String], tags: &[String]) -> Result<OutputWriter> {
        let mut outputs = Vec::new();
        for s in specs {
            let o = parse_output(s, tags, false).map_err(|e| ApiError::Invalid(e.to_string()))?;
            outputs.push((o, Sink::Pending));
        }
        Ok(OutputWriter { outputs })
    }

    /// Whether every file output arrived complete.
    pub fn complete(&self) -> bool {
        self.outputs.iter().all(|(o, s)| !o.is_file() || matches!(s, Sink::Done))
    }

    /// Takes one part from the server. Blocks (file I/O).
    pub fn accept(&mut self, part: OutputPart) -> Result<()> {
        let count = self.outputs.len();
        let (output, sink) = self.outputs.get_mut(part.output as usize).ok_or_else(|| bad(format!("the server sent output #{} of {count}", part.output)))?;
        if matches!(sink, Sink::Pending) {
            *sink = open(output)?;
        }
        match sink {
            Sink::Pending => Err(bad("not started")),
            Sink::Done => Err(bad(format!("output #{} got data after its end", part.output))),
            Sink::Stdout(s) => {
                s.write_all(&part.data).map_err(io("write", Path::new("<stdout>")))?;
                if part.done {
                    s.flush().map_err(io("write", Path::new("<stdout>")))?;
                    *sink = Sink::Done;
                }
                Ok(())
            }
            Sink::Direct(w, dest) => {
                w.write_all(&part.data).map_err(io("write", dest))?;
                if part.done {
                    w.flush().map_err(io("write", dest))?;
                    *sink = Sink::Done;
                }
                Ok(())
            }
            Sink::Staged(tmp, dest) => {
                tmp.write_all(&part.data).map_err(io("write", dest))?;
                if part.done {
                    let Sink::Staged(tmp, dest) = std::mem::replace(sink, Sink::Done) else { unreachable!("matched above") };
                    tmp.as_file().sync_all().map_err(io("write", &dest))?;
                    tmp.persist(&dest).map_err(|e| ApiError::Io { action: "rename into", path: dest.clone(), source: e.error })?;
                }
                Ok(())
            }
            Sink::Tree(t) => {
                if let Some(e) = part.entry {
                    t.start_entry(e, &part.hardlink_to)?;
                }
                if !part.data.is_empty() {
                    t.write(&part.data)?;
                }
                if part.done {
                    t.finish()?;
                    *sink = Sink::Done;
                }
                Ok(())
            }
        }
    }
}

fn open(output: &Output) -> Result<Sink> {
    Ok(match output {
        Output::Image { .. } => return Err(bad("the server sent files for an image output")),
        Output::Tar { dest } | Output::Archive { dest, .. } if dest == "-" => Sink::Stdout(std::io::stdout()),
        Output::Tar { dest } => {
            let p = PathBuf::from(dest);
            Sink::Direct(std::io::BufWriter::new(File::create(&p).map_err(io("create", &p))?), p)
        }
        Output::Archive { dest, .. } => {
            let p = PathBuf::from(dest);
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new().prefix(".builder-output-").tempfile_in(&dir).map_err(io("create a temporary file in", &dir))?;
            Sink::Staged(tmp, p)
        }
        Output::Local { dest } => {
            fs::create_dir_all(dest).map_err(io("create", dest))?;
            Sink::Tree(Box::new(Tree { dest: dest.clone(), dirs: Vec::new(), known_dirs: Default::default(), files: Default::default(), file: None }))
        }
    })
}

impl Tree {
    fn start_entry(&mut self, e: FileEntry, hardlink_to: &str) -> Result<()> {
        self.close_file()?;
        if e.path.is_empty() {
            // `dest` itself: its mode and time, set at the end.
            self.dirs.push((String::new(), e.mode, e.mtime_unix_nanos));
            self.known_dirs.insert(String::new());
            return Ok(());
        }
        check_path(&e.path).map_err(|why| bad(format!("{:?} refused: {why}", e.path)))?;
        // Every parent must be a directory this output created: nothing is written through a
        // symlink (or outside `dest`).
        let parent = crate::context::parent(&e.path).unwrap_or("");
        if !self.known_dirs.contains(parent) {
            return Err(bad(format!("{:?} comes before its directory", e.path)));
        }
        let full = self.dest.join(&e.path);
        let existing = fs::symlink_metadata(&full).ok();
        let kind = crate::context::kind(&e);
        // Whatever is in the way goes, unless it is already a directory and one is wanted.
        if let Some(m) = &existing
            && !(m.is_dir() && kind == FileKind::Dir) {
                if m.is_dir() {
                    fs::remove_dir_all(&full).map_err(io("replace", &full))?;
                } else if kind != FileKind::File || !hardlink_to.is_empty() || !m.is_file() {
                    fs::remove_file(&full).map_err(io("replace", &full))?;
                }
            }
        if !hardlink_to.is_empty() {
            // Only to a file this output wrote (never through a symlink, never out of `dest`).
            if !self.files.contains(hardlink_to) {
                return Err(bad(format!("hard link {:?} to {hardlink_to:?}, which is not a file of this output", e.path)));
            }
            let target = self.dest.join(hardlink_to);
            let _ = fs::remove_file(&full);
            fs::hard_link(&target, &full).map_err(io("link", &full))?;
            self.files.insert(e.path);
            return Ok(());
        }
        match kind {
            FileKind::Dir => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&full).map_err(io("create", &full))?;
                }
                self.known_dirs.insert(e.path.clone());
                self.dirs.push((e.path, e.mode, e.mtime_unix_nanos));
            }
            FileKind::Symlink => {
                std::os::unix::fs::symlink(&e.symlink_target, &full).map_err(io("create symlink", &full))?;
                let t = nix::sys::time::TimeSpec::from_duration(Duration::from_nanos(e.mtime_unix_nanos.max(0) as u64));
                let _ = nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &full, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink);
            }
            FileKind::File => {
                let f = fs::OpenOptions::new().write(true).create(true).truncate(true).open(&full).map_err(io("create", &full))?;
                self.files.insert(e.path.clone());
                self.file = Some((f, e, 0));
                if self.file.as_ref().is_some_and(|(_, e, _)| e.size == 0) {
                    self.close_file()?;
                }
            }
            FileKind::Fifo => crate::context::make_fifo(&full, &e).map_err(|errno| io("create fifo", &full)(errno.into()))?,
            FileKind::Unspecified => return Err(bad(format!("{:?} has no kind", e.path))),
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        let dest = &self.dest;
        let Some((f, e, written)) = self.file.as_mut() else { return Err(bad("file bytes without a file")) };
        *written += data.len() as u64;
        if *written > e.size {
            return Err(bad(format!("{:?}: more bytes than its {} listed", e.path, e.size)));
        }
        f.write_all(data).map_err(io("write", &dest.join(&e.path)))?;
        if *written == e.size {
            self.close_file()?;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        let Some((f, e, written)) = self.file.take() else { return Ok(()) };
        let full = self.dest.join(&e.path);
        if written != e.size {
            return Err(bad(format!("{:?}: got {written} bytes, {} were listed", e.path, e.size)));
        }
        f.set_permissions(fs::Permissions::from_mode(e.mode)).map_err(io("chmod", &full))?;
        let t = time_of(e.mtime_unix_nanos);
        f.set_times(FileTimes::new().set_modified(t).set_accessed(t)).map_err(io("set times of", &full))?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.close_file()?;
        // Deepest first: setting a directory's time after its contents are written keeps it.
        for (path, mode, mtime) in self.dirs.drain(..).rev() {
            let full = if path.is_empty() { self.dest.clone() } else { self.dest.join(&path) };
            fs::set_permissions(&full, fs::Permissions::from_mode(mode)).map_err(io("chmod", &full))?;
            let t = time_of(mtime);
            let d = File::open(&full).map_err(io("open", &full))?;
            d.set_times(FileTimes::new().set_modified(t).set_accessed(t)).map_err(io("set times of", &full))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree_of(dir: &Path) -> Vec<(String, u32, u64, i64, String)> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let e = e.expect("walk");
            let m = e.path().symlink_metadata().expect("stat");
            let rel = e.path().strip_prefix(dir).expect("below").display().to_string();
            let content = if m.is_file() {
                String::from_utf8_lossy(&fs::read(e.path()).expect("read")).into_owned()
            } else if m.file_type().is_symlink() {
                fs::read_link(e.path()).expect("link").display().to_string()
            } else {
                String::new()
            };
            let mtime = if m.file_type().is_symlink() { 0 } else { m.mtime() * 1_000_000_000 + m.mtime_nsec() };
            out.push((rel, m.mode(), m.nlink(), mtime, content));
        }
        out
    }

    #[test]
    fn a_tree_arrives_as_it_was_with_modes_times_symlinks_and_hard_links() {
        let src = tempfile::tempdir().expect("src");
        let s = src.path();
        fs::create_dir_all(s.join("bin/deep")).expect("mkdir");
        fs::write(s.join("bin/tool"), "#!/bin/sh\n").expect("write");
        fs::set_permissions(s.join("bin/tool"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(s.join("empty"), "").expect("write");
        fs::write(s.join("big"), vec![b'x'; CHUNK_SIZE * 2 + 5]).expect("write");
        fs::hard_link(s.join("bin/tool"), s.join("bin/deep/tool2")).expect("link");
        symlink("../bin/tool", s.join("bin/deep/link")).expect("symlink");
        fs::set_permissions(s.join("bin/deep"), fs::Permissions::from_mode(0o700)).expect("chmod");

        let dest_root = tempfile::tempdir().expect("dest");
        let dest = dest_root.path().join("out");
        let spec = format!("type=local,dest={}", dest.display());
        let mut w = OutputWriter::new(&[spec], &[]).expect("writer");
        let out = ServerOutput { index: 0, kind: Kind::Local, path: s.to_path_buf() };
        send(&out, |p| w.accept(p).map(|_| true).expect("accept")).expect("send");
        assert!(w.complete());
        assert_eq!(tree_of(&dest), tree_of(s));
    }

    #[test]
    fn an_archive_arrives_byte_for_byte_and_only_when_complete() {
        let src = tempfile::tempdir().expect("src");
        let file = src.path().join("image.tar");
        let bytes: Vec<u8> = (0..CHUNK_SIZE * 3 + 17).map(|i| (i % 251) as u8).collect();
        fs::write(&file, &bytes).expect("write");
        let dest = src.path().join("copy.tar");
        let mut w = OutputWriter::new(&[format!("type=oci,dest={}", dest.display())], &[]).expect("writer");
        let out = ServerOutput { index: 0, kind: Kind::File, path: file };
        let mut parts = Vec::new();
        send(&out, |p| {
            parts.push(p);
            true
        })
        .expect("send");
        let last = parts.pop().expect("the end");
        for p in parts {
            w.accept(p).expect("accept");
            assert!(!dest.exists(), "an archive appears only when complete");
        }
        w.accept(last).expect("accept");
        assert_eq!(fs::read(&dest).expect("read"), bytes);
    }

    #[test]
    fn a_tree_entry_that_would_escape_or_pass_through_a_symlink_is_refused() {
        let dest_root = tempfile::tempdir().expect("dest");
        let dest = dest_root.path().join("out");
        let spec = format!("type=local,dest={}", dest.display());
        let entry = |path: &str, kind: FileKind| FileEntry { path: path.into(), kind: kind as i32, mode: 0o644, symlink_target: "/etc".into(), ..Default::default() };
        let part = |e: FileEntry| OutputPart { output: 0, entry: Some(e), ..Default::default() };
        let mut w = OutputWriter::new(std::slice::from_ref(&spec), &[]).expect("writer");
        w.accept(part(entry("", FileKind::Dir))).expect("root");
        assert!(w.accept(part(entry("../x", FileKind::File))).is_err());
        let mut w = OutputWriter::new(&[spec], &[]).expect("writer");
        w.accept(part(entry("", FileKind::Dir))).expect("root");
        w.accept(part(entry("etc", FileKind::Symlink))).expect("symlink");
        assert!(w.accept(part(entry("etc/passwd", FileKind::File))).is_err(), "a write through a symlink");
        let link = OutputPart { output: 0, entry: Some(entry("pw", FileKind::File)), hardlink_to: "etc/passwd".into(), ..Default::default() };
        assert!(w.accept(link).is_err(), "a hard link to a file the output did not write");
        assert!(!dest.join("pw").exists());
    }

    #[test]
    fn progress_names_the_clients_destination() {
        let specs = vec!["type=local,dest=site".to_string()];
        let (_, back) = server_spec(&specs, &[], Path::new("/srv/out"));
        let ev = solver::Event::Note { message: "copying files to /srv/out/output-0 done".into() };
        assert_eq!(client_paths_in(ev, &back, &specs), solver::Event::Note { message: "copying files to site done".into() });
    }

    #[test]
    fn file_outputs_are_pointed_into_the_servers_directory() {
        let dir = Path::new("/srv/out");
        let specs = vec!["type=image".to_string(), "type=local,dest=site".into(), "-".into(), "type=docker,dest=/tmp/i.tar".into()];
        let (rewritten, back) = server_spec(&specs, &["app:1".into()], dir);
        assert_eq!(rewritten, ["type=image", "type=local,dest=/srv/out/output-1", "type=tar,dest=/srv/out/output-2", "type=docker,dest=/srv/out/output-3"]);
        assert_eq!(back.iter().map(|b| (b.index, b.kind)).collect::<Vec<_>>(), [(1, Kind::Local), (2, Kind::File), (3, Kind::File)]);
    }
}
