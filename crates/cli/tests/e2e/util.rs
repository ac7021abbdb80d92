//! Helpers shared by the end-to-end tests: a temp state root, a command runner,
//! and assertions that print what the user would have seen.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A `builder` invocation against a private, temporary `--root`.
pub struct Builder {
    pub root: tempfile::TempDir,
}

impl Builder {
    pub fn new() -> Self {
        Builder { root: tempfile::tempdir().expect("temp root") }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A `Command` for the builder binary with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--root").arg(self.root.path());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `builder ARGS…` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn builder")
    }

    /// Runs `builder ARGS…`, asserts it succeeded, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `builder ARGS…`, asserts it failed, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "expected `builder {}` to fail, it succeeded:\nstdout:\n{}", args.join(" "), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The machine's network namespace, opened before the suite entered its own (see main.rs).
pub static MACHINE_NETWORK: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Makes `cmd` run in the machine's network namespace: only for what needs the outside world
/// (debootstrap, a build that installs packages) and starts no container on a bridge there.
pub fn on_machine_network(cmd: &mut Command) -> &mut Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let Some(fd) = MACHINE_NETWORK.get().map(|f| f.as_raw_fd()) else { return cmd };
    // SAFETY: between fork and exec only setns(2) is called, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        })
    }
}

/// Path of the compiled `builder` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_builder"))
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "`builder {}` failed with {}:\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's `testdata/` directory.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// `../shared` beside the checkout (conformance data, seeds).
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Asserts two strings are equal and shows a line diff when they are not.
#[track_caller]
pub fn assert_eq_text(expected: &str, actual: &str) {
    if expected == actual {
        return;
    }
    let mut diff = String::new();
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => diff.push_str(&format!("  {x}\n")),
            (x, y) => {
                if let Some(x) = x { diff.push_str(&format!("- {x}\n")); }
                if let Some(y) = y { diff.push_str(&format!("+ {y}\n")); }
            }
        }
    }
    panic!("text differs (- expected, + actual):\n{diff}");
}

/// Writes a busybox root filesystem tarball (Debian's static busybox at /bin/busybox,
/// one symlink per applet, /etc/passwd and /etc/group with root, nobody and a `app` user 1000)
/// and returns its path. `builder import` turns it into the base image the tests use.
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "tests need Debian's busybox-static (/bin/busybox)");
    let path = dir.join("busybox-rootfs.tar");
    let file = std::fs::File::create(&path).expect("create rootfs tar");
    let mut tar = tar::Builder::new(file);
    let dir_entry = |tar: &mut tar::Builder<std::fs::File>, name: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, name, std::io::empty()).expect("dir entry");
    };
    for d in ["bin", "etc", "tmp", "root", "home", "home/app", "var", "usr", "usr/bin", "proc", "sys", "dev"] {
        dir_entry(&mut tar, d, if d == "tmp" { 0o1777 } else { 0o755 });
    }
    let mut f = std::fs::File::open(busybox).expect("open busybox");
    tar.append_file("bin/busybox", &mut f).expect("add busybox");
    let list = Command::new(busybox).arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" || applet.is_empty() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox").expect("applet link");
    }
    let files: [(&str, &str); 2] = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        ("etc/group", "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n"),
    ];
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, name, body.as_bytes()).expect("etc file");
    }
    tar.finish().expect("finish rootfs tar");
    path
}

/// A builder root with `busybox:test` imported (Debian's static busybox).
pub fn with_busybox() -> Builder {
    let b = Builder::new();
    let dir = tempfile::tempdir().expect("tmp");
    let tar = busybox_rootfs_tar(dir.path());
    b.ok(&["import", tar.to_str().expect("utf8"), "busybox:test"]);
    b
}

/// A build context with these files (a Dockerfile among them), directories made as needed.
pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    for (name, body) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    d
}

/// Titles of the `[k/n]` steps of a plain log that were CACHED, and of those that ran.
pub fn cached_and_ran(log: &str) -> (Vec<String>, Vec<String>) {
    let mut titles = std::collections::HashMap::new();
    let (mut cached, mut ran) = (Vec::new(), Vec::new());
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else { continue };
        let Some((n, text)) = rest.split_once(' ') else { continue };
        if text.starts_with('[') {
            titles.insert(n.to_string(), text.to_string());
        } else if text == "CACHED" {
            cached.extend(titles.get(n).cloned());
        } else if text.starts_with("DONE") {
            ran.extend(titles.get(n).cloned());
        }
    }
    (cached, ran)
}
