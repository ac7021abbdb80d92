//! End-to-end tests: `builder build`, `prune`, `du`.
#[allow(unused_imports)]
use crate::util::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Runs `builder build --progress plain ARGS… CONTEXT` and returns (success, stderr).
fn build(b: &Builder, ctx: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    let c = ctx.to_str().expect("utf8");
    all.push(c);
    let out = b.run(&all);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A build whose RUN steps install packages from the Debian archive: on the machine's network
/// (RUN steps use the host's network, and the suite's own namespace has no way out).
fn build_online(b: &Builder, ctx: &Path, args: &[&str]) {
    let mut cmd = b.cmd();
    on_machine_network(&mut cmd).args(["build", "--progress", "plain"]).args(args).arg(ctx);
    let out = cmd.output().expect("spawn builder");
    assert!(out.status.success(), "build failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn build_ok(b: &Builder, ctx: &Path, args: &[&str]) -> String {
    let (ok, err) = build(b, ctx, args);
    assert!(ok, "build failed:\n{err}");
    err
}


fn blob(root: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(root.join("blobs/sha256").join(hex)).expect("blob")
}

/// (manifest digest, manifest, config) of a tag in the store (OCI layout at the root).
fn image(root: &Path, tag: &str) -> (String, serde_json::Value, serde_json::Value) {
    let full = if tag.contains('/') { tag.to_string() } else { format!("docker.io/library/{tag}") };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("index")).expect("json");
    let m = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == full.as_str())
        .unwrap_or_else(|| panic!("tag {full} not in index.json: {index}"));
    let digest = m["digest"].as_str().expect("digest").to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(root, &digest)).expect("manifest");
    let config: serde_json::Value = serde_json::from_slice(&blob(root, manifest["config"]["digest"].as_str().expect("cfg"))).expect("config");
    (digest, manifest, config)
}

/// The paths in the image's layers (top layer last), from the layer blobs.
fn layer_paths(root: &Path, manifest: &serde_json::Value) -> Vec<Vec<String>> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let bytes = blob(root, l["digest"].as_str().expect("digest"));
            let reader: Box<dyn std::io::Read> =
                if bytes.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])) } else { Box::new(&bytes[..]) };
            let mut a = tar::Archive::new(reader);
            a.entries().expect("entries").map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned()).collect()
        })
        .collect()
}

const APP: &str = "FROM busybox:test
ENV GREETING=hello
WORKDIR /app
COPY a.txt .
RUN echo \"$GREETING from run\" > /app/out.txt && cat /app/a.txt
COPY b.txt /app/b.txt
CMD [\"cat\", \"/app/out.txt\"]
";

#[test]
fn build_runs_every_step_and_writes_a_docker_like_image() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", APP), ("a.txt", "A\n"), ("b.txt", "B\n")]);
    let log = build_ok(&b, ctx.path(), &["-t", "app:1"]);
    assert!(log.contains("#4 0.") && log.contains(" A"), "RUN output is shown:\n{log}");
    let (_, manifest, config) = image(b.root(), "app:1");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/app/out.txt"]));
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert!(config["config"]["Env"].as_array().expect("env").iter().any(|e| e == "GREETING=hello"));
    let history = config["history"].as_array().expect("history");
    let created_by: Vec<&str> = history.iter().map(|h| h["created_by"].as_str().unwrap_or("")).collect();
    assert!(created_by.contains(&"ENV GREETING=hello"), "{created_by:?}");
    assert!(created_by.iter().any(|c| c.starts_with("RUN /bin/sh -c echo") && c.ends_with("# buildkit")), "{created_by:?}");
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(non_empty, manifest["layers"].as_array().expect("layers").len(), "one history entry per layer");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().expect("diff ids").len(), non_empty);
    let layers = layer_paths(b.root(), &manifest);
    let run_layer = &layers[layers.len() - 2];
    assert!(run_layer.iter().any(|p| p == "app/out.txt"), "RUN layer holds what it wrote: {run_layer:?}");
    assert!(!run_layer.iter().any(|p| p.starts_with("proc") || p.starts_with("dev") || p == "etc/hosts"), "no mount stubs: {run_layer:?}");
    assert_eq!(layers.last().expect("top"), &vec!["app/b.txt".to_string()]);
}

