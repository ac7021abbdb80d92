//! End-to-end tests of what a build may reach beyond its context: ssh agents
//! (`RUN --mount=type=ssh`, `--ssh`), git repositories (`ADD <git url>`), the insecure sandbox
//! (`RUN --security=insecure`, `--allow`), networks and platforms.
use crate::util::*;
use crate::util_registry::free_port;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `builder build --progress plain ARGS… CONTEXT` with extra environment; (success, stderr).
fn build_env(b: &Builder, ctx: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = b.cmd();
    cmd.args(["build", "--progress", "plain"]).args(args).arg(ctx);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn builder");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Builds into a fresh directory (`--output type=local`) and returns it with the log.
fn build_to_dir(b: &Builder, ctx: &Path, args: &[&str], env: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", out.path().display());
    let mut all = vec!["--output", dest.as_str()];
    all.extend_from_slice(args);
    let (ok, log) = build_env(b, ctx, &all, env);
    assert!(ok, "build failed:\n{log}");
    (out, log)
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}


// ---------------------------------------------------------------- ssh

/// A context with the host's `ssh-add` and the libraries it loads under `rootfs/`, so a
/// busybox image can talk to an agent (`COPY rootfs/ /`).
fn context_with_ssh_add(dockerfile: &str) -> tempfile::TempDir {
    let ctx = context(&[("Dockerfile", dockerfile)]);
    let ssh_add = PathBuf::from("/usr/bin/ssh-add");
    assert!(ssh_add.exists(), "tests need Debian's openssh-client");
    let ldd = Command::new("ldd").arg(&ssh_add).output().expect("ldd");
    let mut files = vec![ssh_add];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    for f in files {
        let dest = ctx.path().join("rootfs").join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&f, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
    ctx
}

/// A key pair made by ssh-keygen with `comment`; returns the private key's path.
fn ssh_key(dir: &Path, comment: &str) -> PathBuf {
    let key = dir.join(format!("key-{comment}"));
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(&key).status().expect("ssh-keygen");
    assert!(st.success());
    key
}

/// An ssh-agent holding `key`, on a socket in `dir`; killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path, name: &str, key: &Path) -> Agent {
        let socket = dir.join(name);
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("ssh-agent");
        let agent = Agent { child, socket };
        let t = Instant::now();
        while !agent.socket.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = Command::new("ssh-add").arg("-q").arg(key).env("SSH_AUTH_SOCK", &agent.socket).stdin(Stdio::null()).status().expect("ssh-add");
        assert!(st.success());
        agent
    }
    fn sock(&self) -> &str {
        self.socket.to_str().expect("utf8")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_default_forwards_the_agent_to_run_and_only_its_id_is_in_the_cache_key() {
    let b = with_busybox();
    let keys = tempfile::tempdir().expect("tmp");
    let key = ssh_key(keys.path(), "builder-e2e-agent-key");
    let ctx = context_with_ssh_add(
        "FROM busybox:test\nCOPY rootfs/ /\nRUN --mount=type=ssh ssh-add -l > /keys.txt && echo \"sock=$SSH_AUTH_SOCK\" >> /keys.txt\n",
    );
    let agent = Agent::start(keys.path(), "a.sock", &key);
    let (out, _) = build_to_dir(&b, ctx.path(), &["--ssh", "default"], &[("SSH_AUTH_SOCK", agent.sock())]);
    let listed = read(out.path().join("keys.txt"));
    assert!(listed.contains("builder-e2e-agent-key"), "{listed}");
    assert!(listed.contains("sock=/run/buildkit/ssh_agent.0"), "{listed}");
    assert!(!out.path().join("run/buildkit").exists(), "the socket's mount point is not left in the image");

    // Another agent at another path: the step is the same (only the id counts).
    let other = Agent::start(keys.path(), "b.sock", &key);
    let (_, log) = build_to_dir(&b, ctx.path(), &["--ssh", &format!("default={}", other.sock())], &[]);
    let (cached, ran) = cached_and_ran(&log);
    assert!(cached.iter().any(|s| s.contains("RUN --mount=type=ssh")), "cached: {cached:?}\nran: {ran:?}\n{log}");
}

#[test]
fn ssh_key_files_get_an_agent_with_the_mount_owner_and_target_asked() {
    let b = with_busybox();
    let keys = tempfile::tempdir().expect("tmp");
    let key = ssh_key(keys.path(), "builder-e2e-file-key");
    let ctx = context_with_ssh_add(
        "FROM busybox:test\nCOPY rootfs/ /\nUSER app\n\
         RUN --mount=type=ssh,id=deploy,target=/tmp/agent,required,uid=1000,mode=0600 \
         ssh-add -l > /tmp/k.txt && stat -c '%u %a' /tmp/agent >> /tmp/k.txt && echo \"$SSH_AUTH_SOCK\" >> /tmp/k.txt\n",
    );
    let (out, _) = build_to_dir(&b, ctx.path(), &["--ssh", &format!("deploy={}", key.display())], &[("SSH_AUTH_SOCK", "")]);
    let got = read(out.path().join("tmp/k.txt"));
    assert!(got.contains("builder-e2e-file-key"), "{got}");
    assert!(got.contains("1000 600\n/tmp/agent\n"), "{got}");
    assert!(!out.path().join("tmp/agent").exists());
}

#[test]
fn a_missing_required_ssh_id_names_the_id_and_line_and_an_optional_one_is_skipped() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo before\nRUN --mount=type=ssh,id=deploy,required true\n")]);
    let (ok, log) = build_env(&b, ctx.path(), &[], &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("\"deploy\"") && log.contains("--ssh deploy") && log.contains("Dockerfile:3"), "{log}");

    let optional = context(&[("Dockerfile", "FROM busybox:test\nRUN --mount=type=ssh test ! -e /run/buildkit/ssh_agent.0 && echo skipped > /r.txt\n")]);
    let (out, _) = build_to_dir(&b, optional.path(), &[], &[]);
    assert_eq!(read(out.path().join("r.txt")), "skipped\n");

    let e = b.fails(&["build", "--ssh", "k=/nonexistent/key", ctx.path().to_str().expect("utf8")]);
    assert!(e.contains("/nonexistent/key"), "{e}");
}

// ---------------------------------------------------------------- git

const COMMIT_TIME: i64 = 1_577_934_245; // 2020-01-02T03:04:05Z

fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env("GIT_AUTHOR_DATE", "2020-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2020-01-02T03:04:05Z")
        .status()
        .expect("sh");
    assert!(st.success(), "{script}");
}

