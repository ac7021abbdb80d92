//! End-to-end: cleaning up as Docker does: `image prune`, `system df`, `system prune`, and the
//! collection of blobs and unpacked snapshots nothing uses, never of what a build from another
//! process or a container is using.
use crate::util::*;

use std::path::Path;

/// Makes every blob and snapshot look an hour old, past the grace period that protects the work
/// of a concurrent pull or run.
fn age_store(root: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for dir in ["blobs/sha256", "snapshots"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in rd.flatten() {
            let f = std::fs::File::open(e.path()).expect("open");
            f.set_modified(old).expect("age");
        }
    }
}

fn snapshot_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join("snapshots")).map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    ids.sort();
    ids
}

fn build(b: &Builder, df: &str, tag: &str) -> String {
    let ctx = context(&[("Dockerfile", df)]);
    b.ok(&["build", "-q", "--no-cache", "-t", tag, ctx.path().to_str().expect("utf8")]).trim().to_string()
}

#[test]
fn image_prune_removes_dangling_images_and_the_blobs_and_snapshots_nothing_uses() {
    let b = with_busybox();
    let old = build(&b, "FROM busybox:test\nRUN echo one > /r\n", "app:1");
    let new = build(&b, "FROM busybox:test\nRUN echo two > /r\n", "app:1");
    // Another base image, run once (its layer unpacked) and removed: its snapshot is left behind.
    let dir = tempfile::tempdir().expect("tmp");
    let other = dir.path().join("other.tar");
    std::fs::create_dir_all(dir.path().join("rootfs/bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", dir.path().join("rootfs/bin/sh")).expect("sh");
    let st = std::process::Command::new("tar").arg("-C").arg(dir.path().join("rootfs")).arg("-cf").arg(&other).arg(".").status().expect("tar");
    assert!(st.success());
    b.ok(&["import", other.to_str().expect("utf8"), "other:1"]);
    assert_eq!(b.ok(&["run", "--rm", "other:1", "/bin/sh", "-c", "echo ran"]).trim(), "ran");
    let with_other = snapshot_ids(b.root());
    b.ok(&["rmi", "other:1"]);
    assert_eq!(snapshot_ids(b.root()), with_other, "rmi leaves the unpacked snapshot");
    assert_eq!(b.ok(&["images", "-q", "-f", "dangling=true", "--no-trunc"]).trim(), old);
    age_store(b.root());

    let out = b.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with(&format!("Deleted Images:\ndeleted: {old}\n\nTotal reclaimed space: ")), "{out}");
    assert_eq!(b.ok(&["images", "-q", "-f", "dangling=true"]), "");
    assert!(!b.root().join("blobs/sha256").join(old.trim_start_matches("sha256:")).exists(), "the dangling image's config is gone");
    let left = snapshot_ids(b.root());
    assert_eq!(left.len(), with_other.len() - 1, "other:1's snapshot is collected, busybox's stays: {left:?}");
    // What is left works: the tagged image runs, and its build is still cached.
    assert_eq!(b.ok(&["run", "--rm", "app:1", "cat", "/r"]).trim(), "two");
    assert_eq!(b.ok(&["images", "-q", "--no-trunc", "app:1"]).trim(), new);
    // Nothing more to remove: no "Deleted Images" section.
    assert_eq!(b.ok(&["image", "prune", "-f"]), "Total reclaimed space: 0B\n");
}

#[test]
fn image_prune_all_keeps_what_containers_use_and_follows_filters() {
    let b = with_busybox();
    b.ok(&["run", "--name", "keeper", "busybox:test", "true"]);
    build(&b, "FROM busybox:test\nLABEL keep=yes\nRUN echo a > /a\n", "labelled:1");
    build(&b, "FROM busybox:test\nRUN echo b > /b\n", "plain:1");
    let out = b.ok(&["image", "prune", "-a", "-f", "--filter", "until=1h"]);
    assert_eq!(out, "Total reclaimed space: 0B\n", "every image is younger than an hour");
    let out = b.ok(&["image", "prune", "-a", "-f", "--filter", "label!=keep"]);
    assert!(out.contains("untagged: plain:1") && !out.contains("labelled") && !out.contains("busybox"), "{out}");
    let out = b.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: labelled:1") && !out.contains("busybox:test"), "the container's image stays: {out}");
    let left = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(left, "busybox:test\n");
    let err = b.fails(&["image", "prune", "-f", "--filter", "until=soon"]);
    assert!(err.contains("until=soon") && err.contains("not a duration"), "{err}");
    let err = b.fails(&["image", "prune", "-f", "--filter", "dangling=true"]);
    assert!(err.contains("invalid filter 'dangling'"), "{err}");
    // Without -f it asks; anything but y keeps everything.
    let mut cmd = b.cmd();
    cmd.args(["image", "prune", "-a"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"n\n").expect("answer");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Are you sure you want to continue? [y/N]"));
    b.ok(&["rm", "keeper"]);
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1, "declined: nothing removed");
}