#[test]
fn noop_rebuild_is_all_cached_and_touch_keeps_the_cache() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", APP), ("a.txt", "A\n"), ("b.txt", "B\n"), ("unrelated.txt", "x")]);
    build_ok(&b, ctx.path(), &["-t", "app:1"]);
    let (first, _, _) = image(b.root(), "app:1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (cached, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &["-t", "app:1"]));
    assert!(ran.is_empty(), "nothing runs on a no-op rebuild: {ran:?}");
    assert_eq!(cached.len(), 5, "{cached:?}");
    assert_eq!(image(b.root(), "app:1").0, first, "a cached rebuild writes the same image");
    // New mtime, same content.
    let f = std::fs::File::options().write(true).open(ctx.path().join("a.txt")).expect("open");
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).expect("touch");
    std::fs::write(ctx.path().join("unrelated.txt"), "changed but never copied").expect("write");
    let (_, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &["-t", "app:1"]));
    assert!(ran.is_empty(), "touch and unread files keep the cache: {ran:?}");
}

#[test]
fn changing_a_copied_file_reruns_only_from_the_copy_that_reads_it() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", APP), ("a.txt", "A\n"), ("b.txt", "B\n")]);
    build_ok(&b, ctx.path(), &["-t", "app:1"]);
    std::fs::write(ctx.path().join("b.txt"), "B2\n").expect("write");
    let (cached, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &["-t", "app:1"]));
    assert_eq!(ran, vec!["[5/5] COPY b.txt /app/b.txt"], "cached: {cached:?}");
    std::fs::write(ctx.path().join("a.txt"), "A2\n").expect("write");
    let (_, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &["-t", "app:1"]));
    assert_eq!(ran.len(), 3, "COPY a.txt, the RUN after it and COPY b.txt re-run: {ran:?}");
    let log = build_ok(&b, ctx.path(), &["--no-cache", "-t", "app:1"]);
    let (cached, _) = cached_and_ran(&log);
    assert!(cached.iter().all(|c| c.contains("FROM")), "--no-cache re-runs every step: {cached:?}");
}

#[test]
fn multi_stage_build_with_target_and_copy_from() {
    let b = with_busybox();
    let df = "FROM busybox:test AS base\nRUN echo base > /base.txt\n\
              FROM base AS builder\nRUN echo built > /artifact\n\
              FROM busybox:test AS unused\nRUN exit 1\n\
              FROM busybox:test\nCOPY --from=builder /artifact /artifact\nCOPY --from=0 /base.txt /\n";
    let ctx = context(&[("Dockerfile", df)]);
    build_ok(&b, ctx.path(), &["-t", "multi:1"]);
    let (_, manifest, _) = image(b.root(), "multi:1");
    let layers = layer_paths(b.root(), &manifest);
    let top: Vec<String> = layers.iter().rev().take(2).flatten().cloned().collect();
    assert!(top.contains(&"artifact".to_string()) && top.contains(&"base.txt".to_string()), "{top:?}");
    // --target builds the named stage only.
    build_ok(&b, ctx.path(), &["--target", "base", "-t", "base:1"]);
    let (_, m, _) = image(b.root(), "base:1");
    assert_eq!(m["layers"].as_array().expect("layers").len(), 2);
    let (ok, err) = build(&b, ctx.path(), &["--target", "unused"]);
    assert!(!ok && err.contains("exit code 1") && err.contains("Dockerfile:6"), "{err}");
}

#[test]
fn failing_run_shows_exit_code_output_and_dockerfile_line() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo first\nRUN echo oops-output && exit 3\n")]);
    let (ok, err) = build(&b, ctx.path(), &["-t", "fail:1"]);
    assert!(!ok);
    assert!(err.contains("exit code 3"), "{err}");
    assert!(err.contains("oops-output"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
}

#[test]
fn copy_of_missing_or_ignored_file_names_the_path() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nCOPY secret.txt /\n"), (".dockerignore", "secret.txt\n"), ("secret.txt", "s")]);
    let (ok, err) = build(&b, ctx.path(), &[]);
    assert!(!ok && err.contains("secret.txt") && err.contains(".dockerignore"), "{err}");
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nCOPY nothere.txt /\n")]);
    let (ok, err) = build(&b, ctx.path(), &[]);
    assert!(!ok && err.contains("/nothere.txt\": not found"), "{err}");
}

