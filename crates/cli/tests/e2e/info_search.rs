//! End-to-end: `builder info` (the root, images, containers by state, the machine) and
//! `builder search` against a registry's catalog (Debian's docker-registry on loopback).
use crate::util::*;
use crate::util_registry::Registry;

#[test]
fn info_counts_images_and_containers_by_state_and_names_the_root() {
    let b = with_busybox();
    b.ok(&["run", "--name", "done", "busybox:test", "true"]);
    let text = b.ok(&["info"]);
    for want in [" Containers: 1\n  Running: 0\n  Paused: 0\n  Stopped: 1\n Images: 1\n", " Storage Driver: overlay\n", " Security Options:\n  seccomp\n", " Insecure Registries:\n  127.0.0.0/8\n"] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert!(text.contains(&format!(" Docker Root Dir: {}\n", b.root().display())), "{text}");
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    assert_eq!(b.ok(&["info", "--format", "{{.CgroupVersion}}"]).trim(), cgroup);
    // As the runtime sees it: BUILDER_CGROUP=v2 uses only the v2 hierarchy.
    let out = b.cmd().env("BUILDER_CGROUP", "v2").args(["info", "--format", "{{.CgroupVersion}} {{.CgroupHybrid}}"]).output().expect("info");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2 false");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let json: serde_json::Value = serde_json::from_str(&b.ok(&["info", "--format", "{{json .}}"])).expect("json");
    assert_eq!(json["KernelVersion"].as_str(), Some(kernel.trim()));
    assert_eq!((json["Containers"].as_u64(), json["ContainersStopped"].as_u64(), json["Images"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(json["DockerRootDir"].as_str(), b.root().to_str());
    assert!(json["StorageUsage"]["Used"].as_u64().is_some_and(|u| u > 1_000_000), "the busybox blob and its snapshot: {json}");
    let err = b.fails(&["info", "--format", "{{.Nope}}"]);
    assert!(err.contains("Nope"), "{err}");
}

#[test]
fn search_lists_a_private_registrys_repositories_with_their_tags() {
    let registry = Registry::start();
    let b = with_busybox();
    for name in ["team/redis", "team/postgres", "other/redis-tools"] {
        let r = format!("{}/{name}:v1", registry.addr());
        b.ok(&["tag", "busybox:test", &r]);
        b.ok(&["push", "-q", &r]);
    }
    b.ok(&["tag", "busybox:test", &format!("{}/team/redis:v2", registry.addr())]);
    b.ok(&["push", "-q", &format!("{}/team/redis:v2", registry.addr())]);

    let term = format!("{}/redis", registry.addr());
    let table = b.ok(&["search", &term]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("DESCRIPTION") && lines[0].contains("STARS") && lines[0].ends_with("OFFICIAL"), "{table}");
    assert_eq!(lines.len(), 3, "two repositories hold `redis`: {table}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("{}/team/redis ", registry.addr())) && l.contains("tags: v1, v2")), "{table}");
    let names = b.ok(&["search", "--limit", "1", "--format", "{{.Name}}", &term]);
    assert_eq!(names.lines().count(), 1, "{names}");
    let json = b.ok(&["search", "--format", "json", &format!("{}/postgres", registry.addr())]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(row["Name"].as_str(), Some(format!("{}/team/postgres", registry.addr()).as_str()));
    assert_eq!(b.ok(&["search", "-f", "is-official=true", &term]).lines().count(), 1, "only the header: a private registry has no official images");
    assert_eq!(b.ok(&["search", &format!("{}/nothing-like-it", registry.addr())]).lines().count(), 1);

    let err = b.fails(&["search", "--limit", "0", &term]);
    assert!(err.contains("--limit 0"), "{err}");
    let err = b.fails(&["search", "-f", "colour=red", &term]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    // A registry that is not there: the error names it.
    let port = crate::util_registry::free_port();
    let err = b.fails(&["search", &format!("127.0.0.1:{port}/redis")]);
    assert!(err.contains(&format!("searching 127.0.0.1:{port} for \"redis\"")) && err.contains("cannot reach"), "{err}");
}

#[test]
fn events_follow_sees_a_run_from_another_process_and_the_journal_answers_since_until() {
    use std::io::BufRead;
    let b = with_busybox();
    let mut follow = b.cmd();
    follow.args(["events", "--filter", "type=container", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"]).stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().expect("spawn events");
    std::thread::sleep(std::time::Duration::from_millis(500));
    b.ok(&["run", "--name", "seen", "busybox:test", "true"]);
    b.ok(&["rm", "seen"]);
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut got = Vec::new();
    while got.len() < 4 {
        match lines.next() {
            Some(Ok(l)) => got.push(l),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, ["container create seen", "container start seen", "container die seen", "container destroy seen"]);

    // The journal, read back: image events too, and --since/--until bound it.
    b.ok(&["tag", "busybox:test", "again:1"]);
    let all = b.ok(&["events", "--since", "1h", "--until", "0s", "--format", "{{.Type}}:{{.Action}}"]);
    let all: Vec<&str> = all.lines().collect();
    assert_eq!(all.first().copied(), Some("image:import"), "{all:?}");
    assert!(all.contains(&"container:die") && all.last() == Some(&"image:tag"), "{all:?}");
    let plain = b.ok(&["events", "--since", "1h", "--until", "0s", "--filter", "event=die"]);
    assert!(plain.contains(" container die ") && plain.contains("exitCode=0") && plain.contains("name=seen"), "{plain}");
    assert_eq!(b.ok(&["events", "--since", "0s", "--until", "0s"]), "", "nothing after now");
    // Volumes: made by `volume create` and by a first `-v NAME:/path`, destroyed by `volume rm`.
    b.ok(&["volume", "create", "evvol"]);
    b.ok(&["run", "--rm", "--network", "none", "-v", "evvol2:/data", "busybox:test", "true"]);
    b.ok(&["volume", "rm", "evvol", "evvol2"]);
    let vols = b.ok(&["events", "--since", "1h", "--until", "0s", "--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}"]);
    assert_eq!(vols, "create evvol local\ncreate evvol2 local\ndestroy evvol local\ndestroy evvol2 local\n");
    assert_eq!(b.ok(&["events", "--since", "1h", "--until", "0s", "--filter", "volume=evvol2", "--format", "{{.Action}}"]), "create\ndestroy\n");
    let err = b.fails(&["events", "--since", "yesterday"]);
    assert!(err.contains("--since \"yesterday\""), "{err}");
}