/// `git daemon` serving `<base>/repo.git` (a repository with a `v1` tag, a later commit on
/// `main` and a `docs` directory) on a free loopback port; stopped when dropped.
struct GitServer {
    child: Child,
    base: tempfile::TempDir,
    port: u16,
}

impl GitServer {
    fn start() -> GitServer {
        let base = tempfile::tempdir().expect("tmp");
        let repo = base.path().join("repo.git");
        std::fs::create_dir(&repo).expect("mkdir");
        sh(&repo, "git init -q -b main . && git config user.email t@e && git config user.name t \
                   && echo one > a.txt && mkdir docs && echo doc > docs/d.md \
                   && git add -A && git commit -qm one && git tag -a v1 -m v1 \
                   && echo two > a.txt && git commit -qam two");
        let port = free_port();
        let child = Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.path().display()))
            .arg(format!("--port={port}"))
            .arg("--listen=127.0.0.1")
            .arg(base.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitServer { child, base, port }
    }

    fn url(&self, fragment: &str) -> String {
        format!("git://127.0.0.1:{}/repo.git{fragment}", self.port)
    }

    fn commit(&self, script: &str) {
        sh(&self.base.path().join("repo.git"), script);
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_git_checks_out_refs_subdirs_and_keeps_git_dir_only_when_asked() {
    let b = with_busybox();
    let git = GitServer::start();
    let dockerfile = format!(
        "FROM busybox:test\nADD {} /head\nADD {} /tag\nADD {} /docs\nADD --keep-git-dir=true {} /kept\n",
        git.url(""),
        git.url("#v1"),
        git.url("#main:docs"),
        git.url("#main")
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let (out, _) = build_to_dir(&b, ctx.path(), &[], &[]);
    assert_eq!(read(out.path().join("head/a.txt")), "two\n");
    assert_eq!(read(out.path().join("tag/a.txt")), "one\n");
    assert_eq!(read(out.path().join("docs/d.md")), "doc\n");
    assert!(!out.path().join("docs/a.txt").exists());
    assert!(!out.path().join("head/.git").exists() && !out.path().join("tag/.git").exists());
    assert_eq!(read(out.path().join("kept/.git/HEAD")), "ref: refs/heads/main\n");

    // In the image's layer: owned by root, with the commit's time.
    let tar_out = tempfile::tempdir().expect("tmp");
    let tar_path = tar_out.path().join("fs.tar");
    let (ok, log) = build_env(&b, ctx.path(), &["--output", &format!("type=tar,dest={}", tar_path.display())], &[]);
    assert!(ok, "{log}");
    let mut a = tar::Archive::new(std::fs::File::open(&tar_path).expect("tar"));
    let mut seen = false;
    for e in a.entries().expect("entries") {
        let e = e.expect("entry");
        if e.path().expect("path").to_string_lossy().trim_start_matches("./") == "head/a.txt" {
            let h = e.header();
            assert_eq!((h.uid().expect("uid"), h.gid().expect("gid"), h.mode().expect("mode") & 0o777), (0, 0, 0o644));
            assert_eq!(h.mtime().expect("mtime") as i64, COMMIT_TIME);
            seen = true;
        }
    }
    assert!(seen, "head/a.txt is in the tar");
}

#[test]
fn add_git_is_cached_while_the_commit_is_the_same_and_rebuilt_after_a_new_one() {
    let b = with_busybox();
    let git = GitServer::start();
    let ctx = context(&[("Dockerfile", &format!("FROM busybox:test\nADD {} /src\nRUN cat /src/a.txt > /seen.txt\n", git.url("#main")))]);
    let (out, _) = build_to_dir(&b, ctx.path(), &[], &[]);
    assert_eq!(read(out.path().join("seen.txt")), "two\n");

    let (_, log) = build_to_dir(&b, ctx.path(), &[], &[]);
    let (cached, ran) = cached_and_ran(&log);
    assert!(ran.is_empty() && cached.iter().any(|s| s.contains("RUN cat")) && cached.iter().any(|s| s.contains("ADD")), "cached: {cached:?}\nran: {ran:?}\n{log}");

    git.commit("echo three > a.txt && git commit -qam three");
    let (out, log) = build_to_dir(&b, ctx.path(), &[], &[]);
    assert_eq!(read(out.path().join("seen.txt")), "three\n");
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|s| s.contains("RUN cat")) && ran.iter().any(|s| s.contains("ADD")), "ran: {ran:?}\n{log}");
}

