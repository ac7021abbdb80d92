//! End-to-end: the tutorials' stories (`testdata/stories/`, seeds 000, 001 and 002), each a script of
//! `builder` commands as the tutorial types them, on images built from Debian's packages (the
//! official images are on Docker Hub, out of reach here). Each test checks what the tutorial's
//! reader would see, and that the story left no container, mount or process behind.
//!
//! The images live in one root kept in the temp dir beside the Debian base (like it, made once
//! per machine): the builds, their apt cache mount and the npm install are then cached for every
//! later run. A file lock makes the stories take turns, across test processes too, since they
//! share that root and its container names.
use crate::util::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The stories' shared root, held for one story at a time.
struct Stories {
    root: PathBuf,
    _turn: std::fs::File,
}

/// The images the stories use, built here from `testdata/stories/images/` (and the two the
/// stories build themselves, so that inside a network namespace with no way out their builds
/// are all cached).
fn stories() -> Stories {
    let cache = std::env::temp_dir().join("builder-e2e-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let turn = std::fs::File::create(cache.join("stories.lock")).expect("lock file");
    fs4::fs_std::FileExt::lock_exclusive(&turn).expect("lock");
    let s = Stories { root: cache.join("stories-root"), _turn: turn };
    if !s.builder(&["inspect", "debian:bookworm"]).status.success() {
        let tar = crate::build::debian_rootfs_tar();
        s.ok(&["import", tar.to_str().expect("utf8"), "debian:bookworm"]);
    }
    // Left by a run that was killed half-way: the stories start from no containers.
    let ids = s.ok(&["ps", "-a", "-q"]);
    for id in ids.split_whitespace() {
        s.ok(&["rm", "-f", id]);
    }
    let images = testdata().join("stories/images");
    for name in ["nginx", "postgres", "mariadb", "wordpress"] {
        s.ok(&["build", "--progress", "plain", "-t", name, images.join(name).to_str().expect("utf8")]);
    }
    // npm in the image must trust what this machine trusts (see local-ca/README).
    let node = tempfile::tempdir().expect("tmp");
    copy_dir(&images.join("node"), node.path());
    for ca in std::fs::read_dir("/usr/local/share/ca-certificates").into_iter().flatten().flatten() {
        if ca.path().extension().is_some_and(|e| e == "crt") {
            std::fs::copy(ca.path(), node.path().join("local-ca").join(ca.file_name())).expect("copy CA");
        }
    }
    s.ok(&["build", "--progress", "plain", "-t", "node", node.path().to_str().expect("utf8")]);
    for (tag, story) in [("node-app", "node-app"), ("nacyot/moniwiki", "wiki")] {
        s.ok(&["build", "--progress", "plain", "-t", tag, testdata().join("stories").join(story).to_str().expect("utf8")]);
    }
    s
}

impl Stories {
    /// On the machine's network: the image builds install packages (and start no container).
    fn builder(&self, args: &[&str]) -> std::process::Output {
        on_machine_network(&mut Command::new(bin())).arg("--root").arg(&self.root).args(args).stdin(Stdio::null()).output().expect("spawn builder")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.builder(args);
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `testdata/stories/NAME/story.sh` in a copy of its directory (the tutorial's "any
    /// directory"), with `builder` on the PATH, inside the network namespace `net` when given,
    /// and returns what it printed. Ten minutes at most.
    fn run(&self, name: &str, net: Option<&Netns>) -> String {
        let work = tempfile::tempdir().expect("tmp");
        let stories = testdata().join("stories");
        copy_dir(&stories.join(name), &work.path().join(name));
        std::fs::copy(stories.join("lib.sh"), work.path().join("lib.sh")).expect("copy lib.sh");
        let bin_dir = bin().parent().expect("bin dir").to_path_buf();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", "600"]);
        match net {
            Some(ns) => {
                cmd.arg("nsenter").arg(format!("--net=/run/netns/{}", ns.name));
            }
            None => {
                on_machine_network(&mut cmd);
            }
        }
        // One file for stdout and stderr: the terminal the reader looks at, in order.
        let transcript = work.path().join("transcript");
        let file = std::fs::File::create(&transcript).expect("transcript");
        let status = cmd
            .args(["bash", "story.sh"])
            .current_dir(work.path().join(name))
            .env("PATH", path)
            .env("BUILDER_ROOT", &self.root)
            .env("DOCKER_CONFIG", work.path().join("docker-config"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("fd"))
            .stderr(file)
            .status()
            .expect("run the story");
        let text = String::from_utf8_lossy(&std::fs::read(&transcript).expect("read transcript")).into_owned();
        assert!(status.success(), "story {name} failed with {status}:\n{text}");
        self.assert_nothing_left(name);
        text
    }

    /// No container, no mount under the root, and no process naming it.
    fn assert_nothing_left(&self, name: &str) {
        assert_eq!(self.ok(&["ps", "-a", "-q"]), "", "story {name} left containers");
        let root = self.root.to_str().expect("utf8").to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().filter(|l| l.contains(&root)).map(String::from).collect();
            let procs: Vec<String> = std::fs::read_dir("/proc")
                .expect("/proc")
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())))
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok().map(|c| String::from_utf8_lossy(&c).replace('\0', " ")))
                .filter(|c| c.contains(&root))
                .collect();
            if mounts.is_empty() && procs.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "story {name} left mounts {mounts:#?} or processes {procs:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A network namespace of the test's own, with only loopback up: the stories' servers listen
/// on the tutorial's ports there, apart from the machine's and from each other.
struct Netns {
    name: String,
}

impl Netns {
    fn new(story: &str) -> Netns {
        let name = format!("builder-story-{story}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let st = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add (iproute2)");
        assert!(st.success(), "ip netns add {name} failed");
        let st = Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]).status().expect("ip link");
        assert!(st.success(), "bringing up lo in {name} failed");
        Netns { name }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The port the stories' package proxy listens on, apt-cacher-ng's.
const PACKAGE_PROXY_PORT: u16 = 3142;

/// A forward HTTP proxy for apt in a story's containers: it listens on every address of the
/// story's network namespace (so a container on the default bridge reaches it at the bridge's
/// gateway) and fetches from the machine's network, as the tutorial reader's machine would.
/// Nothing else of the outside is reachable from the namespace, and no NAT rule of the
/// machine's is touched. One request per connection (it answers `Connection: close`).
fn start_package_proxy(ns: &Netns) {
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsFd;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        // setns(2) moves only this thread; threads it starts are where it is.
        let story = std::fs::File::open(&path).expect("open the story's netns");
        nix::sched::setns(story.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the story's netns");
        let listener = std::net::TcpListener::bind(("0.0.0.0", PACKAGE_PROXY_PORT)).expect("bind the package proxy");
        let machine = MACHINE_NETWORK.get().expect("the machine's netns");
        nix::sched::setns(machine.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("back to the machine's netns");
        ready_tx.send(()).expect("ready");
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                // `GET http://deb.debian.org/debian/… HTTP/1.1` to `GET /debian/… HTTP/1.1`.
                let mut parts = request_line.split_whitespace();
                let (Some(method), Some(url), Some(version)) = (parts.next(), parts.next(), parts.next()) else { return };
                let Some(rest) = url.strip_prefix("http://") else { return };
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let addr = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
                let mut head = format!("{method} {} {version}\r\n", if path.is_empty() { "/" } else { path });
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                    let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    if !["connection", "proxy-connection", "keep-alive"].contains(&name.as_str()) {
                        head.push_str(&line);
                    }
                }
                head.push_str("Connection: close\r\n\r\n");
                let Ok(mut server) = std::net::TcpStream::connect(&addr) else { return };
                if server.write_all(head.as_bytes()).is_ok() {
                    let mut client = client;
                    let _ = std::io::copy(&mut server, &mut client);
                }
            });
        }
    });
    ready_rx.recv().expect("the package proxy started");
}

