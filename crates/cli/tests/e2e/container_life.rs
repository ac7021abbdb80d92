//! End-to-end tests: a container's life from the command line — `create`, `start -a/-i`,
//! `attach` and detaching, `run -it` through the shim, `wait`, `pause`/`unpause`, `update`,
//! `top`, `export`, `logs` with times, `--cidfile`, `--stop-signal`, `--stop-timeout`,
//! `--sig-proxy`. Terminals are real ptys (util-linux `script`).
#[allow(unused_imports)] use crate::util::*;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `builder ARGS` on a real pty (`script`), with its input and output in the test's hands.
struct OnPty {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

fn on_pty(b: &Builder, args: &[&str]) -> OnPty {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = vec![quote(bin().to_str().unwrap()), "--root".into(), quote(b.root().to_str().unwrap())];
    line.extend(args.iter().map(|a| quote(a)));
    let mut child = Command::new("script")
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (mut from, sink) = (child.stdout.take().unwrap(), output.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    OnPty { child, output }
}

impl OnPty {
    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace("\r\n", "\n")
    }
    fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.text().contains(text) {
            assert!(Instant::now() < deadline, "timed out waiting for {text:?} on the terminal; it shows:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Waits for the command to end: its exit code and everything it showed.
    fn finish(mut self) -> (i32, String) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the command on the pty did not end; it shows:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.code().unwrap_or(-1), self.text())
    }
}

fn ps_line(b: &Builder, name: &str) -> String {
    b.ok(&["ps", "-a"]).lines().find(|l| l.ends_with(name)).map(String::from).unwrap_or_default()
}

/// The container's record, as builder keeps it (cgroups, pid).
fn record(b: &Builder, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(b.root().join("containers").join(id).join("state.json")).unwrap()).unwrap()
}

/// The CPU time (user + system ticks) of host process `pid`.
fn cpu_ticks(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn create_records_a_container_that_start_attached_runs_to_its_exit_code() {
    let b = with_busybox();
    let id = b.ok(&["create", "--name", "job", "busybox:test", "sh", "-c", "echo out; echo err >&2; exit 3"]).trim().to_string();
    assert_eq!(id.len(), 64, "create prints the full id: {id}");
    assert!(ps_line(&b, "job").contains("Created"), "{}", b.ok(&["ps", "-a"]));
    assert!(!b.ok(&["ps"]).contains("job"), "a created container is not running");
    let out = b.run(&["start", "-a", "job"]);
    assert_eq!(out.status.code(), Some(3), "start -a returns the container's exit code");
    assert_eq_text("out\n", &String::from_utf8_lossy(&out.stdout));
    assert_eq_text("err\n", &String::from_utf8_lossy(&out.stderr));
    assert!(ps_line(&b, "job").contains("Exited (3)"), "{}", ps_line(&b, "job"));
    // `container create` and a plain `start` (in the background) too.
    b.ok(&["container", "create", "--name", "bg", "busybox:test", "true"]);
    assert_eq_text("bg\n", &b.ok(&["start", "bg"]));
    assert_eq_text("0\n", &b.ok(&["wait", "bg"]));
    let err = b.fails(&["create", "--stop-signal", "NOPE", "busybox:test", "true"]);
    assert!(err.contains("invalid --stop-signal \"NOPE\""), "{err}");
}

#[test]
fn start_ai_passes_the_terminal_input_to_a_created_container() {
    let b = with_busybox();
    b.ok(&["create", "-i", "--name", "reader", "busybox:test", "sh", "-c", "read line; echo got:$line; exit 4"]);
    let mut pty = on_pty(&b, &["start", "-ai", "reader"]);
    pty.send(b"hello\n");
    let (code, text) = pty.finish();
    assert!(text.contains("got:hello"), "{text}");
    assert_eq!(code, 4, "{text}");

    b.ok(&["create", "-it", "--name", "shell", "busybox:test", "sh"]);
    let mut pty = on_pty(&b, &["start", "-ai", "shell"]);
    pty.wait_for_text("/ # ");
    pty.send(b"echo $((6*7)); tty\n");
    pty.wait_for_text("42");
    pty.send(b"exit 5\n");
    let (code, text) = pty.finish();
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("/dev/pts/"), "the container has a terminal: {text}");
}