#[test]
fn add_git_of_a_missing_ref_is_a_clear_error_naming_ref_and_line() {
    let b = with_busybox();
    let git = GitServer::start();
    let ctx = context(&[("Dockerfile", &format!("FROM busybox:test\nADD {} /src\n", git.url("#nope")))]);
    let (ok, log) = build_env(&b, ctx.path(), &[], &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("git ref \"nope\" not found") && log.contains(&git.url("")) && log.contains("Dockerfile:2"), "{log}");
}

/// A dumb-HTTP git server: a bare copy of the git server's repository, served as plain files
/// (`git update-server-info`) by a tiny HTTP/1.0 server on a free loopback port; with `auth`,
/// only requests with that `Authorization` header get anything but 401.
struct DumbHttp {
    port: u16,
    _dir: tempfile::TempDir,
}

impl DumbHttp {
    fn serve(git: &GitServer, auth: Option<&'static str>) -> DumbHttp {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = git.base.path().join("repo.git");
        sh(dir.path(), &format!("git clone -q --bare {} repo.git && git -C repo.git update-server-info", repo.display()));
        DumbHttp::files(dir, auth)
    }

    /// Serves the files under `dir`.
    fn files(dir: tempfile::TempDir, auth: Option<&'static str>) -> DumbHttp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let root = dir.path().to_path_buf();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            for conn in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(conn);
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut header = String::new();
                let mut authorized = auth.is_none();
                while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
                    if let (Some((k, v)), Some(want)) = (header.split_once(':'), auth) {
                        authorized |= k.eq_ignore_ascii_case("authorization") && v.trim() == want;
                    }
                    header.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
                let mut conn = reader.into_inner();
                let file = root.join(path.trim_start_matches('/'));
                let _ = match std::fs::read(&file).ok().filter(|_| !path.contains("..") && file.is_file()) {
                    _ if !authorized => conn.write_all(b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\n\r\n"),
                    Some(body) => conn.write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).and_then(|_| conn.write_all(&body)),
                    None => conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            }
        });
        DumbHttp { port, _dir: dir }
    }
}

