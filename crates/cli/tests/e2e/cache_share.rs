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