#[test]
fn dockerignored_files_are_not_in_the_image() {
    let b = with_busybox();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox:test\nCOPY . /src\n"),
        (".dockerignore", "*.log\nnode_modules\n!keep.log\n"),
        ("main.c", "int main;"),
        ("debug.log", "x"),
        ("keep.log", "k"),
        ("node_modules/m/index.js", "m"),
    ]);
    build_ok(&b, ctx.path(), &["-t", "ign:1"]);
    let (_, manifest, _) = image(b.root(), "ign:1");
    let top = layer_paths(b.root(), &manifest).pop().expect("layer");
    assert!(top.contains(&"src/main.c".to_string()) && top.contains(&"src/keep.log".to_string()), "{top:?}");
    assert!(!top.iter().any(|p| p.contains("debug.log") || p.contains("node_modules")), "{top:?}");
}

#[test]
fn source_date_epoch_builds_are_reproducible_from_an_empty_cache() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY busybox /bin/busybox\nCOPY a.txt /a.txt\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo hi > /hi && /bin/busybox mkdir -p /d && /bin/busybox touch /d/f\"]\nENV X=1\n"),
        ("a.txt", "A"),
    ]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("copy busybox");
    let mut digests = Vec::new();
    for _ in 0..2 {
        let b = Builder::new();
        build_ok(&b, ctx.path(), &["--build-arg", "SOURCE_DATE_EPOCH=1700000000", "-t", "repro:1"]);
        let (digest, _, config) = image(b.root(), "repro:1");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        digests.push(digest);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn busybox_builds_from_scratch_and_run_works_in_it() {
    let b = Builder::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN echo ok > /ok\nCMD [\"sh\"]\n")]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("copy busybox");
    build_ok(&b, ctx.path(), &["-t", "bb:scratch"]);
    let (_, manifest, config) = image(b.root(), "bb:scratch");
    assert_eq!(manifest["layers"].as_array().expect("layers").len(), 3);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
}

#[test]
fn independent_stages_build_in_parallel_and_identical_steps_run_once() {
    let b = with_busybox();
    let df = "FROM busybox:test AS a\nRUN sleep 1 && echo a > /a\n\
              FROM busybox:test AS b\nRUN sleep 1 && echo b > /b\n\
              FROM busybox:test AS c\nRUN sleep 1 && echo a > /a\n\
              FROM busybox:test\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCOPY --from=c /a /c\n";
    let ctx = context(&[("Dockerfile", df)]);
    let log = build_ok(&b, ctx.path(), &["--max-parallelism", "4", "-t", "par:1"]);
    // Stage c's RUN is the same vertex as stage a's: it appears once.
    assert_eq!(log.matches("RUN sleep 1 && echo a").count(), 1, "{log}");
    assert_eq!(log.matches("RUN sleep 1 && echo b").count(), 1, "{log}");
}

#[test]
fn run_mounts_cache_secret_and_bind() {
    let b = with_busybox();
    let df = "FROM busybox:test\n\
              RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log > /count\n\
              RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok > /dev/null && test ! -e /run/secrets/tok.copy\n\
              RUN --mount=type=bind,source=data,target=/data cp /data/in /copied\n\
              RUN --mount=type=tmpfs,target=/scratch touch /scratch/t\n";
    let ctx = context(&[("Dockerfile", df), ("data/in", "bound")]);
    let secret = ctx.path().join("tok.txt");
    std::fs::write(&secret, "s3cret-value").expect("secret");
    let sarg = format!("id=tok,src={}", secret.display());
    build_ok(&b, ctx.path(), &["--secret", &sarg, "-t", "mounts:1"]);
    let (_, manifest, config) = image(b.root(), "mounts:1");
    let all: Vec<String> = layer_paths(b.root(), &manifest).into_iter().flatten().collect();
    assert!(all.contains(&"copied".to_string()), "{all:?}");
    assert!(!all.iter().any(|p| p.starts_with("run/secrets") || p.starts_with("cache") || p.starts_with("data") || p.starts_with("scratch")), "{all:?}");
    assert!(!config.to_string().contains("s3cret-value"));
    let (ok, err) = build(&b, ctx.path(), &["-t", "mounts:2", "--no-cache"]);
    assert!(!ok && err.contains("secret tok not found"), "a required secret must be given: {err}");
}

