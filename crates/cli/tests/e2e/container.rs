//! End-to-end tests: container commands (`run`, `ps`, `logs`, `stop`, `kill`, `rm`,
//! `start`, `exec`, `diff`, `cp`), the sandbox's protections, and no leftovers.
#[allow(unused_imports)] use crate::util::*;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// A builder root with the busybox test image imported as `busybox:test`.
fn sh(b: &Builder, opts: &[&str], script: &str) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["busybox:test", "sh", "-c", script]);
    b.run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn both(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// No mounts under the root and no process still using it.
fn assert_no_leaks(b: &Builder) {
    let root = b.root().to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(&root)).map(String::from).collect();
        let procs: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())))
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok().map(|c| (e.file_name(), String::from_utf8_lossy(&c).replace('\0', " "))))
            .filter(|(_, c)| c.contains(&root))
            .map(|(p, c)| format!("{p:?}: {c}"))
            .collect();
        if mounts.is_empty() && procs.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "leftovers under {root}:\nmounts: {mounts:#?}\nprocesses: {procs:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_options_change_what_the_process_sees() {
    let b = with_busybox();
    let env_file = b.root().join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = sh(
        &b,
        &["-e", "GREETING=hello", "--env-file", env_file.to_str().unwrap(), "-w", "/srv/app", "-u", "app", "--hostname", "box"],
        "echo $GREETING $FROM_FILE; pwd; id; hostname; cat /etc/hostname; echo $HOME",
    );
    assert_success(&out, &["run"]);
    assert_eq_text("hello yes\n/srv/app\nuid=1000(app) gid=1000(app) groups=10(wheel)\nbox\nbox\n/home/app\n", &stdout(&out));

    let out = sh(&b, &["-u", "nobody:app"], "id -u; id -g");
    assert_eq_text("65534\n1000\n", &stdout(&out));

    let out = b.run(&["run", "--rm", "--entrypoint", "echo", "busybox:test", "from", "entrypoint"]);
    assert_eq_text("from entrypoint\n", &stdout(&out));

    let out = sh(&b, &["--network", "none"], "ls /sys/class/net");
    assert_eq_text("lo\n", &stdout(&out));

    let out = sh(&b, &["--read-only"], "touch /newfile 2>&1; echo rc=$?");
    assert!(stdout(&out).contains("Read-only file system") && stdout(&out).contains("rc=1"), "{}", both(&out));
    assert_no_leaks(&b);
}

#[test]
fn volumes_are_shared_and_read_only_ones_refuse_writes() {
    let b = with_busybox();
    let host = b.root().join("vol");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let rw = format!("{}:/data", host.display());
    let out = sh(&b, &["-v", &rw], "cat /data/in.txt; echo from container > /data/out.txt");
    assert_eq_text("from host\n", &stdout(&out));
    assert_eq!(std::fs::read_to_string(host.join("out.txt")).unwrap(), "from container\n");

    let ro = format!("{}:/data:ro", host.display());
    let out = sh(&b, &["-v", &ro], "echo x > /data/in.txt; echo rc=$?");
    assert!(both(&out).contains("Read-only file system") && stdout(&out).contains("rc=1"), "{}", both(&out));
    assert_eq!(std::fs::read_to_string(host.join("in.txt")).unwrap(), "from host\n");
    assert_no_leaks(&b);
}

#[test]
fn exit_codes_are_propagated() {
    let b = with_busybox();
    assert_eq!(sh(&b, &[], "exit 0").status.code(), Some(0));
    assert_eq!(sh(&b, &[], "exit 1").status.code(), Some(1));
    let out = b.run(&["run", "--rm", "busybox:test", "/no/such/command"]);
    assert_eq!(out.status.code(), Some(127), "{}", both(&out));

    // 137: killed.
    let id = b.ok(&["run", "-d", "busybox:test", "sleep", "1000"]).trim().to_string();
    b.ok(&["kill", &id]);
    wait_for("the killed container to exit", || b.ok(&["ps", "-a"]).contains("Exited (137)"));
    // 143: terminated (with --init, which forwards SIGTERM to the command).
    let id2 = b.ok(&["run", "-d", "--init", "busybox:test", "sleep", "1000"]).trim().to_string();
    b.ok(&["stop", "-t", "5", &id2]);
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (143)"), "{ps}");
    b.ok(&["rm", &id, &id2]);
    assert_no_leaks(&b);
}

