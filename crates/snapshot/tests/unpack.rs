//! Unpacking real layer tars: metadata is preserved, whiteouts become overlay
//! whiteouts, and no entry can write outside the snapshot.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use snapshot::{Snapshots, Whiteouts, unpack};

struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    fn file(mut self, path: &str, body: &str, mode: u32, uid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode);
        h.set_size(body.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        self.0.append_data(&mut h, path, body.as_bytes()).unwrap();
        self
    }
    /// A file entry whose name is written raw into the header (tar's builder refuses `..`).
    fn raw_file(mut self, path: &str, body: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644);
        h.set_size(body.len() as u64);
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.0.append(&h, body.as_bytes()).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn device(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Char, 0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn unpack_into(dir: &Path, layer: Vec<u8>) -> Result<snapshot::unpack::UnpackStats, snapshot::error::UnpackError> {
    unpack(&layer[..], dir, "test-layer", Whiteouts::Overlay)
}

#[test]
fn modes_owners_mtimes_links_and_devices_are_preserved() {
    let dir = tempfile::tempdir().unwrap();
    let layer = Layer::new()
        .dir("usr", 0o755)
        .file("usr/tool", "#!/bin/sh\n", 0o4755, 1000)
        .link(tar::EntryType::Link, "usr/tool-again", "usr/tool")
        .link(tar::EntryType::Symlink, "usr/latest", "tool")
        .device("usr/null", 1, 3)
        .bytes();
    let stats = unpack_into(dir.path(), layer).unwrap();
    assert_eq!(stats.entries, 5);
    let tool = std::fs::metadata(dir.path().join("usr/tool")).unwrap();
    assert_eq!((tool.mode() & 0o7777, tool.uid(), tool.gid(), tool.mtime()), (0o4755, 1000, 1000, 1_000_000));
    let again = std::fs::metadata(dir.path().join("usr/tool-again")).unwrap();
    assert_eq!(again.ino(), tool.ino(), "hard link shares the inode");
    assert_eq!(std::fs::read_link(dir.path().join("usr/latest")).unwrap().to_str(), Some("tool"));
    let null = std::fs::metadata(dir.path().join("usr/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(std::fs::metadata(dir.path().join("usr")).unwrap().mtime(), 1_000_000, "dir mtime set after its children");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let layer = Layer::new().dir("etc", 0o755).file("etc/.wh.motd", "", 0o644, 0).dir("var", 0o755).file("var/.wh..wh..opq", "", 0o644, 0).bytes();
    unpack_into(dir.path(), layer).unwrap();
    let wh = std::fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let mut buf = [0u8; 4];
    let p = std::ffi::CString::new(dir.path().join("var").to_str().unwrap()).unwrap();
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::getxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), 4) };
    assert_eq!((n, buf[0]), (1, b'y'));
}

#[test]
fn whiteouts_applied_in_place_delete() {
    let dir = tempfile::tempdir().unwrap();
    unpack(&Layer::new().dir("a", 0o755).file("a/x", "1", 0o644, 0).file("a/y", "1", 0o644, 0).file("b", "1", 0o644, 0).bytes()[..], dir.path(), "l1", Whiteouts::Apply).unwrap();
    unpack(&Layer::new().file(".wh.b", "", 0o644, 0).file("a/.wh..wh..opq", "", 0o644, 0).file("a/z", "2", 0o644, 0).bytes()[..], dir.path(), "l2", Whiteouts::Apply).unwrap();
    assert!(!dir.path().join("b").exists());
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("a")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["z"]);
}

#[test]
fn dot_dot_entry_is_rejected() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("snap");
    std::fs::create_dir(&dir).unwrap();
    let err = unpack_into(&dir, Layer::new().raw_file("../../etc/x", "pwned").bytes()).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
    assert!(!outer.path().join("etc/x").exists());
}

#[test]
fn absolute_entry_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    unpack_into(dir.path(), Layer::new().raw_file("/tmp/abs-escape-test", "x").bytes()).unwrap();
    assert!(dir.path().join("tmp/abs-escape-test").exists());
    assert!(!Path::new("/tmp/abs-escape-test").exists());
}

#[test]
fn file_through_an_absolute_symlink_stays_inside() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("snap");
    std::fs::create_dir(&dir).unwrap();
    let victim = outer.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let layer = Layer::new().link(tar::EntryType::Symlink, "evil", victim.to_str().unwrap()).file("evil/pwned", "x", 0o644, 0).bytes();
    unpack_into(&dir, layer).unwrap();
    assert!(!victim.join("pwned").exists(), "wrote through the symlink to the host");
    assert!(dir.join(victim.strip_prefix("/").unwrap()).join("pwned").exists(), "resolved inside the snapshot");
}

