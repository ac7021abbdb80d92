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

/// The (decompressed) config JSON of the cache manifest `m` of `repo`.
fn cache_config(registry: &Registry, repo: &str, m: &serde_json::Value) -> serde_json::Value {
    let (status, blob) = http_get(&registry.addr(), &format!("/v2/{repo}/blobs/{}", m["config"]["digest"].as_str().expect("config digest")));
    assert_eq!(status, 200);
    assert!(blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "the config is zstd-compressed");
    serde_json::from_slice(&remote_cache::json_of(&blob).expect("decompress")).expect("config JSON")
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
    assert_eq!(m["config"]["mediaType"], "application/vnd.builder.cache.config.v2+json+zstd", "{m}");
    assert_eq!(m["artifactType"], "application/vnd.builder.cache.config.v2+json+zstd", "{m}");
    let img = manifest(&registry, "app/img", "1");
    // The layer blobs, without the cache's own provenance blob (its last layer).
    let layers = |m: &serde_json::Value| -> Vec<String> {
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .filter(|l| l["mediaType"] != "application/vnd.builder.cache.provenance.v2+json+zstd")
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect()
    };
    assert_eq!(layers(&m), layers(&img), "mode=min: the cache's layers are the final image's layers");
    let last = &m["layers"].as_array().expect("layers").last().expect("a last layer")["mediaType"];
    assert_eq!(last, "application/vnd.builder.cache.provenance.v2+json+zstd", "then the provenance blob: {m}");
    // Version 2 is linear: each layer once, each entry names its top layer.
    let config = cache_config(&registry, "app/cache", &m);
    assert_eq!(config["version"], 2, "{config}");
    assert_eq!(config["layers"].as_array().expect("layers").len(), layers(&img).len(), "{config}");
    assert!(config["entries"].as_array().expect("entries").iter().all(|e| e["layer"].is_u64() && e.get("provenance").is_none()), "{config}");

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
    // Of the cache's blobs only its config: the provenance blob is read only when a step misses.
    let cm = manifest(&registry, "farm/cache", "1");
    assert_eq!(down, cm["config"]["size"].as_u64().expect("config size"), "only the cache config was downloaded: {cm}");

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
    assert!(m["annotations"]["dev.builder.cache.config.v2"].is_string(), "the cache travels in the image manifest: {m}");
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
            // "build requested" in serve.log says which farm member got a build.
            .env("RUST_LOG", "info")
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

    /// How many builds this server was asked for (its log's "build requested" lines).
    fn builds(&self) -> usize {
        std::fs::read_to_string(self._root.path().join("serve.log")).unwrap_or_default().matches("build requested").count()
    }

    /// "127.0.0.1:PORT", for a load balancer's upstream.
    fn host_port(&self) -> &str {
        self.addr.strip_prefix("tcp://").unwrap_or(&self.addr)
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

/// Debian's nginx as a gRPC load balancer (`grpc_pass`, round robin) in front of `upstreams`, on a
/// free loopback port; its config, logs and pid file in a temp dir. One process (no master), so
/// killing the child on drop stops it all.
struct Nginx {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// A gRPC load balancer: round robin over `upstreams` ("HOST:PORT").
    fn start(upstreams: &[&str]) -> Nginx {
        let servers: String = upstreams.iter().map(|u| format!("server {u}; ")).collect();
        Nginx::launch(&format!("upstream farm {{ {servers}}}"), "http2", "grpc_read_timeout 600s; grpc_send_timeout 600s; location / { grpc_pass grpc://farm; }")
    }

    /// A plain HTTP server with `server` (its `location` blocks).
    fn start_http(server: &str) -> Nginx {
        Nginx::launch("", "", server)
    }

    fn launch(http: &str, listen: &str, server: &str) -> Nginx {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("nginx dir");
            let port = free_port();
            let d = dir.path().display();
            let conf = format!(
                "error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/access.log;\n  \
                 client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi; \
                 uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  {http}\n  \
                 server {{ listen 127.0.0.1:{port} {listen}; client_max_body_size 0;\n    {server} }}\n}}\n"
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
            let child = std::process::Command::new("/usr/sbin/nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-g")
                .arg(format!("daemon off; master_process off; pid {d}/nginx.pid;"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("nginx stderr"))
                .spawn()
                .expect("start nginx (Debian's nginx-light)");
            let mut n = Nginx { child, port, dir };
            match n.wait_ready() {
                Ok(()) => return n,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
                    + &std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}:\n{log}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(format!("nginx did not listen on 127.0.0.1:{} within 20 s", self.port))
    }

    fn addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_servers_behind_nginx_grpc_pass_the_second_build_lands_on_the_other_server_all_cached() {
    let registry = Registry::start();
    let (_a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let cache = format!("{}/nginx-farm/cache:main", registry.addr());
    let defaults = ["--cache-from", cache.as_str(), "--cache-to", &format!("type=registry,ref={cache},mode=max")];
    let mut servers = vec![Serve::start(&defaults), Serve::start(&defaults)];
    let nginx = Nginx::start(&[servers[0].host_port(), servers[1].host_port()]);

    // The first build through the load balancer runs everything on one server and exports.
    let log = remote_build(&nginx.addr(), ctx.path(), &[]);
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|r| r.contains("RUN echo tool")), "the first build runs its steps:\n{log}");
    assert!(log.contains(&format!("exporting cache to {cache}")), "{log}");
    let counts: Vec<usize> = servers.iter().map(Serve::builds).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1, "the build (one gRPC stream) went to one server: {counts:?}");
    let first = counts.iter().position(|&c| c == 1).expect("the server that built");

    // That server goes away; nginx sends the next build of the same context to the other one,
    // whose empty root gets every step from the registry.
    drop(servers.remove(first));
    let log = remote_build(&nginx.addr(), ctx.path(), &[]);
    assert_eq!(servers[0].builds(), 1, "the second build landed on the other server:\n{log}");
    let (cached, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("RUN") || r.contains("COPY")), "the other server's build is all CACHED:\n{log}");
    assert_eq!(cached.iter().filter(|c| c.contains("RUN") || c.contains("COPY")).count(), 4, "{log}");
}

/// The data file of a blob in a `docker-registry`'s filesystem storage.
fn stored_blob(registry: &Registry, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    registry.storage().join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
}

/// Replaces a stored blob's bytes with as many other bytes (so its size still matches, and only
/// its digest tells).
fn tamper(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read stored blob");
    for b in bytes.iter_mut() {
        *b = !*b;
    }
    std::fs::write(path, bytes).expect("write tampered blob");
}

/// A plain-progress build with `DOCKER_CONFIG` set to `config` (credentials of its own).
fn build_with_config(b: &Builder, config: &Path, ctx: &Path, extra: &[&str]) -> String {
    let out = b.cmd().env("DOCKER_CONFIG", config).args(["build", "--progress", "plain"]).args(extra).arg(ctx).output().expect("spawn builder");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {extra:?} failed:\n{log}");
    log
}

#[test]
fn a_cache_source_answering_401_or_403_is_a_warning_naming_the_ref_and_the_build_goes_on() {
    let locked = Registry::start_with_auth("alice", "s3cret");
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN echo x > /x\n")]);
    let cache = format!("{}/app/cache:1", locked.addr());

    // No login at all: 401.
    let none = tempfile::tempdir().expect("docker config");
    let log = build_with_config(&b, none.path(), ctx.path(), &["--cache-from", &cache]);
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|r| r.contains("RUN echo x")), "{log}");
    let want = format!(
        "warning: --cache-from {cache}: authentication to {r} failed: the registry requires a login (HTTP 401); run `builder login {r}`; building without it",
        r = locked.addr()
    );
    assert!(log.contains(&want), "want {want:?} in:\n{log}");

    // A wrong password: 401 again, said as a failed login.
    let wrong = tempfile::tempdir().expect("docker config");
    let auth = base64_of("alice:wrong");
    std::fs::write(wrong.path().join("config.json"), format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}", locked.addr())).expect("config.json");
    let log = build_with_config(&b, wrong.path(), ctx.path(), &["--cache-from", &cache, "--no-cache"]);
    let want = format!(
        "warning: --cache-from {cache}: authentication to {} failed: the registry rejected the credentials of user \"alice\" (HTTP 401): UNAUTHORIZED: authentication required; building without it",
        locked.addr()
    );
    assert!(log.contains(&want), "want {want:?} in:\n{log}");

    // A registry front that refuses this client: 403 DENIED, as hosted registries answer.
    let front = Nginx::start_http(
        "location / { default_type application/json; return 403 '{\"errors\":[{\"code\":\"DENIED\",\"message\":\"requested access to the resource is denied\"}]}'; }",
    );
    let denied = format!("127.0.0.1:{}/app/cache:1", front.port);
    let log = build_with_config(&b, none.path(), ctx.path(), &["--cache-from", &denied, "--no-cache"]);
    let want = format!(
        "warning: --cache-from {denied}: authentication to 127.0.0.1:{} failed: access denied (HTTP 403): DENIED: requested access to the resource is denied; building without it",
        front.port
    );
    assert!(log.contains(&want), "want {want:?} in:\n{log}");
}

