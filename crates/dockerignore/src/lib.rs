//! `.dockerignore`: which files of the build context are left out.
//!
//! Docker's rules: one pattern per line; `#` lines are comments; blank lines
//! are skipped; surrounding spaces are trimmed; a leading `/` or `./` is
//! dropped and the pattern is cleaned like a path; `*` and `?` do not cross
//! `/`; `**` matches any number of directories; `!pattern` re-includes; the
//! last matching pattern wins; a pattern that matches a directory excludes
//! everything below it unless a later `!` pattern re-includes it.
//! `<Dockerfile>.dockerignore` beside the Dockerfile takes precedence over the
//! context's `.dockerignore`.
//!
//! Patterns are matched with `globset` where its glob semantics are Docker's
//! (the common forms: `*`, `?`, `**/`, `/**`, `[a-z]`); the rest (`**` inside a
//! path component, `[^…]` classes, which Docker takes from Go's regular
//! expressions) use a small matcher of Docker's own rules. The tests check
//! that both agree wherever globset is used.
//!
//! [`clean_path`] is Go's `path.Clean`, the one path cleaner of the workspace: Docker cleans
//! patterns, context paths and COPY sources with it.

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

/// Why the ignore rules cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ignore file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A pattern is not valid.
    #[error("{file}:{line}: invalid pattern {pattern:?}: {message}")]
    Pattern { file: String, line: usize, pattern: String, message: String },
}

/// The compiled ignore rules of a build context.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
    source: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct IgnorePattern {
    /// Cleaned pattern, without the `!`.
    text: String,
    exception: bool,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Glob(globset::GlobMatcher),
    Own(DockerGlob),
}

impl Matcher {
    fn is_match(&self, path: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(path),
            Matcher::Own(g) => g.is_match(path),
        }
    }
}