#[test]
fn relative_symlink_climbing_out_stays_inside() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("snap");
    std::fs::create_dir(&dir).unwrap();
    let layer = Layer::new().link(tar::EntryType::Symlink, "up", "../../..").file("up/escaped", "x", 0o644, 0).bytes();
    unpack_into(&dir, layer).unwrap();
    assert!(!outer.path().join("escaped").exists());
    assert!(dir.join("escaped").exists());
}

#[test]
fn hardlink_to_a_host_file_is_rejected_or_contained() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("snap");
    std::fs::create_dir(&dir).unwrap();
    let host = outer.path().join("secret");
    std::fs::write(&host, "host").unwrap();
    let result = unpack_into(&dir, Layer::new().link(tar::EntryType::Link, "leak", host.to_str().unwrap()).bytes());
    // The link target resolves inside the snapshot, where it does not exist.
    assert!(result.is_err());
    assert_eq!(std::fs::metadata(&host).unwrap().nlink(), 1);
}

#[test]
fn gzip_and_zstd_layers_are_detected() {
    let body = Layer::new().file("hello", "world", 0o644, 0).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&body[..], 1).unwrap();
    for layer in [gz, zst, body] {
        let dir = tempfile::tempdir().unwrap();
        unpack_into(dir.path(), layer).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("hello")).unwrap(), "world");
    }
}

#[test]
fn a_layer_is_unpacked_once_for_concurrent_callers() {
    let root = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(root.path()).unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let body = Layer::new().file("f", "x", 0o644, 0).bytes();
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    snaps.ensure_layer("sha256:abc", || {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(&body[..])
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(paths.iter().all(|p| p == &root.path().join("snapshots/abc")));
    assert_eq!(std::fs::read_to_string(root.path().join("snapshots/abc/f")).unwrap(), "x");
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).unwrap().count(), 0, "no half snapshot left in tmp");
}

#[test]
fn a_failed_unpack_leaves_no_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(root.path()).unwrap();
    let bad = Layer::new().raw_file("../x", "x").bytes();
    assert!(snaps.ensure_layer("sha256:bad", || Ok(&bad[..])).is_err());
    assert!(snaps.get("sha256:bad").is_none());
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_snapshot_unpacked_before_a_machine_crash_is_unpacked_again() {
    let root = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(root.path()).unwrap();
    let body = Layer::new().file("f", "x", 0o644, 0).bytes();
    let first = snaps.ensure_layer("sha256:abc", || Ok(&body[..])).unwrap();
    assert!(snaps.get("sha256:abc").is_some(), "trusted in the boot that unpacked it");
    // As if the machine crashed before the files reached the disk: the marker names another boot.
    std::fs::write(root.path().join("snapshots/abc.pending"), "another-boot").unwrap();
    std::fs::write(first.join("f"), "").unwrap();
    assert!(snaps.get("sha256:abc").is_none());
    let again = snaps.ensure_layer("sha256:abc", || Ok(&body[..])).unwrap();
    assert_eq!(std::fs::read_to_string(again.join("f")).unwrap(), "x");
    // Settled: durable, no marker left.
    snaps.settle(std::time::Duration::ZERO);
    assert!(!root.path().join("snapshots/abc.pending").exists());
    assert!(snaps.get("sha256:abc").is_some());
}

#[test]
fn collect_removes_old_snapshots_nothing_keeps_and_spares_kept_young_and_locked_ones() {
    let root = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(root.path()).unwrap();
    let body = Layer::new().file("f", "12345", 0o644, 0).bytes();
    for d in ["sha256:aaa", "sha256:bbb", "sha256:ccc"] {
        snaps.ensure_layer(d, || Ok(&body[..])).unwrap();
    }
    let keep: std::collections::HashSet<String> = ["aaa".to_string()].into();
    assert_eq!(snaps.collect(&keep, std::time::Duration::from_secs(3600)), snapshot::snapshots::SnapshotGc::default(), "young ones stay");
    // A snapshot being unpacked by another process (its lock held) stays.
    let lock = std::fs::File::options().create(true).truncate(false).write(true).open(root.path().join("snapshots/ccc.lock")).unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&lock).unwrap();
    let gc = snaps.collect(&keep, std::time::Duration::ZERO);
    assert_eq!((gc.removed, gc.freed_bytes), (1, 5));
    assert!(snaps.get("sha256:aaa").is_some() && snaps.get("sha256:bbb").is_none() && snaps.get("sha256:ccc").is_some());
    drop(lock);
    assert_eq!(snaps.collect(&keep, std::time::Duration::ZERO).removed, 1);
    let mut ids = snaps.ids();
    ids.sort();
    assert_eq!(ids, ["aaa"]);
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).unwrap().count(), 0, "nothing left aside");
}