/// Standard base64 of `s` (for a docker config's `auth`).
fn base64_of(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &c)| n | (c as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_cache_whose_blobs_were_tampered_with_is_ignored_with_a_warning_and_the_build_is_still_right() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let layer_cache = format!("{}/tamper/cache:layer", registry.addr());
    let config_cache = format!("{}/tamper/cache:config", registry.addr());
    build_ok(&a, ctx.path(), &["--cache-to", &format!("type=registry,ref={layer_cache},mode=max")]);
    let m = manifest(&registry, "tamper/cache", "layer");

    // The tools stage's layer (in the cache only, mode=max) no longer matches its digest. A build
    // whose COPY app.txt misses must read the tools result (COPY --from): the fetch is refused,
    // and the build runs without that cache.
    let base_layers: Vec<String> = manifest(&registry, "base/busybox", "1")["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    let img = a.ok(&["image", "inspect", &base]);
    assert!(!img.is_empty());
    let cache_layers: Vec<String> = m["layers"].as_array().expect("layers").iter().map(|l| l["digest"].as_str().expect("digest").to_string()).collect();
    let provenance = m["layers"].as_array().expect("layers").last().expect("provenance")["digest"].as_str().expect("digest").to_string();
    let own: Vec<&String> = cache_layers.iter().filter(|d| !base_layers.contains(d)).collect();
    for d in &own {
        tamper(&stored_blob(&registry, d));
    }
    std::fs::write(ctx.path().join("app.txt"), "app 2\n").expect("write");
    let b = Builder::new();
    let log = build_ok(&b, ctx.path(), &["-t", "tampered:1", "--cache-from", &layer_cache]);
    let want = format!("warning: --cache-from {layer_cache}: layer sha256:");
    let line = log.lines().find(|l| l.contains(&want)).unwrap_or_else(|| panic!("no warning for the tampered layer:\n{log}"));
    assert!(line.contains("content does not match its digest") && line.ends_with("; building without it"), "{line}");
    // Its provenance blob was tampered with too: read to explain the miss, and refused.
    assert!(own.contains(&&provenance), "the provenance blob is the cache's own: {m}");
    let want = format!("--cache-from {layer_cache}: reading its provenance (to explain a cache miss): {layer_cache}: blob {provenance} from ");
    assert!(log.lines().any(|l| l.contains(&want) && l.contains("content does not match its digest")), "want {want:?} in:\n{log}");
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|r| r.contains("RUN echo tool")), "the tools stage ran instead of using the tampered layer:\n{log}");
    assert_eq!(b.ok(&["run", "--rm", "tampered:1", "cat", "/out"]), "app 2\ntool\n");

    // A tampered cache config: the whole source is refused when the build starts.
    build_ok(&a, ctx.path(), &["--cache-to", &format!("type=registry,ref={config_cache}")]);
    let m = manifest(&registry, "tamper/cache", "config");
    tamper(&stored_blob(&registry, m["config"]["digest"].as_str().expect("config digest")));
    let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &config_cache]);
    let want = format!("warning: --cache-from {config_cache}: blob {} from {} rejected: content does not match its digest", m["config"]["digest"].as_str().expect("digest"), registry.addr());
    assert!(log.contains(&want) && log.contains("importing cache: 0 entries"), "want {want:?} in:\n{log}");
}