#[test]
fn detached_life_cycle_with_logs_stop_start_and_rm() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--name", "ticker", "busybox:test", "sh", "-c", "trap 'echo stopping; exit 0' TERM; echo started; while true; do sleep 0.1; done"]).trim().to_string();
    assert_eq!(id.len(), 64);
    let ps = b.ok(&["ps"]);
    let header = ps.lines().next().unwrap_or("");
    for col in ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"] {
        assert!(header.contains(col), "{ps}");
    }
    assert!(ps.contains(&id[..12]) && ps.contains("ticker") && ps.contains("Up "), "{ps}");
    assert_eq_text(&format!("{}\n", &id[..12]), &b.ok(&["ps", "-q"]));
    wait_for("the first log line", || b.ok(&["logs", "ticker"]) == "started\n");

    // logs -f follows until the container stops.
    let follower = b.cmd().args(["logs", "-f", "ticker"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    b.ok(&["stop", "ticker"]);
    let followed = follower.wait_with_output().unwrap();
    assert_eq_text("started\nstopping\n", &stdout(&followed));
    assert_eq_text("stopping\n", &b.ok(&["logs", "--tail", "1", "ticker"]));
    assert!(b.ok(&["ps"]).lines().count() == 1, "not running any more");
    assert!(b.ok(&["ps", "-a"]).contains("Exited (0)"));

    // start runs it again, keeping its filesystem; restart stops and starts it.
    b.ok(&["start", "ticker"]);
    assert!(b.ok(&["ps"]).contains("ticker"));
    b.ok(&["restart", "-t", "5", "ticker"]);
    assert!(b.ok(&["ps"]).contains("ticker"));
    wait_for("the restarted container's output", || b.ok(&["logs", "ticker"]).matches("started").count() == 3);
    let err = b.fails(&["rm", "ticker"]);
    assert!(err.contains("stop it first"), "{err}");
    b.ok(&["rm", "-f", "ticker"]);
    assert_eq_text("", &b.ok(&["ps", "-aq"]));
    assert_no_leaks(&b);
}

#[test]
fn docker_container_and_image_commands_rename_and_container_prune() {
    let b = with_busybox();
    // The management-command forms the tutorials use.
    b.ok(&["container", "run", "--name", "done", "busybox:test", "true"]);
    b.ok(&["container", "run", "-d", "--name", "live", "busybox:test", "sleep", "30"]);
    let ls = b.ok(&["container", "ls"]);
    assert!(ls.contains("live") && !ls.contains("done"), "{ls}");
    assert!(b.ok(&["container", "ls", "-a"]).contains("done"));
    assert!(b.ok(&["image", "ls"]).contains("busybox"));
    b.ok(&["image", "tag", "busybox:test", "other:1"]);
    b.ok(&["image", "rm", "other:1"]);
    assert!(!b.ok(&["images"]).contains("other"));
    let err = b.fails(&["image", "frobnicate"]);
    assert!(err.contains("builder image frobnicate: no such command"), "{err}");

    // rename, while running, survives the container's exit; names stay unique.
    b.ok(&["container", "rename", "live", "renamed"]);
    let err = b.fails(&["rename", "done", "renamed"]);
    assert!(err.contains("already in use"), "{err}");
    let err = b.fails(&["rename", "done", "bad name"]);
    assert!(err.contains("invalid container name"), "{err}");
    // Docker's pattern wants two characters at least; nothing is created for a bad name.
    let before = b.ok(&["ps", "-a", "-q"]);
    let err = b.fails(&["run", "--name", "x", "busybox:test", "true"]);
    assert!(err.contains("invalid container name \"x\""), "{err}");
    assert_eq!(b.ok(&["ps", "-a", "-q"]), before);
    b.ok(&["container", "stop", "-t", "1", "renamed"]);
    assert!(b.ok(&["ps", "-a"]).contains("renamed"));

    // prune asks first, removes only stopped containers, and says what it freed.
    let mut child = b.cmd().args(["container", "prune"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"n\n").expect("answer");
    assert!(child.wait_with_output().expect("wait").status.success());
    assert_eq!(b.ok(&["ps", "-aq"]).lines().count(), 2, "nothing removed without a yes");
    b.ok(&["run", "-d", "--name", "still", "busybox:test", "sleep", "30"]);
    let out = b.ok(&["container", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:") && out.contains("Total reclaimed space:"), "{out}");
    let left = b.ok(&["ps", "-a"]);
    assert!(left.contains("still") && !left.contains("renamed") && !left.contains("done"), "{left}");
    b.ok(&["rm", "-f", "still"]);
    assert_no_leaks(&b);
}

#[test]
fn stats_show_cpu_memory_and_processes_of_running_containers() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "spin", "--memory", "64m", "busybox:test", "sh", "-c", "sleep 60 & while true; do :; done"]);
    b.ok(&["run", "-d", "--name", "rest", "busybox:test", "sleep", "60"]);
    wait_for("both processes of spin", || b.ok(&["stats", "--no-stream", "spin"]).lines().nth(1).is_some_and(|l| l.ends_with(" 2")));
    let out = b.ok(&["container", "stats", "--no-stream"]);
    let header = out.lines().next().unwrap_or("");
    for col in ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS"] {
        assert!(header.contains(col), "{out}");
    }
    let row = |name: &str| out.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).unwrap_or_else(|| panic!("{name} in {out}")).to_string();
    let spin = row("spin");
    let cpu: f64 = spin.split_whitespace().nth(2).and_then(|c| c.trim_end_matches('%').parse().ok()).expect("cpu %");
    assert!(cpu > 1.0, "a busy loop uses the CPU: {spin}");
    assert!(spin.contains("/ 64.00MiB") && spin.ends_with(" 2"), "the memory limit and both processes: {spin}");
    assert!(row("rest").ends_with(" 1"), "{out}");
    let err = b.fails(&["stats", "--no-stream", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    b.ok(&["rm", "-f", "spin", "rest"]);
    assert_no_leaks(&b);
}

#[test]
fn exec_runs_in_the_container_namespaces_with_its_options() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "svc", "--hostname", "svc-host", "busybox:test", "sh", "-c", "echo data > /tmp/state; sleep 1000"]);
    wait_for("the container to write its state", || b.run(&["exec", "svc", "cat", "/tmp/state"]).stdout == b"data\n");
    let out = b.ok(&["exec", "-e", "X=1", "-w", "/tmp", "-u", "app", "svc", "sh", "-c", "echo $X; pwd; id -u; hostname; cat /proc/1/cmdline | tr '\\0' ' '"]);
    // PID 1 is the container's own command (the shell exec'd its last command).
    assert_eq_text("1\n/tmp\n1000\nsvc-host\nsleep 1000 ", &out);
    assert_eq!(b.run(&["exec", "svc", "sh", "-c", "exit 7"]).status.code(), Some(7));
    // -t: a terminal of the container's own /dev/pts.
    let tty = b.ok(&["exec", "-t", "svc", "tty"]);
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    b.ok(&["rm", "-f", "svc"]);
    assert_no_leaks(&b);
}

