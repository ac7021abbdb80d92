use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn store() -> (tempfile::TempDir, Volumes) {
    let dir = tempfile::tempdir().expect("temp dir");
    let volumes = Volumes::open(dir.path()).expect("open");
    (dir, volumes)
}

/// A container record as the runtime leaves one, so the volume's user counts.
fn container(root: &Path, id: &str) {
    fs::create_dir_all(root.join("containers").join(id)).expect("container dir");
}

#[test]
fn created_volume_is_listed_with_its_labels_and_an_empty_data_dir() {
    let (root, volumes) = store();
    let mut new = NewVolume::named("data");
    new.labels.insert("com.docker.compose.project".into(), "shop".into());
    let v = volumes.create(&new).expect("create");
    assert_eq!(v.driver, "local");
    assert_eq!(v.mountpoint, root.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    let listed = volumes.list().expect("list");
    assert_eq!(listed, vec![v.clone()]);
    assert_eq!(volumes.get("data").expect("get").labels["com.docker.compose.project"], "shop");
}

#[test]
fn second_create_of_a_name_is_refused_but_get_or_create_returns_it() {
    let (_root, volumes) = store();
    volumes.create(&NewVolume::named("data")).expect("create");
    assert!(matches!(volumes.create(&NewVolume::named("data")), Err(Error::Exists { .. })));
    let (v, created) = volumes.get_or_create("data", &BTreeMap::new()).expect("get_or_create");
    assert_eq!((v.name.as_str(), created), ("data", false));
    let (_, created) = volumes.get_or_create("other", &BTreeMap::new()).expect("get_or_create");
    assert!(created);
}

#[test]
fn names_docker_refuses_are_refused_here() {
    let (_root, volumes) = store();
    for bad in ["a", "-x", ".hidden", "with/slash", "sp ace", "/abs", ""] {
        let err = volumes.create(&NewVolume::named(bad)).expect_err(bad);
        assert!(matches!(err, Error::InvalidName { .. }), "{bad}: {err}");
    }
    for good in ["db", "my_vol.1-x", "0data"] {
        volumes.create(&NewVolume::named(good)).expect(good);
    }
}

#[test]
fn unknown_driver_and_option_are_refused_by_name() {
    let (_root, volumes) = store();
    let mut new = NewVolume::named("x1");
    new.driver = Some("nfs".into());
    assert!(volumes.create(&new).expect_err("driver").to_string().contains("\"nfs\""));
    let mut new = NewVolume::named("x1");
    new.options.insert("size".into(), "1g".into());
    assert!(volumes.create(&new).expect_err("option").to_string().contains("\"size\""));
    assert!(volumes.list().expect("list").is_empty(), "nothing half made");
}

#[test]
fn anonymous_volumes_get_a_random_name_and_the_anonymous_label() {
    let (_root, volumes) = store();
    let a = volumes.create(&NewVolume::anonymous()).expect("a");
    let b = volumes.create(&NewVolume::anonymous()).expect("b");
    assert_eq!(a.name.len(), 64);
    assert_ne!(a.name, b.name);
    assert!(a.is_anonymous());
}

#[test]
fn volume_in_use_is_not_removed_and_the_error_names_the_container() {
    let (root, volumes) = store();
    volumes.create(&NewVolume::named("data")).expect("create");
    let id = "c".repeat(64);
    container(root.path(), &id);
    volumes.attach("data", &id, "web").expect("attach");
    let err = volumes.remove("data").expect_err("in use");
    assert!(matches!(err, Error::InUse { .. }));
    assert!(err.to_string().contains("web (cccccccccccc)"), "{err}");
    assert!(volumes.get("data").is_ok());

    let released = volumes.release(&id).expect("release");
    assert_eq!(released.len(), 1);
    volumes.remove("data").expect("remove after release");
    assert!(matches!(volumes.get("data"), Err(Error::NotFound { .. })));
    assert!(!root.path().join("volumes/data").exists());
}

#[test]
fn record_of_a_container_that_no_longer_exists_does_not_block_removal() {
    let (root, volumes) = store();
    volumes.create(&NewVolume::named("data")).expect("create");
    volumes.attach("data", "gone", "old").expect("attach");
    assert!(volumes.users("data").expect("users").is_empty());
    volumes.remove("data").expect("remove");
    let _ = root;
}

#[test]
fn attach_to_a_missing_volume_is_an_error() {
    let (_root, volumes) = store();
    assert!(matches!(volumes.attach("nope", "id", "web"), Err(Error::NotFound { .. })));
}

#[test]
fn prune_takes_unused_anonymous_volumes_and_with_all_unused_named_ones() {
    let (root, volumes) = store();
    let anon = volumes.create(&NewVolume::anonymous()).expect("anon");
    fs::write(anon.mountpoint.join("f"), b"12345").expect("write");
    let used = volumes.create(&NewVolume::anonymous()).expect("used");
    container(root.path(), "ctr");
    volumes.attach(&used.name, "ctr", "web").expect("attach");
    volumes.create(&NewVolume::named("keep")).expect("named");

    let pruned = volumes.prune(&Filters::default(), false).expect("prune");
    assert_eq!(pruned.names, vec![anon.name.clone()]);
    assert_eq!(pruned.bytes, 5);
    let left: Vec<String> = volumes.list().expect("list").into_iter().map(|v| v.name).collect();
    assert!(left.contains(&used.name) && left.contains(&"keep".to_string()));

    let pruned = volumes.prune(&Filters::default(), true).expect("prune all");
    assert_eq!(pruned.names, vec!["keep".to_string()]);
}

#[test]
fn prune_with_a_label_filter_keeps_the_others() {
    let (_root, volumes) = store();
    let mut a = NewVolume::named("a1");
    a.labels.insert("tier".into(), "db".into());
    volumes.create(&a).expect("a1");
    volumes.create(&NewVolume::named("b1")).expect("b1");
    let pruned = volumes.prune(&Filters::parse(&["label=tier=db"]).expect("filter"), true).expect("prune");
    assert_eq!(pruned.names, vec!["a1".to_string()]);
    let pruned = volumes.prune(&Filters::parse(&["label!=tier"]).expect("filter"), true).expect("prune");
    assert_eq!(pruned.names, vec!["b1".to_string()]);
}

#[test]
fn filters_combine_as_docker_s() {
    let mut labels = BTreeMap::new();
    labels.insert("a".to_string(), "1".to_string());
    let v = Volume { name: "web-data".into(), driver: "local".into(), created_at: String::new(), labels, options: BTreeMap::new(), mountpoint: PathBuf::new() };
    let m = |f: &[&str], used| Filters::parse(f).expect("parse").matches(&v, used);
    assert!(m(&[], false));
    assert!(m(&["name=web"], false));
    assert!(m(&["name=nope", "name=data"], false), "one name of several");
    assert!(!m(&["name=web", "driver=other"], false), "every key");
    assert!(m(&["label=a"], false) && m(&["label=a=1"], false));
    assert!(!m(&["label=a=2"], false) && !m(&["label=a", "label=b"], false));
    assert!(m(&["dangling=true"], false) && !m(&["dangling=true"], true));
    assert!(m(&["dangling=false"], true));
    for bad in ["dangling=maybe", "size=1", "nokey", "label="] {
        let err = Filters::parse(&[bad]).expect_err(bad);
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn leftovers_of_killed_commands_are_cleared_on_open() {
    let (root, volumes) = store();
    volumes.create(&NewVolume::named("data")).expect("create");
    let dir = root.path().join("volumes");
    fs::create_dir_all(dir.join(".new-x1-99/_data")).expect("half made");
    fs::create_dir_all(dir.join(".gone-x2-99/_data")).expect("half removed");
    fs::create_dir_all(dir.join("data/.filling")).expect("half filled");
    let volumes = Volumes::open(root.path()).expect("reopen");
    assert!(!dir.join(".new-x1-99").exists() && !dir.join(".gone-x2-99").exists() && !dir.join("data/.filling").exists());
    assert_eq!(volumes.list().expect("list").len(), 1);
}

#[test]
fn fill_copies_the_image_directory_once_with_owner_mode_and_links() {
    let (root, volumes) = store();
    let src = root.path().join("image-dir");
    fs::create_dir_all(src.join("sub")).expect("src");
    fs::write(src.join("sub/conf"), b"x=1").expect("file");
    fs::set_permissions(src.join("sub/conf"), fs::Permissions::from_mode(0o640)).expect("chmod");
    std::os::unix::fs::lchown(src.join("sub/conf"), Some(1000), Some(1001)).expect("chown");
    fs::hard_link(src.join("sub/conf"), src.join("hard")).expect("hard link");
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).expect("symlink");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o700)).expect("chmod dir");
    std::os::unix::fs::lchown(&src, Some(999), Some(999)).expect("chown dir");

    let v = volumes.create(&NewVolume::named("data")).expect("create");
    assert!(volumes.fill(&v, &src).expect("fill"));
    let data = &v.mountpoint;
    assert_eq!(fs::read(data.join("sub/conf")).expect("read"), b"x=1");
    let m = fs::metadata(data.join("sub/conf")).expect("meta");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 1001));
    assert_eq!(fs::metadata(data.join("hard")).expect("hard").ino(), m.ino());
    assert_eq!(fs::read_link(data.join("link")).expect("link"), Path::new("/etc/passwd"));
    let d = fs::metadata(data).expect("data");
    assert_eq!((d.mode() & 0o7777, d.uid()), (0o700, 999), "the volume takes the directory's owner and mode");

    fs::write(src.join("later"), b"").expect("later");
    assert!(!volumes.fill(&v, &src).expect("second fill"), "a volume with content is not filled again");
    assert!(!data.join("later").exists());
}

#[test]
fn fill_from_a_missing_directory_leaves_the_volume_empty() {
    let (root, volumes) = store();
    let v = volumes.create(&NewVolume::named("data")).expect("create");
    assert!(!volumes.fill(&v, &root.path().join("nothing")).expect("fill"));
    assert!(is_empty_dir(&v.mountpoint));
}
