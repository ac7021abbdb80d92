//! Which parts of the context a build can read, so unrelated files (build outputs, data sets)
//! never cross the network.
//!
//! The server decides ([`from_definition`]): it lowers the Dockerfile with the real build args
//! and base images (ONBUILD triggers included), so every source is known after ARG/ENV
//! expansion. The sources of every COPY/ADD and `RUN --mount=type=bind` that read the build
//! context are the selection; a wildcard source selects its directory prefix, `.` selects
//! everything. The client then lists only those paths ([`crate::context::walk::list`]), and
//! follows symlinks it finds there ([`symlink_targets`]): the build may follow them.

use std::collections::HashSet;

use graph::{Definition, FileAction, MountKind, Op, VertexDigest};

use crate::proto::{ContextSelection, FileEntry, FileKind};

/// The context paths a build reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Anything may be read.
    Everything,
    /// Only these relative, `/`-separated paths (files, or directories with all below them).
    Paths(Vec<String>),
}

impl Selection {
    pub fn to_proto(&self) -> ContextSelection {
        match self {
            Selection::Everything => ContextSelection { everything: true, paths: Vec::new() },
            Selection::Paths(p) => ContextSelection { everything: false, paths: p.clone() },
        }
    }

    /// The selection a server sent; paths that are not clean relative paths mean "everything"
    /// (a client never walks outside its context).
    pub fn from_proto(s: ContextSelection) -> Selection {
        if s.everything {
            return Selection::Everything;
        }
        let mut out = Vec::new();
        for p in s.paths {
            match clean(&p) {
                Some(c) if !c.is_empty() => out.push(c),
                _ => return Selection::Everything,
            }
        }
        Selection::Paths(minimal(out))
    }

    /// Whether `path` (relative) is one of the selected paths or below one.
    pub fn covers(&self, path: &str) -> bool {
        match self {
            Selection::Everything => true,
            Selection::Paths(ps) => ps.iter().any(|p| path == p || path.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/'))),
        }
    }

    /// Whether `dir` (relative) is a parent directory of a selected path: the walk descends it.
    pub fn leads_to(&self, dir: &str) -> bool {
        match self {
            Selection::Everything => true,
            Selection::Paths(ps) => ps.iter().any(|p| p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))),
        }
    }
}

/// The context paths the build of `target` in `def` reads from the `context` local source.
pub fn from_definition(def: &Definition, target: VertexDigest) -> Selection {
    let is_context = |d: &VertexDigest| matches!(def.get(d).map(|v| &v.op), Some(Op::Local(l)) if l.name == "context");
    let mut paths = Vec::new();
    for d in def.topo_order(&[target]) {
        let Some(v) = def.get(&d) else { continue };
        let reads_context_at = |input: usize| v.inputs.get(input).is_some_and(&is_context);
        match &v.op {
            Op::File(f) => {
                for a in &f.actions {
                    if let FileAction::Copy(c) = a
                        && reads_context_at(c.source_input) {
                            for s in &c.sources {
                                match source_prefix(s) {
                                    Some(p) => paths.push(p),
                                    None => return Selection::Everything,
                                }
                            }
                        }
                }
            }
            Op::Exec(e) => {
                for m in &e.mounts {
                    if let MountKind::Bind { input, source, .. } = &m.kind
                        && reads_context_at(*input) {
                            match source_prefix(source) {
                                Some(p) => paths.push(p),
                                None => return Selection::Everything,
                            }
                        }
                }
            }
            // Any other op that takes the context as an input reads it whole.
            _ => {
                if v.inputs.iter().any(&is_context) {
                    return Selection::Everything;
                }
            }
        }
    }
    Selection::Paths(minimal(paths))
}

/// The literal path a source reads before its first wildcard component; `None` when that is the
/// whole context (`.`, `/`, `*.txt`).
fn source_prefix(source: &str) -> Option<String> {
    let mut literal = Vec::new();
    for part in source.split('/') {
        if part.chars().any(|c| matches!(c, '*' | '?' | '[' | '\\')) {
            break;
        }
        literal.push(part);
    }
    let p = clean(&literal.join("/"))?;
    if p.is_empty() { None } else { Some(p) }
}

/// `path` as a clean relative path inside the context: `.` and empty components dropped, `..`
/// stopping at the root (the build resolves sources inside the context the same way).
/// `None` for a NUL byte.
pub fn clean(path: &str) -> Option<String> {
    if path.contains('\0') {
        return None;
    }
    Some(solver::ops::local::clean(path))
}

/// Sorted, without duplicates and without paths below another one.
fn minimal(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths.dedup();
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        // Sorted order puts `a` before `a/b` (and `a-b` between them does not matter: `a/b` is
        // checked against every kept path).
        if !out.iter().any(|k| p.strip_prefix(k.as_str()).is_some_and(|r| r.starts_with('/'))) {
            out.push(p);
        }
    }
    out
}

