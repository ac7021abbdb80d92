//! The local store as other crates and tools see it.

use std::io::Write;

use oci::{Digest, Reference, Store};

fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, name, *body).expect("append");
    }
    tar.into_inner().expect("tar")
}

#[test]
fn opening_creates_an_oci_layout() {
    let dir = tempfile::tempdir().expect("tmp");
    Store::open(dir.path()).expect("open");
    let layout = std::fs::read_to_string(dir.path().join("oci-layout")).expect("oci-layout");
    assert!(layout.contains("1.0.0"));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).expect("index")).expect("json");
    assert_eq!(index["schemaVersion"], 2);
    assert!(dir.path().join("blobs/sha256").is_dir());
    assert!(dir.path().join("tmp").is_dir());
}

#[test]
fn blob_with_wrong_digest_is_not_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let claimed = Digest::sha256_of(b"what was promised");
    let err = store.write_blob(&b"something else"[..], &claimed, None).expect_err("must fail");
    assert!(err.to_string().contains("does not match its digest"), "{err}");
    assert!(!store.has_blob(&claimed));
    assert!(!store.has_blob(&Digest::sha256_of(b"something else")));
    assert_eq!(std::fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0, "no temp file left behind");
}

#[test]
fn blob_with_wrong_size_is_not_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let d = Digest::sha256_of(b"abc");
    let err = store.write_blob(&b"abc"[..], &d, Some(4)).expect_err("must fail");
    assert!(err.to_string().contains("wrong size"), "{err}");
    assert!(!store.has_blob(&d));
}

#[test]
fn streamed_blob_is_visible_only_after_commit() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let mut w = store.blob_writer().expect("writer");
    w.write_all(b"hello ").expect("write");
    w.write_all(b"world").expect("write");
    let d = Digest::sha256_of(b"hello world");
    assert!(!store.has_blob(&d));
    let info = w.commit(Some(&d)).expect("commit");
    assert_eq!(info.size, 11);
    assert_eq!(store.read_blob(&d).expect("read"), b"hello world");
}

#[test]
fn leftover_temp_files_of_a_killed_process_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    // A PID no process has (above the kernel's pid_max).
    std::fs::write(store.tmp_dir().join("blob-99999999-0-0"), b"half a layer").expect("write");
    // Some other crate's fresh work file: left alone.
    std::fs::write(store.tmp_dir().join("snapshot-work"), b"in use").expect("write");
    let live = store.blob_writer().expect("a writer still in use");
    Store::open(dir.path()).expect("reopen");
    let mut left: Vec<_> = std::fs::read_dir(store.tmp_dir()).expect("tmp").flatten().map(|e| e.path()).collect();
    left.sort();
    let mut want = vec![live.tmp_path().to_path_buf(), store.tmp_dir().join("snapshot-work")];
    want.sort();
    assert_eq!(left, want, "the dead writer's file is gone; files in use stay");
}

#[test]
fn import_tag_resolve_untag_and_gc() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let tar = tar_with(&[("etc/hello", b"hi\n")]);
    let r = Reference::parse("example/app:1").expect("ref");
    let image = oci::import::import_rootfs(&store, &tar[..], &r, "app.tar").expect("import");
    assert_eq!(image.diff_ids().expect("diff ids"), vec![Digest::sha256_of(&tar)]);
    assert_eq!(store.list().expect("list").len(), 1);

    // The layer is a valid gzip of the tar.
    let (layer, _) = image.layers().expect("layers")[0].clone();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(store.open_blob(&layer).expect("blob")), &mut back).expect("gunzip");
    assert_eq!(back, tar);

    // Found by ID prefix too.
    let (_, by_id) = store.find_image(&image.id().hex()[..8]).expect("by id");
    assert_eq!(by_id.manifest_digest, image.manifest_digest);

    let other = Reference::parse("localhost:5000/app:2").expect("ref");
    store.tag(&other, store.resolve(&r).expect("resolve").expect("tagged")).expect("tag");
    assert_eq!(store.tags_of(image.id()).expect("tags").len(), 2);
    assert!(store.untag(&r).expect("untag"));
    assert!(store.resolve(&r).expect("resolve").is_none());
    assert_eq!(store.gc(&[]).expect("gc").removed_blobs, 0, "still tagged as localhost:5000/app:2");
    assert!(store.untag(&other).expect("untag"));
    let stats = store.gc(&[]).expect("gc");
    assert_eq!(stats.removed_blobs, 3, "manifest, config and layer");
    assert!(!store.has_blob(&layer));
}