#[test]
fn attach_reaches_a_detached_shell_and_ctrl_p_ctrl_q_leaves_it_running() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "-it", "--name", "box", "busybox:test", "sh"]).trim().to_string();
    let mut pty = on_pty(&b, &["attach", "box"]);
    pty.send(b"echo attached-$((1+1))\n");
    pty.wait_for_text("attached-2");
    pty.send(b"\x10\x11");
    let (code, text) = pty.finish();
    assert_eq!(code, 1, "detaching ends attach with 1, as Docker's: {text}");
    assert!(text.contains("read escape sequence"), "{text}");
    assert!(ps_line(&b, "box").contains("Up "), "the container keeps running: {}", ps_line(&b, "box"));

    // Other keys with --detach-keys; the shell still has what the first session typed.
    let mut pty = on_pty(&b, &["attach", "--detach-keys", "ctrl-a,x", &id[..12]]);
    pty.send(b"echo second\n");
    pty.wait_for_text("second");
    pty.send(b"\x01x");
    assert_eq!(pty.finish().0, 1);
    assert!(ps_line(&b, "box").contains("Up "));

    // The session that types `exit` ends with the container's code.
    let mut pty = on_pty(&b, &["attach", "box"]);
    pty.send(b"exit 6\n");
    let (code, text) = pty.finish();
    assert_eq!(code, 6, "{text}");
    assert!(ps_line(&b, "box").contains("Exited (6)"), "{}", ps_line(&b, "box"));
    assert!(b.ok(&["logs", "box"]).contains("attached-2"), "what the terminal showed is in the log");
    let err = b.fails(&["attach", "box"]);
    assert!(err.contains("container box is not running"), "{err}");
}

#[test]
fn run_it_runs_under_the_shim_so_it_can_be_detached_and_attached_again() {
    let b = with_busybox();
    let mut pty = on_pty(&b, &["run", "-it", "--name", "live", "busybox:test", "sh"]);
    pty.send(b"echo first-$((2+3))\n");
    pty.wait_for_text("first-5");
    pty.send(b"\x10\x11");
    let (code, text) = pty.finish();
    assert_eq!(code, 0, "{text}");
    assert!(ps_line(&b, "live").contains("Up "), "detached from run -it, the container runs on");
    let mut pty = on_pty(&b, &["attach", "live"]);
    pty.send(b"exit 7\n");
    assert_eq!(pty.finish().0, 7);

    // `run -it --rm` is removed when it exits.
    let mut pty = on_pty(&b, &["run", "-it", "--rm", "--name", "gone", "busybox:test", "sh", "-c", "exit 2"]);
    pty.send(b"");
    assert_eq!(pty.finish().0, 2);
    wait_for("the --rm container to be removed", || !b.ok(&["ps", "-a"]).contains("gone"));
}

#[test]
fn attach_without_a_terminal_streams_output_and_proxies_signals() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "ticker", "busybox:test", "sh", "-c", "trap 'echo term; exit 8' TERM; i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.2; done"]);
    let mut attach = b.cmd().args(["attach", "--no-stdin", "ticker"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = attach.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "attach ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    // SIGTERM to attach goes on to the container (--sig-proxy is on by default).
    Command::new("kill").args(["-TERM", &attach.id().to_string()]).status().unwrap();
    let status = attach.wait().unwrap();
    out.read_to_end(&mut seen).unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("term"), "{}", String::from_utf8_lossy(&seen));
    assert_eq!(status.code(), Some(8));
    assert!(ps_line(&b, "ticker").contains("Exited (8)"));
}

