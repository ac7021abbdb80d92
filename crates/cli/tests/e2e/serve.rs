//! End-to-end tests of `builder serve`: the real binary serves, the real client library
//! (`api::client`, what `builder --addr …` uses) talks to it.
#[allow(unused_imports)]
use crate::util::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::client::{ClientConfig, ClientTls, Remote};
use api::{Address, BuildOptions};

/// A `builder serve` on a free loopback port (or a unix socket), stopped on drop.
struct Server {
    child: Child,
    addr: String,
    root: tempfile::TempDir,
    stderr: PathBuf,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_on("tcp://127.0.0.1:0", args)
    }

    fn start_on(listen: &str, args: &[&str]) -> Server {
        let root = tempfile::tempdir().expect("server root");
        let stderr = root.path().join("serve.log");
        let mut child = Command::new(bin())
            .arg("--root")
            .arg(root.path().join("state"))
            .args(["serve", "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("spawn builder serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let addr = line.trim().strip_prefix("builder serve: listening on ").unwrap_or_else(|| {
            panic!("builder serve did not start: {line:?}\n{}", std::fs::read_to_string(&stderr).unwrap_or_default())
        });
        Server { addr: addr.to_string(), child, root, stderr }
    }

    fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn config(&self) -> ClientConfig {
        ClientConfig { addr: Address::parse(&self.addr).expect("address"), token: None, tls: None, cache_dir: Some(self.root.path().join("client-cache")) }
    }

    fn connect(&self) -> Remote {
        Remote::connect(&self.config()).unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.addr, self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "builder serve did not exit after SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// Stops the server (SIGTERM) and hands over its root, which then outlives it.
    fn stop_keeping_root(mut self) -> tempfile::TempDir {
        let root = std::mem::replace(&mut self.root, tempfile::tempdir().expect("placeholder root"));
        let status = self.terminate();
        assert!(status.success(), "builder serve exited with {status}");
        root
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill").success();
    assert!(ok, "kill -{sig} {pid}");
}

fn options(dockerfile: &str) -> BuildOptions {
    let mut build_args = BTreeMap::new();
    // Same timestamps remotely and locally, so the digests can be compared.
    build_args.insert("SOURCE_DATE_EPOCH".to_string(), "0".to_string());
    BuildOptions { dockerfile: dockerfile.as_bytes().to_vec(), dockerfile_name: "Dockerfile".into(), build_args, ..Default::default() }
}

fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

/// Imports the busybox test image as `busybox:test` into a state root.
fn import_busybox(state: &Path) {
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = busybox_rootfs_tar(tmp.path());
    let out = Command::new(bin()).arg("--root").arg(state).args(["import"]).arg(&tar).arg("busybox:test").output().expect("import");
    assert_success(&out, &["import", "busybox:test"]);
}

/// Copies `busybox:test` from one state root to another (`save` | `load`), so both build on
/// the very same base image.
fn copy_busybox(from: &Path, to: &Path) {
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = tmp.path().join("busybox.tar");
    let out = Command::new(bin()).arg("--root").arg(from).args(["save", "-o"]).arg(&tar).arg("busybox:test").output().expect("save");
    assert_success(&out, &["save", "busybox:test"]);
    let out = Command::new(bin()).arg("--root").arg(to).args(["load", "-i"]).arg(&tar).output().expect("load");
    assert_success(&out, &["load"]);
}

/// The manifest digest `builder build` gives the image tagged `tag` in `state`.
/// Builds `ctx` with `local` as a remote build does (SOURCE_DATE_EPOCH=0); the image's digest.
fn build_locally(local: &Builder, ctx: &Path, tag: &str) -> String {
    let out = local.run(&["build", "--build-arg", "SOURCE_DATE_EPOCH=0", "-t", tag, ctx.to_str().expect("utf8")]);
    assert_success(&out, &["build"]);
    local_digest(local.root(), tag)
}

fn local_digest(state: &Path, tag: &str) -> String {
    let out = Command::new(bin()).arg("--root").arg(state).args(["images", "--no-trunc", "--format", "json"]).output().expect("images");
    assert_success(&out, &["images"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let (repo, t) = tag.rsplit_once(':').expect("tag");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        if v["Repository"] == repo && v["Tag"] == t {
            return v["Digest"].as_str().expect("digest").to_string();
        }
    }
    panic!("{tag} not in `builder images`:\n{text}");
}

// ---------------------------------------------------------------- lifecycle

#[test]
fn serve_reports_health_and_info() {
    let server = Server::start(&["--max-concurrent-builds", "3"]);
    let remote = server.connect();
    assert!(remote.health().expect("health"), "the health service says SERVING");
    let info = remote.info().expect("info");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.max_concurrent_builds, 3);
    assert!(info.capabilities.iter().any(|c| c == "incremental-context"), "{:?}", info.capabilities);
    assert_eq!(info.workers.len(), 1);
    assert!(!info.workers[0].platforms.is_empty());
}

#[test]
fn sigterm_stops_a_unix_socket_server_and_removes_the_socket() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("builder.sock");
    let server = Server::start_on(&format!("unix://{}", sock.display()), &[]);
    assert!(server.connect().health().expect("health over the unix socket"));
    assert!(sock.exists());
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!sock.exists(), "the socket file is removed on shutdown");
}

#[test]
fn serve_refuses_a_bad_listen_address() {
    let b = Builder::new();
    let err = b.fails(&["serve", "--listen", "http://0.0.0.0:1"]);
    assert!(err.contains("tcp://HOST:PORT or unix:///PATH"), "{err}");
}

// ---------------------------------------------------------------- auth

#[test]
fn a_wrong_or_missing_token_is_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").expect("token");
    let server = Server::start(&["--token-file", token.to_str().expect("utf8")]);
    let with = |t: Option<&str>| Remote::connect(&ClientConfig { token: t.map(str::to_string), ..server.config() }).expect("connect");

    let missing = with(None).info().expect_err("no token");
    assert_eq!(missing.code(), Some(api::Code::Unauthenticated), "{missing}");
    assert!(missing.to_string().contains("BUILDER_TOKEN"), "says how to give one: {missing}");
    let wrong = with(Some("nope")).images().expect_err("wrong token");
    assert_eq!(wrong.code(), Some(api::Code::Unauthenticated), "{wrong}");
    let health = with(None).health().expect_err("health needs the token too");
    assert_eq!(health.code(), Some(api::Code::Unauthenticated), "{health}");
    let ctx = tempfile::tempdir().expect("ctx");
    let build = with(Some("nope")).build(&options("FROM scratch\n"), ctx.path(), |_| {}).expect_err("build with a wrong token");
    assert_eq!(build.code(), Some(api::Code::Unauthenticated), "{build}");

    assert_eq!(with(Some("s3cret-token")).info().expect("right token").version, env!("CARGO_PKG_VERSION"));
}

// ---------------------------------------------------------------- TLS

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A test CA, a server certificate for 127.0.0.1 and a client certificate, all PEM files.
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("tmp");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "builder test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, file: &str| {
            let key = KeyPair::generate().expect("key");
            let params = CertificateParams::new(names).expect("params");
            let cert = params.signed_by(&key, &issuer).expect("sign");
            std::fs::write(dir.path().join(format!("{file}.pem")), cert.pem()).expect("write cert");
            std::fs::write(dir.path().join(format!("{file}-key.pem")), key.serialize_pem()).expect("write key");
        };
        leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
        leaf(vec!["ci-client".into()], "client");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().expect("utf8").to_string()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).expect("read pem")
    }
}