impl DockerIgnore {
    /// Reads `<dockerfile_name>.dockerignore` (beside the Dockerfile; a
    /// relative name is relative to the context) or else the context's
    /// `.dockerignore`; no file means nothing is ignored.
    pub fn load(context_dir: &Path, dockerfile_name: &str) -> Result<DockerIgnore, Error> {
        let dockerfile = Path::new(dockerfile_name);
        let dockerfile = if dockerfile.is_absolute() { dockerfile.to_path_buf() } else { context_dir.join(dockerfile) };
        let mut specific = dockerfile.into_os_string();
        specific.push(".dockerignore");
        for candidate in [PathBuf::from(specific), context_dir.join(".dockerignore")] {
            match std::fs::read(&candidate) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let mut ignore = Self::parse(&text, &candidate.display().to_string())?;
                    ignore.source = Some(candidate);
                    return Ok(ignore);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io { path: candidate, source: e }),
            }
        }
        Ok(DockerIgnore::default())
    }

    /// Compiles the text of a `.dockerignore` file.
    pub fn from_patterns(text: &str) -> Result<DockerIgnore, Error> {
        Self::parse(text, ".dockerignore")
    }

    fn parse(text: &str, file: &str) -> Result<DockerIgnore, Error> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = if n == 0 { line.trim_start_matches('\u{FEFF}') } else { line };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut text = if raw.is_empty() { String::new() } else { clean_path(raw) };
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let matcher = compile(&text).map_err(|message| Error::Pattern {
                file: file.to_string(),
                line: n + 1,
                pattern: line.to_string(),
                message,
            })?;
            patterns.push(IgnorePattern { text, exception, matcher });
        }
        Ok(DockerIgnore { patterns, source: None })
    }

    /// The file the rules came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The cleaned patterns, `!` kept, in file order (what BuildKit sends as excludes).
    pub fn patterns(&self) -> Vec<String> {
        self.patterns.iter().map(|p| if p.exception { format!("!{}", p.text) } else { p.text.clone() }).collect()
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is left out.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = normalize(rel_path);
        if path.is_empty() || path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => {
                let parent = &path[..i];
                parent.match_indices('/').map(|(j, _)| &parent[..j]).chain(std::iter::once(parent)).collect()
            }
            None => Vec::new(),
        };
        let mut excluded = false;
        for p in &self.patterns {
            // An exclusion can only change a path not yet excluded, an
            // exception only one that is.
            if p.exception != excluded {
                continue;
            }
            let hit = p.matcher.is_match(&path) || parents.iter().any(|d| p.matcher.is_match(d));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether a `!` pattern might re-include something below the directory
    /// `rel_dir`: a walker may skip an excluded directory only when this is false.
    pub fn may_reinclude_under(&self, rel_dir: &str) -> bool {
        let dir = normalize(rel_dir);
        let dir_parts: Vec<&str> = if dir.is_empty() || dir == "." { Vec::new() } else { dir.split('/').collect() };
        self.patterns.iter().filter(|p| p.exception).any(|p| {
            let parts: Vec<&str> = p.text.split('/').collect();
            for (i, d) in dir_parts.iter().enumerate() {
                let Some(part) = parts.get(i) else { return false };
                if part.contains(['*', '?', '[', '\\']) {
                    return true;
                }
                if part != d {
                    return false;
                }
            }
            parts.len() > dir_parts.len()
        })
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Context-relative path as Docker compares it: no leading `./` or `/`, cleaned.
fn normalize(p: &str) -> String {
    let c = clean_path(p);
    c.trim_start_matches('/').to_string()
}

/// Go's `path.Clean`: `.` and empty components dropped, `..` taking the one before it away (and
/// staying at the root of a rooted path); `.` for nothing left.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Whether globset reads `pattern` as Docker does.
fn globset_fits(pattern: &str) -> bool {
    // `**` must be a whole path component (globset treats `a**b` as `a*b`;
    // Docker as `a(.*/)?b`), character classes must not be negated (`[!x]`
    // is a negation to globset and a plain class to Go), and no escapes
    // inside classes.
    let doublestar_ok = pattern.match_indices("**").all(|(i, _)| {
        let before_ok = i == 0 || pattern.as_bytes()[i - 1] == b'/';
        let after = &pattern[i + 2..];
        before_ok && (after.is_empty() || after.starts_with('/'))
    });
    let classes_ok = !pattern.contains("[!") && !pattern.contains("[^") && !pattern.contains("[]");
    let no_triple = !pattern.contains("***");
    doublestar_ok && classes_ok && no_triple && !pattern.contains('\\')
}

fn compile(pattern: &str) -> Result<Matcher, String> {
    if globset_fits(pattern)
        && let Ok(g) = globset::GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).empty_alternates(false).build() {
            // `{a,b}` alternation is globset's, not Docker's: only use globset without braces.
            if !pattern.contains(['{', '}']) {
                return Ok(Matcher::Glob(g.compile_matcher()));
            }
        }
    DockerGlob::compile(pattern).map(Matcher::Own)
}

/// Docker's pattern semantics (patternmatcher's regular expression, matched
/// directly): `*` = `[^/]*`, `?` = `[^/]`, `**` at the end = `.*`, other `**`
/// (eating a following `/`) = `(.*/)?`, `[…]` a Go character class, `\x` = x.
#[derive(Debug, Clone)]
struct DockerGlob {
    tokens: Vec<GTok>,
}

#[derive(Debug, Clone)]
enum GTok {
    Lit(char),
    Star,
    One,
    AnyDirs,
    All,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

impl DockerGlob {
    fn compile(p: &str) -> Result<DockerGlob, String> {
        let chars: Vec<char> = p.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    tokens.push(if i >= chars.len() { GTok::All } else { GTok::AnyDirs });
                }
                '*' => tokens.push(GTok::Star),
                '?' => tokens.push(GTok::One),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        tokens.push(GTok::Lit(n));
                        i += 1;
                    }
                    None => tokens.push(GTok::Lit('\\')),
                },
                '[' => {
                    let mut negated = false;
                    if chars.get(i) == Some(&'^') {
                        negated = true;
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(i) else { return Err("missing closing ]".into()) };
                        i += 1;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            let Some(&e) = chars.get(i) else { return Err("trailing backslash".into()) };
                            i += 1;
                            e
                        } else {
                            c
                        };
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
                            let hi = chars[i + 1];
                            i += 2;
                            if hi < lo {
                                return Err(format!("invalid character class range {lo}-{hi}"));
                            }
                            ranges.push((lo, hi));
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    tokens.push(GTok::Class { negated, ranges });
                }
                ']' => tokens.push(GTok::Lit(']')),
                c => tokens.push(GTok::Lit(c)),
            }
        }
        if tokens.iter().filter(|t| matches!(t, GTok::Star | GTok::AnyDirs)).count() > 128 {
            return Err("more than 128 wildcards".into());
        }
        Ok(DockerGlob { tokens })
    }

    pub(crate) fn is_match(&self, path: &str) -> bool {
        let s: Vec<char> = path.chars().collect();
        let mut failed = std::collections::HashSet::new();
        self.m(&s, 0, 0, &mut failed)
    }

    /// Single-character steps are a loop; only `*` and `**` branch (their
    /// number is bounded at compile time).
    fn m(&self, s: &[char], mut t: usize, mut p: usize, failed: &mut std::collections::HashSet<(usize, usize)>) -> bool {
        loop {
            let step = match self.tokens.get(t) {
                None => return p == s.len(),
                Some(GTok::All) => return true,
                Some(GTok::Lit(c)) => s.get(p) == Some(c),
                Some(GTok::One) => s.get(p).is_some_and(|&c| c != '/'),
                Some(GTok::Class { negated, ranges }) => {
                    s.get(p).is_some_and(|&c| ranges.iter().any(|&(lo, hi)| c >= lo && c <= hi) != *negated)
                }
                Some(GTok::Star) | Some(GTok::AnyDirs) => break,
            };
            if !step {
                return false;
            }
            t += 1;
            p += 1;
        }
        if failed.contains(&(t, p)) {
            return false;
        }
        let ok = match self.tokens.get(t) {
            Some(GTok::Star) => {
                let mut q = p;
                loop {
                    if self.m(s, t + 1, q, failed) {
                        break true;
                    }
                    if q >= s.len() || s[q] == '/' {
                        break false;
                    }
                    q += 1;
                }
            }
            // (.*/)? : nothing, or up to and including any later '/'.
            _ => self.m(s, t + 1, p, failed) || (p..s.len()).any(|q| s[q] == '/' && self.m(s, t + 1, q + 1, failed)),
        };
        if !ok {
            failed.insert((t, p));
        }
        ok
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        assert_eq!(clean_path("./a//b/../c/"), "a/c");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path("./"), ".");
    }

    #[test]
    fn globset_agrees_with_docker_rules_where_it_is_used() {
        let patterns = ["*", "*.go", "a/*.txt", "**/*.md", "docs/**", "a/**/b", "**", "a?c", "[a-c]x", "x/[0-9]*/y", "dir", "**/node_modules"];
        let paths = [
            "a", "a.go", "x.go", "a/b.go", "a/x.txt", "a/b/x.txt", "README.md", "d/e/f.md", "docs", "docs/x", "docs/x/y", "a/b", "a/x/y/b",
            "abc", "a/c", "bx", "dx", "x/12/y", "x/a/y", "dir", "dir/x", "p/node_modules", "node_modules", "q/r/node_modules",
        ];
        for pattern in patterns {
            assert!(globset_fits(pattern), "{pattern} should use globset");
            let Matcher::Glob(g) = compile(pattern).unwrap() else { panic!("{pattern}: not globset") };
            let own = DockerGlob::compile(pattern).unwrap();
            for path in paths {
                assert_eq!(g.is_match(path), own.is_match(path), "pattern {pattern:?} on {path:?}");
            }
        }
    }

    #[test]
    fn forms_globset_reads_differently_use_docker_rules() {
        for p in ["a**b", "[!x]y", "[^x]y", "a\\*b", "{a,b}"] {
            assert!(matches!(compile(p).unwrap(), Matcher::Own(_)), "{p}");
        }
        let ig = DockerIgnore::from_patterns("a**b\n[^x]y\n{a,b}\n").unwrap();
        assert!(ig.is_excluded("ab") && ig.is_excluded("az/b") && !ig.is_excluded("azb"));
        assert!(ig.is_excluded("zy") && !ig.is_excluded("xy"));
        assert!(ig.is_excluded("{a,b}") && !ig.is_excluded("a"));
    }
}
