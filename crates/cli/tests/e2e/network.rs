//! End-to-end tests: the bridge network, `-p`/`-P` published ports and their clean-up. Each
//! test runs builder inside a network namespace it creates, and sends traffic only to that
//! namespace's loopback, to its containers, and to a second namespace of its own.
#[allow(unused_imports)] use crate::util::*;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A network namespace of the test's own, deleted at the end.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!("bn-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        assert!(Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add").success(), "ip netns add {name}");
        let ns = Ns(name);
        ns.sh("ip link set lo up");
        ns
    }

    fn exec(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]);
        c.stdin(Stdio::null());
        c
    }

    /// A shell command in the namespace; asserts it succeeded; its stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.exec().args(["sh", "-c", script]).output().expect("sh");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `builder ARGS…` in the namespace.
    fn builder(&self, b: &Builder, args: &[&str]) -> Output {
        self.exec().arg(bin()).arg("--root").arg(b.root()).args(args).output().expect("builder")
    }

    fn ok(&self, b: &Builder, args: &[&str]) -> String {
        let out = self.builder(b, args);
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The page at `url`, fetched from the namespace with curl.
    fn fetch(&self, url: &str) -> Option<String> {
        let out = self.exec().args(["curl", "-s", "-m", "2", url]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn fetch_eventually(&self, url: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(page) = self.fetch(url) {
                return page;
            }
            assert!(Instant::now() < deadline, "{url} never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// No veth, no port rule, no address lease left.
    fn assert_clean(&self, b: &Builder) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let links = self.sh("ip -o link show | grep ' bv' || true");
            let rules = self.sh("nft list map ip builder ports 2>/dev/null | grep elements || true; nft list map ip builder ports_ip 2>/dev/null | grep elements || true");
            let leases: Vec<_> = std::fs::read_dir(b.root().join("networks/bridge/leases")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
            if links.trim().is_empty() && rules.trim().is_empty() && leases.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind:\nlinks: {links}\nrules: {rules}\nleases: {leases:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // A failed test may leave its builder processes: they go with the namespace.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

const HTTPD: &str = "mkdir -p /www && echo \"page of $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www";

fn host_port(ns: &Ns, b: &Builder, container: &str) -> String {
    let line = ns.ok(b, &["port", container, "80"]);
    line.trim().rsplit(':').next().expect("port").to_string()
}

#[test]
fn published_port_answers_on_localhost_and_a_taken_port_is_a_clear_error() {
    let b = with_busybox();
    let ns = Ns::new();
    let id = ns.ok(&b, &["run", "-d", "--name", "web", "-p", "0:80", "busybox:test", "sh", "-c", HTTPD]);
    let port = host_port(&ns, &b, "web");
    let page = ns.fetch_eventually(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(page, format!("page of {}\n", &id.trim()[..12]));
    let ps = ns.ok(&b, &["ps"]);
    assert!(ps.contains("PORTS") && ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    assert_eq!(ns.ok(&b, &["port", "web"]), format!("80/tcp -> 0.0.0.0:{port}\n"));

    // The same host port again: refused, naming it; the first container keeps answering.
    let out = ns.builder(&b, &["run", "--rm", "-p", &format!("{port}:80"), "busybox:test", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!(":{port} is already allocated")), "{err}");
    assert!(ns.fetch(&format!("http://127.0.0.1:{port}/")).is_some(), "the first container stopped answering");
    let rules = ns.sh("nft list map ip builder ports | grep elements");
    assert_eq!(rules.matches(" : ").count(), 1, "{rules}");

    ns.ok(&b, &["rm", "-f", "web"]);
    ns.assert_clean(&b);
    assert!(ns.fetch(&format!("http://127.0.0.1:{port}/")).is_none(), "answers after rm");
}

#[test]
fn foreground_container_publishes_until_it_ends_and_reaches_out_through_nat() {
    let b = with_busybox();
    let ns = Ns::new();
    // "Outside": a second namespace of the test's own, with no route back to the bridge's
    // subnet, so only masquerading makes an answer come back.
    let out_ns = Ns::new();
    ns.sh(&format!("ip link add bnout type veth peer name bnin netns {}", out_ns.0));
    ns.sh("ip addr add 10.251.0.1/24 dev bnout && ip link set bnout up");
    out_ns.sh("ip addr add 10.251.0.2/24 dev bnin && ip link set bnin up");
    let www = tempfile::tempdir().expect("tmp");
    std::fs::write(www.path().join("index.html"), "outside\n").expect("write");
    let mut server = out_ns.exec().args(["busybox", "httpd", "-f", "-p", "10.251.0.2:8000", "-h"]).arg(www.path()).spawn().expect("httpd");

    let mut fg = ns.exec().arg(bin()).arg("--root").arg(b.root()).args(["run", "--rm", "--init", "-p", "127.0.0.1:18080:80", "busybox:test", "sh", "-c"]).arg(format!("wget -q -O - http://10.251.0.2:8000/ > /tmp/out; {HTTPD}")).stdout(Stdio::piped()).spawn().expect("run");
    assert!(ns.fetch_eventually("http://127.0.0.1:18080/").starts_with("page of "));
    let ps = ns.ok(&b, &["ps", "-q"]);
    let outside = ns.ok(&b, &["exec", ps.trim(), "cat", "/tmp/out"]);
    assert_eq!(outside, "outside\n");
    // SIGTERM to the foreground builder ends the container, and its ports go with it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(fg.id() as i32), nix::sys::signal::Signal::SIGTERM).expect("kill");
    fg.wait().expect("wait");
    let _ = server.kill();
    let _ = server.wait();
    ns.assert_clean(&b);
}

#[test]
fn publish_all_uses_the_exposed_ports_and_kill_9_of_the_shim_leaves_nothing_that_blocks() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nEXPOSE 80\n")]);
    b.ok(&["build", "-q", "-t", "web:exposed", ctx.path().to_str().expect("utf8")]);
    let ns = Ns::new();
    ns.ok(&b, &["run", "-d", "--name", "a", "-P", "web:exposed", "sh", "-c", HTTPD]);
    let port = host_port(&ns, &b, "a");
    assert!(ns.fetch_eventually(&format!("http://127.0.0.1:{port}/")).starts_with("page of "));
    // kill -9 of the supervisor: the container dies with it, its rule and lease stay behind...
    let shim = ns.sh("ps -eo pid,args | grep '__shim' | grep -v grep | awk '{print $1}'");
    for pid in shim.split_whitespace() {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.contains(b.root().to_str().expect("utf8")) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().expect("pid")), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
        }
    }
    // ...and the next run on the same port clears them and works.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.fetch(&format!("http://127.0.0.1:{port}/")).is_some() {
        assert!(Instant::now() < deadline, "the container outlived its shim");
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.ok(&b, &["run", "-d", "--name", "b", "-p", &format!("{port}:80"), "busybox:test", "sh", "-c", HTTPD]);
    assert!(ns.fetch_eventually(&format!("http://127.0.0.1:{port}/")).starts_with("page of "));
    ns.ok(&b, &["rm", "-f", "a", "b"]);
    ns.assert_clean(&b);
}

#[test]
fn bad_publish_values_and_networks_are_errors_naming_them() {
    let b = with_busybox();
    for (value, want) in [("99999:80", "\"99999:80\": port 99999 is out of range"), ("abc", "\"abc\": \"abc\" is not a port number"), ("80/sctp", "\"80/sctp\": protocol")] {
        let err = b.fails(&["run", "--rm", "-p", value, "busybox:test", "true"]);
        assert!(err.contains(want), "{value}: {err}");
    }
    let err = b.fails(&["run", "--rm", "--network", "nosuch", "busybox:test", "true"]);
    assert!(err.contains("network nosuch not found"), "{err}");
    assert!(b.ok(&["ps", "-a", "-q"]).is_empty());
}