#[test]
fn mutual_tls_with_a_test_ca_works_and_plain_tcp_fails_clearly() {
    let pki = Pki::new();
    let server = Server::start(&[
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server-key.pem"),
        "--tls-client-ca",
        &pki.path("ca.pem"),
    ]);
    let tls = ClientTls { ca_pem: pki.read("ca.pem"), identity: Some((pki.read("client.pem"), pki.read("client-key.pem"))), server_name: None };
    let remote = Remote::connect(&ClientConfig { tls: Some(tls.clone()), ..server.config() }).expect("mutual TLS connect");
    assert!(remote.health().expect("health over mTLS"));
    assert_eq!(remote.info().expect("info over mTLS").version, env!("CARGO_PKG_VERSION"));

    // Plain gRPC to the TLS port: a clear error that names the fix.
    let plain = Remote::connect(&server.config()).and_then(|r| r.info().map(|_| ()));
    let err = plain.expect_err("plain TCP to a TLS server must fail").to_string();
    assert!(err.contains("BUILDER_TLS_CACERT"), "the error says how to use TLS: {err}");

    // TLS without a client certificate is refused by a mutual-TLS server.
    let anonymous = Remote::connect(&ClientConfig { tls: Some(ClientTls { identity: None, ..tls }), ..server.config() }).and_then(|r| r.info().map(|_| ()));
    assert!(anonymous.is_err(), "a client without a certificate must be refused");
}

// ---------------------------------------------------------------- builds

/// Runs a remote build, collecting the step descriptions it reported.
fn remote_build(remote: &Remote, opts: &BuildOptions, ctx: &Path) -> (api::client::RemoteBuild, Vec<String>) {
    let mut steps = Vec::new();
    let result = remote
        .build(opts, ctx, |e| {
            if let solver::Event::Started { description, .. } = e {
                steps.push(description.clone());
            }
        })
        .unwrap_or_else(|e| panic!("remote build failed: {e}"));
    (result, steps)
}

const APP_DOCKERFILE: &str = "FROM busybox:test\nWORKDIR /app\nCOPY . .\nRUN echo built > /app/out && ls /app > /app/listing\nCMD [\"cat\", \"/app/out\"]\n";

#[test]
fn a_remote_build_gives_the_same_image_digest_and_steps_as_a_local_build() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", APP_DOCKERFILE);
    write(ctx.path(), "src/main.c", "int main(){return 0;}\n");
    write(ctx.path(), "README", "hello\n");
    write(ctx.path(), "secret.key", "do not send\n");
    write(ctx.path(), ".dockerignore", "*.key\n");

    let mut opts = options(APP_DOCKERFILE);
    opts.tags = vec!["app:remote".into()];
    let (remote, remote_steps) = remote_build(&server.connect(), &opts, ctx.path());
    assert!(remote.outcome.image_digest.starts_with("sha256:"), "{:?}", remote.outcome);
    assert_eq!(remote.outcome.tags, ["docker.io/library/app:remote"]);
    assert!(!server.state().join("contexts").read_dir().expect("mirrors").flatten().any(|m| m.path().join("files/secret.key").exists()), "ignored files never reach the server");

    let local = Builder::new();
    copy_busybox(&server.state(), local.root());
    let out = local.run(&["build", "--progress", "plain", "--build-arg", "SOURCE_DATE_EPOCH=0", "-t", "app:local", ctx.path().to_str().expect("utf8")]);
    assert_success(&out, &["build"]);
    assert_eq!(local_digest(local.root(), "app:local"), remote.outcome.image_digest, "remote and local builds of one context give one image");
    let plain = String::from_utf8_lossy(&out.stderr);
    for step in &remote_steps {
        assert!(plain.contains(step.as_str()), "the local build shows the remote step {step:?}:\n{plain}");
    }
    assert!(remote_steps.iter().any(|s| s.contains("RUN echo built")), "{remote_steps:?}");

    // The image is in the server's store.
    let images = server.connect().images().expect("images");
    assert!(images.iter().any(|i| i.reference == "docker.io/library/app:remote" && i.manifest_digest == remote.outcome.image_digest), "{images:?}");
}

#[test]
fn after_a_first_build_of_10000_files_one_changed_file_is_all_that_crosses_the_network() {
    let server = Server::start(&[]);
    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM scratch\nCOPY . /ctx/\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    for i in 0..10_000 {
        write(ctx.path(), &format!("d{:02}/f{i:05}.txt", i % 50), &format!("file {i}\n"));
    }
    let remote = server.connect();
    let opts = options(dockerfile);
    let (first, _) = remote_build(&remote, &opts, ctx.path());
    assert_eq!(first.context.files_received, 10_001, "the first build sends every file");

    let (noop, _) = remote_build(&remote, &opts, ctx.path());
    assert_eq!((noop.context.files_received, noop.context.bytes_received), (0, 0), "a no-op rebuild sends nothing");
    assert_eq!(noop.outcome.image_digest, first.outcome.image_digest);

    let changed = "this file changed, and only it travels\n";
    write(ctx.path(), "d07/f00007.txt", changed);
    let before = remote.info().expect("info").context_bytes_received;
    let (second, _) = remote_build(&remote, &opts, ctx.path());
    assert_eq!(second.context.files_received, 1);
    assert_eq!(second.context.bytes_received, changed.len() as u64, "exactly the changed file's bytes");
    assert_eq!(second.outcome.metadata.get("context.bytes_received").map(String::as_str), Some(changed.len().to_string().as_str()));
    assert_eq!(remote.info().expect("info").context_bytes_received - before, changed.len() as u64, "the server counted the same bytes");
    // Everything else on the wire is the request and a one-entry delta of the file list.
    assert!(second.context.wire_bytes_received < changed.len() as u64 + 1024, "{} bytes on the wire", second.context.wire_bytes_received);
    assert_eq!(second.bytes_sent, second.context.wire_bytes_received, "client and server count the same bytes");
    assert_ne!(second.outcome.image_digest, first.outcome.image_digest, "the change is in the image");

    std::fs::remove_file(ctx.path().join("d03/f00003.txt")).expect("rm");
    let (third, _) = remote_build(&remote, &opts, ctx.path());
    assert_eq!((third.context.files_received, third.context.files_removed), (0, 1), "a deleted file is deleted on the server, nothing is sent");

    // A server that lost the file list the client's delta is against asks for the whole list,
    // and still needs no file contents.
    for m in server.state().join("contexts").read_dir().expect("mirrors").flatten() {
        let _ = std::fs::remove_file(m.path().join("manifest.pb"));
    }
    let (fourth, _) = remote_build(&remote, &opts, ctx.path());
    assert_eq!((fourth.context.files_total, fourth.context.files_received), (10_050, 0), "10,000 files - 1 + Dockerfile + 50 directories");
    assert_eq!(fourth.outcome.image_digest, third.outcome.image_digest);
}

#[test]
fn only_the_paths_the_dockerfile_copies_cross_the_network() {
    let server = Server::start(&[]);
    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM scratch\nCOPY app.txt /\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    write(ctx.path(), "app.txt", "the app\n");
    let big_len = 5 * 1024 * 1024;
    std::fs::write(ctx.path().join("big.bin"), vec![7u8; big_len]).expect("write big.bin");

    let mut opts = options(dockerfile);
    opts.tags = vec!["small:remote".into()];
    let (remote, _) = remote_build(&server.connect(), &opts, ctx.path());
    assert!(remote.context.bytes_received < big_len as u64, "{} bytes received: the unused big.bin was sent", remote.context.bytes_received);
    assert!(!server.state().join("contexts").read_dir().expect("mirrors").flatten().any(|m| m.path().join("files/big.bin").exists()), "big.bin never reaches the server");

    let local = Builder::new();
    assert_eq!(build_locally(&local, ctx.path(), "small:local"), remote.outcome.image_digest, "remote and local builds of one context give one image");
}

