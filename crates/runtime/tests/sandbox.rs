//! The sandbox on a real busybox root (needs root, like CI): what the process sees.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use runtime::{ExitStatus, Limits, Network, SpecOptions, Stdio, build_spec};

/// A busybox root: /bin/busybox plus applet links, /etc/passwd and /etc/group.
fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "home/app"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nwheel:x:10:app\napp:x:1000:\n").unwrap();
    root
}

struct Sandbox {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = busybox_root(dir.path());
        Sandbox { dir, rootfs }
    }
    fn opts(&self, script: &str) -> SpecOptions {
        SpecOptions { rootfs: self.rootfs.clone(), args: vec!["/bin/sh".into(), "-c".into(), script.into()], ..Default::default() }
    }
    /// Runs and returns (status, stdout+stderr).
    fn run(&self, opts: &SpecOptions) -> (ExitStatus, String) {
        let spec = build_spec(opts).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let w2: OwnedFd = w.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::from(r).read_to_string(&mut s).unwrap();
            s
        });
        let status = runtime::run(self.dir.path(), &spec, Stdio::fds(None, w, w2)).unwrap();
        (status, reader.join().unwrap())
    }
}

#[test]
fn exit_codes_and_signals_are_propagated() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&sb.opts("exit 0")).0, ExitStatus::Code(0));
    assert_eq!(sb.run(&sb.opts("exit 3")).0, ExitStatus::Code(3));
    // Killed from outside (PID 1 cannot be killed from inside its namespace).
    let spec = build_spec(&sb.opts("sleep 100")).unwrap();
    let c = runtime::start(sb.dir.path(), &spec, Stdio::null()).unwrap();
    c.signal(libc::SIGKILL).unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn process_is_pid_1_with_hostname_env_and_cwd() {
    let sb = Sandbox::new();
    let mut o = sb.opts("echo pid=$$; hostname; echo $FOO; pwd; set -- /proc/[0-9]*; echo $#");
    o.env = vec!["FOO=bar".into()];
    o.hostname = "box".into();
    o.cwd = "/work/here".into();
    let (status, out) = sb.run(&o);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_eq!(out, "pid=1\nbox\nbar\n/work/here\n1\n");
}

#[test]
fn user_and_groups_come_from_the_image() {
    let sb = Sandbox::new();
    let mut o = sb.opts("id");
    o.user = "app".into();
    let (_, out) = sb.run(&o);
    assert_eq!(out.trim(), "uid=1000(app) gid=1000(app) groups=10(wheel)");
}

#[test]
fn missing_command_is_an_exec_error() {
    let sb = Sandbox::new();
    let mut o = sb.opts("");
    o.args = vec!["/nope".into()];
    let spec = build_spec(&o).unwrap();
    let err = runtime::run(sb.dir.path(), &spec, Stdio::null()).unwrap_err().to_string();
    assert!(err.contains("/nope") && err.contains("ENOENT"), "{err}");
}

#[test]
fn network_none_has_only_loopback() {
    let sb = Sandbox::new();
    let mut o = sb.opts("ls /sys/class/net");
    o.network = Network::None;
    let (_, out) = sb.run(&o);
    assert_eq!(out, "lo\n");
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let sb = Sandbox::new();
    // Only shell builtins after the loop: no fork is needed to count.
    let mut o = sb.opts("(i=0; while [ $i -lt 100 ]; do sleep 10 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#");
    o.limits = Limits { pids: Some(20), ..Default::default() };
    let (_, out) = sb.run(&o);
    let n: usize = out.lines().next().unwrap_or("").trim().parse().unwrap_or(999);
    assert!((10..=20).contains(&n), "{out}");
}

#[test]
fn containers_started_from_many_threads_at_once_all_run() {
    let sb = Sandbox::new();
    let outputs: Vec<(ExitStatus, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let sb = &sb;
                s.spawn(move || {
                    // Each thread has its own bundle dir, as parallel build steps do.
                    let bundle = tempfile::tempdir().unwrap();
                    let mut o = sb.opts(&format!("echo {i}; exit {i}"));
                    o.rootfs = sb.rootfs.clone();
                    let spec = build_spec(&o).unwrap();
                    let (r, w) = nix::unistd::pipe().unwrap();
                    let w2 = w.try_clone().unwrap();
                    let status = runtime::run(bundle.path(), &spec, Stdio::fds(None, w, w2)).unwrap();
                    let mut out = String::new();
                    std::fs::File::from(r).read_to_string(&mut out).unwrap();
                    (status, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (status, out)) in outputs.iter().enumerate() {
        assert_eq!(*status, ExitStatus::Code(i as i32));
        assert_eq!(out, &format!("{i}\n"));
    }
}

#[test]
fn overlay_root_is_assembled_inside_the_container_and_gone_after() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let (upper, work, merged) = (dir.path().join("upper"), dir.path().join("work"), dir.path().join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let mut o = sb.opts("echo changed > /etc/motd; cat /etc/passwd | head -1");
    o.rootfs = merged.clone();
    o.overlay = Some(runtime::OverlayRootfs { lowers: vec![sb.rootfs.clone()], upper: upper.clone(), work });
    let (status, out) = sb.run(&o);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_eq!(out, "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(std::fs::read_to_string(upper.join("etc/motd")).unwrap(), "changed\n");
    assert!(!sb.rootfs.join("etc/motd").exists(), "the lower layer is untouched");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(merged.to_str().unwrap()), "the overlay lived only in the container's mount namespace");
}

#[test]
fn init_reaps_orphans_and_forwards_signals() {
    let sb = Sandbox::new();
    let mut o = sb.opts("trap 'exit 42' TERM; (sleep 0.1 &) ; sleep 1; set -- /proc/[0-9]*; echo $#; sleep 100 & wait");
    o.init = true;
    let spec = build_spec(&o).unwrap();
    let (r, w) = nix::unistd::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    let c = runtime::start(sb.dir.path(), &spec, Stdio::fds(None, w, w2)).unwrap();
    let mut reader = std::io::BufReader::new(std::fs::File::from(r));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    // init (1) + sh: the orphaned `sleep 0.1` was reaped by init, not left a zombie.
    assert_eq!(line.trim(), "2");
    c.signal(libc::SIGTERM).unwrap();
    assert_eq!(c.wait().unwrap().code(), 42);
}
