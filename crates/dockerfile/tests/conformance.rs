//! BuildKit's own test vectors, read from ../shared/conformance (beside the
//! checkout): every parser case must dump byte for byte as BuildKit does, and
//! every Unix/all-platform variable-expansion vector must give BuildKit's result.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

fn conformance_dir() -> PathBuf {
    // BUILDER_CONFORMANCE_DIR points at another copy of the same layout.
    let dir = std::env::var_os("BUILDER_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/buildkit"));
    assert!(dir.is_dir(), "conformance data missing: {}", dir.display());
    dir
}

#[test]
fn every_buildkit_parser_case_dumps_identically() {
    let dir = conformance_dir().join("parser");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).expect("read parser cases").filter_map(Result::ok).map(|e| e.path()).collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let source = std::fs::read(case.join("Dockerfile")).expect("read Dockerfile");
        let expected = std::fs::read(case.join("result")).expect("read result");
        match dockerfile::ast::parse(&source, "Dockerfile") {
            Ok(ast) => {
                let got = ast.dump();
                if got.as_bytes() != expected.as_slice() {
                    failures.push(format!("{name}: dump differs\n--- expected\n{}--- got\n{got}", String::from_utf8_lossy(&expected)));
                }
            }
            Err(e) => failures.push(format!("{name}: parse failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} parser cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_buildkit_expansion_vector_gives_the_same_result() {
    let text = std::fs::read_to_string(conformance_dir().join("shell-envVarTest")).expect("read envVarTest");
    let env: BTreeMap<String, String> = [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, '|');
        let (Some(platform), Some(input), Some(expected)) = (fields.next(), fields.next(), fields.next()) else {
            failures.push(format!("line {}: malformed vector {line:?}", n + 1));
            continue;
        };
        if platform.trim() == "W" {
            continue;
        }
        count += 1;
        let (input, expected) = (input.trim(), expected.trim());
        let got = dockerfile::shell::expand_word(input, &env, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), e) => v == e,
            _ => false,
        };
        if !ok {
            failures.push(format!("line {} {input:?}: expected {expected:?}, got {got:?}", n + 1));
        }
    }
    assert!(count > 0);
    assert!(failures.is_empty(), "{} of {count} expansion vectors failed:\n{}", failures.len(), failures.join("\n"));
}