/// Writes `config` (any bytes) as the config blob of a cache manifest `reference` whose layers
/// are `layers` (the manifest JSON's), through the registry API.
fn put_cache_artifact(reference: &str, config: &[u8], layers: &serde_json::Value) {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = oci::Store::open(tmp.path()).expect("store");
    let blob = store.put_bytes(config).expect("config blob");
    let r = oci::Reference::parse(reference).expect("ref");
    let client = registry::Client::new(Default::default()).expect("client");
    client.run(client.put_blob_async(&r, &store, &blob.digest, blob.size, &[], &registry::NoProgress)).expect("run").expect("put config blob");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.builder.cache.config.v2+json+zstd",
        "config": {"mediaType": "application/vnd.builder.cache.config.v2+json+zstd", "digest": blob.digest.to_string(), "size": blob.size},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("json");
    client.run(client.put_manifest_bytes_async(&r, &bytes, "application/vnd.oci.image.manifest.v1+json")).expect("run").expect("put manifest");
}

#[test]
fn a_cache_of_an_unknown_version_or_malformed_is_ignored_with_a_warning() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "app\n")]);
    let good = format!("{}/odd/cache:good", registry.addr());
    build_ok(&a, ctx.path(), &["--cache-to", &good]);
    let m = manifest(&registry, "odd/cache", "good");
    let mut doc = cache_config(&registry, "odd/cache", &m);

    doc["version"] = serde_json::json!(3);
    let v3 = format!("{}/odd/cache:v3", registry.addr());
    put_cache_artifact(&v3, &serde_json::to_vec(&doc).expect("json"), &m["layers"]);
    let garbage = format!("{}/odd/cache:garbage", registry.addr());
    put_cache_artifact(&garbage, b"{\"version\": 2, \"entries\": [{\"key\": 7}]}", &m["layers"]);
    let notjson = format!("{}/odd/cache:notjson", registry.addr());
    put_cache_artifact(&notjson, b"PK\x03\x04 not a cache", &m["layers"]);

    let b = Builder::new();
    let log = build_ok(&b, ctx.path(), &["--cache-from", &v3, "--cache-from", &garbage, "--cache-from", &notjson]);
    assert!(
        log.contains(&format!("warning: --cache-from {v3}: cache config version 3 is not supported (this build reads version 2); building without it")),
        "{log}"
    );
    assert!(log.contains(&format!("warning: --cache-from {garbage}: malformed cache config: ")), "{log}");
    assert!(log.contains(&format!("warning: --cache-from {notjson}: cache config is not valid JSON: ")), "{log}");
    let (_, ran) = cached_and_ran(&log);
    assert!(ran.iter().any(|r| r.contains("RUN echo tool")) && ran.iter().any(|r| r.contains("RUN cat")), "nothing of them is used:\n{log}");
}

