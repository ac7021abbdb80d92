//! Sharing the build cache between machines (issue 11): `--cache-to` / `--cache-from` through a
//! real registry (Debian's `docker-registry`), a local directory, or inline in a pushed image,
//! and every fault of a cache source or target.

use std::path::Path;

use crate::util::*;
use crate::util_registry::{Registry, free_port, http_get};

/// A two-stage build: `tools` is an intermediate stage, the final stage copies from it.
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS tools\nRUN echo tool > /tool && echo scratch > /scratch\nFROM {base}\nCOPY app.txt /app.txt\nCOPY --from=tools /tool /tool\nRUN cat /app.txt /tool > /out\n"
    )
}

/// A root with busybox pushed to `registry` as `REG/base/busybox:1`; returns the root and the
/// base image name.
fn root_with_pushed_base(registry: &Registry) -> (Builder, String) {
    let b = with_busybox();
    let base = format!("{}/base/busybox:1", registry.addr());
    b.ok(&["tag", "busybox:test", &base]);
    b.ok(&["push", &base]);
    (b, base)
}

/// Runs a plain-progress build; returns (success, stderr).
fn build(b: &Builder, ctx: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().expect("utf8"));
    let out = b.run(&args);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn build_ok(b: &Builder, ctx: &Path, extra: &[&str]) -> String {
    let (ok, log) = build(b, ctx, extra);
    assert!(ok, "build {extra:?} failed:\n{log}");
    log
}

/// The JSON manifest `repo:tag` of the registry.
fn manifest(registry: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let (status, body) = http_get(&registry.addr(), &format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(status, 200, "GET manifest {repo}:{tag}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("manifest JSON")
}

#[test]
fn cache_to_registry_is_an_artifact_of_the_image_blobs_and_uploads_nothing_twice() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let image = format!("{}/app/img:1", registry.addr());
    let min = format!("type=registry,ref={}/app/cache:min", registry.addr());
    let log = build_ok(&a, ctx.path(), &["-t", &image, "--push", "--cache-to", &min]);
    // Pushed first, then the cache: every layer it names is in the image's repository already.
    let line = log.lines().find(|l| l.contains("exporting cache to")).unwrap_or_else(|| panic!("no export line:\n{log}"));
    assert!(line.contains("(0 uploaded,"), "the image's blobs are mounted, not uploaded again: {line}");

    let m = manifest(&registry, "app/cache", "min");
    assert_eq!(m["config"]["mediaType"], "application/vnd.builder.cache.config.v1+json", "{m}");
    assert_eq!(m["artifactType"], "application/vnd.builder.cache.config.v1+json", "{m}");
    let img = manifest(&registry, "app/img", "1");
    let layers = |m: &serde_json::Value| -> Vec<String> {
        m["layers"].as_array().expect("layers").iter().map(|l| l["digest"].as_str().expect("digest").to_string()).collect()
    };
    assert_eq!(layers(&m), layers(&img), "mode=min: the cache's layers are the final image's layers");

    // mode=max also carries the intermediate stage's layer.
    let max = format!("type=registry,ref={}/app/cache:max,mode=max", registry.addr());
    build_ok(&a, ctx.path(), &["-t", &image, "--cache-to", &max]);
    let m = manifest(&registry, "app/cache", "max");
    assert_eq!(layers(&m).len(), layers(&img).len() + 1, "mode=max adds the tools stage's RUN layer: {m}");
}

#[test]
fn cache_flags_with_bad_values_name_the_flag_and_the_key() {
    let b = Builder::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\n")]);
    let dir = ctx.path().to_str().expect("utf8");
    let err = b.fails(&["build", "--cache-to", "type=registry,mode=max", dir]);
    assert!(err.contains("invalid --cache-to \"type=registry,mode=max\": type=registry needs ref=…"), "{err}");
    let err = b.fails(&["build", "--cache-to", "type=local,dest=/tmp/x,mdoe=max", dir]);
    assert!(err.contains("unknown key \"mdoe\""), "{err}");
    let err = b.fails(&["build", "--cache-to", "type=registry,ref=r/x,mode=all", dir]);
    assert!(err.contains("invalid --cache-to \"type=registry,ref=r/x,mode=all\": mode \"all\" is not min or max"), "{err}");
    let err = b.fails(&["build", "--cache-from", "type=local", dir]);
    assert!(err.contains("invalid --cache-from \"type=local\": type=local needs src=…"), "{err}");
}

#[test]
fn a_cache_source_that_is_missing_down_or_not_a_cache_is_a_warning_and_the_build_goes_on() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let missing = format!("{}/app/nothing:here", registry.addr());
    let down = format!("127.0.0.1:{}/app/cache:1", free_port());
    let log =
        build_ok(&a, ctx.path(), &["--cache-from", &missing, "--cache-from", &format!("type=registry,ref={down}"), "--cache-from", &base]);
    assert!(log.contains(&format!("warning: --cache-from {missing}: not found in the registry; building without it")), "{log}");
    assert!(
        log.contains(&format!(
            "warning: --cache-from {down}: cannot reach http://{}/v2/app/cache/manifests/1",
            down.split('/').next().expect("host")
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("warning: --cache-from {base}: it is an image without an inline cache (build it with --cache-to type=inline); building without it")),
        "{log}"
    );
    let nodir = ctx.path().join("no-such-cache");
    let log = build_ok(&a, ctx.path(), &["--cache-from", &format!("type=local,src={}", nodir.display())]);
    assert!(
        log.contains(&format!("warning: --cache-from {}: read {}/index.json: No such file or directory", nodir.display(), nodir.display())),
        "{log}"
    );
}

#[test]
fn a_cache_export_that_fails_fails_the_build_unless_ignore_error_is_set() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo x > /x\n")]);
    let down = format!("127.0.0.1:{}/app/cache:1", free_port());
    let (ok, log) = build(&b, ctx.path(), &["--cache-to", &format!("type=registry,ref={down}")]);
    assert!(!ok, "a failed cache export fails the build:\n{log}");
    assert!(log.contains(&format!("exporting cache to {down}: {down}: cannot reach http://")), "{log}");
    let log = build_ok(&b, ctx.path(), &["-t", "kept:1", "--cache-to", &format!("type=registry,ref={down},ignore-error=true")]);
    assert!(log.contains(&format!("warning: exporting cache to {down} failed: {down}: cannot reach http://")), "{log}");
    assert!(log.contains("(ignore-error=true: the build result stands)"), "{log}");
    b.ok(&["image", "inspect", "kept:1"]);
}

