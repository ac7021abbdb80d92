//! End-to-end tests: `inspect` of containers (Docker's JSON shape, `--format`, container
//! before image), health checks (`--health-*`, the image's HEALTHCHECK, `ps` STATUS, the
//! `health_status` event), labels, and `ps --filter/--format/-n/-l/-s/--no-trunc`.
#[allow(unused_imports)]
use crate::util::*;

use std::time::{Duration, Instant};

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inspect(b: &Builder, name: &str) -> serde_json::Value {
    let out = b.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect {name} is not JSON ({e}):\n{out}"));
    v.as_array().and_then(|a| a.first()).cloned().unwrap_or_else(|| panic!("inspect {name} printed no object:\n{out}"))
}

/// Every key path of `expected` is in `actual` with a value of the same JSON type (null
/// stands for any type: Docker prints null for an empty list).
fn same_shape(path: &str, expected: &serde_json::Value, actual: &serde_json::Value, problems: &mut Vec<String>) {
    use serde_json::Value::*;
    match (expected, actual) {
        (Object(e), Object(a)) => {
            for (k, v) in e {
                match a.get(k) {
                    Some(av) => same_shape(&format!("{path}.{k}"), v, av, problems),
                    None => problems.push(format!("{path}.{k} is missing")),
                }
            }
        }
        (Null, _) | (_, Null) => {}
        (Array(_), Array(_)) | (String(_), String(_)) | (Number(_), Number(_)) | (Bool(_), Bool(_)) => {}
        (e, a) => problems.push(format!("{path}: docker has {e}, builder has {a}")),
    }
}

#[test]
fn inspect_matches_the_shape_debians_docker_prints_for_the_same_container() {
    // testdata/inspect/docker-20.10-running-container.json is `docker inspect web` of Debian's
    // docker 20.10 after `docker load` of `builder save busybox:test` and
    // `docker run -d --name web --network none -l owner=me -e GREETING=hi -w /tmp busybox:test sleep 600`.
    let docker: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(testdata().join("inspect/docker-20.10-running-container.json")).expect("docker's output")).expect("json");
    let docker = &docker[0];
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "web", "--network", "none", "-l", "owner=me", "-e", "GREETING=hi", "-w", "/tmp", "busybox:test", "sleep", "600"]);
    let ours = inspect(&b, "web");
    let mut problems = Vec::new();
    same_shape("", docker, &ours, &mut problems);
    assert!(problems.is_empty(), "builder's inspect differs from docker's in shape:\n{}", problems.join("\n"));
    for path in [
        "/Path", "/Args", "/State/Status", "/State/Running", "/State/Paused", "/State/ExitCode", "/State/FinishedAt", "/Name", "/RestartCount", "/Platform",
        "/Mounts", "/Config/Env", "/Config/Cmd", "/Config/Entrypoint", "/Config/Labels", "/Config/WorkingDir", "/Config/Image", "/Config/User", "/Config/Tty",
        "/Config/OpenStdin", "/Config/AttachStdout", "/Config/Volumes", "/HostConfig/NetworkMode", "/HostConfig/RestartPolicy", "/HostConfig/LogConfig",
        "/HostConfig/AutoRemove", "/HostConfig/Privileged", "/HostConfig/ReadonlyRootfs", "/HostConfig/PortBindings", "/HostConfig/Memory",
        "/HostConfig/NanoCpus", "/HostConfig/CapAdd", "/HostConfig/CapDrop", "/HostConfig/ReadonlyPaths", "/NetworkSettings/Ports",
        "/NetworkSettings/IPAddress",
    ] {
        assert_eq!(ours.pointer(path), docker.pointer(path), "{path}");
    }
    b.ok(&["rm", "-f", "web"]);
}