#[test]
fn two_builds_exporting_to_one_ref_at_once_leave_one_whole_cache() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let cache = format!("{}/race/cache:main", registry.addr());
    let one = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "one\n")]);
    let two = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", "two\n")]);
    let b = Builder::new();
    let to = format!("type=registry,ref={cache},mode=max");
    for _ in 0..3 {
        std::thread::scope(|s| {
            let t1 = s.spawn(|| build_ok(&a, one.path(), &["--no-cache", "--cache-to", &to]));
            let t2 = s.spawn(|| build_ok(&b, two.path(), &["--no-cache", "--cache-to", &to]));
            t1.join().expect("build one");
            t2.join().expect("build two");
        });
        // Whichever manifest won, every blob it names is there, and a fresh root gets one of the
        // two builds whole from it.
        let m = manifest(&registry, "race/cache", "main");
        for l in m["layers"].as_array().expect("layers").iter().chain([&m["config"]]) {
            let d = l["digest"].as_str().expect("digest");
            assert_eq!(http_get(&registry.addr(), &format!("/v2/race/cache/blobs/{d}")).0, 200, "{d} of {m}");
        }
        let whole: Vec<bool> = [&one, &two]
            .iter()
            .map(|ctx| {
                let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &cache]);
                let (_, ran) = cached_and_ran(&log);
                !ran.iter().any(|r| r.contains("RUN") || r.contains("COPY"))
            })
            .collect();
        assert_eq!(whole.iter().filter(|w| **w).count(), 1, "exactly one of the two builds is whole in the cache: {whole:?}");
    }
}