#[test]
fn diff_and_cp_see_the_container_filesystem() {
    let b = with_busybox();
    b.ok(&["run", "--name", "changer", "busybox:test", "sh", "-c", "echo new > /root/added; rm /etc/group; echo changed >> /etc/passwd"]);
    let diff = b.ok(&["diff", "changer"]);
    assert_eq_text("C /etc\nD /etc/group\nC /etc/passwd\nC /root\nA /root/added\n", &diff);

    // commit makes an image of those changes.
    b.ok(&["commit", "changer", "busybox:changed"]);
    let out = b.run(&["run", "--rm", "busybox:changed", "sh", "-c", "cat /root/added; test -e /etc/group || echo no-group; tail -1 /etc/passwd"]);
    assert_eq_text("new\nno-group\nchanged\n", &stdout(&out));

    let host = b.root().join("copied");
    b.ok(&["cp", "changer:/root/added", host.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "new\n");
    let src = b.root().join("to-container.txt");
    std::fs::write(&src, "hello\n").unwrap();
    b.ok(&["cp", src.to_str().unwrap(), "changer:/tmp/"]);
    b.ok(&["start", "changer"]);
    b.ok(&["rm", "-f", "changer"]);
    // Copy into a running one, then read it back through exec.
    b.ok(&["run", "-d", "--name", "live", "busybox:test", "sleep", "1000"]);
    b.ok(&["cp", src.to_str().unwrap(), "live:/tmp/in.txt"]);
    assert_eq_text("hello\n", &b.ok(&["exec", "live", "cat", "/tmp/in.txt"]));
    b.ok(&["rm", "-f", "live"]);
    assert_no_leaks(&b);
}

#[test]
fn security_host_is_out_of_reach() {
    let b = with_busybox();
    // Host PIDs are not visible: only the container's own processes.
    let out = sh(&b, &[], "ls /proc | grep -c '^[0-9]'");
    let n: u32 = stdout(&out).trim().parse().unwrap();
    assert!(n <= 3, "saw {n} processes");
    // A host file that is not mounted cannot be read.
    let secret = b.root().join("host-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let out = sh(&b, &[], &format!("cat {} 2>&1; cat /proc/1/root{} 2>&1; true", secret.display(), secret.display()));
    assert!(!stdout(&out).contains("s3cret"), "{}", both(&out));
    // mount, insmod, reboot, kernel knobs: all refused.
    let out = sh(&b, &[], "mount -t tmpfs none /mnt 2>&1; echo mount=$?");
    assert!(stdout(&out).contains("mount=1") || stdout(&out).contains("mount=255"), "{}", both(&out));
    let out = sh(&b, &[], "echo x > /m.ko; insmod /m.ko 2>&1; echo insmod=$?");
    assert!(!stdout(&out).contains("insmod=0"), "{}", both(&out));
    // New namespaces (a user namespace needs no privilege on the host) are refused by seccomp.
    let out = sh(&b, &[], "unshare -U -r true 2>&1; echo unshare=$?; unshare -m true 2>&1; echo unshare-m=$?");
    assert!(!stdout(&out).contains("unshare=0") && !stdout(&out).contains("unshare-m=0"), "{}", both(&out));
    let out = sh(&b, &[], "reboot -f 2>&1; echo reboot=$?; echo still-here");
    assert!(stdout(&out).contains("still-here"), "{}", both(&out));
    let out = sh(&b, &[], "echo pwned > /proc/sys/kernel/hostname 2>&1; echo rc=$?; echo h > /proc/sysrq-trigger 2>&1; echo rc2=$?");
    assert!(stdout(&out).contains("rc=1") && !stdout(&out).contains("rc2=0"), "{}", both(&out));
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(), "pwned");
    // Capabilities beyond Docker's set are gone, and seccomp is on.
    let out = sh(&b, &[], "grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status");
    assert_eq_text("NoNewPrivs:\t1\nSeccomp:\t2\nCapBnd:\t00000000a80425fb\n", &{
        let s = stdout(&out);
        let mut lines: Vec<&str> = s.lines().collect();
        lines.sort_by_key(|l| !l.starts_with("NoNew") as u8 * 2 + !l.starts_with("Seccomp") as u8);
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    });
    assert_no_leaks(&b);
}

/// A layer tar: the busybox root plus extra raw entries (names written into the header as is).
fn busybox_plus(dir: &Path, extra: &[(tar::EntryType, &str, &str)]) -> std::path::PathBuf {
    let base = busybox_rootfs_tar(dir);
    let mut bytes = std::fs::read(&base).unwrap();
    // Drop the two zero blocks that end the archive, append, and end it again.
    while bytes.len() >= 1024 && bytes[bytes.len() - 512..].iter().all(|&b| b == 0) {
        bytes.truncate(bytes.len() - 512);
    }
    for (kind, name, target) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        let body = if *kind == tar::EntryType::Regular { "pwned" } else { "" };
        h.set_size(body.len() as u64);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        if !target.is_empty() {
            h.set_link_name(target).unwrap();
        }
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        let mut data = body.as_bytes().to_vec();
        data.resize(data.len().div_ceil(512) * 512, 0);
        bytes.extend_from_slice(&data);
    }
    bytes.extend_from_slice(&[0u8; 1024]);
    let path = dir.join("evil.tar");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn security_image_layers_cannot_write_outside_their_snapshot() {
    let b = Builder::new();
    let victim = tempfile::tempdir().unwrap();
    // 1. ../../ in an entry name: the layer is refused.
    let tar = busybox_plus(b.root(), &[(tar::EntryType::Regular, "../../../../../../../../tmp/zip-slip-escape", "")]);
    b.ok(&["import", tar.to_str().unwrap(), "evil:dotdot"]);
    let err = b.fails(&["run", "--rm", "evil:dotdot", "true"]);
    assert!(err.contains("escapes"), "{err}");
    assert!(!Path::new("/tmp/zip-slip-escape").exists());
    // 2. An absolute symlink, then a file through it: lands inside the snapshot.
    let link = victim.path().to_str().unwrap();
    let through = format!("{}/pwned", "evil-link");
    let tar = busybox_plus(b.root(), &[(tar::EntryType::Symlink, "evil-link", link), (tar::EntryType::Regular, &through, "")]);
    b.ok(&["import", tar.to_str().unwrap(), "evil:symlink"]);
    let out = b.run(&["run", "--rm", "evil:symlink", "sh", "-c", &format!("cat {link}/pwned")]);
    assert_eq!(stdout(&out), "pwned", "{}", both(&out));
    assert!(!victim.path().join("pwned").exists(), "a layer wrote to the host");
    assert_no_leaks(&b);
}

#[test]
fn fork_bomb_is_contained_by_pids_limit() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--pids-limit", "64", "busybox:test", "sh", "-c", "(bomb() { bomb | bomb & }; bomb) 2>/dev/null; exec sleep 1000"]).trim().to_string();
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(b.root().join("containers").join(&id).join("state.json")).unwrap()).unwrap();
    let dirs: Vec<String> = state["cgroup_dirs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    let pids_dir = dirs.iter().find(|d| Path::new(d).join("pids.current").exists()).expect("a pids cgroup");
    // Wait for the bomb to get going (a loaded machine may take a while to schedule it); it
    // never gets past the limit.
    let read_current = || -> u32 { std::fs::read_to_string(Path::new(pids_dir).join("pids.current")).unwrap().trim().parse().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut current = read_current();
    while current < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        current = read_current();
    }
    assert!((10..=64).contains(&current), "{current} processes: the bomb ran, and stopped at the limit");
    // The host still answers.
    let started = Instant::now();
    let out = std::process::Command::new("/bin/true").output().unwrap();
    assert!(out.status.success());
    let _ = started;
    b.ok(&["rm", "-f", &id]);
    assert!(!Path::new(pids_dir).exists(), "cgroup removed");
    assert_no_leaks(&b);
}