#[test]
fn attach_reaches_a_foreground_container_run_without_a_terminal() {
    let b = with_busybox();
    // `run` without -d or -t: this CLI supervises the container itself, and prints its output.
    let mut fg = b.cmd().args(["run", "--name", "fore", "busybox:test", "sh", "-c", "trap 'echo term; exit 9' TERM; i=0; while :; do echo tick$i; echo warn$i >&2; i=$((i+1)); sleep 0.2; done"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the container to run", || ps_line(&b, "fore").contains("Up "));
    // A second terminal attaches, as Docker lets it: both streams reach it.
    let mut attach = b.cmd().args(["attach", "fore"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = attach.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "attach ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // Its SIGTERM goes on to the container; both CLIs then end with the container's code.
    Command::new("kill").args(["-TERM", &attach.id().to_string()]).status().unwrap();
    let status = attach.wait().unwrap();
    out.read_to_end(&mut seen).unwrap();
    let mut err = String::new();
    attach.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("term"), "{seen}");
    assert!(err.contains("warn"), "stderr reaches the attached client's stderr: {err:?}");
    assert_eq!(status.code(), Some(9));
    let fg_status = fg.wait().unwrap();
    let mut fg_out = String::new();
    fg.stdout.take().unwrap().read_to_string(&mut fg_out).unwrap();
    assert_eq!(fg_status.code(), Some(9));
    assert!(fg_out.starts_with("tick0\n") && fg_out.ends_with("term\n"), "the running CLI keeps all its output: {fg_out}");
    assert!(ps_line(&b, "fore").contains("Exited (9)"), "{}", ps_line(&b, "fore"));
}

#[test]
fn start_attached_refuses_several_containers_as_docker_does() {
    let b = with_busybox();
    b.ok(&["create", "--name", "one", "busybox:test", "true"]);
    b.ok(&["create", "--name", "two", "busybox:test", "true"]);
    for flag in ["-a", "-i", "-ai"] {
        let out = b.run(&["start", flag, "one", "two"]);
        assert_eq!(out.status.code(), Some(1), "start {flag}");
        assert_eq_text("error: you cannot start and attach multiple containers at once\n", &String::from_utf8_lossy(&out.stderr));
        assert_eq_text("", &String::from_utf8_lossy(&out.stdout));
    }
    // Neither was started.
    assert!(ps_line(&b, "one").contains("Created") && ps_line(&b, "two").contains("Created"), "{}", b.ok(&["ps", "-a"]));
}

#[test]
fn sig_proxy_false_leaves_the_container_running_when_the_cli_is_killed() {
    let b = with_busybox();
    let mut child = b.cmd().args(["run", "--sig-proxy=false", "--name", "keeps", "busybox:test", "sleep", "1000"]).stdout(Stdio::null()).spawn().unwrap();
    wait_for("the container to run", || ps_line(&b, "keeps").contains("Up "));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    assert!(ps_line(&b, "keeps").contains("Up "), "without a proxy the signal stays with the CLI: {}", ps_line(&b, "keeps"));
    b.ok(&["rm", "-f", "keeps"]);
}

#[test]
fn wait_prints_the_exit_code_of_each_container() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "ok", "busybox:test", "sh", "-c", "sleep 0.3"]);
    b.ok(&["run", "-d", "--name", "bad", "busybox:test", "sh", "-c", "sleep 0.5; exit 3"]);
    assert_eq_text("0\n3\n", &b.ok(&["wait", "ok", "bad"]));
    let out = b.run(&["wait", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container: nosuch"));
}

#[test]
fn pause_freezes_a_busy_loop_until_unpause() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--name", "spin", "busybox:test", "sh", "-c", "while :; do :; done"]).trim().to_string();
    let pid = record(&b, &id)["pid"].as_i64().unwrap();
    b.ok(&["pause", "spin"]);
    assert!(ps_line(&b, "spin").contains("(Paused)"), "{}", ps_line(&b, "spin"));
    let freezer: Vec<String> = record(&b, &id)["cgroup_dirs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).filter(|d| std::path::Path::new(d).join("freezer.state").exists()).collect();
    assert_eq!(std::fs::read_to_string(format!("{}/freezer.state", freezer[0])).unwrap().trim(), "FROZEN");
    let frozen = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cpu_ticks(pid), frozen, "a paused loop gets no CPU time");
    let err = b.fails(&["pause", "spin"]);
    assert!(err.contains("already paused"), "{err}");
    b.ok(&["unpause", "spin"]);
    wait_for("the loop to run again", || cpu_ticks(pid) > frozen);
    assert!(!ps_line(&b, "spin").contains("Paused"));
    // stop reaches a paused container too.
    b.ok(&["pause", "spin"]);
    b.ok(&["stop", "-t", "1", "spin"]);
    assert!(ps_line(&b, "spin").contains("Exited"), "{}", ps_line(&b, "spin"));
}

#[test]
fn update_sets_new_limits_in_the_running_container_cgroups() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--name", "lim", "busybox:test", "sleep", "1000"]).trim().to_string();
    let dirs_of = || -> Vec<std::path::PathBuf> { record(&b, &id)["cgroup_dirs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().into()).collect() };
    // Started without limits, it has (on this v1 host) only the cgroups pause and the device
    // rules need: a start makes no memory, pids or cpu cgroup.
    let before = dirs_of();
    assert!(before.iter().any(|d| d.join("freezer.state").exists()), "{before:?}");
    assert!(!before.iter().any(|d| d.join("memory.limit_in_bytes").exists() || d.join("pids.max").exists() || d.join("cpu.cfs_quota_us").exists()), "{before:?}");
    assert_eq_text("lim\n", &b.ok(&["update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20", "lim"]));
    let dirs = dirs_of();
    let read = |f: &str| dirs.iter().find_map(|d| std::fs::read_to_string(d.join(f)).ok()).map(|s| s.trim().to_string());
    assert_eq!(read("memory.limit_in_bytes").or_else(|| read("memory.max")).as_deref(), Some("67108864"));
    assert_eq!(read("pids.max").as_deref(), Some("20"));
    let cpu = read("cpu.cfs_quota_us").or_else(|| read("cpu.max")).unwrap();
    assert!(cpu == "50000" || cpu == "50000 100000", "{cpu}");
    // The limit holds inside: the 21st process cannot start.
    let out = b.run(&["exec", "lim", "sh", "-c", "for i in $(seq 1 30); do sleep 100 >/dev/null 2>&1 & done; echo done"]);
    let both = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(both.contains("can't fork"), "{both}");
    let err = b.fails(&["update", "--memory", "lots", "lim"]);
    assert!(err.contains("invalid --memory \"lots\""), "{err}");
    // A second update reuses the cgroups the first one made.
    b.ok(&["update", "--memory", "32m", "lim"]);
    assert_eq!(dirs_of(), dirs);
    assert_eq!(read("memory.limit_in_bytes").or_else(|| read("memory.max")).as_deref(), Some("33554432"));
    b.ok(&["rm", "-f", "lim"]);
    wait_for("the container's cgroups to be removed", || dirs.iter().all(|d| !d.exists()));
    let err = b.fails(&["update", "--cpus", "1", "lim"]);
    assert!(err.contains("no such container: lim"), "{err}");
}

#[test]
fn top_lists_only_the_container_processes_in_docker_columns() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "procs", "busybox:test", "sh", "-c", "sleep 1001 & sleep 1002; echo done"]);
    wait_for("both sleeps", || b.ok(&["top", "procs"]).contains("sleep 1002") && b.ok(&["top", "procs"]).contains("sleep 1001"));
    let top = b.ok(&["top", "procs"]);
    let lines: Vec<&str> = top.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "{top}");
    assert!(lines[0].starts_with("UID                 PID                 "), "Docker's 20-wide columns: {top}");
    assert_eq!(lines.len(), 4, "sh and two sleeps, nothing of the host: {top}");
    let top = b.ok(&["top", "procs", "-o", "pid,comm"]);
    assert_eq!(top.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(), ["PID", "COMMAND"], "{top}");
    assert!(top.contains("sleep"));
    let err = b.fails(&["top", "procs", "-o", "comm"]);
    assert!(err.contains("no PID column"), "{err}");
    b.ok(&["rm", "-f", "procs"]);
}