/// The build's result metadata (`--metadata-file`).
fn metadata(file: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file).expect("metadata file")).expect("metadata JSON")
}

/// The manifest digest `builder image inspect` reports.
fn image_id(b: &Builder, name: &str) -> String {
    let out = b.ok(&["image", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0]["Id"].as_str().expect("Id").to_string()
}

#[test]
fn a_fresh_root_with_cache_from_the_registry_rebuilds_nothing_and_pushes_only_manifests() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let cache = format!("{}/farm/cache:1", registry.addr());
    let image_a = format!("{}/farm/app:a", registry.addr());
    build_ok(&a, ctx.path(), &["-t", &image_a, "--push", "--cache-to", &format!("type=registry,ref={cache},mode=max")]);

    // A fresh root: every step is a hit, the image is the very image A built.
    let b = Builder::new();
    let image_b = format!("{}/farm/app:b", registry.addr());
    let meta = ctx.path().join("meta-b.json");
    let log =
        build_ok(&b, ctx.path(), &["-t", &image_b, "--push", "--cache-from", &cache, "--metadata-file", meta.to_str().expect("utf8")]);
    let (cached, ran) = cached_and_ran(&log);
    assert!(ran.iter().all(|r| r.contains("FROM") || r.contains("internal")), "nothing runs on B: {ran:?}\n{log}");
    assert_eq!(cached.iter().filter(|c| c.contains("RUN") || c.contains("COPY")).count(), 4, "every step CACHED:\n{log}");
    assert_eq!(image_id(&a, &image_a), image_id(&b, &image_b), "the same image ID on both roots");
    assert_eq!(manifest(&registry, "farm/app", "a")["layers"], manifest(&registry, "farm/app", "b")["layers"]);
    // Only manifests and configs moved: no layer blob was downloaded or uploaded by the build.
    let m = metadata(&meta);
    let down: u64 = m["registry.bytes_downloaded"].as_str().expect("downloaded").parse().expect("number");
    let up: u64 = m["registry.bytes_uploaded"].as_str().expect("uploaded").parse().expect("number");
    assert!(
        down < 16 * 1024 && up < 16 * 1024,
        "a fully cached --push moves only manifests and configs: {down} bytes down, {up} up\n{log}"
    );

    // One changed context file: the COPY that reads it and the steps after it run, and say why.
    std::fs::write(ctx.path().join("app.txt"), "app 2\n").expect("write");
    let c = Builder::new();
    let log = build_ok(&c, ctx.path(), &["--cache-from", &cache]);
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|r| r.contains("COPY app.txt")), "{log}");
    assert!(!ran.iter().any(|r| r.contains("RUN echo tool")), "the tools stage stays cached (mode=max):\n{log}");
    assert!(log.contains("cache miss: app.txt: content changed"), "{log}");
}

