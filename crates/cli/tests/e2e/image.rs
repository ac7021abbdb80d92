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
    assert!(err.contains("Error: No such object: busybox"), "{err}");
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

/// A builder whose docker config (credentials) is private to the test.
fn isolated(b: &Builder, args: &[&str], config: &std::path::Path) -> std::process::Output {
    b.cmd().env("DOCKER_CONFIG", config).args(args).output().expect("spawn builder")
}

#[test]
fn pushed_image_pulled_back_after_rmi_has_the_same_digest() {
    let registry = Registry::start();
    let name = format!("{}/e2e/busybox:1", registry.addr());
    let (b, _work) = with_busybox(&name);
    let pushed = b.ok(&["push", &name]).trim().to_string();
    assert!(pushed.starts_with("sha256:"), "push prints the manifest digest: {pushed}");
    assert_eq!(http_status(&registry.addr(), "/v2/e2e/busybox/manifests/1"), 200, "the registry serves the manifest");
    let before = inspect(&b, &name);
    b.ok(&["rmi", &name]);
    assert_eq!(std::fs::read_dir(b.root().join("blobs/sha256")).expect("blobs").count(), 0);
    let out = b.run(&["pull", &name]);
    assert_success(&out, &["pull", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Pull complete"), "one line per layer when not a terminal: {stderr}");
    let after = inspect(&b, &name);
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["RepoDigests"], serde_json::json!([format!("{}/e2e/busybox@{pushed}", registry.addr())]));
    // A second push finds every blob present.
    let again = b.run(&["push", &name]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("Layer already exists") && !stderr.contains("Pushed"), "{stderr}");
}

#[test]
fn builder_push_is_read_by_skopeo_and_unpacked_by_umoci() {
    let registry = Registry::start();
    let name = format!("{}/e2e/bb:umoci", registry.addr());
    let (b, work) = with_busybox(&name);
    b.ok(&["push", "--chunk-size", "1", &name]);
    let info: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")])).expect("skopeo inspect json");
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(1));
    let layout = work.path().join("layout");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{name}"), &format!("oci:{}:bb", layout.display())]);
    let bundle = work.path().join("bundle");
    let out =
        Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:bb", layout.display())).arg(&bundle).output().expect("umoci");
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert_eq!(std::fs::read_link(bundle.join("rootfs/bin/sh")).expect("sh link"), std::path::Path::new("busybox"));
}