/// Where the symlinks among `entries` point, as context paths the selection does not cover yet
/// (a COPY follows a symlink it names, and symlinks in the path of a source). `None` when one
/// points at the context root itself: everything is needed.
pub fn symlink_targets(entries: &[FileEntry], selection: &Selection) -> Option<Vec<String>> {
    let mut out = HashSet::new();
    for e in entries.iter().filter(|e| e.kind == FileKind::Symlink as i32) {
        let target = &e.symlink_target;
        // Inside a build context an absolute target is relative to the context root.
        let joined = if target.starts_with('/') {
            target.clone()
        } else {
            match crate::context::parent(&e.path) {
                Some(dir) => format!("{dir}/{target}"),
                None => target.clone(),
            }
        };
        let t = clean(&joined)?;
        if t.is_empty() {
            return None;
        }
        if !selection.covers(&t) {
            out.insert(t);
        }
    }
    let mut v: Vec<String> = out.into_iter().collect();
    v.sort();
    Some(v)
}

/// `selection` with `more` paths added.
pub fn widen(selection: &Selection, more: Vec<String>) -> Selection {
    match selection {
        Selection::Everything => Selection::Everything,
        Selection::Paths(p) => Selection::Paths(minimal(p.iter().cloned().chain(more).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfile::lower::{ImageResolver, LowerOptions, ResolveError, ResolvedImage};

    /// Base images with a fixed config (`ONBUILD COPY onbuild.txt /` for `with-onbuild`).
    struct Images;

    impl ImageResolver for Images {
        fn resolve(&mut self, reference: &str, _: &str) -> Result<ResolvedImage, ResolveError> {
            let mut r = ResolvedImage { reference: reference.into(), manifest_digest: format!("sha256:{}", "a".repeat(64)), architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
            if reference.contains("with-onbuild") {
                r.config.on_build = Some(vec!["COPY onbuild.txt /".into()]);
            }
            Ok(r)
        }
    }

    fn selection(df: &str, args: &[(&str, &str)]) -> Selection {
        let parsed = dockerfile::Dockerfile::parse(df.as_bytes(), "Dockerfile").expect("parse");
        let opts = LowerOptions { build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), platform: "linux/amd64".into(), ..Default::default() };
        let lowered = dockerfile::lower::lower(&parsed, &opts, &mut Images).expect("lower");
        from_definition(&lowered.definition, lowered.target)
    }

    fn paths(p: &[&str]) -> Selection {
        Selection::Paths(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn sources_are_known_after_arg_and_env_expansion() {
        let df = "FROM busybox\nARG DIR=src\nENV CONF=conf\nCOPY ${DIR}/ /app/\nADD $CONF/*.toml /etc/\nADD https://example.com/x /x\nRUN --mount=type=bind,source=data/set,target=/d true\n";
        assert_eq!(selection(df, &[]), paths(&["conf", "data/set", "src"]));
        assert_eq!(selection(df, &[("DIR", "lib/")]), paths(&["conf", "data/set", "lib"]));
    }

    #[test]
    fn onbuild_triggers_of_the_base_image_count() {
        assert_eq!(selection("FROM with-onbuild\nCOPY app.txt /\n", &[]), paths(&["app.txt", "onbuild.txt"]));
    }

    #[test]
    fn only_the_target_stage_and_what_it_needs_count() {
        let df = "FROM scratch AS a\nCOPY a.txt /\nFROM scratch AS b\nCOPY b.txt /\nFROM scratch\nCOPY --from=a /a.txt /\nCOPY <<EOF /h\nhi\nEOF\n";
        assert_eq!(selection(df, &[]), paths(&["a.txt"]));
    }

    #[test]
    fn the_whole_context_when_a_source_is_its_root() {
        for df in ["FROM scratch\nCOPY . /\n", "FROM scratch\nCOPY *.txt /\n", "FROM scratch\nRUN --mount=type=bind,target=/c true\n", "FROM scratch\nCOPY ../ /\n"] {
            assert_eq!(selection(df, &[]), Selection::Everything, "{df}");
        }
    }

    #[test]
    fn paths_are_cleaned_and_nested_ones_dropped() {
        assert_eq!(clean("./a//b/../c/").as_deref(), Some("a/c"));
        assert_eq!(clean("../../x").as_deref(), Some("x"));
        assert_eq!(minimal(vec!["a/b".into(), "a".into(), "a-b".into(), "a".into()]), ["a", "a-b"]);
        let s = Selection::from_proto(ContextSelection { everything: false, paths: vec!["src/../lib".into(), "lib/x".into()] });
        assert_eq!(s, paths(&["lib"]));
        assert_eq!(Selection::from_proto(ContextSelection { everything: false, paths: vec!["..".into()] }), Selection::Everything);
        assert!(s.covers("lib/x/y") && !s.covers("libx") && paths(&["a/b"]).leads_to("a") && !paths(&["a/b"]).leads_to("a/b"));
    }

    #[test]
    fn symlinks_widen_the_selection_to_their_targets() {
        let link = |path: &str, target: &str| FileEntry { path: path.into(), kind: FileKind::Symlink as i32, symlink_target: target.into(), ..Default::default() };
        let sel = paths(&["src"]);
        let entries = vec![link("src/a", "../shared/a"), link("src/b", "/abs/b"), link("src/c", "c2"), link("src/d", "../src/x")];
        assert_eq!(symlink_targets(&entries, &sel), Some(vec!["abs/b".to_string(), "shared/a".into()]));
        assert_eq!(symlink_targets(&[link("src/up", "..")], &sel), None);
        assert_eq!(widen(&sel, vec!["src/q".into(), "z".into()]), paths(&["src", "z"]));
    }
}