#[test]
fn export_writes_the_container_filesystem_with_its_changes() {
    let b = with_busybox();
    b.ok(&["run", "--name", "ex", "busybox:test", "sh", "-c", "echo data > /new.txt; rm /etc/group"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ex.tar");
    b.ok(&["export", "-o", file.to_str().unwrap(), "ex"]);
    let mut entries = std::collections::BTreeMap::new();
    for e in tar::Archive::new(std::fs::File::open(&file).unwrap()).entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let mut body = String::new();
        if e.header().entry_type().is_file() {
            e.read_to_string(&mut body).unwrap_or_default();
        }
        entries.insert(path, body);
    }
    assert_eq!(entries.get("new.txt").map(String::as_str), Some("data\n"));
    assert!(entries.contains_key("bin/busybox") && entries.contains_key("etc/passwd"), "{:?}", entries.keys().take(5).collect::<Vec<_>>());
    assert!(!entries.contains_key("etc/group"), "a deleted file is not exported");
    assert!(!entries.keys().any(|k| k.contains(".wh.")), "no whiteouts in an export");
    // Exactly the image's entries, the change, and Docker's init layer (daemon/initlayer):
    // empty mount points, files of mode 0755, /etc/mtab a link to /proc/mounts.
    let image_tar = busybox_rootfs_tar(dir.path());
    let mut expected: std::collections::BTreeSet<String> = tar::Archive::new(std::fs::File::open(&image_tar).unwrap()).entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_string()).collect();
    expected.remove("etc/group");
    let init = [".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf", "proc", "sys"];
    expected.extend(init.iter().map(|s| s.to_string()));
    expected.insert("new.txt".into());
    let listed: std::collections::BTreeSet<String> = entries.keys().filter(|k| !k.is_empty() && *k != ".").cloned().collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not expected {extra:?}");
    for e in tar::Archive::new(std::fs::File::open(&file).unwrap()).entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let h = e.header();
        match path.as_str() {
            ".dockerenv" | "dev/console" | "etc/hostname" | "etc/hosts" | "etc/resolv.conf" => {
                assert!(h.entry_type().is_file() && h.size().unwrap() == 0 && h.mode().unwrap() & 0o7777 == 0o755, "{path}: {h:?}");
            }
            "dev/pts" | "dev/shm" => assert!(h.entry_type().is_dir() && h.mode().unwrap() & 0o7777 == 0o755, "{path}: {h:?}"),
            "etc/mtab" => {
                assert!(h.entry_type().is_symlink(), "{path}: {h:?}");
                assert_eq!(e.link_name().unwrap().unwrap().to_string_lossy(), "/proc/mounts");
            }
            _ => {}
        }
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{path}");
    }
    // To stdout, the same archive; a running container exports too.
    let out = b.run(&["container", "export", "ex"]);
    assert_eq!(out.stdout, std::fs::read(&file).unwrap());
    b.ok(&["run", "-d", "--name", "running", "busybox:test", "sh", "-c", "echo live > /live.txt; sleep 1000"]);
    wait_for("the file to be written", || b.ok(&["diff", "running"]).contains("/live.txt"));
    let out = b.run(&["export", "running"]);
    let names: Vec<String> = tar::Archive::new(&out.stdout[..]).entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n == "live.txt"), "{names:?}");
    b.ok(&["rm", "-f", "running"]);
}