/// The bytes of every file below `dir`.
fn bytes_below(dir: &Path) -> u64 {
    walk_tree(dir).iter().map(|(_, _, size, _)| *size).sum()
}

/// Every entry below `dir`: relative path, `ls -l`-style kind and mode, size, and the content
/// digest or symlink target, in path order.
fn walk_tree(dir: &Path) -> Vec<(String, u32, u64, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            let m = p.symlink_metadata().expect("stat");
            let rel = p.strip_prefix(dir).expect("below").display().to_string();
            let what = if m.file_type().is_symlink() {
                std::fs::read_link(&p).expect("link").display().to_string()
            } else if m.is_file() {
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&p).expect("read")))
            } else {
                stack.push(p.clone());
                String::new()
            };
            out.push((rel, m.mode(), if m.is_file() { m.len() } else { 0 }, what));
        }
    }
    out.sort();
    out
}

#[test]
fn only_the_paths_a_build_from_a_real_image_reads_after_arg_expansion_cross_the_network() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM busybox:test\nARG DIR=src\nCOPY ${DIR}/ /app/\nRUN cat /app/main.c\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    write(ctx.path(), "src/main.c", "int main(){return 0;}\n");
    write(ctx.path(), "src/lib/util.c", "int util(void){return 1;}\n");
    write(ctx.path(), "other/notes.txt", "not read by the build\n");
    let big_len = 5 * 1024 * 1024;
    std::fs::write(ctx.path().join("big.bin"), vec![7u8; big_len]).expect("write big.bin");

    let mut opts = options(dockerfile);
    opts.tags = vec!["argdir:remote".into()];
    let (remote, _) = remote_build(&server.connect(), &opts, ctx.path());
    let src_bytes = bytes_below(&ctx.path().join("src"));
    assert_eq!(remote.context.bytes_received, src_bytes, "only src/ ({src_bytes} bytes) crosses the network");
    let mirrors: Vec<PathBuf> = server.state().join("contexts").read_dir().expect("mirrors").flatten().map(|m| m.path().join("files")).collect();
    assert!(mirrors.iter().all(|m| !m.join("big.bin").exists() && !m.join("other").exists()), "unread files never reach the server");

    // Another value of the build arg selects another directory.
    opts.build_args.insert("DIR".into(), "other".into());
    opts.dockerfile = b"FROM busybox:test\nARG DIR=src\nCOPY ${DIR}/ /app/\n".to_vec();
    let (again, _) = remote_build(&server.connect(), &opts, ctx.path());
    assert_eq!(again.context.bytes_received, bytes_below(&ctx.path().join("other")), "only other/ crosses the network");

    // The image is the one a local build gives.
    let local = Builder::new();
    copy_busybox(&server.state(), local.root());
    assert_eq!(build_locally(&local, ctx.path(), "argdir:local"), remote.outcome.image_digest, "remote and local builds of one context give one image");
}

#[test]
fn a_file_an_onbuild_trigger_of_the_base_image_copies_is_sent() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let base_ctx = tempfile::tempdir().expect("ctx");
    let mut base = options("FROM busybox:test\nONBUILD COPY trigger.txt /trigger.txt\n");
    base.tags = vec!["onbuild-base:1".into()];
    remote_build(&server.connect(), &base, base_ctx.path());

    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM onbuild-base:1\nRUN cat /trigger.txt\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    write(ctx.path(), "trigger.txt", "copied by the trigger\n");
    std::fs::write(ctx.path().join("big.bin"), vec![7u8; 5 * 1024 * 1024]).expect("write big.bin");
    let mut logs = String::new();
    let result = server
        .connect()
        .build(&options(dockerfile), ctx.path(), |e| {
            if let solver::Event::Log { bytes, .. } = e {
                logs.push_str(&String::from_utf8_lossy(bytes));
            }
        })
        .unwrap_or_else(|e| panic!("remote build failed: {e}\n{}", server.log()));
    assert!(logs.contains("copied by the trigger"), "the trigger's COPY found its file: {logs}");
    assert_eq!(result.context.bytes_received, "copied by the trigger\n".len() as u64, "only trigger.txt crosses the network");
}

#[test]
fn hard_links_in_the_context_stay_hard_links_in_a_remote_build() {
    let server = Server::start(&[]);
    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM scratch\nCOPY . /\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    write(ctx.path(), "data/one", &"linked\n".repeat(1000));
    std::fs::hard_link(ctx.path().join("data/one"), ctx.path().join("data/two")).expect("link");
    std::fs::hard_link(ctx.path().join("data/one"), ctx.path().join("three")).expect("link");
    let mut opts = options(dockerfile);
    opts.tags = vec!["links:remote".into()];
    let (remote, _) = remote_build(&server.connect(), &opts, ctx.path());
    assert_eq!(remote.context.bytes_received, 7000 + dockerfile.len() as u64, "a file with three names crosses the network once");

    let local = Builder::new();
    assert_eq!(build_locally(&local, ctx.path(), "links:local"), remote.outcome.image_digest, "the same layer, hard links included");
}

