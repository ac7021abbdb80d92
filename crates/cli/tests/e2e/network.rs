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

    /// No veth, no port rule, no address lease, no attachment record left.
    fn assert_clean(&self, b: &Builder) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ino = self.sh("stat -L -c %i /proc/self/ns/net");
        let bridge_leases = format!("/run/builder/netns-{}/bridge/leases", ino.trim());
        loop {
            let links = self.sh("ip -o link show | grep ' bv' || true");
            let rules = self.sh("nft list map ip builder ports 2>/dev/null | grep elements || true; nft list map ip builder ports_ip 2>/dev/null | grep elements || true");
            let mut leases: Vec<_> = std::fs::read_dir(&bridge_leases).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
            for net in std::fs::read_dir(b.root().join("networks")).into_iter().flatten().flatten() {
                leases.extend(std::fs::read_dir(net.path().join("leases")).into_iter().flatten().flatten().map(|e| e.file_name()));
            }
            let records: Vec<_> = std::fs::read_dir(b.root().join("networks/attachments")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
            if links.trim().is_empty() && rules.trim().is_empty() && leases.is_empty() && records.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind:\nlinks: {links}\nrules: {rules}\nleases: {leases:?}\nrecords: {records:?}");
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
    // The container reaches its own published port at the gateway (hairpin NAT), with or
    // without br_netfilter loaded on the machine.
    let own = ns.ok(&b, &["exec", "web", "timeout", "5", "wget", "-q", "-O", "-", &format!("http://172.30.0.1:{port}/")]);
    assert_eq!(own, format!("page of {}\n", &id.trim()[..12]));

    // The same host port again: refused, naming it; the first container keeps answering.
    let out = ns.builder(&b, &["run", "--rm", "-p", &format!("{port}:80"), "busybox:test", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!(":{port} is already allocated")), "{err}");
    assert!(ns.fetch(&format!("http://127.0.0.1:{port}/")).is_some(), "the first container stopped answering");
    let rules = ns.sh("nft list map ip builder ports | grep elements");
    assert_eq!(rules.matches(" : ").count(), 1, "{rules}");

    // A range of host ports for one container port: the first free one, as Docker picks it;
    // a range with none free is named.
    let next: u16 = port.parse::<u16>().expect("port") + 1;
    let range = format!("{port}-{next}:80");
    ns.ok(&b, &["run", "-d", "--name", "web2", "-p", &range, "busybox:test", "sh", "-c", HTTPD]);
    assert_eq!(ns.ok(&b, &["port", "web2"]), format!("80/tcp -> 0.0.0.0:{next}\n"));
    let inspect: serde_json::Value = serde_json::from_str(&ns.ok(&b, &["inspect", "web2"])).expect("json");
    assert_eq!(inspect[0]["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], format!("{port}-{next}"));
    ns.fetch_eventually(&format!("http://127.0.0.1:{next}/"));
    let out = ns.builder(&b, &["run", "--rm", "-p", &range, "busybox:test", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("no free port in tcp 0.0.0.0:{port}-{next}")), "{err}");
    ns.ok(&b, &["rm", "-f", "web2"]);

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
    ns.ok(&b, &["run", "-d", "--name", "web-a", "-P", "web:exposed", "sh", "-c", HTTPD]);
    let port = host_port(&ns, &b, "web-a");
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
    ns.ok(&b, &["run", "-d", "--name", "web-b", "-p", &format!("{port}:80"), "busybox:test", "sh", "-c", HTTPD]);
    assert!(ns.fetch_eventually(&format!("http://127.0.0.1:{port}/")).starts_with("page of "));
    // --expose adds to the image's ports: shown by inspect, published by -P with them.
    ns.ok(&b, &["run", "-d", "--name", "web-c", "--expose", "7000-7001", "--expose", "53/udp", "web:exposed", "sleep", "60"]);
    let ports = ns.ok(&b, &["inspect", "-f", "{{json .Config.ExposedPorts}} {{json .NetworkSettings.Ports}}", "web-c"]);
    assert_eq!(ports.trim(), r#"{"53/udp":{},"7000/tcp":{},"7001/tcp":{},"80/tcp":{}} {"53/udp":null,"7000/tcp":null,"7001/tcp":null,"80/tcp":null}"#);
    ns.ok(&b, &["run", "-d", "--name", "web-d", "-P", "--expose", "7000", "web:exposed", "sleep", "60"]);
    let published = ns.ok(&b, &["port", "web-d"]);
    assert!(published.contains("7000/tcp -> 0.0.0.0:") && published.contains("80/tcp -> 0.0.0.0:"), "{published}");
    let out = ns.builder(&b, &["run", "--rm", "--expose", "70000", "busybox:test", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--expose") && err.contains("70000"), "{err}");
    ns.ok(&b, &["rm", "-f", "web-a", "web-b", "web-c", "web-d"]);
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

impl Ns {
    /// A namespace whose processes see `resolv` as /etc/resolv.conf (`ip netns exec` binds
    /// /etc/netns/NAME/resolv.conf over it), as a host with those name servers would.
    fn with_resolv_conf(resolv: &str) -> Ns {
        let ns = Ns::new();
        let dir = std::path::Path::new("/etc/netns").join(&ns.0);
        std::fs::create_dir_all(&dir).expect("mkdir /etc/netns/NAME");
        std::fs::write(dir.join("resolv.conf"), resolv).expect("write resolv.conf");
        ns
    }

    /// Runs `sh -c script` in container `name`; its stdout, and whether it succeeded.
    fn in_container(&self, b: &Builder, name: &str, script: &str) -> (bool, String) {
        let out = self.builder(b, &["exec", name, "sh", "-c", script]);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    }

    /// The address `name` resolves to from container `from`, if it resolves.
    fn resolve_from(&self, b: &Builder, from: &str, name: &str) -> Option<String> {
        let (ok, out) = self.in_container(b, from, &format!("nslookup {name}"));
        // The server's own address comes first; the answer is the last "Address:" line.
        let answer = out.split("Name:").nth(1)?;
        ok.then(|| answer.lines().find_map(|l| l.strip_prefix("Address:").map(|a| a.trim().to_string()))).flatten()
    }
}

/// Removes the namespace's /etc/netns files.
fn removes_etc_netns(ns: &Ns) {
    let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&ns.0));
}

#[test]
fn user_network_names_and_aliases_resolve_both_ways_and_stop_when_removed() {
    let b = with_busybox();
    let ns = Ns::new();
    let id = ns.ok(&b, &["network", "create", "app"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    ns.ok(&b, &["run", "-d", "--name", "ann", "--network", "app", "--network-alias", "alpha", "busybox:test", "sh", "-c", HTTPD]);
    let b_id = ns.ok(&b, &["run", "-d", "--name", "bob", "--network", "app", "--network-alias", "beta", "busybox:test", "sh", "-c", HTTPD]);
    let b_host = &b_id.trim()[..12];
    // ann was started first and finds bob, started later, by name and by alias; and the reverse.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (from, target) in [("ann", "bob"), ("ann", "beta"), ("bob", "ann"), ("bob", "alpha")] {
        loop {
            let (ok, page) = ns.in_container(&b, from, &format!("wget -q -O - http://{target}/"));
            if ok {
                let want = if target.starts_with('b') { format!("page of {b_host}\n") } else { "page of ".to_string() };
                assert!(page.starts_with(&want), "{from} -> {target}: {page}");
                break;
            }
            assert!(Instant::now() < deadline, "{from} never reached {target}: {page}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (_, resolv) = ns.in_container(&b, "ann", "cat /etc/resolv.conf");
    assert!(resolv.starts_with("nameserver 127.0.0.11\n") && resolv.contains("ndots:0"), "{resolv}");
    // Not from the default bridge: it has no name service for containers.
    ns.ok(&b, &["run", "-d", "--name", "outsider", "busybox:test", "sleep", "600"]);
    assert_eq!(ns.resolve_from(&b, "outsider", "ann"), None);
    assert_eq!(ns.resolve_from(&b, "outsider", "alpha"), None);

    let inspect: serde_json::Value = serde_json::from_str(&ns.ok(&b, &["network", "inspect", "app"])).expect("json");
    let members: Vec<&str> = inspect[0]["Containers"].as_object().expect("containers").values().map(|c| c["Name"].as_str().expect("name")).collect();
    assert_eq!(members.len(), 2, "{members:?}");
    let err = String::from_utf8_lossy(&ns.builder(&b, &["network", "rm", "app"]).stderr).into_owned();
    assert!(err.contains("network app has active endpoints"), "{err}");

    // After rm -f, the name no longer resolves.
    let b_ip = ns.resolve_from(&b, "ann", "bob").expect("bob resolves");
    assert!(b_ip.starts_with("172.18."), "{b_ip}");
    ns.ok(&b, &["rm", "-f", "bob"]);
    assert_eq!(ns.resolve_from(&b, "ann", "bob"), None);
    assert_eq!(ns.resolve_from(&b, "ann", "beta"), None);
    ns.ok(&b, &["rm", "-f", "ann", "outsider"]);
    assert_eq!(ns.ok(&b, &["network", "rm", "app"]), "app\n");
    assert!(ns.sh("ip -o link show").lines().all(|l| !l.contains("builder") || l.contains("builder0")), "the bridge of app is left");
    ns.assert_clean(&b);
}

#[test]
fn connect_and_disconnect_a_running_container_with_an_alias() {
    let b = with_busybox();
    let ns = Ns::new();
    ns.ok(&b, &["network", "create", "--subnet", "10.77.0.0/24", "back"]);
    ns.ok(&b, &["run", "-d", "--name", "db", "--network", "back", "busybox:test", "sh", "-c", HTTPD]);
    // Started on the default bridge, then connected: it gets an address on back.
    ns.ok(&b, &["run", "-d", "--name", "web", "busybox:test", "sleep", "600"]);
    ns.ok(&b, &["network", "connect", "--alias", "frontend", "back", "web"]);
    let (_, addrs) = ns.in_container(&b, "web", "ip -o -4 addr show");
    assert!(addrs.contains("eth0") && addrs.contains("eth1") && addrs.contains("10.77.0."), "{addrs}");
    let db_ip = ns.resolve_from(&b, "db", "frontend").expect("the alias resolves from db");
    assert!(db_ip.starts_with("10.77.0."), "{db_ip}");
    // web, started without a name server for containers, finds db's name now, without a restart.
    let (_, resolv) = ns.in_container(&b, "web", "cat /etc/resolv.conf");
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    assert!(ns.resolve_from(&b, "web", "db").is_some_and(|ip| ip.starts_with("10.77.0.")));
    ns.reaches_eventually(&b, "web", "http://db/");
    let err = String::from_utf8_lossy(&ns.builder(&b, &["network", "connect", "back", "web"]).stderr).into_owned();
    assert!(err.contains("already connected to network back"), "{err}");
    ns.ok(&b, &["network", "disconnect", "back", "web"]);
    let (_, addrs) = ns.in_container(&b, "web", "ip -o -4 addr show");
    assert!(!addrs.contains("10.77.0."), "{addrs}");
    assert_eq!(ns.resolve_from(&b, "db", "frontend"), None);
    assert_eq!(ns.resolve_from(&b, "web", "db"), None);
    ns.ok(&b, &["rm", "-f", "db", "web"]);
    ns.ok(&b, &["network", "rm", "back"]);
    ns.assert_clean(&b);
}

#[test]
fn network_ls_filters_formats_prune_and_bad_values_are_named() {
    let b = with_busybox();
    let ns = Ns::new();
    ns.ok(&b, &["network", "create", "--label", "team=red", "red"]);
    ns.ok(&b, &["network", "create", "--subnet", "10.78.0.0/16", "--gateway", "10.78.0.254", "--internal", "blue"]);
    let ls = ns.ok(&b, &["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID     NAME      DRIVER    SCOPE\n"), "{ls}");
    for name in ["bridge", "host", "none", "red", "blue"] {
        assert!(ls.lines().any(|l| l.split_whitespace().nth(1) == Some(name)), "{name}: {ls}");
    }
    assert_eq!(ns.ok(&b, &["network", "ls", "--filter", "label=team=red", "--format", "{{.Name}}"]), "red\n");
    assert_eq!(ns.ok(&b, &["network", "ls", "--filter", "type=custom", "--format", "{{.Name}} {{.Internal}}"]), "blue true\nred false\n");
    assert_eq!(ns.ok(&b, &["network", "ls", "-q", "--filter", "name=blu"]).trim().len(), 12);
    let blue: serde_json::Value = serde_json::from_str(&ns.ok(&b, &["network", "inspect", "blue"])).expect("json");
    assert_eq!(blue[0]["IPAM"]["Config"][0], serde_json::json!({"Subnet": "10.78.0.0/16", "Gateway": "10.78.0.254"}));
    assert_eq!(blue[0]["Internal"], true);

    for (args, want) in [
        (vec!["network", "create", "--subnet", "10.78.5.0/24", "clash"], "invalid --subnet \"10.78.5.0/24\": it overlaps network blue (10.78.0.0/16)"),
        (vec!["network", "create", "--subnet", "10.79.0.1/16", "x"], "invalid --subnet \"10.79.0.1/16\": 10.79.0.1 has host bits set"),
        (vec!["network", "create", "--gateway", "nope", "y"], "invalid --gateway \"nope\""),
        (vec!["network", "create", "red"], "network with name red already exists"),
        (vec!["network", "create", "-d", "overlay", "z"], "invalid --driver \"overlay\""),
        (vec!["network", "rm", "nosuch"], "network nosuch not found"),
        (vec!["network", "rm", "bridge"], "bridge is a pre-defined network"),
        (vec!["network", "inspect", "nosuch"], "network nosuch not found"),
        (vec!["network", "connect", "nosuch", "nobody"], "nobody"),
        (vec!["run", "--rm", "--network", "nosuch", "busybox:test", "true"], "network nosuch not found"),
        (vec!["run", "--rm", "--network-alias", "x", "busybox:test", "true"], "--network-alias"),
    ] {
        let out = ns.builder(&b, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
    // prune keeps what a container (even a stopped one) will join.
    ns.ok(&b, &["run", "--name", "keeper", "--network", "red", "busybox:test", "true"]);
    assert_eq!(ns.ok(&b, &["network", "prune", "-f"]), "Deleted Networks:\nblue\n");
    ns.ok(&b, &["rm", "keeper"]);
    assert_eq!(ns.ok(&b, &["network", "prune", "-f", "--filter", "label=team=red"]), "Deleted Networks:\nred\n");
    assert_eq!(ns.ok(&b, &["network", "ls", "-q", "--filter", "type=custom"]), "");
}

#[test]
fn internal_network_has_no_route_out_while_a_user_network_reaches_out() {
    let b = with_busybox();
    let ns = Ns::new();
    let out_ns = Ns::new();
    ns.sh(&format!("ip link add bnout type veth peer name bnin netns {}", out_ns.0));
    ns.sh("ip addr add 10.252.0.1/24 dev bnout && ip link set bnout up");
    out_ns.sh("ip addr add 10.252.0.2/24 dev bnin && ip link set bnin up && ip route add default via 10.252.0.1");
    let www = tempfile::tempdir().expect("tmp");
    std::fs::write(www.path().join("index.html"), "outside\n").expect("write");
    let mut server = out_ns.exec().args(["busybox", "httpd", "-f", "-p", "10.252.0.2:8000", "-h"]).arg(www.path()).spawn().expect("httpd");
    ns.ok(&b, &["network", "create", "open"]);
    ns.ok(&b, &["network", "create", "--internal", "sealed"]);
    let reach = "wget -q -O - http://10.252.0.2:8000/ 2>&1";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.ok(&b, &["run", "--rm", "--network", "open", "busybox:test", "sh", "-c", reach]);
        if out == "outside\n" {
            break;
        }
        assert!(Instant::now() < deadline, "a user network does not reach out: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ns.builder(&b, &["run", "--rm", "--network", "sealed", "busybox:test", "sh", "-c", &format!("ip route; {reach}; echo rc=$?")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("default") && !text.contains("outside") && !text.contains("rc=0"), "{text}");
    let _ = server.kill();
    let _ = server.wait();
    ns.ok(&b, &["network", "rm", "open", "sealed"]);
    ns.assert_clean(&b);
}

/// `busybox:test` plus the host's OpenBSD netcat and its libraries, for `nc -u`.
fn image_with_nc(b: &Builder) -> &'static str {
    let ctx = tempfile::tempdir().expect("tmp");
    let nc = std::path::Path::new("/usr/bin/nc.openbsd");
    assert!(nc.exists(), "tests need Debian's netcat-openbsd");
    std::fs::copy(nc, ctx.path().join("nc")).expect("copy nc");
    let ldd = Command::new("ldd").arg(nc).output().expect("ldd");
    std::fs::create_dir_all(ctx.path().join("lib")).expect("mkdir");
    let mut dockerfile = String::from("FROM busybox:test\nCOPY nc /usr/bin/nc\n");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) else { continue };
        let name = std::path::Path::new(path).file_name().expect("name").to_string_lossy().into_owned();
        std::fs::copy(path, ctx.path().join("lib").join(&name)).expect("copy lib");
        let dir = std::path::Path::new(path).parent().expect("dir").display().to_string();
        dockerfile.push_str(&format!("COPY lib/{name} {dir}/{name}\n"));
    }
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    b.ok(&["build", "-q", "-t", "nc:test", ctx.path().to_str().expect("utf8")]);
    "nc:test"
}

#[test]
fn udp_published_port_reaches_the_container() {
    let b = with_busybox();
    let image = image_with_nc(&b);
    let ns = Ns::new();
    ns.ok(&b, &["run", "-d", "--name", "udp", "-p", "0:5000/udp", image, "nc", "-u", "-l", "5000"]);
    let line = ns.ok(&b, &["port", "udp", "5000/udp"]);
    let port = line.trim().rsplit(':').next().expect("port").to_string();
    assert!(line.starts_with("0.0.0.0:"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        ns.sh(&format!("echo hello-udp | nc -u -w 1 127.0.0.1 {port} || true"));
        if ns.ok(&b, &["logs", "udp"]).contains("hello-udp") {
            break;
        }
        assert!(Instant::now() < deadline, "the datagram never arrived");
    }
    assert!(ns.ok(&b, &["ps"]).contains(&format!("0.0.0.0:{port}->5000/udp")));
    ns.ok(&b, &["rm", "-f", "udp"]);
    ns.assert_clean(&b);
}

#[test]
fn default_bridge_files_are_dockers_and_other_names_go_to_the_hosts_servers() {
    let b = with_busybox();
    // The host only knows a loopback stub resolver, as with systemd-resolved.
    let ns = Ns::with_resolv_conf("search example.test\nnameserver 127.0.0.53\noptions edns0\n");
    // That stub, answering every A query with 10.9.8.7, on the host's loopback.
    let stub = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.53", 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    end += 5
    qtype = struct.unpack(">H", q[end - 4:end - 2])[0]
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 9, 8, 7]) if qtype == 1 else b""
    s.sendto(q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1 if answer else 0, 0, 0) + q[12:end] + answer, peer)
"#;
    let mut server = ns.exec().args(["python3", "-c", stub]).stdout(Stdio::piped()).spawn().expect("python3");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("ready");
        assert_eq!(line, "ready\n");
    }
    let id = ns.ok(&b, &["run", "-d", "--name", "plain", "busybox:test", "sleep", "600"]);
    let short = &id.trim()[..12];
    let (_, resolv) = ns.in_container(&b, "plain", "cat /etc/resolv.conf");
    assert_eq!(resolv, "search example.test\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    let (_, hosts) = ns.in_container(&b, "plain", "cat /etc/hosts; hostname; cat /etc/hostname");
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), "{hosts}");
    assert!(hosts.contains("\n172.30.0.") && hosts.contains(&format!("\t{short}\n{short}\n{short}\n")), "{hosts}");
    assert!(!hosts.contains(&format!("127.0.0.1\t{short}")), "{hosts}");
    // The host network keeps the host's files and name.
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let out = ns.ok(&b, &["run", "--rm", "--network", "host", "busybox:test", "sh", "-c", "hostname; cat /etc/resolv.conf"]);
    assert_eq!(out, format!("{}search example.test\nnameserver 127.0.0.53\noptions edns0\n", host_name));

    // On a user network, a name no container has is asked of the host's server.
    ns.ok(&b, &["network", "create", "app"]);
    let out = ns.ok(&b, &["run", "--rm", "--network", "app", "busybox:test", "sh", "-c", "cat /etc/resolv.conf; nslookup upstream.example"]);
    assert!(out.starts_with("nameserver 127.0.0.11\nsearch example.test\noptions edns0 ndots:0\n"), "{out}");
    assert!(out.contains("Address: 10.9.8.7"), "{out}");
    let _ = server.kill();
    let _ = server.wait();
    ns.ok(&b, &["rm", "-f", "plain"]);
    ns.ok(&b, &["network", "rm", "app"]);
    ns.assert_clean(&b);
    removes_etc_netns(&ns);
}

#[test]
fn kill_9_of_the_cli_and_of_a_shim_on_a_user_network_leave_nothing_that_blocks() {
    let b = with_busybox();
    let ns = Ns::new();
    ns.ok(&b, &["network", "create", "app"]);
    ns.ok(&b, &["run", "-d", "--name", "watcher", "--network", "app", "busybox:test", "sleep", "600"]);
    // A foreground container whose CLI is killed with SIGKILL.
    let mut fg = ns.exec().arg(bin()).arg("--root").arg(b.root()).args(["run", "--name", "fg", "--network", "app", "-p", "127.0.0.1:18090:80", "busybox:test", "sh", "-c", HTTPD]).stdout(Stdio::null()).spawn().expect("run");
    assert!(ns.fetch_eventually("http://127.0.0.1:18090/").starts_with("page of "));
    assert!(ns.resolve_from(&b, "watcher", "fg").is_some());
    fg.kill().expect("kill -9");
    fg.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.fetch("http://127.0.0.1:18090/").is_some() || ns.resolve_from(&b, "watcher", "fg").is_some() {
        assert!(Instant::now() < deadline, "the container or its name outlived its CLI");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A detached one whose shim is killed.
    let d_id = ns.ok(&b, &["run", "-d", "--name", "dd", "--network", "app", "busybox:test", "sleep", "600"]);
    assert!(ns.resolve_from(&b, "watcher", "dd").is_some());
    let shims = ns.sh(&format!("ps -eo pid,args | grep '__shim {}' | grep -v grep | awk '{{print $1}}'", d_id.trim()));
    for pid in shims.split_whitespace() {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().expect("pid")), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.resolve_from(&b, "watcher", "dd").is_some() {
        assert!(Instant::now() < deadline, "dd still resolves after its shim died");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same port and names again: nothing stale blocks them.
    ns.ok(&b, &["rm", "-f", "fg", "dd"]);
    ns.ok(&b, &["run", "-d", "--name", "fg", "--network", "app", "-p", "127.0.0.1:18090:80", "busybox:test", "sh", "-c", HTTPD]);
    assert!(ns.fetch_eventually("http://127.0.0.1:18090/").starts_with("page of "));
    ns.ok(&b, &["rm", "-f", "fg", "watcher"]);
    ns.ok(&b, &["network", "rm", "app"]);
    ns.assert_clean(&b);
}

impl Ns {
    /// The address of container `name` on its interface `ifname`.
    fn address_of(&self, b: &Builder, name: &str, ifname: &str) -> String {
        let (ok, out) = self.in_container(b, name, &format!("ip -o -4 addr show {ifname}"));
        assert!(ok, "{name}: {out}");
        out.split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next()).expect("inet").to_string()
    }

    /// Whether `wget` of `url` from container `from` gets a page (within 2 s; not with
    /// `wget -T`, which crashes in Debian's busybox 1.35).
    fn reaches(&self, b: &Builder, from: &str, url: &str) -> bool {
        self.in_container(b, from, &format!("timeout 2 wget -q -O - {url}")).0
    }

    fn reaches_eventually(&self, b: &Builder, from: &str, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.reaches(b, from, url) {
            assert!(Instant::now() < deadline, "{from} never reached {url}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn user_networks_are_isolated_from_each_other_but_reach_out_and_use_published_ports() {
    let b = with_busybox();
    let ns = Ns::new();
    let out_ns = Ns::new();
    ns.sh(&format!("ip link add bnout type veth peer name bnin netns {}", out_ns.0));
    ns.sh("ip addr add 10.253.0.1/24 dev bnout && ip link set bnout up");
    out_ns.sh("ip addr add 10.253.0.2/24 dev bnin && ip link set bnin up && ip route add default via 10.253.0.1");
    let www = tempfile::tempdir().expect("tmp");
    std::fs::write(www.path().join("index.html"), "outside\n").expect("write");
    let mut server = out_ns.exec().args(["busybox", "httpd", "-f", "-p", "10.253.0.2:8000", "-h"]).arg(www.path()).spawn().expect("httpd");

    ns.ok(&b, &["network", "create", "red"]);
    ns.ok(&b, &["network", "create", "blue"]);
    ns.ok(&b, &["run", "-d", "--name", "red1", "--network", "red", "-p", "0:80", "busybox:test", "sh", "-c", HTTPD]);
    ns.ok(&b, &["run", "-d", "--name", "red2", "--network", "red", "busybox:test", "sh", "-c", HTTPD]);
    ns.ok(&b, &["run", "-d", "--name", "blue1", "--network", "blue", "busybox:test", "sh", "-c", HTTPD]);
    ns.ok(&b, &["run", "-d", "--name", "plain", "busybox:test", "sh", "-c", HTTPD]);
    let red1 = ns.address_of(&b, "red1", "eth0");
    let blue1 = ns.address_of(&b, "blue1", "eth0");
    let plain = ns.address_of(&b, "plain", "eth0");
    // On one network, and from the host, containers reach each other.
    ns.reaches_eventually(&b, "red2", &format!("http://{red1}/"));
    ns.reaches_eventually(&b, "red1", "http://red2/");
    for ip in [&red1, &blue1, &plain] {
        ns.fetch_eventually(&format!("http://{ip}/"));
    }
    // Across networks, and between a user network and the default bridge, nothing passes.
    for (from, to) in [("blue1", &red1), ("plain", &red1), ("red1", &blue1), ("plain", &blue1), ("red1", &plain), ("blue1", &plain)] {
        assert!(!ns.reaches(&b, from, &format!("http://{to}/")), "{from} reached {to} on another network");
    }
    // Every one of them reaches out through NAT…
    for from in ["red1", "blue1", "plain"] {
        ns.reaches_eventually(&b, from, "http://10.253.0.2:8000/");
    }
    // …and a port red1 publishes answers containers of the other networks, at their gateway.
    let port = host_port(&ns, &b, "red1");
    for from in ["blue1", "plain"] {
        let gateway = ns.in_container(&b, from, "ip route | awk '/^default/ {print $3}'").1;
        ns.reaches_eventually(&b, from, &format!("http://{}:{port}/", gateway.trim()));
    }
    assert!(ns.fetch_eventually(&format!("http://127.0.0.1:{port}/")).starts_with("page of "));
    let _ = server.kill();
    let _ = server.wait();
    ns.ok(&b, &["rm", "-f", "red1", "red2", "blue1", "plain"]);
    ns.ok(&b, &["network", "rm", "red", "blue"]);
    let table = ns.sh("nft list set ip builder same");
    assert!(table.contains("\"builder0\" . \"builder0\"") && table.matches("\" . \"").count() == 1, "{table}");
    ns.assert_clean(&b);
}

#[test]
fn network_container_mode_shares_the_other_containers_namespace_names_and_hostname() {
    let b = with_busybox();
    let ns = Ns::new();
    ns.ok(&b, &["network", "create", "app"]);
    let web_id = ns.ok(&b, &["run", "-d", "--name", "web", "--network", "app", "busybox:test", "sh", "-c", HTTPD]).trim().to_string();
    ns.ok(&b, &["run", "-d", "--name", "db", "--network", "app", "busybox:test", "sleep", "600"]);
    let (_, web_addr) = ns.in_container(&b, "web", "ip -o -4 addr show eth0");
    // A foreground joiner reaches web's server on loopback, has web's address, host name and resolver.
    let script = "for i in $(seq 100); do wget -q -O - http://127.0.0.1/ && break; sleep 0.1; done; hostname; ip -o -4 addr show eth0; head -1 /etc/resolv.conf; nslookup db 127.0.0.11 | grep -c 'Address.*172\\.'";
    let out = ns.ok(&b, &["run", "--rm", "--network", "container:web", "busybox:test", "sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("page of {}", &web_id[..12]), "{out}");
    assert_eq!(lines[1], &web_id[..12], "{out}");
    assert_eq!(lines[2], web_addr.trim(), "{out}");
    assert_eq!(lines[3], "nameserver 127.0.0.11", "{out}");
    assert_eq!(lines[4], "1", "db resolves by name from the joiner: {out}");

    // A detached one too; inspect names the other container's id, as Docker does; it cannot be connected elsewhere.
    ns.ok(&b, &["run", "-d", "--name", "side", "--network", "container:web", "busybox:test", "sleep", "600"]);
    let (ok, page) = ns.in_container(&b, "side", "wget -q -O - http://127.0.0.1/");
    assert!(ok && page.starts_with("page of "), "{page}");
    let inspect: serde_json::Value = serde_json::from_str(&ns.ok(&b, &["inspect", "side"])).expect("json");
    assert_eq!(inspect[0]["HostConfig"]["NetworkMode"], format!("container:{web_id}"));
    let err = String::from_utf8_lossy(&ns.builder(&b, &["network", "connect", "app", "side"]).stderr).into_owned();
    assert!(err.contains("another container's"), "{err}");

    // What Docker refuses beside it, a missing container, and one that is not running.
    for (flag, value) in [("-p", "8080:80"), ("--hostname", "h1"), ("--add-host", "a:10.0.0.1"), ("--dns", "10.0.0.1")] {
        let out = ns.builder(&b, &["run", "--rm", "--network", "container:web", flag, value, "busybox:test", "true"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && err.contains(value) && err.contains("conflicts with --network container:web"), "{flag}: {err}");
    }
    let err = String::from_utf8_lossy(&ns.builder(&b, &["run", "--rm", "--network", "container:nosuch", "busybox:test", "true"]).stderr).into_owned();
    assert!(err.contains("container:nosuch") && err.contains("no such container: nosuch"), "{err}");
    ns.ok(&b, &["create", "--name", "idle", "busybox:test", "true"]);
    let out = ns.builder(&b, &["run", "--rm", "--network", "container:idle", "busybox:test", "true"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("container:idle") && err.contains("not running"), "{err}");

    ns.ok(&b, &["rm", "-f", "side", "web", "db", "idle"]);
    ns.ok(&b, &["network", "rm", "app"]);
    ns.assert_clean(&b);
}

#[test]
fn ip_gives_a_fixed_address_on_a_user_network_and_a_taken_or_foreign_one_is_named() {
    let b = with_busybox();
    let ns = Ns::new();
    ns.ok(&b, &["network", "create", "--subnet", "10.79.0.0/24", "fixed"]);
    let a_id = ns.ok(&b, &["run", "-d", "--name", "alpha", "--network", "fixed", "--ip", "10.79.0.50", "busybox:test", "sleep", "600"]);
    let (_, addr) = ns.in_container(&b, "alpha", "ip -o -4 addr show eth0");
    assert!(addr.contains("inet 10.79.0.50/24"), "{addr}");
    assert_eq!(ns.resolve_from(&b, "alpha", "alpha").as_deref(), Some("10.79.0.50"));
    // The long form, and `network connect --ip` of a container on the default bridge.
    ns.ok(&b, &["run", "-d", "--name", "beta", "--network", "name=fixed,alias=b2,ip=10.79.0.60", "busybox:test", "sleep", "600"]);
    assert_eq!(ns.resolve_from(&b, "alpha", "b2").as_deref(), Some("10.79.0.60"));
    ns.ok(&b, &["run", "-d", "--name", "gamma", "busybox:test", "sleep", "600"]);
    ns.ok(&b, &["network", "connect", "--ip", "10.79.0.70", "fixed", "gamma"]);
    let (_, addr) = ns.in_container(&b, "gamma", "ip -o -4 addr show eth1");
    assert!(addr.contains("inet 10.79.0.70/24"), "{addr}");

    // Taken, outside the subnet, the gateway, not on a user network, not an address.
    let taken = ns.builder(&b, &["run", "--rm", "--network", "fixed", "--ip", "10.79.0.50", "busybox:test", "true"]);
    let err = String::from_utf8_lossy(&taken.stderr).into_owned();
    assert!(!taken.status.success() && err.contains("address 10.79.0.50 of network fixed is already in use") && err.contains(&a_id.trim()[..12]), "{err}");
    for (args, want) in [
        (vec!["--network", "fixed", "--ip", "10.80.0.5"], "not in the subnet 10.79.0.0/24 of network fixed"),
        (vec!["--network", "fixed", "--ip", "10.79.0.1"], "the gateway of network fixed"),
        (vec!["--ip", "172.30.0.9"], "supported on user-defined networks only"),
        (vec!["--network", "fixed", "--ip", "10.79.0.x"], "invalid --ip \"10.79.0.x\": not an IPv4 address"),
    ] {
        let mut all = vec!["run", "--rm"];
        all.extend(&args);
        all.extend(["busybox:test", "true"]);
        let out = ns.builder(&b, &all);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
    // Its address is free again once it is gone.
    ns.ok(&b, &["rm", "-f", "alpha"]);
    let out = ns.ok(&b, &["run", "--rm", "--network", "fixed", "--ip", "10.79.0.50", "busybox:test", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(out.contains("inet 10.79.0.50/24"), "{out}");
    ns.ok(&b, &["rm", "-f", "beta", "gamma"]);
    ns.ok(&b, &["network", "rm", "fixed"]);
    ns.assert_clean(&b);
}

#[test]
fn network_events_say_create_connect_disconnect_and_destroy() {
    let b = with_busybox();
    let ns = Ns::new();
    let net = ns.ok(&b, &["network", "create", "evnet"]).trim().to_string();
    let id = ns.ok(&b, &["run", "-d", "--name", "ev", "--network", "evnet", "busybox:test", "sleep", "600"]).trim().to_string();
    ns.ok(&b, &["rm", "-f", "ev"]);
    ns.ok(&b, &["network", "rm", "evnet"]);
    let shown = ns.ok(&b, &["events", "--since", "1h", "--until", "0s", "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}}"]);
    assert_eq!(shown, "create evnet bridge\nconnect evnet bridge\ndisconnect evnet bridge\ndestroy evnet bridge\n", "{shown}");
    let joined = ns.ok(&b, &["events", "--since", "1h", "--until", "0s", "--filter", "event=connect", "--format", "{{.Actor.Attributes.container}}"]);
    assert_eq!(joined, format!("{id}\n"));
    // By network, and a container's network events by the container.
    let by_net = ns.ok(&b, &["events", "--since", "1h", "--until", "0s", "--filter", &format!("network={}", &net[..12]), "--format", "{{.Action}}"]);
    assert_eq!(by_net, "create\nconnect\ndisconnect\ndestroy\n");
    let by_container = ns.ok(&b, &["events", "--since", "1h", "--until", "0s", "--filter", "type=network", "--filter", &format!("container={id}"), "--format", "{{.Action}}"]);
    assert_eq!(by_container, "connect\ndisconnect\n");
    ns.assert_clean(&b);
}