#[test]
fn inspect_of_a_container_has_dockers_shape_and_format_picks_fields() {
    let b = with_busybox();
    let labels = b.root().join("labels");
    std::fs::write(&labels, "# team labels\ntier=web\nowner=ops\n").expect("label file");
    let id = b.ok(&["run", "-d", "--name", "web", "-l", "owner=me", "--label", "flag", "--label-file", labels.to_str().expect("utf8"), "-e", "GREETING=hi", "-w", "/tmp", "busybox:test", "sleep", "60"]);
    let id = id.trim();
    let c = inspect(&b, "web");
    assert_eq!(c["Id"], id);
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"], serde_json::json!(["60"]));
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert!(c["State"]["Pid"].as_i64().unwrap_or(0) > 0, "{}", c["State"]);
    assert_eq!(c["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert!(c["State"].get("Health").is_none(), "no health check, no Health: {}", c["State"]);
    assert!(c["Image"].as_str().unwrap_or("").starts_with("sha256:"), "{}", c["Image"]);
    assert_eq!(c["Config"]["Image"], "busybox:test");
    assert_eq!(c["Config"]["WorkingDir"], "/tmp");
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sleep", "60"]));
    assert!(c["Config"]["Env"].as_array().expect("Env").iter().any(|e| e == "GREETING=hi"), "{}", c["Config"]["Env"]);
    assert_eq!(c["Config"]["Labels"], serde_json::json!({"flag": "", "owner": "me", "tier": "web"}), "a flag wins over the file");
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(c["HostConfig"]["RestartPolicy"], serde_json::json!({"Name": "no", "MaximumRetryCount": 0}));
    assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(c["Mounts"], serde_json::json!([]));

    // --format: a Go template over the same object, `json` for one field.
    assert_eq!(b.ok(&["inspect", "--format", "{{.State.Status}} {{.Name}} {{index .Config.Labels \"tier\"}}", "web"]), "running /web web\n");
    assert_eq!(b.ok(&["container", "inspect", "-f", "{{json .Config.Labels}}", "web"]), "{\"flag\":\"\",\"owner\":\"me\",\"tier\":\"web\"}\n");
    // A name is a container first, then an image; --type (and the management forms) pick one.
    assert!(inspect(&b, "busybox:test").get("RepoTags").is_some());
    let out = b.run(&["container", "inspect", "busybox:test"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error: No such container: busybox:test"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(b.fails(&["image", "inspect", "web"]).contains("No such image: web"));
    assert!(b.fails(&["inspect", "nothing-here"]).contains("No such object: nothing-here"));
    let both = b.ok(&["inspect", "-f", "{{.Id}}", "web", "busybox:test"]);
    assert_eq!(both.lines().count(), 2, "{both}");
    assert!(b.fails(&["inspect", "-f", "{{.State.Nope", "web"]).contains("--format"));

    b.ok(&["stop", "-t", "1", "web"]);
    let c = inspect(&b, "web");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["Running"], false);
    assert_eq!(c["State"]["Pid"], 0);
    assert!(c["State"]["ExitCode"].as_i64().unwrap_or(0) > 128, "killed by a signal: {}", c["State"]);
    assert_ne!(c["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    b.ok(&["rm", "web"]);
}

#[test]
fn inspect_shows_published_ports_volumes_and_limits() {
    let b = with_busybox();
    b.ok(&["volume", "create", "data"]);
    b.ok(&["run", "-d", "--name", "lim", "-v", "data:/data", "-m", "64m", "--pids-limit", "50", "--restart", "on-failure:3", "busybox:test", "sleep", "60"]);
    let c = inspect(&b, "lim");
    assert_eq!(c["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(c["HostConfig"]["PidsLimit"], 50);
    assert_eq!(c["HostConfig"]["RestartPolicy"], serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 3}));
    assert_eq!(c["HostConfig"]["Binds"], serde_json::json!(["data:/data"]));
    let mounts = c["Mounts"].as_array().expect("Mounts");
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "data");
    assert_eq!(mounts[0]["Destination"], "/data");
    assert_eq!(b.ok(&["ps", "--filter", "volume=data", "--format", "{{.Names}} {{.Mounts}}"]), "lim data\n");
    b.ok(&["rm", "-f", "lim"]);
}

#[test]
fn health_cmd_makes_a_container_unhealthy_then_healthy_with_log_and_events() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "probe", "--health-cmd", "cat /tmp/ok", "--health-interval", "100ms", "--health-retries", "2", "busybox:test", "sleep", "60"]);
    let status = || b.ok(&["inspect", "-f", "{{.State.Health.Status}}", "probe"]).trim().to_string();
    wait_for("unhealthy", || status() == "unhealthy");
    let ps = b.ok(&["ps", "--format", "{{.Names}}|{{.Status}}"]);
    assert!(ps.starts_with("probe|Up ") && ps.trim_end().ends_with(" (unhealthy)"), "{ps}");
    assert_eq!(b.ok(&["ps", "--filter", "health=unhealthy", "-q"]).trim().len(), 12);
    assert_eq!(b.ok(&["ps", "--filter", "health=healthy", "-q"]), "");
    let c = inspect(&b, "probe");
    let health = &c["State"]["Health"];
    assert!(health["FailingStreak"].as_u64().unwrap_or(0) >= 2, "{health}");
    let last = health["Log"].as_array().and_then(|l| l.last()).cloned().expect("a probe in the log");
    assert_eq!(last["ExitCode"], 1);
    assert!(last["Output"].as_str().unwrap_or("").contains("/tmp/ok"), "cat's complaint is the output: {last}");
    assert_eq!(c["Config"]["Healthcheck"]["Test"], serde_json::json!(["CMD-SHELL", "cat /tmp/ok"]));
    assert_eq!(c["Config"]["Healthcheck"]["Interval"], 100_000_000);

    // Renamed into place: `echo fine > /tmp/ok` makes an empty file first, and a probe that
    // catches it then (every 100 ms, more likely at load) is a `cat` with no output and exit 0.
    b.ok(&["exec", "probe", "sh", "-c", "echo fine > /tmp/ok.new && mv /tmp/ok.new /tmp/ok"]);
    wait_for("healthy", || status() == "healthy");
    let c = inspect(&b, "probe");
    assert_eq!(c["State"]["Health"]["FailingStreak"], 0);
    let log = c["State"]["Health"]["Log"].as_array().expect("log");
    assert!(log.len() <= 5, "Docker keeps five probes: {log:?}");
    // Every passing probe, the first one included, has its own output.
    let passed: Vec<_> = log.iter().filter(|p| p["ExitCode"] == 0).collect();
    assert!(!passed.is_empty() && passed.iter().all(|p| p["Output"] == "fine\n"), "{log:?}");
    assert_eq!(log.last().expect("probe")["Output"], "fine\n");
    assert!(b.ok(&["ps"]).contains("(healthy)"));
    let events = b.ok(&["events", "--since", "10m", "--until", "0s", "--filter", "container=probe", "--format", "{{.Action}}"]);
    let changes: Vec<&str> = events.lines().filter(|l| l.starts_with("health_status")).collect();
    assert_eq!(changes, ["health_status: unhealthy", "health_status: healthy"], "{events}");
    b.ok(&["rm", "-f", "probe"]);
}

#[test]
fn the_images_healthcheck_runs_and_no_healthcheck_turns_it_off() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nHEALTHCHECK --interval=100ms --timeout=2s CMD [\"true\"]\nCMD [\"sleep\", \"60\"]\n")]);
    b.ok(&["build", "-q", "-t", "checked:1", ctx.path().to_str().expect("utf8")]);
    b.ok(&["run", "-d", "--name", "img", "checked:1"]);
    b.ok(&["run", "-d", "--name", "off", "--no-healthcheck", "checked:1"]);
    b.ok(&["run", "-d", "--name", "slow", "--health-interval", "10m", "checked:1"]);
    wait_for("healthy", || b.ok(&["inspect", "-f", "{{.State.Health.Status}}", "img"]).trim() == "healthy");
    let c = inspect(&b, "img");
    assert_eq!(c["Config"]["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Config"]["Healthcheck"]["Timeout"], 2_000_000_000);
    let off = inspect(&b, "off");
    assert_eq!(off["Config"]["Healthcheck"]["Test"], serde_json::json!(["NONE"]));
    assert!(off["State"].get("Health").is_none(), "{}", off["State"]);
    // The flag overrides the image's interval only: the first probe is ten minutes away.
    let slow = inspect(&b, "slow");
    assert_eq!(slow["State"]["Health"]["Status"], "starting");
    assert_eq!(slow["Config"]["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    let table = b.ok(&["ps", "--format", "table {{.Names}}\t{{.Status}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMES") && lines[0].contains("STATUS"), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("slow ") && l.ends_with("(health: starting)")), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("img ") && l.ends_with("(healthy)")), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("off ") && l.contains(" Up ") && !l.contains('(')), "{table}");
    assert_eq!(b.ok(&["ps", "--filter", "health=none", "--format", "{{.Names}}"]), "off\n");
    assert!(b.fails(&["run", "--health-interval", "10", "busybox:test", "true"]).contains("invalid --health-interval \"10\""));
    assert!(b.fails(&["run", "--no-healthcheck", "--health-cmd", "true", "busybox:test", "true"]).contains("--no-healthcheck"));
    b.ok(&["rm", "-f", "img", "off", "slow"]);
}

#[test]
fn ps_filters_formats_and_limits_like_docker() {
    let b = with_busybox();
    assert_eq!(b.run(&["run", "--name", "first", "-l", "tier=db", "busybox:test", "sh", "-c", "exit 3"]).status.code(), Some(3));
    b.ok(&["run", "-d", "--name", "second", "-l", "tier=web", "-l", "team=a", "busybox:test", "sleep", "60"]);
    b.ok(&["run", "-d", "--name", "third", "-l", "tier=web", "busybox:test", "sleep", "60"]);
    let names = |args: &[&str]| {
        let mut a = vec!["ps"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--format", "{{.Names}}"]);
        b.ok(&a).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(names(&[]), ["third", "second"], "running ones, newest first");
    assert_eq!(names(&["-a"]), ["third", "second", "first"]);
    assert_eq!(names(&["--filter", "status=exited"]), ["first"], "a status filter lists stopped ones without -a");
    assert_eq!(names(&["-a", "--filter", "exited=3"]), ["first"]);
    assert_eq!(names(&["-a", "--filter", "exited=0"]), Vec::<String>::new());
    assert_eq!(names(&["--filter", "label=tier=web"]), ["third", "second"]);
    assert_eq!(names(&["--filter", "label=team"]), ["second"]);
    assert_eq!(names(&["--filter", "label=tier=web", "--filter", "label=team=a"]), ["second"], "label filters must all match");
    assert_eq!(names(&["-a", "--filter", "name=ir"]), ["third", "first"], "a name filter matches part of the name");
    assert_eq!(names(&["-a", "--filter", "name=^/sec"]), ["second"]);
    assert_eq!(names(&["-a", "--filter", "name=first", "--filter", "name=third"]), ["third", "first"], "values of one key are alternatives");
    assert_eq!(names(&["-a", "--filter", "before=second"]), ["first"]);
    assert_eq!(names(&["-a", "--filter", "since=first"]), ["third", "second"]);
    assert_eq!(names(&["-a", "--filter", "ancestor=busybox:test"]).len(), 3);
    assert_eq!(names(&["-a", "--filter", "ancestor=busybox"]).len(), 0, "busybox means busybox:latest");
    assert_eq!(names(&["--filter", "network=bridge"]), ["third", "second"]);
    assert_eq!(names(&["-n", "2"]), ["third", "second"]);
    assert_eq!(names(&["-l"]), ["third"]);
    let id = b.ok(&["ps", "-a", "--filter", "name=first", "-q"]);
    assert_eq!(id.trim().len(), 12);
    let full = b.ok(&["ps", "-a", "--filter", "name=first", "-q", "--no-trunc"]);
    assert_eq!(full.trim().len(), 64);
    assert!(full.starts_with(id.trim()));
    // `container ls` is ps; {{json .}} has Docker's fields.
    let json = b.ok(&["container", "ls", "-a", "--filter", "name=first", "--format", "{{json .}}"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("json row");
    // The keys of Debian's docker 20.10 `ps --format '{{json .}}'`, no more, no less.
    let mut keys: Vec<&str> = row.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names", "Networks", "Platform", "Ports", "RunningFor", "Size", "State", "Status"]);
    assert!(row["Size"].as_str().unwrap_or("").contains("(virtual "), "{row}");
    assert_eq!(row["State"], "exited");
    assert_eq!(row["Labels"], "tier=db");
    assert!(row["Status"].as_str().unwrap_or("").starts_with("Exited (3) "), "{row}");
    assert_eq!(row["Command"], "\"sh -c exit 3\"");
    // The default table, with SIZE under -s.
    let table = b.ok(&["ps", "-s", "--filter", "name=third"]);
    let header = table.lines().next().unwrap_or("");
    assert!(header.starts_with("CONTAINER ID   IMAGE") && header.ends_with("NAMES     SIZE"), "{table}");
    assert!(table.lines().nth(1).unwrap_or("").contains("(virtual "), "{table}");
    assert!(b.fails(&["ps", "--filter", "colour=red"]).contains("unknown key \"colour\""));
    assert!(b.fails(&["ps", "--filter", "status=sleeping"]).contains("status is one of"));
    assert!(b.fails(&["ps", "--filter", "since=nobody"]).contains("nobody"));
    b.ok(&["rm", "-f", "first", "second", "third"]);
}

/// The hex mask of /proc/self/status field `key` as the container's first process sees it.
fn status_field(b: &Builder, opts: &[&str], key: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    let script = format!("grep '^{key}:' /proc/self/status | cut -f2");
    args.extend_from_slice(&["busybox:test", "sh", "-c", &script]);
    b.ok(&args).trim().to_string()
}

/// A `builder` command with `BUILDER_CGROUP` set to `cgroup` (None: the host's own choice).
fn with_cgroup(b: &Builder, cgroup: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = b.cmd();
    if let Some(v) = cgroup {
        cmd.env("BUILDER_CGROUP", v);
    }
    cmd.args(args).output().expect("spawn builder")
}

/// What the device rules let a container open, whichever hierarchy enforces them.
/// cpu_dma_latency (10:259): harmless to open and read (4 bytes), and in no default rule.
fn device_rules_hold(b: &Builder, cgroup: Option<&str>) {
    let run = |args: &[&str], script: &str| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend(["busybox:test", "sh", "-c", script]);
        with_cgroup(b, cgroup, &a)
    };
    // A node it may make (mknod, as in Docker) but not open: EPERM from the cgroup, not the mode.
    let out = run(&[], "mknod /tmp/lat c 10 259 && head -c1 /tmp/lat");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{}", String::from_utf8_lossy(&out.stderr));
    // Nor a host device bound in without --device (what --device binds, but no rule).
    let out = run(&["-v", "/dev/cpu_dma_latency:/dev/lat"], "head -c1 /dev/lat");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    // The default nodes stay usable.
    let out = run(&[], "head -c3 /dev/zero | wc -c; head -c2 /dev/urandom | wc -c; head -c1 /dev/full | wc -c; echo x > /dev/null && echo null-ok; exec 3<>/dev/ptmx && echo ptmx-ok");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n2\n1\nnull-ok\nptmx-ok\n", "{out:?}");
    // Given read-only: it reads, and even a node of its own for it cannot be opened to write.
    let out = run(&["--device", "/dev/cpu_dma_latency:/dev/lat:r"], "head -c1 /dev/lat | wc -c; mknod /tmp/l2 c 10 259 && head -c1 /tmp/l2 | wc -c; echo 1 > /tmp/l2");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n1\n", "{out:?}");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    // --privileged: no device cgroup (nor program), as in Docker.
    let out = run(&["--privileged"], "mknod /tmp/lat c 10 259 && head -c1 /tmp/lat | wc -c");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n", "{out:?}");
}

#[test]
fn the_device_cgroup_lets_a_container_open_only_the_devices_it_was_given() {
    // This host's device cgroup is v1 (hybrid): the v1 devices controller enforces them.
    device_rules_hold(&with_busybox(), None);
}

#[test]
fn on_cgroup_v2_a_bpf_device_program_enforces_the_same_rules_and_goes_with_the_cgroup() {
    // BUILDER_CGROUP=v2 hides the v1 hierarchies, as on a v2-only host: the rules become a BPF
    // program on the container's cgroup in this host's v2 (unified) mount; the v1 devices
    // controller, where the container's processes stay in the root, allows all.
    let b = with_busybox();
    device_rules_hold(&b, Some("v2"));
    // A detached container: its one cgroup is a v2 one, and what `exec` runs in it is held too.
    let out = with_cgroup(&b, Some("v2"), &["run", "-d", "--name", "dev2", "busybox:test", "sleep", "1000"]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(b.root().join("containers").join(&id).join("state.json")).unwrap()).unwrap();
    let dirs: Vec<std::path::PathBuf> = state["cgroup_dirs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().into()).collect();
    assert!(dirs.len() == 1 && dirs[0].join("cgroup.freeze").exists(), "{dirs:?}");
    let out = b.run(&["exec", "dev2", "sh", "-c", "mknod /tmp/lat c 10 259 && head -c1 /tmp/lat"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    // pause works through the v2 cgroup.freeze of the same cgroup.
    b.ok(&["pause", "dev2"]);
    assert_eq!(std::fs::read_to_string(dirs[0].join("cgroup.freeze")).unwrap().trim(), "1");
    b.ok(&["unpause", "dev2"]);
    // Removing the container removes its cgroup, and the program with it.
    b.ok(&["rm", "-f", "dev2"]);
    wait_for("the container's cgroup to be removed", || !dirs[0].exists());
    // A bad value is an error naming it.
    let out = with_cgroup(&b, Some("v3"), &["run", "--rm", "busybox:test", "true"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("BUILDER_CGROUP=\"v3\""), "{out:?}");
}

#[test]
fn capability_privileged_ulimit_group_and_device_flags_are_seen_inside_and_in_inspect() {
    let b = with_busybox();
    // Docker's default set is a80425fb; NET_ADMIN is bit 12, CHOWN bit 0 (the same masks Debian's docker gives).
    assert_eq!(status_field(&b, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&b, &["--cap-add", "net_admin", "--cap-drop", "CHOWN"], "CapEff"), "00000000a80435fa");
    assert_eq!(status_field(&b, &["--cap-drop", "ALL"], "CapEff"), "0000000000000000");
    assert_eq!(status_field(&b, &["--cap-drop", "ALL", "--cap-add", "SYS_TIME"], "CapEff"), format!("{:016x}", 1u64 << 25));
    // --privileged: every capability this process can hand on, no seccomp filter, mounts work.
    let own = std::fs::read_to_string("/proc/self/status").expect("status").lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())).expect("CapBnd");
    assert_eq!(status_field(&b, &["--privileged"], "CapEff"), own);
    assert_eq!(status_field(&b, &["--privileged"], "Seccomp"), "0");
    assert_eq!(status_field(&b, &[], "Seccomp"), "2");
    assert_eq!(b.ok(&["run", "--rm", "--privileged", "busybox:test", "sh", "-c", "mount -t tmpfs none /tmp && echo mounted"]), "mounted\n");
    assert!(!b.run(&["run", "--rm", "busybox:test", "sh", "-c", "mount -t tmpfs none /tmp"]).status.success(), "without --privileged a mount is refused");

    let out = b.ok(&["run", "--rm", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=77", "busybox:test", "sh", "-c", "grep -E 'open files|processes' /proc/self/limits"]);
    let fields: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(fields.iter().any(|f| f[..4] == ["Max", "open", "files", "1024"] && f[4] == "2048"), "{out}");
    assert!(fields.iter().any(|f| f[..3] == ["Max", "processes", "77"] && f[3] == "77"), "{out}");
    assert_eq!(b.ok(&["run", "--rm", "--group-add", "wheel", "--group-add", "1234", "busybox:test", "id", "-G"]), "0 10 1234\n");
    assert_eq!(b.ok(&["run", "--rm", "--device", "/dev/null:/dev/mynull", "busybox:test", "sh", "-c", "test -c /dev/mynull && echo x > /dev/mynull && echo device-ok"]), "device-ok\n");

    b.ok(&["run", "-d", "--name", "flags", "--cap-add", "net_admin", "--cap-drop", "CHOWN", "--ulimit", "nofile=1024:2048", "--device", "/dev/null:/dev/mynull:r", "--group-add", "1234", "busybox:test", "sleep", "60"]);
    // The same JSON Debian's docker 20.10 prints for these flags.
    let hc = b.ok(&["inspect", "-f", "{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}} {{json .HostConfig.Ulimits}} {{json .HostConfig.Devices}} {{json .HostConfig.GroupAdd}} {{json .HostConfig.Privileged}}", "flags"]);
    assert_eq!(hc, "[\"CAP_NET_ADMIN\"] [\"CAP_CHOWN\"] [{\"Hard\":2048,\"Name\":\"nofile\",\"Soft\":1024}] [{\"CgroupPermissions\":\"r\",\"PathInContainer\":\"/dev/mynull\",\"PathOnHost\":\"/dev/null\"}] [\"1234\"] false\n");
    b.ok(&["rm", "-f", "flags"]);

    assert!(b.fails(&["run", "--rm", "--cap-add", "FLY", "busybox:test", "true"]).contains("invalid --cap-add \"FLY\""));
    assert!(b.fails(&["run", "--rm", "--ulimit", "files=1", "busybox:test", "true"]).contains("unknown limit \"files\""));
    assert!(b.fails(&["run", "--rm", "--device", "/etc/passwd", "busybox:test", "true"]).contains("not a device"));
    assert!(b.fails(&["run", "--rm", "--group-add", "nosuchgroup", "busybox:test", "true"]).contains("--group-add"));
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "", "a refused run leaves no container");
}

#[test]
fn inspect_and_ps_show_published_ports_in_dockers_shape() {
    let b = with_busybox();
    // Published ports live on the bridge: the container runs in a network namespace of the test's own.
    let ns = format!("bi-{}", std::process::id());
    let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().expect("ip").success(), "ip {args:?}");
    ip(&["netns", "add", &ns]);
    ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
    let run = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(bin())
        .arg("--root")
        .arg(b.root())
        .args(["run", "-d", "--name", "pub", "-p", "127.0.0.1::80", "-p", "18081:81/udp", "busybox:test", "sleep", "60"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_success(&run, &["run", "-d", "-p", "…"]);
    let c = inspect(&b, "pub");
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(c["HostConfig"]["PortBindings"], serde_json::json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}], "81/udp": [{"HostIp": "", "HostPort": "18081"}]}));
    let ports = &c["NetworkSettings"]["Ports"];
    let tcp = ports["80/tcp"][0]["HostPort"].as_str().expect("a host port for 80/tcp").to_string();
    assert!(tcp.parse::<u16>().is_ok_and(|p| p > 0), "{ports}");
    assert_eq!(ports["80/tcp"][0]["HostIp"], "127.0.0.1");
    assert_eq!(ports["81/udp"], serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": "18081"}]));
    assert_eq!(c["Config"]["ExposedPorts"], serde_json::json!({"80/tcp": {}, "81/udp": {}}));
    let address = c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"].as_str().unwrap_or("").to_string();
    assert!(address.parse::<std::net::Ipv4Addr>().is_ok(), "{}", c["NetworkSettings"]);
    assert_eq!(c["NetworkSettings"]["IPAddress"], address.as_str());
    assert_eq!(b.ok(&["ps", "--filter", "publish=18081/udp", "--format", "{{.Names}}"]), "pub\n");
    assert_eq!(b.ok(&["ps", "--filter", &format!("publish={tcp}"), "--format", "{{.Names}}"]), "pub\n");
    assert_eq!(b.ok(&["ps", "--filter", "publish=18081", "-q"]), "", "18081 is published for udp only");
    assert_eq!(b.ok(&["ps", "--filter", "expose=80", "--filter", "network=bridge", "--format", "{{.Names}} {{.Networks}}"]), "pub bridge\n");
    let ps = b.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps, format!("127.0.0.1:{tcp}->80/tcp, 0.0.0.0:18081->81/udp\n"));
    b.ok(&["rm", "-f", "pub"]);
    ip(&["netns", "delete", &ns]);
}

#[test]
fn log_opt_max_size_and_max_file_rotate_the_json_log() {
    let b = with_busybox();
    // 300 numbered lines of ~30 bytes: about 27 kB of json-file records, rotated at 2 kB into at most 3 files.
    let script = "i=1; while [ $i -le 300 ]; do echo \"line $i of the rotating log\"; i=$((i+1)); done";
    b.ok(&["run", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "busybox:test", "sh", "-c", script]);
    let dir = b.root().join("containers").join(b.ok(&["inspect", "-f", "{{.Id}}", "chatty"]).trim());
    let mut logs: Vec<String> = std::fs::read_dir(&dir).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("container.log")).collect();
    logs.sort();
    assert_eq!(logs, ["container.log", "container.log.1", "container.log.2"], "three files at most");
    for name in &logs {
        let size = std::fs::metadata(dir.join(name)).expect("size").len();
        assert!(size < 2048 + 200, "{name} is {size} bytes, past max-size by more than a record");
    }
    let shown = b.ok(&["logs", "chatty"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.last(), Some(&"line 300 of the rotating log"), "the newest lines are kept");
    assert!(!shown.contains("line 1 of"), "the oldest lines went with the dropped file");
    // What is kept is in order, with nothing missing between the rotated files.
    let numbers: Vec<u32> = lines.iter().map(|l| l.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("numbered")).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(b.ok(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", "chatty"]), "{\"Config\":{\"max-file\":\"3\",\"max-size\":\"2k\"},\"Type\":\"json-file\"}\n");
    b.ok(&["rm", "chatty"]);

    assert!(b.fails(&["run", "--rm", "--log-opt", "max-file=2", "busybox:test", "true"]).contains("needs max-size"));
    assert!(b.fails(&["run", "--rm", "--log-opt", "max-size=lots", "busybox:test", "true"]).contains("invalid --log-opt \"max-size=lots\""));
    assert!(b.fails(&["run", "--rm", "--log-opt", "colour=red", "busybox:test", "true"]).contains("unknown option \"colour\""));
    assert!(b.fails(&["run", "--rm", "--log-driver", "syslog", "busybox:test", "true"]).contains("invalid --log-driver \"syslog\""));
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn logs_follow_keeps_reading_across_a_rotation() {
    let b = with_busybox();
    // A line every 50 ms; a 1 kB file holds about a dozen records, so the log rotates every ~0.6 s.
    let script = "i=1; while [ $i -le 40 ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done";
    b.ok(&["run", "-d", "--name", "ticker", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox:test", "sh", "-c", script]);
    let followed = b.ok(&["logs", "-f", "ticker"]);
    let numbers: Vec<u32> = followed.lines().map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{l:?} in {followed}"))).collect();
    assert_eq!(numbers.last(), Some(&40), "{followed}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "a line lost or repeated across a rotation: {numbers:?}");
    assert!(b.root().join("containers").join(b.ok(&["inspect", "-f", "{{.Id}}", "ticker"]).trim()).join("container.log.1").exists(), "the log rotated");
    b.ok(&["rm", "ticker"]);
}