#[test]
fn a_fifo_in_the_context_is_copied_remotely_as_locally() {
    let server = Server::start(&[]);
    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM scratch\nCOPY . /\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    write(ctx.path(), "data/file", "plain\n");
    nix::unistd::mkfifo(&ctx.path().join("data/pipe"), nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("mkfifo");
    let mut opts = options(dockerfile);
    opts.tags = vec!["fifo:remote".into()];
    let (remote, _) = remote_build(&server.connect(), &opts, ctx.path());

    let local = Builder::new();
    assert_eq!(build_locally(&local, ctx.path(), "fifo:local"), remote.outcome.image_digest, "the same layer, the named pipe included");
}

#[test]
fn two_clients_building_at_once_both_succeed() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let results: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|n| {
                let server = &server;
                s.spawn(move || {
                    let ctx = tempfile::tempdir().expect("ctx");
                    let df = "FROM busybox:test\nCOPY n.txt /n.txt\nRUN sleep 1 && cat /n.txt > /copy\n".to_string();
                    write(ctx.path(), "n.txt", &format!("client {n}\n"));
                    let mut opts = options(&df);
                    opts.tags = vec![format!("client:{n}")];
                    let (r, _) = remote_build(&server.connect(), &opts, ctx.path());
                    r.outcome.image_digest
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    assert_ne!(results[0], results[1], "two different images");
    let images = server.connect().images().expect("images");
    for n in 0..2 {
        assert!(images.iter().any(|i| i.reference == format!("docker.io/library/client:{n}")), "{images:?}");
    }
}

#[test]
fn a_build_over_the_limit_is_refused_with_a_clear_error() {
    let server = Server::start(&["--max-concurrent-builds", "1"]);
    import_busybox(&server.state());
    let df = "FROM busybox:test\nRUN sleep 3\n";
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let server = &server;
    std::thread::scope(|s| {
        let first = s.spawn(move || {
            let ctx = tempfile::tempdir().expect("ctx");
            let result = server
                .connect()
                .build(&options(df), ctx.path(), |e| {
                    if matches!(e, solver::Event::Started { description, .. } if description.contains("RUN sleep")) {
                        let _ = started_tx.send(());
                    }
                })
                .map(|r| r.outcome.image_digest);
            drop(started_tx);
            result
        });
        if started_rx.recv().is_err() {
            let r = first.join().expect("first");
            panic!("the first build ended before its RUN started: {r:?}\n{}", server.log());
        }
        let ctx = tempfile::tempdir().expect("ctx");
        let err = server.connect().build(&options("FROM busybox:test\n"), ctx.path(), |_| {}).expect_err("over the limit");
        assert_eq!(err.code(), Some(api::Code::ResourceExhausted), "{err}");
        assert!(err.to_string().contains("--max-concurrent-builds 1"), "names the limit: {err}");
        let first = first.join().expect("first");
        assert!(first.is_ok(), "the running build is not disturbed: {first:?}");
    });
}

#[test]
fn context_paths_that_escape_are_refused_by_the_server() {
    use api::proto::build_client_message::Msg;
    use api::proto::{BuildClientMessage, BuildRequest, ContextManifest, FileEntry, FileKind};
    let server = Server::start(&[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cases: Vec<(Vec<FileEntry>, &str)> = vec![
        (vec![FileEntry { path: "../outside".into(), kind: FileKind::File as i32, size: 1, ..Default::default() }], "escapes"),
        (vec![FileEntry { path: "/etc/passwd".into(), kind: FileKind::File as i32, size: 1, ..Default::default() }], "absolute"),
        (
            vec![
                FileEntry { path: "etc".into(), kind: FileKind::Symlink as i32, symlink_target: "/etc".into(), ..Default::default() },
                FileEntry { path: "etc/passwd".into(), kind: FileKind::File as i32, size: 1, ..Default::default() },
            ],
            "not a directory",
        ),
    ];
    for (entries, want) in cases {
        let status = rt.block_on(async {
            let mut client = api::proto::control_client::ControlClient::connect(format!("http://{}", server.addr.trim_start_matches("tcp://"))).await.expect("connect");
            let msgs = vec![
                BuildClientMessage { msg: Some(Msg::Request(BuildRequest { context_key: "evil".into(), dockerfile: b"FROM scratch\n".to_vec().into(), ..Default::default() })) },
                BuildClientMessage { msg: Some(Msg::Manifest(ContextManifest { entries, last: true, ..Default::default() })) },
            ];
            let mut stream = client.build(tokio_stream::iter(msgs)).await.expect("call").into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the server accepted an escaping path"),
                    Err(s) => break s,
                }
            }
        });
        assert_eq!(status.code(), api::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(want), "{want}: {}", status.message());
    }
    assert!(!Path::new("/outside").exists());
}

/// Processes on this machine whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<i32> {
    let want = args.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .collect()
}

/// Mounts in the server's mount namespace below its state root.
fn server_mounts(server: &Server) -> Vec<String> {
    let state = server.state();
    let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", server.pid())).unwrap_or_default();
    info.lines().filter(|l| l.contains(state.to_str().expect("utf8"))).map(str::to_string).collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_client_that_dies_mid_run_leaves_no_sandbox_process_or_mount_on_the_server() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let marker = ["sleep", "4242"];
    assert!(processes_running(&marker).is_empty(), "another `sleep 4242` is already running");
    let df = "FROM busybox:test\nRUN echo running && sleep 4242\n";
    let ctx = tempfile::tempdir().expect("ctx");
    let remote = server.connect();
    // The client dies the moment its RUN is running: the panic unwinds through the client,
    // which drops its connection, as a killed process would.
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = remote.build(&options(df), ctx.path(), |e| {
            if matches!(e, solver::Event::Log { bytes, .. } if String::from_utf8_lossy(bytes).contains("running")) {
                wait_until("the RUN's sleep is running", || !processes_running(&marker).is_empty());
                std::panic::resume_unwind(Box::new("client killed"));
            }
        });
    }));
    assert!(died.is_err(), "the RUN never started:\n{}", server.log());
    drop(remote);
    wait_until("the server killed the sandbox of the abandoned build", || processes_running(&marker).is_empty());
    wait_until("the server unmounted everything of the abandoned build", || server_mounts(&server).is_empty());
    assert!(server.log().contains("cancelling its build"), "the server log says why:\n{}", server.log());
    // The server is still healthy and builds again.
    let (again, _) = remote_build(&server.connect(), &options("FROM busybox:test\nRUN true\n"), ctx.path());
    assert!(again.outcome.image_digest.starts_with("sha256:"));
}

/// Whether `needle` occurs in any file below `dir`.
fn found_below(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn a_secret_reaches_the_remote_run_and_is_never_logged_cached_or_stored() {
    let server = Server::start(&["--debug"]);
    import_busybox(&server.state());
    let value = "s3cret-value-4f9a";
    // The Dockerfile checks the secret reversed, so the value itself appears nowhere but in it.
    let reversed: String = value.chars().rev().collect();
    let df = format!("FROM busybox:test\nRUN --mount=type=secret,id=tok test \"$(rev /run/secrets/tok)\" = \"{reversed}\" && echo secret-ok\n");
    let mut opts = options(&df);
    opts.secrets.insert("tok".into(), value.as_bytes().to_vec());
    opts.tags = vec!["with-secret:1".into()];
    let ctx = tempfile::tempdir().expect("ctx");
    let (result, steps) = remote_build(&server.connect(), &opts, ctx.path());
    assert!(result.outcome.image_digest.starts_with("sha256:"));
    assert!(steps.iter().any(|s| s.contains("--mount=type=secret")), "{steps:?}");
    let log = server.log();
    assert!(log.contains("build requested"), "the debug log has the request:\n{log}");
    assert!(!log.contains(value), "the secret is in the server log:\n{log}");
    assert_eq!(found_below(&server.state(), value.as_bytes()), Vec::<PathBuf>::new(), "the secret was written into the server's state");
}

/// Starts a remote build of `df` on a thread and returns once its RUN is running.
fn build_until_run_starts<'s>(scope: &'s std::thread::Scope<'s, '_>, server: &'s Server, df: &'static str) -> std::thread::ScopedJoinHandle<'s, api::Result<api::client::RemoteBuild>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let handle = scope.spawn(move || {
        let ctx = tempfile::tempdir().expect("ctx");
        let r = server.connect().build(&options(df), ctx.path(), |e| {
            if matches!(e, solver::Event::Log { bytes, .. } if String::from_utf8_lossy(bytes).contains("running")) {
                let _ = tx.send(());
            }
        });
        drop(tx);
        r
    });
    if rx.recv().is_err() {
        let r = handle.join().expect("build thread");
        panic!("the build ended before its RUN started: {:?}\n{}", r.map(|r| r.outcome), server.log());
    }
    handle
}

#[test]
fn sigterm_lets_a_running_build_finish_within_the_grace_period() {
    let server = Server::start(&["--shutdown-grace", "120"]);
    import_busybox(&server.state());
    let pid = server.pid();
    std::thread::scope(|s| {
        let build = build_until_run_starts(s, &server, "FROM busybox:test\nRUN echo running && sleep 2\n");
        signal(pid, "TERM");
        let result = build.join().expect("build thread");
        assert!(result.is_ok(), "the running build finishes: {:?}", result.map(|r| r.outcome));
    });
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sigterm_cancels_a_build_that_outlives_the_grace_period() {
    let server = Server::start(&["--shutdown-grace", "1"]);
    import_busybox(&server.state());
    let pid = server.pid();
    let marker = ["sleep", "4343"];
    std::thread::scope(|s| {
        let build = build_until_run_starts(s, &server, "FROM busybox:test\nRUN echo running && sleep 4343\n");
        signal(pid, "TERM");
        let err = build.join().expect("build thread").expect_err("the build is cancelled");
        assert_eq!(err.code(), Some(api::Code::Cancelled), "{err}");
        assert!(err.to_string().contains("shutting down"), "{err}");
    });
    let log = server.log();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}\n{log}");
    wait_until("the cancelled build's sandbox is gone", || processes_running(&marker).is_empty());
}