#[test]
fn memory_and_cpu_limits_are_written_to_the_cgroups() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--memory", "64m", "--cpus", "0.5", "busybox:test", "sleep", "1000"]).trim().to_string();
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(b.root().join("containers").join(&id).join("state.json")).unwrap()).unwrap();
    let dirs: Vec<std::path::PathBuf> = state["cgroup_dirs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().into()).collect();
    let read = |file: &str| dirs.iter().find_map(|d| std::fs::read_to_string(d.join(file)).ok()).map(|s| s.trim().to_string());
    let memory = read("memory.limit_in_bytes").or_else(|| read("memory.max"));
    assert_eq!(memory.as_deref(), Some("67108864"));
    let cpu = read("cpu.cfs_quota_us").or_else(|| read("cpu.max").map(|m| m.split(' ').next().unwrap_or("").to_string()));
    assert_eq!(cpu.as_deref(), Some("50000"));
    b.ok(&["rm", "-f", &id]);
    assert!(dirs.iter().all(|d| !d.exists()), "cgroups removed with the container");
    assert_no_leaks(&b);
}

#[test]
fn memory_over_the_limit_is_oom_killed_with_137() {
    let b = with_busybox();
    let out = sh(&b, &["--memory", "32m"], "tail /dev/zero");
    assert_eq!(out.status.code(), Some(137), "{}", both(&out));
    assert_no_leaks(&b);
}