#[test]
fn add_git_over_dumb_http_falls_back_to_a_full_fetch() {
    let b = with_busybox();
    let git = GitServer::start();
    let http = DumbHttp::serve(&git, None);
    let url = format!("http://127.0.0.1:{}/repo.git", http.port);
    let ctx = context(&[("Dockerfile", &format!("FROM busybox:test\nADD {url}#v1 /tag\nADD {url} /head\n"))]);
    let (out, _) = build_to_dir(&b, ctx.path(), &[], &[]);
    assert_eq!(read(out.path().join("tag/a.txt")), "one\n");
    assert_eq!(read(out.path().join("head/a.txt")), "two\n");
}

#[test]
fn add_git_over_http_sends_the_git_auth_token_secret() {
    let b = with_busybox();
    let git = GitServer::start();
    // base64("x-access-token:s3cret")
    let http = DumbHttp::serve(&git, Some("basic eC1hY2Nlc3MtdG9rZW46czNjcmV0"));
    let ctx = context(&[("Dockerfile", &format!("FROM busybox:test\nADD http://127.0.0.1:{}/repo.git?ref=v1&subdir=docs /docs\n", http.port))]);
    let (ok, log) = build_env(&b, ctx.path(), &[], &[]);
    assert!(!ok && log.contains("127.0.0.1"), "no token, no access:\n{log}");
    let (out, _) = build_to_dir(&b, ctx.path(), &["--secret", "id=GIT_AUTH_TOKEN.127.0.0.1,env=TOKEN"], &[("TOKEN", "s3cret")]);
    assert_eq!(read(out.path().join("docs/d.md")), "doc\n");
    assert!(!contains_bytes(b.root(), b"s3cret"), "the token is nowhere in the state root");
}

/// Whether any file under `dir` contains `needle`.
fn contains_bytes(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => contains_bytes(&p, needle),
            Ok(t) if t.is_file() => std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)),
            _ => false,
        }
    })
}