#[test]
fn images_push_du_and_prune_work_on_the_server() {
    let registry = crate::util_registry::Registry::start();
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let remote = server.connect();
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "hello.txt", "hello\n");
    let df = "FROM busybox:test\nCOPY hello.txt /\nRUN cat /hello.txt > /copy\n";
    let tag = format!("{}/remote/app:1", registry.addr());
    let mut opts = options(df);
    opts.tags = vec![tag.clone()];
    let (built, _) = remote_build(&remote, &opts, ctx.path());

    let images = remote.images().expect("images");
    assert!(images.iter().any(|i| i.reference == tag && i.manifest_digest == built.outcome.image_digest), "{images:?}");

    let mut notes = Vec::new();
    let pushed = remote.push(&tag, None, &[], |n| notes.push(n.to_string())).expect("push");
    assert_eq!(pushed.digest, built.outcome.image_digest, "the registry has the built manifest");
    let fresh = Builder::new();
    fresh.ok(&["pull", &tag]);
    assert_eq!(local_digest(fresh.root(), &format!("{}/remote/app:1", registry.addr())), built.outcome.image_digest, "a pull gets the built image");

    let du = remote.disk_usage().expect("du");
    assert!(!du.entries.is_empty() && du.total > 0, "{du:?}");
    let pruned = remote.prune(true, None).expect("prune");
    assert!(pruned.records_removed > 0, "{pruned:?}");
    assert!(remote.disk_usage().expect("du").entries.is_empty(), "prune --all empties the cache");
}

#[test]
fn an_identical_step_of_two_concurrent_builds_runs_once() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let df = "FROM busybox:test\nRUN echo running && echo step-ran-$(cat /proc/sys/kernel/random/uuid) && sleep 2\n";
    let ran = |events: &[solver::Event]| events.iter().any(|e| matches!(e, solver::Event::Log { bytes, .. } if String::from_utf8_lossy(bytes).contains("step-ran-")));
    let cached = |events: &[solver::Event]| events.iter().any(|e| matches!(e, solver::Event::Cached { .. }));
    let (first, second) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let server = &server;
        let first = s.spawn(move || {
            let ctx = tempfile::tempdir().expect("ctx");
            let mut events = Vec::new();
            let r = server.connect().build(&options(df), ctx.path(), |e| {
                if matches!(e, solver::Event::Log { bytes, .. } if String::from_utf8_lossy(bytes).contains("running")) {
                    let _ = tx.send(());
                }
                events.push(e.clone());
            });
            (r.map(|r| r.outcome.image_digest), events)
        });
        rx.recv().expect("the first build's RUN started");
        let ctx = tempfile::tempdir().expect("ctx");
        let mut events = Vec::new();
        let r = server.connect().build(&options(df), ctx.path(), |e| events.push(e.clone()));
        (first.join().expect("first"), (r.map(|r| r.outcome.image_digest), events))
    });
    let (d1, e1) = (first.0.expect("first build"), first.1);
    let (d2, e2) = (second.0.expect("second build"), second.1);
    assert_eq!(d1, d2, "one result for both");
    assert!(ran(&e1), "the first build ran the step: {e1:?}");
    assert!(!ran(&e2) && cached(&e2), "the second build waited for it instead of running it again: {e2:?}");
}

#[test]
fn a_failing_remote_step_reports_the_error_and_line_a_local_build_would() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let df = "FROM busybox:test\nRUN echo fine\nRUN echo failing-now && exit 3\n";
    let ctx = tempfile::tempdir().expect("ctx");
    let mut failed_steps = Vec::new();
    let err = server
        .connect()
        .build(&options(df), ctx.path(), |e| {
            if let solver::Event::Failed { error, .. } = e {
                failed_steps.push(error.clone());
            }
        })
        .expect_err("the build fails");
    let msg = err.to_string();
    assert!(msg.starts_with("build failed:"), "{msg}");
    assert!(msg.contains("Dockerfile:3"), "names the line: {msg}");
    assert_eq!(failed_steps.len(), 1, "one failed step was rendered: {failed_steps:?}");
    let local = Builder::new();
    copy_busybox(&server.state(), local.root());
    std::fs::write(ctx.path().join("Dockerfile"), df).expect("write");
    let local_err = local.fails(&["build", "--progress", "plain", ctx.path().to_str().expect("utf8")]);
    assert!(local_err.contains("Dockerfile:3"), "{local_err}");
}

#[test]
fn the_testdata_builds_give_the_same_digests_remotely_and_locally() {
    let server = Server::start(&[]);
    let local = Builder::new();
    import_busybox(local.root());
    // The differential cases build on `busybox:diff`.
    let out = Command::new(bin()).arg("--root").arg(local.root()).args(["tag", "busybox:test", "busybox:diff"]).output().expect("tag");
    assert_success(&out, &["tag", "busybox:test", "busybox:diff"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = tmp.path().join("diff.tar");
    let out = Command::new(bin()).arg("--root").arg(local.root()).args(["save", "-o"]).arg(&tar).arg("busybox:diff").output().expect("save");
    assert_success(&out, &["save", "busybox:diff"]);
    let out = Command::new(bin()).arg("--root").arg(server.state()).args(["load", "-i"]).arg(&tar).output().expect("load");
    assert_success(&out, &["load"]);

    let remote = server.connect();
    let cases = testdata().join("build/differential");
    let mut names: Vec<String> = std::fs::read_dir(&cases).expect("cases").flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        // The cases' layout is testdata/build/differential.sh's: a Dockerfile (or ctx/Dockerfile),
        // ctx/, and optionally base.Dockerfile (built first as diff-<case>-base), build-args
        // (`K=V` lines), platform (for --platform) and setup.sh (run in a scratch copy of ctx/ for what git cannot hold).
        let case = cases.join(&name);
        let scratch = tmp.path().join(&name);
        // git keeps no empty directory: a case whose context setup.sh makes has no ctx/ in a clone.
        if case.join("ctx").is_dir() {
            let cp = Command::new("cp").arg("-a").arg(case.join("ctx")).arg(&scratch).status().expect("cp");
            assert!(cp.success(), "copy the context of {name}");
        } else {
            std::fs::create_dir(&scratch).expect("empty context");
        }
        if case.join("setup.sh").exists() {
            let setup = Command::new("bash").arg(case.join("setup.sh")).current_dir(&scratch).status().expect("setup.sh");
            assert!(setup.success(), "setup.sh of {name}");
        }
        // The remote context carries files, directories, symlinks, hard links and FIFOs; a case
        // whose context holds a socket or device is about those, which a client does not send.
        let special = std::process::Command::new("find").arg(&scratch).args(["(", "-type", "s", "-o", "-type", "b", "-o", "-type", "c", ")", "-print", "-quit"]).output().expect("find");
        if !special.stdout.is_empty() {
            continue;
        }
        let file = if case.join("Dockerfile").exists() { case.join("Dockerfile") } else { scratch.join("Dockerfile") };
        let args: Vec<String> = std::fs::read_to_string(case.join("build-args")).unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        let platform = std::fs::read_to_string(case.join("platform")).ok().map(|p| p.trim().to_string());
        let build_both = |file: &Path, tag: &str| {
            let mut opts = options(&std::fs::read_to_string(file).expect("Dockerfile"));
            opts.tags = vec![tag.to_string()];
            opts.platform = platform.clone();
            for a in &args {
                let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
                opts.build_args.insert(k.to_string(), v.to_string());
            }
            let built = remote.build(&opts, &scratch, |_| {});
            let mut cmd = local.cmd();
            cmd.args(["build", "--progress", "plain", "--build-arg", "SOURCE_DATE_EPOCH=0", "-t", tag, "-f", file.to_str().expect("utf8")]);
            for a in &args {
                cmd.args(["--build-arg", a]);
            }
            if let Some(p) = &platform {
                cmd.args(["--platform", p]);
            }
            cmd.arg(&scratch);
            (built, output_within(cmd, Duration::from_secs(300), &format!("the local build of case {name}")))
        };
        if case.join("base.Dockerfile").exists() {
            let (built, out) = build_both(&case.join("base.Dockerfile"), &format!("diff-{name}-base"));
            assert!(built.is_ok() && out.status.success(), "the base image of case {name}: {:?}\n{}", built.map(|b| b.outcome), String::from_utf8_lossy(&out.stderr));
        }
        let tag = format!("case:{name}");
        let (built, out) = build_both(&file, &tag);
        match built {
            Ok(built) => {
                assert_success(&out, &["build", &tag]);
                assert_eq!(local_digest(local.root(), &tag), built.outcome.image_digest, "testdata case {name}");
            }
            // A case the builder cannot build yet fails the same way remotely and locally.
            Err(e) => {
                let said = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "case {name} fails remotely ({e}) but builds locally");
                let first = e.to_string().lines().next().unwrap_or_default().rsplit(": ").next().unwrap_or_default().to_string();
                assert!(said.contains(&first), "case {name}: the remote error {e:?} is not the local one:\n{said}");
            }
        }
    }
}

