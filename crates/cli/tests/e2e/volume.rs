//! End-to-end tests: `builder volume create / ls / inspect / rm / prune`, and named,
//! anonymous and tmpfs volumes in `run`.
#[allow(unused_imports)] use crate::util::*;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn volume_create_ls_inspect_rm_round_trip() {
    let b = Builder::new();
    assert_eq_text("data\n", &b.ok(&["volume", "create", "--label", "tier=db", "data"]));
    assert_eq_text("data\n", &b.ok(&["volume", "create", "data"]));
    assert_eq_text("DRIVER    VOLUME NAME\nlocal     data\n", &b.ok(&["volume", "ls"]));

    let json: serde_json::Value = serde_json::from_str(&b.ok(&["volume", "inspect", "data"])).expect("inspect JSON");
    let v = &json[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["tier"], "db");
    let mountpoint = b.root().join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.to_str().expect("utf-8 path"));
    assert!(mountpoint.is_dir());

    assert_eq_text(&format!("{}\n", mountpoint.display()), &b.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]));
    assert_eq_text("data local tier=db\n", &b.ok(&["volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}"]));
    assert_eq_text("VOLUME NAME   SCOPE\ndata          local\n", &b.ok(&["volume", "ls", "--format", "table {{.Name}}\t{{.Scope}}"]));
    let err = b.fails(&["volume", "ls", "--format", "{{.Colour}}"]);
    assert!(err.contains("Colour"), "{err}");

    assert_eq_text("data\n", &b.ok(&["volume", "rm", "data"]));
    assert_eq_text("DRIVER    VOLUME NAME\n", &b.ok(&["volume", "ls"]));
    assert!(!b.root().join("volumes/data").exists());
}

#[test]
fn volume_without_a_name_is_anonymous_and_pruned_while_named_ones_stay() {
    let b = Builder::new();
    let anon = b.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    b.ok(&["volume", "create", "keep"]);
    std::fs::write(b.root().join("volumes").join(&anon).join("_data/f"), "12345").expect("write into the volume");

    let out = b.ok(&["volume", "prune", "-f"]);
    assert_eq_text(&format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 5B\n"), &out);
    assert_eq_text("keep\n", &b.ok(&["volume", "ls", "-q"]));
    assert_eq_text("Deleted Volumes:\nkeep\n\nTotal reclaimed space: 0B\n", &b.ok(&["volume", "prune", "-f", "--all"]));
}

#[test]
fn volume_ls_and_prune_filters_pick_by_name_and_label() {
    let b = Builder::new();
    b.ok(&["volume", "create", "--label", "app=shop", "shop-db"]);
    b.ok(&["volume", "create", "--label", "app=blog", "blog-db"]);
    b.ok(&["volume", "create", "cache"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "name=db"])), ["blog-db", "shop-db"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "label=app=shop"])), ["shop-db"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "label=app"])), ["blog-db", "shop-db"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "dangling=true"])), ["blog-db", "cache", "shop-db"]);
    assert_eq_text("", &b.ok(&["volume", "ls", "-q", "--filter", "dangling=false"]));

    b.ok(&["volume", "prune", "-af", "--filter", "label!=app"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q"])), ["blog-db", "shop-db"]);
}

#[test]
fn volume_bad_input_is_an_error_naming_it() {
    let b = Builder::new();
    let err = b.fails(&["volume", "create", "no/slash"]);
    assert!(err.contains("\"no/slash\"") && err.contains("invalid characters"), "{err}");
    let err = b.fails(&["volume", "create", "-d", "nfs", "x1"]);
    assert!(err.contains("\"nfs\""), "{err}");
    let err = b.fails(&["volume", "create", "-o", "size=1g", "x1"]);
    assert!(err.contains("\"size\""), "{err}");
    let err = b.fails(&["volume", "ls", "--filter", "colour=red"]);
    assert!(err.contains("\"colour=red\""), "{err}");
    let err = b.fails(&["volume", "inspect", "nope"]);
    assert!(err.contains("no such volume: nope"), "{err}");
    let err = b.fails(&["volume", "rm", "nope"]);
    assert!(err.contains("no such volume: nope"), "{err}");
    b.ok(&["volume", "rm", "-f", "nope"]);
    assert_eq_text("", &b.ok(&["volume", "ls", "-q"]));
}

/// `busybox:test` plus `seeded:test`: files at /srv/data (owned by 1000) and a `VOLUME /srv/data`.
fn with_seeded_image() -> Builder {
    let b = with_busybox();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox:test\nCOPY --chown=1000:1000 seed/ /srv/data/\nVOLUME /srv/data\n"),
        ("seed/seed.txt", "from the image\n"),
    ]);
    b.ok(&["build", "-q", "-t", "seeded:test", ctx.path().to_str().expect("utf-8")]);
    b
}