#[test]
fn add_git_over_ssh_uses_the_default_ssh_agent_and_only_when_given() {
    let b = with_busybox();
    let git = GitServer::start();
    let keys = tempfile::tempdir().expect("tmp");
    let key = ssh_key(keys.path(), "builder-e2e-git-key");
    let agent = Agent::start(keys.path(), "git.sock", &key);
    // A stand-in for ssh: it insists on a forwarded agent, then runs git's command locally.
    let fake_ssh = keys.path().join("fake-ssh");
    std::fs::write(
        &fake_ssh,
        format!(
            "#!/bin/sh\nssh-add -l >/dev/null 2>&1 || {{ echo 'fake-ssh: no ssh agent' >&2; exit 255; }}\nfor cmd; do :; done\ncd {} && exec sh -c \"$cmd\"\n",
            git.base.path().display()
        ),
    )
    .expect("write");
    sh(keys.path(), "chmod 755 fake-ssh");
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nADD git@git.example:repo.git#main /src\n")]);
    let ssh_cmd = fake_ssh.to_str().expect("utf8");
    let (out, _) = build_to_dir(&b, ctx.path(), &["--ssh", "default"], &[("SSH_AUTH_SOCK", agent.sock()), ("GIT_SSH_COMMAND", ssh_cmd)]);
    assert_eq!(read(out.path().join("src/a.txt")), "two\n");

    let (ok, log) = build_env(&b, ctx.path(), &["--no-cache"], &[("SSH_AUTH_SOCK", agent.sock()), ("GIT_SSH_COMMAND", ssh_cmd)]);
    assert!(!ok && log.contains("fake-ssh: no ssh agent") && log.contains("git@git.example:repo.git"), "without --ssh the agent is not used:\n{log}");
}

#[test]
fn a_missing_ssh_agent_or_unknown_entitlement_is_named_before_connecting() {
    // Remote builds forward --ssh and carry --allow (serve:: tests); a bad value is still the
    // client's error, found before any connection is made.
    let b = Builder::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\n")]);
    let dir = ctx.path().to_str().expect("utf8");
    for addr in [None, Some("tcp://127.0.0.1:1")] {
        let mut args: Vec<&str> = addr.map(|a| vec!["--addr", a]).unwrap_or_default();
        args.extend(["build", "--ssh", "default=/nonexistent", dir]);
        let e = b.fails(&args);
        assert!(e.contains("--ssh default: /nonexistent: No such file or directory"), "{e}");
    }
    let e = b.fails(&["build", "--allow", "everything", dir]);
    assert!(e.contains("invalid --allow \"everything\""), "{e}");
}

// ---------------------------------------------------------------- security, network, platform

fn cap_line(status: &str, name: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).unwrap_or_else(|| panic!("no {name} in {status}"))
}

#[test]
fn run_security_insecure_has_every_capability_with_allow_and_is_refused_without() {
    let b = with_busybox();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:test\nRUN --security=insecure cat /proc/self/status > /insecure.txt && cat /proc/kcore > /dev/null 2>&1; echo $? > /kcore.txt\nRUN cat /proc/self/status > /sandbox.txt\n",
    )]);
    let (ok, log) = build_env(&b, ctx.path(), &[], &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("security.insecure") && log.contains("--allow security.insecure") && log.contains("Dockerfile:2"), "{log}");

    let (out, _) = build_to_dir(&b, ctx.path(), &["--allow", "security.insecure"], &[]);
    let ours = read("/proc/self/status");
    assert_eq!(cap_line(&read(out.path().join("insecure.txt")), "CapEff:"), cap_line(&ours, "CapBnd:"), "every capability this machine gives");
    assert_eq!(cap_line(&read(out.path().join("insecure.txt")), "Seccomp:"), "0");
    assert_eq!(cap_line(&read(out.path().join("sandbox.txt")), "CapEff:"), "00000000a80425fb", "Docker's default set");
    assert_eq!(cap_line(&read(out.path().join("sandbox.txt")), "Seccomp:"), "2");
}

#[test]
fn run_network_none_has_only_loopback_and_host_is_the_default_network() {
    let b = with_busybox();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:test\nRUN --network=none cat /proc/net/dev > /none.txt\nRUN --network=host readlink /proc/self/ns/net > /host.txt\nRUN --network=default readlink /proc/self/ns/net > /default.txt\n",
    )]);
    let (out, _) = build_to_dir(&b, ctx.path(), &[], &[]);
    let names = |s: String| -> Vec<String> {
        let mut v: Vec<String> = s.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(names(read(out.path().join("none.txt"))), ["lo"]);
    // The host's namespace by its identity, not by its interface list: other tests add and remove veths there meanwhile.
    let host = format!("{}\n", std::fs::read_link("/proc/self/ns/net").unwrap().display());
    assert_eq!(read(out.path().join("host.txt")), host);
    assert_eq!(read(out.path().join("default.txt")), host);
}

