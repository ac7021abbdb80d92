//! Cache keys that do not depend on the machine, and the line under a step that says why it
//! missed the cache (issue 11: "explain every miss").

use std::path::Path;
use std::process::Command;

use crate::util::*;

const DOCKERFILE: &str = "FROM busybox:test\nARG VERSION=1\nCOPY src/ /app/\nRUN echo built $VERSION > /built\nCOPY notes.txt /\n";

/// Builds with plain progress; returns stderr (the progress).
fn build(b: &Builder, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    let ctx = ctx.to_str().expect("utf8");
    args.push(ctx);
    let out = b.run(&args);
    assert_success(&out, &args);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `#N` of the step whose title contains `title`.
fn number_of(log: &str, title: &str) -> String {
    log.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, text)| text.starts_with('[') && text.contains(title))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| panic!("no step {title:?} in:\n{log}"))
}

/// The `cache miss:` line of the step whose title contains `title`, if any.
fn miss_of(log: &str, title: &str) -> Option<String> {
    let n = number_of(log, title);
    let prefix = format!("#{n} cache miss: ");
    log.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_string)
}

fn metadata(file: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file).expect("metadata file")).expect("metadata json")
}

#[test]
fn a_changed_file_build_arg_base_image_and_no_cache_are_said_under_the_step_that_ran() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", DOCKERFILE), ("src/app.py", "print(1)\n"), ("src/lib.py", "x = 1\n"), ("notes.txt", "n\n")]);
    let first = build(&b, ctx.path(), &["-t", "explain:1"]);
    assert_eq!(miss_of(&first, "COPY src/"), None, "a first build has nothing to compare with:\n{first}");

    // A changed file: its COPY names it, the RUN after it names the COPY by its number.
    std::fs::write(ctx.path().join("src/app.py"), "print(2)\n").expect("write");
    let meta = ctx.path().join("meta.json");
    let log = build(&b, ctx.path(), &["-t", "explain:1", "--metadata-file", meta.to_str().expect("utf8")]);
    assert_eq!(miss_of(&log, "COPY src/").as_deref(), Some("src/app.py: content changed"), "{log}");
    let copy = number_of(&log, "COPY src/");
    assert_eq!(miss_of(&log, "RUN echo").as_deref(), Some(format!("the step before it ran (#{copy})").as_str()), "{log}");
    let (cached, _) = cached_and_ran(&log);
    assert!(cached.iter().any(|c| c.contains("FROM")), "{log}");
    let misses = metadata(&meta)["cache.misses"].clone();
    let misses = misses.as_array().expect("cache.misses is a list");
    assert!(misses.iter().any(|m| m["step"].as_str().is_some_and(|s| s.contains("COPY src/")) && m["reason"] == "src/app.py: content changed"), "{misses:?}");
    assert!(misses.iter().any(|m| m["reason"].as_str().is_some_and(|r| r.starts_with("the step before it ran ([") && r.contains("COPY src/"))), "{misses:?}");

    // A new file in the copied directory is named as added.
    std::fs::write(ctx.path().join("src/new.py"), "y = 2\n").expect("write");
    let log = build(&b, ctx.path(), &["-t", "explain:1"]);
    assert_eq!(miss_of(&log, "COPY src/").as_deref(), Some("src/new.py: added"), "{log}");

    // A changed build arg: the COPY before the RUN stays cached, the RUN names the arg.
    let log = build(&b, ctx.path(), &["-t", "explain:1", "--build-arg", "VERSION=2"]);
    assert_eq!(miss_of(&log, "COPY src/"), None, "{log}");
    assert_eq!(miss_of(&log, "RUN echo").as_deref(), Some("build arg VERSION changed"), "{log}");
    // A step the change did not reach is cached and says nothing.
    let (cached, _) = cached_and_ran(&log);
    assert!(cached.iter().any(|c| c.contains("COPY src/")), "{log}");

    // Another image under the same tag: the first step on it names the image and both digests.
    let dir = tempfile::tempdir().expect("tmp");
    let tar = busybox_rootfs_tar(dir.path());
    std::fs::write(dir.path().join("extra"), "another base\n").expect("write");
    let st = Command::new("tar").arg("-rf").arg(&tar).arg("-C").arg(dir.path()).arg("extra").status().expect("tar");
    assert!(st.success());
    b.ok(&["import", tar.to_str().expect("utf8"), "busybox:test"]);
    let log = build(&b, ctx.path(), &["-t", "explain:1", "--build-arg", "VERSION=2"]);
    let said = miss_of(&log, "COPY src/").unwrap_or_else(|| panic!("no miss line for the COPY:\n{log}"));
    assert!(said.starts_with("base image docker.io/library/busybox:test changed (sha256:") && said.contains(" -> sha256:"), "{said}\n{log}");

    // --no-cache says so for every step it runs.
    let log = build(&b, ctx.path(), &["-t", "explain:1", "--no-cache"]);
    for step in ["COPY src/", "RUN echo", "COPY notes.txt"] {
        assert_eq!(miss_of(&log, step).as_deref(), Some("--no-cache"), "{step}: {log}");
    }
}