/// Copies what is in `from` into `to` (made if missing).
fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().expect("cp");
    assert!(st.success(), "copying {} failed", from.display());
}

/// `needles` appear in `text` in this order.
#[track_caller]
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match text[at..].find(n) {
            Some(i) => at += i + n.len(),
            None => panic!("expected {n:?} (after the earlier lines) in:\n{text}"),
        }
    }
}

#[test]
fn story_nginx_serves_the_mounted_directory_403_then_the_index_page() {
    let s = stories();
    let ns = Netns::new("nginx");
    let out = s.run("nginx", Some(&ns));
    assert_in_order(&out, &["<title>403 Forbidden</title>", "nginx/1.22", "<title>Docker</title>", "<h1>Hello, Docker!</h1>"]);
}

#[test]
fn story_postgres_keeps_its_database_in_a_named_volume() {
    let s = stories();
    let ns = Netns::new("postgres");
    let out = s.run("postgres", Some(&ns));
    assert_in_order(
        &out,
        &[
            "\"docker-entrypoint.s…\"",
            "Up ",
            "0.0.0.0:5432->5432/tcp",
            "postgres\n",
            "psql (15.",
            "postgres=# CREATE DATABASE hello_docker;",
            "CREATE DATABASE",
            " hello_docker | postgres | UTF8",
            "(4 rows)",
            "CREATE TABLE",
            "INSERT 0 1",
            // the second container, by the name `postgres`
            " builder\n(1 row)",
            // a new server on the same volume
            " builder\n(1 row)",
            "local     pgdata",
        ],
    );
}