fn sh_out(b: &Builder, opts: &[&str], image: &str, script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    b.ok(&args)
}

/// No mounts under the root and no process still using it.
fn assert_no_mounts_left(b: &Builder) {
    let root = b.root().to_str().expect("utf-8").to_string();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().filter(|l| l.contains(&root)).map(String::from).collect();
    assert!(mounts.is_empty(), "mounts left under {root}: {mounts:#?}");
}

#[test]
fn named_volume_written_by_one_container_is_read_by_the_next() {
    let b = with_busybox();
    sh_out(&b, &["-v", "notes:/notes"], "busybox:test", "echo first > /notes/a.txt");
    assert_eq_text("notes\n", &b.ok(&["volume", "ls", "-q"]));
    assert_eq_text("first\n", &sh_out(&b, &["-v", "notes:/data:ro"], "busybox:test", "cat /data/a.txt"));
    let out = sh_out(&b, &["-v", "notes:/data:ro"], "busybox:test", "touch /data/b.txt 2>&1; echo rc=$?");
    assert!(out.contains("Read-only file system") && out.contains("rc=1"), "{out}");
    assert_no_mounts_left(&b);
}

#[test]
fn new_volume_is_filled_from_the_image_once() {
    let b = with_seeded_image();
    let out = sh_out(&b, &["-v", "data:/srv/data"], "seeded:test", "cat /srv/data/seed.txt; stat -c %u /srv/data/seed.txt; echo mine > /srv/data/seed.txt");
    assert_eq_text("from the image\n1000\n", &out);
    // Not empty any more: not filled again, the container's change stays.
    assert_eq_text("mine\n", &sh_out(&b, &["-v", "data:/srv/data"], "seeded:test", "cat /srv/data/seed.txt"));
    // nocopy: a new volume stays empty.
    assert_eq_text("", &sh_out(&b, &["-v", "bare:/srv/data:nocopy"], "seeded:test", "ls /srv/data"));
    // A host directory is never filled.
    let host = b.root().join("host-dir");
    std::fs::create_dir(&host).expect("host dir");
    assert_eq_text("", &sh_out(&b, &["-v", &format!("{}:/srv/data", host.display())], "seeded:test", "ls /srv/data"));
    assert_no_mounts_left(&b);
}

#[test]
fn image_volume_gets_an_anonymous_volume_that_rm_v_and_run_rm_remove() {
    let b = with_seeded_image();
    // run --rm: the anonymous volume goes with the container.
    assert_eq_text("from the image\n", &sh_out(&b, &[], "seeded:test", "cat /srv/data/seed.txt"));
    assert_eq_text("", &b.ok(&["volume", "ls", "-q"]));

    // A kept container keeps its anonymous volume (filled from the image) until rm -v.
    b.ok(&["run", "--name", "keeper", "seeded:test", "sh", "-c", "echo more > /srv/data/more.txt"]);
    let names = b.ok(&["volume", "ls", "-q"]);
    let anon = names.trim();
    assert_eq!(anon.len(), 64, "{names}");
    let data = b.root().join("volumes").join(anon).join("_data");
    assert!(data.join("seed.txt").exists() && data.join("more.txt").exists());
    let err = b.fails(&["volume", "rm", anon]);
    assert!(err.contains("in use by container keeper"), "{err}");
    b.ok(&["rm", "-v", "keeper"]);
    assert_eq_text("", &b.ok(&["volume", "ls", "-q"]));

    // rm without -v leaves it, for prune.
    b.ok(&["run", "--name", "k2", "seeded:test", "true"]);
    b.ok(&["rm", "k2"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    b.ok(&["volume", "prune", "-f"]);
    assert_eq_text("", &b.ok(&["volume", "ls", "-q"]));
    assert_no_mounts_left(&b);
}

#[test]
fn volume_rm_of_a_volume_in_use_fails_with_the_container_s_name() {
    let b = with_busybox();
    b.ok(&["run", "-d", "--name", "db", "-v", "pgdata:/var/lib/data", "busybox:test", "sleep", "1000"]);
    let err = b.fails(&["volume", "rm", "pgdata"]);
    assert!(err.contains("volume pgdata is in use by container db"), "{err}");
    b.ok(&["volume", "prune", "-af"]);
    assert_eq_text("pgdata\n", &b.ok(&["volume", "ls", "-q"]));
    assert_eq_text("", &b.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]));
    // Stopped, the container still holds it, as in Docker.
    b.ok(&["stop", "-t", "0", "db"]);
    assert!(b.fails(&["volume", "rm", "pgdata"]).contains("container db"));
    b.ok(&["rm", "db"]);
    assert_eq_text("pgdata\n", &b.ok(&["volume", "rm", "pgdata"]));
    assert_no_mounts_left(&b);
}