#[test]
fn a_platform_the_base_image_lacks_is_an_error_naming_image_and_platform() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN true\n")]);
    let (ok, log) = build_env(&b, ctx.path(), &["--platform", "linux/arm64"], &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("busybox:test") && log.contains("linux/arm64") && log.contains("Dockerfile:1"), "{log}");
}

#[test]
fn a_run_of_a_program_built_for_another_machine_says_so_and_names_the_emulator_it_needs() {
    let b = Builder::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY --chmod=755 sh /bin/sh\nRUN true\n")]);
    // The 64-byte header of an ELF executable for Itanium (e_machine 50), which no emulator runs.
    let mut elf = vec![0u8; 64];
    elf[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf[16] = 2; // ET_EXEC
    elf[18] = 50; // EM_IA_64
    elf[20] = 1; // EV_CURRENT
    std::fs::write(ctx.path().join("sh"), elf).expect("write sh");
    let (ok, log) = build_env(&b, ctx.path(), &[], &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("not built for this machine") && log.contains("binfmt_misc") && log.contains("qemu-user-static"), "{log}");
    assert!(log.contains("Dockerfile:3"), "names the RUN's line: {log}");
}

#[test]
fn a_build_for_arm64_runs_arm64_programs_through_the_registered_emulator() {
    // testdata/cross/setup.sh (run by .ci/run) registers qemu-aarch64 and fetches Debian's arm64 busybox.
    let busybox = Path::new("/var/cache/builder-tests/busybox-arm64");
    assert!(
        busybox.is_file() && Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
        "this test needs an aarch64 emulator and an arm64 busybox: run `bash testdata/cross/setup.sh` as root first"
    );
    let b = with_busybox();
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nFROM base\nARG TARGETPLATFORM\nRUN uname -m > /arch && echo \"$TARGETPLATFORM\" > /platform\n",
    )]);
    std::fs::copy(busybox, ctx.path().join("busybox")).expect("copy busybox");
    let (ok, log) = build_env(&b, ctx.path(), &["--platform", "linux/arm64", "-t", "arm:1"], &[]);
    assert!(ok, "{log}");
    let config: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "arm:1"])).expect("inspect json");
    let config = if config.is_array() { config[0].clone() } else { config };
    assert_eq!(config["Architecture"], "arm64", "{config}");

    let (out, _) = build_to_dir(&b, ctx.path(), &["--platform", "linux/arm64"], &[]);
    assert_eq!(read(out.path().join("arch")).trim(), "aarch64", "the RUN ran as an arm64 program");
    assert_eq!(read(out.path().join("platform")).trim(), "linux/arm64");

    // The image is arm64 only: building on it for this machine's platform says so.
    let next = context(&[("Dockerfile", "FROM arm:1\nRUN true\n")]);
    let (ok, log) = build_env(&b, next.path(), &[], &[]);
    assert!(!ok && log.contains("linux/arm64") && log.contains("Dockerfile:1"), "{log}");

    // The cross-compiling pattern: a stage on this machine's own platform feeds the arm64 image.
    let cross = context(&[(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM busybox:test AS build\nARG BUILDPLATFORM TARGETARCH\nRUN echo \"$BUILDPLATFORM $TARGETARCH $(uname -m)\" > /out\nFROM arm:1\nCOPY --from=build /out /out\nRUN uname -m >> /out\n",
    )]);
    let (out, _) = build_to_dir(&b, cross.path(), &["--platform", "linux/arm64"], &[]);
    assert_eq!(read(out.path().join("out")), "linux/amd64 arm64 x86_64\naarch64\n");
}