#[test]
fn a_cache_export_to_a_registry_that_is_down_names_the_ref_and_ignore_error_keeps_the_pushed_image() {
    let registry = Registry::start();
    let (b, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &format!("FROM {base}\nRUN echo pushed > /p\n"))]);
    let down = format!("127.0.0.1:{}/app/cache:1", free_port());
    let image = format!("{}/kept/app:1", registry.addr());
    let (ok, log) = build(&b, ctx.path(), &["-t", &image, "--push", "--cache-to", &format!("type=registry,ref={down}")]);
    assert!(!ok, "a failed cache export fails the build:\n{log}");
    let err = log.lines().last().unwrap_or_default();
    assert!(err.contains(&format!("exporting cache to {down}: {down}: cannot reach http://{}/v2/", down.split('/').next().expect("host"))), "{log}");

    let tag = format!("{}/kept/app:2", registry.addr());
    let log = build_ok(&b, ctx.path(), &["-t", &tag, "--push", "--cache-to", &format!("type=registry,ref={down},ignore-error=true")]);
    assert!(log.contains(&format!("warning: exporting cache to {down} failed: {down}: cannot reach http://")), "{log}");
    assert!(log.contains("(ignore-error=true: the build result stands)"), "{log}");
    // An image push that fails while the cache export waits for it: the build fails with the
    // push's error (the export does not hang, and writes no manifest).
    let host = down.split('/').next().expect("host");
    let (ok, log) = build(&b, ctx.path(), &["-t", &format!("{host}/app/img:1"), "--push", "--cache-to", &format!("type=registry,ref={down}")]);
    assert!(!ok, "{log}");
    assert!(log.contains(&format!("pushing {host}/app/img:1: ")), "{log}");

    // Built and pushed all the same.
    let pulled = Builder::new();
    pulled.ok(&["pull", &tag]);
    assert_eq!(pulled.ok(&["run", "--rm", &tag, "cat", "/p"]), "pushed\n");
}

#[test]
fn a_cache_exported_with_the_push_uploads_only_what_the_image_lacks_and_each_blob_once() {
    let registry = Registry::start();
    let (a, base) = root_with_pushed_base(&registry);
    let ctx = context(&[("Dockerfile", &dockerfile(&base)), ("app.txt", &"x".repeat(200_000))]);
    let image = format!("{}/along/app:1", registry.addr());
    let cache = format!("{}/along/cache:1", registry.addr());
    let meta = ctx.path().join("meta.json");
    let log = build_ok(
        &a,
        ctx.path(),
        &["-t", &image, "--push", "--cache-to", &format!("type=registry,ref={cache},mode=max"), "--metadata-file", meta.to_str().expect("utf8")],
    );
    // The cache has the image's 4 layers (base, COPY app.txt, COPY --from, RUN cat) and the tools
    // stage's RUN layer: that one is uploaded alongside the push, the image's are mounted or
    // already there once it is pushed.
    let line = log.lines().find(|l| l.contains(&format!("exporting cache to {cache}:"))).unwrap_or_else(|| panic!("no export line:\n{log}"));
    assert!(line.contains("5 blobs (1 uploaded, "), "{line}");
    let img = manifest(&registry, "along/app", "1");
    let image_bytes: u64 = img["layers"].as_array().expect("layers").iter().map(|l| l["size"].as_u64().expect("size")).sum();
    let up: u64 = metadata(&meta)["registry.bytes_uploaded"].as_str().expect("uploaded").parse().expect("number");
    // The base layer was in the registry already; the rest of the image once, plus the tools
    // layer and two small JSON documents: never the image's layers twice.
    assert!(up < image_bytes + 16 * 1024, "each blob goes up once: {up} bytes uploaded for an image of {image_bytes}\n{log}");
    let m = manifest(&registry, "along/cache", "1");
    for l in m["layers"].as_array().expect("layers").iter().chain([&m["config"]]) {
        let d = l["digest"].as_str().expect("digest");
        assert_eq!(http_get(&registry.addr(), &format!("/v2/along/cache/blobs/{d}")).0, 200, "{d} of {m}");
    }
    let log = build_ok(&Builder::new(), ctx.path(), &["--cache-from", &cache]);
    let (_, ran) = cached_and_ran(&log);
    assert!(!ran.iter().any(|r| r.contains("RUN") || r.contains("COPY")), "{log}");
}
