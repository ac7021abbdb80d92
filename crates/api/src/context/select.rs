//! Which parts of the context a Dockerfile can read, decided on the client so unrelated files
//! (build outputs, data sets) never cross the network.
//!
//! Correctness first: the answer is "everything" whenever the client cannot be sure — a FROM of
//! a real image (its ONBUILD triggers may COPY anything), a source with a variable, quote,
//! escape or `..`, a `# syntax=` frontend, or a source that is `.` itself. A wildcard source
//! selects its directory prefix before the first wildcard component.

use dockerfile::{Dockerfile, Instruction, MountType};

use crate::proto::{FileEntry, FileKind};

/// The context prefixes (relative, `/`-separated, no `.` or `..`) the Dockerfile can read, or
/// `None` when it may read anything (or the client cannot tell).
pub fn used_prefixes(dockerfile: &[u8], file_name: &str) -> Option<Vec<String>> {
    let df = Dockerfile::parse(dockerfile, file_name).ok()?;
    if df.directives.syntax.is_some() {
        return None;
    }
    let mut stages: Vec<String> = Vec::new();
    let mut prefixes = Vec::new();
    for stage in &df.stages {
        let image = stage.from.image.value.as_str();
        let earlier = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
        if !image.eq_ignore_ascii_case("scratch") && !earlier {
            return None;
        }
        for instr in &stage.instructions {
            match instr {
                Instruction::Copy(c) | Instruction::Add(c) if c.from.is_none() => {
                    for src in &c.sources {
                        let v = src.value.as_str();
                        if v.starts_with("<<") && !c.heredocs.is_empty() {
                            continue;
                        }
                        if v.contains("://") || v.starts_with("git@") {
                            // A URL or git source: not read from the context.
                            continue;
                        }
                        prefixes.push(prefix_of(v)?);
                    }
                }
                Instruction::Run(r) => {
                    for m in &r.mounts {
                        if m.kind == MountType::Bind && m.from.is_none() {
                            prefixes.push(prefix_of(m.source.as_deref().unwrap_or("."))?);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(name) = stage.name() {
            stages.push(name.to_string());
        }
    }
    Some(prefixes)
}

/// The literal directory-or-file prefix a source reads, `None` for "everything or unknown".
fn prefix_of(source: &str) -> Option<String> {
    if source.chars().any(|c| matches!(c, '$' | '\\' | '"' | '\'' | '`')) {
        return None;
    }
    let mut parts = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => continue,
            ".." => return None,
            p if p.chars().any(|c| matches!(c, '*' | '?' | '[')) => break,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Keeps the entries under `prefixes`, their parent directories, and `always`. Returns `None`
/// (send everything) when a kept entry is a symlink: the build follows it, perhaps anywhere.
pub fn filter(entries: &[FileEntry], prefixes: &[String], always: &[&str]) -> Option<Vec<FileEntry>> {
    let mut out = Vec::new();
    for e in entries {
        let p = e.path.as_str();
        let under = prefixes.iter().any(|x| p == x || p.strip_prefix(x.as_str()).is_some_and(|r| r.starts_with('/')));
        let parent = prefixes.iter().any(|x| x.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
        if under || parent {
            if e.kind == FileKind::Symlink as i32 {
                return None;
            }
            out.push(e.clone());
        } else if always.contains(&p) {
            out.push(e.clone());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: FileKind) -> FileEntry {
        FileEntry { path: path.into(), kind: kind as i32, ..Default::default() }
    }

    #[test]
    fn prefixes_of_a_scratch_dockerfile() {
        let df = b"FROM scratch AS a\nCOPY app.txt ./src/ /\nADD conf/*.toml /etc/\nADD https://example.com/x /x\nFROM a\nRUN --mount=type=bind,source=data,target=/d true\nCOPY --from=a /app.txt /b\nCOPY <<EOF /h\nhi\nEOF\n";
        assert_eq!(used_prefixes(df, "Dockerfile"), Some(vec!["app.txt".to_string(), "src".into(), "conf".into(), "data".into()]));
    }

    #[test]
    fn unknowable_sources_mean_everything() {
        for df in [
            &b"FROM alpine\nCOPY app.txt /\n"[..],
            b"FROM scratch\nARG F=app.txt\nCOPY $F /\n",
            b"FROM scratch\nCOPY . /\n",
            b"FROM scratch\nCOPY ../x /\n",
            b"FROM scratch\nCOPY *.txt /\n",
            b"FROM scratch\nRUN --mount=type=bind,target=/c true\n",
            b"# syntax=docker/dockerfile:1\nFROM scratch\nCOPY a /\n",
        ] {
            assert_eq!(used_prefixes(df, "Dockerfile"), None, "{}", String::from_utf8_lossy(df));
        }
    }

    #[test]
    fn filter_keeps_selected_paths_parents_and_ignore_files() {
        let entries = vec![
            entry(".dockerignore", FileKind::File),
            entry("a", FileKind::Dir),
            entry("a/b", FileKind::Dir),
            entry("a/b/c.txt", FileKind::File),
            entry("a/other.txt", FileKind::File),
            entry("ab.txt", FileKind::File),
            entry("big.bin", FileKind::File),
        ];
        let kept: Vec<String> = filter(&entries, &["a/b".to_string()], &[".dockerignore"]).expect("no symlinks").into_iter().map(|e| e.path).collect();
        assert_eq!(kept, [".dockerignore", "a", "a/b", "a/b/c.txt"]);
        let with_link = vec![entry("a", FileKind::Symlink), entry("big.bin", FileKind::File)];
        assert!(filter(&with_link, &["a/b".to_string()], &[]).is_none());
    }
}