#[test]
fn logs_keep_foreground_output_with_streams_times_and_filters() {
    let b = with_busybox();
    let out = b.run(&["run", "--name", "fg", "busybox:test", "sh", "-c", "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three"]);
    assert_eq_text("one\nthree\n", &String::from_utf8_lossy(&out.stdout));
    let logs = b.run(&["logs", "fg"]);
    assert_eq_text("one\nthree\n", &String::from_utf8_lossy(&logs.stdout));
    assert_eq_text("two\n", &String::from_utf8_lossy(&logs.stderr));
    let stamped = b.run(&["logs", "-t", "fg"]);
    let stamped = String::from_utf8_lossy(&stamped.stdout).into_owned();
    let times: Vec<&str> = stamped.lines().map(|l| l.split_once(' ').unwrap().0).collect();
    for t in &times {
        assert!(t.len() == 30 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "RFC 3339 with nanoseconds: {stamped}");
    }
    assert_eq!(stamped.lines().map(|l| l.split_once(' ').unwrap().1).collect::<Vec<_>>(), ["one", "three"]);
    // --since the second line's time shows it on; --until it, what came before.
    assert_eq_text("three\n", &b.ok(&["logs", "--since", times[1], "fg"]));
    assert_eq_text("one\n", &b.ok(&["logs", "--until", times[1], "fg"]));
    assert_eq_text("", &b.ok(&["logs", "--since", "2999-01-01", "fg"]));
    assert_eq_text("one\nthree\n", &b.ok(&["logs", "--since", "1h", "fg"]));
    assert_eq_text(" one\n three\n", &b.ok(&["logs", "--details", "fg"]));
    assert_eq_text("three\n", &b.ok(&["logs", "-n", "1", "fg"]));
    let err = b.fails(&["logs", "--since", "yesterday", "fg"]);
    assert!(err.contains("invalid --since \"yesterday\""), "{err}");
    // -f of a detached container follows until it stops.
    b.ok(&["run", "-d", "--name", "bg", "busybox:test", "sh", "-c", "echo a; sleep 0.5; echo b"]);
    assert_eq_text("a\nb\n", &b.ok(&["logs", "-f", "bg"]));
}