#[test]
fn image_made_by_umoci_and_pushed_by_skopeo_is_pulled() {
    let registry = Registry::start();
    let work = tempfile::tempdir().expect("work");
    let layout = work.path().join("layout");
    let bundle = work.path().join("bundle");
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci");
        assert!(out.status.success(), "umoci {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    };
    let image = format!("{}:v1", layout.display());
    umoci(&["init", "--layout", &layout.display().to_string()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, &bundle.display().to_string()]);
    std::fs::write(bundle.join("rootfs/hello.txt"), "made by umoci\n").expect("write file");
    umoci(&["repack", "--image", &image, &bundle.display().to_string()]);
    let remote = format!("{}/peers/umoci:v1", registry.addr());
    skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{image}"), &format!("docker://{remote}")]);

    let b = Builder::new();
    b.ok(&["pull", "-q", &remote]);
    let info = inspect(&b, &remote);
    assert_eq!(info["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
    let sk: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{remote}")])).expect("json");
    assert_eq!(info["RepoDigests"][0], format!("{}/peers/umoci@{}", registry.addr(), sk["Digest"].as_str().expect("digest")));
}

#[test]
fn saved_archive_is_read_by_skopeo_and_skopeo_archive_is_loaded() {
    let (b, work) = with_busybox("saved/busybox:1");
    let archive = work.path().join("bb.tar");
    b.ok(&["save", "-o", archive.to_str().expect("utf-8"), "saved/busybox:1"]);
    let copied = work.path().join("copied");
    skopeo(&["copy", &format!("docker-archive:{}", archive.display()), &format!("oci:{}:bb", copied.display())]);
    let original = inspect(&b, "saved/busybox:1");
    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", &format!("oci:{}:bb", copied.display())])).expect("json");
    assert_eq!(config["rootfs"]["diff_ids"], original["RootFS"]["Layers"]);

    // The other way: skopeo writes a docker archive, builder loads it.
    let from_skopeo = work.path().join("from-skopeo.tar");
    skopeo(&["copy", &format!("oci:{}:bb", copied.display()), &format!("docker-archive:{}:skopeo/made:2", from_skopeo.display())]);
    let b2 = Builder::new();
    let out = b2.ok(&["load", "-i", from_skopeo.to_str().expect("utf-8")]);
    assert_eq!(out.trim(), "Loaded image: skopeo/made:2");
    let loaded = inspect(&b2, "skopeo/made:2");
    assert_eq!(loaded["RootFS"]["Layers"], original["RootFS"]["Layers"]);
}

#[test]
fn oci_archive_round_trips_through_save_and_load() {
    let (b, work) = with_busybox("oci/busybox:1");
    let archive = work.path().join("bb-oci.tar");
    b.ok(&["save", "--format", "oci", "-o", archive.to_str().expect("utf-8"), "oci/busybox:1"]);
    let sk: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{}:docker.io/oci/busybox:1", archive.display())])).expect("json");
    assert_eq!(sk["Layers"].as_array().map(Vec::len), Some(1));
    let b2 = Builder::new();
    b2.ok(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert_eq!(inspect(&b2, "oci/busybox:1")["Id"], inspect(&b, "oci/busybox:1")["Id"]);
}

#[test]
fn load_of_a_file_that_is_not_an_image_archive_says_so() {
    let b = Builder::new();
    let work = tempfile::tempdir().expect("work");
    let tar = busybox_rootfs_tar(work.path());
    let err = b.fails(&["load", "-i", tar.to_str().expect("utf-8")]);
    assert!(err.contains("neither a docker archive") && err.contains("busybox-rootfs.tar"), "{err}");
}

#[test]
fn registry_with_auth_needs_login_and_rejects_wrong_passwords() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let config = tempfile::tempdir().expect("docker config");
    let name = format!("{}/private/bb:1", registry.addr());
    let (b, _work) = with_busybox(&name);

    let out = isolated(&b, &["push", &name], config.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires a login") && err.contains(&format!("builder login {}", registry.addr())), "{err}");

    let out = isolated(&b, &["login", "-u", "alice", "-p", "wrong", &registry.addr()], config.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected the credentials of user \"alice\" (HTTP 401)"), "{err}");
    assert!(!config.path().join("config.json").exists());

    let mut login = b.cmd();
    login.env("DOCKER_CONFIG", config.path()).args(["login", "-u", "alice", "--password-stdin", &registry.addr()]);
    login.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = login.spawn().expect("spawn login");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"s3cret\n").expect("password");
    let out = child.wait_with_output().expect("login");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.path().join("config.json")).expect("config.json")).expect("json");
    assert!(saved["auths"][registry.addr()]["auth"].is_string(), "{saved}");

    let out = isolated(&b, &["push", &name], config.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = isolated(&b, &["logout", &registry.addr()], config.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removing login credentials"));
    let out = isolated(&b, &["pull", &name], config.path());
    assert!(!out.status.success(), "pull after logout must need a login again");
}

#[test]
fn pull_with_a_bad_tag_fails_before_any_network_call() {
    let b = Builder::new();
    // Nothing listens on this port; a network attempt would say "cannot reach".
    let port = crate::util_registry::free_port();
    let err = b.fails(&["pull", &format!("127.0.0.1:{port}/app:bad!tag")]);
    assert!(err.contains("invalid image reference") && err.contains("tag \"bad!tag\""), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn push_mounts_blobs_from_another_repository_of_the_same_registry() {
    let registry = Registry::start();
    let first = format!("{}/team/one:1", registry.addr());
    let second = format!("{}/team/two:1", registry.addr());
    let (b, _work) = with_busybox(&first);
    b.ok(&["push", &first]);
    b.ok(&["tag", &first, &second]);
    let out = b.run(&["push", &second]);
    assert_success(&out, &["push", &second]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Mounted from team/one") && !stderr.contains("Pushed"), "{stderr}");
}

#[test]
fn login_goes_through_the_configured_credential_helper() {
    let registry = Registry::start_with_auth("bob", "hunter2");
    let config = tempfile::tempdir().expect("docker config");
    let bin = tempfile::tempdir().expect("helper dir");
    // A docker-credential helper that keeps one secret in a file, as the real ones keep it in a keychain.
    let vault = bin.path().join("vault.json");
    let helper = bin.path().join("docker-credential-testvault");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  store) cat > {v} ;;\n  get) if [ -f {v} ]; then cat {v}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) rm -f {v} ;;\nesac\n",
            v = vault.display()
        ),
    )
    .expect("write helper");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    std::fs::write(config.path().join("config.json"), r#"{"credsStore":"testvault"}"#).expect("config");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());

    let name = format!("{}/vault/bb:1", registry.addr());
    let (b, _work) = with_busybox(&name);
    let run = |args: &[&str]| b.cmd().env("DOCKER_CONFIG", config.path()).env("PATH", &path).args(args).output().expect("spawn");
    let out = run(&["login", "-u", "bob", "-p", "hunter2", &registry.addr()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = std::fs::read_to_string(&vault).expect("the helper received the secret");
    assert!(stored.contains("\"Secret\":\"hunter2\"") && stored.contains("\"Username\":\"bob\""), "{stored}");
    let saved = std::fs::read_to_string(config.path().join("config.json")).expect("config");
    assert!(!saved.contains("hunter2"), "the secret stays out of config.json: {saved}");

    let out = run(&["push", &name]);
    assert!(out.status.success(), "push with helper credentials: {}", String::from_utf8_lossy(&out.stderr));
    run(&["logout", &registry.addr()]);
    assert!(!vault.exists(), "logout erased the secret from the helper");
}

#[test]
fn rmi_refuses_an_image_a_container_uses_unless_forced() {
    let (b, _work) = with_busybox("in-use:1");
    b.ok(&["run", "in-use:1", "true"]);
    let err = b.fails(&["rmi", "in-use:1"]);
    assert!(err.contains("is used by container") && err.contains("use -f"), "{err}");
    assert!(b.ok(&["images", "-q"]).trim().len() == 12, "the image is still there");
    let out = b.ok(&["rmi", "-f", "in-use:1"]);
    assert!(out.contains("Untagged: in-use:1"), "{out}");
}

#[test]
fn store_stays_usable_after_an_import_is_killed_at_any_moment() {
    let (b, work) = with_busybox("survivor:1");
    // A big, slow-ish import to kill while it writes.
    let big = work.path().join("big.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&big).expect("create"));
        let mut x: u64 = 7;
        let data: Vec<u8> = (0..64 * 1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "noise.bin", &data[..]).expect("append");
        tar.finish().expect("finish");
    }
    for delay_ms in [5u64, 50, 200] {
        let mut child = b.cmd().args(["import", big.to_str().expect("utf-8"), "victim:1"]).spawn().expect("spawn import");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever moment it died at, the store answers and the earlier image is intact.
        let images = b.ok(&["images"]);
        assert!(images.contains("survivor"), "{images}");
        b.ok(&["inspect", "survivor:1"]);
        if images.contains("victim") {
            b.ok(&["inspect", "victim:1"]);
            b.ok(&["rmi", "victim:1"]);
        }
        let tmp: Vec<_> = std::fs::read_dir(b.root().join("tmp")).expect("tmp").flatten().collect();
        assert!(tmp.is_empty(), "the next command cleared the killed import's temp files: {tmp:?}");
    }
}

#[test]
fn refused_mount_falls_back_to_a_normal_upload() {
    let registry = Registry::start();
    // Tagged locally under another repository of the registry, but never pushed there: the
    // mount is refused (202) and the blobs are uploaded instead.
    let never_pushed = format!("{}/team/ghost:1", registry.addr());
    let target = format!("{}/team/real:1", registry.addr());
    let (b, _work) = with_busybox(&never_pushed);
    b.ok(&["tag", &never_pushed, &target]);
    let out = b.run(&["push", &target]);
    assert_success(&out, &["push", &target]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Pushed") && !stderr.contains("Mounted"), "{stderr}");
    let b2 = Builder::new();
    b2.ok(&["pull", "-q", &target]);
    assert_eq!(inspect(&b2, &target)["Id"], inspect(&b, &target)["Id"]);
}

#[test]
fn multi_platform_index_is_pushed_whole_and_pulled_per_platform() {
    let registry = Registry::start();
    let (b, work) = with_busybox("mp/amd:1");
    let other = work.path().join("other.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&other).expect("create"));
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        tar.append_data(&mut h, "arch.txt", &b"arm\n"[..]).expect("append");
        tar.finish().expect("finish");
    }
    b.ok(&["import", other.to_str().expect("utf-8"), "mp/arm:1"]);
    // An index naming the two images as two platforms, tagged in the store.
    let store = oci::Store::open(b.root()).expect("store");
    let entry = |name: &str, arch: &str| {
        let d = &inspect(&b, name)["Descriptor"];
        serde_json::json!({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                           "platform": {"architecture": arch, "os": "linux"}})
    };
    let host = oci::Platform::host().architecture;
    let foreign = if host == "arm64" { "amd64" } else { "arm64" };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                   "manifests": [entry("mp/amd:1", &host), entry("mp/arm:1", foreign)]});
    let blob = store.put_json(&index).expect("index blob");
    let desc = store.manifest_descriptor(&blob.digest).expect("descriptor");
    let name = format!("{}/mp/multi:1", registry.addr());
    store.tag(&oci::Reference::parse(&name).expect("ref"), desc).expect("tag");

    let pushed = b.ok(&["push", "-q", &name]).trim().to_string();
    assert_eq!(pushed, blob.digest.to_string(), "push prints the index digest");
    let raw: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")])).expect("json");
    assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2));

    let b2 = Builder::new();
    b2.ok(&["pull", "-q", "--platform", &format!("linux/{foreign}"), &name]);
    let pulled = inspect(&b2, &name);
    assert_eq!(pulled["Id"], inspect(&b, "mp/arm:1")["Id"]);
    assert_eq!(
        pulled["RepoDigests"],
        serde_json::json!([format!("{}/mp/multi@{pushed}", registry.addr())]),
        "the index digest, as docker shows it"
    );
}