#[test]
fn output_local_and_tar_write_the_filesystem() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a.txt /dir/a.txt\n"), ("a.txt", "A")]);
    let out = tempfile::tempdir().expect("tmp");
    let dest = out.path().join("local");
    let spec = format!("type=local,dest={}", dest.display());
    build_ok(&b, ctx.path(), &["--output", &spec]);
    assert_eq!(std::fs::read_to_string(dest.join("dir/a.txt")).expect("read"), "A");
    let tarfile = out.path().join("fs.tar");
    let spec = format!("type=tar,dest={}", tarfile.display());
    build_ok(&b, ctx.path(), &["--output", &spec]);
    let mut a = tar::Archive::new(std::fs::File::open(&tarfile).expect("tar"));
    let names: Vec<String> = a.entries().expect("entries").map(|e| String::from_utf8_lossy(&e.expect("e").path_bytes()).into_owned()).collect();
    assert_eq!(names, vec!["dir/", "dir/a.txt"]);
}

#[test]
fn dockerfile_from_stdin_quiet_and_iidfile() {
    let b = with_busybox();
    let dir = tempfile::tempdir().expect("tmp");
    let iid = dir.path().join("iid");
    let mut child = b
        .cmd()
        .args(["build", "-q", "--iidfile", iid.to_str().expect("utf8"), "-t", "stdin:1", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(b"# syntax=docker/dockerfile:1\nFROM busybox:test\nLABEL a=b\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(stdout.starts_with("sha256:"), "-q prints only the image ID: {stdout:?}");
    assert_eq!(std::fs::read_to_string(&iid).expect("iid"), stdout);
    let (_, _, config) = image(b.root(), "stdin:1");
    assert_eq!(config["config"]["Labels"]["a"], "b");
}

/// Runs `builder build ARGS… -` with `input` on stdin; returns success and stderr.
fn build_from_stdin(b: &Builder, args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = b.cmd().arg("build").args(args).arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // A build that fails early stops reading: write from a thread so the wait cannot block.
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The tar header of a root-owned 0644 file of `size` bytes.
fn file_header(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A tar archive of `files` (name, body), gzip-compressed when `gzip`.
fn context_archive(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in files {
        tar.append_data(&mut file_header(body.len()), name, *body).expect("append");
    }
    let bytes = tar.into_inner().expect("tar");
    if !gzip {
        return bytes;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn a_context_archive_on_stdin_is_the_whole_build_context_as_with_docker_build() {
    let b = with_busybox();
    let files: [(&str, &[u8]); 3] = [
        ("Dockerfile", b"FROM busybox:test\nCOPY app/a.txt /a.txt\n"),
        ("app/a.txt", b"from the archive\n"),
        ("other/Build.df", b"FROM busybox:test\nCOPY app/a.txt /b.txt\n"),
    ];
    for gzip in [false, true] {
        let out = tempfile::tempdir().expect("tmp");
        let dest = format!("type=local,dest={}", out.path().display());
        let (ok, err) = build_from_stdin(&b, &["--progress", "plain", "-o", &dest], &context_archive(&files, gzip));
        assert!(ok, "gzip={gzip}: {err}");
        assert_eq!(std::fs::read_to_string(out.path().join("a.txt")).expect("a.txt"), "from the archive\n");
    }
    // -f names a Dockerfile inside the archive.
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", out.path().display());
    let (ok, err) = build_from_stdin(&b, &["-f", "other/Build.df", "-o", &dest], &context_archive(&files, true));
    assert!(ok, "{err}");
    assert!(out.path().join("b.txt").is_file());
    // No Dockerfile at its root, or an entry that climbs out: clear errors.
    let (ok, err) = build_from_stdin(&b, &[], &context_archive(&files[1..], false));
    assert!(!ok && err.contains("no Dockerfile at its root"), "{err}");
    let mut evil = tar::Builder::new(Vec::new());
    for (name, body) in [("Dockerfile", &b"FROM busybox:test\n"[..]), ("../../escape", b"x")] {
        let mut h = file_header(body.len());
        // The tar crate refuses to write `..` names: put the name in the header by hand.
        h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        evil.append(&h, body).expect("append");
    }
    let (ok, err) = build_from_stdin(&b, &[], &evil.into_inner().expect("tar"));
    assert!(!ok && err.contains("outside the context") && err.contains("../../escape"), "{err}");
}

#[test]
fn unknown_syntax_frontend_is_a_clear_error() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "# syntax=example.com/custom/frontend:1\nFROM busybox:test\n")]);
    let (ok, err) = build(&b, ctx.path(), &[]);
    assert!(!ok && err.contains("unsupported syntax"), "{err}");
}

#[test]
fn killed_build_can_be_rerun_and_reuses_finished_steps() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo one > /one\nRUN sleep 31.7\n")]);
    let mut child = b
        .cmd()
        .args(["build", "--progress", "plain", ctx.path().to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the long RUN has started.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("RUN sleep 31.7") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the RUN started");
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // No sandbox process of the killed build survives.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.trim() == "sleep 31.7"), "sleep 31.7 is still running");
    let fixed = "FROM busybox:test\nRUN echo one > /one\nRUN echo two\n";
    std::fs::write(ctx.path().join("Dockerfile"), fixed).expect("write");
    let (cached, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &[]));
    assert!(cached.iter().any(|c| c.contains("RUN echo one")), "the finished step is reused: cached {cached:?} ran {ran:?}");
}

#[test]
fn two_builds_at_once_both_succeed_and_share_the_cache() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN sleep 1 && echo shared > /s\nCOPY a /a\n"), ("a", "a")]);
    let spawn = |tag: &str| {
        b.cmd()
            .args(["build", "--progress", "plain", "-t", tag, ctx.path().to_str().expect("utf8")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (c1, c2) = (spawn("one:1"), spawn("two:1"));
    let (o1, o2) = (c1.wait_with_output().expect("wait"), c2.wait_with_output().expect("wait"));
    assert!(o1.status.success(), "{}", String::from_utf8_lossy(&o1.stderr));
    assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
    let (_, m1, _) = image(b.root(), "one:1");
    let (_, m2, _) = image(b.root(), "two:1");
    assert_eq!(m1["layers"], m2["layers"], "both images share the same layers");
    let logs = [String::from_utf8_lossy(&o1.stderr).into_owned(), String::from_utf8_lossy(&o2.stderr).into_owned()];
    let ran: usize = logs.iter().map(|l| cached_and_ran(l).1.iter().filter(|s| s.contains("RUN sleep")).count()).sum();
    assert_eq!(ran, 1, "the RUN ran once across both builds:\n{}\n{}", logs[0], logs[1]);
}

#[test]
fn prune_all_empties_the_cache_and_du_reports_it() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo x > /x\n")]);
    build_ok(&b, ctx.path(), &[]);
    let du = b.ok(&["du"]);
    assert!(du.contains("Cache entries:\t1"), "{du}");
    let out = b.ok(&["prune", "--all"]);
    assert!(out.contains("Deleted build cache objects: 1 entries"), "{out}");
    assert!(b.ok(&["du"]).contains("Cache entries:\t0"));
    let (cached, _) = cached_and_ran(&build_ok(&b, ctx.path(), &[]));
    assert!(cached.iter().all(|c| c.contains("FROM")), "{cached:?}");
}

#[allow(dead_code)]
fn testdata_build() -> PathBuf {
    testdata().join("build")
}

#[test]
fn built_image_runs_and_is_pushed_pulled_and_read_by_skopeo() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo built-content > /msg\nCMD [\"cat\", \"/msg\"]\n")]);
    let registry = crate::util_registry::Registry::start();
    let remote = format!("{}/built/app:1", registry.addr());
    build_ok(&b, ctx.path(), &["-t", &remote, "--push"]);
    let out = b.ok(&["run", "--rm", &remote]);
    assert_eq!(out.trim(), "built-content");
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{remote}")])
        .output()
        .expect("skopeo");
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert_eq!(v["Layers"].as_array().expect("layers").len(), 2);
    // Pulled into a fresh root, it runs the same.
    let other = Builder::new();
    other.ok(&["pull", &remote]);
    assert_eq!(other.ok(&["run", "--rm", &remote]).trim(), "built-content");
}

#[test]
fn copy_flags_chown_chmod_link_parents_exclude_and_add_unpack() {
    let b = with_busybox();
    let df = "FROM busybox:test\n\
              COPY --chown=app:app --chmod=640 a.txt /owned/a.txt\n\
              COPY --link b.txt /linked/\n\
              COPY --parents src/x/one.c src/y/two.c /p/\n\
              COPY --exclude=*.tmp dir/ /ex/\n\
              ADD archive.tar.gz /unpacked/\n\
              RUN stat -c '%u:%g %a' /owned/a.txt > /stat && test -f /p/src/x/one.c && test -f /p/src/y/two.c && test ! -e /ex/junk.tmp && test -f /ex/keep && test -f /unpacked/inner/file\n";
    let ctx = context(&[
        ("Dockerfile", df),
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("src/x/one.c", "1"),
        ("src/y/two.c", "2"),
        ("dir/keep", "k"),
        ("dir/junk.tmp", "j"),
    ]);
    // A gzip tarball for ADD to unpack.
    let f = std::fs::File::create(ctx.path().join("archive.tar.gz")).expect("create");
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    t.append_data(&mut h, "inner/file", &b"hello"[..]).expect("append");
    t.into_inner().expect("tar").finish().expect("gz");
    build_ok(&b, ctx.path(), &["-t", "flags:1"]);
    let (_, manifest, _) = image(b.root(), "flags:1");
    let layers = layer_paths(b.root(), &manifest);
    let stat_layer = layers.last().expect("top");
    assert!(stat_layer.contains(&"stat".to_string()), "{stat_layer:?}");
    let out = b.ok(&["run", "--rm", "flags:1", "cat", "/stat"]);
    assert_eq!(out.trim(), "1000:1000 640");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let b = with_busybox();
    let parent = context(&[("Dockerfile", "FROM busybox:test\nONBUILD RUN echo triggered > /onbuild\n")]);
    build_ok(&b, parent.path(), &["-t", "parent:1"]);
    let (_, _, config) = image(b.root(), "parent:1");
    assert_eq!(config["config"]["OnBuild"], serde_json::json!(["RUN echo triggered > /onbuild"]));
    let child = context(&[("Dockerfile", "FROM parent:1\nRUN cat /onbuild\n")]);
    let log = build_ok(&b, child.path(), &["-t", "child:1"]);
    assert!(log.contains("triggered"), "{log}");
    let (_, _, config) = image(b.root(), "child:1");
    assert!(config["config"]["OnBuild"].is_null(), "triggers are not inherited: {config}");
}

#[test]
fn build_args_reach_run_but_not_the_image() {
    let b = with_busybox();
    let df = "FROM busybox:test\nARG WHO=nobody\nRUN echo \"hello $WHO\" > /greeting\n";
    let ctx = context(&[("Dockerfile", df)]);
    build_ok(&b, ctx.path(), &["--build-arg", "WHO=world", "-t", "args:1"]);
    assert_eq!(b.ok(&["run", "--rm", "args:1", "cat", "/greeting"]).trim(), "hello world");
    let (_, _, config) = image(b.root(), "args:1");
    assert!(!config["config"]["Env"].to_string().contains("WHO"), "{config}");
    let (cached, _) = cached_and_ran(&build_ok(&b, ctx.path(), &["--build-arg", "WHO=world", "-t", "args:1"]));
    assert_eq!(cached.len(), 2);
    let (_, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &["--build-arg", "WHO=other", "-t", "args:1"]));
    assert_eq!(ran.len(), 1, "a different build arg re-runs the RUN: {ran:?}");
}

