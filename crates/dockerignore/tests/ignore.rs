//! `.dockerignore` semantics, on the files in testdata/dockerignore.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use dockerignore::DockerIgnore;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dockerignore").join(name)
}

#[test]
fn patterns_exclude_and_exceptions_reinclude_last_match_wins() {
    let ig = DockerIgnore::load(&dir("plain"), "Dockerfile").unwrap();
    assert_eq!(ig.source(), Some(dir("plain").join(".dockerignore").as_path()));
    assert_eq!(ig.patterns(), ["node_modules", "dist", "*.log", "!keep.log", "**/*.tmp", "docs", "!docs/README.md", "secret/**"]);
    // Leading `/` and `./` are cleaned away.
    assert!(ig.is_excluded("node_modules"));
    assert!(ig.is_excluded("dist"));
    // A parent match excludes the children.
    assert!(ig.is_excluded("node_modules/left-pad/index.js"));
    assert!(ig.is_excluded("dist/app.js"));
    // `*` does not cross directories, `**` does.
    assert!(ig.is_excluded("error.log"));
    assert!(!ig.is_excluded("logs/error.log"));
    assert!(ig.is_excluded("a/b/c.tmp") && ig.is_excluded("c.tmp"));
    // `!` re-includes; later patterns win.
    assert!(!ig.is_excluded("keep.log"));
    assert!(ig.is_excluded("docs/guide.md"));
    assert!(!ig.is_excluded("docs/README.md"));
    assert!(ig.is_excluded("secret/key") && !ig.is_excluded("secret"));
    // Paths given with ./ or / are the same paths.
    assert!(ig.is_excluded("./dist/x") && ig.is_excluded("/dist/x"));
    assert!(!ig.is_excluded("src/main.rs") && !ig.is_excluded("."));
}

#[test]
fn walker_may_skip_an_excluded_directory_only_without_reinclusions_inside() {
    let ig = DockerIgnore::load(&dir("plain"), "Dockerfile").unwrap();
    assert!(ig.is_excluded("docs"));
    assert!(ig.may_reinclude_under("docs"), "docs/README.md is re-included");
    assert!(!ig.may_reinclude_under("node_modules"));
    let wild = DockerIgnore::from_patterns("build\n!**/keep\n").unwrap();
    assert!(wild.may_reinclude_under("build"));
    assert!(!wild.is_excluded("build/x/keep"));
    assert!(wild.is_excluded("build/x/other"));
}

#[test]
fn dockerfile_specific_ignore_file_takes_precedence() {
    let ig = DockerIgnore::load(&dir("specific"), "build/app.Dockerfile").unwrap();
    assert_eq!(ig.source(), Some(dir("specific").join("build/app.Dockerfile.dockerignore").as_path()));
    assert!(ig.is_excluded("README.md"));
    assert!(!ig.is_excluded("everything"));
    // Without the specific file, the context's .dockerignore applies.
    let ig = DockerIgnore::load(&dir("specific"), "Dockerfile").unwrap();
    assert!(ig.is_excluded("everything") && !ig.is_excluded("README.md"));
}

#[test]
fn no_ignore_file_excludes_nothing_and_bad_patterns_are_errors() {
    let ig = DockerIgnore::load(&dir("plain/app"), "Dockerfile").unwrap();
    assert!(ig.is_empty() && !ig.is_excluded("anything"));
    let err = DockerIgnore::from_patterns("ok\n[unclosed\n").unwrap_err();
    assert_eq!(err.to_string(), ".dockerignore:2: invalid pattern \"[unclosed\": missing closing ]");
}

proptest::proptest! {
    /// Hostile ignore files and paths give an error or an answer, never a panic.
    #[test]
    fn arbitrary_ignore_files_never_panic(text in "([!#/*?.\\[\\]^a-c\\\\ -]{0,12}\n){0,8}", path in "[a-c*/.]{0,12}") {
        if let Ok(ig) = DockerIgnore::from_patterns(&text) {
            let _ = ig.is_excluded(&path);
            let _ = ig.may_reinclude_under(&path);
        }
    }
}