#[test]
fn same_bundle_under_runc_sees_the_same_sandbox() {
    if !Path::new("/usr/sbin/runc").exists() {
        panic!("this test needs Debian's runc at /usr/sbin/runc");
    }
    let b = with_busybox();
    let probe = "id; pwd; env | sort; hostname; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; cut -d' ' -f2,3 /proc/self/mounts | sort; ls /dev; ulimit -n";
    for opts in [vec!["--hostname", "h1", "-w", "/srv", "-u", "app", "-e", "A=1"], vec!["--network", "none", "--read-only", "--hostname", "h2"], vec!["-u", "nobody:app", "--hostname", "other"]] {
        let ours = sh(&b, &opts, probe);
        let mut with_runc = vec!["--runtime", "/usr/sbin/runc"];
        with_runc.extend_from_slice(&opts);
        let theirs = sh(&b, &with_runc, probe);
        assert_success(&ours, &opts);
        assert_success(&theirs, &with_runc);
        assert_eq_text(&stdout(&theirs), &stdout(&ours));
    }
    assert_no_leaks(&b);
}

#[test]
fn killing_the_foreground_builder_leaves_nothing_behind() {
    let b = with_busybox();
    let mut child = b.cmd().args(["run", "busybox:test", "sh", "-c", "sleep 987654 & sleep 987655"]).spawn().unwrap();
    wait_for("the container to start", || b.ok(&["ps"]).lines().count() == 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_no_leaks(&b);
    wait_for("the container's processes to be gone", || {
        !std::fs::read_dir("/proc").unwrap().flatten().any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("98765")))
    });
    wait_for("ps to show it exited", || b.ok(&["ps"]).lines().count() == 1);
}