#[test]
fn heredocs_in_copy_and_run() {
    let b = with_busybox();
    let df = "FROM busybox:test\nCOPY <<EOF /etc/greeting\nhello $USER\nEOF\nRUN <<EOT\nset -e\necho from-heredoc > /ran\nEOT\n";
    let ctx = context(&[("Dockerfile", df)]);
    build_ok(&b, ctx.path(), &["-t", "heredoc:1"]);
    assert_eq!(b.ok(&["run", "--rm", "heredoc:1", "cat", "/etc/greeting", "/ran"]), "hello \nfrom-heredoc\n");
}

#[test]
fn add_url_downloads_and_verifies_the_checksum() {
    let b = with_busybox();
    let serve = tempfile::tempdir().expect("tmp");
    std::fs::write(serve.path().join("payload.txt"), "downloaded\n").expect("write");
    let port = crate::util_registry::free_port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
        .current_dir(serve.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sum = "sha256:c9d3a4a8b4c4a5e4bd2f4e1c4d8bb1e1a6e5c7e5b2e0d1bb1a0b7d7e8b0f1a2c";
    let good = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"downloaded\n")))
    };
    let url = format!("http://127.0.0.1:{port}/payload.txt");
    let ctx = context(&[("Dockerfile", &format!("FROM busybox:test\nADD --checksum={good} {url} /data/\n"))]);
    build_ok(&b, ctx.path(), &["-t", "url:1"]);
    assert_eq!(b.ok(&["run", "--rm", "url:1", "cat", "/data/payload.txt"]), "downloaded\n");
    let bad = context(&[("Dockerfile", &format!("FROM busybox:test\nADD --checksum={sum} {url} /data/\n"))]);
    let (ok, err) = build(&b, bad.path(), &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(!ok && err.contains("checksum"), "{err}");
}