#[test]
fn mount_and_tmpfs_flags_make_bind_volume_and_tmpfs_mounts() {
    let b = with_busybox();
    let host = b.root().join("site");
    std::fs::create_dir(&host).expect("site");
    std::fs::write(host.join("index.html"), "hi\n").expect("index");
    let bind = format!("type=bind,source={},target=/srv,readonly", host.display());
    let out = sh_out(
        &b,
        &["--mount", &bind, "--mount", "type=volume,src=cache,dst=/cache", "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m", "--tmpfs", "/run/app:size=2m"],
        "busybox:test",
        "cat /srv/index.html; touch /srv/x 2>/dev/null || echo srv-ro; echo c > /cache/c; grep -E ' /(scratch|run/app) ' /proc/mounts | cut -d' ' -f2,3,4",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hi"));
    assert_eq!(lines.next(), Some("srv-ro"));
    let rest: Vec<&str> = lines.collect();
    assert!(rest.iter().any(|l| l.starts_with("/scratch tmpfs rw,nosuid,nodev,noexec") && l.contains("size=1024k")), "{out}");
    assert!(rest.iter().any(|l| l.starts_with("/run/app tmpfs") && l.contains("size=2048k")), "{out}");
    assert!(b.root().join("volumes/cache/_data/c").exists());

    let missing = format!("type=bind,source={},target=/x", b.root().join("nope").display());
    let err = b.fails(&["run", "--rm", "--mount", &missing, "busybox:test", "true"]);
    assert!(err.contains("bind source path does not exist") && err.contains("nope"), "{err}");
    let err = b.fails(&["run", "--rm", "--mount", "type=tmpfs,target=/x,tmpfs-size=lots", "busybox:test", "true"]);
    assert!(err.contains("--mount \"type=tmpfs,target=/x,tmpfs-size=lots\""), "{err}");
    let err = b.fails(&["run", "--rm", "-v", "/a:/x", "-v", "v1:/x", "busybox:test", "true"]);
    assert!(err.contains("duplicate mount point: /x"), "{err}");
    assert_eq_text("cache\n", &b.ok(&["volume", "ls", "-q"]));
    assert_no_mounts_left(&b);
}

#[test]
fn volumes_from_shares_another_container_s_volumes() {
    let b = with_busybox();
    b.ok(&["run", "--name", "store", "-v", "shared:/shared", "-v", "/anon", "busybox:test", "sh", "-c", "echo s > /shared/s; echo a > /anon/a"]);
    assert_eq_text("s\na\n", &sh_out(&b, &["--volumes-from", "store"], "busybox:test", "cat /shared/s /anon/a"));
    let out = sh_out(&b, &["--volumes-from", "store:ro"], "busybox:test", "touch /shared/t 2>/dev/null || echo ro");
    assert_eq_text("ro\n", &out);
    let err = b.fails(&["run", "--rm", "--volumes-from", "nobody", "busybox:test", "true"]);
    assert!(err.contains("nobody"), "{err}");
    b.ok(&["rm", "-v", "store"]);
    assert_eq_text("shared\n", &b.ok(&["volume", "ls", "-q"]));
    assert_no_mounts_left(&b);
}

#[test]
fn commit_leaves_out_what_is_in_volumes() {
    let b = with_busybox();
    b.ok(&["run", "--name", "writer", "-v", "keep:/vol", "busybox:test", "sh", "-c", "echo in-volume > /vol/v; echo in-layer > /layer.txt"]);
    b.ok(&["commit", "writer", "committed:test"]);
    b.ok(&["rm", "writer"]);
    assert_eq_text("in-layer\nno\n", &sh_out(&b, &[], "committed:test", "cat /layer.txt; test -e /vol/v && echo yes || echo no"));
}

#[test]
fn after_kill_9_of_the_shim_the_volume_stays_held_until_the_container_is_removed() {
    let b = with_busybox();
    let id = b.ok(&["run", "-d", "--name", "victim", "-v", "held:/data", "busybox:test", "sh", "-c", "echo up > /data/up; sleep 1000"]).trim().to_string();
    let state_path = b.root().join("containers").join(&id).join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).expect("state")).expect("state JSON");
    let shim = state["supervisor"].as_i64().expect("a supervisor pid");
    let data = b.root().join("volumes/held/_data/up");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !data.exists() {
        assert!(std::time::Instant::now() < deadline, "the container never wrote to its volume");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(std::process::Command::new("kill").args(["-9", &shim.to_string()]).status().expect("kill").success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while b.ok(&["ps", "-q"]).contains(&id[..12]) {
        assert!(std::time::Instant::now() < deadline, "the container outlived its shim");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(b.fails(&["volume", "rm", "held"]).contains("in use by container victim"));
    b.ok(&["rm", "victim"]);
    assert_eq_text("held\n", &b.ok(&["volume", "rm", "held"]));
    assert_no_mounts_left(&b);
}