#[test]
fn tty_gives_the_process_a_real_terminal() {
    let b = with_busybox();
    let out = b.run(&["run", "--rm", "-t", "busybox:test", "sh", "-c", "tty; test -t 1 && echo is-a-tty"]);
    let text = stdout(&out).replace("\r\n", "\n");
    assert!(text.starts_with("/dev/pts/"), "{}", both(&out));
    assert!(text.contains("is-a-tty"), "{text}");
    assert_no_leaks(&b);
}

/// A Debian root made from this (Debian) host's own dynamically linked programs and
/// their libraries, as `ldd` lists them.
fn debian_rootfs_tar(dir: &Path) -> std::path::PathBuf {
    let programs = ["/bin/bash", "/usr/bin/id", "/usr/bin/env", "/bin/ls", "/bin/cat"];
    let mut files: Vec<String> = programs.iter().map(|s| s.to_string()).collect();
    for p in programs {
        let out = std::process::Command::new("ldd").arg(p).output().expect("ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
                files.push(path.to_string());
            }
        }
    }
    let path = dir.join("debian-rootfs.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    tar.follow_symlinks(true);
    files.sort();
    files.dedup();
    for f in &files {
        tar.append_path_with_name(f, f.trim_start_matches('/')).unwrap();
    }
    for (name, body) in [("etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"), ("etc/group", "root:x:0:\ndaemon:x:1:\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    tar.finish().unwrap();
    path
}

#[test]
fn dynamically_linked_debian_programs_run_with_their_libraries() {
    let b = Builder::new();
    let tar = debian_rootfs_tar(b.root());
    b.ok(&["import", tar.to_str().unwrap(), "debian:host-bits"]);
    let out = b.run(&["run", "--rm", "-u", "daemon", "-w", "/var/tmp", "-e", "X=1", "debian:host-bits", "/bin/bash", "-c", "id; pwd; echo $X; echo ${BASH_VERSION%%.*}"]);
    assert_success(&out, &["run", "debian"]);
    let text = stdout(&out);
    assert!(text.starts_with("uid=1(daemon) gid=1(daemon) groups=1(daemon)\n/var/tmp\n1\n"), "{}", both(&out));
    assert_no_leaks(&b);
}

#[test]
fn run_pulls_a_missing_image_from_the_registry() {
    let registry = crate::util_registry::Registry::start();
    let name = format!("{}/e2e/runme:1", registry.addr());
    let pusher = Builder::new();
    let tar = busybox_rootfs_tar(pusher.root());
    pusher.ok(&["import", tar.to_str().unwrap(), &name]);
    pusher.ok(&["push", &name]);
    let b = Builder::new();
    let out = b.run(&["run", "--rm", &name, "echo", "pulled and ran"]);
    assert_success(&out, &["run", &name]);
    assert_eq_text("pulled and ran\n", &stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to find image"));
    assert_no_leaks(&b);
}

#[test]
fn image_entrypoint_cmd_env_workdir_and_user_apply() {
    let b = with_busybox();
    let ctx = b.root().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:test\nENV GREETING=hi\nWORKDIR /app\nUSER app\nENTRYPOINT [\"sh\", \"-c\"]\nCMD [\"echo $GREETING; pwd; id -u\"]\n").unwrap();
    b.ok(&["build", "-t", "configured:1", ctx.to_str().unwrap()]);
    assert_eq_text("hi\n/app\n1000\n", &b.ok(&["run", "--rm", "configured:1"]));
    // CMD is replaced by arguments; -e, -w and -u override the image's.
    assert_eq_text("bye /tmp 0\n", &b.ok(&["run", "--rm", "-e", "GREETING=bye", "-w", "/tmp", "-u", "root", "configured:1", "echo $GREETING $(pwd) $(id -u)"]));
    // --entrypoint replaces the entrypoint and drops the image's CMD.
    assert_eq_text("plain\n", &b.ok(&["run", "--rm", "--entrypoint", "echo", "configured:1", "plain"]));
    assert_no_leaks(&b);
}

#[test]
fn sigterm_to_the_foreground_builder_is_passed_to_the_container() {
    let b = with_busybox();
    use std::io::{BufRead, Read};
    let mut child = b.cmd().args(["run", "busybox:test", "sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n", "the trap is set");
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert_eq_text("got-term\n", &rest);
    assert_no_leaks(&b);
}

#[test]
fn the_container_starts_with_no_ignored_or_blocked_signals() {
    let b = with_busybox();
    // Run grep directly: a shell would ignore signals of its own for its children.
    let out = b.run(&["run", "--rm", "busybox:test", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    assert_eq_text("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", &stdout(&out));
}

#[test]
fn killing_the_shim_of_a_detached_container_leaves_nothing_behind() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "busybox:test", "sleep", "987656"]).trim().to_string();
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(b.root().join("containers").join(&id).join("state.json")).unwrap()).unwrap();
    let shim = state["supervisor"].as_i64().unwrap();
    assert!(std::process::Command::new("kill").args(["-KILL", &shim.to_string()]).status().unwrap().success());
    wait_for("the container's process to be gone", || {
        !std::fs::read_dir("/proc").unwrap().flatten().any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("987656")))
    });
    assert!(b.ok(&["ps", "-a"]).contains("Exited (137)"));
    b.ok(&["rm", &id]);
    assert_no_leaks(&b);
}

