//! End-to-end tests: `builder parse`.
use std::io::Write;
use std::process::Stdio;

use crate::util::*;

fn example() -> String {
    testdata().join("parse/Dockerfile.example").display().to_string()
}

#[test]
fn parse_prints_buildkit_dump_of_the_example() {
    let b = Builder::new();
    let out = b.ok(&["parse", "-f", &example()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], r#"(arg "GO_VERSION=1.22")"#);
    assert_eq!(lines[2], r#"(from ["--platform=$BUILDPLATFORM"] "golang:${GO_VERSION}-alpine${ALPINE_VERSION}" "AS" "build")"#);
    assert!(lines.contains(&r#"(copy ["--from=build" "--chown=app:app" "--chmod=0755"] "/out/server" "/usr/local/bin/server")"#));
    assert!(lines.contains(&r#"(healthcheck ["--interval=30s" "--timeout=3s" "--retries=3"] "CMD" "/usr/local/bin/server" "healthcheck")"#));
    assert_eq!(lines.last(), Some(&r#"(cmd "--config" "/etc/server/config.toml")"#));
}

#[test]
fn parse_dump_matches_every_buildkit_conformance_case() {
    let b = Builder::new();
    let dir = shared().join("conformance/buildkit/parser");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("conformance cases") {
        let case = entry.expect("entry").path();
        let file = case.join("Dockerfile").display().to_string();
        let expected = std::fs::read_to_string(case.join("result")).expect("result");
        assert_eq_text(&expected, &b.ok(&["parse", "--format", "dump", "-f", &file]));
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn parse_json_gives_typed_stages_with_positions() {
    let b = Builder::new();
    let out = b.ok(&["parse", "--format", "json", "-f", &example()]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["stages"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["stages"][1]["from"]["name"], "runtime");
    let run = &v["stages"][0]["instructions"][5];
    assert_eq!(run["instruction"], "RUN");
    assert_eq!(run["mounts"][0]["type"], "cache");
    assert_eq!(run["mounts"][0]["sharing"], "locked");
    assert_eq!(run["span"]["line"], 15);
    assert_eq!(v["global_args"][0]["args"][0]["name"], "GO_VERSION");
}

#[test]
fn parse_reads_standard_input_with_dash() {
    let b = Builder::new();
    let mut child = b.cmd().args(["parse", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"FROM scratch\nCOPY a b\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_success(&out, &["parse", "-f", "-"]);
    assert_eq_text("(from \"scratch\")\n(copy \"a\" \"b\")\n", &String::from_utf8_lossy(&out.stdout));
}

#[test]
fn parse_error_names_file_line_column_and_shows_the_line() {
    let b = Builder::new();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM alpine\nRUN true\n  COPY --network=none a b\n").expect("write");
    let out = b.run(&["parse", "--format", "json", "-f", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let expected = format!(
        "{}:3:8: unknown flag: --network (COPY accepts --chown, --from, --chmod, --link, --exclude, --parents)\n    3 |   COPY --network=none a b\n",
        file.display()
    );
    assert_eq_text(&expected, &String::from_utf8_lossy(&out.stderr));
}

#[test]
fn parse_syntax_errors_fail_in_dump_format_too() {
    let b = Builder::new();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("Dockerfile"), "FROM a\nRUN <<EOF\nno end\n").expect("write");
    let mut cmd = b.cmd();
    cmd.current_dir(dir.path()).arg("parse");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Dockerfile:2:1: unterminated heredoc"), "{err}");
    let err = b.fails(&["parse", "-f", "/nonexistent/Dockerfile"]);
    assert!(err.contains("reading /nonexistent/Dockerfile"), "{err}");
}
