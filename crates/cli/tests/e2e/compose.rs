//! `builder compose`: the resolved file (`config`) and the errors for bad files; the
//! container life cycle of a project.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

/// `builder compose ARGS…` run in `dir`, with only the variables given (plus PATH).
fn compose(b: &Builder, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd: Command = b.cmd();
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).arg("compose").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn builder")
}

/// `builder compose ARGS…` in `dir` (outside a test namespace); asserts success; its stdout.
fn compose_ok(b: &Builder, dir: &Path, args: &[&str]) -> String {
    let out = compose(b, dir, &[], args);
    assert_success(&out, args);
    text(&out.stdout)
}

/// A network namespace of the test's own (loopback up), so services that listen on ports
/// touch nothing outside it; removed when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!("bc-compose-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add").success();
        assert!(ok, "ip netns add {name}");
        let ok = Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]).status().expect("ip link").success();
        assert!(ok, "lo up in {name}");
        Netns(name)
    }

    /// `builder compose ARGS…` in `dir`, inside the namespace.
    fn compose(&self, b: &Builder, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(bin()).arg("--root").arg(b.root()).arg("compose").args(args);
        cmd.current_dir(dir).stdin(std::process::Stdio::null());
        cmd.output().expect("spawn builder")
    }

    fn ok(&self, b: &Builder, dir: &Path, args: &[&str]) -> String {
        let out = self.compose(b, dir, args);
        assert_success(&out, args);
        text(&out.stdout)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

/// Asserts the state root has no containers left.
fn assert_no_containers(b: &Builder) {
    let left = b.ok(&["ps", "-a", "-q"]);
    assert!(left.trim().is_empty(), "containers left behind: {left}");
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tmp");
    for (name, body) in files {
        let p = t.path().join("shop").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    t
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn pause_freezes_the_services_and_unpause_thaws_them() {
    // Outside a test namespace (`ip netns exec` mounts a /sys without the cgroup hierarchies the
    // freezer needs), so without a network: nothing is made on the host's.
    let b = with_busybox();
    let file = "services:\n  tick:\n    image: busybox:test\n    network_mode: none\n    command: sh -c 'i=0; while true; do i=$$((i+1)); echo $$i > /tmp/n; sleep 0.05; done'\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ok = |args: &[&str]| compose_ok(&b, &dir, args);
    ok(&["up", "-d"]);
    // The counter, read from the container's upper directory (an exec would freeze too).
    let id = b.ok(&["inspect", "-f", "{{.Id}}", "shop-tick-1"]).trim().to_string();
    let n = b.root().join("containers").join(&id).join("upper/tmp/n");
    let count = || -> u64 { std::fs::read_to_string(&n).unwrap_or_default().trim().parse().unwrap_or(0) };
    let status = || b.ok(&["inspect", "-f", "{{.State.Status}}", "shop-tick-1"]).trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&["pause", "tick"]);
    assert_eq!(status(), "paused");
    let at_pause = count();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(count(), at_pause, "a paused loop went on");
    ok(&["unpause", "tick"]);
    assert_eq!(status(), "running");
    let before = count();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(count() > before, "the loop runs again after unpause");
    ok(&["down", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn version_prints_the_compose_version_as_docker_compose_does() {
    let b = with_busybox();
    let t = tempfile::tempdir().expect("tmp");
    // No compose file is needed.
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(text(&compose(&b, t.path(), &[], &["version"]).stdout), format!("builder compose version v{v}\n"));
    assert_eq!(text(&compose(&b, t.path(), &[], &["version", "--short"]).stdout), format!("{v}\n"));
    assert_eq!(text(&compose(&b, t.path(), &[], &["version", "--format", "json"]).stdout), format!("{{\"version\":\"v{v}\"}}\n"));
}

#[test]
fn config_prints_the_merged_interpolated_normalized_file() {
    let t = project(&[
        ("docker-compose.yml", "version: \"3\"\nservices:\n  web:\n    image: \"shop:${TAG}\"\n    ports:\n      - ${PORT:-8080}:80\n    environment:\n      - MODE=dev\n    depends_on: [db]\n  db:\n    image: busybox:test\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n"),
        ("prod.yml", "services:\n  web:\n    environment:\n      MODE: prod\n"),
        (".env", "TAG=1.0\n"),
    ]);
    let dir = t.path().join("shop");
    let b = Builder::new();
    let out = compose(&b, &dir, &[("PORT", "9000")], &["-f", "docker-compose.yml", "-f", "prod.yml", "config"]);
    assert_success(&out, &["compose", "config"]);
    assert_eq_text(
        "name: shop
networks:
  default:
    name: shop_default
services:
  db:
    image: busybox:test
    networks:
      default: {}
    volumes:
      - source: data
        target: /data
        type: volume
  web:
    depends_on:
      db:
        condition: service_started
        required: true
    environment:
      MODE: prod
    image: shop:1.0
    networks:
      default: {}
    ports:
      - mode: ingress
        protocol: tcp
        published: \"9000\"
        target: 80
volumes:
  data:
    name: shop_data
",
        &text(&out.stdout),
    );
    let out = compose(&b, &dir, &[], &["-p", "other", "config", "--services"]);
    assert_success(&out, &["compose", "config", "--services"]);
    assert_eq!(text(&out.stdout), "db\nweb\n");
}

#[test]
fn bad_files_are_errors_naming_file_line_and_key() {
    let b = Builder::new();
    let cases: &[(&str, &str)] = &[
        ("services:\n  web:\n    image: [busybox\n", "docker-compose.yml:4:"),
        ("services:\n  web:\n    image: busybox\n    prots: ['80:80']\n", "docker-compose.yml:4:5: services.web.prots: unknown key `prots`"),
        ("services:\n  web:\n    image: busybox\n    ports: ['80:eighty']\n", "docker-compose.yml:4:13: services.web.ports[0]: invalid port \"80:eighty\""),
        ("services:\n  web:\n    image: busybox\n    scale: lots\n", "docker-compose.yml:4:12: services.web.scale: wrong type"),
        ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n", "depends_on cycle: a -> b -> a"),
        ("services:\n  db:\n    image: busybox\n    environment:\n      PW: ${DB_PW:?set DB_PW}\n", "docker-compose.yml:5:11: services.db.environment.PW: required variable DB_PW is missing a value: set DB_PW"),
    ];
    for (file, want) in cases {
        let t = project(&[("docker-compose.yml", file)]);
        let out = compose(&b, &t.path().join("shop"), &[], &["config"]);
        assert!(!out.status.success(), "{file}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "for\n{file}\nwant {want:?} in:\n{err}");
        assert!(out.stdout.is_empty());
        let out = compose(&b, &t.path().join("shop"), &[], &["up", "-d"]);
        assert!(!out.status.success() && text(&out.stderr).contains(want), "up refuses the file as config does");
    }
    assert_no_containers(&b);
}

/// db serves a page over HTTP once it has written it; web fetches it by the service name.
const TWO_SERVICES: &str = r#"
services:
  db:
    image: busybox:test
    init: true
    stop_grace_period: 2s
    command: sh -c 'mkdir -p /www && echo hello-from-db > /www/index.html && echo db ready && exec httpd -f -p 8081 -h /www'
    healthcheck:
      test: wget -q -O- http://127.0.0.1:8081/
      interval: 200ms
      retries: 20
  web:
    image: busybox:test
    command: sh -c 'wget -q -O- http://db:8081/ && echo web done'
    depends_on:
      db:
        condition: service_healthy
"#;

#[test]
fn up_starts_in_depends_on_order_waits_for_health_and_services_reach_each_other_by_name() {
    let b = with_busybox();
    let t = project(&[("compose.yaml", TWO_SERVICES)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.compose(&b, &dir, &["up", "--abort-on-container-exit"]);
    assert_success(&out, &["compose", "up"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("db-1   | db ready\n"), "{stdout}");
    // Each service's lines in order; the printer follows the services at once, so theirs interleave.
    assert_eq!(service_lines(&stdout, "web-1  | "), "hello-from-db\nweb done\n", "{stdout}");
    assert!(stdout.contains("web-1 exited with code 0"), "{stdout}");
    let healthy = stderr.find("Container shop-db-1  Healthy").expect("db became healthy");
    let web = stderr.find("Container shop-web-1  Creating").expect("web created");
    assert!(healthy < web, "web was created before db was healthy:\n{stderr}");

    let ps = ns.ok(&b, &dir, &["ps", "-a"]);
    assert!(ps.contains("shop-db-1") && ps.contains("shop-web-1") && ps.contains("Exited (0)"), "{ps}");
    ns.ok(&b, &dir, &["down"]);
    assert_eq!(ns.ok(&b, &dir, &["ps", "-a", "-q"]), "");
    assert_no_containers(&b);
}

#[test]
fn a_failing_health_check_stops_up_before_the_dependent_starts() {
    let b = with_busybox();
    let file = TWO_SERVICES.replace("wget -q -O- http://127.0.0.1:8081/\n      interval: 200ms\n      retries: 20", "[\"CMD\", \"false\"]\n      interval: 100ms\n      retries: 3");
    let t = project(&[("compose.yaml", &file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.compose(&b, &dir, &["up", "-d"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("dependency failed to start for service web") && err.contains("container shop-db-1 is unhealthy"), "{err}");
    assert!(!err.contains("shop-web-1  Creating"), "{err}");
    ns.ok(&b, &dir, &["down"]);
    assert_no_containers(&b);
}

#[test]
fn a_named_volume_survives_down_and_down_v_removes_it() {
    let b = with_busybox();
    let file = "services:\n  counter:\n    image: busybox:test\n    command: sh -c 'echo x >> /data/log; echo runs=$$(wc -l < /data/log)'\n    volumes: [count:/data]\nvolumes:\n  count: {}\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    assert!(ns.ok(&b, &dir, &["up"]).contains("counter-1  | runs=1"));
    let inspect = b.ok(&["volume", "inspect", "shop_count"]);
    assert!(inspect.contains("\"com.docker.compose.project\": \"shop\"") && inspect.contains("\"com.docker.compose.volume\": \"count\""), "{inspect}");
    ns.ok(&b, &dir, &["down"]);
    assert!(b.ok(&["volume", "ls", "-q"]).contains("shop_count"), "down keeps the volume");
    assert!(ns.ok(&b, &dir, &["up"]).contains("counter-1  | runs=2"), "the volume kept its data over down");
    let out = ns.compose(&b, &dir, &["down", "-v"]);
    assert_success(&out, &["compose", "down", "-v"]);
    assert!(text(&out.stderr).contains("Volume shop_count  Removed"));
    assert!(!b.ok(&["volume", "ls", "-q"]).contains("shop_count"));
    assert!(ns.ok(&b, &dir, &["up"]).contains("counter-1  | runs=1"), "down -v removed the volume");
    ns.ok(&b, &dir, &["down", "-v"]);
    assert_no_containers(&b);
}

#[test]
fn up_on_a_running_project_recreates_only_the_service_that_changed() {
    let b = with_busybox();
    let file = |greeting: &str| format!("services:\n  api:\n    image: busybox:test\n    init: true\n    command: sleep 300\n    environment: {{GREETING: {greeting}}}\n  worker:\n    image: busybox:test\n    init: true\n    command: sleep 300\n");
    let t = project(&[("compose.yaml", &file("hello"))]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["--compatibility", "up", "-d"]);
    let ids = |svc: &str| ns.ok(&b, &dir, &["--compatibility", "ps", "-q", svc]).trim().to_string();
    let (api, worker) = (ids("api"), ids("worker"));
    assert!(!api.is_empty() && !worker.is_empty());
    let names = b.ok(&["ps"]);
    assert!(names.contains("shop_api_1") && names.contains("shop_worker_1"), "1.29 names with --compatibility: {names}");

    let out = ns.compose(&b, &dir, &["--compatibility", "up", "-d"]);
    assert_success(&out, &["compose", "up", "-d"]);
    assert!(text(&out.stderr).contains("Container shop_api_1  Running"));
    assert_eq!((ids("api"), ids("worker")), (api.clone(), worker.clone()), "nothing changed, nothing recreated");

    std::fs::write(dir.join("compose.yaml"), file("changed")).expect("edit");
    let out = ns.compose(&b, &dir, &["--compatibility", "up", "-d"]);
    assert_success(&out, &["compose", "up", "-d"]);
    assert!(text(&out.stderr).contains("Container shop_api_1  Recreate"), "{}", text(&out.stderr));
    assert_ne!(ids("api"), api, "the edited service was recreated");
    assert_eq!(ids("worker"), worker, "the other service was left running");
    let env = ns.ok(&b, &dir, &["--compatibility", "exec", "api", "sh", "-c", "echo $GREETING"]);
    assert_eq!(env, "changed\n");
    ns.ok(&b, &dir, &["--compatibility", "down", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn build_services_are_built_by_builder_with_args_and_target() {
    let b = with_busybox();
    let dockerfile = "FROM busybox:test AS base\nARG FLAVOUR=plain\nRUN echo \"flavour=$FLAVOUR\" > /msg\nFROM base AS dev\nRUN echo stage=dev >> /msg\nFROM base AS prod\nRUN echo stage=prod >> /msg\n";
    let file = "services:\n  app:\n    build:\n      context: ./app\n      target: dev\n      args: {FLAVOUR: \"${FLAVOUR}\"}\n    command: cat /msg\n";
    let t = project(&[("compose.yaml", file), ("app/Dockerfile", dockerfile), (".env", "FLAVOUR=mint\n")]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.ok(&b, &dir, &["up"]);
    assert!(out.contains("app-1  | flavour=mint\napp-1  | stage=dev\n"), "{out}");
    let images = ns.ok(&b, &dir, &["images"]);
    assert!(images.contains("shop-app-1") && images.contains("shop-app"), "{images}");
    ns.ok(&b, &dir, &["down", "--rmi", "local"]);
    assert!(b.fails(&["inspect", "shop-app"]).contains("shop-app"), "down --rmi local removed the built image");
    assert_no_containers(&b);
}

#[test]
fn run_exec_logs_stop_start_and_kill_act_on_the_services() {
    let b = with_busybox();
    let file = "services:\n  svc:\n    image: busybox:test\n    init: true\n    command: sh -c 'echo started; exec sleep 300'\n    working_dir: /tmp\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    assert_eq!(ns.ok(&b, &dir, &["exec", "svc", "pwd"]), "/tmp\n");
    assert_eq!(ns.ok(&b, &dir, &["run", "--rm", "svc", "echo", "one-off"]), "one-off\n");
    assert_eq!(ns.ok(&b, &dir, &["logs", "--no-color", "svc"]), "svc-1  | started\n");
    ns.ok(&b, &dir, &["stop", "-t", "1"]);
    assert!(ns.ok(&b, &dir, &["ps"]).lines().count() == 1, "only the header when nothing runs");
    ns.ok(&b, &dir, &["start"]);
    assert!(ns.ok(&b, &dir, &["ps"]).contains("Up "));
    ns.ok(&b, &dir, &["kill"]);
    assert!(ns.ok(&b, &dir, &["ps", "-a"]).contains("Exited (137)"));
    ns.ok(&b, &dir, &["rm", "-f"]);
    assert_eq!(ns.ok(&b, &dir, &["ps", "-a", "-q"]), "");
    ns.ok(&b, &dir, &["down"]);
    assert_no_containers(&b);
}

#[test]
fn ctrl_c_in_the_foreground_stops_the_services() {
    let b = with_busybox();
    let file = "services:\n  ticker:\n    image: busybox:test\n    init: true\n    stop_grace_period: 5s\n    command: sh -c 'echo tick; exec sleep 300'\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(bin())
        .arg("--root")
        .arg(b.root())
        .args(["compose", "up"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn compose up");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
    assert_eq!(line, "ticker-1  | tick\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let err = text(&out.stderr);
    assert!(err.contains("Gracefully stopping...") && err.contains("Container shop-ticker-1  Stopped"), "{err}");
    assert!(ns.ok(&b, &dir, &["ps", "-a"]).contains("Exited"), "the container stopped and is kept, as compose keeps it");
    ns.ok(&b, &dir, &["down"]);
    assert_no_containers(&b);
}

#[test]
fn scale_runs_numbered_replicas_and_completed_dependencies_run_first() {
    let b = with_busybox();
    let file = "services:\n  migrate:\n    image: busybox:test\n    command: sh -c 'echo migrated > /state/done'\n    volumes: [state:/state]\n  app:\n    image: busybox:test\n    init: true\n    command: sh -c 'cat /state/done; exec sleep 300'\n    scale: 2\n    volumes: [state:/state]\n    depends_on:\n      migrate: {condition: service_completed_successfully}\nvolumes:\n  state:\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    let ps = ns.ok(&b, &dir, &["ps", "--services"]);
    assert_eq!(ps, "app\n", "migrate has exited, the app replicas run");
    let names = ns.ok(&b, &dir, &["ps", "--format", "json"]);
    assert!(names.contains("\"shop-app-1\"") && names.contains("\"shop-app-2\""), "{names}");
    let logs = ns.ok(&b, &dir, &["logs", "--no-color", "app"]);
    assert_eq!(logs, "app-1  | migrated\napp-2  | migrated\n", "both replicas started after migrate completed");
    let out = ns.compose(&b, &dir, &["up", "-d", "--scale", "app=1", "app"]);
    assert_success(&out, &["compose", "up", "--scale", "app=1"]);
    let ps = ns.ok(&b, &dir, &["ps", "--format", "json"]);
    assert!(ps.contains("\"shop-app-1\"") && !ps.contains("\"shop-app-2\""), "{ps}");
    // `compose scale`, as docker compose has it.
    ns.ok(&b, &dir, &["scale", "app=3"]);
    let ps = ns.ok(&b, &dir, &["ps", "--format", "json"]);
    assert!(ps.contains("\"shop-app-3\""), "{ps}");
    let out = ns.compose(&b, &dir, &["scale", "app=x"]);
    assert!(!out.status.success() && text(&out.stderr).contains("--scale \"app=x\": \"x\" is not a number"), "{}", text(&out.stderr));
    ns.ok(&b, &dir, &["down", "-v", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn restart_policies_restart_failed_services_until_their_limit_and_not_after_stop() {
    let b = with_busybox();
    let file = "services:\n  flaky:\n    image: busybox:test\n    command: sh -c 'echo attempt; exit 3'\n    restart: on-failure:2\n  steady:\n    image: busybox:test\n    init: true\n    command: sh -c 'echo up; sleep 0.3'\n    restart: always\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    let attempts = || ns.ok(&b, &dir, &["logs", "--no-color", "flaky"]).matches("attempt").count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while attempts() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(attempts(), 3, "the first run and two restarts (on-failure:2)");
    let ups = || ns.ok(&b, &dir, &["logs", "--no-color", "steady"]).matches("up").count();
    while ups() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ups() >= 3, "always: restarted after each clean exit");
    ns.ok(&b, &dir, &["stop", "-t", "1", "steady"]);
    let after_stop = ups();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(ups(), after_stop, "a stopped service is not restarted");
    assert_eq!(attempts(), 3, "on-failure gave up after 2 restarts");
    let ps = ns.ok(&b, &dir, &["ps", "-a"]);
    assert!(ps.contains("Exited (3)") && !ps.contains("Up "), "{ps}");
    ns.ok(&b, &dir, &["down", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn volumes_tmpfs_and_anonymous_volumes_go_through_the_run_path() {
    let b = with_busybox();
    let dockerfile = "FROM busybox:test\nRUN mkdir -p /seed && echo from-image > /seed/file\n";
    let file = "services:\n  app:\n    build: .\n    command: sh -c 'cat /seed/file; grep -c \" /scratch tmpfs\" /proc/mounts; grep \" /cache \" /proc/mounts | cut -d\" \" -f3; touch /anon/x && echo anon-ok'\n    tmpfs: /scratch\n    volumes:\n      - seeded:/seed\n      - /anon\n      - type: tmpfs\n        target: /cache\nvolumes:\n  seeded:\n";
    let t = project(&[("compose.yaml", file), ("Dockerfile", dockerfile)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.ok(&b, &dir, &["up"]);
    assert!(out.contains("app-1  | from-image\napp-1  | 1\napp-1  | tmpfs\napp-1  | anon-ok\n"), "a new named volume is filled from the image; tmpfs mounts: {out}");
    let volumes = b.ok(&["volume", "ls", "-q"]);
    assert_eq!(volumes.lines().count(), 2, "the named and the anonymous volume: {volumes}");
    ns.ok(&b, &dir, &["down"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 2, "down keeps volumes");
    ns.ok(&b, &dir, &["down", "-v"]);
    assert_eq!(ns.ok(&b, &dir, &["up", "--no-build"]).lines().next(), Some("app-1  | from-image"));
    ns.ok(&b, &dir, &["down", "-v", "--rmi", "local"]);
    // As with docker compose: down -v takes the file's volumes and the anonymous ones of the
    // containers it removes; the one left dangling by the first plain down stays for prune.
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    b.ok(&["volume", "prune", "-f"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
    assert_no_containers(&b);
}

#[test]
fn push_sends_built_images_and_pull_fetches_the_services_images() {
    let reg = crate::util_registry::Registry::start();
    let image = format!("{}/shop/app:1", reg.addr());
    let b = with_busybox();
    let file = format!("services:\n  app:\n    build: .\n    image: {image}\n    command: cat /greeting\n");
    let t = project(&[("compose.yaml", &file), ("Dockerfile", "FROM busybox:test\nRUN echo pushed > /greeting\n")]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["build"]);
    let out = b.run(&["compose", "--project-directory", dir.to_str().expect("utf8"), "push"]);
    assert_success(&out, &["compose", "push"]);

    // Another state root: `pull` brings the image, `up --no-build` runs it.
    let other = Builder::new();
    let pull_file = format!("services:\n  app:\n    image: {image}\n    command: cat /greeting\n");
    std::fs::write(dir.join("compose.yaml"), pull_file).expect("write");
    let out = other.run(&["compose", "--project-directory", dir.to_str().expect("utf8"), "pull"]);
    assert_success(&out, &["compose", "pull"]);
    assert!(other.ok(&["images"]).contains(&format!("{}/shop/app", reg.addr())));
    assert!(ns.ok(&other, &dir, &["up", "--no-build"]).contains("app-1  | pushed"));
    ns.ok(&other, &dir, &["down"]);
    ns.ok(&b, &dir, &["down"]);
}

#[test]
fn services_get_the_project_networks_with_their_names_and_ports_and_down_removes_them() {
    let b = with_busybox();
    let file = r#"
services:
  web:
    image: busybox:test
    command: sh -c 'mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www'
    ports: ["3000:80"]
    networks: [default, back]
  worker:
    image: busybox:test
    command: sleep 600
    networks:
      back:
        aliases: [jobs]
networks:
  back:
    internal: true
    ipam:
      config:
        - subnet: 10.91.0.0/24
"#;
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let up = ns.compose(&b, &dir, &["up", "-d"]);
    assert_success(&up, &["compose", "up", "-d"]);
    let err = text(&up.stderr);
    assert!(err.contains("Network shop_default  Created") && err.contains("Network shop_back  Created"), "{err}");
    let in_ns = |args: &[&str]| -> Output { Command::new("ip").args(["netns", "exec", &ns.0]).args(args).stdin(std::process::Stdio::null()).output().expect("ip netns exec") };
    let builder = |args: &[&str]| -> String {
        let mut full = vec![bin().to_str().expect("utf8").to_string(), "--root".into(), b.root().to_str().expect("utf8").into()];
        full.extend(args.iter().map(|s| s.to_string()));
        text(&in_ns(&full.iter().map(String::as_str).collect::<Vec<_>>()).stdout)
    };
    // The tutorial's different host port: 3000 on the host is 80 in the container.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = in_ns(&["curl", "-s", "-m", "2", "http://127.0.0.1:3000/"]);
        if text(&out.stdout) == "hello-web\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "3000 never answered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let nets = builder(&["network", "ls", "--filter", "label=com.docker.compose.project=shop", "--format", "{{.Name}} {{.Internal}}"]);
    assert_eq!(nets, "shop_back true\nshop_default false\n");
    let back: serde_json::Value = serde_json::from_str(&builder(&["network", "inspect", "shop_back"])).expect("json");
    assert_eq!(back[0]["IPAM"]["Config"][0]["Subnet"], "10.91.0.0/24");
    // By service name and alias, on the network they share.
    let found = builder(&["exec", "shop-worker-1", "nslookup", "web"]);
    assert!(found.contains("Address: 10.91.0."), "{found}");
    let found = builder(&["exec", "shop-web-1", "nslookup", "jobs"]);
    assert!(found.contains("Address: 10.91.0."), "{found}");
    let found = builder(&["exec", "shop-web-1", "nslookup", "shop-worker-1"]);
    assert!(found.contains("Address: 10.91.0."), "{found}");
    let ps = ns.ok(&b, &dir, &["ps"]);
    assert!(ps.contains("0.0.0.0:3000->80/tcp"), "{ps}");

    let down = ns.compose(&b, &dir, &["down", "-t", "1"]);
    assert_success(&down, &["compose", "down"]);
    assert!(text(&down.stderr).contains("Network shop_back  Removed"), "{}", text(&down.stderr));
    assert_eq!(builder(&["network", "ls", "-q", "--filter", "type=custom"]), "");
    assert_no_containers(&b);
}

#[test]
fn secrets_from_files_and_variables_are_mounted_read_only_under_run_secrets() {
    let b = with_busybox();
    let file = "services:\n  app:\n    image: busybox:test\n    command: sh -c 'cat /run/secrets/db_password; echo; cat /etc/token; echo; stat -c \"%a %u %g\" /etc/token; { echo x > /run/secrets/db_password; } 2>/dev/null || echo read-only'\n    secrets:\n      - db_password\n      - source: token\n        target: /etc/token\n        uid: \"1000\"\n        gid: \"1000\"\n        mode: 0400\nsecrets:\n  db_password:\n    file: ./db_password.txt\n  token:\n    environment: API_TOKEN\n";
    let t = project(&[("compose.yaml", file), ("db_password.txt", "hunter2"), (".env", "API_TOKEN=s3cret\n")]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.ok(&b, &dir, &["up"]);
    assert!(out.contains("app-1  | hunter2\napp-1  | s3cret\napp-1  | 400 1000 1000\n"), "secrets' contents, owner and mode: {out}");
    assert!(out.contains("app-1  | read-only"), "a secret cannot be written: {out}");
    let config = ns.ok(&b, &dir, &["config"]);
    assert!(config.contains("db_password.txt"), "config shows the secrets: {config}");
    assert!(!config.contains("s3cret"), "config never shows a secret's value: {config}");
    let written = b.root().join("compose/secrets/shop");
    assert!(written.join("shop-app-1/token").is_file(), "the variable's secret was written for the container");
    ns.ok(&b, &dir, &["down"]);
    assert!(!written.join("shop-app-1").exists(), "down removes the written secrets");
    assert_no_containers(&b);

    let undefined = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\n    secrets: [nope]\n")]);
    let out = compose(&b, &undefined.path().join("shop"), &[], &["up"]);
    assert!(text(&out.stderr).contains("services.app.secrets[0]: service \"app\" refers to undefined secret \"nope\""), "{}", text(&out.stderr));
    let external = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\nsecrets:\n  s:\n    external: true\n")]);
    let out = compose(&b, &external.path().join("shop"), &[], &["up"]);
    assert!(text(&out.stderr).contains("compose.yaml:5:3: secrets.s: an external secret lives in Docker Swarm"), "{}", text(&out.stderr));
    let unset = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\nsecrets:\n  s:\n    environment: NOT_SET_HERE\n")]);
    let out = compose(&b, &unset.path().join("shop"), &[], &["up"]);
    assert!(text(&out.stderr).contains("secrets.s: the secret's variable NOT_SET_HERE is not set"), "{}", text(&out.stderr));
    assert_no_containers(&b);
}

#[test]
fn service_healthy_waits_for_the_images_healthcheck_and_compose_labels_are_container_labels() {
    let b = with_busybox();
    // The db image says how to check it; the service says nothing about health.
    let dockerfile = "FROM busybox:test\nHEALTHCHECK --interval=100ms --retries=50 CMD test -f /tmp/ready\n";
    let file = "services:\n  db:\n    build: .\n    command: sh -c 'sleep 1; touch /tmp/ready; echo db ready; exec sleep 60'\n  web:\n    image: busybox:test\n    command: echo web ran\n    depends_on:\n      db:\n        condition: service_healthy\n";
    let t = project(&[("compose.yaml", file), ("Dockerfile", dockerfile)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.compose(&b, &dir, &["up", "-d"]);
    assert_success(&out, &["compose", "up", "-d"]);
    let stderr = text(&out.stderr);
    let healthy = stderr.find("Container shop-db-1  Healthy").unwrap_or_else(|| panic!("db became healthy:\n{stderr}"));
    let web = stderr.find("Container shop-web-1  Creating").expect("web created");
    assert!(healthy < web, "web was created before db was healthy:\n{stderr}");
    assert_eq!(b.ok(&["inspect", "-f", "{{.State.Health.Status}}", "shop-db-1"]), "healthy\n");
    // Compose's labels are the containers' own, so docker-style filters find a service.
    assert_eq!(b.ok(&["ps", "--filter", "label=com.docker.compose.service=db", "--format", "{{.Names}}"]), "shop-db-1\n");
    assert_eq!(b.ok(&["ps", "-a", "--filter", "label=com.docker.compose.project=shop", "--format", "{{.Names}}"]).lines().count(), 2);
    assert_eq!(b.ok(&["inspect", "-f", "{{index .Config.Labels \"com.docker.compose.container-number\"}}", "shop-web-1"]), "1\n");
    ns.ok(&b, &dir, &["down", "--rmi", "local"]);
    assert_no_containers(&b);
}

#[test]
fn capabilities_ulimits_devices_and_groups_reach_the_container() {
    let b = with_busybox();
    // Bit 12 of CapEff is CAP_NET_ADMIN (added); CAP_CHOWN (dropped) makes root's chown fail.
    // `$$` is a literal `$` in a compose file.
    let script = "cap=$$(grep CapEff /proc/self/status | cut -f2); echo net_admin=$$(( (0x$$cap >> 12) & 1 )); touch /tmp/f; chown 1 /tmp/f 2>/dev/null || echo no-chown; echo nofile=$$(ulimit -n):$$(ulimit -Hn); test -c /dev/mynull && echo device-ok; id -G";
    let file = format!("services:\n  app:\n    image: busybox:test\n    command: [sh, -c, '{script}']\n    cap_add: [NET_ADMIN]\n    cap_drop: [CHOWN]\n    ulimits:\n      nofile: {{soft: 1234, hard: 2345}}\n    devices: ['/dev/null:/dev/mynull']\n    group_add: ['4321']\n");
    let t = project(&[("compose.yaml", &file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.ok(&b, &dir, &["up"]);
    for want in ["app-1  | net_admin=1\n", "app-1  | no-chown\n", "app-1  | nofile=1234:2345\n", "app-1  | device-ok\n"] {
        assert!(out.contains(want), "{want:?} in: {out}");
    }
    assert!(out.lines().any(|l| l.starts_with("app-1  | ") && l.split_whitespace().any(|g| g == "4321")), "group_add: {out}");
    ns.ok(&b, &dir, &["down"]);
    assert_no_containers(&b);
}

/// The lines of `out` that start with `prefix`, without it.
fn service_lines(out: &str, prefix: &str) -> String {
    out.lines().filter_map(|l| l.strip_prefix(prefix)).map(|l| format!("{l}\n")).collect()
}

/// A command run inside the test's namespace.
fn in_ns(ns: &Netns, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", &ns.0]).args(args).stdin(std::process::Stdio::null()).output().expect("ip netns exec")
}

/// Waits until `url` (in the namespace) answers `want`.
fn wait_http(ns: &Netns, url: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = in_ns(ns, &["curl", "-s", "-m", "2", url]);
        if text(&out.stdout) == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{url} never answered {want:?}: {}", text(&out.stdout));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn ps_and_port_show_the_host_ports_the_containers_got_when_the_file_gives_none() {
    let b = with_busybox();
    // Two httpd's: 80 on a random port of every address, 81 on a random port of 127.0.0.1.
    let file = "services:\n  web:\n    image: busybox:test\n    command: sh -c 'mkdir -p /www && echo hi > /www/index.html && httpd -p 81 -h /www && exec httpd -f -p 80 -h /www'\n    ports: [\"80\", \"127.0.0.1::81\"]\n    expose: [\"9000\"]\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    let any = ns.ok(&b, &dir, &["port", "web", "80"]);
    let local = ns.ok(&b, &dir, &["port", "web", "81"]);
    let host_port = |line: &str, ip: &str| -> u16 {
        let (a, p) = line.trim().rsplit_once(':').unwrap_or_else(|| panic!("address:port, not {line:?}"));
        assert_eq!(a, ip, "{line}");
        p.parse().unwrap_or_else(|_| panic!("a port number in {line:?}"))
    };
    let (p80, p81) = (host_port(&any, "0.0.0.0"), host_port(&local, "127.0.0.1"));
    assert!(p80 != 80 && p80 != 0 && p81 != 81 && p81 != 0, "random host ports: {p80} {p81}");
    // They are the ports that answer.
    wait_http(&ns, &format!("http://127.0.0.1:{p80}/"), "hi\n");
    wait_http(&ns, &format!("http://127.0.0.1:{p81}/"), "hi\n");
    // `builder port` on the container says the same.
    let own = text(&in_ns(&ns, &[bin().to_str().expect("utf8"), "--root", b.root().to_str().expect("utf8"), "port", "shop-web-1", "80"]).stdout);
    assert_eq!(own, any);
    let ps = ns.ok(&b, &dir, &["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{p80}->80/tcp")) && ps.contains(&format!("127.0.0.1:{p81}->81/tcp")) && ps.contains("9000/tcp"), "{ps}");
    let json: serde_json::Value = serde_json::from_str(&ns.ok(&b, &dir, &["ps", "--format", "json"])).expect("json");
    let publishers = &json[0]["Publishers"];
    assert!(publishers.as_array().expect("a list").iter().any(|p| p["TargetPort"] == 80 && p["PublishedPort"] == p80 && p["URL"] == "0.0.0.0" && p["Protocol"] == "tcp"), "{publishers}");
    // A port the file does not publish is an error naming it.
    let out = ns.compose(&b, &dir, &["port", "web", "8080"]);
    assert!(!out.status.success() && text(&out.stderr).contains("no port 8080/tcp published for service \"web\""), "{}", text(&out.stderr));
    ns.ok(&b, &dir, &["down", "-t", "1"]);
    assert_no_containers(&b);
}

// Cases of the kinds compose-spec/conformance-tests has (lifecycle, networks, volumes,
// secrets, configs, UDP ports, scaling), written for busybox. Lifecycle, shared networks,
// volumes and secrets are covered above; these add UDP ports, separate networks, bind-mounted
// files and replicas that find a server by name.

/// A build context of `busybox:test` plus the host's OpenBSD netcat and its libraries (busybox's
/// nc has no `-u`; busybox sh runs its own applet for a bare `nc`, so services call
/// `/usr/bin/nc`), as `dir/nc/` for a service's `build: ./nc`.
fn nc_context(dir: &Path) {
    let ctx = dir.join("nc");
    std::fs::create_dir_all(ctx.join("lib")).expect("mkdir");
    let nc = Path::new("/usr/bin/nc.openbsd");
    assert!(nc.exists(), "tests need Debian's netcat-openbsd");
    std::fs::copy(nc, ctx.join("nc")).expect("copy nc");
    let ldd = Command::new("ldd").arg(nc).output().expect("ldd");
    let mut dockerfile = String::from("FROM busybox:test\nCOPY nc /usr/bin/nc\n");
    for line in text(&ldd.stdout).lines() {
        let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) else { continue };
        let name = Path::new(path).file_name().expect("name").to_string_lossy().into_owned();
        std::fs::copy(path, ctx.join("lib").join(&name)).expect("copy lib");
        dockerfile.push_str(&format!("COPY lib/{name} {}/{name}\n", Path::new(path).parent().expect("dir").display()));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("Dockerfile");
}

#[test]
fn conformance_udp_ports_in_short_and_long_syntax_reach_the_service() {
    let b = with_busybox();
    let file = "services:\n  udp:\n    build: ./nc\n    command: sh -c '/usr/bin/nc -u -l 5001 & exec /usr/bin/nc -u -l 5000'\n    ports:\n      - \"15000:5000/udp\"\n      - target: 5001\n        published: \"15001\"\n        protocol: udp\n        mode: host\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    nc_context(&dir);
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    for (port, word) in [(15000, "short-syntax"), (15001, "long-syntax")] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            in_ns(&ns, &["sh", "-c", &format!("echo {word} | nc -u -w 1 127.0.0.1 {port} || true")]);
            if ns.ok(&b, &dir, &["logs", "--no-color", "udp"]).contains(word) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the datagram to {port} never arrived");
        }
    }
    let ps = ns.ok(&b, &dir, &["ps"]);
    assert!(ps.contains("0.0.0.0:15000->5000/udp") && ps.contains("0.0.0.0:15001->5001/udp"), "{ps}");
    assert_eq!(ns.ok(&b, &dir, &["port", "--protocol", "udp", "udp", "5000"]), "0.0.0.0:15000\n");
    ns.ok(&b, &dir, &["down", "-t", "1", "--rmi", "local"]);
    assert_no_containers(&b);
}

#[test]
fn conformance_services_on_different_networks_do_not_reach_each_other() {
    let b = with_busybox();
    // `entry` and `target` share no network; `both` is on both.
    let file = "services:\n  entry:\n    image: busybox:test\n    command: sleep 600\n    networks: [front]\n  target:\n    image: busybox:test\n    command: sh -c 'mkdir -p /www && echo from-target > /www/index.html && exec httpd -f -p 8080 -h /www'\n    networks: [back]\n  both:\n    image: busybox:test\n    command: sleep 600\n    networks: [front, back]\nnetworks:\n  front:\n  back:\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = ns.compose(&b, &dir, &["exec", "-T", "both", "wget", "-q", "-O", "-", "http://target:8080/"]);
        if text(&out.stdout) == "from-target\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both never reached target: {}", text(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = ns.compose(&b, &dir, &["exec", "-T", "entry", "wget", "-q", "-O", "-", "http://target:8080/"]);
    assert!(!out.status.success() && text(&out.stdout).is_empty(), "entry reached target across networks: {}", text(&out.stdout));
    assert!(text(&out.stderr).contains("bad address"), "target's name is unknown on entry's network: {}", text(&out.stderr));
    ns.ok(&b, &dir, &["down", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn conformance_replicas_register_with_a_server_by_name_and_a_file_is_bind_mounted() {
    let b = with_busybox();
    // The server logs each request with the caller's address (busybox httpd -v); three client
    // replicas call it by name, and the server's page comes from a file.
    let file = "services:\n  server:\n    image: busybox:test\n    command: httpd -f -v -p 8080 -h /www\n    volumes: [\"./page.txt:/www/index.html:ro\"]\n    healthcheck:\n      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1:8080/]\n      interval: 200ms\n      retries: 50\n  client:\n    image: busybox:test\n    command: sh -c 'wget -q -O - http://server:8080/; exec sleep 600'\n    deploy:\n      replicas: 3\n    depends_on:\n      server: {condition: service_healthy}\n";
    let t = project(&[("compose.yaml", file), ("page.txt", "MYVOLUME\n")]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    ns.ok(&b, &dir, &["up", "-d"]);
    assert_eq!(ns.ok(&b, &dir, &["ps", "-q", "client"]).lines().count(), 3, "three replicas");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let logs = ns.ok(&b, &dir, &["logs", "--no-color"]);
        // `server-1  | [::ffff:172.18.0.3]:41324: response:200`, loopback ones from the health check.
        let mut callers: Vec<&str> = logs
            .lines()
            .filter_map(|l| l.strip_prefix("server-1  | [::ffff:"))
            .filter_map(|l| l.split_once(']').map(|(ip, _)| ip))
            .filter(|ip| !ip.starts_with("127."))
            .collect();
        callers.sort();
        callers.dedup();
        if callers.len() == 3 {
            assert_eq!(logs.matches("| MYVOLUME").count(), 3, "each client read the mounted file: {logs}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} of 3 clients registered: {logs}", callers.len());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ns.ok(&b, &dir, &["down", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn configs_from_files_variables_and_content_are_mounted_at_their_name_or_target() {
    let b = with_busybox();
    let script = "cat /app_conf; cat /etc/app/greeting; echo; cat /motd; stat -c \"%a\" /motd; { echo x > /app_conf; } 2>/dev/null || echo read-only";
    let file = format!("services:\n  app:\n    image: busybox:test\n    command: sh -c '{script}'\n    configs:\n      - app_conf\n      - source: greeting\n        target: /etc/app/greeting\n      - source: motd\n        mode: 0440\nconfigs:\n  app_conf:\n    file: ./app.conf\n  greeting:\n    environment: GREETING\n  motd:\n    content: |\n      welcome to $${{PROJECT}}\n");
    let t = project(&[("compose.yaml", &file), ("app.conf", "MYCONFIG\n"), (".env", "GREETING=hello-config\n")]);
    let dir = t.path().join("shop");
    let ns = Netns::new();
    let out = ns.ok(&b, &dir, &["up"]);
    assert!(service_lines(&out, "app-1  | ").starts_with("MYCONFIG\nhello-config\nwelcome to ${PROJECT}\n440\n"), "configs' contents and mode: {out:?}");
    assert!(out.contains("app-1  | read-only"), "a config cannot be written: {out}");
    let config = ns.ok(&b, &dir, &["config"]);
    assert!(config.contains("app.conf") && config.contains("target: /app_conf"), "config shows the configs: {config}");
    ns.ok(&b, &dir, &["down"]);
    assert_no_containers(&b);

    let undefined = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\n    configs: [nope]\n")]);
    let out = compose(&b, &undefined.path().join("shop"), &[], &["up"]);
    assert!(text(&out.stderr).contains("services.app.configs[0]: service \"app\" refers to undefined config \"nope\""), "{}", text(&out.stderr));
    let two = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\nconfigs:\n  c:\n    file: ./x\n    content: y\n")]);
    let out = compose(&b, &two.path().join("shop"), &[], &["up"]);
    assert!(text(&out.stderr).contains("compose.yaml:5:3: configs.c: a config needs exactly one of `file`, `environment` and `content`"), "{}", text(&out.stderr));
    assert_no_containers(&b);
}

/// A name server answering every A query with 10.1.2.3, on 127.0.0.1:53.
const FAKE_DNS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    i = 12
    while q[i]:
        i += q[i] + 1
    question = q[12:i + 5]
    a = q[i + 1:i + 3] == b"\x00\x01"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([10, 1, 2, 3]) if a else b""
    s.sendto(q[:2] + b"\x81\x80\x00\x01" + (b"\x00\x01" if a else b"\x00\x00") + b"\x00\x00\x00\x00" + question + answer, peer)
"#;

#[test]
fn dns_options_and_namespaced_sysctls_reach_the_container() {
    let b = with_busybox();
    let ns = Netns::new();
    // A name server of the test's own on its loopback (every A query is 10.1.2.3): the project
    // network's embedded server forwards what it does not know to the service's `dns`.
    let mut dnsd = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", FAKE_DNS])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(dnsd.stdout.as_mut().expect("stdout")), &mut ready).expect("read");
    assert_eq!(ready, "ready\n");
    let script = "cat /etc/resolv.conf; nslookup outside.example.test 2>&1 | grep -A1 outside | tail -1; echo port=$$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) shmmni=$$(cat /proc/sys/kernel/shmmni)";
    let file = format!("services:\n  app:\n    image: busybox:test\n    command: sh -c '{script}'\n    dns: 127.0.0.1\n    dns_search: [example.test]\n    dns_opt: [\"ndots:2\"]\n    sysctls:\n      net.ipv4.ip_unprivileged_port_start: 1000\n      kernel.shmmni: \"1234\"\n  alone:\n    image: busybox:test\n    network_mode: none\n    command: cat /etc/resolv.conf\n    dns: [10.9.8.7, 10.9.8.6]\n    dns_search: example.test\n    dns_opt: [edns0]\n");
    let t = project(&[("compose.yaml", &file)]);
    let dir = t.path().join("shop");
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("shmmni");
    let out = ns.ok(&b, &dir, &["up"]);
    let _ = dnsd.kill();
    let _ = dnsd.wait();
    // On the project network: the embedded server, the file's search list and options.
    // Two services' lines interleave: each one's own, in order.
    let app = service_lines(&out, "app-1    | ");
    assert!(app.starts_with("nameserver 127.0.0.11\nsearch example.test\noptions ndots:2\n"), "{out}");
    assert!(out.contains("app-1    | Address: 10.1.2.3"), "the name came from the service's dns server: {out}");
    assert!(out.contains("app-1    | port=1000 shmmni=1234"), "sysctls in the container's namespaces: {out}");
    // Without a network the file's servers are the resolv.conf's.
    assert_eq!(service_lines(&out, "alone-1  | "), "nameserver 10.9.8.7\nnameserver 10.9.8.6\nsearch example.test\noptions edns0\n", "{out}");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("shmmni"), host_shmmni, "the host's value is untouched");
    let port = text(&in_ns(&ns, &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]).stdout);
    assert_ne!(port.trim(), "1000", "the test namespace's value is untouched");
    ns.ok(&b, &dir, &["down"]);

    // A sysctl that is not namespaced would change the host: refused, naming it.
    let bad = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\n    command: \"true\"\n    sysctls: [vm.swappiness=10]\n")]);
    let out = ns.compose(&b, &bad.path().join("shop"), &["up"]);
    assert!(!out.status.success() && text(&out.stderr).contains("--sysctl \"vm.swappiness=10\"") && text(&out.stderr).contains("not a namespaced sysctl"), "{}", text(&out.stderr));
    let host = project(&[("compose.yaml", "services:\n  app:\n    image: busybox:test\n    network_mode: host\n    command: \"true\"\n    sysctls: {net.ipv4.ip_forward: 1}\n")]);
    let out = ns.compose(&b, &host.path().join("shop"), &["up"]);
    assert!(!out.status.success() && text(&out.stderr).contains("needs a network namespace of the container's own"), "{}", text(&out.stderr));
    assert_no_containers(&b);
}

#[test]
fn network_mode_service_shares_the_other_services_namespace_and_its_ports() {
    let b = with_busybox();
    let ns = Netns::new();
    // The sidecar is named first and listed first: it still starts after web, whose network it
    // joins, and its server on port 81 answers through the port web publishes.
    let file = "services:\n  sidecar:\n    image: busybox:test\n    network_mode: service:web\n    command: sh -c 'mkdir /s && echo sidecar of $$(hostname) > /s/index.html && exec httpd -f -p 81 -h /s'\n  web:\n    image: busybox:test\n    hostname: shop-web\n    ports: [\"18080:80\", \"18081:81\"]\n    command: sh -c 'mkdir /w && echo web > /w/index.html && exec httpd -f -p 80 -h /w'\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    ns.ok(&b, &dir, &["up", "-d"]);
    wait_http(&ns, "http://127.0.0.1:18080/", "web\n");
    wait_http(&ns, "http://127.0.0.1:18081/", "sidecar of shop-web\n");
    let config = ns.ok(&b, &dir, &["config"]);
    assert!(config.contains("network_mode: service:web") && config.contains("depends_on:"), "{config}");
    ns.ok(&b, &dir, &["down", "-t", "1"]);
    assert_no_containers(&b);
}

#[test]
fn ipv4_address_gives_the_service_its_address_on_a_network_with_a_subnet() {
    let b = with_busybox();
    let ns = Netns::new();
    let file = "services:\n  web:\n    image: busybox:test\n    command: ip -o -4 addr show eth0\n    networks:\n      back:\n        ipv4_address: 10.81.0.9\nnetworks:\n  back:\n    ipam:\n      config:\n        - subnet: 10.81.0.0/24\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let out = ns.ok(&b, &dir, &["up"]);
    assert!(out.contains("inet 10.81.0.9/24"), "{out}");
    ns.ok(&b, &dir, &["down"]);
    let bad = project(&[("compose.yaml", &file.replace("10.81.0.9", "10.81.0.x"))]);
    let out = ns.compose(&b, &bad.path().join("shop"), &["up"]);
    assert!(!out.status.success() && text(&out.stderr).contains("services.web.networks.back.ipv4_address: \"10.81.0.x\" is not an IPv4 address"), "{}", text(&out.stderr));
    assert_no_containers(&b);
}

#[test]
fn ls_wait_cp_and_stats_act_on_the_projects_containers() {
    // Without networks (network_mode: none), so outside a test namespace nothing is made on the host's.
    let b = with_busybox();
    let file = "services:\n  job:\n    image: busybox:test\n    network_mode: none\n    command: sh -c 'sleep 3; echo job is done; exit 3'\n  idle:\n    image: busybox:test\n    network_mode: none\n    command: sleep 600\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ok = |args: &[&str]| compose_ok(&b, &dir, args);
    ok(&["up", "-d"]);
    // ls needs no compose file: run from elsewhere.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let ls = text(&compose(&b, elsewhere.path(), &[], &["ls"]).stdout);
    let file_path = dir.join("compose.yaml").canonicalize().expect("path");
    assert!(ls.starts_with("NAME") && ls.contains("CONFIG FILES"), "{ls}");
    let line = ls.lines().find(|l| l.starts_with("shop ")).unwrap_or_else(|| panic!("no shop in {ls}"));
    assert!(line.contains("running(2)") && line.contains(file_path.to_str().expect("utf8")), "{ls}");
    assert_eq!(text(&compose(&b, elsewhere.path(), &[], &["ls", "-q"]).stdout), "shop\n");
    // attach follows the service's output until it exits, with its exit code.
    let out = compose(&b, &dir, &[], &["attach", "--no-stdin", "job"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("job is done"), "{}", text(&out.stdout));

    // cp both ways, by service name.
    let local = elsewhere.path().join("note.txt");
    std::fs::write(&local, "from the host\n").expect("write");
    ok(&["cp", local.to_str().expect("utf8"), "idle:/tmp/note.txt"]);
    assert_eq!(b.ok(&["exec", "shop-idle-1", "cat", "/tmp/note.txt"]), "from the host\n");
    let back = elsewhere.path().join("back.txt");
    ok(&["cp", "idle:/tmp/note.txt", back.to_str().expect("utf8")]);
    assert_eq!(std::fs::read_to_string(&back).expect("copied back"), "from the host\n");
    let out = compose(&b, &dir, &[], &["cp", "nosuch:/x", "y"]);
    assert!(!out.status.success() && text(&out.stderr).contains("no such service: nosuch"), "{}", text(&out.stderr));

    let stats = ok(&["stats", "--no-stream", "idle"]);
    assert!(stats.contains("shop-idle-1") && !stats.contains("shop-job-1"), "{stats}");

    // wait prints the exit code and exits with it.
    let out = compose(&b, &dir, &[], &["wait", "job"]);
    assert_eq!((text(&out.stdout), out.status.code()), ("3\n".to_string(), Some(3)), "{}", text(&out.stderr));
    let ls = text(&compose(&b, elsewhere.path(), &[], &["ls", "--format", "json"]).stdout);
    let json: serde_json::Value = serde_json::from_str(&ls).expect("json");
    let shop = json.as_array().expect("a list").iter().find(|p| p["Name"] == "shop").expect("shop listed");
    assert_eq!(shop["Status"], "exited(1), running(1)", "{ls}");

    ok(&["down", "-t", "1"]);
    let ls = text(&compose(&b, elsewhere.path(), &[], &["ls", "-a"]).stdout);
    assert!(!ls.contains("shop"), "a project with no containers is not listed: {ls}");
    assert_no_containers(&b);
}

#[test]
fn create_makes_the_containers_that_start_then_runs() {
    let b = with_busybox();
    let file = "services:\n  web:\n    image: busybox:test\n    network_mode: none\n    command: sleep 600\n  db:\n    image: busybox:test\n    network_mode: none\n    command: sleep 600\n";
    let t = project(&[("compose.yaml", file)]);
    let dir = t.path().join("shop");
    let ok = |args: &[&str]| compose_ok(&b, &dir, args);
    let status = |name: &str| b.ok(&["inspect", "-f", "{{.State.Status}}", name]).trim().to_string();
    ok(&["create"]);
    assert_eq!((status("shop-web-1"), status("shop-db-1")), ("created".to_string(), "created".to_string()));
    assert!(ok(&["ls", "-a"]).contains("created(2)"));
    assert!(!ok(&["ls"]).contains("shop"), "not running: only ls -a lists it");
    // up --no-start keeps them as they are; start runs them.
    ok(&["up", "--no-start"]);
    assert_eq!(status("shop-web-1"), "created");
    ok(&["start"]);
    assert_eq!((status("shop-web-1"), status("shop-db-1")), ("running".to_string(), "running".to_string()));
    ok(&["down", "-t", "1"]);
    assert_no_containers(&b);
}