#[test]
fn prune_racing_a_build_from_another_process_leaves_the_build_intact() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nRUN sleep 2 && echo built > /built\n")]);
    build(&b, "FROM busybox:test\nRUN echo old > /r\n", "race:1");
    build(&b, "FROM busybox:test\nRUN echo new > /r\n", "race:1");
    age_store(b.root());
    let mut building = b.cmd();
    building.args(["build", "-q", "-t", "raced:1", ctx.path().to_str().expect("utf8")]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = building.spawn().expect("spawn build");
    std::thread::sleep(std::time::Duration::from_millis(700));
    // Both wait for the build (it holds the build lock) and then remove only what nothing uses.
    let pruned = b.ok(&["system", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let out = child.wait_with_output().expect("build");
    assert!(out.status.success(), "the build survives the prune: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(b.ok(&["run", "--rm", "raced:1", "cat", "/built"]).trim(), "built");
    assert_eq!(b.ok(&["run", "--rm", "race:1", "cat", "/r"]).trim(), "new");
    b.ok(&["image", "prune", "-f"]);
    assert_eq!(b.ok(&["run", "--rm", "raced:1", "cat", "/built"]).trim(), "built");
}

#[test]
fn system_df_counts_images_containers_volumes_and_cache() {
    let b = with_busybox();
    let size = b.ok(&["images", "--format", "{{.Size}}"]).trim().to_string();
    let df = b.ok(&["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(lines[0], "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE", "{df}");
    assert!(lines[1].starts_with("Images          1         0         ") && lines[1].contains(&size), "{df}");
    assert_eq!(lines.len(), 5, "{df}");
    b.ok(&["run", "--name", "c1", "busybox:test", "sh", "-c", "echo data > /data"]);
    b.ok(&["volume", "create", "v1"]);
    build(&b, "FROM busybox:test\nRUN echo x > /x\n", "cached:1");
    let rows = b.ok(&["system", "df", "--format", "{{.Type}}:{{.TotalCount}}:{{.Active}}"]);
    assert_eq!(rows, "Images:2:1\nContainers:1:0\nLocal Volumes:1:0\nBuild Cache:1:0\n");
    let verbose = b.ok(&["system", "df", "-v"]);
    for section in ["Images space usage:", "Containers space usage:", "Local Volumes space usage:", "Build cache usage:"] {
        assert!(verbose.contains(section), "{verbose}");
    }
    assert!(verbose.contains("SHARED SIZE") && verbose.lines().any(|l| l.starts_with("cached ") && l.ends_with(" 0")), "{verbose}");
    assert!(verbose.lines().any(|l| l.starts_with("v1 ")), "{verbose}");
}

#[test]
fn system_prune_removes_stopped_containers_dangling_images_cache_and_with_volumes_anonymous_volumes() {
    let b = with_busybox();
    b.ok(&["run", "--name", "stopped", "-v", "/anon", "busybox:test", "true"]);
    b.ok(&["volume", "create", "named"]);
    build(&b, "FROM busybox:test\nRUN echo 1 > /r\n", "p:1");
    build(&b, "FROM busybox:test\nRUN echo 2 > /r\n", "p:1");
    let out = b.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains("Deleted Volumes:\n") && out.contains("Deleted Images:\ndeleted: sha256:") && out.contains("Deleted build cache objects:"), "{out}");
    assert_eq!(b.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "named", "named volumes stay");
    assert_eq!(b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines().count(), 2, "tagged images stay without -a");
    assert!(b.ok(&["system", "df"]).lines().any(|l| l.starts_with("Build Cache     0 ")));
}