#[test]
fn logs_details_show_the_label_and_env_attributes_kept_in_each_record() {
    let b = with_busybox();
    let opts = ["--log-opt", "labels=app,absent", "--log-opt", "labels-regex=^com\\.", "--log-opt", "env=REGION", "--log-opt", "env-regex=^MY_"];
    let mut args = vec!["run", "--name", "att", "--label", "app=web", "--label", "com.example.tier=front end", "--label", "other=no", "-e", "REGION=eu/1", "-e", "MY_ID=7"];
    args.extend(opts);
    args.extend(["busybox:test", "sh", "-c", "echo hi; echo oops >&2"]);
    b.ok(&args);
    // Sorted by key and escaped as Docker prints them, then a space and the line.
    let attrs = "MY_ID=7,REGION=eu%2F1,app=web,com.example.tier=front+end";
    let out = b.run(&["logs", "--details", "att"]);
    assert_eq_text(&format!("{attrs} hi\n"), &String::from_utf8_lossy(&out.stdout));
    assert_eq_text(&format!("{attrs} oops\n"), &String::from_utf8_lossy(&out.stderr));
    // The time comes first.
    let stamped = b.ok(&["logs", "-t", "--details", "att"]);
    let (time, rest) = stamped.split_once(' ').unwrap();
    assert!(time.ends_with('Z'), "{stamped}");
    assert_eq_text(&format!("{attrs} hi\n"), rest);
    assert_eq_text("hi\n", &b.ok(&["logs", "att"]));
    // Kept in each json-file record's `attrs`, as Docker's json-file keeps them.
    let id = b.ok(&["inspect", "-f", "{{.Id}}", "att"]).trim().to_string();
    let log = std::fs::read_to_string(b.root().join("containers").join(&id).join("container.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["attrs"], serde_json::json!({"MY_ID": "7", "REGION": "eu/1", "app": "web", "com.example.tier": "front end"}), "{log}");
    let config = b.ok(&["inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "att"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&config).unwrap()["labels"], "app,absent");
    // Without attributes asked for, --details shows just the space, as Docker does.
    b.ok(&["run", "--name", "plain", "busybox:test", "echo", "x"]);
    assert_eq_text(" x\n", &b.ok(&["logs", "--details", "plain"]));
    let err = b.fails(&["run", "--log-opt", "env-regex=(", "busybox:test", "true"]);
    assert!(err.contains("invalid --log-opt \"env-regex=(\": not a regular expression"), "{err}");
    let err = b.fails(&["run", "--log-opt", "colour=red", "busybox:test", "true"]);
    assert!(err.contains("unknown option \"colour\" of the json-file log"), "{err}");
}

#[test]
fn cidfile_stop_signal_and_stop_timeout_are_kept_with_the_container() {
    let b = with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let cidfile = dir.path().join("cid");
    let script = "trap 'echo got-usr1; exit 9' USR1; while :; do sleep 0.1; done";
    let id = b.ok(&["run", "-d", "--cidfile", cidfile.to_str().unwrap(), "--stop-signal", "SIGUSR1", "--name", "sig", "busybox:test", "sh", "-c", script]).trim().to_string();
    assert_eq!(std::fs::read_to_string(&cidfile).unwrap(), id);
    let err = b.fails(&["run", "--cidfile", cidfile.to_str().unwrap(), "busybox:test", "true"]);
    assert!(err.contains("container ID file found"), "{err}");
    b.ok(&["stop", "sig"]);
    assert!(ps_line(&b, "sig").contains("Exited (9)"), "stop sent SIGUSR1: {}", ps_line(&b, "sig"));
    assert!(b.ok(&["logs", "sig"]).contains("got-usr1"));

    // A container that ignores its stop signal is killed after its --stop-timeout.
    b.ok(&["run", "-d", "--stop-timeout", "1", "--name", "stubborn", "busybox:test", "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]);
    b.ok(&["stop", "stubborn"]);
    assert!(ps_line(&b, "stubborn").contains("Exited (137)"), "{}", ps_line(&b, "stubborn"));

    // The image's STOPSIGNAL is the default.
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nSTOPSIGNAL SIGUSR2\nCMD [\"sh\", \"-c\", \"trap 'exit 12' USR2; while :; do sleep 0.1; done\"]\n")]);
    b.ok(&["build", "-q", "-t", "usr2:1", ctx.path().to_str().unwrap()]);
    b.ok(&["run", "-d", "--name", "img", "usr2:1"]);
    b.ok(&["stop", "img"]);
    assert!(ps_line(&b, "img").contains("Exited (12)"), "{}", ps_line(&b, "img"));
}
