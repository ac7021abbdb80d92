//! End-to-end tests: image commands.
#[allow(unused_imports)]
use crate::util::*;
use crate::util_registry::{Registry, http_status};

use std::process::Command;

/// A builder root with the busybox rootfs imported as `name`.
fn with_busybox(name: &str) -> (Builder, tempfile::TempDir) {
    let b = Builder::new();
    let work = tempfile::tempdir().expect("work dir");
    let tar = busybox_rootfs_tar(work.path());
    b.ok(&["import", tar.to_str().expect("utf-8 path"), name]);
    (b, work)
}

fn inspect(b: &Builder, name: &str) -> serde_json::Value {
    let out = b.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("run skopeo");
    assert!(out.status.success(), "skopeo {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn imported_rootfs_is_listed_inspected_and_readable_by_skopeo() {
    let (b, _work) = with_busybox("busybox:test");
    let images = b.ok(&["images"]);
    let lines: Vec<&str> = images.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID") && lines[0].ends_with("SIZE"), "{images}");
    assert!(lines[1].starts_with("busybox ") && lines[1].contains(" test "), "{images}");

    let info = inspect(&b, "busybox:test");
    assert_eq!(info["RepoTags"], serde_json::json!(["busybox:test"]));
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
    let id = info["Id"].as_str().expect("Id").to_string();
    assert_eq!(b.ok(&["images", "-q"]).trim(), &id[7..19]);

    // The store is an OCI layout other tools read as is.
    let root = b.root().to_str().expect("utf-8 root").to_string();
    let sk: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci:{root}:docker.io/library/busybox:test")])).expect("skopeo json");
    assert_eq!(sk["Layers"].as_array().map(Vec::len), Some(1));
    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", &format!("oci:{root}:docker.io/library/busybox:test")])).expect("json");
    assert_eq!(config["rootfs"]["diff_ids"], info["RootFS"]["Layers"]);
}

#[test]
fn tag_inspect_by_id_prefix_and_rmi_deletes_blobs_with_the_last_tag() {
    let (b, _work) = with_busybox("busybox");
    b.ok(&["tag", "busybox", "localhost:5000/team/bb:v1"]);
    let info = inspect(&b, "localhost:5000/team/bb:v1");
    let id = info["Id"].as_str().expect("Id").to_string();
    let by_prefix = inspect(&b, &id[7..14]);
    assert_eq!(by_prefix["Id"], info["Id"]);
    assert_eq!(by_prefix["RepoTags"], serde_json::json!(["busybox:latest", "localhost:5000/team/bb:v1"]));

    let err = b.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("referenced by 2 tags"), "{err}");
    let out = b.ok(&["rmi", "busybox"]);
    assert!(out.contains("Untagged: busybox:latest") && !out.contains("Deleted"), "{out}");
    let blobs = b.root().join("blobs/sha256");
    assert_eq!(std::fs::read_dir(&blobs).expect("blobs").count(), 3);
    let out = b.ok(&["rmi", "localhost:5000/team/bb:v1"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(std::fs::read_dir(&blobs).expect("blobs").count(), 0);
    assert_eq!(b.ok(&["images", "-q"]), "");
    let err = b.fails(&["inspect", "busybox"]);
    assert!(err.contains("no such image: busybox:latest"), "{err}");
}

#[test]
fn import_with_a_bad_tag_names_the_tag() {
    let b = Builder::new();
    let work = tempfile::tempdir().expect("work dir");
    let tar = busybox_rootfs_tar(work.path());
    let err = b.fails(&["import", tar.to_str().expect("utf-8"), "busybox:no/good!"]);
    assert!(err.contains("invalid image reference") && err.contains("good!"), "{err}");
}

#[test]
fn history_shows_the_import() {
    let (b, work) = with_busybox("bb");
    let out = b.ok(&["history", "--no-trunc", "bb"]);
    assert!(out.lines().next().is_some_and(|h| h.starts_with("IMAGE") && h.contains("CREATED BY")), "{out}");
    assert!(out.contains(&format!("builder import {}", work.path().join("busybox-rootfs.tar").display())), "{out}");
}

#[test]
fn test_registry_helper_serves_the_v2_api_with_and_without_auth() {
    let open = Registry::start();
    let locked = Registry::start_with_auth("alice", "s3cret");
    assert_ne!(open.addr(), locked.addr());
    assert_eq!(http_status(&open.addr(), "/v2/"), 200);
    assert_eq!(http_status(&locked.addr(), "/v2/"), 401);
}