// ---------------------------------------------------------------- the CLI with --addr

/// `builder --addr ADDR ARGS…` (or `$BUILDER_HOST` with `via_env`), with a `--root` that a
/// remote command must never touch and a private client cache.
/// Runs `cmd` to completion, killing it (and failing the test) when it takes longer than `limit`:
/// a hung build must not hang the suite.
fn output_within(mut cmd: Command, limit: Duration, what: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tmp");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}:\n{}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output { status, stdout: std::fs::read(&out_path).unwrap_or_default(), stderr: std::fs::read(&err_path).unwrap_or_default() }
}

fn remote_cli(server: &Server, client: &Path, via_env: bool, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.env("XDG_CACHE_HOME", client.join("cache")).env_remove("BUILDER_HOST").arg("--root").arg(client.join("untouched-root")).stdin(Stdio::null());
    if via_env {
        cmd.env("BUILDER_HOST", &server.addr);
    } else {
        cmd.args(["--addr", &server.addr]);
    }
    cmd.args(args).output().expect("spawn builder")
}

#[test]
fn builder_addr_build_and_images_run_on_the_server_and_give_the_local_image() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", APP_DOCKERFILE);
    write(ctx.path(), "src/main.c", "int main(){return 0;}\n");
    write(ctx.path(), "README", "hello\n");
    let client = tempfile::tempdir().expect("client");
    let ctx_arg = ctx.path().to_str().expect("utf8");
    let remote_iid = client.path().join("remote.iid");

    let args = ["build", "--progress", "plain", "--build-arg", "SOURCE_DATE_EPOCH=0", "--iidfile", remote_iid.to_str().expect("utf8"), "-t", "x", ctx_arg];
    let out = remote_cli(&server, client.path(), false, &args);
    assert_success(&out, &args);
    let plain = String::from_utf8_lossy(&out.stderr);
    assert!(plain.contains("RUN echo built"), "the remote build's steps are rendered like a local build's:\n{plain}");
    assert!(!client.path().join("untouched-root").exists(), "a remote build writes nothing under the client's --root");

    // `images` through $BUILDER_HOST: the server's image, as JSON and as the usual table.
    let out = remote_cli(&server, client.path(), true, &["images", "--no-trunc", "--format", "json"]);
    assert_success(&out, &["images", "--no-trunc", "--format", "json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    let row: serde_json::Value = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .find(|v| v["Repository"] == "x" && v["Tag"] == "latest")
        .unwrap_or_else(|| panic!("x:latest not in remote `builder images`:\n{json}"));
    let remote_digest = row["Digest"].as_str().expect("digest").to_string();
    let remote_id = std::fs::read_to_string(&remote_iid).expect("remote iidfile");
    assert_eq!(row["ID"].as_str(), Some(remote_id.as_str()), "the --iidfile of a remote build names the server's image");
    let out = remote_cli(&server, client.path(), false, &["images"]);
    assert_success(&out, &["images"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.starts_with("REPOSITORY") && header.contains("IMAGE ID") && header.contains("SIZE"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("x ") && l.contains("latest") && l.contains(&remote_id[7..19])), "{table}");

    // The same build, locally, on the same base image: the same image.
    let local = Builder::new();
    copy_busybox(&server.state(), local.root());
    let local_iid = client.path().join("local.iid");
    let args = ["build", "--progress", "plain", "--build-arg", "SOURCE_DATE_EPOCH=0", "--iidfile", local_iid.to_str().expect("utf8"), "-t", "x", ctx_arg];
    let out = local.run(&args);
    assert_success(&out, &args);
    assert_eq!(local_digest(local.root(), "x:latest"), remote_digest, "`builder --addr … build` and `builder build` give one image");
    assert_eq!(std::fs::read_to_string(&local_iid).expect("local iidfile"), remote_id);
}

#[test]
fn builder_addr_push_du_and_prune_work_on_the_servers_store_and_cache() {
    let registry = crate::util_registry::Registry::start();
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", "FROM busybox:test\nCOPY hello.txt /\nRUN cat /hello.txt > /copy\n");
    write(ctx.path(), "hello.txt", "hello\n");
    let client = tempfile::tempdir().expect("client");
    let tag = format!("{}/cli/app:1", registry.addr());
    let args = ["build", "-q", "-t", tag.as_str(), ctx.path().to_str().expect("utf8")];
    let out = remote_cli(&server, client.path(), false, &args);
    assert_success(&out, &args);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "-q prints the image ID of a remote build: {id:?}");

    let out = remote_cli(&server, client.path(), false, &["push", &tag]);
    assert_success(&out, &["push", &tag]);
    let pushed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fresh = Builder::new();
    fresh.ok(&["pull", &tag]);
    assert_eq!(local_digest(fresh.root(), &tag), pushed, "the server pushed the image it built; push prints its digest");

    let out = remote_cli(&server, client.path(), true, &["du"]);
    assert_success(&out, &["du"]);
    let du = String::from_utf8_lossy(&out.stdout);
    assert!(du.contains("Cache entries:") && !du.contains("Cache entries:\t0"), "du reports the server's cache:\n{du}");
    let out = remote_cli(&server, client.path(), false, &["prune", "--all"]);
    assert_success(&out, &["prune", "--all"]);
    let pruned = String::from_utf8_lossy(&out.stdout);
    assert!(pruned.contains("Deleted build cache objects:") && !pruned.contains("Deleted build cache objects: 0 entries"), "{pruned}");
    let out = remote_cli(&server, client.path(), false, &["du"]);
    assert_success(&out, &["du"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Cache entries:\t0"), "prune --all empties the server's cache");
    assert!(!client.path().join("untouched-root").exists(), "remote commands write nothing under the client's --root");
}

// ---------------------------------------------------------------- file outputs and Ctrl-C

#[test]
fn remote_file_outputs_are_written_on_the_client_as_a_local_build_writes_them() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", "FROM busybox:test\nCOPY site/ /site/\nRUN cd /site && ln -s index.html link && ln index.html hard && chmod 700 /site/private && mkdir -p /empty\n");
    write(ctx.path(), "site/index.html", "<h1>hello</h1>\n");
    write(ctx.path(), "site/private/key", "k\n");
    let client = tempfile::tempdir().expect("client");
    let ctx_arg = ctx.path().to_str().expect("utf8");
    let outputs = |dir: &Path| -> Vec<String> {
        std::fs::create_dir_all(dir).expect("mkdir");
        vec![
            "-o".into(),
            dir.join("tree").display().to_string(),
            "-o".into(),
            format!("type=tar,dest={}", dir.join("fs.tar").display()),
            "-o".into(),
            format!("type=oci,dest={}", dir.join("oci.tar").display()),
            "-o".into(),
            format!("type=docker,dest={}", dir.join("docker.tar").display()),
        ]
    };
    let remote_dir = client.path().join("remote");
    let mut args: Vec<String> = ["build", "--progress", "plain", "--build-arg", "SOURCE_DATE_EPOCH=0", "-t", "out:1"].map(String::from).to_vec();
    args.extend(outputs(&remote_dir));
    args.push(ctx_arg.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = remote_cli(&server, client.path(), false, &args);
    assert_success(&out, &args);
    let plain = String::from_utf8_lossy(&out.stderr);
    assert!(plain.contains(&format!("copying files to {} done", remote_dir.join("tree").display())), "the progress names the client's destination:\n{plain}");
    assert!(!plain.contains("output-"), "the server's own paths stay on the server:\n{plain}");
    let stdout_args = ["build", "--build-arg", "SOURCE_DATE_EPOCH=0", "-o", "-", ctx_arg];
    let remote_stdout = remote_cli(&server, client.path(), false, &stdout_args);
    assert_success(&remote_stdout, &stdout_args);
    assert!(!client.path().join("untouched-root").exists(), "a remote build writes nothing under the client's --root");
    let leftovers: Vec<_> = std::fs::read_dir(&remote_dir).expect("dir").flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "no temporary files are left beside the outputs: {leftovers:?}");

    // The same build, locally, on the server's root once it stopped: the very same results.
    let root = server.stop_keeping_root();
    let state = root.path().join("state");
    let local_dir = client.path().join("local");
    let mut args: Vec<String> = vec!["--root".into(), state.display().to_string()];
    args.extend(["build", "--progress", "plain", "--build-arg", "SOURCE_DATE_EPOCH=0", "-t", "out:1"].map(String::from));
    args.extend(outputs(&local_dir));
    args.push(ctx_arg.into());
    let out = Command::new(bin()).args(&args).stdin(Stdio::null()).output().expect("local build");
    assert_success(&out, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let local_stdout = Command::new(bin()).arg("--root").arg(&state).args(stdout_args).stdin(Stdio::null()).output().expect("local build");
    assert_success(&local_stdout, &stdout_args);

    let remote_tree = walk_tree(&remote_dir.join("tree"));
    assert!(remote_tree.iter().any(|(p, _, _, what)| p == "site/link" && what == "index.html"), "{remote_tree:?}");
    assert_eq!(remote_tree, walk_tree(&local_dir.join("tree")), "type=local: the same tree");
    let mtimes = |d: &Path| -> Vec<(String, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        ["site", "site/index.html", "site/hard", "site/private", "empty", "bin/busybox"]
            .iter()
            .map(|p| {
                let m = std::fs::metadata(d.join(p)).expect("stat");
                (p.to_string(), m.mtime(), m.mtime_nsec())
            })
            .collect()
    };
    assert_eq!(mtimes(&remote_dir.join("tree")), mtimes(&local_dir.join("tree")), "type=local: the same times");
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(remote_dir.join("tree/site/hard")).expect("stat");
        assert_eq!(m.nlink(), 2, "a hard link stays a hard link");
    }
    for f in ["fs.tar", "oci.tar", "docker.tar"] {
        let (r, l) = (std::fs::read(remote_dir.join(f)).expect("remote"), std::fs::read(local_dir.join(f)).expect("local"));
        assert!(r == l, "{f}: the remote output ({} bytes) differs from the local one ({} bytes)", r.len(), l.len());
    }
    assert!(remote_stdout.stdout == local_stdout.stdout, "-o -: the same tar on stdout");
    assert!(remote_stdout.stdout == std::fs::read(remote_dir.join("fs.tar")).expect("fs.tar"), "-o - is the type=tar output");
    let inspect = Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", remote_dir.join("oci.tar").display())).output().expect("skopeo");
    assert!(inspect.status.success(), "skopeo reads the remote OCI archive: {}", String::from_utf8_lossy(&inspect.stderr));
}

#[test]
fn ctrl_c_on_the_client_cancels_the_remote_build_and_leaves_nothing_on_the_server() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let marker = ["sleep", "4244"];
    assert!(processes_running(&marker).is_empty(), "another `sleep 4244` is already running");
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", "FROM busybox:test\nRUN echo running && sleep 4244\n");
    let client_dir = tempfile::tempdir().expect("client");
    let stderr = client_dir.path().join("client.log");
    let mut client = Command::new(bin())
        .env("XDG_CACHE_HOME", client_dir.path().join("cache"))
        .args(["--addr", &server.addr, "build", "--progress", "plain"])
        .arg(ctx.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("log"))
        .spawn()
        .expect("spawn builder --addr build");
    wait_until("the RUN's sleep is running", || !processes_running(&marker).is_empty());
    signal(client.id() as i32, "INT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = client.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the client did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(!status.success(), "an interrupted build fails: {said}");
    assert!(said.contains("build cancelled"), "the client says the build was cancelled:\n{said}");
    wait_until("the server killed the sandbox of the interrupted build", || processes_running(&marker).is_empty());
    wait_until("the server unmounted everything of the interrupted build", || server_mounts(&server).is_empty());
    assert!(server.log().contains("cancelling its build"), "the server log says why:\n{}", server.log());
}

// ---------------------------------------------------------------- entitlements and ssh

/// The `CapEff:` line a RUN printed.
fn cap_eff(stderr: &str) -> String {
    stderr.lines().find_map(|l| l.split_once("CapEff:").map(|(_, v)| v.trim().to_string())).unwrap_or_else(|| panic!("no CapEff line in:\n{stderr}"))
}

#[test]
fn allow_security_insecure_reaches_a_server_that_grants_it_and_is_refused_by_one_that_does_not() {
    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", "FROM busybox:test\nRUN --security=insecure grep CapEff /proc/self/status\nRUN grep CapEff /proc/self/status\n");
    let client = tempfile::tempdir().expect("client");
    let ctx_arg = ctx.path().to_str().expect("utf8");
    let args = ["build", "--progress", "plain", "--no-cache", "--allow", "security.insecure", ctx_arg];

    let strict = Server::start(&[]);
    import_busybox(&strict.state());
    let out = remote_cli(&strict, client.path(), false, &args);
    assert!(!out.status.success(), "a server that grants nothing refuses --allow security.insecure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied") && err.contains("--allow-insecure-entitlement security.insecure"), "{err}");

    let granting = Server::start(&["--allow-insecure-entitlement", "security.insecure"]);
    import_busybox(&granting.state());
    let out = remote_cli(&granting, client.path(), false, &args);
    assert_success(&out, &args);
    let plain = String::from_utf8_lossy(&out.stderr);
    let (insecure, sandboxed): (Vec<&str>, Vec<&str>) = plain.lines().filter(|l| l.contains("CapEff:")).partition(|l| plain.find(*l) < plain.find("RUN grep CapEff"));
    assert!(!insecure.is_empty() && !sandboxed.is_empty(), "{plain}");
    assert_ne!(cap_eff(insecure[0]), cap_eff(sandboxed[0]), "the insecure RUN has more capabilities than the sandboxed one:\n{plain}");

    // Without --allow, even a granting server runs no insecure step.
    let out = remote_cli(&granting, client.path(), false, &["build", "--progress", "plain", ctx_arg]);
    assert!(!out.status.success(), "RUN --security=insecure without --allow must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("security.insecure"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Copies the host's `ssh-add` and the libraries it loads under `ctx/rootfs/`, so a busybox
/// image can ask an agent for its keys (`COPY rootfs/ /`).
fn add_ssh_add(ctx: &Path) {
    let ssh_add = PathBuf::from("/usr/bin/ssh-add");
    assert!(ssh_add.exists(), "tests need Debian's openssh-client");
    let ldd = Command::new("ldd").arg(&ssh_add).output().expect("ldd");
    let mut files = vec![ssh_add];
    files.extend(String::from_utf8_lossy(&ldd.stdout).lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from)));
    for f in files {
        let dest = ctx.join("rootfs").join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&f, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
}

/// An ssh key made by ssh-keygen with `comment`; returns the private key's path.
fn ssh_key(dir: &Path, comment: &str) -> PathBuf {
    let key = dir.join(format!("key-{comment}"));
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(&key).status().expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen");
    key
}

#[test]
fn the_clients_ssh_agents_are_forwarded_to_the_remote_build() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let keys = tempfile::tempdir().expect("keys");
    // An agent of the client's, holding one key.
    let socket = keys.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("ssh-agent");
    wait_until("ssh-agent listens", || socket.exists());
    let st = Command::new("ssh-add").arg("-q").arg(ssh_key(keys.path(), "client-agent-key")).env("SSH_AUTH_SOCK", &socket).stdin(Stdio::null()).status().expect("ssh-add");
    assert!(st.success(), "ssh-add");
    // And a key file, which the client serves from an agent of its own.
    let key_file = ssh_key(keys.path(), "client-key-file");

    let ctx = tempfile::tempdir().expect("ctx");
    write(ctx.path(), "Dockerfile", "FROM busybox:test\nCOPY rootfs/ /\nRUN --mount=type=ssh ssh-add -l\nRUN --mount=type=ssh,id=work,required ssh-add -l\n");
    add_ssh_add(ctx.path());
    let client = tempfile::tempdir().expect("client");
    let default = format!("default={}", socket.display());
    let work = format!("work={}", key_file.display());
    let args = ["build", "--progress", "plain", "--ssh", &default, "--ssh", &work, ctx.path().to_str().expect("utf8")];
    let out = remote_cli(&server, client.path(), false, &args);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_success(&out, &args);
    let plain = String::from_utf8_lossy(&out.stderr);
    assert!(plain.contains("client-agent-key"), "the RUN saw the key of the client's agent:\n{plain}");
    assert!(plain.contains("client-key-file"), "the RUN saw the key file the client served:\n{plain}");
    // The key file's body (a line of its base64) is nowhere in the server's state.
    let body = std::fs::read_to_string(&key_file).expect("key");
    let line = body.lines().nth(1).expect("a key line");
    assert_eq!(found_below(&server.state(), line.as_bytes()), Vec::<PathBuf>::new(), "key material reached the server's state");
}


#[test]
fn version_shows_the_client_and_with_addr_the_server() {
    let out = Command::new(bin()).arg("version").output().expect("version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("Client:") && text.contains(env!("CARGO_PKG_VERSION")) && !text.contains("Server:"), "{text}");
    let server = Server::start(&[]);
    let out = Command::new(bin()).args(["--addr", &server.addr, "version"]).output().expect("version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("Server: {}", server.addr)) && text.contains("linux/"), "{text}");
}

// ---------------------------------------------------------------- build cache

/// Builds remotely; returns the step titles that were CACHED and the cache-miss reasons by step.
fn remote_build_outcomes(remote: &Remote, opts: &BuildOptions, ctx: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let mut titles = std::collections::HashMap::new();
    let (mut cached, mut misses) = (Vec::new(), Vec::new());
    remote
        .build(opts, ctx, |e| match e {
            solver::Event::Started { vertex, description } => {
                titles.insert(*vertex, description.clone());
            }
            solver::Event::Cached { vertex } => cached.extend(titles.get(vertex).cloned()),
            solver::Event::CacheMiss { vertex, reason, .. } => misses.push((titles.get(vertex).cloned().unwrap_or_default(), reason.clone())),
            _ => {}
        })
        .unwrap_or_else(|e| panic!("remote build failed: {e}"));
    (cached, misses)
}

#[test]
fn a_remote_build_says_why_a_step_missed_the_cache() {
    let server = Server::start(&[]);
    import_busybox(&server.state());
    let ctx = tempfile::tempdir().expect("ctx");
    let dockerfile = "FROM busybox:test\nCOPY app.txt /\nRUN cat /app.txt > /copy\n";
    write(ctx.path(), "Dockerfile", dockerfile);
    write(ctx.path(), "app.txt", "one\n");
    let opts = options(dockerfile);
    let (_, misses) = remote_build_outcomes(&server.connect(), &opts, ctx.path());
    assert!(misses.is_empty(), "a first build has nothing to compare with: {misses:?}");
    write(ctx.path(), "app.txt", "two\n");
    let (cached, misses) = remote_build_outcomes(&server.connect(), &opts, ctx.path());
    assert!(cached.iter().any(|c| c.contains("FROM")), "{cached:?}");
    assert!(misses.iter().any(|(step, why)| step.contains("COPY app.txt") && why == "app.txt: content changed"), "{misses:?}");
    assert!(misses.iter().any(|(step, why)| step.contains("RUN cat") && why == "the step before it ran"), "{misses:?}");
}

#[test]
fn a_servers_build_cache_stays_under_its_cap_least_recently_used_first() {
    let err = Builder::new().fails(&["serve", "--cache-max-size", "lots"]);
    assert!(err.contains("invalid --cache-max-size"), "{err}");
    let server = Server::start(&["--cache-max-size", "150KB"]);
    import_busybox(&server.state());
    let records = || server.state().join("cache/index").read_dir().map(|d| d.count()).unwrap_or(0);
    // Each build's RUN writes a layer of 100 KB: two do not fit under the cap.
    let build = |n: u32| {
        let ctx = tempfile::tempdir().expect("ctx");
        let dockerfile = format!("FROM busybox:test\nRUN head -c 100000 /dev/zero > /fill-{n}\n");
        write(ctx.path(), "Dockerfile", &dockerfile);
        remote_build_outcomes(&server.connect(), &options(&dockerfile), ctx.path()).0
    };
    build(1);
    assert_eq!(records(), 1, "one build fits");
    build(2);
    // The cap is kept after the build, off the build's own path: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while records() > 1 {
        assert!(Instant::now() < deadline, "the cache stayed over its cap:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let cached = build(2);
    assert!(cached.iter().any(|c| c.contains("RUN head")), "the most recent entry stays: {cached:?}");
    let cached = build(1);
    assert!(!cached.iter().any(|c| c.contains("RUN head")), "the least recently used entry went: {cached:?}");
}