#[test]
fn cache_keys_do_not_depend_on_the_context_path_the_root_or_file_owners() {
    let files = [("Dockerfile", DOCKERFILE), ("src/app.py", "print(1)\n"), ("src/lib.py", "x = 1\n"), ("notes.txt", "n\n")];
    // The same base image (by digest) on both roots, as a pull would give.
    let a = with_busybox();
    let b = Builder::new();
    let saved = tempfile::tempdir().expect("tmp");
    let archive = saved.path().join("busybox.tar");
    a.ok(&["save", "--format", "oci", "-o", archive.to_str().expect("utf8"), "busybox:test"]);
    b.ok(&["load", "-i", archive.to_str().expect("utf8")]);
    let ctx_a = context(&files);
    let outer = tempfile::tempdir().expect("tmp");
    let ctx_b = outer.path().join("somewhere/else");
    std::fs::create_dir_all(&ctx_b).expect("mkdir");
    let cp = Command::new("cp").arg("-a").arg(format!("{}/.", ctx_a.path().display())).arg(&ctx_b).status().expect("cp");
    assert!(cp.success());
    // Another checkout: other owners, other times, other inodes.
    let st = Command::new("sh").arg("-c").arg("chown -R 1234:1234 . && touch -d 2001-01-01 src/app.py notes.txt").current_dir(&ctx_b).status().expect("sh");
    assert!(st.success());

    let keys = |b: &Builder, ctx: &Path| {
        let meta = ctx.parent().expect("parent").join(format!("meta-{}.json", std::process::id()));
        build(b, ctx, &["-t", "keys:1", "--metadata-file", meta.to_str().expect("utf8")]);
        let m = metadata(&meta);
        std::fs::remove_file(&meta).expect("rm");
        m["cache.steps"].as_array().expect("cache.steps").iter().map(|s| (s["step"].as_str().unwrap_or_default().to_string(), s["key"].as_str().unwrap_or_default().to_string())).collect::<Vec<_>>()
    };
    let ka = keys(&a, ctx_a.path());
    let kb = keys(&b, &ctx_b);
    assert_eq!(ka.len(), 4, "FROM, COPY, RUN, COPY: {ka:?}");
    assert_eq!(ka, kb, "every step has the same key on both roots");
    assert_ne!(a.root(), b.root());

    // And a content change does change the key of the COPY that reads it.
    std::fs::write(ctx_b.join("notes.txt"), "changed\n").expect("write");
    let kc = keys(&b, &ctx_b);
    let changed: Vec<&str> = ka.iter().zip(&kc).filter(|(x, y)| x.1 != y.1).map(|(x, _)| x.0.as_str()).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].contains("COPY notes.txt"), "{changed:?}");
}