#[test]
fn first_failure_cancels_the_other_running_steps() {
    let b = with_busybox();
    let df = "FROM busybox:test AS slow\nRUN sleep 59.7 && echo never > /x\n\
              FROM busybox:test AS broken\nRUN sleep 0.5 && exit 7\n\
              FROM busybox:test\nCOPY --from=slow /x /x\nCOPY --from=broken /etc/passwd /p\n";
    let ctx = context(&[("Dockerfile", df)]);
    let (ok, err) = build(&b, ctx.path(), &[]);
    assert!(!ok && err.contains("exit code 7"), "{err}");
    let (_, ran) = cached_and_ran(&err);
    assert!(!ran.iter().any(|s| s.contains("sleep 59.7")), "the slow step was stopped, not finished: {ran:?}");
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.trim() == "sleep 59.7"), "no sandbox process is left");
}

#[test]
fn ctrl_c_stops_the_build_and_its_processes() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN sleep 44.3\n")]);
    let mut child = b
        .cmd()
        .args(["build", "--progress", "plain", ctx.path().to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("RUN sleep 44.3") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the RUN started");
    std::thread::sleep(std::time::Duration::from_millis(500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("wait");
    let log = reader.join().expect("reader");
    assert!(!status.success());
    assert!(log.contains("build cancelled"), "{log}");
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.trim() == "sleep 44.3"), "no sandbox process is left");
}

/// A minimal Debian bookworm root filesystem tarball made with `debootstrap` (once per machine:
/// kept in the temp dir, made under a lock so parallel tests share it). The stories build their
/// images on it too.
pub(crate) fn debian_rootfs_tar() -> PathBuf {
    let dir = std::env::temp_dir().join("builder-e2e-cache");
    std::fs::create_dir_all(&dir).expect("cache dir");
    let tar = dir.join("debian-bookworm-minbase.tar");
    let lock = std::fs::File::create(dir.join("debian.lock")).expect("lock file");
    fs4::fs_std::FileExt::lock_exclusive(&lock).expect("lock");
    if !tar.exists() {
        let root = tempfile::tempdir_in(&dir).expect("tmp");
        let st = crate::util::on_machine_network(&mut std::process::Command::new("debootstrap"))
            .args(["--variant=minbase", "bookworm"])
            .arg(root.path())
            .arg("http://deb.debian.org/debian")
            .stdout(Stdio::null())
            .status()
            .expect("run debootstrap (Debian package debootstrap)");
        assert!(st.success(), "debootstrap failed");
        let part = dir.join("debian.tar.part");
        let st = std::process::Command::new("tar").arg("-C").arg(root.path()).arg("-cf").arg(&part).arg(".").status().expect("tar");
        assert!(st.success(), "tar of the Debian root failed");
        std::fs::rename(&part, &tar).expect("rename");
    }
    tar
}

#[test]
fn apt_get_install_works_in_a_debian_image() {
    let b = Builder::new();
    let tar = debian_rootfs_tar();
    b.ok(&["import", tar.to_str().expect("utf8"), "debian:test"]);
    let df = "FROM debian:test\nRUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*\nCMD [\"hello\"]\n";
    let ctx = context(&[("Dockerfile", df)]);
    build_online(&b, ctx.path(), &["-t", "hello:1"]);
    assert_eq!(b.ok(&["run", "--rm", "hello:1"]).trim(), "Hello, world!");
}

/// The seed tutorial's Apache image (`../shared/seeds/002_…`), adapted from ubuntu:12.04 to the
/// local Debian image: apt installs, ENV, a2enmod, EXPOSE and CMD.
#[test]
fn seed_apache_dockerfile_builds_on_debian() {
    let b = Builder::new();
    let tar = debian_rootfs_tar();
    b.ok(&["import", tar.to_str().expect("utf8"), "debian:test"]);
    let df = "FROM debian:test\n\
              RUN apt-get update\n\
              RUN apt-get -qq -y install --no-install-recommends apache2 > /dev/null\n\
              ENV APACHE_RUN_USER www-data\n\
              ENV APACHE_RUN_GROUP www-data\n\
              ENV APACHE_LOG_DIR /var/log/apache2\n\
              RUN a2enmod rewrite\n\
              EXPOSE 80\n\
              CMD [\"/usr/sbin/apache2ctl\", \"-D\", \"FOREGROUND\"]\n";
    let ctx = context(&[("Dockerfile", df)]);
    build_online(&b, ctx.path(), &["-t", "apache:1"]);
    let (_, _, config) = image(b.root(), "apache:1");
    assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
    assert!(config["config"]["Env"].to_string().contains("APACHE_RUN_USER=www-data"));
    let out = b.ok(&["run", "--rm", "apache:1", "ls", "/etc/apache2/mods-enabled/"]);
    assert!(out.contains("rewrite.load"), "{out}");
}

#[test]
fn network_none_isolates_and_compression_and_labels_apply() {
    let b = with_busybox();
    let df = "FROM busybox:test\nRUN --network=none ls /sys/class/net > /nets\nRUN ls /sys/class/net > /host-nets\n";
    let ctx = context(&[("Dockerfile", df)]);
    build_ok(&b, ctx.path(), &["--compression", "zstd", "--label", "team=build", "-t", "net:1"]);
    let (_, manifest, config) = image(b.root(), "net:1");
    let built: Vec<&serde_json::Value> = manifest["layers"].as_array().expect("layers").iter().skip(1).collect();
    assert!(built.iter().all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"), "{manifest}");
    assert_eq!(config["config"]["Labels"]["team"], "build");
    assert_eq!(b.ok(&["run", "--rm", "net:1", "cat", "/nets"]).trim(), "lo");
    assert!(b.ok(&["run", "--rm", "net:1", "cat", "/host-nets"]).lines().count() > 1, "the default network is the host's");
}

#[test]
fn output_oci_and_docker_archives_are_read_by_skopeo() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo x > /x\n")]);
    let out = tempfile::tempdir().expect("tmp");
    for (kind, transport) in [("oci", "oci-archive"), ("docker", "docker-archive")] {
        let dest = out.path().join(format!("{kind}.tar"));
        let spec = format!("type={kind},dest={}", dest.display());
        build_ok(&b, ctx.path(), &["-t", "arch:1", "--output", &spec]);
        let inspect = std::process::Command::new("skopeo").args(["inspect", &format!("{transport}:{}", dest.display())]).output().expect("skopeo");
        assert!(inspect.status.success(), "{kind}: {}", String::from_utf8_lossy(&inspect.stderr));
        let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
        assert_eq!(v["Layers"].as_array().expect("layers").len(), 2, "{kind}: {v}");
    }
}

#[test]
fn base_image_missing_locally_is_pulled_from_its_registry() {
    let b = with_busybox();
    let registry = crate::util_registry::Registry::start();
    let base = format!("{}/base/busybox:1", registry.addr());
    b.ok(&["tag", "busybox:test", &base]);
    b.ok(&["push", &base]);
    let fresh = Builder::new();
    let ctx = context(&[("Dockerfile", &format!("FROM {base}\nRUN echo pulled > /p\n"))]);
    build_ok(&fresh, ctx.path(), &["-t", "frompull:1"]);
    assert_eq!(fresh.ok(&["run", "--rm", "frompull:1", "cat", "/p"]).trim(), "pulled");
    // --pull looks the base up again; the build still reuses its cache.
    let (cached, _) = cached_and_ran(&build_ok(&fresh, ctx.path(), &["--pull", "-t", "frompull:1"]));
    assert!(cached.iter().any(|c| c.contains("RUN echo pulled")), "{cached:?}");
}

#[test]
fn prune_removes_store_blobs_nothing_references_and_keeps_the_rest() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo kept > /kept\nCMD [\"cat\", \"/kept\"]\n")]);
    build_ok(&b, ctx.path(), &["-t", "kept:1"]);
    // A stray blob, as an interrupted tool might leave behind, old enough to be past the grace period.
    let content = b"stray blob nobody references";
    let digest = sha256_hex(content);
    let stray = b.root().join("blobs/sha256").join(&digest);
    std::fs::write(&stray, content).expect("write stray blob");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&stray).and_then(|f| f.set_modified(old)).expect("age stray blob");

    let out = b.ok(&["prune"]);
    assert!(out.contains("1 image blobs"), "{out}");
    assert!(!stray.exists(), "the unreferenced blob is gone");
    // Everything a tag reaches is still there: the image runs, and a rebuild is all cached.
    assert_eq!(b.ok(&["run", "--rm", "kept:1"]).trim(), "kept");
    assert_eq!(b.ok(&["run", "--rm", "busybox:test", "echo", "base"]).trim(), "base");
    let (_, ran) = cached_and_ran(&build_ok(&b, ctx.path(), &["-t", "kept:1"]));
    assert!(ran.is_empty(), "a rebuild after prune is all cached: {ran:?}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_string()
}
