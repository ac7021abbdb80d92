//! End-to-end tests: `builder volume create / ls / inspect / rm / prune`, and named,
//! anonymous and tmpfs volumes in `run`.
#[allow(unused_imports)] use crate::util::*;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn volume_create_ls_inspect_rm_round_trip() {
    let b = Builder::new();
    assert_eq_text("data\n", &b.ok(&["volume", "create", "--label", "tier=db", "data"]));
    assert_eq_text("data\n", &b.ok(&["volume", "create", "data"]));
    assert_eq_text("DRIVER    VOLUME NAME\nlocal     data\n", &b.ok(&["volume", "ls"]));

    let json: serde_json::Value = serde_json::from_str(&b.ok(&["volume", "inspect", "data"])).expect("inspect JSON");
    let v = &json[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["tier"], "db");
    let mountpoint = b.root().join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.to_str().expect("utf-8 path"));
    assert!(mountpoint.is_dir());

    assert_eq_text("data\n", &b.ok(&["volume", "rm", "data"]));
    assert_eq_text("DRIVER    VOLUME NAME\n", &b.ok(&["volume", "ls"]));
    assert!(!b.root().join("volumes/data").exists());
}

#[test]
fn volume_without_a_name_is_anonymous_and_pruned_while_named_ones_stay() {
    let b = Builder::new();
    let anon = b.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    b.ok(&["volume", "create", "keep"]);
    std::fs::write(b.root().join("volumes").join(&anon).join("_data/f"), "12345").expect("write into the volume");

    let out = b.ok(&["volume", "prune", "-f"]);
    assert_eq_text(&format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 5B\n"), &out);
    assert_eq_text("keep\n", &b.ok(&["volume", "ls", "-q"]));
    assert_eq_text("Deleted Volumes:\nkeep\n\nTotal reclaimed space: 0B\n", &b.ok(&["volume", "prune", "-f", "--all"]));
}

#[test]
fn volume_ls_and_prune_filters_pick_by_name_and_label() {
    let b = Builder::new();
    b.ok(&["volume", "create", "--label", "app=shop", "shop-db"]);
    b.ok(&["volume", "create", "--label", "app=blog", "blog-db"]);
    b.ok(&["volume", "create", "cache"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "name=db"])), ["blog-db", "shop-db"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "label=app=shop"])), ["shop-db"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "label=app"])), ["blog-db", "shop-db"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q", "--filter", "dangling=true"])), ["blog-db", "cache", "shop-db"]);
    assert_eq_text("", &b.ok(&["volume", "ls", "-q", "--filter", "dangling=false"]));

    b.ok(&["volume", "prune", "-af", "--filter", "label!=app"]);
    assert_eq!(lines(&b.ok(&["volume", "ls", "-q"])), ["blog-db", "shop-db"]);
}

#[test]
fn volume_bad_input_is_an_error_naming_it() {
    let b = Builder::new();
    let err = b.fails(&["volume", "create", "no/slash"]);
    assert!(err.contains("\"no/slash\"") && err.contains("invalid characters"), "{err}");
    let err = b.fails(&["volume", "create", "-d", "nfs", "x1"]);
    assert!(err.contains("\"nfs\""), "{err}");
    let err = b.fails(&["volume", "create", "-o", "size=1g", "x1"]);
    assert!(err.contains("\"size\""), "{err}");
    let err = b.fails(&["volume", "ls", "--filter", "colour=red"]);
    assert!(err.contains("\"colour=red\""), "{err}");
    let err = b.fails(&["volume", "inspect", "nope"]);
    assert!(err.contains("no such volume: nope"), "{err}");
    let err = b.fails(&["volume", "rm", "nope"]);
    assert!(err.contains("no such volume: nope"), "{err}");
    b.ok(&["volume", "rm", "-f", "nope"]);
    assert_eq_text("", &b.ok(&["volume", "ls", "-q"]));
}
