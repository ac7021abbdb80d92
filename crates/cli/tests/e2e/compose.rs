//! `builder compose`: the resolved file (`config`) and the errors for bad files; the
//! container life cycle of a project.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

/// `builder compose ARGS…` run in `dir`, with only the variables given (plus PATH).
fn compose(b: &Builder, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd: Command = b.cmd();
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).arg("compose").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn builder")
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tmp");
    for (name, body) in files {
        let p = t.path().join("shop").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    t
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_prints_the_merged_interpolated_normalized_file() {
    let t = project(&[
        ("docker-compose.yml", "version: \"3\"\nservices:\n  web:\n    image: \"shop:${TAG}\"\n    ports:\n      - ${PORT:-8080}:80\n    environment:\n      - MODE=dev\n    depends_on: [db]\n  db:\n    image: busybox:test\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n"),
        ("prod.yml", "services:\n  web:\n    environment:\n      MODE: prod\n"),
        (".env", "TAG=1.0\n"),
    ]);
    let dir = t.path().join("shop");
    let b = Builder::new();
    let out = compose(&b, &dir, &[("PORT", "9000")], &["-f", "docker-compose.yml", "-f", "prod.yml", "config"]);
    assert_success(&out, &["compose", "config"]);
    assert_eq_text(
        "name: shop
networks:
  default:
    name: shop_default
services:
  db:
    image: busybox:test
    networks:
      default: {}
    volumes:
      - source: data
        target: /data
        type: volume
  web:
    depends_on:
      db:
        condition: service_started
        required: true
    environment:
      MODE: prod
    image: shop:1.0
    networks:
      default: {}
    ports:
      - mode: ingress
        protocol: tcp
        published: \"9000\"
        target: 80
volumes:
  data:
    name: shop_data
",
        &text(&out.stdout),
    );
    let out = compose(&b, &dir, &[], &["-p", "other", "config", "--services"]);
    assert_success(&out, &["compose", "config", "--services"]);
    assert_eq!(text(&out.stdout), "db\nweb\n");
}

#[test]
fn bad_files_are_errors_naming_file_line_and_key() {
    let b = Builder::new();
    let cases: &[(&str, &str)] = &[
        ("services:\n  web:\n    image: [busybox\n", "docker-compose.yml:4:"),
        ("services:\n  web:\n    image: busybox\n    prots: ['80:80']\n", "docker-compose.yml:4:5: services.web.prots: unknown key `prots`"),
        ("services:\n  web:\n    image: busybox\n    ports: ['80:eighty']\n", "docker-compose.yml:4:13: services.web.ports[0]: invalid port \"80:eighty\""),
        ("services:\n  web:\n    image: busybox\n    scale: lots\n", "docker-compose.yml:4:12: services.web.scale: wrong type"),
        ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n", "depends_on cycle: a -> b -> a"),
        ("services:\n  db:\n    image: busybox\n    environment:\n      PW: ${DB_PW:?set DB_PW}\n", "docker-compose.yml:5:11: services.db.environment.PW: required variable DB_PW is missing a value: set DB_PW"),
    ];
    for (file, want) in cases {
        let t = project(&[("docker-compose.yml", file)]);
        let out = compose(&b, &t.path().join("shop"), &[], &["config"]);
        assert!(!out.status.success(), "{file}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "for\n{file}\nwant {want:?} in:\n{err}");
        assert!(out.stdout.is_empty());
    }
}
