//! End-to-end: `builder images` lists like `docker images`: filters, Go-template formats,
//! digests, full IDs, dangling images, and SIZE as the unpacked size.
use crate::util::*;

fn ids(b: &Builder, args: &[&str]) -> Vec<String> {
    let mut all = vec!["images", "-q"];
    all.extend_from_slice(args);
    b.ok(&all).lines().map(str::to_string).collect()
}

#[test]
fn images_filter_by_dangling_reference_label_before_and_since() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nLABEL team=web\nCOPY a.txt /\n"), ("a.txt", "one\n")]);
    b.ok(&["build", "-q", "-t", "app:1", ctx.path().to_str().expect("utf8")]);
    let old = b.ok(&["images", "-q", "app:1"]).trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // creation times are in seconds
    std::fs::write(ctx.path().join("a.txt"), "two\n").expect("write");
    b.ok(&["build", "-q", "-t", "app:1", ctx.path().to_str().expect("utf8")]);
    let new = b.ok(&["images", "-q", "app"]).trim().to_string();
    assert_ne!(old, new);

    // The image that lost its tag is dangling: <none>:<none>, as Docker shows it.
    assert_eq!(ids(&b, &["-f", "dangling=true"]), [old.clone()]);
    let table = b.ok(&["images"]);
    assert!(table.lines().any(|l| l.starts_with("<none>") && l.contains(&old)), "{table}");
    assert_eq!(ids(&b, &["--filter", "dangling=false", "--filter", "reference=app"]), [new.clone()]);
    assert_eq!(ids(&b, &["-f", "reference=busy*"]).len(), 1);
    assert_eq!(ids(&b, &["-f", "reference=*:1"]), [new.clone()]);
    assert_eq!(ids(&b, &["-f", "label=team"]).len(), 2, "both app images carry the label");
    assert_eq!(ids(&b, &["-f", "label=team=web", "-f", "dangling=false"]), [new.clone()]);
    assert!(ids(&b, &["-f", "label=team=db"]).is_empty());
    assert_eq!(ids(&b, &["-f", "since=busybox:test", "-f", "dangling=false"]), [new.clone()]);
    let before: Vec<String> = ids(&b, &["-f", "before=app:1"]);
    assert!(before.contains(&old) && !before.contains(&new), "{before:?}");

    let err = b.fails(&["images", "-f", "colour=red"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    let err = b.fails(&["images", "-f", "since=nothing:here"]);
    assert!(err.contains("since=nothing:here") && err.contains("no such image"), "{err}");
    let err = b.fails(&["images", "-f", "dangling"]);
    assert!(err.contains("\"dangling\""), "{err}");
}

#[test]
fn images_format_takes_go_templates_tables_and_json() {
    let b = with_busybox();
    b.ok(&["tag", "busybox:test", "localhost:5000/team/bb:v1"]);
    let lines = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut lines: Vec<&str> = lines.lines().collect();
    lines.sort();
    assert_eq!(lines, ["busybox:test", "localhost:5000/team/bb:v1"]);

    let table = b.ok(&["images", "--format", "table {{.Repository}}\\t{{.ID}}", "busybox"]);
    let id = b.ok(&["images", "-q", "busybox:test"]).trim().to_string();
    assert_eq_text(&format!("REPOSITORY   IMAGE ID\nbusybox      {id}\n"), &table);

    let json = b.ok(&["images", "--format", "json", "busybox"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object a line");
    let keys: Vec<&String> = row.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"], "Docker's fields");
    assert_eq!((row["Repository"].as_str(), row["Tag"].as_str(), row["ID"].as_str()), (Some("busybox"), Some("test"), Some(id.as_str())));
    assert!(row["CreatedAt"].as_str().is_some_and(|c| c.ends_with(" +0000 UTC")), "{row}");
    assert_eq!(b.ok(&["images", "--format", "{{json .Tag}} {{upper .Repository}}", "busybox"]), "\"test\" BUSYBOX\n");

    let full = b.ok(&["images", "-q", "--no-trunc", "busybox"]);
    assert!(full.trim().starts_with("sha256:") && full.trim().len() == 71 && full.trim()[7..19] == id, "{full}");
    let digests = b.ok(&["images", "--digests", "busybox"]);
    let header = digests.lines().next().unwrap_or_default();
    assert!(header.starts_with("REPOSITORY   TAG       DIGEST") && header.contains("IMAGE ID"), "{digests}");
    assert!(digests.lines().nth(1).is_some_and(|l| l.contains(" sha256:")), "{digests}");

    let err = b.fails(&["images", "--format", "{{.Nope}}"]);
    assert!(err.contains("Nope") && err.contains(".Repository"), "the error names the missing field and the ones there are: {err}");
    let err = b.fails(&["images", "--format", "{{.Repository"]);
    assert!(err.contains("--format"), "{err}");
}

#[test]
fn images_size_is_the_unpacked_size_as_docker_shows_it() {
    let b = with_busybox();
    // busybox:test holds /bin/busybox, /etc/passwd and /etc/group (util::busybox_rootfs_tar).
    let files = std::fs::metadata("/bin/busybox").expect("busybox").len() + 120 + 54;
    let units = ["B", "kB", "MB"];
    let mut v = files as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let want = format!("{v:.2}");
    let want = format!("{}{}", want.trim_end_matches('0').trim_end_matches('.'), units[i]);
    let size = b.ok(&["images", "--format", "{{.Size}}", "busybox"]);
    assert_eq!(size.trim(), want, "the files' bytes, not the gzip blob's");
    // Once counted, the size is kept beside the store, and the answer stays the same.
    assert!(b.root().join("sizes").read_dir().expect("sizes").next().is_some());
    assert_eq!(b.ok(&["images", "--format", "{{.Size}}", "busybox"]).trim(), want);
}