#[test]
fn mode_min_reruns_the_intermediate_stage_on_a_fresh_root_and_mode_max_does_not() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let min = format!("{}/modes/cache:min", registry.addr());
    let max = format!("{}/modes/cache:max", registry.addr());
    build_ok(&a, ctx.path(), &["--cache-to", &min, "--cache-to", &format!("type=registry,ref={max},mode=max")]);
    // With min, the tools stage is not in the cache; the final stage's steps are, but a COPY
    // --from needs the tools result, which must be rebuilt.
    let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &min]);
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|r| r.contains("RUN echo tool")), "mode=min: the intermediate stage runs again:\n{log}");
    let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &max]);
    let (_, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("RUN")), "mode=max: nothing runs:\n{log}");
}

#[test]
fn local_and_inline_caches_round_trip() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let dir = ctx.path().join("ci-cache");
    let image = format!("{}/inline/app:1", registry.addr());
    build_ok(
        &a,
        ctx.path(),
        &["-t", &image, "--push", "--cache-to", "type=inline", "--cache-to", &format!("type=local,dest={},mode=max", dir.display())],
    );
    assert!(dir.join("index.json").is_file() && dir.join("oci-layout").is_file(), "an OCI layout");

    let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &format!("type=local,src={}", dir.display())]);
    let (_, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("RUN") || r.contains("COPY")), "type=local: all CACHED:\n{log}");

    let m = manifest(&registry, "inline/app", "1");
    assert!(m["annotations"]["dev.builder.cache.config.v1"].is_string(), "the cache travels in the image manifest: {m}");
    let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &image]);
    let (_, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("COPY app.txt") || r.contains("RUN cat")), "inline: the final stage's steps are CACHED:\n{log}");
}

/// A `builder serve` with its own root on a free loopback port; killed on drop.
struct Serve {
    child: std::process::Child,
    addr: String,
    _root: tempfile::TempDir,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        use std::io::BufRead;
        let root = tempfile::tempdir().expect("server root");
        let mut child = std::process::Command::new(bin())
            .arg("--root")
            .arg(root.path())
            .args(["serve", "--listen", "tcp://127.0.0.1:0"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(root.path().join("serve.log")).expect("log"))
            .spawn()
            .expect("spawn builder serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
        let addr =
            line.trim().strip_prefix("builder serve: listening on ").unwrap_or_else(|| panic!("serve did not start: {line:?}")).to_string();
        Serve { child, addr, _root: root }
    }

    /// A plain-progress remote build of `ctx`; returns stderr.
    fn build(&self, ctx: &Path, extra: &[&str]) -> String {
        remote_build(&self.addr, ctx, extra)
    }
}

/// A plain-progress build through `builder --addr ADDR`; returns stderr.
fn remote_build(addr: &str, ctx: &Path, extra: &[&str]) -> String {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["--addr", addr, "build", "--progress", "plain"]).args(extra).arg(ctx);
    let out = cmd.output().expect("remote build");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "remote build on {addr} failed:\n{log}");
    log
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn farm_servers_share_their_cache_through_the_registry_by_their_own_defaults() {
    let registry = Registry::start();
    let (_a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let cache = format!("{}/farm/cache:main", registry.addr());
    let defaults = ["--cache-from", cache.as_str(), "--cache-to", &format!("type=registry,ref={cache},mode=max")];
    let one = Serve::start(&defaults);
    let two = Serve::start(&defaults);
    let log = one.build(ctx.path(), &[]);
    assert!(log.contains(&format!("exporting cache to {cache}")), "the server's default --cache-to applies:\n{log}");
    let log = two.build(ctx.path(), &[]);
    let (_, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("RUN") || r.contains("COPY")), "the other server's build is all CACHED:\n{log}");
    // A build's own flags go through the request too.
    let own = format!("{}/farm/own:1", registry.addr());
    let log = two.build(ctx.path(), &["--cache-to", &format!("type=registry,ref={own}")]);
    assert!(log.contains(&format!("exporting cache to {own}")), "{log}");
}