#[test]
fn a_git_repository_or_a_url_is_a_build_context_as_with_docker_build() {
    let b = with_busybox();
    let git = GitServer::start();
    git.commit(
        "printf 'FROM busybox:test\\nCOPY a.txt /a.txt\\n' > Dockerfile && printf 'FROM busybox:test\\nCOPY d.md /d.md\\n' > docs/Dockerfile \
         && git add -A && git commit -qm dockerfiles",
    );
    let (out, log) = build_to_dir(&b, Path::new(&git.url("")), &[], &[]);
    assert_eq!(read(out.path().join("a.txt")), "two\n", "{log}");
    let (out, log) = build_to_dir(&b, Path::new(&git.url("#main:docs")), &[], &[]);
    assert_eq!(read(out.path().join("d.md")), "doc\n", "{log}");
    let (ok, log) = build_env(&b, Path::new(&git.url("#nope")), &[], &[]);
    assert!(!ok && log.contains("git ref \"nope\" not found") && log.contains(&git.url("#nope")), "{log}");

    // Over http: a compressed tar is the context, a text file is the Dockerfile alone.
    let www = tempfile::tempdir().expect("tmp");
    sh(git.base.path().join("repo.git").as_path(), &format!("git archive --format=tar.gz -o {}/ctx.tar.gz main", www.path().display()));
    std::fs::write(www.path().join("Dockerfile"), "FROM busybox:test\nLABEL from=url\n").expect("write");
    let http = DumbHttp::files(www, None);
    let (out, log) = build_to_dir(&b, Path::new(&format!("http://127.0.0.1:{}/ctx.tar.gz", http.port)), &[], &[]);
    assert_eq!(read(out.path().join("a.txt")), "two\n", "{log}");
    let (ok, log) = build_env(&b, Path::new(&format!("http://127.0.0.1:{}/Dockerfile", http.port)), &["-t", "from-url:1"], &[]);
    assert!(ok, "{log}");
    assert!(b.ok(&["inspect", "from-url:1"]).contains("\"from\": \"url\""));
    let (ok, log) = build_env(&b, Path::new(&format!("http://127.0.0.1:{}/missing.tar", http.port)), &[], &[]);
    assert!(!ok && log.contains("missing.tar") && log.contains("404"), "{log}");
}

#[test]
fn build_network_none_and_add_host_apply_to_every_run_as_with_docker_build() {
    let b = with_busybox();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:test\nRUN cat /proc/net/dev > /dev.txt && grep -E 'dbhost|v6host' /etc/hosts > /hosts.txt\nRUN --network=host cat /proc/net/dev > /host.txt\n",
    )]);
    let (out, log) = build_to_dir(&b, ctx.path(), &["--network", "none", "--add-host", "dbhost:10.1.2.3", "--add-host", "v6host:fd00::1"], &[]);
    let names = |s: String| -> Vec<String> { s.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect() };
    assert_eq!(names(read(out.path().join("dev.txt"))), ["lo"], "{log}");
    assert!(names(read(out.path().join("host.txt"))).len() > 1, "a RUN's own --network=host wins");
    assert_eq!(read(out.path().join("hosts.txt")), "10.1.2.3\tdbhost\nfd00::1\tv6host\n");

    let (ok, log) = build_env(&b, ctx.path(), &["--network", "bridge"], &[]);
    assert!(!ok && log.contains("--network bridge"), "{log}");
    let (ok, log) = build_env(&b, ctx.path(), &["--add-host", "db"], &[]);
    assert!(!ok && log.contains("--add-host \"db\""), "{log}");
    // `builder run --add-host` too.
    assert_eq!(b.ok(&["run", "--rm", "--add-host", "rh:1.2.3.4", "busybox:test", "grep", "rh", "/etc/hosts"]), "1.2.3.4\trh\n");
}