#[test]
fn story_node_app_is_built_with_npm_pushed_with_a_password_and_run_from_the_registry() {
    let s = stories();
    let ns = Netns::new("node-app");
    let out = s.run("node-app", Some(&ns));
    assert_in_order(
        &out,
        &[
            "naming to docker.io/library/node-app:latest",
            "REPOSITORY",
            "node-app ",
            "Hello Docker",
            "\"Layers\": [",
            "Username: Password: Login Succeeded",
            "The push refers to repository [localhost:5000/stories/node-app]",
            "latest: digest: sha256:",
            "Untagged: localhost:5000/stories/node-app:latest",
            "Hello Docker",
            "Removing login credentials for localhost:5000",
        ],
    );
}

#[test]
fn story_wiki_is_built_from_the_tutorials_dockerfile_and_php_renders_its_page() {
    let s = stories();
    let ns = Netns::new("wiki");
    let out = s.run("wiki", Some(&ns));
    assert_in_order(&out, &["naming to docker.io/nacyot/moniwiki:latest", "<h1>MoniWiki: FrontPage</h1>", "Rendered by PHP 8.2 (apache2handler), RCS is installed."]);
    assert!(!out.contains("<?php"), "Apache served the PHP source:\n{out}");
}

/// Seed 002's container session installs git from the Debian archive inside a container on the
/// default bridge, in a network namespace of the test's: apt reaches the archive through the
/// test's package proxy, the namespace's only way out.
#[test]
fn story_session_restarts_a_shell_container_and_commits_git_installed_in_it() {
    let s = stories();
    let ns = Netns::new("session");
    start_package_proxy(&ns);
    let out = s.run("session", Some(&ns));
    let text = out.replace("\r\n", "\n");
    assert_in_order(
        &text,
        &[
            "# exit",
            "Exited (0)",
            "Up ",
            "git version 2.",
            "A /usr/bin/git",
            "C /var/log",
            "sha256:",
            "ubuntu ",
            "git --version\ngit version 2.",
            "Exited (0)",
            "Untagged: ubuntu:git",
        ],
    );
}

#[test]
fn story_wordpress_reaches_mysql_by_its_service_name_and_shows_the_installer() {
    let s = stories();
    let ns = Netns::new("wordpress");
    let out = s.run("wordpress", Some(&ns));
    assert_in_order(&out, &["Container wordpress-mysql-db-1  Started", "Container wordpress-wordpress-1  Started", "<title>WordPress &rsaquo; Installation</title>", "<h1>Welcome</h1>", "Information needed", "Container wordpress-mysql-db-1  Removed"]);
}

/// Seed 001's image and container commands, each with the flags the chapter shows.
#[test]
fn story_containers_lists_by_name_follows_logs_copies_restarts_prunes_and_pushes_as_seed_001_types_them() {
    let s = stories();
    let ns = Netns::new("containers");
    let out = s.run("containers", Some(&ns));
    let text = out.replace("\r\n", "\n");
    assert_in_order(
        &text,
        &[
            "naming to docker.io/example/echo:latest",
            // image ls, then the same image under a second tag
            "REPOSITORY     TAG       IMAGE ID",
            "example/echo   latest",
            "example/echo   1.0 ",
            "example/echo   latest",
            "The push refers to repository [localhost:5000/gngsn/example]",
            "latest: digest: sha256:",
            // search --limit 5 of six repositories
            "NAME ",
            "localhost:5000/bitnami/mysql ",
            "localhost:5000/mysql/mysql-server ",
            // container ls --filter "name=postgres"
            "CONTAINER ID   IMAGE      COMMAND                  CREATED",
            "\"docker-entrypoint.s…\"",
            "postgres\n",
            // logs -f of the container ls -q picked
            "The files belonging to this database system will be owned by user \"postgres\".",
            "database system is ready to accept connections",
            // cp out of the container
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"",
            // stop, ls --filter status=exited, restart
            "echo\n",
            "Exited (0)",
            "echo\n",
            "Up ",
            // stats --no-stream
            "CONTAINER ID   NAME ",
            "CPU %     MEM USAGE / LIMIT",
            // rm by ID, prune after the question
            "WARNING! This will remove all stopped containers.",
            "Are you sure you want to continue? [y/N] Deleted Containers:",
            "Total reclaimed space:",
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n",
        ],
    );
    let listed = text.lines().filter(|l| l.starts_with("localhost:5000/") && l.contains("tags: latest")).count();
    assert_eq!(listed, 5, "search --limit 5 shows five of the six repositories:\n{text}");
}