/// How many layer blobs of the image `name` the root's store lacks.
fn absent_layer_blobs(b: &Builder, name: &str) -> usize {
    let store = oci::Store::open(b.root()).expect("store");
    let image = store.find_image(name).expect("image").1;
    store.missing_layers(&image).expect("layers").len()
}

#[test]
fn an_image_made_of_unfetched_cache_hits_is_fetched_when_run_saved_pushed_elsewhere_or_built_on() {
    let registry = Registry::start();
    let other = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let cache = format!("{}/lazy/cache:1", registry.addr());
    build_ok(&a, ctx.path(), &["-t", "lazy:a", "--cache-to", &format!("type=registry,ref={cache},mode=max")]);

    // A fresh root tags the result of an all-cached build: no layer blob moves, and the store
    // knows where the absent ones are.
    let fresh = |tag: &str| {
        let b = Builder::new();
        let meta = ctx.path().join(format!("meta-{tag}.json"));
        build_ok(&b, ctx.path(), &["-t", tag, "--cache-from", &cache, "--metadata-file", meta.to_str().expect("utf8")]);
        let down: u64 = metadata(&meta)["registry.bytes_downloaded"].as_str().expect("downloaded").parse().expect("number");
        assert!(down < 16 * 1024, "tagging an all-cached result downloads no layer: {down} bytes");
        assert!(absent_layer_blobs(&b, tag) >= 2, "the built layers are not fetched yet");
        b
    };

    // `builder run`: fetched, verified, unpacked.
    let b = fresh("lazy:run");
    // The next build on this root needs no --cache-from: the imported hits are local entries.
    let log = build_ok(&b, ctx.path(), &["-t", "lazy:run"]);
    let (_, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("RUN") || r.contains("COPY")), "all CACHED without the remote:\n{log}");
    assert_eq!(b.ok(&["run", "--rm", "lazy:run", "cat", "/out"]), "app\ntool\n");
    assert_eq!(absent_layer_blobs(&b, "lazy:run"), 0);

    // `builder save`: the archive carries every layer.
    let c = fresh("lazy:save");
    let tar = c.root().join("lazy.tar");
    c.ok(&["save", "-o", tar.to_str().expect("utf8"), "lazy:save"]);
    let loaded = Builder::new();
    loaded.ok(&["load", "-i", tar.to_str().expect("utf8")]);
    assert_eq!(loaded.ok(&["run", "--rm", "lazy:save", "cat", "/out"]), "app\ntool\n");

    // A push to another registry: fetched from the cache's registry, then uploaded.
    let d = fresh("lazy:push");
    let elsewhere = format!("{}/moved/app:1", other.addr());
    d.ok(&["tag", "lazy:push", &elsewhere]);
    d.ok(&["push", &elsewhere]);
    let pulled = Builder::new();
    pulled.ok(&["pull", &elsewhere]);
    assert_eq!(pulled.ok(&["run", "--rm", &elsewhere, "cat", "/out"]), "app\ntool\n");

    // A build FROM it unpacks the fetched layers.
    let e = fresh("lazy:base");
    let on_top = context(&[("Dockerfile", "FROM lazy:base\nRUN cat /out /app.txt > /twice\n")]);
    build_ok(&e, on_top.path(), &["-t", "lazy:on-top"]);
    assert_eq!(e.ok(&["run", "--rm", "lazy:on-top", "cat", "/twice"]), "app\ntool\napp\n");
}