#[test]
fn restart_policy_restarts_a_failing_detached_container_through_its_shim() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--restart", "on-failure:1", "--name", "flaky", "busybox:test", "sh", "-c", "echo attempt; exit 4"]);
    let attempts = || b.ok(&["logs", "flaky"]).matches("attempt").count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (attempts() < 2 || b.ok(&["ps", "-q"]).contains(&id.trim()[..12])) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(attempts(), 2, "one run and one restart");
    assert!(b.ok(&["ps", "-a"]).contains("Exited (4)"));
    let err = b.fails(&["run", "--restart", "always", "busybox:test", "true"]);
    assert!(err.contains("--restart") && err.contains("needs -d"), "{err}");
    let err = b.fails(&["run", "-d", "--rm", "--restart", "always", "busybox:test", "true"]);
    assert!(err.contains("conflicts with --rm"), "{err}");
    let err = b.fails(&["run", "-d", "--restart", "sometimes", "busybox:test", "true"]);
    assert!(err.contains("invalid restart policy \"sometimes\""), "{err}");
    b.ok(&["rm", "-f", "flaky"]);
    assert_no_leaks(&b);
}

#[test]
fn detached_tty_container_keeps_its_shell_through_restart_and_logs_its_prompt() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "-t", "busybox:test", "sh"]).trim().to_string();
    wait_for("the shell's prompt in the log", || b.ok(&["logs", &id]).contains("/ # "));
    assert!(b.ok(&["ps"]).contains("Up "), "a shell on a held terminal waits for input");
    b.ok(&["restart", "-t", "1", &id]);
    wait_for("the restarted shell", || b.ok(&["ps"]).contains("Up "));
    let ps = b.ok(&["ps"]);
    assert!(ps.contains(&id[..12]), "{ps}");
    b.ok(&["rm", "-f", &id]);
    assert_no_leaks(&b);
}