#[test]
fn concurrent_taggers_lose_no_tag() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let tar = tar_with(&[("a", b"a")]);
    let base = Reference::parse("base").expect("ref");
    oci::import::import_rootfs(&store, &tar[..], &base, "a.tar").expect("import");
    let desc = store.resolve(&base).expect("resolve").expect("tagged");
    std::thread::scope(|s| {
        for t in 0..8 {
            let (store, desc) = (store.clone(), desc.clone());
            s.spawn(move || {
                for i in 0..10 {
                    let r = Reference::parse(&format!("many:{t}-{i}")).expect("ref");
                    store.tag(&r, desc.clone()).expect("tag");
                }
            });
        }
    });
    assert_eq!(store.list().expect("list").len(), 81);
}

#[test]
fn gc_with_a_grace_period_keeps_fresh_untagged_blobs() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let blob = store.put_bytes(b"a layer a concurrent pull just stored").expect("put");
    let stats = store.gc_older_than(&[], std::time::Duration::from_secs(600)).expect("gc");
    assert_eq!(stats.removed_blobs, 0);
    assert!(store.has_blob(&blob.digest));
    assert_eq!(store.gc(&[]).expect("gc").removed_blobs, 1);
    assert!(!store.has_blob(&blob.digest));
}

#[test]
fn extra_roots_keep_their_whole_image() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let tar = tar_with(&[("x", b"x")]);
    let r = Reference::parse("cache/only:1").expect("ref");
    let image = oci::import::import_rootfs(&store, &tar[..], &r, "x.tar").expect("import");
    store.untag(&r).expect("untag");
    // A build-cache entry that references the manifest keeps manifest, config and layers.
    assert_eq!(store.gc(std::slice::from_ref(&image.manifest_digest)).expect("gc").removed_blobs, 0);
    assert!(store.image_from_descriptor(&store.manifest_descriptor(&image.manifest_digest).expect("desc")).is_ok());
}

#[test]
fn a_retagged_name_leaves_the_old_image_dangling_until_removed() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let r = Reference::parse("example/app:1").expect("ref");
    let first = oci::import::import_rootfs(&store, &tar_with(&[("a", b"1")])[..], &r, "a.tar").expect("import");
    let second = oci::import::import_rootfs(&store, &tar_with(&[("a", b"2")])[..], &r, "b.tar").expect("import");
    let dangling = store.dangling().expect("dangling");
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0].digest().to_string(), first.manifest_digest.to_string());
    assert_eq!(store.list().expect("list").len(), 1, "only the new image is tagged");
    assert_eq!(store.gc(&[]).expect("gc").removed_blobs, 0, "a dangling image is still an image");
    // Tagging the same image again, or tagging the dangling one, leaves nothing dangling twice.
    store.tag(&r, store.resolve(&r).expect("resolve").expect("tagged")).expect("tag");
    assert_eq!(store.dangling().expect("dangling").len(), 1);
    let other = Reference::parse("example/old:1").expect("ref");
    store.tag(&other, dangling[0].clone()).expect("tag");
    assert!(store.dangling().expect("dangling").is_empty(), "tagged again, it is no longer dangling");
    store.untag(&other).expect("untag");
    assert!(store.dangling().expect("dangling").is_empty(), "rmi forgets an image, it does not leave it dangling");
    assert!(!store.remove_dangling(&first.manifest_digest).expect("remove"));
    let _ = second;
}
